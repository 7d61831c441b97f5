"""The live view's HTTP server: the page, MJPEG, snapshots, SSE figures, /stats and /metrics.

Why the standard library's ThreadingHTTPServer and not a framework: every endpoint is a GET
of bytes the streams already hold, MJPEG and server-sent events are a loop writing to one
socket (a thread per viewer is the natural shape, and the viewers are few), and an edge box
should not carry an async web stack for that. What a framework would add is limits, so they
are here:
- a request head (line + headers) has HEAD_TIMEOUT_S in all to arrive, however slowly it
  trickles in, and a small byte budget (414 / 431); at most MAX_PENDING_HEADS connections may be
  sending theirs at once, past that the oldest is dropped (a trickling flood cannot pile up);
- the Host header must name this server (an address it is bound to, or a name the user
  allowed), else 421: a web page on a domain that re-resolves to 127.0.0.1 (DNS rebinding)
  cannot read the view through the visitor's browser;
- a token on every endpoint when one is set (401);
- only a request that has arrived whole, for this host, with the token, takes one of the
  `max_clients` serving slots; beyond them 503. So neither unfinished nor unauthenticated
  requests can hold the slots the viewers need;
- a socket timeout so a stalled viewer is dropped instead of holding a slot; 404 for anything
  unknown. Closing shuts every open socket, so blocked writes end and the server stops at once
  with the rest of the outputs.

Paths (the first stream also answers at the top level):
    /  /stream.mjpg  /snapshot.jpg  /stats  /events       the first stream
    /streams/NAME/...                                      any stream by name
    /metrics                                               Prometheus, all streams
    /healthz                                               200 "ok" while serving
"""

from __future__ import annotations

import contextlib
import hmac
import http.client
import json
import logging
import re
import select
import socket
import socketserver
import threading
import time
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from runtime.errors import UsageError
from runtime.live.hosts import HostCheck
from runtime.live.metrics import LiveMetrics
from runtime.live.stream import LiveStream

log = logging.getLogger(__name__)

