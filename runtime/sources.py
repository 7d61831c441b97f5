"""Video sources by URI, parsed in one place.

    camN, /dev/videoN          V4L2 camera (live)
    rtsp:// http(s):// udp:// rtmp:// tcp:// srt://   network stream via FFmpeg (live)
    http(s)://.../clip.mp4     a file on a web server (lossless, like a file; see http_probe)
    FILE.mp4 (any container)   video file (lossless)
    DIR/ or 'DIR/*.png'        image folder or glob, natural-sorted (lossless)
    BAG[#TOPIC]                a ROS bag: .mcap, rosbag2 folder, ROS 1 .bag (runtime/ros/bag_source)

`Source`, `Frame` and `SourceOptions` live in runtime/source_base.py (re-exported here), so a
source module such as runtime/ros/bag_source.py subclasses Source without importing this parser.
    IMAGE.png                  one image (lossless)
    demo                       the synthetic street-scene clip (lossless)

Lossless sources yield every frame in order. Live sources run a grabber thread that keeps only
the newest frame: when inference is slower than the camera, stale frames are dropped (and
counted) instead of piling up latency. A live stream that dies is reopened with bounded
exponential backoff, then the source ends cleanly.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from runtime.errors import SourceError, SourceMissing
from runtime.naming import redact_source
from runtime.source_base import STALE, Frame, Source, SourceOptions, _Item  # noqa: F401 (their home)
from segdata.frames import IMAGE_SUFFIXES, FrameError, read_image

log = logging.getLogger(__name__)

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp")
SOURCE_HELP = ("SRC is camN, /dev/videoN, a video file, an image folder or glob, "
               "rtsp:// http(s):// udp:// URL, a ROS bag (BAG or BAG#TOPIC), or demo")
LOST = "lost (live source: sent while the stream was down and being reconnected)"
RTSP_TRANSPORTS = ("auto", "tcp", "udp")
FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"


def _cap_size(cap: cv2.VideoCapture) -> tuple[int, int] | None:
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
    return (w, h) if w > 0 and h > 0 else None


def _natural_key(path: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path)]


class _NpyFrames:
    """Frame i of a cached clip's (N, H, W, 3) image array by pread: no memory map, so the clip's
    pages stay in the page cache instead of counting ~100 MB towards the runtime's resident
    memory. Shape, dtype and data offset come from numpy's own reading of the .npy header."""

    def __init__(self, images: np.memmap) -> None:
        self.shape, self.dtype = tuple(images.shape[1:]), images.dtype
        self.nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        self.count, self.offset = int(images.shape[0]), int(images.offset)
        self.fd = os.open(images.filename, os.O_RDONLY)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> tuple[np.ndarray, None]:
        buf = os.pread(self.fd, self.nbytes, self.offset + i * self.nbytes)
        return np.frombuffer(buf, self.dtype).reshape(self.shape), None

    def close(self) -> None:
        os.close(self.fd)


