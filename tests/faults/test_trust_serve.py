"""Issue 21, the run side, for the live view: only its own user is served. A Host header that does
not name the server (DNS rebinding) is answered 421 on every endpoint; slow, unfinished and
unauthenticated requests cannot hold the slots viewers need. The real server on 127.0.0.1,
real sockets, bounded in count and time."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.faults.helpers import one_line

pytest.importorskip("prometheus_client", reason="the serve extra (prometheus_client) is not installed")

from runtime.live.hosts import HostCheck
from runtime.live.server import HEAD_TIMEOUT_S, MAX_PENDING_HEADS, LiveServer
from tests.test_live_view import CLASSES, PALETTE, Feeder, MjpegReader

ENDPOINTS = ["/", "/stream.mjpg", "/snapshot.jpg", "/stats", "/events", "/metrics", "/healthz",
             "/streams/0/stats"]


@pytest.fixture
def live() -> Iterator[tuple[LiveServer, Feeder]]:
    server = LiveServer("127.0.0.1", 0, max_clients=64, allowed_hosts=["box.local"])  # slots: not the topic
    server.start()
    feeder = Feeder(server.add_stream("0", "test pattern", CLASSES, PALETTE))
    for i in range(3):
        feeder.write(i)
    try:
        yield server, feeder
    finally:
        server.close()


def status(port: int, head: bytes, path: str = "/stats") -> int:
    """The status of one raw request (only its status line is read)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\n".encode() + head + b"\r\n")
        line = s.makefile("rb").readline()
    return int(line.split()[1]) if line.startswith(b"HTTP/") else 0


REFUSED = {  # Host header lines -> the status
    "evil.example": (b"Host: evil.example\r\n", 421),
    "evil.example with a port": (b"Host: evil.example:{port}\r\n", 421),
    "127.0.0.1.evil.example": (b"Host: 127.0.0.1.evil.example\r\n", 421),
    "localhost. (a DNS name)": (b"Host: localhost.\r\n", 421),
    "an address not bound": (b"Host: 10.0.0.1:{port}\r\n", 421),
    "xn--punycode": (b"Host: xn--80ak6aa92e.com\r\n", 421),
    "empty": (b"Host: \r\n", 400),
    "malformed": (b"Host: [::1\r\n", 400),
    "a bad port": (b"Host: 127.0.0.1:99999\r\n", 400),
    "two Host headers": (b"Host: 127.0.0.1\r\nHost: evil.example\r\n", 400),
    "none in HTTP/1.1": (b"", 400),
}
ALLOWED = [b"Host: 127.0.0.1:{port}\r\n", b"Host: 127.0.0.1\r\n", b"Host: localhost:{port}\r\n",
           b"Host: LOCALHOST\r\n", b"Host: [::1]:{port}\r\n", b"Host: 127.0.0.2\r\n", b"Host: box.local\r\n",
           b"Host: Box.Local:8443\r\n"]


@pytest.mark.fault("serve-host")
def test_only_hosts_that_name_the_server_are_answered(live: tuple[LiveServer, Feeder]) -> None:
    server, _ = live
    port = server.port
    for path in ENDPOINTS:
        for case, (head, want) in REFUSED.items():
            assert status(port, head.replace(b"{port}", str(port).encode()), path) == want, (path, case)
        for head in ALLOWED:
            assert status(port, head.replace(b"{port}", str(port).encode()), path) == 200, (path, head)


@pytest.mark.fault("serve-host")
def test_a_rebound_host_is_refused_before_the_token_and_the_slots() -> None:
    server = LiveServer("127.0.0.1", 0, token="s3cret", max_clients=1)
    server.start()
    try:
        Feeder(server.add_stream("0", "test pattern", CLASSES, PALETTE)).write(0)
        viewer = MjpegReader(server, "/stream.mjpg?token=s3cret")  # holds the only slot
        try:
            assert status(server.port, b"Host: evil.example\r\n", "/stats?token=s3cret") == 421
            assert status(server.port, b"Host: evil.example\r\n", "/stats") == 421  # before the token
            assert status(server.port, b"Host: 127.0.0.1\r\n", "/stats") == 401
            assert status(server.port, b"Host: 127.0.0.1\r\n", "/stats?token=s3cret") == 503  # slot taken
        finally:
            viewer.close()
    finally:
        server.close()


@pytest.mark.fault("serve-host")
def test_a_wildcard_bind_answers_its_addresses_not_names() -> None:
    check = HostCheck("0.0.0.0", ["cam-box.lan"])
    assert check.refusal(["192.168.7.20:8080"], "HTTP/1.1") is None
    assert check.refusal(["[fe80::1]:8080"], "HTTP/1.1") is None
    assert check.refusal(["cam-box.lan"], "HTTP/1.1") is None
    assert check.refusal(["localhost"], "HTTP/1.1") is None
    for name in ("evil.example", "192.168.7.20.nip.io", "cam-box.lan.evil.example"):
        assert check.refusal([name], "HTTP/1.1")[0] == 421, name
    bound = HostCheck("192.168.7.20")
    assert bound.refusal(["192.168.7.20"], "HTTP/1.1") is None
    assert bound.refusal(["localhost"], "HTTP/1.1")[0] == 421  # not a loopback bind
    assert bound.refusal(["192.168.7.21"], "HTTP/1.1")[0] == 421
    assert bound.refusal(None, "HTTP/1.0") is None  # a script's HTTP/1.0 request without Host


