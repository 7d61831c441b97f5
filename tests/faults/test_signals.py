"""The signals a terminal or a service manager sends (INT, TERM, HUP, repeated), at each phase:
pspnet-rt's start-up (building its default artefact), its run and its shutdown; build_engine's
export and calibration. Real subprocesses, real signals, paced by what the process writes."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.faults.helpers import (
    artefact_state,
    hidden_leftovers,
    last_line,
    needs_ffmpeg,
    spawn,
    stop,
    video_frames,
    wait_for,
)
from tests.test_runtime_backends import clone_artefact

CODES = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


def _work_dir_in(folder: Path) -> bool:
    """A build is under way: its hidden work folder exists (whatever its naming scheme)."""
    return folder.is_dir() and any(p.is_dir() and p.name.startswith(".") for p in folder.iterdir())


def _collect(proc) -> tuple[list[str], threading.Thread]:
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    return lines, reader


def _signals(proc, sig: int, times: int, gap: float = 0.05) -> None:
    for i in range(times):
        if i:
            time.sleep(gap)
        proc.send_signal(sig)


def _signal_when_ready(proc, ready, what: str, sig: int, times: int = 1) -> str:
    """Wait until `ready()`, send `sig` `times` times, and return stderr once the process ended."""
    try:
        wait_for(ready, what, proc=proc)
        time.sleep(0.3)  # well inside that phase
        _signals(proc, sig, times)
        _, err = proc.communicate(timeout=120)
    finally:
        stop(proc)
    return err


# ----------------------------------------------------------------------------- pspnet-rt
@pytest.mark.fault("sig-rt-startup")
@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_signal_while_pspnet_rt_builds_its_default_artefact(tmp_path: Path, sig: int) -> None:
    cache = tmp_path / "cache"
    proc = spawn("runtime", "--video", "demo", "--demo-frames", "3", "--backend", "onnxruntime",
                 "--input-size", "96x192", "--masks", str(tmp_path / "m"),
                 env={"PSPNET_RT_CACHE": str(cache)})
    err = _signal_when_ready(proc, lambda: _work_dir_in(cache / "artefacts"), "the default build", sig)
    assert proc.returncode == CODES[sig], err
    last_line(err, f"interrupted by {signal.Signals(sig).name}", "no output was written")
    assert not list((cache / "artefacts").glob("*.json"))
    assert hidden_leftovers(cache) == []
    assert not (tmp_path / "m").exists() or not list((tmp_path / "m").iterdir())


def _run_until_frames(ov: str, tmp_path: Path, frames: int = 5, extra: tuple[str, ...] = ()):
    stats = tmp_path / "s.jsonl"
    proc = spawn("runtime", "--video", "demo", "--loop", "--demo-frames", "30", "--engine", ov,
                 "--output", str(tmp_path / "o.mp4"), "--masks", str(tmp_path / "m"), "--stats", str(stats),
                 *extra)
    # a new stats file is written in place; one that existed is replaced at close, by this run's
    # partial (.s.<token>.partial.jsonl)
    existed = stats.exists()

    def written() -> int:
        lines = next(tmp_path.glob(".s.*.partial.jsonl"), None) if existed else stats
        return len(lines.read_text().splitlines()) if lines is not None and lines.exists() else 0

    wait_for(lambda: written() >= frames, "frames", proc=proc)
    return proc


def _outputs_whole(tmp_path: Path) -> int:
    lines = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    masks = sorted((tmp_path / "m").glob("*.png"))
    assert len(masks) == len(lines) >= 5
    assert all(cv2.imread(str(p), cv2.IMREAD_UNCHANGED) is not None for p in masks)
    assert video_frames(tmp_path / "o.mp4") == len(lines)  # closed, plays, every frame
    assert hidden_leftovers(tmp_path) == []
    return len(lines)


@needs_ffmpeg
@pytest.mark.fault("sig-rt-run")
def test_hangup_during_the_run_finalises_outputs(demo_artefacts: dict[str, Path], tmp_path: Path) -> None:
    proc = _run_until_frames(str(demo_artefacts["openvino"]), tmp_path)
    try:
        proc.send_signal(signal.SIGHUP)
        out, err = proc.communicate(timeout=120)
    finally:
        stop(proc)
    assert proc.returncode == 129, err
    assert "pspnet-rt summary" in out and " written," in out and "Traceback" not in err
    _outputs_whole(tmp_path)


@needs_ffmpeg
@pytest.mark.fault("sig-rt-repeated")
def test_repeated_term_does_not_cut_the_shutdown_short(demo_artefacts: dict[str, Path],
                                                       tmp_path: Path) -> None:
    proc = _run_until_frames(str(demo_artefacts["openvino"]), tmp_path)
    try:
        _signals(proc, signal.SIGTERM, 2)
        out, err = proc.communicate(timeout=120)
    finally:
        stop(proc)
    assert proc.returncode == 143, err
    assert "already stopping" in err and "Traceback" not in err
    assert " written," in out
    _outputs_whole(tmp_path)


@needs_ffmpeg
@pytest.mark.fault("sig-rt-abort")
def test_third_signal_aborts_without_touching_what_existed(demo_artefacts: dict[str, Path],
                                                          tmp_path: Path) -> None:
    (tmp_path / "o.mp4").write_bytes(b"an earlier video")
    (tmp_path / "s.jsonl").write_text('{"earlier": 1}\n')
    proc = _run_until_frames(str(demo_artefacts["openvino"]), tmp_path,
                             extra=("--summary-json", str(tmp_path / "sum.json")))
    try:
        _signals(proc, signal.SIGTERM, 3, gap=0.02)
        _, err = proc.communicate(timeout=60)
    finally:
        stop(proc)
    assert proc.returncode == 143, err
    assert "aborting" in err and "Traceback" not in err
    assert (tmp_path / "o.mp4").read_bytes() == b"an earlier video"
    assert (tmp_path / "s.jsonl").read_text() == '{"earlier": 1}\n'
    time.sleep(0.5)  # the encoder, killed, lets go of its file
    assert hidden_leftovers(tmp_path) == []
    assert all(cv2.imread(str(p), cv2.IMREAD_UNCHANGED) is not None for p in (tmp_path / "m").glob("*.png"))


# --------------------------------------------------------------------------- build_engine
FP32 = ["--backend", "onnxruntime", "--input-size", "96x192"]


@pytest.mark.fault("sig-build")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_during_export(demo_artefacts: dict[str, Path], tmp_path: Path, sig: int) -> None:
    out = tmp_path / "out"
    clone_artefact(demo_artefacts["onnxruntime"], out)
    before = artefact_state(out)
    proc = spawn("build_engine", *FP32, "--force", "--output", str(out))
    err = _signal_when_ready(proc, lambda: _work_dir_in(out), "the work folder", sig)
    assert proc.returncode == CODES[sig], err
    last_line(err, f"interrupted by {signal.Signals(sig).name}", "nothing was changed")
    assert artefact_state(out) == before
    assert hidden_leftovers(out) == []


@pytest.mark.fault("sig-build-repeated")
def test_repeated_term_during_export(demo_artefacts: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    clone_artefact(demo_artefacts["onnxruntime"], out)
    before = artefact_state(out)
    proc = spawn("build_engine", *FP32, "--force", "--output", str(out))
    err = _signal_when_ready(proc, lambda: _work_dir_in(out), "the work folder", signal.SIGTERM, times=2)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert artefact_state(out) == before
    assert hidden_leftovers(out) == []


@pytest.mark.fault("sig-calibration")
def test_term_during_calibration(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = spawn("build_engine", "--precision", "int8", *FP32, "--calib-images", "48", "--eval-images", "4",
                 "--output", str(out))
    lines, reader = _collect(proc)
    try:
        wait_for(lambda: any(line.startswith("calibration:") for line in lines), "calibration", proc=proc)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        stop(proc)
    reader.join(timeout=10)
    err = "".join(lines)
    assert proc.returncode == 143, err
    last_line(err, "interrupted by SIGTERM")
    assert not list(out.glob("*.json"))
    assert hidden_leftovers(out) == []
    for cache in (out / "calibration").glob("*"):  # none, or whole ones: ranges JSON, gate reference .npz
        if cache.suffix == ".npz":
            with np.load(cache) as saved:
                assert saved.files
        else:
            assert json.loads(cache.read_text())
