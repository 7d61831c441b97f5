"""What every source is, below the URI parser (runtime/sources.py) and every source module
(runtime/ros/bag_source.py): `Source`, the `Frame`s it yields, `SourceOptions`. Kept apart so a
source defined elsewhere subclasses `Source` without importing the parser that dispatches to it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from runtime.naming import redact_source
from segdata.frames import FrameError, to_bgr8

log = logging.getLogger("runtime.sources")

STALE = "stale (live source: a newer frame arrived before inference was free)"


@dataclass
class Frame:
    """One decoded frame on its way through the pipeline."""

    index: int  # position in the source's stream; gaps mean skipped or dropped frames
    image: np.ndarray  # uint8 BGR HxWx3 at the source's own size
    t_capture: float  # time.perf_counter() when the frame became available
    capture_ms: float  # how long the pipeline waited for it (decode included)
    name: str = ""  # file name for folder sources
    stamp_ns: int | None = None  # bags: the image message's header.stamp (ROS time, ns)
    frame_id: str | None = None  # bags: its header.frame_id
    log_time_ns: int | None = None  # bags: when the recorder received it


@dataclass
class SourceOptions:
    """Knobs the CLI exposes; defaults suit a file on a laptop."""

    loop: bool = False
    max_frames: int | None = None
    capture_size: tuple[int, int] | None = None  # (width, height) asked of a camera
    capture_fps: float | None = None
    reconnect: int = 5  # attempts before a lost live stream ends the run
    reconnect_delay: float = 0.5  # first backoff in seconds; doubles, capped at 8 s
    timeout: float = 10.0  # network open/read timeout in seconds
    rtsp_transport: str = "auto"  # rtsp://: FFmpeg's choice (UDP, then TCP), or only tcp / udp
    demo_size: tuple[int, int] = (240, 480)  # (H, W); the CLI passes the artefact's input size
    demo_frames: int = 300
    demo_seed: int = 0
    topic: str | None = None  # bags: the image topic, where SRC does not say (SRC#TOPIC)
    realtime: bool = False  # bags: replay at the recorded rate, like a live camera


class _Item(NamedTuple):
    index: int  # position within one pass over the content
    image: np.ndarray
    name: str = ""
    t_grab: float | None = None  # live sources: when the grabber got it
    stamp: tuple[int, str, int] | None = None  # bags: (header stamp ns, frame id, log time ns)


class Source:
    """Base: turns one pass over the content (`_pass`) into numbered Frames with loop/max-frames."""

    kind = "source"
    live = False

    def __init__(self, uri: str, options: SourceOptions) -> None:
        self.uri = uri
        self.options = options
        self.drops: Counter[str] = Counter()
        self.fps: float | None = None
        self.end_reason: str | None = None
        self.reconnects = 0
        self.frame_size: tuple[int, int] | None = None  # (width, height) when known before decoding
        self.incomplete: str | None = None  # a finite source that ended before its end: the run failed
        self._pass_length = 0

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        return f"{self.kind} {redact_source(self.uri)}"

    @property
    def frame_count(self) -> int | None:
        """Frames in one pass where known before decoding (files, folders, demo); None for live."""
        return None

    def open(self) -> None:
        """Open the content or raise SourceError naming it and the fix."""

    def close(self) -> None:
        """Release what open() took."""

    def _pass(self, stop: threading.Event, first: bool) -> Iterator[_Item]:
        raise NotImplementedError

    def frames(self, stop: threading.Event | None = None) -> Iterator[Frame]:
        """Frames in order until the content ends, --max-frames is reached or `stop` is set."""
        stop = stop or threading.Event()
        emitted, offset, first = 0, 0, True
        limit = self.options.max_frames
        while not stop.is_set():
            emitted_this_pass = 0
            t0 = time.perf_counter()
            for item in self._pass(stop, first):
                t = time.perf_counter()
                try:
                    image = to_bgr8(item.image)
                except FrameError as exc:
                    self.drops["corrupt frame"] += 1
                    log.warning("%s: frame %d skipped: %s", self.describe(), offset + item.index, exc)
                    t0 = time.perf_counter()
                    continue
                frame = Frame(offset + item.index, image, item.t_grab or t, (t - t0) * 1e3, item.name)
                if item.stamp is not None:
                    frame.stamp_ns, frame.frame_id, frame.log_time_ns = item.stamp
                yield frame
                emitted += 1
                emitted_this_pass += 1
                if limit is not None and emitted >= limit:
                    self.end_reason = f"--max-frames {limit} reached"
                    return
                if stop.is_set():
                    self.end_reason = self.end_reason or "stopped"
                    return
                t0 = time.perf_counter()
            first = False
            if self.live or not self.options.loop or emitted_this_pass == 0:
                break
            offset += self._pass_length
        if stop.is_set() and self.end_reason is None:
            self.end_reason = "stopped"
