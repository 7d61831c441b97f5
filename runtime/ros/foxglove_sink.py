"""`--foxglove [HOST:]PORT`: the live results in the Foxglove app, through foxglove-sdk's WebSocket
server (the protocol Foxglove's "Foxglove WebSocket" connection speaks).

Channels per stream (NS = /pspnet, or /pspnet/STREAM with several streams):
    NS/overlay      foxglove.CompressedImage (jpeg): the rendered picture
    NS/class_map    foxglove.RawImage (mono8): the class id of every pixel
    NS/stats        JSON, twice a second: FPS, per-stage p50/p99 ms, drops, classes and palette
Images carry the frame's stamp and frame id (runtime.ros.stamps), as in --bag.

Never slows the pipeline: the write stage only swaps a reference into a one-frame slot per
stream (as the browser live view does); a publisher thread of its own encodes the newest frame
and logs it, skipping frames that arrive while it is busy, and encodes nothing for a channel
nobody subscribed to. The SDK keeps a small bounded backlog per client and drops past it, so a
slow or stalled client loses frames and nothing else waits. Binds 127.0.0.1 unless a host is given.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

import cv2
import numpy as np

from runtime.errors import UsageError
from runtime.ros.stamps import StampClock
from runtime.sinks import Sink
from runtime.stats import E2E, STAGES

log = logging.getLogger(__name__)

NAMESPACE = "/pspnet"
STATS_EVERY_S = 0.5
BACKLOG = 8  # messages queued per client before the SDK drops the oldest
JPEG_QUALITY = 80
WINDOW = 256  # recent frames the live figures are computed over


class _Stream:
    """One stream's channels, its newest frame and its recent timings."""

    def __init__(self, name: str | None, context: Any, clock: StampClock) -> None:
        from foxglove import Channel
        from foxglove.channels import CompressedImageChannel, RawImageChannel

        ns = NAMESPACE if name is None else f"{NAMESPACE}/{name}"
        self.name = name
        self.overlay = CompressedImageChannel(f"{ns}/overlay", context=context)
        self.class_map = RawImageChannel(f"{ns}/class_map", context=context)
        self.stats = Channel(f"{ns}/stats", message_encoding="json", context=context)
        self.clock = clock
        self.slot: tuple[Any, np.ndarray, np.ndarray | None] | None = None
        self.recent: deque[tuple[float, dict[str, float], float]] = deque(maxlen=WINDOW)
        self.frames = 0
        self.published = 0
        self.skipped = 0  # frames replaced in the slot before the publisher got to them


