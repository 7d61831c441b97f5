"""Video-aware inference: motion, scheduler, the wrapping backend, the CLI and the benchmark,
on real components (OpenCV DIS, the tiny OpenVINO artefact, the street generator)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.cli import main
from runtime.temporal.config import parse_temporal
from runtime.temporal.motion import MotionEstimator
from runtime.temporal.scheduler import Adaptive, FixedInterval
from segdata.dynamics import PRESETS, Dynamics
from segdata.synthetic import StreetClip
from tests.conftest import TINY_SIZE
from tests.test_runtime_cli import ROOT, check_masks, free_udp_port, needs_ffmpeg, read_stats, run_cli

H, W = TINY_SIZE


@pytest.fixture
def ov(demo_artefacts: dict[str, Path]) -> str:
    return str(demo_artefacts["openvino"])


def street(seed: int, n: int, kind: str = "normal") -> list[np.ndarray]:
    clip = StreetClip(seed, H, W, n, dynamics=PRESETS[kind])
    return [clip[i][0] for i in range(n)]


# ------------------------------------------------------------------------------ generator
def test_default_dynamics_render_the_original_clip_and_presets_differ() -> None:
    plain, explicit = StreetClip(4, 48, 96, 8), StreetClip(4, 48, 96, 8, dynamics=Dynamics())
    for i in (0, 5):
        assert plain[i][0].tobytes() == explicit[i][0].tobytes()
        assert plain[i][1].tobytes() == explicit[i][1].tobytes()
    fast_a, fast_b = StreetClip(4, 48, 96, 8, dynamics=PRESETS["fast"]), StreetClip(4, 48, 96, 8,
                                                                                     dynamics=PRESETS["fast"])
    assert fast_a[5][0].tobytes() == fast_b[5][0].tobytes()  # deterministic per (seed, frame)
    assert fast_a[5][1].tobytes() != plain[5][1].tobytes()  # twice the speed, panned, shaken


def test_dynamics_are_validated_and_named() -> None:
    with pytest.raises(ValueError, match="speed_scale"):
        Dynamics(speed_scale=-1)
    assert Dynamics().tag() == "" and Dynamics().is_default
    assert Dynamics(traffic=2.0, crossers=3.0).tag() == "traffic2-crossers3"


def test_busy_clip_has_people_crossing_the_road() -> None:
    from segdata.synthetic import _crosser_at, _crossers, _make_scene

    scene = _make_scene(11, PRESETS["busy"])
    people = [o for k in range(3) for o in _crossers(scene, k)]
    assert people, "crossers expected with Dynamics.crossers > 0"
    left, right = -scene.sides[-1].road, scene.sides[1].road
    for o in people:  # they walk between the kerbs, and they do move
        xs = [_crosser_at(o, t).x for t in np.linspace(0, 20, 41)]
        assert left - 1e-6 <= min(xs) and max(xs) <= right + 1e-6 and max(xs) - min(xs) > 1.0
    assert not _crossers(_make_scene(11), 0)  # none by default


# --------------------------------------------------------------------------------- motion
def test_flow_moves_labels_with_the_picture() -> None:
    frame = street(3, 1)[0]
    shift = 5
    moved = np.ascontiguousarray(np.roll(frame, shift, axis=1))
    labels = (np.arange(W)[None, :].repeat(H, 0) // 16).astype(np.uint8)  # vertical bands
    est = MotionEstimator(0.5)
    motion = est.estimate(est.thumb(frame), est.thumb(moved), W)
    warped = est.warp_labels(labels, motion)
    inner = np.s_[8:-8, 16:-16]
    assert np.mean(warped[inner] == np.roll(labels, shift, axis=1)[inner]) > 0.9
    assert 3.0 < motion.magnitude < 7.0
    assert motion.bad_share < 0.2


def test_blend_takes_each_pixel_from_the_key_frame_that_explains_it() -> None:
    a, b, c = street(5, 3)
    est = MotionEstimator(0.5)
    ta, tb, tc = est.thumb(a), est.thumb(b), est.thumb(c)
    m_before, m_after = est.estimate(ta, tb, W), est.estimate(tc, tb, W)
    zeros, ones = np.zeros((H, W), np.uint8), np.ones((H, W), np.uint8)
    blend = est.blend_labels(zeros, ones, m_before, m_after)
    expected = cv2.resize((m_after.error < m_before.error).astype(np.uint8), (W, H),
                          interpolation=cv2.INTER_NEAREST)
    assert np.array_equal(blend, expected)


# ------------------------------------------------------------------------------ scheduler
def test_fixed_interval_and_adaptive_bounds() -> None:
    fixed = FixedInterval(3)
    assert fixed.needs_key_now(None).reason == "first"
    assert fixed.needs_key_now(1) is None and fixed.needs_key_now(2) is None
    assert fixed.needs_key_now(3).reason == "interval"
    adaptive = Adaptive(0.1, max_interval=4)
    assert adaptive.needs_key_now(3) is None
    assert adaptive.needs_key_now(4).reason == "max-interval"
    assert adaptive.is_cut(0.9) and not adaptive.is_cut(0.05)


@pytest.mark.parametrize("mode, extra, fragment", [
    ("sometimes", {}, "--temporal 'sometimes'"),
    ("fixed:0", {}, "--temporal fixed:N"),
    ("fixed:x", {}, "--temporal fixed:N"),
    ("adaptive", {"threshold": "abc"}, "--temporal-threshold"),
    ("adaptive", {"max_interval": "0"}, "--temporal-max-interval"),
    ("adaptive", {"flow_scale": "2"}, "--temporal-flow-scale"),
    ("adaptive", {"direction": "sideways"}, "--temporal-direction"),
    ("off", {"threshold": "0.1"}, "need --temporal adaptive"),
])
def test_bad_temporal_values_are_usage_errors(mode: str, extra: dict, fragment: str) -> None:
    from runtime.errors import UsageError

    with pytest.raises(UsageError, match=fragment.replace("(", r"\(")) as info:
        parse_temporal(mode, **extra)
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------- wrapping backend
def drive(backend, frames: list[np.ndarray]) -> tuple[list[np.ndarray], list[dict]]:
    """Submit/collect as the pipeline does for a file: keep the slots full, collect in order."""
    out, facts = [], []
    for i, frame in enumerate(frames):
        while backend.in_flight >= backend.max_in_flight:
            tag, labels = backend.collect()
            out.append((tag, labels))
            facts.append(dict(backend.last_fields, tag=tag, **backend.last_stage_ms))
        backend.submit(frame, i)
    while backend.in_flight:
        tag, labels = backend.collect()
        out.append((tag, labels))
        facts.append(dict(backend.last_fields, tag=tag, **backend.last_stage_ms))
    assert [t for t, _ in out] == list(range(len(frames)))  # every frame back, in order
    return [labels for _, labels in out], facts


def test_fixed_interval_wraps_a_real_backend(ov: str) -> None:
    from runtime.backends import load_backend
    from runtime.temporal.backend import TemporalBackend

    frames = street(7, 10)
    with load_backend(ov, hint="throughput") as engine:
        every = [engine.infer(f) for f in frames]
        backend = TemporalBackend(engine, parse_temporal("fixed:3"))
        masks, facts = drive(backend, frames)
        assert [f["key"] for f in facts] == [i % 3 == 0 for i in range(10)]
        for i in (0, 3, 6, 9):  # key frames are exactly the engine's result
            assert np.array_equal(masks[i], every[i])
        assert {f.get("direction") for f in facts if not f["key"]} == {"both"}
        assert all(m.shape == (H, W) and m.dtype == np.uint8 for m in masks)
        assert all(f["scheduler"] >= 0 for f in facts)
        info = backend.describe()["temporal"]
        assert info["key_frames"] == 4 and info["reasons"] == {"first": 1, "interval": 3, "propagated": 6}
        # forward only (live sources): nothing waits for the next key frame
        forward = TemporalBackend(engine, parse_temporal("fixed:3"), live=True)
        _, facts = drive(forward, frames)
        assert {f.get("direction") for f in facts if not f["key"]} == {"forward"}
        # the blocking call goes through the scheduler too
        assert forward.infer(frames[0]).shape == (H, W)


def test_adaptive_catches_a_scene_cut_and_keeps_its_max_interval(ov: str) -> None:
    from runtime.backends import load_backend
    from runtime.temporal.backend import TemporalBackend

    frames = street(8, 8) + street(9, 8)  # a hard cut before frame 8
    with load_backend(ov, hint="throughput") as engine:
        backend = TemporalBackend(engine, parse_temporal("adaptive", threshold="5", max_interval="3"))
        _, facts = drive(backend, frames)
    assert facts[8]["key"] and facts[8]["reason"] == "scene-cut"
    keys = [i for i, f in enumerate(facts) if f["key"]]
    assert max(np.diff(keys)) <= 3  # a huge threshold never fires: the max interval does
    assert "max-interval" in {f["reason"] for f in facts}
    before_cut = facts[7]
    assert before_cut["key"] or before_cut["direction"] == "forward"  # not warped across the cut


# ------------------------------------------------------------------------------------ CLI
def test_demo_with_adaptive_mode_says_which_frames_were_key(ov: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    code = main(["--video", "demo", "--demo-frames", "12", "--engine", ov, "--temporal", "adaptive",
                 "--masks", str(tmp_path / "m"), "--stats", str(tmp_path / "s.jsonl"),
                 "--summary-json", str(tmp_path / "sum.json")])
    assert code == 0
    assert check_masks(tmp_path / "m", (H, W)) == [f"{i:06d}.png" for i in range(12)]
    stats = read_stats(tmp_path / "s.jsonl")
    assert [s["frame"] for s in stats] == list(range(12))
    assert stats[0]["key"] is True and stats[0]["reason"] == "first"
    assert all(isinstance(s["key"], bool) and s["reason"] and s["scheduler_ms"] >= 0 for s in stats)
    summary = capsys.readouterr().out
    assert "temporal" in summary and "key frames" in summary and "scheduler" in summary
    info = json.loads((tmp_path / "sum.json").read_text())["backend"]["temporal"]
    assert info["frames"] == 12 and sum(info["reasons"].values()) == 12


def write_street_video(path: Path, frames: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 15, (W, H))
    assert writer.isOpened()
    for image in street(12, frames):
        writer.write(image)
    writer.release()
    return path


def test_video_file_with_fixed_interval_is_lossless_and_in_order(ov: str, tmp_path: Path) -> None:
    clip = write_street_video(tmp_path / "drive.mp4", 14)
    code = main(["--video", str(clip), "--engine", ov, "--temporal", "fixed:4",
                 "--masks", str(tmp_path / "m"), "--stats", str(tmp_path / "s.jsonl")])
    assert code == 0
    assert check_masks(tmp_path / "m", (H, W)) == [f"{i:06d}.png" for i in range(14)]
    stats = read_stats(tmp_path / "s.jsonl")
    assert [s["key"] for s in stats] == [i % 4 == 0 for i in range(14)]
    # files: the same masks on every run (a propagated frame never leaves before its next key frame)
    for run in ("a", "b"):
        assert main(["--video", str(clip), "--engine", ov, "--temporal", "adaptive",
                     "--masks", str(tmp_path / run)]) == 0
    for name in check_masks(tmp_path / "a", (H, W)):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_bad_temporal_option_exits_2_with_one_line(ov: str) -> None:
    r = run_cli("--video", "demo", "--engine", ov, "--temporal", "fixed:0")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pspnet-rt: ")
    assert "--temporal fixed:N: expected a value from 1 to 1000, got 0" in lines[0]


def test_several_streams_get_key_frames_of_their_own(ov: str, tmp_path: Path) -> None:
    """One engine, a scheduler per stream: each stream's masks are the ones it gets alone."""
    clip = write_street_video(tmp_path / "drive.mp4", 14)
    common = ["--engine", ov, "--temporal", "adaptive", "--demo-frames", "12"]
    code = main(["--video", "city=demo", "--video", f"drive={clip}", *common, "--masks", str(tmp_path / "m"),
                 "--stats", str(tmp_path / "s.jsonl"), "--summary-json", str(tmp_path / "sum.json")])
    assert code == 0
    for name, src, n in (("city", "demo", 12), ("drive", str(clip), 14)):
        assert main(["--video", src, *common, "--masks", str(tmp_path / f"alone-{name}")]) == 0
        alone = check_masks(tmp_path / f"alone-{name}", (H, W))
        assert check_masks(tmp_path / "m" / name, (H, W)) == alone and len(alone) == n
        for png in alone:
            together, by_itself = (tmp_path / "m" / name / png), (tmp_path / f"alone-{name}" / png)
            assert together.read_bytes() == by_itself.read_bytes(), (name, png)
        records = [r for r in read_stats(tmp_path / "s.jsonl") if r["stream"] == name]
        assert [r["frame"] for r in records] == list(range(n)) and records[0]["reason"] == "first"
        assert all(isinstance(r["key"], bool) and r["scheduler_ms"] >= 0 for r in records)
    info = json.loads((tmp_path / "sum.json").read_text())["backend"]["temporal"]
    assert {name: t["frames"] for name, t in info.items()} == {"city": 12, "drive": 14}


