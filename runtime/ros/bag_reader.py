"""Image messages out of a recorded bag, streamed: MCAP files (bare, or the files of a rosbag2
folder), rosbag2 SQLite folders (.db3) and ROS 1 bags.

Why two libraries: `rosbags` reads every format, but refuses an MCAP file whose end is missing
(the footer of a recording that was cut off) and stops at the first damaged chunk. Recordings
get cut off (a full disk, a power cut on the robot), so MCAP is read here linearly with the
`mcap` package's record reader, chunk by chunk: a chunk whose CRC fails is skipped and counted,
a cut-off end stops the reading, and every message before it is still delivered. Messages are
decoded with the typestore `rosbags` builds from the definitions stored in the file. SQLite and
ROS 1 bags go through `rosbags` itself; their damage ends the reading where it happens.

Memory stays flat: one chunk (a few MB) is held at a time, never the whole file. MCAP files are
read in file order, which is the recording order; rosbags orders by receive time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.errors import SourceDamaged
from runtime.ros.images import (
    ImageFormatError,
    check_encoding,
    compressed_kind,
    decode_compressed,
    decode_raw,
)

log = logging.getLogger(__name__)

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED)
BAG_SUFFIXES = (".mcap", ".bag", ".db3")


class BagError(ValueError):
    """A bag that cannot be used as asked (no such topic, no image topic, ...): a usage error."""


class BagDamaged(SourceDamaged):
    """A bag that cannot be read at all (no index, not a bag): a runtime failure."""


@dataclass
class Topic:
    name: str
    msgtype: str  # normalised: pkg/msg/Name
    count: int | None  # messages, where the file says without reading it all


@dataclass
class ImageMessage:
    """One decoded image message with what ROS tools line results up by."""

    image: np.ndarray  # uint8 BGR
    stamp_ns: int  # header.stamp
    frame_id: str  # header.frame_id
    log_time_ns: int  # when the recorder received it (the bag's timestamp)


def normalise_type(name: str) -> str:
    """'sensor_msgs/Image' (ROS 1) and 'sensor_msgs/msg/Image' (ROS 2) -> 'sensor_msgs/msg/Image'."""
    parts = name.split("/")
    return f"{parts[0]}/msg/{parts[1]}" if len(parts) == 2 else name


def is_bag_path(path: Path) -> bool:
    """A bag file by its suffix, or a rosbag2 folder (metadata.yaml inside)."""
    if path.is_dir():
        return (path / "metadata.yaml").is_file()
    return path.suffix.lower() in BAG_SUFFIXES


class BagReader:
    """Opens a bag, lists its topics, and streams one image topic's messages, decoded."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.topics: dict[str, Topic] = {}
        self.damaged: str | None = None  # set when reading met damage; frames before it were delivered
        self.skipped = 0  # messages lost in damaged chunks
        self._mcap_files: list[Path] = []
        self._any: Any = None  # rosbags AnyReader for SQLite / ROS 1
        self._typestore: Any = None
        self._channels: dict[tuple[int, int], tuple[str, str]] = {}  # (file, channel) -> (topic, type)

    # -- opening ---------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        if self._mcap_files:
            return "MCAP" if not self.path.is_dir() else "rosbag2 (MCAP)"
        if self.path.suffix.lower() == ".bag":
            return "ROS 1 bag"
        return "rosbag2 (SQLite)"

    def open(self) -> None:
        """Read what the bag holds (topics, types, counts); BagDamaged if it cannot be read."""
        from runtime.ros import require

        require("reading a bag", "rosbags", "mcap")
        path = self.path
        if path.suffix.lower() == ".db3" and path.is_file():
            if (path.parent / "metadata.yaml").is_file():
                path = self.path = path.parent
            else:
                raise BagError(f"{path} is a rosbag2 SQLite file without its folder's metadata.yaml; "
                               "pass the rosbag2 folder")
        if path.is_dir():
            self._mcap_files = sorted(path.glob("*.mcap"), key=_natural_key)
        elif path.suffix.lower() == ".mcap":
            self._mcap_files = [path]
        if self._mcap_files:
            self._open_mcap()
        else:
            self._open_rosbags()

    def _open_rosbags(self) -> None:
        from rosbags.highlevel import AnyReader, AnyReaderError
        from rosbags.typesys import Stores, get_typestore

        try:
            reader = AnyReader([self.path], default_typestore=get_typestore(Stores.LATEST))
            reader.open()
        except (AnyReaderError, OSError, ValueError) as exc:
            hint = ("; `rosbag reindex` rebuilds a ROS 1 bag's index" if self.path.suffix == ".bag" else "")
            raise BagDamaged(f"cannot read {self.kind} {self.path}: {_reason(exc)}{hint}") from None
        self._any = reader
        for conn in reader.connections:
            msgtype = normalise_type(conn.msgtype)
            topic = self.topics.setdefault(conn.topic, Topic(conn.topic, msgtype, 0))
            topic.count = (topic.count or 0) + conn.msgcount

    def _open_mcap(self) -> None:
        from rosbags.typesys import Stores, get_typestore

        self._typestore = get_typestore(Stores.LATEST)  # for files that store no definitions
        self._registered: set[str] = set()
        for index, file in enumerate(self._mcap_files):
            schemas, channels, counts, problem = _mcap_summary(file)
            if problem is not None:  # no summary (cut off): find the channels by reading the file
                log.info("%s: %s; scanning it for its topics", file, problem)  # the run's end says it
                schemas, channels, counts = _mcap_scan_channels(file)
            for cid, channel in channels.items():
                schema = schemas.get(channel.schema_id)
                msgtype = normalise_type(schema.name) if schema is not None else ""
                if schema is not None:
                    self._register(schema)
                self._channels[(index, cid)] = (channel.topic, msgtype)
                topic = self.topics.setdefault(channel.topic, Topic(channel.topic, msgtype, 0))
                if topic.count is not None:
                    topic.count += counts.get(cid, 0)

    def _register(self, schema: Any) -> None:
        """Add a schema's definitions (ros2msg or ros2idl, as rosbags' own reader does)."""
        from rosbags.typesys import get_types_from_idl, get_types_from_msg

        name = normalise_type(schema.name)
        if name in self._registered or not schema.data:
            return
        text = schema.data.decode()
        try:
            if schema.encoding == "ros2idl":
                sep = "=" * 80 + "\n"
                types: dict = {}
                for part in (text.split(sep)[1:] if text.startswith(f"{sep}IDL: ") else [None]):
                    types.update(get_types_from_idl(part.split("\n", 1)[1] if part else text))
            else:
                types = get_types_from_msg(text, name)
            self._typestore.register(types)
        except Exception as exc:  # an odd definition must not stop us reading the image topics
            log.debug("schema %s not registered: %s", name, exc)
        self._registered.add(name)

    # -- topics ----------------------------------------------------------------------------
    def image_topics(self) -> list[Topic]:
        return [t for t in self.topics.values() if t.msgtype in IMAGE_TYPES]

    def choose(self, wanted: str | None) -> Topic:
        """The image topic to read: `wanted`, or the only image topic; BagError naming the choices."""
        images = self.image_topics()
        listing = ", ".join(f"{t.name} ({t.msgtype.rsplit('/', 1)[-1]}"
                            + (f", {t.count} messages)" if t.count is not None else ")") for t in images)
        if wanted is not None:
            topic = self.topics.get(wanted) or self.topics.get("/" + wanted.lstrip("/"))
            if topic is None:
                raise BagError(f"{self.path} has no topic {wanted}; its image topics: {listing or 'none'}")
            if topic.msgtype not in IMAGE_TYPES:
                raise BagError(f"topic {topic.name} in {self.path} is {topic.msgtype}, not an image; "
                               f"its image topics: {listing or 'none'}")
            return topic
        if not images:
            others = ", ".join(f"{t.name} ({t.msgtype})" for t in self.topics.values()) or "none"
            raise BagError(f"{self.path} has no sensor_msgs/Image or CompressedImage topic "
                           f"(topics: {others})")
        if len(images) > 1:
            raise BagError(f"{self.path} has {len(images)} image topics: {listing}; choose one with "
                           f"{self.path}#TOPIC or --topic TOPIC")
        return images[0]

    # -- messages --------------------------------------------------------------------------
    def raw_messages(self, topic: Topic) -> Iterator[tuple[int, Any]]:
        """(log time ns, serialized message) of one topic, in order; damage ends or skips as the
        module says, and is left in `damaged`."""
        if self._any is not None:
            yield from self._rosbags_messages(topic)
        else:
            for index, file in enumerate(self._mcap_files):
                yield from self._mcap_messages(index, file, topic.name)
                if self.damaged and "cut off" in self.damaged:
                    return  # a later split file cannot make up for what is missing

    def _rosbags_messages(self, topic: Topic) -> Iterator[tuple[int, Any]]:
        connections = [c for c in self._any.connections if c.topic == topic.name]
        try:
            for conn, timestamp, raw in self._any.messages(connections=connections):
                yield timestamp, (raw, conn.msgtype)
        except Exception as exc:
            self.damaged = f"reading stopped at damage: {_reason(exc)}"

    def _mcap_messages(self, index: int, file: Path, topic: str) -> Iterator[tuple[int, Any]]:
        from mcap.records import Channel, Chunk, Message, Schema
        from mcap.stream_reader import StreamReader, breakup_chunk

        wanted = {cid for (i, cid), (name, _) in self._channels.items() if i == index and name == topic}
        try:
            fh = open(file, "rb")  # noqa: SIM115 (closed below, also when the consumer stops early)
        except OSError as exc:
            self.damaged = f"cannot read {file}: {exc.strerror or exc}"
            return
        try:
            records = StreamReader(fh, emit_chunks=True, validate_crcs=False).records
            while True:
                try:
                    record = next(records)
                except StopIteration:
                    return
                except Exception as exc:  # struct.error, EndOfFile, a bad length: the readable part ended
                    self.damaged = (f"{file.name} is cut off or damaged after byte {fh.tell()} "
                                    f"({_reason(exc)}): every message before it was read")
                    return
                inner = [record]
                if isinstance(record, Chunk):
                    try:
                        inner = breakup_chunk(record, validate_crc=True)
                    except Exception as exc:  # CRC mismatch, bad compression: this chunk is lost
                        self.skipped += 1
                        self.damaged = (f"{self.skipped} damaged chunk(s) skipped in {file.name} "
                                        f"({_reason(exc)})")
                        log.warning("%s: a damaged chunk was skipped (%s)", file, _reason(exc))
                        continue
                for rec in inner:
                    if isinstance(rec, Message):
                        if rec.channel_id in wanted:
                            yield rec.log_time, (rec.data, self._channels[(index, rec.channel_id)][1])
                    elif isinstance(rec, Channel) and (index, rec.id) not in self._channels:
                        self._channels[(index, rec.id)] = (rec.topic, "")
                        if rec.topic == topic:
                            wanted.add(rec.id)
                    elif isinstance(rec, Schema):
                        self._register(rec)
        finally:
            fh.close()

    def decode(self, raw: Any, log_time_ns: int) -> ImageMessage:
        """A serialized image message -> ImageMessage (ImageFormatError for a refused encoding or
        an undecodable picture; ValueError-like errors for a damaged message)."""
        data, msgtype = raw
        msgtype = normalise_type(msgtype)
        if self._any is not None:
            msg = self._any.deserialize(data, self._any_type(msgtype))
        else:
            msg = self._typestore.deserialize_cdr(data, msgtype)
        stamp = msg.header.stamp
        stamp_ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
        if msgtype == IMAGE:
            image = decode_raw(msg.encoding, int(msg.height), int(msg.width), int(msg.step),
                               bool(msg.is_bigendian), msg.data)
        else:
            image = decode_compressed(msg.format, msg.data)
        return ImageMessage(image, stamp_ns, str(msg.header.frame_id), int(log_time_ns))

    def _any_type(self, msgtype: str) -> str:
        for conn in self._any.connections:
            if normalise_type(conn.msgtype) == msgtype:
                return conn.msgtype
        return msgtype

    def check_first(self, topic: Topic) -> None:
        """Decode the topic's first message now, so a refused encoding is a usage error (exit 2)
        before any model work rather than a run that drops every frame."""
        for _log_time, raw in self.raw_messages(topic):
            try:
                data, msgtype = raw
                msg = (self._any.deserialize(data, self._any_type(normalise_type(msgtype))) if self._any
                       else self._typestore.deserialize_cdr(data, normalise_type(msgtype)))
            except Exception:
                return  # a damaged first message: the run reports it
            if normalise_type(msgtype) == IMAGE:
                check_encoding(msg.encoding)
            else:
                compressed_kind(msg.format)
            return

    def close(self) -> None:
        if self._any is not None:
            try:
                self._any.close()
            except Exception as exc:
                log.debug("closing %s: %s", self.path, exc)
            self._any = None


