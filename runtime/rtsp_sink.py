"""`--output rtsp://[USER:PASSWORD@]HOST:PORT/PATH`: the rendered stream served as H.264 to any
number of RTSP clients (a VMS, a control room's player, ffplay, VLC, OpenCV), beside the other
sinks.

The server is GStreamer's gst-rtsp-server in a helper process (runtime/rtsp_helper.py, started
and fed by runtime/rtsp_server.py): one encoder shared by every client, started when the first
client arrives. The pipeline never waits for it: write() hands the frame over and returns, a
frame the helper has not taken yet is replaced by the newer one (counted as dropped), and a slow
client loses packets in the server rather than holding anything up. HOST is the address to
listen on (127.0.0.1 when empty: this machine only; 0.0.0.0 for every interface), PORT 8554 when
not given, 0 for a free one (the URL served is printed). With USER:PASSWORD in the URL, clients
must authenticate (Basic or Digest); the password is never printed. Several streams share one
server: stream NAME is served at PATH/NAME.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import urllib.parse
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from runtime.errors import OutputError, WriteError
from runtime.naming import redact_source
from runtime.rtsp_server import RtspServerError, RtspServerProcess, RtspUnavailable, ServerOptions, gst_python
from runtime.sinks import Sink

log = logging.getLogger(__name__)

DEFAULT_PORT = 8554
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _announce(line: str) -> None:
    print(f"pspnet-rt: {line}", file=sys.stderr, flush=True)


class RtspSink(Sink):
    """Serve the rendered frames at an rtsp:// URL (see the module's docstring). With several
    streams (`streams` = their names), one server serves each at PATH/NAME; `mount(i)` is what
    stream i writes to."""

    def __init__(self, url: str, fps: float, *, streams: list[str] | None = None, preset: str = "superfast",
                 quality: int = 23, announce: Callable[[str], None] = _announce) -> None:
        self.url = url
        self.fps = float(fps) if fps and fps > 0 else 25.0
        self.preset, self.quality = preset, quality
        self.announce = announce
        self.host, self.port, self.path, self.credentials = self.parse(url)
        self.paths = [f"{self.path}/{name}" for name in streams] if streams else [self.path]
        self.sizes: list[tuple[int, int] | None] = [None] * len(self.paths)  # (w, h) fixed by the first frame
        self.frames = [0] * len(self.paths)
        self.server: RtspServerProcess | None = None
        self._closed = False

    @staticmethod
    def parse(url: str) -> tuple[str, int, str, str | None]:
        """(host, port, path, "user:password" or None) of an --output rtsp:// URL; OutputError if bad."""
        parts = urllib.parse.urlsplit(url)
        where = f"--output {redact_source(url)}"
        if parts.scheme.lower() != "rtsp":
            raise OutputError(f"{where}: not an rtsp:// URL")
        try:
            port = parts.port
        except ValueError:
            raise OutputError(f"{where}: the port is not a number from 0 to 65535") from None
        path = parts.path.rstrip("/")
        if not path or parts.query or parts.fragment:
            raise OutputError(f"{where}: give a path to serve, e.g. "
                              f"rtsp://127.0.0.1:{DEFAULT_PORT}/segmented (no query or fragment)")
        credentials = None
        if parts.username is not None or parts.password is not None:
            user = urllib.parse.unquote(parts.username or "")
            password = urllib.parse.unquote(parts.password or "")
            if not user or not password or ":" in user:
                raise OutputError(f"{where}: credentials must be USER:PASSWORD "
                                  "(both non-empty, no ':' in USER)")
            credentials = f"{user}:{password}"
        host = parts.hostname or "127.0.0.1"
        return host, DEFAULT_PORT if port is None else port, path, credentials

    def public_url(self, mount: int | None = None) -> str:
        """A URL clients use, password hidden (the bound port once started): the one given, or a
        stream's mount."""
        user = f"{self.credentials.split(':', 1)[0]}:***@" if self.credentials else ""
        port = self.server.port if self.server is not None and self.server.port else self.port
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"rtsp://{user}{host}:{port}{self.path if mount is None else self.paths[mount]}"

    def describe(self) -> str:
        return f"rtsp {self.public_url()} (H.264 via gst-rtsp-server)"

    def check(self) -> None:
        """The URL is valid, GStreamer's RTSP server can run here, and the port is free."""
        try:
            gst_python()
        except RtspUnavailable as exc:
            raise OutputError(f"--output {self.public_url()}: {exc}") from None
        if self.port == 0:
            return
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((self.host, self.port))
        except OSError as exc:
            why = "in use" if exc.errno == 98 else (exc.strerror or str(exc))
            raise OutputError(f"--output {self.public_url()}: cannot listen on {self.host}:{self.port} "
                              f"({why}); choose another port (0 picks a free one) or address") from None

    def open(self) -> None:
        """Check, then start serving (clients may connect before the first frame)."""
        self.check()
        if self.host not in LOCAL_HOSTS:
            open_to_all = ("" if self.credentials
                           else "; anyone who can reach it may watch (add USER:PASSWORD@ to the URL)")
            log.warning("--output %s: reachable from other machines%s", self.public_url(), open_to_all)
        options = ServerOptions(host=self.host, port=self.port, paths=tuple(self.paths), fps=self.fps,
                                credentials=self.credentials, preset=self.preset, quality=self.quality)
        self.server = RtspServerProcess(options)
        try:
            self.server.start()
        except RtspServerError as exc:
            error = WriteError if exc.crashed else OutputError  # our helper's crash is no usage error
            raise error(f"--output {self.public_url()}: the RTSP server did not start: {exc}") from None
        urls = ", ".join(self.public_url(i) for i in range(len(self.paths)))
        self.announce(f"serving {urls} (H.264; RTSP clients may connect)")

    def mount(self, index: int) -> RtspMount:
        return RtspMount(self, index)

    def write(self, image: np.ndarray, mount: int = 0) -> None:
        """Hand the frame to the server and return at once (never waits for a client)."""
        server = self.server
        if server.failure:
            raise WriteError(f"--output {self.public_url()}: {server.failure}")
        h, w = image.shape[:2]
        size = self.sizes[mount]
        if size is None:
            size = self.sizes[mount] = (w + w % 2, h + h % 2)  # I420 wants even sides
        if (w, h) != size:  # mixed sizes (folders), odd sides: the first size, even
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        server.offer(image, mount)
        self.frames[mount] += 1

    def facts(self) -> dict[str, Any]:
        """What RTSP out did (for --summary-json): frames offered, dropped before the server (it was
        busy), sent with no client watching, the most clients connected at once."""
        s = self.server
        if s is None:
            return {"url": self.public_url(), "frames": 0}
        return {"url": self.public_url(), "mounts": [self.public_url(i) for i in range(len(self.paths))],
                "frames": s.offered, "dropped": s.dropped, "unwatched": (s.ended or {}).get("unwatched"),
                "most_clients": s.most_clients}

    def summary(self) -> str:
        f = self.facts()
        if self.server is None:
            return f"{f['url']}: not started"
        watched = f", {f['unwatched']} with no client watching" if f["unwatched"] is not None else ""
        return (f"{f['url']}: {f['frames']} frames, {f['dropped']} dropped before the server (it was busy)"
                f"{watched}; up to {f['most_clients']} client(s) at once")

    def report(self) -> tuple[str, str, str, dict[str, Any]]:
        """(summary label, summary line, --summary-json key, its facts): runtime.summary asks each sink."""
        return "rtsp out", self.summary(), "rtsp_out", self.facts()

    def close(self, failed: bool = False) -> None:
        """Stop serving (clients see the stream end); WriteError if the server died under us."""
        if self._closed:
            return
        self._closed = True
        server = self.server
        if server is None:
            return
        failure = server.failure
        server.stop()
        log.info("rtsp out %s", self.summary())
        if failure:
            raise WriteError(f"--output {self.public_url()}: {failure}")

    def discard(self) -> None:
        if self.server is not None:
            with contextlib.suppress(Exception):
                self.server.kill()


class RtspMount:
    """What one stream writes to: its mount of the run's RtspSink (`sink` is the shared sink)."""

    def __init__(self, sink: RtspSink, index: int) -> None:
        self.sink, self.index = sink, index

    def write(self, image: np.ndarray) -> None:
        self.sink.write(image, self.index)
