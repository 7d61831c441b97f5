"""ROS bags in and out, and the Foxglove live view, proven with libraries we did not write:
input bags are written by `rosbags`; output bags are read back by `mcap-ros2-support`'s decoder
and by `rosbags`; the live view is read by a WebSocket client (`websockets`) speaking the
Foxglove protocol, decoding images with `protobuf` from the schema the server advertises."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import struct
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rosbags", reason="the ros extra: pip install 'pspnet-rt[ros]'")
pytest.importorskip("mcap_ros2", reason="the ros extra: pip install 'pspnet-rt[ros]'")

from benchmarks.ros_bags import LOG_OFFSET_NS, ImageTopic, demo_frames, write_bag
from runtime.cli import main
from runtime.errors import SourceDamaged, SourceError
from runtime.ros.bag_sink import BagSink
from runtime.sources import SourceOptions, parse_source

FRAMES = demo_frames(6)
ALL_ENCODINGS = ("bgr8", "rgb8", "bgra8", "rgba8", "mono8", "mono16", "bayer_rggb8", "bayer_bggr8",
                 "bayer_gbrg8", "bayer_grbg8", "bayer_rggb16", "jpeg", "png")


def read_source(uri: str, **options: object) -> tuple[list, object]:
    source = parse_source(uri, SourceOptions(**options))
    with source:
        frames = list(source.frames())
    return frames, source


def one_line(capsys: pytest.CaptureFixture, *words: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pspnet-rt: "), err
    for word in words:
        assert word in err[0], err[0]
    return err[0]


# -- bags as a source -----------------------------------------------------------------------------
def test_every_supported_encoding_decodes_to_the_recorded_picture(tmp_path: Path) -> None:
    topics = [ImageTopic(f"/cam_{enc}/image", FRAMES[:2], encoding=enc) for enc in ALL_ENCODINGS]
    bag = write_bag(tmp_path / "encodings.mcap", topics)
    for topic in topics:
        frames, _ = read_source(f"{bag}#{topic.topic}")
        assert len(frames) == 2, topic.encoding
        for got, want in zip(frames, topic.frames):
            if topic.encoding.startswith("mono"):
                want = cv2.cvtColor(cv2.cvtColor(want, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
            error = np.abs(got.image.astype(int) - want.astype(int)).mean()
            exact = topic.encoding in ("bgr8", "rgb8", "bgra8", "rgba8", "mono8", "mono16", "png")
            # demosaicing and JPEG are lossy; a wrong channel order or Bayer pattern costs > 20
            assert error == 0 if exact else error < 12, (topic.encoding, error)


@pytest.mark.parametrize("encoding", ["32FC1", "yuv422", "16UC1"])
def test_an_unsupported_encoding_is_refused_in_one_line_naming_it(tmp_path: Path, encoding: str,
                                                                   capsys: pytest.CaptureFixture) -> None:
    bag = write_bag(tmp_path / "odd.mcap", [ImageTopic("/depth", FRAMES[:1], encoding=encoding)])
    assert main(["--video", str(bag), "--engine", str(bag)]) == 2  # refused before any model work
    one_line(capsys, encoding, "not supported")


def test_a_compressed_depth_image_is_refused(tmp_path: Path) -> None:
    from runtime.ros.images import ImageFormatError, decode_compressed

    with pytest.raises(ImageFormatError, match="compressedDepth"):
        decode_compressed("16UC1; compressedDepth png", b"\x89PNG")
    with pytest.raises(ImageFormatError, match="h264"):
        decode_compressed("h264", b"\0\0\0\1")


@pytest.mark.parametrize("kind", ["mcap", "rosbag2-mcap", "rosbag2-sqlite", "ros1"])
def test_every_bag_format_keeps_stamps_and_frame_ids(tmp_path: Path, kind: str) -> None:
    raw = ImageTopic("/front/image_raw", FRAMES, encoding="bgr8", frame_id="front_cam")
    jpeg = ImageTopic("/rear/image/compressed", FRAMES[:3], encoding="jpeg", frame_id="rear_cam")
    name = {"ros1": "drive.bag", "mcap": "drive.mcap"}.get(kind, "drive")
    bag = write_bag(tmp_path / name, [raw, jpeg], kind=kind)
    for topic in (raw, jpeg):
        frames, source = read_source(f"{bag}#{topic.topic}")
        assert [f.stamp_ns for f in frames] == topic.stamps_ns
        assert [f.log_time_ns - f.stamp_ns for f in frames] == [LOG_OFFSET_NS] * len(frames)
        assert {f.frame_id for f in frames} == {topic.frame_id}
        assert [f.index for f in frames] == list(range(len(topic.frames)))
        assert source.incomplete is None and source.fps == pytest.approx(10, rel=0.01)
    frames, _ = read_source(str(bag), topic="/rear/image/compressed")  # the flag instead of BAG#TOPIC
    assert len(frames) == 3


def test_topic_choice_errors_list_the_image_topics(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "two.mcap", [ImageTopic("/a/image", FRAMES[:1]),
                                            ImageTopic("/b/image", FRAMES[:1], encoding="jpeg")])
    for uri, words in ((str(bag), ("2 image topics", "/a/image", "/b/image", "#TOPIC", "--topic")),
                       (f"{bag}#/nope", ("no topic /nope", "/a/image", "/b/image")),
                       (f"{bag}#/chatter", ("std_msgs/msg/String", "not an image", "/a/image"))):
        with pytest.raises(SourceError) as err:
            read_source(uri)
        assert all(w in str(err.value) for w in words), str(err.value)
    only_chatter = write_bag(tmp_path / "none.mcap", [ImageTopic("/x", [])], chatter=False)
    with pytest.raises(SourceError, match="no sensor_msgs/Image"):
        read_source(str(only_chatter))


def test_several_image_topics_none_chosen_exit_2_listing_them(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                              ) -> None:
    bag = write_bag(tmp_path / "two.mcap", [ImageTopic("/a/image", FRAMES[:1]),
                                            ImageTopic("/b/image", FRAMES[:1])])
    assert main(["--video", str(bag), "--engine", str(bag)]) == 2
    one_line(capsys, "/a/image", "/b/image")


def _cut(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.mark.parametrize("kind", ["mcap", "rosbag2-sqlite"])
def test_a_cut_off_bag_yields_every_readable_frame_then_says_it_is_damaged(tmp_path: Path, kind: str) -> None:
    frames = FRAMES * 10  # 60 raw frames: a few MCAP chunks
    topic = ImageTopic("/cam", frames)
    bag = write_bag(tmp_path / ("cut.mcap" if kind == "mcap" else "cut"), [topic], kind=kind)
    _cut(bag if bag.is_file() else next(bag.glob("*.db3")), 0.999 if kind != "mcap" else 0.6)
    got, source = read_source(str(bag))
    assert 0 < len(got) < 60
    assert [f.stamp_ns for f in got] == topic.stamps_ns[: len(got)]  # in order, nothing invented
    assert all(np.array_equal(f.image, frames[f.index]) for f in got)
    assert source.incomplete and "damage" in source.incomplete


def test_a_ros1_bag_without_its_index_is_a_runtime_failure_naming_reindex(tmp_path: Path) -> None:
    bag = _cut(write_bag(tmp_path / "cut.bag", [ImageTopic("/cam", FRAMES)], kind="ros1"), 0.8)
    with pytest.raises(SourceDamaged, match="reindex"):
        read_source(str(bag))


def test_realtime_replays_at_the_recorded_rate_and_drops_stale_frames(tmp_path: Path) -> None:
    frames = FRAMES * 4
    topic = ImageTopic("/cam", frames[:20], fps=50.0)  # 0.38 s from first to last
    bag = write_bag(tmp_path / "rt.mcap", [topic])
    source = parse_source(str(bag), SourceOptions(realtime=True))
    assert source.live
    t0 = time.monotonic()
    with source:
        got = []
        for frame in source.frames():
            got.append(frame)
            time.sleep(0.06)  # a model at ~16 FPS: slower than the 50 fps recording
    elapsed = time.monotonic() - t0
    assert elapsed >= 0.36  # not faster than recorded
    assert 3 <= len(got) < 20 and source.drops  # stale frames dropped, counted
    assert [f.stamp_ns for f in got] == sorted(f.stamp_ns for f in got)
    assert set(f.stamp_ns for f in got) <= set(topic.stamps_ns)


# -- bags as an output ----------------------------------------------------------------------------
def _read_with_mcap_ros2(path: Path) -> dict[str, list]:
    from mcap_ros2.reader import read_ros2_messages

    out: dict[str, list] = {}
    for m in read_ros2_messages(str(path)):
        out.setdefault(m.channel.topic, []).append((m.log_time_ns, m.ros_msg))
    return out


def _read_with_rosbags(path: Path) -> dict[str, list]:
    from rosbags.highlevel import AnyReader

    out: dict[str, list] = {}
    with AnyReader([path]) as reader:
        for conn, timestamp, raw in reader.messages():
            out.setdefault(conn.topic, []).append((timestamp, reader.deserialize(raw, conn.msgtype)))
    return out


def _stamp(msg: object) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def test_bag_in_bag_out_with_aligned_stamps_and_the_masks_bytes(demo_artefacts: dict, tmp_path: Path) -> None:
    topic = ImageTopic("/front/image_raw", FRAMES, encoding="jpeg", frame_id="front_cam")
    bag = write_bag(tmp_path / "drive.mcap", [topic, ImageTopic("/rear/image_raw", FRAMES[:2])])
    out, masks, stats = tmp_path / "seg.mcap", tmp_path / "masks", tmp_path / "stats.jsonl"
    assert main(["--video", f"{bag}#/front/image_raw", "--engine", str(demo_artefacts["onnxruntime"]),
                 "--bag", str(out), "--masks", str(masks), "--stats", str(stats)]) == 0
    lines = [json.loads(line) for line in stats.read_text().splitlines()]
    assert [r["stamp_ns"] for r in lines] == topic.stamps_ns
    assert {r["frame_id"] for r in lines} == {"front_cam"}
    for read in (_read_with_mcap_ros2, _read_with_rosbags):
        topics = read(out)
        assert set(topics) == {"/pspnet/class_map", "/pspnet/overlay/compressed", "/pspnet/frame_stats",
                               "/pspnet/label_info", "/pspnet/classes"}, read.__name__
        class_maps = topics["/pspnet/class_map"]
        assert [_stamp(m) for _, m in class_maps] == topic.stamps_ns
        # logged at the input's receive times, so both bags line up in a viewer
        assert [t for t, _ in class_maps] == [s + LOG_OFFSET_NS for s in topic.stamps_ns]
        for i, (_, msg) in enumerate(class_maps):
            png = cv2.imread(str(masks / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED)
            assert (msg.encoding, msg.height, msg.width, msg.step) == ("mono8", *png.shape, png.shape[1])
            assert msg.header.frame_id == "front_cam"
            assert bytes(msg.data) == png.tobytes()  # byte-identical to --masks
        for _, msg in topics["/pspnet/overlay/compressed"]:
            picture = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
            assert msg.format == "jpeg" and picture.shape == FRAMES[0].shape
        assert [_stamp(m) for _, m in topics["/pspnet/frame_stats"]] == topic.stamps_ns
        assert all(m.inference_ms > 0 for _, m in topics["/pspnet/frame_stats"])
        (_, info), = topics["/pspnet/label_info"]
        names = [c.class_name for c in info.class_map]
        (_, classes), = topics["/pspnet/classes"]
        table = json.loads(classes.data)
        assert names == table["classes"] and len(table["palette"]) == len(names)
        assert _stamp(info) == topic.stamps_ns[0]


def test_several_topics_of_one_bag_as_several_streams_in_one_bag(demo_artefacts: dict, tmp_path: Path,
                                                                  ) -> None:
    front = ImageTopic("/front/image_raw", FRAMES[:3], frame_id="front")
    rear = ImageTopic("/rear/image_raw", FRAMES[3:], encoding="png", frame_id="rear", fps=5.0)
    bag = write_bag(tmp_path / "drive", [front, rear], kind="rosbag2-mcap")
    out = tmp_path / "seg.mcap"
    assert main(["--video", f"front={bag}#/front/image_raw", "--video", f"rear={bag}#/rear/image_raw",
                 "--engine", str(demo_artefacts["onnxruntime"]), "--bag", str(out)]) == 0
    topics = _read_with_rosbags(out)
    for topic in (front, rear):
        name = topic.frame_id
        assert [_stamp(m) for _, m in topics[f"/pspnet/{name}/class_map"]] == topic.stamps_ns
        assert {m.header.frame_id for _, m in topics[f"/pspnet/{name}/overlay/compressed"]} == {name}


def test_a_damaged_input_still_writes_every_output_whole_then_exits_1(demo_artefacts: dict, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    bag = _cut(write_bag(tmp_path / "cut.mcap", [ImageTopic("/cam", FRAMES * 7)]), 0.6)
    out, masks = tmp_path / "seg.mcap", tmp_path / "masks"
    out.write_bytes(b"an earlier run's bag")
    assert main(["--video", str(bag), "--engine", str(demo_artefacts["onnxruntime"]), "--bag", str(out),
                 "--masks", str(masks)]) == 1
    one_line(capsys, "damaged", "cut.mcap")
    assert out.read_bytes() == b"an earlier run's bag"  # a failed run never replaces what was there
    kept = _read_with_mcap_ros2(tmp_path / "seg.incomplete.mcap")  # its own bag is whole, beside it
    assert len(kept["/pspnet/class_map"]) == len(list(masks.glob("*.png"))) > 0


def test_a_bag_that_cannot_be_finished_is_never_called_whole(tmp_path: Path) -> None:
    from runtime.errors import WriteError

    sink = BagSink(tmp_path / "seg.mcap", ["a", "b"], [[0, 0, 0], [9, 9, 9]])
    sink.open()
    sink.add_stream(None, live=False, fps=10)
    frame = type("F", (), {"index": 0, "stamp_ns": 5, "frame_id": "c", "log_time_ns": 5, "t_capture": 0.0})()
    sink.write(frame, np.zeros((4, 6), np.uint8), None, {}, 1.0)
    sink._fh.truncate(100)  # the file system lost the tail (a full disk, a yanked card)
    sink._fh.seek(0, 2)
    with pytest.raises(WriteError, match="not whole"):
        sink.close()
    assert not (tmp_path / "seg.mcap").exists() and not list(tmp_path.glob(".*"))


def test_bag_output_options_are_checked_before_any_model_work(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                              ) -> None:
    bag = write_bag(tmp_path / "in.mcap", [ImageTopic("/cam", FRAMES[:1])])
    for args, words in ((["--bag", str(tmp_path / "seg.bag")], (".mcap",)),
                        (["--bag", str(bag)], ("input of this run",)),
                        (["--bag", str(tmp_path / "s.mcap"), "--bag-topic", "not a topic"], ("ROS topic",))):
        try:
            code = main(["--video", str(bag), "--engine", str(bag), *args])
        except SystemExit as exc:  # argparse refuses a bad option value itself
            code = exc.code
        assert code == 2, args
        err = capsys.readouterr().err
        assert all(w in err for w in words), err
    assert not list(tmp_path.glob("*.mcap*")) or sorted(p.name for p in tmp_path.iterdir()) == ["in.mcap"]


# -- Foxglove -------------------------------------------------------------------------------------
def _decoder(channel: dict):
    """A protobuf class from the schema the server advertised (a FileDescriptorSet)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    files = descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(channel["schema"]))
    pool = descriptor_pool.DescriptorPool()
    for proto in files.file:
        pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(channel["schemaName"]))


