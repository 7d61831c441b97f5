"""Issue 21, the second sweep: the classes of issue 21 tried again, by someone else, against every
command: the Foxglove view's visitors, the one redaction function reaching every command (search
databases included), bounds on sizes a user or a source can ask for, what a backend loads after
its hash was checked, and a Triton model held to the manifest it carries."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import numpy as np
import pytest

from tests.faults.helpers import one_line, rt

SECRET = "S3cretPW"


# ------------------------------------------------------------------- the Foxglove live view
@pytest.fixture
def foxglove_sink(request: pytest.FixtureRequest):
    pytest.importorskip("foxglove", reason="needs foxglove-sdk (pip install -e .[ros])")
    from runtime.ros.foxglove_sink import FoxgloveSink

    kwargs = getattr(request, "param", {})
    sink = FoxgloveSink("127.0.0.1", 0, ["road", "car"], [[1, 2, 3], [4, 5, 6]], **kwargs)
    sink.open()
    sink.add_stream(None, live=True, fps=None)
    try:
        yield sink
    finally:
        sink.close()


def _handshake(port: int, host: str | None = "127.0.0.1", origin: str | None = None, path: str = "/",
               extra: str = "") -> int:
    """The HTTP status a WebSocket upgrade gets (101 = let through to the SDK)."""
    head = [f"GET {path} HTTP/1.1"]
    if host is not None:
        head.append(f"Host: {host}")
    if origin is not None:
        head.append(f"Origin: {origin}")
    head += ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol: foxglove.sdk.v1"]
    if extra:
        head.append(extra)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        reply = s.recv(4096).decode("latin-1")
    return int(reply.split(" ", 2)[1])


REFUSED = {  # what a web page or a rebinding name sends -> the status
    "another site's page": ({"origin": "https://evil.example"}, 403),
    "a sandboxed frame or file (Origin: null)": ({"origin": "null"}, 403),
    "a look-alike of the app": ({"origin": "https://app.foxglove.dev.evil.example"}, 403),
    "a rebinding name": ({"host": "evil.example:8765"}, 421),
    "a name that starts like ours": ({"host": "127.0.0.1.evil.example"}, 421),
    "another address on a loopback bind": ({"host": "10.0.0.1"}, 421),
    "no Host in HTTP/1.1": ({"host": None}, 400),
    "a malformed Host": ({"host": "[::1"}, 400),
    "two Hosts": ({"extra": "Host: evil.example"}, 400),
}
ALLOWED = {
    "the Foxglove app in a browser": {"origin": "https://app.foxglove.dev"},
    "a script or the desktop app (no Origin)": {},
    "localhost": {"host": "localhost:8765"},
    "a page of this machine": {"origin": "http://127.0.0.1:8080"},
}


@pytest.mark.fault("foxglove-visitors")
def test_foxglove_answers_only_its_own_user(foxglove_sink) -> None:
    port = foxglove_sink.server.port
    for case, (kwargs, status) in REFUSED.items():
        assert _handshake(port, **kwargs) == status, case
    for case, kwargs in ALLOWED.items():
        assert _handshake(port, **kwargs) == 101, case


@pytest.mark.fault("foxglove-visitors")
@pytest.mark.parametrize("foxglove_sink", [{"token": SECRET, "allowed_hosts": ["box.local"],
                                            "allowed_origins": ["https://fox.example.com"]}], indirect=True)
def test_foxglove_token_and_named_hosts_and_origins(foxglove_sink) -> None:
    port = foxglove_sink.server.port
    assert _handshake(port) == 401
    assert _handshake(port, path="/?token=wrong") == 401
    assert _handshake(port, extra="Authorization: Bearer nope") == 401
    assert _handshake(port, path=f"/?token={SECRET}") == 101
    assert _handshake(port, extra=f"Authorization: Bearer {SECRET}") == 101
    assert _handshake(port, host="box.local", path=f"/?token={SECRET}") == 101
    assert _handshake(port, origin="https://fox.example.com", path=f"/?token={SECRET}") == 101
    assert _handshake(port, host="other.local", path=f"/?token={SECRET}") == 421  # before the token
    assert SECRET not in foxglove_sink.describe()


@pytest.mark.fault("foxglove-visitors")
def test_foxglove_viewer_gets_frames_through_the_guard_while_heads_trickle(foxglove_sink,
                                                                           monkeypatch: pytest.MonkeyPatch
                                                                           ) -> None:
    """80 sockets that send one byte now and then (more than the pending heads the guard keeps) and
    never finish a head: a real client still connects and gets decodable frames within seconds;
    the unfinished heads are cut off (the oldest when too many, all after the head timeout)."""
    import websockets

    import runtime.ros.foxglove_guard as guard

    port = foxglove_sink.server.port
    trickle = [socket.create_connection(("127.0.0.1", port)) for _ in range(80)]
    for s in trickle:
        s.sendall(b"GET / HTTP/1.1\r\nHo")
    labels = np.ones((48, 64), np.uint8)
    stop = threading.Event()

    def feed() -> None:
        i = 0
        while not stop.is_set():
            frame = type("F", (), {"index": i, "stamp_ns": i, "frame_id": "cam", "log_time_ns": i,
                                   "t_capture": time.perf_counter()})()
            foxglove_sink.write(frame, labels, None, {}, 1.0)
            i += 1
            time.sleep(0.02)

    async def view() -> bytes:
        async with websockets.connect(f"ws://127.0.0.1:{port}", subprotocols=["foxglove.sdk.v1"],
                                      max_size=1 << 24, open_timeout=5) as ws:
            channels: dict = {}
            while "/pspnet/class_map" not in channels:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
                channels.update({c["topic"]: c for c in msg.get("channels", [])})
            await ws.send(json.dumps({"op": "subscribe", "subscriptions": [
                {"id": 1, "channelId": channels["/pspnet/class_map"]["id"]}]}))
            while True:
                data = await asyncio.wait_for(ws.recv(), 5)
                if isinstance(data, bytes) and data[0] == 1:
                    return data

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        t0 = time.monotonic()
        assert asyncio.run(view())[0] == 1
        assert time.monotonic() - t0 < 8
        closed = 0
        for s in trickle:
            s.settimeout(0.05)
            try:
                closed += s.recv(1) == b""
            except TimeoutError:
                pass
            except OSError:
                closed += 1
        assert closed >= len(trickle) - guard.MAX_PENDING  # the oldest were dropped to make room
    finally:
        stop.set()
        feeder.join()
        for s in trickle:
            s.close()


@pytest.mark.fault("foxglove-visitors")
def test_a_head_that_never_ends_gets_408(foxglove_sink, monkeypatch: pytest.MonkeyPatch) -> None:
    import runtime.ros.foxglove_guard as guard

    monkeypatch.setattr(guard, "HEAD_TIMEOUT_S", 1.0)
    with socket.create_connection(("127.0.0.1", foxglove_sink.server.port), timeout=15) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        t0 = time.monotonic()
        reply = s.recv(4096).decode("latin-1")
    assert reply.startswith("HTTP/1.1 408") and time.monotonic() - t0 < guard.HEAD_TIMEOUT_S + 3


@pytest.mark.fault("foxglove-visitors")
def test_foxglove_flags_are_refused_without_foxglove(capsys: pytest.CaptureFixture) -> None:
    for extra in (["--foxglove-token", "x"], ["--foxglove-allow-origin", "https://a.example"],
                  ["--serve-allow-host", "box.local"]):
        code, _, err, _ = rt(["--video", "demo", *extra], capsys)
        assert code == 2
        one_line(err, "--foxglove")