class DemoSource(Source):
    """The built-in synthetic street clip: a source that needs no camera, file or network.

    Frames come from segdata.clip_cache (rendered once, then read back from disk), because
    rendering a frame live costs about as much CPU as inference and would make every pipeline
    figure a measurement of the generator; where the cache folder is not writable it renders live.
    """

    kind = "demo"
    _prefetch: tuple[threading.Thread, threading.Event, tuple[int, int]] | None = None

    def _clip_args(self) -> dict:
        h, w = self.options.demo_size
        return {"seed": self.options.demo_seed, "height": h, "width": w, "frames": self.options.demo_frames}

    def prefetch(self) -> None:
        """Start rendering the clip into its cache in a background thread, at the current
        demo_size (e.g. while `python -m build_engine` runs in a child process: on a fresh
        machine the two first-run costs overlap). open() waits for it, or stops it when the size
        has changed; close() stops it. Rendering errors are left for open() to meet."""
        from segdata.clip_cache import CachedClip

        def render() -> None:
            try:
                CachedClip(**args, progress=False, stop=stop)
            except Exception as exc:  # InterruptedError, a full disk: open() renders or reports
                log.debug("demo clip prefetch ended: %s", exc)

        args, stop = self._clip_args(), threading.Event()
        thread = threading.Thread(target=render, name="demo-clip-prefetch", daemon=True)
        self._prefetch = (thread, stop, self.options.demo_size)
        thread.start()

    def _end_prefetch(self, wait: bool) -> None:
        if self._prefetch is None:
            return
        thread, stop, size = self._prefetch
        self._prefetch = None
        if not (wait and size == self.options.demo_size):
            stop.set()
        elif thread.is_alive():
            log.info("waiting for the demo clip to finish rendering")
        thread.join()

    def open(self) -> None:
        self._end_prefetch(wait=True)
        try:
            from segdata.clip_cache import CachedClip
            from segdata.synthetic import FPS, StreetClip
        except ImportError as exc:
            raise SourceError(f"the demo source needs segdata.synthetic, which failed to import ({exc}); "
                              "reinstall pspnet-rt or pass a video file, folder or camera") from None
        h, w = self.options.demo_size
        kwargs = self._clip_args()
        try:
            self._clip = _NpyFrames(CachedClip(**kwargs).images)
        except OSError as exc:
            log.warning("demo clip cache unusable (%s); rendering frames live, which costs CPU", exc)
            self._clip = StreetClip(**kwargs)
        self.fps = FPS
        self.frame_size = (w, h)

    def close(self) -> None:
        self._end_prefetch(wait=False)
        if isinstance(getattr(self, "_clip", None), _NpyFrames):
            self._clip.close()
        self._clip = None

    @property
    def frame_count(self) -> int:
        return self.options.demo_frames

    def describe(self) -> str:
        h, w = self.options.demo_size
        return (f"demo (synthetic street clip, {self.options.demo_frames} frames at {h}x{w}, "
                f"seed {self.options.demo_seed})")

    def _pass(self, stop: threading.Event, first: bool) -> Iterator[_Item]:
        self._pass_length = len(self._clip)
        for i in range(len(self._clip)):
            if stop.is_set():
                return
            yield _Item(i, self._clip[i][0])


class ImageFolderSource(Source):
    """A folder or glob of images, natural-sorted so frame_2 comes before frame_10."""

    kind = "images"

    def __init__(self, uri: str, options: SourceOptions, files: list[str]) -> None:
        super().__init__(uri, options)
        self.files = files

    @classmethod
    def from_uri(cls, uri: str, options: SourceOptions) -> ImageFolderSource:
        if os.path.isdir(uri):
            names = [os.path.join(uri, n) for n in os.listdir(uri)
                     if Path(n).suffix.lower() in IMAGE_SUFFIXES and not n.startswith(".")]
            where, others = f"folder {uri}", []
        else:
            folder, pattern = os.path.split(uri)
            if folder and os.path.isdir(folder):  # shots[1]/*.png: the folder that exists, not a class
                uri_glob = os.path.join(glob.escape(folder), pattern)
            else:
                uri_glob = uri
            matched = [p for p in glob.glob(uri_glob) if os.path.isfile(p)]
            names = [p for p in matched if Path(p).suffix.lower() in IMAGE_SUFFIXES]
            where, others = f"glob {uri!r}", [p for p in matched if p not in set(names)]
        if not names:
            seen = (f"; it matches {len(others)} other file(s), e.g. {os.path.basename(others[0])}"
                    if others else "")
            raise SourceError(f"no images in {where} (looked for {', '.join(sorted(IMAGE_SUFFIXES))}{seen}); "
                              "point --video at a folder of images, a video file, or use demo")
        if others:
            log.warning("%s: %d matching file(s) are not images and are skipped (e.g. %s)", where,
                        len(others), os.path.basename(others[0]))
        return cls(uri, options, sorted(names, key=_natural_key))

    def describe(self) -> str:
        return f"images {redact_source(self.uri)} ({len(self.files)} files)"

    def open(self) -> None:
        """One image given by name must be readable (a folder may skip the odd broken file)."""
        if self.files == [self.uri]:
            try:
                read_image(self.uri)
            except FrameError as exc:
                raise SourceError(f"--video {exc}; check the file, or pass a folder, video or demo") from None

    @property
    def frame_count(self) -> int:
        return len(self.files)

    def _pass(self, stop: threading.Event, first: bool) -> Iterator[_Item]:
        self._pass_length = len(self.files)
        for i, path in enumerate(self.files):
            if stop.is_set():
                return
            try:
                image = read_image(path)
            except FrameError as exc:
                self.drops["unreadable image"] += 1
                log.warning("skipped %s", exc)
                continue
            yield _Item(i, image, os.path.basename(path))