async def _foxglove_client(port: int, topics: list[str], wanted: int, subprotocol: str = "foxglove.sdk.v1",
                           ) -> dict[str, list]:
    import websockets

    async with websockets.connect(f"ws://127.0.0.1:{port}", subprotocols=[subprotocol],
                                  max_size=1 << 24) as ws:
        channels: dict[str, dict] = {}
        while not all(t in channels for t in topics):
            msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if msg["op"] == "advertise":
                channels.update({c["topic"]: c for c in msg["channels"]})
        subs = {i: channels[t] for i, t in enumerate(topics, 1)}
        await ws.send(json.dumps({"op": "subscribe", "subscriptions": [
            {"id": i, "channelId": c["id"]} for i, c in subs.items()]}))
        got: dict[str, list] = {t: [] for t in topics}
        deadline = time.monotonic() + 15
        while min(len(v) for v in got.values()) < wanted and time.monotonic() < deadline:
            data = await asyncio.wait_for(ws.recv(), 10)
            if isinstance(data, bytes) and data[0] == 1:  # MessageData: op, sub id, log time, payload
                sub, log_time = struct.unpack_from("<IQ", data, 1)
                channel = subs[sub]
                payload = data[13:]
                if channel["encoding"] == "json":
                    value = json.loads(payload)
                else:
                    value = _decoder(channel).FromString(payload)
                got[channel["topic"]].append((log_time, value))
        return got