def test_help_explains_the_temporal_mode() -> None:
    r = run_cli("--help")
    assert r.returncode == 0
    for words in ("--temporal MODE", "fixed:N", "adaptive", "--temporal-threshold", "--temporal-max-interval",
                  "--temporal-flow-scale", "--temporal-direction", "benchmarks.temporal"):
        assert words in r.stdout, words


@needs_ffmpeg
def test_udp_stream_with_adaptive_mode(ov: str, tmp_path: Path) -> None:
    """A live H.264/MPEG-TS stream from a local ffmpeg: forward propagation, stats per frame."""
    port = free_udp_port()
    send = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
            f"testsrc=size={W}x{H}:rate=15", "-t", "120", "-c:v", "libx264", "-preset", "ultrafast", "-tune",
            "zerolatency", "-g", "5", "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"]
    sender = subprocess.Popen(send, stdin=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        r = subprocess.run([sys.executable, "-m", "runtime", "--video", f"udp://127.0.0.1:{port}",
                            "--engine", ov, "--temporal", "adaptive", "--max-frames", "20", "--timeout", "20",
                            "--masks", str(tmp_path / "m"), "--stats", str(tmp_path / "s.jsonl"),
                            "--summary-json", str(tmp_path / "sum.json")],
                           cwd=ROOT, capture_output=True, text=True, timeout=180,
                           env={**os.environ, "OPENCV_FFMPEG_CAPTURE_OPTIONS": "analyzeduration;500000"})
    finally:
        sender.terminate()
        sender.wait(timeout=30)
    assert r.returncode == 0, r.stderr
    stats = read_stats(tmp_path / "s.jsonl")
    # live: a frame that waited while a newer one arrived is dropped as stale, never queued
    assert 10 <= len(stats) <= 20 and len(check_masks(tmp_path / "m", (H, W))) == len(stats)
    assert [s["frame"] for s in stats] == sorted(s["frame"] for s in stats)
    assert stats[0]["key"] and all("reason" in s for s in stats)
    info = json.loads((tmp_path / "sum.json").read_text())["backend"]["temporal"]
    assert info["direction"] == "forward"  # live: nothing waits for a later key frame


# ------------------------------------------------------------------------------ benchmark
def test_temporal_benchmark_writes_json_md_png(ov: str, tmp_path: Path) -> None:
    from benchmarks.temporal import main as bench

    code = bench(["--engine", ov, "--frames", "10", "--reps", "1", "--clips", "3", "--no-logits",
                  "--out", str(tmp_path)])
    assert code == 0
    result = json.loads((tmp_path / "temporal.json").read_text())
    modes = {r["mode"] for r in result["rows"]}
    assert {"off", "fixed:2", "fixed:8"} <= modes and any(m.startswith("adaptive@") for m in modes)
    assert {r["kind"] for r in result["rows"]} == {"normal", "fast", "busy"}
    for r in result["rows"]:
        assert 0 < r["miou"] <= 1 and r["fps"] > 0 and 0 < r["key_share"] <= 1
        if r["mode"] == "off":
            assert r["miou_drop_points"] == 0 and r["key_share"] == 1
    assert result["scene_cut"]["caught"]
    assert result["scheduler_cost"]["key_frame_inference_ms"]["p50"] > 0
    assert (tmp_path / "temporal.png").stat().st_size > 10_000
    assert "speed-up" in (tmp_path / "temporal.md").read_text()