class VideoFileSource(Source):
    """A video file decoded by OpenCV's FFmpeg backend, every frame in order."""

    kind = "video"
    MAX_CONSECUTIVE_DECODE_FAILURES = 8
    SHORT_IS_FAILURE = False  # a local file that ends early is damaged: its frames are what it has

    def _capture(self) -> cv2.VideoCapture:
        return cv2.VideoCapture(self.uri, cv2.CAP_FFMPEG)

    def _open_error(self, elapsed: float) -> str:
        uri = redact_source(self.uri)
        return (f"cannot open video file {uri}: OpenCV's FFmpeg backend cannot decode it "
                f"(not a video, truncated, or an unsupported codec); check it with `ffprobe {uri}`")

    def open(self) -> None:
        t0 = time.monotonic()
        self._cap = _interruptible(self._capture, f"open {redact_source(self.uri)}")
        if not self._cap.isOpened():
            self._cap.release()
            raise SourceError(self._open_error(time.monotonic() - t0))
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 0 < fps < 1000 else None
        self._count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_size = _cap_size(self._cap)

    def close(self) -> None:
        if getattr(self, "_cap", None) is not None:
            self._cap.release()
            self._cap = None

    @property
    def frame_count(self) -> int | None:
        """The container's frame count once open (None where it does not say)."""
        return getattr(self, "_count", 0) or None

    def describe(self) -> str:
        fps = f", {self.fps:.3g} fps" if self.fps else ""
        n = f", {self._count} frames" if getattr(self, "_count", 0) > 0 else ""
        return f"{self.kind} {redact_source(self.uri)}{n}{fps}"

    def _pass(self, stop: threading.Event, first: bool) -> Iterator[_Item]:
        if not first:  # --loop: reopen rather than seek, which is frame-inaccurate in many codecs
            self.close()
            self.open()
        index = failures = 0
        while not stop.is_set():
            ok, image = self._cap.read()
            if ok:
                failures = 0
                yield _Item(index, image)
                index += 1
                continue
            # read() is False at the end and on an undecodable frame; trust the container's count.
            if self._count and index < self._count - 1 and failures < self.MAX_CONSECUTIVE_DECODE_FAILURES:
                failures += 1
                self.drops["decode failure"] += 1
                # the first is news; the rest are counted in the summary
                log.log(logging.WARNING if self.drops["decode failure"] == 1 else logging.DEBUG,
                        "%s: decode failure near frame %d; skipping", self.describe(), index)
                continue
            if self._count and index < self._count - 1 and not stop.is_set():
                self.end_reason = (f"ended after {index} of the {self._count} frames its container announces "
                                   "(truncated, undecodable or cut off)")
                if self.SHORT_IS_FAILURE:
                    self.incomplete = self.end_reason  # the run's error line says it
                else:
                    log.warning("%s: %s", self.describe(), self.end_reason)
            break
        self._pass_length = index


class RemoteFileSource(VideoFileSource):
    """A video file on a web server: read like a local file (every frame, in order, to its end),
    with the network timeouts of a stream so a server that stalls cannot hang the run."""

    kind = "remote video"
    SHORT_IS_FAILURE = True  # the connection broke or stalled: frames are missing, the run is not done

    def _capture(self) -> cv2.VideoCapture:
        return _capture_with_timeouts(self.uri, self.options.timeout)

    def _open_error(self, elapsed: float) -> str:
        uri = redact_source(self.uri)
        return (f"cannot open {uri}: the server sent a file that OpenCV's FFmpeg backend cannot "
                f"decode (after {elapsed:.1f} s); check it with `ffprobe {uri}`")


_FFMPEG_OPTIONS_LOCK = threading.Lock()


def _capture_with_timeouts(uri: str, timeout: float, ffmpeg_options: dict[str, str] | None = None
                           ) -> cv2.VideoCapture:
    """An FFmpeg capture with open/read timeouts. `ffmpeg_options` (e.g. rtsp_transport) reach
    FFmpeg the only way OpenCV offers: $OPENCV_FFMPEG_CAPTURE_OPTIONS, read when a capture opens,
    so they are merged into it for this open under a lock (and the variable put back after)."""
    ms = int(timeout * 1000)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
    if not ffmpeg_options:
        return cv2.VideoCapture(uri, cv2.CAP_FFMPEG, params)
    with _FFMPEG_OPTIONS_LOCK:
        before = os.environ.get(FFMPEG_OPTIONS_ENV)
        pairs = [p.split(";", 1) for p in (before or "").split("|") if ";" in p]
        merged = {k: v for k, v in pairs if k not in ffmpeg_options} | ffmpeg_options
        os.environ[FFMPEG_OPTIONS_ENV] = "|".join(f"{k};{v}" for k, v in merged.items())
        try:
            return cv2.VideoCapture(uri, cv2.CAP_FFMPEG, params)
        finally:
            if before is None:
                os.environ.pop(FFMPEG_OPTIONS_ENV, None)
            else:
                os.environ[FFMPEG_OPTIONS_ENV] = before


