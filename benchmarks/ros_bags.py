"""Input bags for the ROS tests and benchmark, written by `rosbags` (a library we did not write):
the demo street clip as sensor_msgs/Image (any supported encoding) or CompressedImage (jpeg or
png), mixed with non-image topics, as a bare MCAP file, a rosbag2 folder (MCAP or SQLite) or a
ROS 1 bag. Stamps are made distinct from the receive times so a test can tell them apart."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

STAMP0_NS = 1_700_000_000_123_456_789  # header.stamp of the first frame
LOG_OFFSET_NS = 7_000_000  # the recorder received each frame 7 ms after its stamp


@dataclass
class ImageTopic:
    topic: str
    frames: list[np.ndarray]  # BGR uint8
    encoding: str = "bgr8"  # sensor_msgs/Image encoding, or "jpeg"/"png" for CompressedImage
    frame_id: str = "camera"
    fps: float = 10.0
    stamps_ns: list[int] = field(default_factory=list)  # filled by write_bag

    @property
    def compressed(self) -> bool:
        return self.encoding in ("jpeg", "png")


def encode_raw(image: np.ndarray, encoding: str) -> tuple[np.ndarray, int]:
    """BGR -> the bytes of a sensor_msgs/Image in `encoding`, and its step."""
    h, w = image.shape[:2]
    if encoding == "bgr8":
        out = image
    elif encoding == "rgb8":
        out = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif encoding == "bgra8":
        out = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
    elif encoding == "rgba8":
        out = cv2.cvtColor(image, cv2.COLOR_BGR2RGBA)
    elif encoding == "mono8":
        out = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    elif encoding == "mono16":
        out = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257
    elif encoding.startswith("bayer_"):
        pattern = encoding[6:10]
        offsets = {"rggb": ((0, 0, 2), (0, 1, 1), (1, 0, 1), (1, 1, 0)),
                   "bggr": ((0, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 2)),
                   "gbrg": ((0, 0, 1), (0, 1, 0), (1, 0, 2), (1, 1, 1)),
                   "grbg": ((0, 0, 1), (0, 1, 2), (1, 0, 0), (1, 1, 1))}[pattern]
        mosaic = np.zeros((h, w), np.uint8)
        for dy, dx, channel in offsets:  # channel index in BGR
            mosaic[dy::2, dx::2] = image[dy::2, dx::2, channel]
        out = mosaic.astype(np.uint16) * 257 if encoding.endswith("16") else mosaic
    else:
        out = np.zeros((h, w, 2), np.uint8)  # any other encoding: 2 bytes a pixel of something
    out = np.ascontiguousarray(out)
    return out.reshape(-1).view(np.uint8), out.strides[0]


def write_bag(path: str | Path, topics: Iterable[ImageTopic], *, kind: str = "mcap",
              chatter: bool = True) -> Path:
    """Write `topics` (interleaved by time, with a std_msgs/String and an Imu topic beside them
    when `chatter`) as kind 'mcap' (a bare .mcap file at `path`), 'rosbag2-mcap' or 'rosbag2-sqlite'
    (a rosbag2 folder at `path`) or 'ros1' (a .bag at `path`). Returns the path to pass as --video."""
    from rosbags.typesys import Stores, get_typestore

    path = Path(path)
    topics = list(topics)
    ros1 = kind == "ros1"
    store = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE)
    t = store.types
    messages: list[tuple[int, str, str, object]] = []  # (log time, topic, type, message)
    for topic in topics:
        msgtype = "sensor_msgs/msg/CompressedImage" if topic.compressed else "sensor_msgs/msg/Image"
        topic.stamps_ns = []
        for i, image in enumerate(topic.frames):
            stamp_ns = STAMP0_NS + round(i * 1e9 / topic.fps)
            topic.stamps_ns.append(stamp_ns)
            header = t["std_msgs/msg/Header"](
                **({"seq": i} if ros1 else {}),
                stamp=t["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9),
                frame_id=topic.frame_id)
            if topic.compressed:
                ok, buf = cv2.imencode("." + topic.encoding.replace("jpeg", "jpg"), image)
                assert ok
                msg = t[msgtype](header=header, format=topic.encoding, data=buf.reshape(-1))
            else:
                data, step = encode_raw(image, topic.encoding)
                msg = t[msgtype](header=header, height=image.shape[0], width=image.shape[1],
                                 encoding=topic.encoding, is_bigendian=0, step=step, data=data)
            messages.append((stamp_ns + LOG_OFFSET_NS, topic.topic, msgtype, msg))
    if chatter and topics:
        end = max(m[0] for m in messages)
        for i, ns in enumerate(range(STAMP0_NS, end, 50_000_000)):
            chat = t["std_msgs/msg/String"](data=f"hello {i}")
            messages.append((ns + 1, "/chatter", "std_msgs/msg/String", chat))
    messages.sort(key=lambda m: m[0])

    if path.exists():
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    if ros1:
        from rosbags.rosbag1 import Writer as Writer1

        with Writer1(path) as writer:
            conns = {}
            for log_ns, topic, msgtype, msg in messages:
                if topic not in conns:
                    conns[topic] = writer.add_connection(topic, msgtype, typestore=store)
                writer.write(conns[topic], log_ns, store.serialize_ros1(msg, msgtype))
        return path

    from rosbags.rosbag2 import StoragePlugin, Writer

    folder = path.with_suffix("") if kind == "mcap" else path
    if folder.exists():
        shutil.rmtree(folder)
    plugin = StoragePlugin.SQLITE3 if kind == "rosbag2-sqlite" else StoragePlugin.MCAP
    with Writer(folder, version=9, storage_plugin=plugin) as writer:
        conns = {}
        for log_ns, topic, msgtype, msg in messages:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=store)
            writer.write(conns[topic], log_ns, store.serialize_cdr(msg, msgtype))
    if kind != "mcap":
        return folder
    (written,) = folder.glob("*.mcap")
    written.replace(path)  # the bare file, as `ros2 bag record -s mcap` users pass around
    shutil.rmtree(folder)
    return path


def demo_frames(count: int, height: int = 96, width: int = 192, seed: int = 0) -> list[np.ndarray]:
    """`count` frames of the synthetic street clip (the project's own test data)."""
    from segdata.synthetic import StreetClip

    clip = StreetClip(seed=seed, height=height, width=width, frames=count)
    return [np.ascontiguousarray(clip[i][0]) for i in range(count)]
