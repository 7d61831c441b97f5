"""`--output rtsp://`: the segmented stream served by GStreamer's gst-rtsp-server to real RTSP
clients (ffprobe, ffmpeg over TCP and UDP, OpenCV) while the same run writes --output file.mp4;
what the clients decode matches the file's frames of the same camera index within codec
tolerance, and a client that stops reading holds nothing up."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.faults.helpers import spawn, stop, wait_for
from tests.rtsp_fixtures import camera, cameras, stats_lines, video_frames

FRAMES_EACH = 12
TOLERANCE = 8.0  # mean |difference| per pixel and channel, 0..255: two H.264 encodings of one picture


@pytest.fixture
def ov(demo_artefacts: dict[str, Path]) -> str:
    return str(demo_artefacts["openvino"])


def _ffmpeg_client(url: str, transport: str) -> subprocess.Popen:
    return subprocess.Popen(["ffmpeg", "-nostdin", "-v", "error", "-rtsp_transport", transport, "-i", url,
                             "-frames:v", str(FRAMES_EACH), "-fps_mode", "passthrough",  # no duplicates
                             "-f", "rawvideo", "-pix_fmt", "bgr24", "-"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _raw_frames(data: bytes, w: int, h: int) -> list[np.ndarray]:
    n = len(data) // (w * h * 3)
    return [np.frombuffer(data, np.uint8, w * h * 3, i * w * h * 3).reshape(h, w, 3) for i in range(n)]


def test_three_clients_get_the_files_frames(ov: str, tmp_path: Path) -> None:
    from benchmarks.rtsp_camera import read_index

    out_dir = tmp_path / "out"
    with cameras() as stack:
        cam = stack.enter_context(camera())
        proc = spawn("runtime", "--video", cam.url(), "--engine", ov, "--reconnect", "0", "--visualize",
                     "side-by-side", "--output", str(out_dir / "o.mp4"), "--output", "rtsp://127.0.0.1:0/seg",
                     "--stats", str(out_dir / "s.jsonl"))
        err_lines: list[str] = []
        reader = threading.Thread(target=lambda: err_lines.extend(proc.stderr), daemon=True)
        reader.start()
        clients: list[subprocess.Popen] = []
        try:
            wait_for(lambda: any("serving rtsp://" in line for line in err_lines), "RTSP out", proc=proc)
            url = re.search(r"serving (rtsp://\S+)", "".join(err_lines)).group(1)
            probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                                    "stream=codec_name,width,height", "-of", "csv=p=0", url],
                                   capture_output=True, text=True, timeout=60)
            assert probe.stdout.strip() == "h264,384,96", probe.stderr
            stalled = _ffmpeg_client(url, "tcp")  # connects, then stops reading (SIGSTOP)
            clients.append(stalled)
            wait_for(lambda: stalled.poll() is not None or _has_output(stalled), "the stalled client's start")
            os.kill(stalled.pid, signal.SIGSTOP)
            clients += [_ffmpeg_client(url, "tcp"), _ffmpeg_client(url, "udp")]
            opencv: list[np.ndarray] = []
            cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
            while cap.isOpened() and len(opencv) < FRAMES_EACH:
                ok, image = cap.read()
                if not ok:
                    break
                opencv.append(image)
            cap.release()
            got = [c.communicate(timeout=120) for c in clients[1:]]
            cam.stop()  # the camera goes; with --reconnect 0 the run ends (exit 0)
            out, _ = proc.communicate(timeout=120)
        finally:
            for c in clients:
                if c.poll() is None:
                    os.kill(c.pid, signal.SIGCONT)
                    c.kill()
                    c.wait()
            stop(proc)
            reader.join(timeout=10)
    err = "".join(err_lines)
    assert proc.returncode == 0, err
    assert all(c.returncode == 0 for c in clients[1:]), [e for _, e in got]
    written = {read_index(f[:, :192]): f for f in video_frames(out_dir / "o.mp4")}
    assert len(written) == len(stats_lines(out_dir / "s.jsonl"))
    decoded = {"ffmpeg tcp": _raw_frames(got[0][0], 384, 96),
               "ffmpeg udp": _raw_frames(got[1][0], 384, 96), "opencv": opencv}
    for client, frames in decoded.items():
        assert len(frames) == FRAMES_EACH, (client, len(frames))
        indices = [read_index(f[:, :192]) for f in frames]
        assert None not in indices and indices == sorted(set(indices)), (client, indices)
        for index, frame in zip(indices, frames):
            assert index in written, (client, index)
            diff = np.abs(frame.astype(np.int16) - written[index]).mean()
            assert diff < TOLERANCE, (client, index, diff)
    at_once = re.search(r"up to (\d+) client\(s\) at once", out)
    assert at_once and int(at_once.group(1)) >= 3, out  # the stalled one stayed connected all along


def _has_output(proc: subprocess.Popen) -> bool:
    """True once the client has bytes of a decoded frame waiting for us (it is playing)."""
    import select

    return bool(select.select([proc.stdout], [], [], 0)[0])
