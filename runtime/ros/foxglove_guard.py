"""The door in front of the Foxglove live view: only its own user gets through.

foxglove-sdk (0.30) serves the Foxglove WebSocket protocol with no hook into the WebSocket
handshake: it checks neither the Host nor the Origin header and takes no token, so any web page
the user visits could open ws://127.0.0.1:PORT (cross-site WebSocket, or DNS rebinding: a page
whose name resolves to 127.0.0.1 after it loaded) and watch the camera. So the SDK's server listens
on a random loopback address (127.a.b.c, an unguessable one of 16 million, on a free port), and
this guard listens where the user asked (`--foxglove [HOST:]PORT`), reads each request's head,
bounded in size and time, and passes the connection through only when
- its Host header names this server (runtime.live.hosts.HostCheck, as the browser live view:
  the addresses it listens on, localhost, and `--serve-allow-host` names; 421 otherwise);
- its Origin, when a browser sends one, is the Foxglove app's (https://app.foxglove.dev), a page
  of this machine's own addresses, or one the user named (`--foxglove-allow-origin`); 403 else;
- it carries the token, when one is set (`--foxglove-token`, default $PSPNET_RT_FOXGLOVE_TOKEN):
  `?token=TOKEN` in the URL the Foxglove app opens, or `Authorization: Bearer TOKEN`; 401 else.
A request head that takes longer than HEAD_TIMEOUT_S is cut off (408); heads that are still
arriving never take one of the `max_clients` connection slots, and when too many are pending the
oldest is dropped, so trickling sockets cannot starve the user's viewer.

The limit, said plainly: the SDK's own port is still open to processes on this machine that look
it up (e.g. in /proc/net/tcp); a browser cannot find it, a process of another local user can.
Where that matters, do not run --foxglove on a shared machine.

One thread, non-blocking sockets (selectors); a slow viewer fills its own buffer (bounded), then
the SDK's per-client backlog drops its oldest messages: nothing else waits for it.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import random
import selectors
import socket
import threading
import time
from collections.abc import Sequence
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from runtime.live.hosts import HostCheck, split_host

log = logging.getLogger(__name__)

HEAD_TIMEOUT_S = 5.0  # a whole request head must arrive within this
MAX_HEAD_BYTES = 16384
MAX_PENDING = 64  # heads being read at once; past it the oldest is dropped
BUFFER_CAP = 4 << 20  # bytes queued towards one side before reading from the other pauses
FOXGLOVE_ORIGINS = ("https://app.foxglove.dev",)  # the Foxglove app in a browser


def private_loopback() -> str:
    """A random loopback address other than 127.0.0.1 (Linux answers all of 127/8)."""
    rng = random.SystemRandom()
    return f"127.{rng.randint(1, 254)}.{rng.randint(1, 254)}.{rng.randint(2, 254)}"


def parse_origin(text: str) -> str:
    """An origin the user allows, as browsers send it: scheme://host[:port], no path."""
    value = text.strip().rstrip("/").lower()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query \
            or parts.fragment or parts.username is not None:
        raise ValueError(f"{text!r} is not an origin (scheme://host[:port], e.g. https://foxglove.example.com)")
    with contextlib.suppress(ValueError):
        parts.port  # noqa: B018 (raises for a bad port)
        return value
    raise ValueError(f"{text!r} has a bad port")


