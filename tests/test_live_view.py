"""The live view's server on real sockets: endpoints, token, limits, stalled viewers, shutdown.

A real LiveServer on 127.0.0.1 (port 0) is fed rendered frames by a thread standing in for
the pipeline's write stage (the real Renderer on moving label maps); the CLI and the browser
tests run the whole pspnet-rt. Everything here is bounded in time by socket timeouts.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("prometheus_client", reason="the serve extra (prometheus_client) is not installed")
from prometheus_client.parser import text_string_to_metric_families

from runtime.cli import main
from runtime.live.address import is_loopback, parse_bind
from runtime.live.server import LiveServer
from runtime.render import Renderer
from runtime.stats import RunStats
from segdata.labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE

ROOT = Path(__file__).resolve().parents[1]
H, W = 96, 192
CLASSES, PALETTE = list(CITYSCAPES_CLASSES), [list(p) for p in CITYSCAPES_PALETTE]


class Feeder:
    """Writes rendered frames into a stream the way the pipeline's write stage does."""

    def __init__(self, stream, stats: RunStats | None = None) -> None:
        self.stream, self.stats = stream, stats or RunStats()
        self.renderer = Renderer(CLASSES, PALETTE)
        self.written = 0
        self.longest_write_ms = 0.0
        stream.attach(self.stats, {"backend": "openvino", "device": "CPU", "precision": "fp32",
                                   "precision_ran": "f32", "model": "demo", "input_size": [H, W]})

    def frame(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        labels = ((np.arange(W)[None, :] + 7 * i) // 24 % 5).astype(np.uint8).repeat(H, 0)
        image = np.full((H, W, 3), (i * 37) % 256, np.uint8)
        return self.renderer.render(image, labels), labels

    def write(self, i: int) -> None:
        image, labels = self.frame(i)
        times = {"capture": 1.0, "pre": 0.2, "inference": 20.0, "post": 0.3, "render": 0.5, "write": 0.1}
        self.stats.add(times, 25.0)
        t0 = time.perf_counter()
        self.stream.write(image, labels, times, 25.0)
        self.longest_write_ms = max(self.longest_write_ms, (time.perf_counter() - t0) * 1e3)
        self.written += 1

    def run(self, frames: int, interval: float = 0.01, stop: threading.Event | None = None
            ) -> threading.Thread:
        def loop() -> None:
            for i in range(frames):
                if stop is not None and stop.is_set():
                    return
                self.write(i)
                time.sleep(interval)
        t = threading.Thread(target=loop, daemon=True)
        t.start()
        return t


@pytest.fixture
def server() -> Iterator[LiveServer]:
    srv = LiveServer("127.0.0.1", 0, max_clients=4, client_timeout=3.0)
    srv.start()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def fed(server: LiveServer) -> tuple[LiveServer, Feeder]:
    feeder = Feeder(server.add_stream("0", "test pattern", CLASSES, PALETTE))
    for i in range(3):
        feeder.write(i)
    return server, feeder


def get(server: LiveServer, path: str, headers: dict | None = None, method: str = "GET"
        ) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def raw(server: LiveServer, data: bytes) -> bytes:
    """Send bytes as they are and read the whole answer (for requests http.client will not make)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)  # the server may answer and close before a huge request is all sent
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
        return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


class MjpegReader:
    """A viewer reading the MJPEG stream part by part."""

    def __init__(self, server: LiveServer, path: str = "/stream.mjpg") -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        self.conn.request("GET", path)
        self.response = self.conn.getresponse()

    def frames(self, n: int) -> list[bytes]:
        out = []
        fp = self.response.fp
        while len(out) < n:
            line = fp.readline()
            if not line:
                break
            if line.startswith(b"Content-Length:"):
                size = int(line.split(b":")[1])
                fp.readline()
                out.append(fp.read(size))
        return out

    def close(self) -> None:
        self.response.close()  # the response holds the socket open until it is closed too
        self.conn.close()


# ------------------------------------------------------------------------------------- parsing
def test_parse_bind() -> None:
    assert parse_bind("8080") == ("127.0.0.1", 8080)
    assert parse_bind("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_bind("[::1]:8080") == ("::1", 8080)
    assert parse_bind("localhost:0") == ("localhost", 0)
    for bad in ("http", "99999", ":8080", "::1:80", "host:x"):
        with pytest.raises(ValueError):
            parse_bind(bad)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")


# ----------------------------------------------------------------------------------- endpoints
def test_endpoints(fed: tuple[LiveServer, Feeder]) -> None:
    server, feeder = fed
    status, headers, body = get(server, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'id="live"' in body and "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["cache-control"] == "no-store" and headers["x-content-type-options"] == "nosniff"

    status, headers, body = get(server, "/snapshot.jpg")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    picture = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == (H, W, 3)
    newest, _ = feeder.frame(feeder.written - 1)
    assert np.abs(picture.astype(int) - newest.astype(int)).mean() < 6  # the newest frame, JPEG-close

    status, headers, body = get(server, "/stats")
    stats = json.loads(body)
    assert status == 200 and headers["content-type"] == "application/json"
    assert stats["state"] == "running" and stats["frames"] == 3 and stats["streams"] == ["0"]
    assert set(stats["latency_ms"]) >= {"inference", "end-to-end"} and stats["frame_size"] == [W, H]
    shares = [c["share"] for c in stats["classes"]]
    assert abs(sum(shares) - 1.0) < 1e-3 and len(shares) == len(CLASSES)

    status, headers, body = get(server, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    frames = families["pspnet_rt_frames_processed"]
    assert frames.type == "counter" and frames.samples[0].value == 3
    assert families["pspnet_rt_stage_seconds"].type == "histogram"
    info = families["pspnet_rt_model_info"].samples[0].labels  # an info metric: a gauge of 1 in text 0.0.4
    assert info["backend"] == "openvino" and info["precision_ran"] == "f32" and info["model"] == "demo"
    assert "process_resident_memory_bytes" in families

    status, _, body = get(server, "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"})
    assert status == 200 and body.rstrip().endswith(b"# EOF")
    assert get(server, "/healthz")[0] == 200
    status, headers, body = get(server, "/stats", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0
    assert get(server, "/streams/0/stats")[0] == 200
    status, headers, _ = get(server, "/streams/0")
    assert status == 301 and headers["location"] == "/streams/0/"


def test_events_stream_figures(fed: tuple[LiveServer, Feeder]) -> None:
    server, feeder = fed
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/events")
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream"
    seen = []
    while len(seen) < 3:
        line = r.fp.readline()
        if line.startswith(b"data: "):
            seen.append(json.loads(line[6:])["frames"])
            feeder.write(len(seen) + 10)
    r.close()
    conn.close()
    assert seen[-1] > seen[0]  # the figures move as frames are written


# --------------------------------------------------------------------------------------- token
def test_token_on_every_endpoint() -> None:
    server = LiveServer("127.0.0.1", 0, token="s3cret", client_timeout=3.0)
    server.start()
    try:
        Feeder(server.add_stream("0", "t", CLASSES, PALETTE)).write(0)
        for path in ("/", "/stats", "/snapshot.jpg", "/metrics", "/events", "/stream.mjpg", "/healthz",
                     "/nope"):
            status, headers, _ = get(server, path)
            assert status == 401 and headers["www-authenticate"].startswith("Bearer"), path
            assert get(server, path + "?token=wrong")[0] == 401
        assert get(server, "/stats?token=s3cret")[0] == 200
        assert get(server, "/metrics", {"Authorization": "Bearer s3cret"})[0] == 200
        assert get(server, "/metrics", {"Authorization": "Bearer s3cre"})[0] == 401
        assert get(server, "/nope?token=s3cret")[0] == 404
    finally:
        server.close()


# -------------------------------------------------------------------------------- bad requests
def test_bad_requests_get_http_errors(fed: tuple[LiveServer, Feeder]) -> None:
    server, _ = fed
    assert get(server, "/nope")[0] == 404
    assert get(server, "/streams/nope/stats")[0] == 404
    assert get(server, "/", method="POST")[0] == 405
    assert status_of(raw(server, b"GET /" + b"a" * 20000 + b" HTTP/1.0\r\n\r\n")) == 414
    big_header = b"X-Big: " + b"b" * 40000 + b"\r\n"
    assert status_of(raw(server, b"GET / HTTP/1.0\r\n" + big_header + b"\r\n")) == 431
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(150))
    assert status_of(raw(server, b"GET / HTTP/1.0\r\n" + many + b"\r\n")) == 431
    assert status_of(raw(server, b"NONSENSE\r\n\r\n")) == 400
    assert status_of(raw(server, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n")) == 400  # TLS hello
    assert get(server, "/stats")[0] == 200  # and it still serves


def test_connection_limit(fed: tuple[LiveServer, Feeder]) -> None:
    """max_clients=4 streams at once; the next few get 503, further ones are refused, nothing crashes,
    and once viewers leave the server serves again."""
    server, feeder = fed
    feeder_thread = feeder.run(400, 0.01)
    viewers = [MjpegReader(server) for _ in range(4)]
    for v in viewers:
        assert len(v.frames(1)) == 1
    answers = [raw(server, b"GET /stats HTTP/1.0\r\n\r\n") for _ in range(3)]
    assert all(status_of(a) == 503 for a in answers), answers
    assert b"Retry-After" in answers[0]
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(10)]  # idle flood
    time.sleep(0.3)
    threads = threading.active_count()
    for s in socks:
        s.close()
    for v in viewers:
        v.close()
    deadline = time.monotonic() + 10
    while get(server, "/stats")[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert threads < 40  # bounded: 4 viewers + 4 busy slots + the test's own threads
    feeder_thread.join(10)


def test_stalled_viewer_never_blocks_the_writer(fed: tuple[LiveServer, Feeder]) -> None:
    """A viewer that stops reading: the write stage goes on at full speed, a healthy viewer keeps
    getting new frames, and the stalled one is dropped after the socket timeout (3 s here)."""
    server, feeder = fed
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", server.port))
    stalled.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")  # ... and never reads
    healthy = MjpegReader(server)
    stop = threading.Event()
    t = feeder.run(100_000, 0.005, stop)  # frames until the stalled viewer is gone
    got = healthy.frames(40)
    deadline = time.monotonic() + 60
    while server.default_stream().viewers > 1:  # the stalled one's send timed out: dropped
        assert time.monotonic() < deadline, "stalled viewer not dropped"
        time.sleep(0.1)
    stop.set()
    t.join(30)
    # a write blocked by a viewer would take the 3 s socket timeout; write() only swaps a reference
    assert feeder.longest_write_ms < 1000
    assert len(set(got)) >= 30  # a stream of distinct frames for the viewer that reads
    assert healthy.frames(3)  # and it still gets frames after the stalled one left
    healthy.close()
    stalled.close()


def test_each_frame_encoded_once_for_many_viewers(fed: tuple[LiveServer, Feeder]) -> None:
    server, feeder = fed
    stream = server.default_stream()
    viewers = [MjpegReader(server) for _ in range(3)]
    before = stream.encoded
    t = feeder.run(60, 0.03)
    received = [threading.Thread(target=v.frames, args=(20,)) for v in viewers]
    for r in received:
        r.start()
    for r in received:
        r.join(30)
    t.join(30)
    time.sleep(0.2)
    encoded = stream.encoded - before
    assert 20 <= encoded <= 60 + 1  # at most once per frame, whatever the number of viewers
    for v in viewers:
        v.close()


def test_close_ends_viewers_promptly() -> None:
    server = LiveServer("127.0.0.1", 0, client_timeout=30.0)
    server.start()
    feeder = Feeder(server.add_stream("0", "t", CLASSES, PALETTE))
    feeder.write(0)
    viewer = MjpegReader(server)
    assert viewer.frames(1)
    events = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    events.request("GET", "/events")
    events_response = events.getresponse()
    stalled = socket.create_connection(("127.0.0.1", server.port))
    stalled.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")
    t0 = time.monotonic()
    server.close()
    assert time.monotonic() - t0 < 5  # not the 30 s socket timeout
    assert viewer.frames(5) == []  # the stream ended
    events_response.read()  # ends (EOF), does not hang
    assert not [t for t in threading.enumerate() if t.name.startswith("pspnet-rt-http")]
    viewer.close()
    events_response.close()
    events.close()
    stalled.close()


def test_multiple_streams_have_their_own_views(server: LiveServer) -> None:
    a = Feeder(server.add_stream("cam-a", "a", CLASSES, PALETTE))
    b = Feeder(server.add_stream("cam-b", "b", CLASSES, PALETTE))
    a.write(0)
    for i in range(4):
        b.write(i)
    assert json.loads(get(server, "/streams/cam-b/stats")[2])["frames"] == 4
    assert json.loads(get(server, "/stats")[2])["stream"] == "cam-a"  # the first stream at the top
    metrics = get(server, "/metrics")[2].decode()
    samples = {(s.labels.get("stream"), s.value) for f in text_string_to_metric_families(metrics)
               if f.name == "pspnet_rt_frames_processed" for s in f.samples}
    assert samples == {("cam-a", 1), ("cam-b", 4)}
    with pytest.raises(ValueError):
        server.add_stream("cam-a", "again", CLASSES, PALETTE)


# ------------------------------------------------------------------------------------------ CLI
def test_cli_serve_errors(demo_artefacts: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    ov = str(demo_artefacts["openvino"])
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        assert main(["--video", "demo", "--demo-frames", "2", "--engine", ov, "--serve", str(port)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "address already in use" in err[0].lower() and "another port" in err[0], err
    finally:
        holder.close()
    assert main(["--video", "demo", "--engine", ov, "--serve-token", "x"]) == 2
    assert "--serve-token needs --serve" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["--video", "demo", "--engine", ov, "--serve", "99999"])
    assert exit_info.value.code == 2
    assert "0..65535" in capsys.readouterr().err


def test_cli_warns_on_non_loopback_and_closes(demo_artefacts: dict[str, Path],
                                              capsys: pytest.CaptureFixture) -> None:
    ov = str(demo_artefacts["openvino"])
    assert main(["--video", "demo", "--demo-frames", "3", "--engine", ov, "--serve", "0.0.0.0:0"]) == 0
    err = capsys.readouterr().err  # clikit logs to stderr (its basicConfig replaces pytest's handler)
    assert "live view http://0.0.0.0:" in err
    assert "listening beyond this machine" in err and "--serve-token" in err
    assert not [t for t in threading.enumerate() if t.name.startswith("pspnet-rt-")]  # all closed


def test_cli_several_streams_get_a_view_each(demo_artefacts: dict[str, Path], tmp_path: Path) -> None:
    """Two --video streams of one process: /streams/NAME/ serves each one's own frames and figures."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "runtime", "--video", "left=demo", "--video", "right=demo",
                             "--demo-frames", "20", "--loop", "--engine", str(demo_artefacts["openvino"]),
                             "--serve", str(port), "--masks", str(tmp_path / "masks")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        figures: dict[str, dict] = {}
        deadline = time.monotonic() + 120
        names = ("left", "right")
        while time.monotonic() < deadline and not all(figures.get(n, {}).get("frames") for n in names):
            time.sleep(0.5)
            for name in names:
                with contextlib.suppress(OSError, ValueError, http.client.HTTPException):
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    conn.request("GET", f"/streams/{name}/stats")
                    figures[name] = json.loads(conn.getresponse().read())
                    conn.close()
        assert figures["left"]["stream"] == "left" and figures["right"]["stream"] == "right"
        assert figures["left"]["frames"] > 0 and figures["right"]["frames"] > 0
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/metrics")
        metrics = conn.getresponse().read().decode()
        streams = {s.labels.get("stream") for f in text_string_to_metric_families(metrics)
                   if f.name == "pspnet_rt_frames_processed" for s in f.samples}
        assert {"left", "right"} <= streams
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["left", "right"]


def test_serve_without_the_extra_says_what_to_install(tmp_path: Path) -> None:
    script = ("import sys\n"
              "sys.modules['prometheus_client'] = None  # as on a base install\n"
              "from runtime.cli import main\nsys.exit(main(['--video', 'demo', '--serve', '0',"
              " '--engine', 'missing.json']))\n")
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "serve extra" in lines[0] and "pip install 'pspnet-rt[serve]'" in lines[0]


def test_live_view_benchmark_writes_its_reports(demo_artefacts: dict[str, Path], tmp_path: Path) -> None:
    from benchmarks.live_view import main as bench

    ov = str(demo_artefacts["openvino"])
    assert bench(["--engine", ov, "--rounds", "1", "--phase-seconds", "3", "--settle-seconds", "1",
                  "--viewers", "2", "--out", str(tmp_path)]) == 0  # a missed target is reported, not failed
    result = json.loads((tmp_path / "live_view.json").read_text())
    run = result["runs"][0]
    assert run["status"] == "ok", run
    assert [p["condition"] for p in run["phases"]] == ["none", "viewers", "stalled"]
    assert run["summary"]["none"]["fps_mean"] > 0 and run["precision_ran"]
    assert run["viewer_fps_mean"] and run["viewer_fps_mean"] > 0
    assert "x no viewer" in (tmp_path / "live_view.md").read_text()
    assert (tmp_path / "live_view.png").stat().st_size > 0
