"""`--bag out.mcap`: the run's results as a ROS 2 MCAP bag that Foxglove, RViz and rosbag2 read.

Topics (NS is the class map topic's namespace, /pspnet by default; with several streams each
stream's topics sit under NS/STREAM):
    NS/class_map            sensor_msgs/msg/Image, mono8: the class id of every pixel, at the
                            source frame's size (byte-identical to the --masks PNGs)
    NS/overlay/compressed   sensor_msgs/msg/CompressedImage, jpeg: the rendered picture
    NS/frame_stats          pspnet_rt_msgs/msg/FrameStats: per-stage milliseconds, the classes
                            present, backend facts (key frame or not) as JSON
    NS/label_info           vision_msgs/msg/LabelInfo, once: class ids and names, as Isaac ROS's
                            segmentation nodes publish them
    NS/classes              std_msgs/msg/String, once: JSON {"classes": [...], "palette": [[r,g,b]...]}
                            (LabelInfo has no colours)
Every message carries the source message's header stamp and frame id, and is logged at the
source message's receive time, so the output lines up with the input bag in any viewer. A frame
from a source without stamps gets one (runtime.ros.stamps says how).

Messages are serialized by `rosbags` (CDR, definitions stored in the file as ros2msg) and
written by the `mcap` package's writer (zstd chunks, with index and summary). The bag is whole
or absent, as our other outputs: it is claimed for this run (runtime.output_target: one run
writes it at a time; /dev/null, FIFOs and devices are refused, a bag is read back), written to
this run's hidden temp file beside the target, read back at close (every record, chunk CRCs
checked, message counts compared), and only then renamed over the target; a failed run never
replaces a bag that was there (its bag goes beside, as NAME.incomplete.mcap).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import threading
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from runtime.errors import OutputError, WriteError
from runtime.output_target import FILE, Claim, claim, create_exclusive, resolve
from runtime.ros.stamps import StampClock
from runtime.sinks import Sink, check_writable
from runtime.stats import STAGES

log = logging.getLogger(__name__)

DEFAULT_TOPIC = "/pspnet/class_map"
JPEG_QUALITY = 85

# Definitions not in rosbags' stock ROS 2 store. vision_msgs/LabelInfo is vision_msgs 4.x's.
EXTRA_TYPES = {
    "vision_msgs/msg/VisionClass": "uint16 class_id\nstring class_name\n",
    "vision_msgs/msg/LabelInfo": ("std_msgs/Header header\nvision_msgs/VisionClass[] class_map\n"
                                  "float32 threshold\n"),
    "pspnet_rt_msgs/msg/FrameStats": (
        "# One frame's timings from pspnet-rt (milliseconds; NaN = the stage did not run)\n"
        "std_msgs/Header header\n"
        "string stream\n"
        "uint64 frame\n"
        + "".join(f"float64 {s}_ms\n" for s in STAGES)
        + "float64 e2e_ms\n"
        "uint8[] classes\n"
        "string extra_json\n"),
}
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
STATS = "pspnet_rt_msgs/msg/FrameStats"
LABELS = "vision_msgs/msg/LabelInfo"
STRING = "std_msgs/msg/String"


def check_topic(topic: str) -> str:
    """A ROS 2 topic name for the class map (ValueError saying what is wrong)."""
    import re

    if not re.fullmatch(r"/?[A-Za-z][A-Za-z0-9_]*(/[A-Za-z][A-Za-z0-9_]*)*", topic or ""):
        raise ValueError(f"{topic!r} is not a ROS topic name (letters, digits and _ between slashes, "
                         "each part starting with a letter), e.g. /pspnet/class_map")
    return topic if topic.startswith("/") else "/" + topic


def topics_for(class_map_topic: str, stream: str | None) -> dict[str, str]:
    """Every topic of one stream, from the class map topic (see the module docstring)."""
    ns, _, leaf = class_map_topic.rpartition("/")
    if stream is not None:
        ns = f"{ns}/{_ros_name(stream)}"
    return {"class_map": f"{ns}/{leaf}", "overlay": f"{ns}/overlay/compressed",
            "stats": f"{ns}/frame_stats", "label_info": f"{ns}/label_info", "classes": f"{ns}/classes"}


def _ros_name(stream: str) -> str:
    """A stream name as a ROS name part ('front', '0' -> 's0', 'cam.1' -> 'cam_1')."""
    name = "".join(c if c.isalnum() or c == "_" else "_" for c in stream)
    return name if name[:1].isalpha() else f"s{name}"


class BagSink(Sink):
    """The --bag output. `write()` is called by each stream's write stage (thread-safe)."""

    def __init__(self, path: str | Path, classes: list[str], palette: list[list[int]], *,
                 topic: str = DEFAULT_TOPIC, jpeg_quality: int = JPEG_QUALITY) -> None:
        self.path = Path(path)
        self.classes = list(classes)
        self.palette = [[int(c) for c in rgb] for rgb in palette]
        self.topic = check_topic(topic)
        self.quality = int(jpeg_quality)
        self.replaces = False
        self.written: Path | None = None
        self.messages = 0
        self.frames = 0
        self.tmp: Path | None = None
        self.claim: Claim | None = None
        self._fh: IO[bytes] | None = None
        self._writer: Any = None
        self._store: Any = None
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self._counts: dict[int, int] = {}
        self._streams: dict[str | None, dict[str, str]] = {}
        self._clocks: dict[str | None, StampClock] = {}
        self._lock = threading.Lock()
        self._closed = False

    def describe(self) -> str:
        return f"bag {self.path} (MCAP, class map on {self.topic})"

    def check(self) -> None:
        if self.path.is_dir():
            raise OutputError(f"--bag {self.path} is a folder; give a file name such as {self.path}/seg.mcap")
        if self.path.suffix.lower() != ".mcap":
            raise OutputError(f"--bag {self.path}: the bag is written as MCAP; give a name ending in .mcap")
        where = resolve(self.path, "--bag")
        if where.kind != FILE:
            raise OutputError(f"--bag {self.path} is {where.what}: a bag is read back whole before it is "
                              "kept; give a file name such as seg.mcap")
        check_writable(where.path.parent, "the bag")
        self.claim = claim(self.path, "--bag")  # the last step: refused if another run writes it

    def open(self) -> None:
        from runtime.ros import require

        require("--bag", "rosbags", "mcap")
        self.check()
        from mcap.writer import CompressionType, Writer
        from rosbags.typesys import Stores, get_types_from_msg, get_typestore

        store = get_typestore(Stores.ROS2_HUMBLE)
        for name, text in EXTRA_TYPES.items():
            store.register(get_types_from_msg(text, name))
        self._store = store
        self.replaces = self.claim.path.exists()
        try:
            self.tmp = self.claim.temp_for()  # .NAME.<token>.partial.mcap, recorded in the claim's lock
            self._fh = os.fdopen(create_exclusive(self.tmp), "wb")
            self._writer = Writer(self._fh, compression=CompressionType.ZSTD)
            self._writer.start(profile="ros2", library="pspnet-rt")
        except OSError as exc:
            self.discard()
            raise OutputError(f"cannot write --bag {self.path}: {exc.strerror or exc}") from None

    def add_stream(self, stream: str | None, *, live: bool, fps: float | None) -> None:
        """Declare a stream before its first frame: its topics, and its clock for stamp-less frames."""
        with self._lock:
            topics = self._streams[stream] = topics_for(self.topic, stream)
            self._clocks[stream] = StampClock(live=live, fps=fps, frame_id=_ros_name(stream or "camera"))
            for key, msgtype in (("class_map", IMAGE), ("overlay", COMPRESSED), ("stats", STATS)):
                self._channel(topics[key], msgtype)  # now, not on the first frame's clock

    # -- writing ---------------------------------------------------------------------------
    def _channel(self, topic: str, msgtype: str) -> int:
        if topic not in self._channels:
            if msgtype not in self._schemas:
                text, _ = self._store.generate_msgdef(msgtype, ros_version=2)
                self._schemas[msgtype] = self._writer.register_schema(msgtype, "ros2msg", text.encode())
            self._channels[topic] = self._writer.register_channel(topic, "cdr", self._schemas[msgtype])
        return self._channels[topic]

    def _put(self, topic: str, msgtype: str, msg: Any, log_ns: int, stamp_ns: int) -> None:
        channel = self._channel(topic, msgtype)
        data = self._store.serialize_cdr(msg, msgtype)
        self._counts[channel] = self._counts.get(channel, 0) + 1
        self._writer.add_message(channel, log_ns, bytes(data), stamp_ns, self._counts[channel])
        self.messages += 1

    def _header(self, stamp_ns: int, frame_id: str) -> Any:
        t = self._store.types
        return t["std_msgs/msg/Header"](
            stamp=t["builtin_interfaces/msg/Time"](sec=stamp_ns // 1_000_000_000,
                                                   nanosec=stamp_ns % 1_000_000_000),
            frame_id=frame_id)

    def _label_messages(self, topics: dict[str, str], stamp_ns: int, frame_id: str, log_ns: int) -> None:
        t = self._store.types
        vision_class = t["vision_msgs/msg/VisionClass"]
        info = t[LABELS](header=self._header(stamp_ns, frame_id), threshold=0.0, class_map=[
            vision_class(class_id=i, class_name=name) for i, name in enumerate(self.classes)])
        self._put(topics["label_info"], LABELS, info, log_ns, stamp_ns)
        text = json.dumps({"classes": self.classes, "palette": self.palette})
        self._put(topics["classes"], STRING, t[STRING](data=text), log_ns, stamp_ns)

    def write(self, frame: Any, labels: np.ndarray, image: np.ndarray | None, times: dict[str, float],
              e2e_ms: float, present: list[int] | None = None, fields: dict[str, Any] | None = None,
              stream: str | None = None) -> None:
        """One frame's class map, overlay (when rendered) and timings, with the frame's stamp."""
        if image is not None:  # outside the lock: the encode is the costly part, streams overlap it
            ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if not ok:
                raise WriteError(f"cannot encode the overlay of frame {frame.index} for --bag {self.path}")
        with self._lock:
            if self._writer is None:
                raise WriteError(f"--bag {self.path} is closed")
            if stream not in self._streams:
                self._streams[stream] = topics_for(self.topic, stream)
                self._clocks[stream] = StampClock(live=False, fps=None,
                                                  frame_id=_ros_name(stream or "camera"))
            topics = self._streams[stream]
            stamp_ns, frame_id, log_ns = self._clocks[stream].stamp(frame)
            t = self._store.types
            try:
                if topics["label_info"] not in self._channels:
                    self._label_messages(topics, stamp_ns, frame_id, log_ns)
                h, w = labels.shape[:2]
                header = self._header(stamp_ns, frame_id)
                self._put(topics["class_map"], IMAGE, t[IMAGE](
                    header=header, height=h, width=w, encoding="mono8", is_bigendian=0, step=w,
                    data=np.ascontiguousarray(labels, np.uint8).reshape(-1)), log_ns, stamp_ns)
                if image is not None:
                    self._put(topics["overlay"], COMPRESSED, t[COMPRESSED](
                        header=header, format="jpeg", data=jpeg.reshape(-1)), log_ns, stamp_ns)
                stage = {f"{s}_ms": float(times.get(s, math.nan)) for s in STAGES}
                self._put(topics["stats"], STATS, t[STATS](
                    header=header, stream=stream or "", frame=int(frame.index), **stage, e2e_ms=float(e2e_ms),
                    classes=np.asarray(present or [], np.uint8),
                    extra_json=json.dumps(fields or {}, default=str)), log_ns, stamp_ns)
            except OSError as exc:
                raise WriteError(f"cannot write --bag {self.path}: {exc.strerror or exc}") from None
            self.frames += 1

    # -- closing ---------------------------------------------------------------------------
    def close(self, failed: bool = False) -> None:
        """Finish the file (index, summary), read it back, and rename it over the target."""
        try:
            self._close(failed)
        finally:
            if self.claim is not None:
                self.claim.release()  # the lock file goes; a temp left by a failure went already

    def _close(self, failed: bool) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            writer, self._writer = self._writer, None
            fh, self._fh = self._fh, None
            problem = ""
            try:
                if writer is not None:
                    writer.finish()
                if fh is not None:
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError as exc:
                problem = f"finishing it failed: {exc.strerror or exc}"
            finally:
                if fh is not None:
                    with contextlib.suppress(OSError):
                        fh.close()
            if self.tmp is None:
                return
            if not self.frames and not problem:
                self.tmp.unlink(missing_ok=True)
                log.info("no frames; %s not written", self.path)
                return
            if not problem:
                problem = verify_bag(self.tmp, self._counts) or ""
            if problem:
                self.tmp.unlink(missing_ok=True)
                kept = f"; {self.path} was left as it was" if self.replaces else ""
                raise WriteError(f"bag {self.path} is not whole, removed: {problem}{kept}")
            self.written = self.claim.commit(self.tmp, self.replaces, failed)

    def discard(self) -> None:
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
        if self.claim is not None:
            self.claim.release()


def verify_bag(path: Path, expected: dict[int, int]) -> str | None:
    """None if the MCAP at `path` reads back whole (every record, chunk CRCs, a summary whose
    statistics count `expected` messages per channel), else what is wrong."""
    from mcap.reader import SeekingReader
    from mcap.records import Message
    from mcap.stream_reader import StreamReader

    counted: dict[int, int] = {}
    try:
        with open(path, "rb") as fh:
            for record in StreamReader(fh, validate_crcs=True).records:
                if isinstance(record, Message):
                    counted[record.channel_id] = counted.get(record.channel_id, 0) + 1
            fh.seek(0)
            summary = SeekingReader(fh).get_summary()
    except Exception as exc:
        return f"it cannot be read back ({type(exc).__name__}: {exc})"
    if counted != expected:
        return f"it holds {sum(counted.values())} of the {sum(expected.values())} messages written"
    stats = summary.statistics if summary is not None else None
    if stats is None or dict(stats.channel_message_counts) != expected:
        return "its summary does not match its messages"
    return None