def _feed(sink, stop: threading.Event, frames: list, labels: np.ndarray, delays: list) -> None:
    i = 0
    while not stop.is_set():
        frame = type("F", (), {"index": i, "stamp_ns": 1_000_000_000 * 7 + i, "frame_id": "cam",
                               "log_time_ns": 7 + i, "t_capture": time.perf_counter()})()
        t0 = time.perf_counter()
        sink.write(frame, labels, frames[i % len(frames)], {"inference": 5.0}, 9.0)
        delays.append(time.perf_counter() - t0)
        i += 1
        time.sleep(0.01)


def test_foxglove_client_receives_decodable_overlay_class_map_and_stats() -> None:
    from runtime.ros.foxglove_sink import FoxgloveSink

    sink = FoxgloveSink("127.0.0.1", 0, ["road", "car"], [[1, 2, 3], [4, 5, 6]])
    sink.open()
    labels = (np.arange(96 * 192).reshape(96, 192) % 2).astype(np.uint8)
    stop, delays = threading.Event(), []
    feeder = threading.Thread(target=_feed, args=(sink, stop, FRAMES, labels, delays), daemon=True)
    feeder.start()
    try:
        got = asyncio.run(_foxglove_client(sink.server.port, ["/pspnet/overlay", "/pspnet/class_map",
                                                              "/pspnet/stats"], 2))
    finally:
        stop.set()
        feeder.join()
        sink.close()
    for _, image in got["/pspnet/overlay"]:
        picture = cv2.imdecode(np.frombuffer(image.data, np.uint8), cv2.IMREAD_COLOR)
        assert image.format == "jpeg" and picture.shape == FRAMES[0].shape and image.frame_id == "cam"
        assert image.timestamp.seconds == 7
    for _, image in got["/pspnet/class_map"]:
        assert (image.encoding, image.width, image.height, image.step) == ("mono8", 192, 96, 192)
        assert image.data == labels.tobytes()
    _, figures = got["/pspnet/stats"][-1]
    assert figures["classes"] == ["road", "car"] and figures["fps"] > 0 and figures["frames"] > 0
    assert max(delays) < 0.05  # write() only swaps a reference


