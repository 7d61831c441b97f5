"""One stream's live view: the latest rendered frame as JPEG, and live figures, for any number of
viewers without ever holding up the pipeline.

The write stage calls `write()`, which only swaps a reference into a one-frame slot under a
lock held for microseconds; nothing there waits for a viewer. An encoder thread of its own
turns the newest frame into JPEG once (however many viewers there are) and wakes the viewers;
a viewer busy sending an older frame simply gets the newest one next, so a slow or stalled
viewer skips frames and no queue grows anywhere. With nobody watching, the encoder still
refreshes once a second so a snapshot or a new viewer starts from a recent picture.

The live figures (FPS, per-stage p50/p99) come from a short window of recent frames kept here,
not from RunStats' reservoirs: a percentile over the whole run hides what is happening now,
and reading the reservoirs' arrays from another thread while the write stage appends to them
is not safe.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from typing import Any

import cv2
import numpy as np

from runtime.stats import E2E, STAGES, RunStats

WINDOW_S = 5.0  # live figures cover the last few seconds
IDLE_REFRESH_S = 1.0  # JPEG refresh when nobody is watching
SHARES_EVERY_S = 0.4  # class shares for the figures (sent twice a second), not for every frame
RECENT_MAX = 4096  # frames kept for the window (a fast stream's 5 s, bounded either way)
Observer = Callable[[dict[str, float], float], None]


def _shown(value: Any) -> Any:
    """What a viewer and a scraper may see of the backend's description: files by their name,
    never where they live on this machine (an absolute path says who runs it and how the box
    is laid out: the artefact, OpenVINO's cache folder), and no secret a URL may carry."""
    from runtime.naming import redact_source

    if isinstance(value, dict):
        return {k: _shown(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_shown(v) for v in value]
    if isinstance(value, str):
        return os.path.basename(value.rstrip("/")) if os.path.isabs(value) else redact_source(value)
    return value


class LiveStream:
    """The live-view sink of one stream: fed by the pipeline's write stage, read by the server."""

    def __init__(self, name: str, title: str, classes: list[str], palette: list[list[int]], *,
                 quality: int = 80, observe: Observer | None = None) -> None:
        self.name = name
        self.title = title
        self.classes = list(classes)
        self.colors = ["#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgb)) for rgb in palette]
        self.quality = int(quality)
        self._observe = observe  # Prometheus histograms, fed with every frame's stage times
        # One lock, two conditions: a new frame wakes only the encoder, a new JPEG only the viewers
        # (waking every viewer twice per frame costs CPU a saturated box does not have).
        self._lock = threading.Lock()
        self._new_raw = threading.Condition(self._lock)
        self._new_jpeg = threading.Condition(self._lock)
        self._raw: tuple[np.ndarray, np.ndarray] | None = None
        self._raw_seq = 0
        self._jpeg: bytes | None = None
        self._jpeg_seq = 0  # the raw frame the JPEG was made from
        self._jpeg_at = 0.0
        self._shares: np.ndarray | None = None
        self._shares_at = 0.0
        self._demand = 0  # viewers that want every frame
        self._recent: deque[tuple[float, dict[str, float], float]] = deque(maxlen=RECENT_MAX)
        self._encode_ms: deque[float] = deque(maxlen=256)
        self.encoded = 0
        self.frame_size: tuple[int, int] | None = None
        self.state = "starting"  # starting (model loading) -> running -> ended
        self._stats: RunStats | None = None
        self._extra_drops: Counter[str] | None = None
        self.backend: dict[str, Any] = {}
        self._final: dict[str, Any] | None = None
        self._closed = False
        self._encoder = threading.Thread(target=self._encode_loop, name=f"pspnet-rt-live-{name}", daemon=True)
        self._encoder.start()

    # -- the pipeline's side --------------------------------------------------------------
    def describe(self) -> str:
        return f"live view of stream {self.name}"

    def open(self) -> None:
        """Nothing to check: the server bound its port before the model loaded."""

    def attach(self, stats: RunStats, backend: dict[str, Any],
               extra_drops: Counter[str] | None = None) -> None:
        """The run's figures, once the backend is loaded. `extra_drops` are counted by the source
        itself (stale live frames, corrupt files) until the run merges them into `stats`."""
        self._stats, self.backend, self._extra_drops = stats, _shown(backend), extra_drops
        self.state = "running"

    def write(self, image: np.ndarray, labels: np.ndarray, times: dict[str, float], e2e_ms: float) -> None:
        """Called by the write stage for every frame; never blocks on viewers or encoding."""
        if self._observe is not None:
            self._observe(times, e2e_ms)
        with self._lock:
            self._raw = (image, labels)
            self._raw_seq += 1
            self._recent.append((time.perf_counter(), times, e2e_ms))
            self._new_raw.notify()

    def close(self) -> None:
        """The run ended: freeze the figures, wake every viewer so it can finish, stop encoding."""
        if self._closed:
            return
        self._final = self._totals()
        with self._lock:
            self.state = "ended"
            self._closed = True
            self._new_raw.notify_all()
            self._new_jpeg.notify_all()
        self._encoder.join(5)

    # -- encoding -------------------------------------------------------------------------
    def _encode_loop(self) -> None:
        while True:
            with self._lock:
                while not self._closed:
                    fresh = self._raw_seq > self._jpeg_seq
                    idle_left = IDLE_REFRESH_S - (time.monotonic() - self._jpeg_at)
                    if fresh and (self._demand > 0 or idle_left <= 0):
                        break
                    self._new_raw.wait(max(0.01, idle_left) if fresh else None)
                if self._closed and self._raw_seq == self._jpeg_seq:
                    return
                (image, labels), seq = self._raw, self._raw_seq
            t0 = time.perf_counter()
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            ms = (time.perf_counter() - t0) * 1e3
            shares = None
            if time.monotonic() - self._shares_at >= SHARES_EVERY_S:  # the figures' rate is enough
                shares = np.bincount(labels.ravel(), minlength=256)[: len(self.classes)] / max(1, labels.size)
            with self._lock:
                if ok:
                    self._jpeg = buf.tobytes()
                    self.encoded += 1
                    self._encode_ms.append(ms)
                self._jpeg_seq, self._jpeg_at = seq, time.monotonic()
                if shares is not None:
                    self._shares, self._shares_at = shares, self._jpeg_at
                self.frame_size = (image.shape[1], image.shape[0])
                self._new_jpeg.notify_all()
                if self._closed:
                    return

    # -- the viewers' side ----------------------------------------------------------------
    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """While a viewer streams, every new frame is encoded (not just one a second)."""
        with self._lock:
            self._demand += 1
            self._new_raw.notify()  # a waiting frame is encoded now, not at the idle refresh
        try:
            yield
        finally:
            with self._lock:
                self._demand -= 1

    @property
    def viewers(self) -> int:
        return self._demand

    def next_jpeg(self, after: int, timeout: float, stop: threading.Event | None = None
                  ) -> tuple[bytes | None, int]:
        """The newest JPEG made after frame `after` (skipping any in between), waiting up to
        `timeout` s; (None, after) on timeout or when the stream ended with nothing newer."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._jpeg is None or self._jpeg_seq <= after:
                left = deadline - time.monotonic()
                if self._closed or left <= 0 or (stop is not None and stop.is_set()):
                    return None, after
                self._new_jpeg.wait(min(left, 0.5))
            return self._jpeg, self._jpeg_seq

    def snapshot(self, timeout: float = 3.0) -> bytes | None:
        """A JPEG of the newest frame: encoded now if the last one is older than the newest frame."""
        with self.watching():
            with self._lock:
                wanted = self._raw_seq
            if wanted == 0:
                jpeg, _ = self.next_jpeg(0, timeout)
                return jpeg
            with self._lock:
                deadline = time.monotonic() + timeout
                while self._jpeg_seq < wanted and not self._closed and time.monotonic() < deadline:
                    self._new_jpeg.wait(min(0.5, max(0.0, deadline - time.monotonic())))
                return self._jpeg

    @property
    def ended(self) -> bool:
        return self._closed

    # -- figures --------------------------------------------------------------------------
    def _totals(self) -> dict[str, Any]:
        """Frames and drops of the whole run (monotonic: what Prometheus counters need)."""
        stats = self._stats
        if stats is None:
            return {"frames": 0, "dropped": {}, "fps_run": 0.0, "wall_s": 0.0}
        if self._final is not None:
            return self._final
        drops = Counter(dict(stats.drops))  # dict() copies in one step; the pipeline may be adding
        if self._extra_drops is not None:
            drops.update(dict(self._extra_drops))
        return {"frames": stats.frames, "dropped": dict(drops), "fps_run": round(stats.fps, 3),
                "wall_s": round(stats.wall_s, 3)}

    def _window(self) -> tuple[float, dict[str, dict[str, float]]]:
        """FPS and per-stage p50/p99 over the last WINDOW_S seconds."""
        now = time.perf_counter()
        with self._lock:
            while self._recent and now - self._recent[0][0] > WINDOW_S:
                self._recent.popleft()  # older than the window: never needed again
            recent = list(self._recent)
        if self._closed or not recent:
            fps = 0.0
        elif len(recent) >= 2 and recent[-1][0] > recent[0][0]:
            # frames per second of the window, decaying if frames stopped coming
            span = max(now - recent[0][0], recent[-1][0] - recent[0][0])
            fps = (len(recent) - 1) / span if span > 0 else 0.0
        else:
            fps = 0.0
        latency: dict[str, dict[str, float]] = {}
        for stage in (*STAGES, E2E):
            values = [r[2] if stage == E2E else r[1].get(stage) for r in recent]
            values = [v for v in values if v is not None]
            if values:
                p50, p99 = np.percentile(np.asarray(values, np.float64), (50, 99))
                latency[stage] = {"p50": round(float(p50), 3), "p99": round(float(p99), 3)}
        return fps, latency

    def figures(self) -> dict[str, Any]:
        """What /stats, the page and /metrics show for this stream (JSON-ready)."""
        totals = self._totals()
        fps, latency = self._window()
        with self._lock:
            shares = None if self._shares is None else self._shares.copy()
            jpeg_bytes = len(self._jpeg) if self._jpeg else 0
            encode = list(self._encode_ms)
        classes = [{"id": i, "name": name, "color": self.colors[i] if i < len(self.colors) else "#808080",
                    "share": round(float(shares[i]), 5) if shares is not None else None}
                   for i, name in enumerate(self.classes)]
        return {
            "stream": self.name, "title": self.title, "state": self.state, "time": round(time.time(), 3),
            "frames": totals["frames"], "fps": round(fps, 2), "fps_run": totals["fps_run"],
            "wall_s": totals["wall_s"], "window_s": WINDOW_S,
            "dropped": totals["dropped"], "dropped_total": sum(totals["dropped"].values()),
            "latency_ms": latency, "classes": classes, "frame_size": self.frame_size,
            "viewers": self._demand, "backend": self.backend,
            "jpeg": {"encoded": self.encoded, "bytes": jpeg_bytes, "quality": self.quality,
                     "encode_ms_p50": round(float(np.median(encode)), 3) if encode else None},
        }