def _interruptible(open_capture: Callable[[], cv2.VideoCapture], what: str) -> cv2.VideoCapture:
    """Run a blocking OpenCV open in a helper thread while the main thread waits in short steps,
    so a Ctrl-C / SIGTERM / SIGHUP ends the wait at once instead of after the open timeout (or
    never, for a camera or stream that hangs). An abandoned open releases what it got."""
    lock = threading.Lock()
    box: dict[str, cv2.VideoCapture] = {}
    abandoned = threading.Event()
    done = threading.Event()

    def work() -> None:
        cap = open_capture()
        with lock:
            if abandoned.is_set():
                cap.release()
            else:
                box["cap"] = cap
            done.set()

    threading.Thread(target=work, name=f"open: {what}"[:60], daemon=True).start()
    try:
        while not done.wait(0.05):
            pass
    except BaseException:
        with lock:
            abandoned.set()
            if "cap" in box:
                box.pop("cap").release()
        raise
    return box["cap"]


class LiveSource(Source):
    """Camera or network stream: a grabber thread keeps the newest frame, drops stale ones,
    and reopens a lost stream with bounded backoff."""

    live = True
    PACED_AGAIN = 3  # frames arriving a frame interval apart after a reconnect: the burst is over

    def _capture(self) -> cv2.VideoCapture:
        raise NotImplementedError

    def _open_error(self, elapsed: float) -> str:
        raise NotImplementedError

    def open(self) -> None:
        log.info("%s: opening", self.describe())
        t0 = time.monotonic()
        cap = _interruptible(self._capture, self.describe())
        if not cap.isOpened():
            cap.release()
            raise SourceError(self._open_error(time.monotonic() - t0))
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 0 < fps < 1000 else None
        self.frame_size = _cap_size(cap)
        self._cap: cv2.VideoCapture | None = cap
        self._cond = threading.Condition()
        self._slot: _Item | None = None
        self._ended = False
        self._closing = threading.Event()
        self._grabbed = 0
        self._grabber = threading.Thread(target=self._grab_loop, name=f"grab-{self.kind}", daemon=True)
        self._grabber.start()

    def _frame_interval(self) -> float | None:
        """Seconds between the stream's frames: from their timestamps (the sender's clock, so the
        burst of buffered frames after an open does not shorten it), else the stated fps."""
        if len(self._intervals) >= 4:
            return statistics.median(self._intervals)
        return 1.0 / self.fps if self.fps else None

    def _note_timestamp(self, previous_ms: float | None) -> float | None:
        """Record the gap between this frame's timestamp and the previous one's; returns this one."""
        pos_ms = self._cap.get(cv2.CAP_PROP_POS_MSEC) if self._cap is not None else 0.0
        if previous_ms is not None and 0 < pos_ms - previous_ms < 5000:
            self._intervals.append((pos_ms - previous_ms) / 1e3)
        return pos_ms if pos_ms > 0 else previous_ms

    def _count_lost(self, t_down: float, t_paced: float, received: int) -> None:
        """Once a reconnected stream is paced again: the frames the sender sent since our last
        frame before it went down, less those we received since (FFmpeg hands over the ones it
        buffered while the stream was being opened in a burst), were lost: counted as drops."""
        interval = self._frame_interval()
        gap = t_paced - t_down
        lost = max(0, round(gap / interval) - received) if interval else 0
        if lost:
            self.drops[LOST] += lost
        counted = f"; ~{lost} frame(s) lost" if interval else " (frame rate unknown: lost frames not counted)"
        log.warning("%s: frames flow again %.1f s after the last one%s", self.describe(), gap, counted)

    def _grab_loop(self) -> None:
        failures = 0
        self._intervals: deque[float] = deque(maxlen=32)
        t_last: float | None = None
        t_down: float | None = None  # the last frame before a reconnect, until the stream is paced again
        since_down = paced_run = 0
        pos_ms: float | None = None  # the previous frame's timestamp in this session
        try:
            while not self._closing.is_set():
                ok, image = self._cap.read() if self._cap is not None else (False, None)
                if ok:
                    failures = 0
                    now = time.perf_counter()
                    if t_down is not None:
                        since_down += 1
                        interval = self._frame_interval()
                        # a burst of buffered frames arrives back to back; paced again = three gaps
                        # in a row of at least half a frame interval (a busy CPU can stretch one)
                        paced = since_down > 1 and interval is not None and now - t_last > interval / 2
                        paced_run = paced_run + 1 if paced else 0
                        if interval is None or paced_run >= self.PACED_AGAIN:
                            self._count_lost(t_down, now, since_down)
                            t_down = None
                    pos_ms = self._note_timestamp(pos_ms)
                    t_last = now
                    item = _Item(self._grabbed, image, "", now)
                    self._grabbed += 1
                    with self._cond:
                        if self._slot is not None:
                            self.drops[STALE] += 1
                        self._slot = item
                        self._cond.notify_all()
                    continue
                if self._closing.is_set():
                    break
                failures += 1
                if failures > self.options.reconnect:
                    if self.options.reconnect:  # asked to keep the stream alive and could not: a failure
                        self.end_reason = f"stream lost; {self.options.reconnect} reconnect attempt(s) failed"
                        self.incomplete = (f"was lost: {self.options.reconnect} reconnect attempt(s) "
                                           "failed (the outputs hold every frame before; --reconnect N and "
                                           "--timeout S wait longer)")
                    else:  # --reconnect 0: the stream's end is the run's end
                        self.end_reason = "stream ended"
                    log.warning("%s: %s", self.describe(), self.end_reason)
                    break
                delay = min(self.options.reconnect_delay * 2 ** (failures - 1), 8.0)
                log.warning("%s: no frame; reconnecting (%d/%d) in %.2g s", self.describe(), failures,
                            self.options.reconnect, delay)
                if self._closing.wait(delay):
                    break
                if self._cap is not None:
                    self._cap.release()
                cap = self._capture()
                self._cap = cap if cap.isOpened() else None
                if self._cap is None:
                    cap.release()
                else:
                    self.reconnects += 1
                    pos_ms = None  # a new session: its timestamps start again
                    if t_last is not None and t_down is None:
                        t_down, since_down, paced_run = t_last, 0, 0
                    log.warning("%s: reconnected", self.describe())
        except Exception as exc:  # a crashing grabber must still end the source, not hang it
            self.end_reason = f"capture failed: {exc}"
            log.exception("%s: grabber failed", self.describe())
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _pass(self, stop: threading.Event, first: bool) -> Iterator[_Item]:
        while not stop.is_set():
            with self._cond:
                self._cond.wait_for(lambda: self._slot is not None or self._ended, timeout=0.1)
                item, self._slot = self._slot, None
                ended = self._ended
            if item is not None:
                yield item
            elif ended:
                return

    def close(self) -> None:
        if getattr(self, "_grabber", None) is None:
            return
        self._closing.set()
        self._grabber.join(timeout=self.options.timeout + 2)
        if self._grabber.is_alive():  # stuck in a blocking read: releasing under it could crash
            log.warning("%s: capture thread did not stop; leaving it to exit with the process",
                        self.describe())
        elif self._cap is not None:
            self._cap.release()
            self._cap = None
        self._grabber = None