def test_a_stalled_foxglove_client_never_slows_the_writer() -> None:
    """A client that subscribes and then never reads: the writer's calls stay instant, the publisher
    thread sends every frame without waiting for the client, and the client, reading again, gets
    only what the SDK's bounded backlog and the socket buffers held: it lost frames."""
    import socket

    from runtime.ros.foxglove_guard import BUFFER_CAP
    from runtime.ros.foxglove_sink import FoxgloveSink

    big = np.random.default_rng(0).integers(0, 255, (480, 960, 3), np.uint8)  # ~540 kB JPEGs
    jpeg = len(cv2.imencode(".jpg", big)[1])
    # between the SDK and the client sit the SDK's backlog (8 messages), two loopback TCP hops
    # (SDK -> guard, guard -> client: each up to the kernel's largest send + receive buffers) and
    # the guard's own buffer: send more than all of them can hold, or nothing need be lost
    kernel = [int(Path(f"/proc/sys/net/ipv4/tcp_{k}mem").read_text().split()[2]) for k in ("r", "w")]
    frames = int(1.5 * (8 * jpeg + 2 * sum(kernel) + BUFFER_CAP) / jpeg) + 1
    sink = FoxgloveSink("127.0.0.1", 0, ["road"], [[1, 2, 3]])
    sink.open()
    sink.add_stream(None, live=True, fps=None)  # its channels are advertised from now on
    stream = sink._streams[None]
    labels = np.zeros((480, 960), np.uint8)

    async def subscribe_stall_then_read() -> tuple[list[float], int]:
        import websockets

        # a small receive buffer, set before connecting (a tiny one set later stalls TCP itself)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
        sock.connect(("127.0.0.1", sink.server.port))
        async with websockets.connect(f"ws://127.0.0.1:{sink.server.port}", sock=sock, max_size=1 << 24,
                                      subprotocols=["foxglove.sdk.v1"], max_queue=1, close_timeout=1) as ws:
            channels = {}
            while "/pspnet/overlay" not in channels:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                channels.update({c["topic"]: c for c in msg.get("channels", [])})
            await ws.send(json.dumps({"op": "subscribe", "subscriptions": [
                {"id": 1, "channelId": channels["/pspnet/overlay"]["id"]}]}))
            deadline = time.monotonic() + 30
            while not stream.overlay.has_sinks():  # the server has taken the subscription
                assert time.monotonic() < deadline, "the subscription never reached the server"
                await asyncio.sleep(0.01)
            ws.transport.pause_reading()  # stalled: not a byte more is read off the socket
            delays = []
            for i in range(frames):
                frame = type("F", (), {"index": i, "stamp_ns": i, "frame_id": "", "log_time_ns": i,
                                       "t_capture": time.perf_counter()})()
                t0 = time.perf_counter()
                sink.write(frame, labels, big, {}, 1.0)
                delays.append(time.perf_counter() - t0)
                # the next frame once this one went out (however fast this machine encodes, all
                # frames reach the SDK): never held by the client, which never reads, so its socket
                # and the SDK's backlog fill up
                deadline = time.monotonic() + 60
                while stream.published <= i:
                    assert time.monotonic() < deadline, f"the publisher is stuck at frame {i}"
                    await asyncio.sleep(0.002)
            received = 0  # the client reads again: what was kept for it, then silence
            ws.transport.resume_reading()
            with contextlib.suppress(asyncio.TimeoutError, websockets.exceptions.ConnectionClosed):
                while True:
                    data = await asyncio.wait_for(ws.recv(), 30 if received == 0 else 2)
                    if isinstance(data, bytes) and data[0] == 1:  # MessageData of subscription 1
                        received += 1
            return delays, received

    try:
        delays, received = asyncio.run(subscribe_stall_then_read())
    finally:
        t0 = time.monotonic()
        sink.close()
        assert time.monotonic() - t0 < 10
    assert max(delays) < 0.05, max(delays)
    assert stream.published == frames and stream.skipped == 0
    assert 1 <= received < frames, received  # the stalled client lost frames, at the SDK's backlog


def test_the_old_subprotocol_name_is_refused_by_the_sdk() -> None:
    """foxglove-sdk serves the Foxglove WebSocket protocol as 'foxglove.sdk.v1'; clients offering only
    the older 'foxglove.websocket.v1' name are turned away (recorded so an SDK change is noticed)."""
    import websockets

    from runtime.ros.foxglove_sink import FoxgloveSink

    sink = FoxgloveSink("127.0.0.1", 0, ["road"], [[1, 2, 3]])
    sink.open()
    try:
        with pytest.raises(websockets.exceptions.InvalidStatus):
            asyncio.run(_foxglove_client(sink.server.port, ["/pspnet/overlay"], 1, "foxglove.websocket.v1"))
    finally:
        sink.close()
