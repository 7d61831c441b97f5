"""A recorded bag as a video source: `--video drive.mcap`, `--video drive.mcap#/front/image_raw`,
a rosbag2 folder, or a ROS 1 `.bag` (runtime.sources dispatches here).

By default a bag is replayed as fast as the pipeline goes, every frame in order, like a video
file. `--realtime` replays it at the recorded rate (the receive times in the bag) like a live
camera: a grabber thread releases each message when its time comes and keeps only the newest,
so a slow model drops stale frames (counted) instead of falling behind; only the frames that
are used are decoded. Every frame carries its message's header stamp and frame id.

A bag damaged part-way (cut off, a bad chunk) yields every frame that can be read, then marks
the source incomplete: the run still finishes its outputs whole and exits 1 with one line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runtime.errors import SourceError, UsageError
from runtime.naming import redact_source
from runtime.source_base import STALE, Source, SourceOptions, _Item

log = logging.getLogger(__name__)

FPS_PROBE_MESSAGES = 30  # messages read at open() to tell the topic's rate (the output video's fps)


def split_bag_uri(uri: str) -> tuple[Path, str | None] | None:
    """'drive.mcap#/cam/image_raw' -> (drive.mcap, '/cam/image_raw'); a bag path alone -> (path,
    None); None when `uri` names no bag. A path that exists as written wins over a '#' split."""
    from runtime.ros.bag_reader import is_bag_path

    path = Path(uri)
    if path.exists():
        return (path, None) if is_bag_path(path) else None
    head, sep, topic = uri.rpartition("#")
    if sep and head and Path(head).exists() and is_bag_path(Path(head)):
        return Path(head), topic or None
    return None


def parse_bag_uri(uri: str, options: SourceOptions) -> Source | None:
    """The bag source `uri` names (not opened), or None when it names no bag."""
    found = split_bag_uri(uri)
    if found is None:
        return None
    path, topic = found
    check_bag_files(path, uri)
    cls = RealtimeBagSource if options.realtime else BagSource
    return cls(uri, options, path, topic or options.topic)


def check_bag_files(path: Path, uri: str) -> list[Path]:
    """The files a bag is read from, each a regular file (a link to one is fine); a FIFO, device,
    socket or broken link - the bag itself or a .mcap in a rosbag2 folder - is refused up front
    (SourceError, exit 2): a bag is read by seeking, and a FIFO would block the run for ever."""
    import os
    import stat

    shown = redact_source(uri)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".mcap", ".db3", ".yaml"))
    else:
        files = [path]
    for file in files:
        try:
            mode = os.stat(file).st_mode
        except OSError as exc:
            raise SourceError(f"--video {shown}: {file} cannot be read ({exc.strerror or exc}: a broken or "
                              "looping link?); give a bag file or a rosbag2 folder") from None
        if not stat.S_ISREG(mode):
            kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a folder" if stat.S_ISDIR(mode)
                    else "a socket" if stat.S_ISSOCK(mode) else "a device")
            raise SourceError(f"--video {shown}: {file} is {kind}, not a file; a bag is read by seeking, "
                              "so give a bag file (or a rosbag2 folder of them)")
    return files


class BagSource(Source):
    """Every image message of one topic, in order, decoded to BGR, with its stamp and frame id."""

    kind = "bag"

    def __init__(self, uri: str, options: SourceOptions, path: Path, topic: str | None) -> None:
        super().__init__(uri, options)
        self.path = path
        self.wanted_topic = topic
        self.topic_name: str | None = None
        self.files = [str(p) for p in ([path] if path.is_file() else sorted(path.iterdir()))]  # never outputs
        self._reader: Any = None
        self._topic: Any = None
        self._count: int | None = None

    def describe(self) -> str:
        topic = self.topic_name or self.wanted_topic or "?"
        kind = self._reader.kind if self._reader is not None else "bag"
        n = f", {self._count} frames" if self._count else ""
        fps = f", {self.fps:.3g} fps" if self.fps else ""
        mode = ", at the recorded rate" if self.live else ""
        return f"{kind} {self.path} topic {topic}{n}{fps}{mode}"

    @property
    def frame_count(self) -> int | None:
        return self._count

    def _open_reader(self) -> None:
        from runtime.ros.bag_reader import BagDamaged, BagError, BagReader, ImageFormatError

        reader = BagReader(self.path)
        try:
            reader.open()
            self._topic = reader.choose(self.wanted_topic)
            reader.check_first(self._topic)
        except (BagError, ImageFormatError) as exc:
            reader.close()
            raise SourceError(f"--video {self.uri}: {exc}") from None
        except BagDamaged:
            reader.close()
            raise
        except UsageError:
            raise
        self._reader = reader
        self.topic_name = self._topic.name
        self._count = self._topic.count or None

    def open(self) -> None:
        self._open_reader()
        self.fps = self._probe_fps()

    def _probe_fps(self) -> float | None:
        """The topic's rate from its first messages' receive times (None below two messages)."""
        times = []
        for log_time, _ in self._reader.raw_messages(self._topic):
            times.append(log_time)
            if len(times) >= FPS_PROBE_MESSAGES:
                break
        self._reader.damaged = None  # the probe's reading does not count; the run reads again
        span = (times[-1] - times[0]) / 1e9 if len(times) > 1 else 0
        return (len(times) - 1) / span if span > 0 and 0 < (len(times) - 1) / span < 1000 else None

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _decoded(self, index: int, log_time: int, raw: Any) -> _Item | None:
        """One message -> an item, or None (counted as dropped) when it cannot be used."""
        from runtime.ros.bag_reader import ImageFormatError

        try:
            msg = self._reader.decode(raw, log_time)
        except ImageFormatError as exc:
            reason = f"unusable image message ({exc})"
        except Exception as exc:  # a damaged message inside a readable chunk
            reason = f"damaged message ({type(exc).__name__})"
        else:
            return _Item(index, msg.image, "", None, (msg.stamp_ns, msg.frame_id, msg.log_time_ns))
        self.drops[reason] += 1
        if self.drops[reason] == 1:
            log.warning("%s: message %d skipped: %s", self.describe(), index, reason)
        return None

    def _pass(self, stop: threading.Event, first: bool) -> Iterator[_Item]:
        if not first:  # --loop: read the bag again from its start
            self.close()
            self._open_reader()
        index = 0
        for log_time, raw in self._reader.raw_messages(self._topic):
            if stop.is_set():
                break
            item = self._decoded(index, log_time, raw)
            index += 1
            if item is not None:
                yield item
        self._pass_length = index
        self._note_damage(stop)

    def _note_damage(self, stop: threading.Event) -> None:
        damaged = self._reader.damaged if self._reader is not None else None
        if damaged and not stop.is_set():
            self.end_reason = damaged
            self.incomplete = f"is damaged: {damaged}"


class RealtimeBagSource(BagSource):
    """`--realtime`: the bag played at its recorded rate, like a live camera (newest frame kept)."""

    live = True

    def open(self) -> None:
        super().open()
        self._cond = threading.Condition()
        self._slot: tuple[int, int, Any, float] | None = None
        self._ended = False
        self._closing = threading.Event()
        self._player = threading.Thread(target=self._play, name="bag-realtime", daemon=True)
        self._player.start()

    def _play(self) -> None:
        """Release each message at its recorded time after the first; keep only the newest."""
        t0 = log0 = None
        try:
            for index, (log_time, raw) in enumerate(self._reader.raw_messages(self._topic)):
                if t0 is None:
                    t0, log0 = time.monotonic(), log_time
                wait = t0 + (log_time - log0) / 1e9 - time.monotonic()
                if wait > 0 and self._closing.wait(wait):
                    return
                if self._closing.is_set():
                    return
                with self._cond:
                    if self._slot is not None:
                        self.drops[STALE] += 1
                    self._slot = (index, log_time, raw, time.perf_counter())
                    self._cond.notify_all()
        except Exception as exc:  # the reader records damage itself; anything else ends the source
            self.end_reason = f"reading failed: {exc}"
            log.exception("%s: player failed", self.describe())
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _pass(self, stop: threading.Event, first: bool) -> Iterator[_Item]:
        while not stop.is_set():
            with self._cond:
                self._cond.wait_for(lambda: self._slot is not None or self._ended, timeout=0.1)
                slot, self._slot = self._slot, None
                ended = self._ended
            if slot is not None:
                index, log_time, raw, released = slot
                item = self._decoded(index, log_time, raw)
                if item is not None:
                    yield item._replace(t_grab=released)  # end-to-end counts from its release
            elif ended:
                break
        self._note_damage(stop)

    def close(self) -> None:
        player = getattr(self, "_player", None)
        if player is not None:
            self._closing.set()
            player.join(5)
            self._player = None
        super().close()