class CameraSource(LiveSource):
    """A V4L2 camera: camN is /dev/videoN."""

    kind = "camera"

    def __init__(self, uri: str, options: SourceOptions, device: int) -> None:
        super().__init__(uri, options)
        self.device = device

    def describe(self) -> str:
        return f"camera /dev/video{self.device}"

    def _capture(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if cap.isOpened():
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver's queue would add latency
            if self.options.capture_size:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.options.capture_size[0])
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.options.capture_size[1])
            if self.options.capture_fps:
                cap.set(cv2.CAP_PROP_FPS, self.options.capture_fps)
        return cap

    def _open_error(self, elapsed: float) -> str:
        dev = f"/dev/video{self.device}"
        if not os.path.exists(dev):
            return (f"cannot open camera {self.uri}: {dev} does not exist; list cameras with "
                    "`ls /dev/video*` (in a container, pass --device " + dev + ")")
        return (f"cannot open camera {self.uri} ({dev}): busy or permission denied; close other apps using "
                "it and check you are in the `video` group")


class StreamSource(LiveSource):
    """A network stream through OpenCV's FFmpeg backend, with open/read timeouts so a dead
    sender cannot hang the run."""

    kind = "stream"

    @property
    def is_rtsp(self) -> bool:
        return self.uri.lower().startswith(("rtsp://", "rtsps://"))

    def _capture(self) -> cv2.VideoCapture:
        transport = self.options.rtsp_transport
        options = {"rtsp_transport": transport} if self.is_rtsp and transport != "auto" else None
        return _capture_with_timeouts(self.uri, self.options.timeout, options)

    def _open_error(self, elapsed: float) -> str:
        hint = ("is the sender running and sending to this host/port?" if self.uri.startswith("udp")
                else "check the URL, credentials, that the server is up and reachable")
        uri = redact_source(self.uri)
        if elapsed < 0.8 * self.options.timeout and self.is_rtsp:  # the camera said no: ask it why
            from runtime.rtsp_probe import rtsp_refusal

            why = rtsp_refusal(self.uri, self.options.rtsp_transport, 0.9 * self.options.timeout - elapsed)
            if why:
                return f"cannot open stream {uri}: {why} (after {elapsed:.1f} s)"
        if elapsed < 0.8 * self.options.timeout:  # not a timeout: refused, not found, undecodable
            why = ("FFmpeg's reason stays hidden: the URL holds a secret it would print" if uri != self.uri
                   else "-v shows FFmpeg's reason")
            return (f"cannot open stream {uri}: it failed after {elapsed:.1f} s (refused, not "
                    f"found or not a video; {why}); {hint}")
        return (f"cannot open stream {uri}: no video within {self.options.timeout:g} s; {hint} "
                "(raise the wait with --timeout; RTSP through a firewall: --rtsp-transport tcp)")


