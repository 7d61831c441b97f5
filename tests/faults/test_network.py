"""Network sources that refuse, stall or end: each must end the run within its timeout with one
line that says what happened and how long it took. Real sockets and servers on 127.0.0.1."""

from __future__ import annotations

import http.server
import itertools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.faults import helpers
from tests.faults.helpers import free_port, last_line, needs_ffmpeg, one_line, rt, wait_for
from tests.rtsp_fixtures import CAMERA_FPS, burned_indices, camera, cameras, stats_lines


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never says a word (a hung camera, a black-holed proxy)."""
    with helpers.silent_server() as silent:
        yield silent.port


@pytest.mark.fault("net-refused", "seen-timeout-duration")
@pytest.mark.parametrize("scheme", ["rtsp", "tcp", "http"])
def test_refused_connection(ov: str, scheme: str, capsys: pytest.CaptureFixture) -> None:
    url = f"{scheme}://127.0.0.1:{free_port()}/stream"
    code, _, err, took = rt(["--video", url, "--engine", ov, "--timeout", "10"], capsys)
    assert code == 2, err
    line = one_line(err, url)
    assert "within 10 s" not in line  # it did not wait 10 s, and must not say it did
    assert "after 0." in line or "after 1." in line
    assert took < 10


@pytest.mark.fault("net-stall-open")
@pytest.mark.parametrize("scheme", ["http", "rtsp"])
def test_server_that_never_answers(ov: str, silent_server: int, scheme: str,
                                   capsys: pytest.CaptureFixture) -> None:
    url = f"{scheme}://127.0.0.1:{silent_server}/stream"
    code, _, err, took = rt(["--video", url, "--engine", ov, "--timeout", "1"], capsys)
    assert code == 2, err
    one_line(err, url, "within 1 s")
    assert took < 15  # ~1 s of waiting, plus the start-up of this run


@pytest.mark.fault("net-stall-open")
def test_udp_with_no_sender(ov: str, capsys: pytest.CaptureFixture) -> None:
    url = f"udp://127.0.0.1:{free_port()}"
    code, _, err, took = rt(["--video", url, "--engine", ov, "--timeout", "1"], capsys)
    assert code == 2, err
    one_line(err, url, "within 1 s", "sender")
    assert took < 15


class _Files(http.server.BaseHTTPRequestHandler):
    """Serves `body` as video/mp4 with its full Content-Length; `cut` sends only the first half,
    then closes ('close') or holds the connection silent ('stall')."""

    body = b""
    cut = ""

    def log_message(self, *args: object) -> None:
        pass

    def _head(self, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()

    def do_HEAD(self) -> None:
        if self.path != "/clip.mp4":
            self.send_error(404)
            return
        self._head()

    def do_GET(self) -> None:
        if self.path != "/clip.mp4":
            self.send_error(404)
            return
        self._head()
        data = self.body[: len(self.body) // 2] if self.cut else self.body
        try:
            self.wfile.write(data)
            self.wfile.flush()
            if self.cut == "stall":
                time.sleep(30)
        except OSError:
            pass


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[type[_Files]]:
    from runtime.sinks import VideoSink

    sink = VideoSink(tmp_path / "clip.mp4", 10)  # H.264 with the index in front (+faststart)
    sink.open((96, 48))
    rng = np.random.default_rng(2)
    for _ in range(60):
        sink.write(rng.integers(0, 255, (48, 96, 3), dtype=np.uint8))
    sink.close()
    handler = type("Files", (_Files,), {"body": (tmp_path / "clip.mp4").read_bytes(), "cut": ""})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.fault("net-http-errors")
def test_http_404(ov: str, file_server: type[_Files], capsys: pytest.CaptureFixture) -> None:
    code, _, err, _ = rt(["--video", f"{file_server.url}/nope.mp4", "--engine", ov], capsys)
    assert code == 2, err
    one_line(err, "HTTP 404")


@needs_ffmpeg
@pytest.mark.fault("net-remote-file-cut")
@pytest.mark.parametrize("cut", ["close", "stall"])
def test_remote_file_cut_half_way(ov: str, file_server: type[_Files], tmp_path: Path, cut: str,
                                  capsys: pytest.CaptureFixture) -> None:
    file_server.cut = cut
    stats = tmp_path / "s.jsonl"
    code, out, err, took = rt(["--video", f"{file_server.url}/clip.mp4", "--engine", ov, "--timeout", "2",
                               "--stats", str(stats)], capsys)
    assert code == 1, err
    last_line(err, "ended after", "of the 60 frames")  # after a warning about the first decode failure
    frames = [json.loads(line)["frame"] for line in stats.read_text().splitlines()]
    assert 0 < len(frames) < 60 and frames == list(range(len(frames)))  # whole, in order
    assert " processed," in out
    assert took < 60  # a stalled server costs its read timeouts, never a hang


# -- a real RTSP camera (GStreamer's gst-rtsp-server, tests/rtsp_fixtures.py) -------------------------
PASSWORD = "Right-Pw-7q"  # the camera's
WRONG = "Wrong-Pw-3x"


@pytest.mark.fault("net-rtsp-refusals")
@pytest.mark.parametrize("case, words", [
    ("wrong path", ["404", "check the path"]),
    ("wrong password, Basic", ["401", "user name and password", "rtsp://viewer:***@127.0.0.1:"]),
    ("wrong password, Digest", ["401", "user name and password", "rtsp://viewer:***@127.0.0.1:"]),
    ("no credentials", ["401", "user name and password"]),
    ("transport not offered", ["461", "--rtsp-transport"]),
])
def test_rtsp_camera_refuses(ov: str, case: str, words: list[str], capsys: pytest.CaptureFixture) -> None:
    options: dict = {"protocols": "tcp"} if case.startswith("transport") else {}
    if "password" in case or case == "no credentials":
        options |= {"credentials": f"viewer:{PASSWORD}", "auth": "digest" if "Digest" in case else "basic"}
    extra = ["--rtsp-transport", "udp"] if case.startswith("transport") else []
    with cameras() as stack:
        cam = stack.enter_context(camera(**options))
        url = cam.url(f"viewer:{WRONG}" if "password" in case else None)
        if case == "wrong path":
            url += "-nope"
        code, out, err, took = rt(["--video", url, *extra, "--engine", ov, "--timeout", "10"], capsys)
    assert code == 2, err
    line = one_line(err, *words)
    assert "after 0." in line or "after 1." in line, line
    assert took < 10
    assert PASSWORD not in out + err and WRONG not in out + err


@pytest.mark.fault("net-rtsp-lost")
def test_camera_reboot_reconnects_then_lost_for_good(ov: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    """Killed (SIGKILL of its server, by PID) mid-stream and restarted on the same port 1.5 s later:
    the run reconnects, and the frames the camera numbered while down are counted as lost. Killed
    for good: after its --reconnect attempts (5, from 0.2 s doubling) the run ends with exit 1,
    one error line, the outputs whole."""
    stats = tmp_path / "s.jsonl"

    def lines() -> int:
        return len(stats.read_text().splitlines()) if stats.exists() else 0

    with cameras() as stack:
        cam = stack.enter_context(camera())
        done = threading.Event()
        marks: dict[str, float] = {}

        def reboot_then_die() -> None:
            try:
                wait_for(lambda: lines() >= 8 or done.is_set(), "frames before the reboot", timeout=120)
                cam.kill()
                marks["down"] = time.time()
                time.sleep(1.5)
                cam.start()
                marks["up"] = time.time()
                before = lines()
                wait_for(lambda: lines() >= before + 8 or done.is_set(), "frames after the reboot",
                         timeout=120)
                cam.kill()
            finally:
                done.set()

        thread = threading.Thread(target=reboot_then_die, daemon=True)
        thread.start()
        code, _, err, _ = rt(["--video", cam.url(), "--engine", ov, "--reconnect", "5",
                                 "--reconnect-delay", "0.2", "--timeout", "3", "--visualize", "side-by-side",
                                 "--output", str(tmp_path / "o.mp4"), "--stats", str(stats),
                                 "--summary-json", str(tmp_path / "sum.json")], capsys)
        done.set()
        thread.join(timeout=30)
    assert "up" in marks, err
    assert code == 1, err
    last_line(err, "rtsp://127.0.0.1", "was lost", "5 reconnect attempt(s) failed")
    summary = json.loads((tmp_path / "sum.json").read_text())
    assert summary["reconnects"] >= 1
    assert summary["end_reason"] == "stream lost; 5 reconnect attempt(s) failed"
    from runtime.sources import LOST

    lost = summary["dropped"].get(LOST, 0)
    indices = burned_indices(tmp_path / "o.mp4")  # the outputs are whole and agree
    assert None not in indices and len(indices) == len(stats_lines(stats)) and indices == sorted(indices)
    # the outage is the widest jump between written frames: the frames the camera numbered while
    # its server was down were lost, and no more than those between the two written frames (give
    # or take 3: the count comes from arrival times, and FFmpeg holds two frames of each session)
    before, after = max(itertools.pairwise(indices), key=lambda pair: pair[1] - pair[0])
    down = (marks["up"] - marks["down"]) * CAMERA_FPS
    assert 0.9 * down <= lost <= after - before - 1 + 3, (lost, down, before, after)
