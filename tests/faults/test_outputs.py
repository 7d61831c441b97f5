"""Every output where it cannot be written: a read-only file system, a full one (real tmpfs
mounts), a path under a file, a path another output or an input of the same run already uses.
Nothing that existed may be destroyed, and every output left behind must be whole."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import pytest

from tests.faults.helpers import (
    artefact_state,
    call_main,
    fill,
    hidden_leftovers,
    needs_ffmpeg,
    one_line,
    rt,
    tmpfs,
    video_frames,
)
from tests.test_runtime_backends import clone_artefact
from tests.test_runtime_sources import write_video

OUTPUT_FLAGS = {"--output": "o.mp4", "--masks": "m", "--stats": "s.jsonl", "--summary-json": "sum.json"}


@pytest.mark.fault("out-read-only")
@pytest.mark.parametrize("flag", list(OUTPUT_FLAGS))
def test_read_only_file_system(ov: str, tmp_path: Path, flag: str, capsys: pytest.CaptureFixture) -> None:
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as ro:
        t0 = time.monotonic()
        code, _, err, _ = rt(["--video", "demo", "--demo-frames", "3", "--engine", ov, flag,
                           str(ro / OUTPUT_FLAGS[flag])], capsys)
        assert code == 2, err
        one_line(err, "Read-only file system", "choose a writable")
        assert time.monotonic() - t0 < 10  # before the model is loaded


@pytest.mark.fault("out-full")
@pytest.mark.parametrize("flag", ["--masks", "--stats"])
def test_full_file_system(ov: str, tmp_path: Path, flag: str, capsys: pytest.CaptureFixture) -> None:
    with tmpfs(tmp_path / "full", "1m") as full:
        old = full / "s.jsonl"
        old.write_text('{"an": "older run"}\n')
        fill(full, 0)
        target = full / OUTPUT_FLAGS[flag]
        code, out, err, _ = rt(["--video", "demo", "--demo-frames", "3", "--engine", ov, flag, str(target)],
                            capsys)
        assert code == 2, err  # nothing fits, not even the output's lock file: refused before any work
        one_line(err, "No space left on device", "free space")
        assert " written," not in out
        assert old.read_text() == '{"an": "older run"}\n'
        assert hidden_leftovers(full) == []


@needs_ffmpeg
@pytest.mark.fault("out-failed-run-keeps-old")
def test_failed_run_does_not_replace_existing_outputs(ov: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    video, stats = tmp_path / "o.mp4", tmp_path / "s.jsonl"
    video.write_bytes(b"the video of an earlier run")
    stats.write_text('{"earlier": true}\n')
    with tmpfs(tmp_path / "small", "64k") as small:  # masks fill it after a few frames
        code, _, err, _ = rt(["--video", "demo", "--demo-frames", "30", "--loop", "--max-frames", "400",
                             "--engine", ov, "--output", str(video), "--stats", str(stats),
                             "--masks", str(small / "m")], capsys)
        assert code == 1, err
        one_line(err, "No space left on device")
        masks = sorted((small / "m").glob("*.png"))
        assert all(cv2.imread(str(p), cv2.IMREAD_UNCHANGED) is not None for p in masks)
        assert hidden_leftovers(small) == []
    assert video.read_bytes() == b"the video of an earlier run"
    assert stats.read_text() == '{"earlier": true}\n'
    lines = [json.loads(line) for line in (tmp_path / "s.incomplete.jsonl").read_text().splitlines()]
    assert len(lines) == len(masks) > 0
    # a frame has its stats line once every output has it: the video may hold the one that failed
    assert len(lines) <= video_frames(tmp_path / "o.incomplete.mp4") <= len(lines) + 1
    assert hidden_leftovers(tmp_path) == []


CLASHES = {  # the options, the paths they clash on, and the words the refusal must hold
    "--output = --stats": (lambda d, clip, m: ["--output", str(d / "x.mp4"), "--stats", str(d / "x.mp4")],
                           ("--output", "--stats", "its own path")),
    "--stats = --summary-json": (lambda d, clip, m: ["--stats", str(d / "s"), "--summary-json", str(d / "s")],
                                 ("--stats", "--summary-json", "its own path")),
    "--output = the --video file": (lambda d, clip, m: ["--output", str(clip)],
                                    ("--output", "input of this run (--video)")),
    "--stats = the --engine manifest": (lambda d, clip, m: ["--stats", str(m)],
                                        ("--stats", "input of this run (--engine)")),
    "--summary-json = the --engine model file": (lambda d, clip, m: ["--summary-json", str(_model(m))],
                                                 ("--summary-json", "input of this run (--engine)")),
    "--masks = the --video folder": (lambda d, clip, m: ["--masks", str(clip.parent)],
                                     ("--masks", "inputs of this run", "another folder")),
}


def _model(manifest: Path) -> Path:
    from artefact.manifest import load_manifest

    return load_manifest(manifest).model_path


@pytest.mark.fault("out-clash")
@pytest.mark.parametrize("clash", list(CLASHES))
def test_clashing_paths(demo_artefacts: dict[str, Path], tmp_path: Path, clash: str,
                        capsys: pytest.CaptureFixture) -> None:
    manifest = clone_artefact(demo_artefacts["onnxruntime"], tmp_path / "art")
    (tmp_path / "in").mkdir()
    clip = write_video(tmp_path / "in" / "clip.mp4", frames=5)
    before = {**artefact_state(tmp_path / "art"), "clip": clip.read_bytes()}
    paths, words = CLASHES[clash]
    code, _, err, _ = rt(["--video", str(clip), "--engine", str(manifest), *paths(tmp_path, clip, manifest)],
                      capsys)
    assert code == 2, err
    one_line(err, *words)
    assert {**artefact_state(tmp_path / "art"), "clip": clip.read_bytes()} == before


@pytest.mark.fault("out-build-read-only")
def test_build_output_read_only_or_a_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from build_engine.cli import main

    with tmpfs(tmp_path / "ro", "1m", read_only=True) as ro:
        t0 = time.monotonic()
        code = call_main(main, ["--backend", "onnxruntime", "--input-size", "96x192",
                                "--output", str(ro / "a")])
        err = capsys.readouterr().err
        assert code == 2, err
        one_line(err, "Read-only file system", "--output")
        assert time.monotonic() - t0 < 30  # no export happened
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert call_main(main, ["--output", str(blocker)]) == 2
    one_line(capsys.readouterr().err, "--output", "is a file")
    assert blocker.read_text() == "x"


@pytest.mark.fault("out-build-full")
def test_build_into_a_full_file_system(demo_artefacts: dict[str, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    from build_engine.cli import main

    with tmpfs(tmp_path / "small", "20m") as small:
        clone_artefact(demo_artefacts["onnxruntime"], small)  # 13 MB: the export cannot fit beside it
        before = artefact_state(small)
        code = call_main(main, ["--backend", "onnxruntime", "--input-size", "96x192", "--force",
                                "--output", str(small)])
        err = capsys.readouterr().err
        assert code == 1, err
        lines = [line for line in err.splitlines() if "build failed" in line]
        assert len(lines) == 1 and "nothing was changed" in lines[0] and "Traceback" not in err, err
        assert artefact_state(small) == before
        assert hidden_leftovers(small) == []


@pytest.mark.fault("out-bench-read-only")
def test_benchmark_out_read_only(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from benchmarks.latency import main

    with tmpfs(tmp_path / "ro", "1m", read_only=True) as ro:
        code = call_main(main, ["--out", str(ro / "results"), "--frames", "2", "--no-rss"])
        err = capsys.readouterr().err
        assert code == 2, err
        one_line(err, "--out", "Read-only file system")


@pytest.mark.fault("out-rtsp")
@pytest.mark.parametrize("case", ["port in use", "not this machine", "twice", "empty password"])
def test_rtsp_output_that_cannot_serve(tmp_path: Path, case: str, capsys: pytest.CaptureFixture) -> None:
    """Refused before any model work (the --engine need not even load: a manifest-less path)."""
    import socket

    from tests.rtsp_fixtures import need_rtsp_server

    need_rtsp_server()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        urls = {"port in use": [f"rtsp://127.0.0.1:{port}/seg"],
                "not this machine": ["rtsp://192.0.2.1:8554/seg"],  # TEST-NET-1: never a local address
                "twice": ["rtsp://127.0.0.1:0/a", "rtsp://127.0.0.1:0/b"],
                "empty password": ["rtsp://viewer:@127.0.0.1:0/seg"]}[case]
        engine = tmp_path / "never-loaded.json"
        engine.write_text("{}")
        argv = ["--video", "demo", "--engine", str(engine)] + [a for u in urls for a in ("--output", u)]
        code, _, err, took = rt(argv, capsys)
    assert code == 2, err
    words = {"port in use": ["in use", "port"], "not this machine": ["cannot listen", "192.0.2.1"],
             "twice": ["one rtsp:// URL"], "empty password": ["USER:PASSWORD"]}[case]
    one_line(err, *words)
    assert took < 30
