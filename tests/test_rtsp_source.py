"""rtsp:// sources against a real RTSP server (GStreamer's gst-rtsp-server on 127.0.0.1,
tests/rtsp_fixtures.py): frames arrive over TCP and UDP and are segmented like the frames the
camera sent, latency does not creep, a camera that reboots is reconnected with the frames it
sent meanwhile counted as drops (tests/faults/test_network.py, with the cameras that refuse),
and one process reads two streams of one camera and four cameras at once."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.faults.helpers import rt, wait_for
from tests.rtsp_fixtures import CAMERA_FPS, burned_indices, camera, cameras, clip, stats_lines


@pytest.fixture
def ov(demo_artefacts: dict[str, Path]) -> str:
    return str(demo_artefacts["openvino"])


def _engine_labels(engine: str, images: list[np.ndarray]) -> list[np.ndarray]:
    """What the artefact makes of the frames the camera sent (before H.264)."""
    from runtime.backends import load_backend
    from segdata.frames import labels_to_size, to_model_input

    with load_backend(engine) as backend:
        out = []
        for image in images:
            h, w = backend.input_hw(image.shape[:2])
            out.append(labels_to_size(backend.infer(to_model_input(image, h, w)), *image.shape[:2]))
    return out


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_frames_arrive_and_are_segmented(ov: str, tmp_path: Path, transport: str,
                                         capsys: pytest.CaptureFixture) -> None:
    """The camera offers only `transport`; --rtsp-transport asks for it. Every written frame is one
    the camera sent, in order, and its mask matches the artefact's labels of the sent frame."""
    import cv2

    from benchmarks.rtsp_camera import burn_index

    with cameras() as stack:
        cam = stack.enter_context(camera(protocols=transport))
        code, out, err, _ = rt(["--video", cam.url(), "--rtsp-transport", transport, "--engine", ov,
                                "--max-frames", "25", "--visualize", "side-by-side", "--output",
                                str(tmp_path / "o.mp4"), "--masks", str(tmp_path / "m"), "--stats",
                                str(tmp_path / "s.jsonl")], capsys)
    assert code == 0, err
    lines = stats_lines(tmp_path / "s.jsonl")
    indices = burned_indices(tmp_path / "o.mp4")
    # --max-frames counts frames taken from a live source; those replaced by newer ones are drops
    assert len(lines) == len(indices) >= 3
    assert None not in indices and indices == sorted(set(indices)), indices  # the camera's frames, in order
    assert all(i in cam.sent for i in indices)
    sent = [burn_index(np.array(clip()[i % len(clip())]), i) for i in indices[-3:]]
    for line, want in zip(lines[-3:], _engine_labels(ov, sent)):
        got = cv2.imread(str(tmp_path / "m" / f"{line['frame']:06d}.png"), cv2.IMREAD_UNCHANGED)
        assert got.shape == want.shape
        assert (got == want).mean() > 0.9  # H.264 both ways moves a few edge pixels, no more
    assert "stream rtsp://127.0.0.1:" in out