class FoxgloveSink(Sink):
    """The --foxglove output; one server, any number of streams."""

    def __init__(self, host: str, port: int, classes: list[str], palette: list[list[int]], *,
                 quality: int = JPEG_QUALITY) -> None:
        self.host, self.port = host, int(port)
        self.classes = list(classes)
        self.palette = [[int(c) for c in rgb] for rgb in palette]
        self.quality = int(quality)
        self.server: Any = None
        self._context: Any = None
        self._streams: dict[str | None, _Stream] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closing = False
        self._thread: threading.Thread | None = None

    def describe(self) -> str:
        port = self.server.port if self.server is not None else self.port
        return (f"Foxglove WebSocket ws://{_url_host(self.host)}:{port} (in Foxglove: Open connection -> "
                "Foxglove WebSocket)")

    def open(self) -> None:
        """Bind the port (UsageError when taken) and start publishing."""
        from runtime.ros import require

        require("--foxglove", "foxglove")
        import foxglove

        from runtime.live.address import is_loopback

        self._context = foxglove.Context()
        try:
            self.server = foxglove.start_server(name="pspnet-rt", host=self.host, port=self.port,
                                                context=self._context, message_backlog_size=BACKLOG)
        except Exception as exc:
            raise UsageError(f"--foxglove {self.host}:{self.port}: cannot listen ({exc}); choose another "
                             "port (0 picks a free one)") from None
        if not is_loopback(self.host):
            log.warning("--foxglove %s: listening beyond this machine; anyone who can reach it sees the "
                        "stream (the Foxglove WebSocket has no token)", self.host)
        self._thread = threading.Thread(target=self._publish_loop, name="pspnet-rt-foxglove", daemon=True)
        self._thread.start()

    def add_stream(self, stream: str | None, *, live: bool, fps: float | None) -> None:
        with self._lock:
            if stream not in self._streams:
                clock = StampClock(live=live, fps=fps, frame_id=stream or "camera")
                self._streams[stream] = _Stream(stream, self._context, clock)

    def write(self, frame: Any, labels: np.ndarray, image: np.ndarray | None, times: dict[str, float],
              e2e_ms: float, stream: str | None = None) -> None:
        """Hand the newest frame over; never waits for encoding or clients."""
        if stream not in self._streams:
            self.add_stream(stream, live=False, fps=None)
        with self._lock:
            s = self._streams[stream]
            if s.slot is not None:
                s.skipped += 1
            s.slot = (frame, labels, image)
            s.frames += 1
            s.recent.append((time.perf_counter(), times, e2e_ms))
            self._wake.notify()

    # -- the publisher thread --------------------------------------------------------------
    def _publish_loop(self) -> None:
        next_stats = 0.0
        while True:
            with self._lock:
                while not self._closing and not any(s.slot for s in self._streams.values()) \
                        and time.monotonic() < next_stats:
                    self._wake.wait(max(0.01, next_stats - time.monotonic()))
                if self._closing:
                    return
                work = [(s, s.slot) for s in self._streams.values() if s.slot is not None]
                for s, _ in work:
                    s.slot = None
            for s, (frame, labels, image) in work:
                try:
                    self._publish(s, frame, labels, image)
                except Exception:  # a viewer's problem must never end the run
                    log.debug("foxglove publish failed", exc_info=True)
            if time.monotonic() >= next_stats:
                next_stats = time.monotonic() + STATS_EVERY_S
                for s in list(self._streams.values()):
                    if s.stats.has_sinks():
                        s.stats.log(self._figures(s))

    def _publish(self, s: _Stream, frame: Any, labels: np.ndarray, image: np.ndarray | None) -> None:
        from foxglove.messages import CompressedImage, RawImage, Timestamp

        stamp_ns, frame_id, _ = s.clock.stamp(frame)
        stamp = Timestamp(sec=stamp_ns // 1_000_000_000, nsec=stamp_ns % 1_000_000_000)
        if image is not None and s.overlay.has_sinks():
            ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if ok:
                s.overlay.log(CompressedImage(timestamp=stamp, frame_id=frame_id, format="jpeg",
                                              data=jpeg.tobytes()), log_time=stamp_ns)
        if s.class_map.has_sinks():
            h, w = labels.shape[:2]
            s.class_map.log(RawImage(timestamp=stamp, frame_id=frame_id, width=w, height=h, encoding="mono8",
                                     step=w, data=np.ascontiguousarray(labels).tobytes()), log_time=stamp_ns)
        s.published += 1

    def _figures(self, s: _Stream) -> dict[str, Any]:
        with self._lock:
            recent = list(s.recent)
            frames, skipped, published = s.frames, s.skipped, s.published
        fps = 0.0
        if len(recent) >= 2 and recent[-1][0] > recent[0][0]:
            fps = (len(recent) - 1) / (recent[-1][0] - recent[0][0])
        latency = {}
        for stage in (*STAGES, E2E):
            values = [r[2] if stage == E2E else r[1].get(stage) for r in recent]
            values = [v for v in values if v is not None]
            if values:
                p50, p99 = np.percentile(np.asarray(values, np.float64), (50, 99))
                latency[stage] = {"p50": round(float(p50), 3), "p99": round(float(p99), 3)}
        return {"stream": s.name or "0", "frames": frames, "fps": round(fps, 2), "latency_ms": latency,
                "published": published, "skipped_for_viewers": skipped,
                "classes": self.classes, "palette": self.palette}

    def close(self, failed: bool = False) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(5)
        if self.server is not None:
            try:
                self.server.stop()
            except Exception as exc:
                log.debug("stopping the Foxglove server: %s", exc)

    def discard(self) -> None:
        """Nothing on disk."""


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
