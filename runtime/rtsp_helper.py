"""An RTSP server process: GStreamer's gst-rtsp-server serving, as H.264, the raw frames it reads
on stdin. pspnet-rt runs it for `--output rtsp://` (runtime.rtsp_server starts and feeds it), the
tests and benchmarks run it as an IP camera. It is never imported by the runtime: it needs only
PyGObject with GStreamer (Debian: python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-
{base,good,ugly}), which usually live in the system's Python, not in pspnet-rt's virtualenv.

    stdin    frames in order, each an 8-byte header (mount index, width, height, 0: little-endian
             uint16) then WIDTH x HEIGHT x 3 bytes of BGR; one mount per --path; EOF ends it
    stdout   JSON lines: {"ready": true, "port": P} once listening, then {"clients": N} when a
             client connects or leaves, {"ended": ..., "frames": ..., "dropped": ...} at the end
    env      PSPNET_RT_RTSP_CREDENTIALS=USER:PASSWORD: clients must authenticate (not argv, so
             that the password is not in the process list)

One encoder per mount serves all its clients (a shared media, created when the first client
arrives and stopped when the last one leaves): without a client a frame costs one pipe read. Nothing here
ever waits for a client: the source queue keeps the newest two frames (older ones are dropped
when the encoder is behind), a TCP client whose backlog is full loses packets
(gst-rtsp-server's drop-backlog), and a UDP client is sent datagrams that nobody waits on.

`python3 rtsp_helper.py --check` says whether this Python has what the server needs (exit 0) or
what is missing (exit 1, one line).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import struct
import sys
import threading

ELEMENTS = ("appsrc", "videoconvert", "x264enc", "rtph264pay", "rtpbin", "udpsink")
CREDENTIALS_ENV = "PSPNET_RT_RTSP_CREDENTIALS"
HEADER = struct.Struct("<HHHH")  # before each frame: mount index, width, height, 0
ROLE = "viewer"


def missing() -> str | None:
    """What this Python lacks to serve RTSP (None when nothing is missing)."""
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtsp", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import Gst, GstRtspServer  # noqa: F401
    except (ImportError, ValueError) as exc:
        return (f"PyGObject with GStreamer's RTSP server ({exc}): apt-get install python3-gi "
                "gir1.2-gst-rtsp-server-1.0")
    Gst.init(None)
    absent = [name.split("|")[-1] for name in ELEMENTS
              if not any(Gst.ElementFactory.find(n) for n in name.split("|"))]
    if absent:
        return (f"GStreamer elements {', '.join(absent)}: apt-get install gstreamer1.0-plugins-base "
                "gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly")
    return None


def say(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


class Server:
    """A gst-rtsp-server with one mount point per --path, whose frames come from `feed()`."""

    def __init__(self, args: argparse.Namespace) -> None:
        from gi.repository import Gst, GstRtsp, GstRtspServer

        self.Gst = Gst
        self.args = args
        self.lock = threading.Lock()
        self.paths: list[str] = args.path
        self.appsrcs: list[object | None] = [None] * len(self.paths)  # each mount's newest media source
        self.encoders: list[object | None] = [None] * len(self.paths)
        self.sizes: list[tuple[int, int] | None] = [None] * len(self.paths)
        self.frames = self.unwatched = self.clients = 0

        self.server = GstRtspServer.RTSPServer()
        self.server.set_address(args.host)
        self.server.set_service(str(args.port))
        credentials = os.environ.pop(CREDENTIALS_ENV, "")
        permissions = self._require_auth(credentials, args.auth) if credentials else None
        protocols = GstRtsp.RTSPLowerTrans(0)
        if "tcp" in args.protocols:
            protocols |= GstRtsp.RTSPLowerTrans.TCP
        if "udp" in args.protocols:
            protocols |= GstRtsp.RTSPLowerTrans.UDP
        gop = max(1, round(args.fps * args.key_seconds))
        for mount, path in enumerate(self.paths):
            factory = GstRtspServer.RTSPMediaFactory()
            factory.set_launch(
                "( appsrc name=src is-live=true do-timestamp=true format=time block=false "
                "leaky-type=downstream max-buffers=2 ! queue max-size-buffers=2 leaky=downstream "
                "! videoconvert ! video/x-raw,format=I420 "
                f"! x264enc name=enc tune=zerolatency speed-preset={args.preset} threads={args.threads} "
                f"key-int-max={gop} pass=qual quantizer={args.quality} "
                "! video/x-h264,profile=constrained-baseline "
                "! rtph264pay name=pay0 pt=96 config-interval=-1 )")
            factory.set_shared(True)  # one encoder for every client of this mount
            factory.set_protocols(protocols)
            factory.connect("media-configure", self._media_configure, mount)
            if permissions is not None:
                factory.set_permissions(permissions)
            self.server.get_mount_points().add_factory(path, factory)
        self.server.connect("client-connected", self._client_connected)

    def _require_auth(self, credentials: str, methods: str) -> object:
        from gi.repository import GstRtsp, GstRtspServer

        user, _, password = credentials.partition(":")
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", ROLE)
        supported = []
        if "basic" in methods:
            supported.append(GstRtsp.RTSPAuthMethod.BASIC)
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        if "digest" in methods:
            supported.append(GstRtsp.RTSPAuthMethod.DIGEST)
            auth.add_digest(user, password, token)
        try:  # the methods the server challenges with, as flags
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod(sum(int(m) for m in supported)))
        except (TypeError, ValueError):
            # PyGObject types the flags as an enum (3.42: "invalid enum value: 3"; `|` gives an int it
            # refuses): challenge with the last (Digest when asked); a client that sends Basic
            # credentials up front is still checked against the Basic entry added above
            auth.set_supported_methods(supported[-1])
        self.server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role(ROLE, "media.factory.access", True)
        permissions.add_permission_for_role(ROLE, "media.factory.construct", True)
        return permissions

    def _caps(self, size: tuple[int, int]) -> object:
        w, h = size
        return self.Gst.Caps.from_string(f"video/x-raw,format=BGR,width={w},height={h},"
                                         f"framerate={self.args.fps}/1")

    def _media_configure(self, factory: object, media: object, mount: int) -> None:
        appsrc = media.get_element().get_by_name_recurse_up("src")
        # The newest media's source is the one fed, until a newer media replaces it. Never cleared on
        # "unprepared": the old media's unprepare can land after the new one was configured, which
        # would starve the new one (no frame, no preroll: 503 to every client). A source whose media
        # is gone refuses frames (FLUSHING), which is how frames nobody watches are counted.
        with self.lock:
            if self.sizes[mount] is not None:
                appsrc.set_property("caps", self._caps(self.sizes[mount]))
            self.appsrcs[mount] = appsrc
            self.encoders[mount] = media.get_element().get_by_name_recurse_up("enc")

    def _client_connected(self, server: object, client: object) -> None:
        client.set_property("drop-backlog", True)  # a slow TCP client loses packets, never stalls us
        self.clients += 1
        say(clients=self.clients)
        client.connect("closed", self._client_closed)
        client.connect("play-request", self._key_frame_now)

    def _key_frame_now(self, client: object, context: object) -> None:
        """A client that joins a stream already playing would start mid-GOP (its decoder shows
        broken pictures until the next key frame): ask every encoder for a key frame now."""
        Gst = self.Gst
        with self.lock:
            encoders = [e for e in self.encoders if e is not None]
        for encoder in encoders:
            request = Gst.Structure.new_from_string("GstForceKeyUnit, all-headers=(boolean)true")
            event = Gst.Event.new_custom(Gst.EventType.CUSTOM_UPSTREAM, request)
            encoder.get_static_pad("src").send_event(event)

    def _client_closed(self, client: object) -> None:
        self.clients -= 1
        say(clients=self.clients)

    def feed(self, stream: object, loop: object) -> None:
        """Read frames (HEADER, then WIDTH x HEIGHT x 3 bytes) until EOF; push each to its mount's
        shared media, when one exists."""
        Gst = self.Gst
        ended = "stdin closed"
        try:
            while True:
                head = _read_exactly(stream, HEADER.size)
                if head is None:
                    return
                mount, w, h, _ = HEADER.unpack(head)
                data = _read_exactly(stream, w * h * 3)
                if data is None or mount >= len(self.paths):
                    ended = "a frame cut short" if data is None else f"no mount {mount}"
                    return
                self.frames += 1
                with self.lock:
                    appsrc = self.appsrcs[mount]
                    if self.sizes[mount] != (w, h):
                        self.sizes[mount] = (w, h)
                        if appsrc is not None:
                            appsrc.set_property("caps", self._caps((w, h)))
                pushed = appsrc is not None and appsrc.emit(
                    "push-buffer", Gst.Buffer.new_wrapped(data)) == Gst.FlowReturn.OK
                if not pushed:
                    self.unwatched += 1  # nobody watching
        except Exception as exc:  # a broken pipe from our parent: end, saying why
            ended = f"{type(exc).__name__}: {exc}"
        finally:
            say(ended=ended, frames=self.frames, unwatched=self.unwatched)
            loop.quit()


def _read_exactly(stream: object, n: int) -> bytes | None:
    """n bytes from `stream`, or None at EOF."""
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = stream.readinto(view[got:])
        if not k:
            return None
        got += k
    return bytes(buf)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="say what is missing and exit")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (said in the ready line)")
    p.add_argument("--path", action="append", help="a mount point; repeat for several (frames say which)")
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--protocols", default="tcp,udp", help="transports clients may use: tcp, udp or both")
    p.add_argument("--auth", default="basic,digest", help="with credentials: basic, digest or both")
    p.add_argument("--preset", default="superfast", help="x264 speed preset")
    p.add_argument("--quality", type=int, default=23, help="x264 constant quality (lower = better)")
    p.add_argument("--threads", type=int, default=1, help="x264 threads (0 = auto)")
    p.add_argument("--key-seconds", type=float, default=1.0,
                   help="a key frame this often: how soon a new client sees a picture")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problem = missing()
    if args.check or problem:
        print(problem or "ok", file=sys.stderr if problem else sys.stdout)
        return 1 if problem else 0
    if not args.path or any(not p.startswith("/") for p in args.path):
        print("rtsp_helper: give one --path /NAME or more", file=sys.stderr)
        return 2
    from gi.repository import GLib

    server = Server(args)
    loop = GLib.MainLoop()
    if server.server.attach(None) == 0:
        print(f"rtsp_helper: cannot listen on {args.host}:{args.port} (in use, or not an address here)",
              file=sys.stderr)
        return 1
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, sig, lambda *_: (loop.quit(), False)[1])
    say(ready=True, port=server.server.get_bound_port(), pid=os.getpid())
    threading.Thread(target=server.feed, args=(sys.stdin.buffer, loop), daemon=True).start()
    loop.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