def _mcap_summary(file: Path) -> tuple[dict, dict, dict, str | None]:
    """Schemas, channels and per-channel counts from the summary at the file's end, or why not."""
    from mcap.reader import SeekingReader

    try:
        with open(file, "rb") as fh:
            summary = SeekingReader(fh).get_summary()
    except OSError as exc:
        raise BagDamaged(f"cannot read {file}: {exc.strerror or exc}") from None
    except Exception as exc:
        return {}, {}, {}, f"no readable summary at its end ({_reason(exc)}: cut off?)"
    if summary is None:
        return {}, {}, {}, "no summary section"
    counts = dict(summary.statistics.channel_message_counts) if summary.statistics else {}
    return dict(summary.schemas), dict(summary.channels), counts, None


def _mcap_scan_channels(file: Path) -> tuple[dict, dict, dict]:
    """Schemas, channels and message counts by reading the file to its end or its damage."""
    from mcap.records import Channel, Chunk, Message, Schema
    from mcap.stream_reader import StreamReader, breakup_chunk

    schemas: dict = {}
    channels: dict = {}
    counts: dict = {}
    with open(file, "rb") as fh:
        try:
            magic = fh.read(8)
            if magic != b"\x89MCAP0\r\n":
                raise BagDamaged(f"{file} is not an MCAP file (its first bytes are not MCAP's magic)")
            fh.seek(0)
            for record in StreamReader(fh, emit_chunks=True).records:
                inner = [record]
                if isinstance(record, Chunk):
                    try:
                        inner = breakup_chunk(record, validate_crc=True)
                    except Exception:
                        continue
                for rec in inner:
                    if isinstance(rec, Schema):
                        schemas[rec.id] = rec
                    elif isinstance(rec, Channel):
                        channels[rec.id] = rec
                    elif isinstance(rec, Message):
                        counts[rec.channel_id] = counts.get(rec.channel_id, 0) + 1
        except BagDamaged:
            raise
        except Exception:
            pass  # the end of what can be read
    if not channels:
        raise BagDamaged(f"cannot read MCAP {file}: no channel could be read (not an MCAP file, or damaged "
                         "from its start)")
    return schemas, channels, counts


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) < 200 else text[:197] + "..."


def _natural_key(path: Path) -> list:
    import re

    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


__all__ = ["BagDamaged", "BagError", "BagReader", "ImageFormatError", "ImageMessage", "Topic", "is_bag_path"]