MAX_REQUEST_LINE = 8 * 1024
MAX_HEAD = 32 * 1024  # request line + headers; browsers send ~1 KB
HEAD_TIMEOUT_S = 5.0  # the whole request head, from accept to its blank line (browsers: milliseconds)
MAX_PENDING_HEADS = 128  # connections still sending their head; past it the oldest is dropped
SOCKET_TIMEOUT_S = 10.0  # a viewer that takes longer to accept a frame is dropped
# The kernel's send buffer is a queue too (autotuned up to megabytes): bounded per stream, it
# still holds several frames for a distant viewer (256 KiB / 100 ms RTT ~ 2.5 MB/s).
STREAM_SNDBUF = 256 * 1024
SSE_INTERVAL_S = 0.5
BOUNDARY = "pspnet-rt-frame"
STREAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PAGE = Path(__file__).with_name("page.html")
SECURITY_HEADERS = (("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
                    ("Referrer-Policy", "no-referrer"))  # a ?token= in the URL goes nowhere else
PAGE_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'")


class _HeadBudget:
    """Wraps the socket file while the stdlib parses headers: past MAX_HEAD bytes in all it
    raises LineTooLong, which the stdlib answers with 431. `ended` says whether the head got
    its blank line (a head cut off by its deadline ends in b'' and must not be served)."""

    def __init__(self, fp: Any, budget: int) -> None:
        self._fp, self._left = fp, budget
        self.ended = False

    def readline(self, limit: int = -1) -> bytes:
        cap = self._left + 1 if limit < 0 else min(limit, self._left + 1)
        line = self._fp.readline(cap)
        self._left -= len(line)
        if self._left < 0:
            raise http.client.LineTooLong(f"request head over {MAX_HEAD} bytes")
        self.ended = line in (b"\r\n", b"\n")
        return line


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "pspnet-rt"
    sys_version = ""
    default_request_version = "HTTP/1.0"  # even a malformed request gets a status line back
    timeout = SOCKET_TIMEOUT_S

    def setup(self) -> None:
        self.timeout = self.server.client_timeout
        super().setup()

    # -- request parsing with tighter limits than the stdlib's 64 KiB lines / 100 headers --
    def handle_one_request(self) -> None:
        self.close_connection = True  # one request per connection: streams hold theirs anyway
        server = self.server
        try:
            try:
                whole = self._read_head()
            finally:
                server.head_done(self.request)
            if not whole:
                return
            self.connection.settimeout(server.client_timeout)
            method = getattr(self, f"do_{self.command}", None)
            if method is None:
                self.send_error(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} is not served here")
                return
            live: LiveServer = server.live
            refusal = live.host_refusal(self.headers.get_all("Host"), self.request_version)
            if refusal is not None:
                status, why = refusal
                self._send(status, why.encode() + b"\n", "text/plain; charset=utf-8", self.command == "HEAD")
                return
            query = parse_qs(urlsplit(self.path).query)
            if not live.authorized(self.headers.get("Authorization"), (query.get("token") or [None])[0]):
                self._extra_headers = [("WWW-Authenticate", 'Bearer realm="pspnet-rt"')]
                self._send(HTTPStatus.UNAUTHORIZED, b"a token is needed: ?token=... or Authorization: Bearer "
                           b"...\n", "text/plain; charset=utf-8", self.command == "HEAD")
                return
            if not server.take_slot():
                self._busy()
                return
            try:
                method()
                self.wfile.flush()
            finally:
                server.give_slot()
        except (TimeoutError, ConnectionError, BrokenPipeError):
            log.debug("client %s went away or timed out", self.client_address[0])

    def _read_head(self) -> bool:
        """The request line and headers, whole, within the head's deadline (the server cuts the
        read side of a head that is late); False when it was answered or dropped instead."""
        self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE + 1)
        if not self.raw_requestline:
            return False
        if len(self.raw_requestline) > MAX_REQUEST_LINE:
            self.requestline, self.request_version, self.command = "", "", ""
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
            return False
        if not self.raw_requestline.endswith(b"\n"):
            self._late()
            return False
        raw, self.rfile = self.rfile, _HeadBudget(self.rfile, MAX_HEAD - len(self.raw_requestline))
        try:
            if not self.parse_request():
                return False
            ended = self.rfile.ended
        finally:
            self.rfile = raw
        if not ended:  # cut off before its blank line: never served half-read
            self._late()
            return False
        return True

    def _late(self) -> None:
        self.requestline, self.request_version, self.command = "", "HTTP/1.0", ""
        with contextlib.suppress(OSError):
            self.connection.settimeout(1.0)
            self.send_error(HTTPStatus.REQUEST_TIMEOUT, "the request head did not arrive in time")

    def _busy(self) -> None:
        self._extra_headers = [("Retry-After", "2"), ("Connection", "close")]
        self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"too many connections to the live view; try again\n",
                   "text/plain; charset=utf-8", self.command == "HEAD")

    def log_message(self, format: str, *args: Any) -> None:  # the stdlib prints every request
        log.debug("%s %s", self.address_string(), format % args)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self._extra_headers = [("Allow", "GET, HEAD")] if code == HTTPStatus.METHOD_NOT_ALLOWED else []
        super().send_error(code, message, explain)

    def end_headers(self) -> None:
        for name, value in (*SECURITY_HEADERS, *getattr(self, "_extra_headers", [])):
            self.send_header(name, value)
        self._extra_headers = []
        super().end_headers()

    # -- routing --------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def _route(self, head: bool) -> None:
        """The host, the token and a slot are checked already (handle_one_request)."""
        live: LiveServer = self.server.live
        url = urlsplit(self.path)
        path = url.path
        if path == "/metrics":
            body, ctype = live.metrics.render(self.headers.get("Accept"))
            self._send(HTTPStatus.OK, body, ctype, head)
            return
        if path == "/healthz":
            self._send(HTTPStatus.OK, b"ok\n", "text/plain; charset=utf-8", head)
            return
        stream, rest = live.default_stream(), path
        m = re.match(r"^/streams/([^/]+)(/.*)?$", path)
        if m:
            stream = live.streams.get(m.group(1))
            if stream is None:
                self.send_error(HTTPStatus.NOT_FOUND, f"no stream {m.group(1)!r}")
                return
            if m.group(2) is None:  # /streams/NAME -> /streams/NAME/ so the page's relative links work
                self.send_response(HTTPStatus.MOVED_PERMANENTLY)
                query_part = f"?{url.query}" if url.query else ""
                self.send_header("Location", f"/streams/{stream.name}/{query_part}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            rest = m.group(2)
        handlers = {"/": self._page, "/index.html": self._page, "/stats": self._stats,
                    "/snapshot.jpg": self._snapshot, "/stream.mjpg": self._mjpeg, "/events": self._events}
        handler = handlers.get(rest)
        if handler is None or stream is None:
            self.send_error(HTTPStatus.NOT_FOUND, "unknown path; try / , /stream.mjpg, /snapshot.jpg, "
                                                  "/stats, /events or /metrics")
            return
        handler(stream, head)

    def _send(self, status: int, body: bytes, content_type: str, head: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if content_type.startswith("text/html"):
            self.send_header("Content-Security-Policy", PAGE_CSP)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    # -- endpoints ------------------------------------------------------------------------
    def _page(self, stream: LiveStream, head: bool) -> None:
        self._send(HTTPStatus.OK, self.server.live.page, "text/html; charset=utf-8", head)

    def _stats(self, stream: LiveStream, head: bool) -> None:
        body = json.dumps({**stream.figures(), "streams": list(self.server.live.streams)}).encode()
        self._send(HTTPStatus.OK, body, "application/json", head)

    def _snapshot(self, stream: LiveStream, head: bool) -> None:
        jpeg = stream.snapshot()
        if jpeg is None:
            self._extra_headers = [("Retry-After", "1")]
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"no frame yet\n", "text/plain; charset=utf-8", head)
            return
        self._send(HTTPStatus.OK, jpeg, "image/jpeg", head)

    def _mjpeg(self, stream: LiveStream, head: bool) -> None:
        """One part per frame; a viewer slower than the stream gets the newest frame each time."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.end_headers()
        if head:
            return
        closing, seq = self.server.closing, 0
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
        with stream.watching():
            while not closing.is_set():
                jpeg, seq_new = stream.next_jpeg(seq, timeout=2.0, stop=closing)
                if jpeg is None:
                    if stream.ended or self._client_gone():
                        break
                    continue
                seq = seq_new
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}"
                                 "\r\n\r\n".encode() + jpeg + b"\r\n")
                self.wfile.flush()
        self.wfile.write(f"--{BOUNDARY}--\r\n".encode())

    def _events(self, stream: LiveStream, head: bool) -> None:
        """Server-sent events: the stream's figures twice a second, until it ends."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        if head:
            return
        closing = self.server.closing
        self.wfile.write(b"retry: 1000\n\n")
        while True:
            fig = {**stream.figures(), "streams": list(self.server.live.streams)}
            self.wfile.write(b"data: " + json.dumps(fig).encode() + b"\n\n")
            self.wfile.flush()
            if stream.ended:
                self.wfile.write(b"event: end\ndata: {}\n\n")
                return
            if closing.wait(SSE_INTERVAL_S) or self._client_gone():
                return

    def _client_gone(self) -> bool:
        """True when the viewer closed its end (readable with nothing to read)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # handler threads are ours to track (see process_request) and join
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], live: LiveServer, max_clients: int,
                 client_timeout: float, head_timeout: float) -> None:
        self.live = live
        self.client_timeout = client_timeout
        self.head_timeout = head_timeout
        self.closing = threading.Event()
        self._slots = threading.BoundedSemaphore(max_clients)
        self._heads: dict[socket.socket, float] = {}  # still sending their head -> deadline, oldest first
        self._open: set[socket.socket] = set()
        self._workers: set[threading.Thread] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind() resolves the host's FQDN, which can hang without DNS
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    # -- request heads: bounded in time and in number, holding no serving slot -------------
    def process_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(self.head_timeout)
        dropped = []
        with self._open_lock:
            self._heads[request] = time.monotonic() + self.head_timeout
            while len(self._heads) > MAX_PENDING_HEADS:  # a flood of unfinished heads: drop the oldest
                oldest = next(iter(self._heads))
                del self._heads[oldest]
                dropped.append(oldest)
            thread = threading.Thread(target=self._serve_one, args=(request, client_address),
                                      name="pspnet-rt-http", daemon=True)
            self._open.add(request)
            self._workers.add(thread)
        for sock in dropped:
            log.debug("dropping a connection still sending its request head: too many pending")
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        thread.start()

    def head_done(self, request: socket.socket) -> None:
        with self._open_lock:
            self._heads.pop(request, None)

    def service_actions(self) -> None:
        """Called by serve_forever between polls: cut the read side of every head past its
        deadline, so its handler's read returns and it answers 408 (a per-read timeout alone
        lets a client trickle a byte every few seconds for ever)."""
        now = time.monotonic()
        with self._open_lock:
            late = [sock for sock, deadline in self._heads.items() if deadline <= now]
            for sock in late:
                del self._heads[sock]
        for sock in late:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)

    # -- serving slots: taken only by whole, allowed, authorised requests -----------------
    def take_slot(self) -> bool:
        return self._slots.acquire(blocking=False)

    def give_slot(self) -> None:
        self._slots.release()

    def _serve_one(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            log.debug("request from %s failed", client_address, exc_info=True)
        finally:
            with self._open_lock:
                self._heads.pop(request, None)
                self._open.discard(request)
                self._workers.discard(threading.current_thread())
            self.shutdown_request(request)

    def end_connections(self, timeout: float = 5.0) -> None:
        """Shut every open socket (a write blocked on a stalled viewer fails at once), then join."""
        with self._open_lock:
            sockets, workers = list(self._open), list(self._workers)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in workers:
            thread.join(timeout)


class _Server6(_Server):
    address_family = socket.AF_INET6


class LiveServer:
    """Binds at construction (so a taken port fails before any model loads), serves in a thread."""

    def __init__(self, host: str, port: int, *, token: str | None = None, max_clients: int = 32,
                 client_timeout: float = SOCKET_TIMEOUT_S, head_timeout: float = HEAD_TIMEOUT_S,
                 allowed_hosts: Sequence[str] = ()) -> None:
        self.host, self.token = host, token or None
        self.hosts = HostCheck(host, allowed_hosts)
        self.streams: dict[str, LiveStream] = {}
        self.metrics = LiveMetrics(lambda: list(self.streams.values()))
        self.page = PAGE.read_bytes()
        cls = _Server6 if ":" in host else _Server
        try:
            self._server = cls((host, port), self, max_clients, client_timeout, head_timeout)
        except OSError as exc:
            why = exc.strerror or str(exc)
            hint = ("choose another port, or stop what holds it" if exc.errno == 98 else
                    "use a port above 1023 or run with the right to bind it" if exc.errno == 13 else
                    "give an address of this machine, or 0.0.0.0 for every interface")
            raise UsageError(f"--serve {host}:{port}: cannot listen ({why}); {hint}") from None
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def describe(self) -> str:
        return f"live view {self.url}" + (" (token required)" if self.token else "")

    def host_refusal(self, hosts: list[str] | None, version: str) -> tuple[int, str] | None:
        """None when the Host header names this server; else the status and the reason."""
        return self.hosts.refusal(hosts, version)

    def authorized(self, header: str | None, query_token: str | None) -> bool:
        if self.token is None:
            return True
        given = query_token
        if header and header.lower().startswith("bearer "):
            given = header[7:].strip()
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def add_stream(self, name: str, title: str, classes: list[str], palette: list[list[int]],
                   quality: int = 80) -> LiveStream:
        if not STREAM_NAME.match(name) or name in self.streams:
            raise UsageError(f"live view: stream name {name!r} is taken or not [A-Za-z0-9_.-]")
        stream = LiveStream(name, title, classes, palette, quality=quality,
                            observe=self.metrics.observer(name))
        self.streams[name] = stream
        return stream

    def default_stream(self) -> LiveStream | None:
        return next(iter(self.streams.values()), None)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="pspnet-rt-http-accept", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop accepting, end every stream and open connection, join the handler threads."""
        server = self._server
        if server.closing.is_set():
            return
        server.closing.set()
        for stream in self.streams.values():
            stream.close()
        if self._thread is not None:
            server.shutdown()
            self._thread.join(5)
        server.end_connections()
        server.server_close()