@pytest.mark.slow
def test_latency_does_not_creep(ov: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """16 s of a 25 fps camera (the 60 s proof with p50/p99 against a file is
    `python -m benchmarks.rtsp`): glass-to-mask latency, from the camera handing frame k to its
    server to pspnet-rt writing its mask, in the last third is no worse than in the first
    (the first 2 s, frames FFmpeg buffered while opening, left out). The camera then stops
    and, with --reconnect 0, so does the run (exit 0)."""
    seconds, settle = 16.0, 2.0
    with cameras() as stack:
        cam = stack.enter_context(camera())
        stopper = threading.Timer(seconds, cam.stop)
        stopper.start()
        try:
            code, _, err, _ = rt(["--video", cam.url(), "--engine", ov, "--reconnect", "0", "--timeout", "5",
                                  "--visualize", "side-by-side", "--output", str(tmp_path / "o.mp4"),
                                  "--stats", str(tmp_path / "s.jsonl")], capsys)
        finally:
            stopper.cancel()
    assert code == 0, err
    lines = stats_lines(tmp_path / "s.jsonl")
    indices = burned_indices(tmp_path / "o.mp4")
    assert len(indices) == len(lines) and None not in indices
    latency = [(line["time"], (line["time"] - cam.sent[i]) * 1e3) for line, i in zip(lines, indices)]
    t0 = latency[0][0] + settle
    span = (latency[-1][0] - t0) / 3
    first = [ms for t, ms in latency if t0 <= t < t0 + span]
    last = [ms for t, ms in latency if t >= t0 + 2 * span]
    assert len(first) >= 5 and len(last) >= 5, (len(first), len(last))
    interval = 1e3 / CAMERA_FPS
    p50 = [float(np.percentile(x, 50)) for x in (first, last)]
    p99 = [float(np.percentile(x, 99)) for x in (first, last)]
    # the benchmark's bound (1.2x) plus one frame interval of slack for this machine's neighbours
    assert p99[1] <= 1.2 * p99[0] + interval, (p50, p99)
    assert p50[1] <= p50[0] + interval, (p50, p99)
    # and no backlog anywhere: a frame's mask is written within a few frame intervals of its sending
    assert p50[1] < 1000, (p50, p99)


def test_four_cameras_and_two_readers_of_one(ov: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Five streams in one process sharing one backend: four cameras, and camera 0 read a second
    time (its server then serves two clients from one encoder). Each stream gets its own
    camera's frames (each camera numbers its frames from its own offset). With --output rtsp://
    one RTSP server serves every stream at PATH/NAME."""
    with cameras() as stack:
        # 10 fps: five decoders, five encoders and the model on two shared cores
        cams = [stack.enter_context(camera(path=f"/cam{j}", index_offset=10_000 * j, fps=10))
                for j in range(4)]
        videos = [f"c{j}={c.url()}" for j, c in enumerate(cams)] + [f"again={cams[0].url()}"]
        argv = [a for v in videos for a in ("--video", v)]
        # TCP and UDP each have their own test above
        code, out, err, _ = rt([*argv, "--rtsp-transport", "tcp", "--engine", ov, "--max-frames", "12",
                                "--visualize", "side-by-side",
                                "--output", str(tmp_path / "o.mp4"), "--output", "rtsp://127.0.0.1:0/seg",
                                "--stats", str(tmp_path / "s.jsonl")], capsys)
        most_clients = [c.server.most_clients for c in cams]
    assert code == 0, err
    streams = {"c0": 0, "c1": 1, "c2": 2, "c3": 3, "again": 0}
    per_stream: dict[str, int] = {}
    for line in stats_lines(tmp_path / "s.jsonl"):
        per_stream[line["stream"]] = per_stream.get(line["stream"], 0) + 1
    assert set(per_stream) == set(streams) and min(per_stream.values()) >= 2, per_stream
    for name, j in streams.items():
        indices = burned_indices(tmp_path / f"o-{name}.mp4")
        assert len(indices) == per_stream[name] and None not in indices, (name, indices)
        assert all(10_000 * j <= i < 10_000 * (j + 1) for i in indices), (name, indices)
        assert indices == sorted(set(indices))
    # camera 0 served both readers at once (a reader that lost its stream under load and reconnected
    # can make a camera count one more)
    assert most_clients[0] >= 2 and min(most_clients[1:]) >= 1, most_clients
    assert "5 streams" in out
    served = re.search(r"serving (rtsp://127\.0\.0\.1:\d+)/seg/c0, (.*) \(H\.264", err)
    assert served and served.group(2).split(", ") == [f"{served.group(1)}/seg/{n}" for n in list(streams)[1:]]
    assert re.search(r"rtsp out +rtsp://127\.0\.0\.1:\d+/seg: \d+ frames", out), out


PASSWORD = "Cam-Pw-5k2v"


def _get(url: str, limit: int = 1 << 20) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:  # /events never ends: read a piece
        return response.read(limit).decode(errors="replace")


def _bag_texts(path: Path) -> list[str]:
    """Every record of an MCAP bag as text (messages decompressed by the mcap library)."""
    from mcap.reader import make_reader

    with open(path, "rb") as fh:
        reader = make_reader(fh)
        texts = [repr(m) for m in reader.iter_metadata()] + [repr(reader.get_summary())]
        texts += [f"{channel!r} {message.data.decode('latin-1')}"
                  for _, channel, message in reader.iter_messages()]
    return texts


def test_credentials_work_and_never_leak(ov: str, tmp_path: Path) -> None:
    """rtsp://viewer:PASSWORD@ against a camera that requires them (Basic): the run works, and the
    password is in none of its outputs - stdout, stderr at -v, --stats, --summary-json, the live
    page, /stats, /events and /metrics (read while it runs), the --bag (every record, read back
    by the mcap library), the video and mask names."""
    import importlib.util
    import re
    import subprocess

    from tests.faults.helpers import spawn, stop

    out_dir = tmp_path / "out"
    has_ros = all(importlib.util.find_spec(m) for m in ("rosbags", "mcap"))
    bag = ["--bag", str(out_dir / "seg.mcap")] if has_ros else []  # the ros extra
    with cameras() as stack:
        cam = stack.enter_context(camera(credentials=f"viewer:{PASSWORD}", auth="basic"))
        stats = out_dir / "s.jsonl"
        proc = spawn("runtime", "--video", cam.url(f"viewer:{PASSWORD}"), "--engine", ov, "--serve", "0",
                     "--max-frames", "150", "--stats", str(stats), "--summary-json",
                     str(out_dir / "sum.json"), "--output", str(out_dir / "o.mp4"),
                     "--masks", str(out_dir / "m"), "-v", *bag)
        err_lines: list[str] = []
        reader = threading.Thread(target=lambda: err_lines.extend(proc.stderr), daemon=True)
        reader.start()
        pages = []
        try:
            wait_for(lambda: any("live view http" in line for line in err_lines), "the live view", proc=proc)
            base = re.search(r"live view (http://\S+?)/?\s", "".join(err_lines)).group(1)
            wait_for(lambda: stats.exists() and len(stats.read_text().splitlines()) >= 3, "frames", proc=proc)
            pages = [_get(f"{base}{path}", 8192 if path == "/events" else 1 << 20)
                     for path in ("/", "/stats", "/metrics", "/events")]
            out, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            stop(proc)
            raise
        finally:
            stop(proc)
            reader.join(timeout=10)
    err = "".join(err_lines)
    assert proc.returncode == 0, err
    assert len(stats.read_text().splitlines()) >= 3
    summary = (out_dir / "sum.json").read_text()
    assert "rtsp://viewer:***@127.0.0.1:" in summary  # named, password hidden
    names = " ".join(str(p) for p in out_dir.rglob("*"))
    bag_texts = _bag_texts(out_dir / "seg.mcap") if bag else []
    assert not bag or len(bag_texts) > 3
    for text in (out, err, stats.read_text(), summary, names, *pages, *bag_texts):
        assert PASSWORD not in text
    assert all(pages) and "pspnet" in pages[2]  # the pages were really read (/metrics has our metrics)


def test_digest_credentials(ov: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The same camera with Digest authentication: frames arrive and are written."""
    with cameras() as stack:
        cam = stack.enter_context(camera(credentials=f"viewer:{PASSWORD}", auth="digest"))
        code, out, err, _ = rt(["--video", cam.url(f"viewer:{PASSWORD}"), "--engine", ov,
                                "--max-frames", "10", "--stats", str(tmp_path / "s.jsonl")], capsys)
    assert code == 0, err
    assert stats_lines(tmp_path / "s.jsonl") and PASSWORD not in out + err