@pytest.mark.fault("serve-host")
def test_allow_host_option_refuses_what_is_not_a_host(capsys: pytest.CaptureFixture) -> None:
    from tests.faults.helpers import rt

    for bad in ("http://box.local", "box.local:8080", "box.local/x", "a b"):
        code, _, err, _ = rt(["--video", "demo", "--serve", "0", "--serve-allow-host", bad], capsys)
        assert code == 2, err
        one_line(err, "--serve-allow-host")
    code, _, err, _ = rt(["--video", "demo", "--serve-allow-host", "box.local"], capsys)
    assert code == 2
    one_line(err, "--serve-allow-host needs --serve")


# ----------------------------------------------------------------------- slow and foreign heads
class _Attack:
    """Trickling, wrong-token and idle connections, each kind on its own threads, until stopped."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.lifetimes: list[float] = []  # how long a trickling connection lived before it was cut
        self.wrong_token: list[int] = []
        self.idle: list[socket.socket] = []
        self.threads: list[threading.Thread] = []

    @staticmethod
    def _answered(s: socket.socket) -> bool:
        """The server said something (408) or closed: this connection was cut."""
        try:
            return s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) is not None
        except BlockingIOError:  # nothing yet: still waiting for our head
            return False
        except OSError:
            return True

    def _trickle(self) -> None:
        """A byte every 4 s, never the last one; a new connection once the server cuts it."""
        head = b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
                    for byte in head[:-1]:
                        s.sendall(bytes([byte]))
                        for _ in range(40):  # 4 s, looking every 0.1 s whether it was cut
                            if self.stop.wait(0.1):
                                return
                            if self._answered(s):
                                break
                        else:
                            continue
                        break
            except OSError:
                pass
            self.lifetimes.append(time.monotonic() - t0)

    def _wrong(self) -> None:
        while not self.stop.is_set():
            try:
                self.wrong_token.append(status(self.port, b"Host: 127.0.0.1\r\n", "/stats?token=wrong"))
            except OSError:
                self.wrong_token.append(-1)
            self.stop.wait(0.5)

    def _open_idle(self, n: int) -> None:
        for _ in range(n):
            if self.stop.is_set():
                return
            with contextlib.suppress(OSError):
                self.idle.append(socket.create_connection(("127.0.0.1", self.port), timeout=10))

    def start(self, tricklers: int, wrong: int, idle: int) -> None:
        for target, n in ((self._trickle, tricklers), (self._wrong, wrong)):
            for _ in range(n):
                thread = threading.Thread(target=target, daemon=True)
                thread.start()
                self.threads.append(thread)
        opener = threading.Thread(target=self._open_idle, args=(idle,), daemon=True)
        opener.start()
        self.threads.append(opener)

    def end(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)
        for s in self.idle:
            s.close()


@pytest.mark.fault("serve-slow-heads")
def test_trickling_unauthorised_and_idle_sockets_do_not_starve_viewers() -> None:
    server = LiveServer("127.0.0.1", 0, token="s3cret", max_clients=4)
    server.start()
    feeder = Feeder(server.add_stream("0", "test pattern", CLASSES, PALETTE))
    stop_feed = threading.Event()
    feeder.run(100_000, 0.02, stop_feed)
    attack = _Attack(server.port)
    waits: list[float] = []
    try:
        viewer = MjpegReader(server, "/stream.mjpg?token=s3cret")  # a viewer already watching
        attack.start(tricklers=40, wrong=40, idle=200)
        deadline = time.monotonic() + HEAD_TIMEOUT_S + 1.5  # long enough for every trickler to be cut
        frames = 0
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            assert status(server.port, b"Host: 127.0.0.1\r\n", "/stats?token=s3cret") == 200
            waits.append(time.monotonic() - t0)
            frames += len(viewer.frames(2))
            late = MjpegReader(server, "/stream.mjpg?token=s3cret")  # a viewer arriving mid-attack
            assert len(late.frames(1)) == 1
            late.close()
            time.sleep(0.3)
        server_threads = sum(t.name == "pspnet-rt-http" for t in threading.enumerate())
    finally:
        attack.end()
        stop_feed.set()
        viewer.close()
        server.close()
    assert max(waits) < 3.0, waits  # each viewer request answered at once, all along
    assert frames >= 2 * len(waits)
    assert attack.lifetimes and max(attack.lifetimes) < HEAD_TIMEOUT_S + 2.0, attack.lifetimes
    assert attack.wrong_token and set(attack.wrong_token) == {401}, set(attack.wrong_token)
    assert server_threads <= MAX_PENDING_HEADS + 4 + 8  # heads + slots + a few finishing