class HttpSource(StreamSource):
    """An http(s):// URL: a file on a web server or a live stream, which only the server can
    tell (runtime.http_probe asks it at open(), so parsing stays free of network I/O). A file
    turns this source into a RemoteFileSource - the same state, read like a file from then on:
    every frame, in order, to its end."""

    def open(self) -> None:
        from runtime.http_probe import FILE, probe

        found = probe(self.uri, self.options.timeout, redact_source(self.uri))
        log.info("%s: %s (%s)", redact_source(self.uri),
                 "a file on a web server" if found.kind == FILE else "a live stream", found.why)
        if found.kind == FILE:
            self.__class__ = RemoteFileSource
        else:
            self.__class__ = StreamSource
        self.open()


def parse_source(uri: str, options: SourceOptions | None = None) -> Source:
    """The one URI parser: SRC string -> an unopened Source (call .open() or use `with`)."""
    options = options or SourceOptions()
    uri = uri.strip()
    if not uri:
        raise SourceError(f"empty --video; {SOURCE_HELP}")
    if uri == "demo":
        return DemoSource(uri, options)
    m = re.fullmatch(r"cam(\d+)|/dev/video(\d+)", uri)
    if m:
        return CameraSource(uri, options, int(m.group(1) or m.group(2)))
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme in ("http", "https"):
        return HttpSource(uri, options)
    if scheme in NETWORK_SCHEMES:
        return StreamSource(uri, options)
    if scheme == "file":
        uri = uri[len("file://"):]
    elif scheme:
        raise SourceError(f"unsupported URL scheme {scheme}:// in {redact_source(uri)}; {SOURCE_HELP}")
    from runtime.ros.bag_source import parse_bag_uri

    bag = parse_bag_uri(uri, options)  # MCAP, rosbag2 folder or ROS 1 bag, with an optional #TOPIC
    if bag is not None:
        return bag
    # a file or folder that exists is that file or folder, even when its name holds * ? or [
    if os.path.isdir(uri) or (not os.path.isfile(uri) and any(c in uri for c in "*?[")):
        return ImageFolderSource.from_uri(uri, options)
    if os.path.isfile(uri):
        if Path(uri).suffix.lower() in IMAGE_SUFFIXES:
            return ImageFolderSource(uri, options, [uri])
        return VideoFileSource(uri, options)
    raise SourceMissing(f"no such file or folder: {redact_source(uri)}; {SOURCE_HELP}")


def open_source(uri: str, options: SourceOptions | None = None) -> Source:
    """parse_source + open, so a bad source fails before any model is loaded."""
    source = parse_source(uri, options)
    source.open()
    return source