class _Conn:
    """A client connection: reading its head, then piped to the SDK's server (`peer`)."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.head = bytearray()
        self.out = bytearray()  # bytes waiting to be sent on `sock`
        self.peer: _Conn | None = None
        self.piped = False
        self.closing = False  # close once `out` is sent
        self.mask = selectors.EVENT_READ  # what it is registered for (0: not registered)


class FoxgloveGuard:
    """Listens on (host, port) and lets through to `inner` only the requests described above."""

    def __init__(self, host: str, port: int, inner: tuple[str, int], *, token: str | None = None,
                 allowed_hosts: Sequence[str] = (), allowed_origins: Sequence[str] = (),
                 max_clients: int = 32) -> None:
        self.host, self.inner = host, inner
        self.token = token or None
        self.hosts = HostCheck(host, allowed_hosts)
        self.origins = {*FOXGLOVE_ORIGINS, *(parse_origin(o) for o in allowed_origins)}
        self.max_clients = max_clients
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind((host, port))
            self._listener.listen(128)
        except OSError:
            self._listener.close()
            raise
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._conns: dict[socket.socket, _Conn] = {}
        self._stop = False
        self.refused: dict[int, int] = {}  # status -> count (for the log and tests)
        self._thread = threading.Thread(target=self._loop, name="pspnet-rt-foxglove-guard", daemon=True)

    def start(self) -> FoxgloveGuard:
        self._sel.register(self._listener, selectors.EVENT_READ)
        self._sel.register(self._wake_r, selectors.EVENT_READ)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._thread.join(5)
        for conn in list(self._conns.values()):
            self._close(conn)
        for sock in (self._listener, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                sock.close()
        with contextlib.suppress(Exception):
            self._sel.close()

    # -- the loop ----------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop:
            try:
                events = self._sel.select(0.25)
            except OSError:
                return
            for key, mask in events:
                sock = key.fileobj
                if sock is self._listener:
                    self._accept()
                elif sock is self._wake_r:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(64)
                else:
                    conn = self._conns.get(sock)  # type: ignore[arg-type]
                    if conn is not None:
                        self._event(conn, mask)
            now = time.monotonic()
            for conn in list(self._conns.values()):
                if conn.peer is not None:
                    continue
                if conn.closing and now > conn.deadline + HEAD_TIMEOUT_S:
                    self._close(conn)  # a refusal its client never reads
                elif not conn.closing and now > conn.deadline:
                    self._refuse(conn, HTTPStatus.REQUEST_TIMEOUT, "the request head took too long")

    def _accept(self) -> None:
        for _ in range(64):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            sock.setblocking(False)
            pending = sorted((c for c in self._conns.values() if c.peer is None), key=lambda c: c.deadline)
            if len(pending) >= MAX_PENDING:
                self._close(pending[0])  # the oldest unfinished head makes room
            conn = _Conn(sock, time.monotonic() + HEAD_TIMEOUT_S)
            self._conns[sock] = conn
            self._sel.register(sock, selectors.EVENT_READ)

    def _event(self, conn: _Conn, mask: int) -> None:
        if mask & selectors.EVENT_WRITE and conn.out:
            try:
                sent = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._close(conn)
                return
            del conn.out[:sent]
            if not conn.out and conn.closing:
                self._close(conn)
                return
        if mask & selectors.EVENT_READ and conn.sock in self._conns:
            try:
                data = conn.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                data = b""
            if data == b"":
                self._hang_up(conn)
                return
            if data:
                if conn.piped and conn.peer is not None:
                    conn.peer.out += data
                    self._interest(conn.peer)
                elif not conn.piped:
                    self._read_head(conn, data)
        if conn.sock in self._conns:
            self._interest(conn)
            if conn.peer is not None:
                self._interest(conn.peer)

    def _interest(self, conn: _Conn) -> None:
        if conn.sock not in self._conns:
            return
        mask = 0
        peer_full = conn.peer is not None and len(conn.peer.out) > BUFFER_CAP
        if not conn.closing and not peer_full:
            mask |= selectors.EVENT_READ
        if conn.out:
            mask |= selectors.EVENT_WRITE
        if mask == conn.mask:
            return
        with contextlib.suppress(KeyError, ValueError, OSError):
            if not mask:
                self._sel.unregister(conn.sock)  # paused: its peer's buffer is full
            elif not conn.mask:
                self._sel.register(conn.sock, mask)
            else:
                self._sel.modify(conn.sock, mask)
            conn.mask = mask

    def _hang_up(self, conn: _Conn) -> None:
        peer = conn.peer
        self._close(conn)
        if peer is not None and peer.sock in self._conns:
            if peer.out:
                peer.closing = True
                self._interest(peer)
            else:
                self._close(peer)

    def _close(self, conn: _Conn) -> None:
        self._conns.pop(conn.sock, None)
        if conn.mask:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._sel.unregister(conn.sock)
            conn.mask = 0
        with contextlib.suppress(OSError):
            conn.sock.close()

    # -- the door ----------------------------------------------------------------------------
    def _read_head(self, conn: _Conn, data: bytes) -> None:
        conn.head += data
        end = conn.head.find(b"\r\n\r\n")
        if end < 0:
            if len(conn.head) > MAX_HEAD_BYTES:
                self._refuse(conn, HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large")
            return
        refusal = self._judge(bytes(conn.head[:end]))
        if refusal is not None:
            self._refuse(conn, *refusal)
            return
        if sum(1 for c in self._conns.values() if c.peer is not None) >= 2 * self.max_clients:
            self._refuse(conn, HTTPStatus.SERVICE_UNAVAILABLE, "too many viewers; try again later")
            return
        try:
            inner = socket.create_connection(self.inner, timeout=2)
        except OSError as exc:
            self._refuse(conn, HTTPStatus.BAD_GATEWAY, f"the Foxglove server is gone ({exc})")
            return
        inner.setblocking(False)
        back = _Conn(inner, conn.deadline)
        back.piped = conn.piped = True
        back.peer, conn.peer = conn, back
        back.out += conn.head  # the head, as it came, then whatever follows it
        conn.head = bytearray()
        self._conns[inner] = back
        back.mask = selectors.EVENT_READ | selectors.EVENT_WRITE
        self._sel.register(inner, back.mask)

    def _judge(self, head: bytes) -> tuple[int, str] | None:
        """None to let the request through; else (status, why)."""
        try:
            lines = head.decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ")
        except ValueError:
            return HTTPStatus.BAD_REQUEST, "malformed request line"
        headers: dict[str, list[str]] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                return HTTPStatus.BAD_REQUEST, "malformed header"
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        host_refusal = self.hosts.refusal(headers.get("host"), version)
        if host_refusal is not None:
            return host_refusal[0], host_refusal[1].replace("this live view", "this Foxglove view")
        origins = headers.get("origin", [])
        if len(origins) > 1 or (origins and not self._origin_allowed(origins[0])):
            return (HTTPStatus.FORBIDDEN, "a web page of another site may not open this Foxglove view; "
                    "open it from the Foxglove app, or start pspnet-rt with --foxglove-allow-origin ORIGIN")
        if self.token is not None:
            query = parse_qs(urlsplit(target).query)
            given = (query.get("token") or [None])[0]
            bearer = (headers.get("authorization") or [""])[0]
            if bearer.lower().startswith("bearer "):
                given = bearer[7:].strip()
            if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
                return (HTTPStatus.UNAUTHORIZED, "a token is needed: open ws://HOST:PORT/?token=TOKEN (the "
                        "--foxglove-token or $PSPNET_RT_FOXGLOVE_TOKEN given to pspnet-rt)")
        if method != "GET":
            return HTTPStatus.METHOD_NOT_ALLOWED, "the Foxglove view takes WebSocket GET requests only"
        return None

    def _origin_allowed(self, origin: str) -> bool:
        origin = origin.strip().rstrip("/").lower()
        if origin in self.origins:
            return True
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False  # "null" (a sandboxed frame, a file), or another scheme
        parsed = split_host(parts.netloc)  # a page of this machine's own addresses, or an allowed name
        return parsed is not None and self.hosts.allows(parsed[0])

    def _refuse(self, conn: _Conn, status: int, why: str) -> None:
        self.refused[int(status)] = self.refused.get(int(status), 0) + 1
        body = (why + "\n").encode()
        phrase = HTTPStatus(status).phrase
        conn.out += (f"HTTP/1.1 {int(status)} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
        conn.head = bytearray()
        conn.piped = True  # no longer a pending head
        conn.closing = True
        self._interest(conn)
