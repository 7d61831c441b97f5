"""Sources by URI: real OpenCV decode of files/folders written here, the demo clip, and the live
grabber's newest-frame / reconnect logic."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.errors import SourceError
from runtime.naming import redact_source
from runtime.sources import (
    STALE,
    CameraSource,
    DemoSource,
    ImageFolderSource,
    LiveSource,
    SourceOptions,
    StreamSource,
    VideoFileSource,
    open_source,
    parse_source,
)


def write_video(path: Path, frames: int = 12, size: tuple[int, int] = (64, 48), fps: float = 10.0) -> Path:
    """A small real mp4 whose frame i is filled with grey level 10*i (survives lossy coding)."""
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((h, w, 3), 10 * i, np.uint8))
    writer.release()
    return path


def levels(frames: list) -> list[int]:
    return [round(float(f.image.mean()) / 10) for f in frames]


def test_video_file_is_lossless_and_in_order(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4")
    with open_source(str(path)) as src:
        assert isinstance(src, VideoFileSource) and not src.live
        assert src.fps == pytest.approx(10.0)
        assert src.frame_size == (64, 48)
        frames = list(src.frames())
    assert [f.index for f in frames] == list(range(12))
    assert levels(frames) == list(range(12))
    assert all(f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8 for f in frames)


def test_loop_and_max_frames(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", frames=5)
    with open_source(str(path), SourceOptions(loop=True, max_frames=12)) as src:
        frames = list(src.frames())
    assert [f.index for f in frames] == list(range(12))  # indices keep counting across replays
    assert levels(frames) == [0, 1, 2, 3, 4] * 2 + [0, 1]
    assert src.end_reason == "--max-frames 12 reached"


def test_image_folder_natural_order_skips_corrupt(tmp_path: Path) -> None:
    for i, name in enumerate(["f1", "f2", "f3", "f4", "f10"]):
        cv2.imwrite(str(tmp_path / f"{name}.png"), np.full((20, 30, 3), 10 * i, np.uint8))
    (tmp_path / "f3.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # unreadable
    (tmp_path / "notes.txt").write_text("not an image")
    src = parse_source(str(tmp_path))
    assert isinstance(src, ImageFolderSource)
    with src:
        frames = list(src.frames())
    assert [f.name for f in frames] == ["f1.png", "f2.png", "f4.png", "f10.png"]
    assert [f.index for f in frames] == [0, 1, 3, 4]  # the gap is the corrupt file's position
    assert levels(frames) == [0, 1, 3, 4]
    assert src.drops == {"unreadable image": 1}


def test_glob_single_image_and_gray(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8), np.uint8))  # grayscale -> BGR
    cv2.imwrite(str(tmp_path / "b.jpg"), np.zeros((8, 8, 3), np.uint8))
    with open_source(str(tmp_path / "*.png")) as src:
        frames = list(src.frames())
    assert len(frames) == 1 and frames[0].image.shape == (8, 8, 3)
    with open_source(str(tmp_path / "b.jpg")) as src:
        assert len(list(src.frames())) == 1


def test_demo_source() -> None:
    with open_source("demo", SourceOptions(demo_size=(48, 96), demo_frames=3)) as src:
        assert isinstance(src, DemoSource)
        frames = list(src.frames())
        assert src.frame_size == (96, 48)
    assert [f.index for f in frames] == [0, 1, 2]
    assert all(f.image.shape == (48, 96, 3) and f.image.dtype == np.uint8 for f in frames)


def test_uri_parsing() -> None:
    assert isinstance(parse_source("cam3"), CameraSource) and parse_source("cam3").device == 3
    assert parse_source("/dev/video2").device == 2
    for url in ("rtsp://h/s", "http://h/v.mjpg", "https://h/x", "udp://0.0.0.0:5000", "rtmp://h/a"):
        assert isinstance(parse_source(url), StreamSource) and parse_source(url).live
    assert redact_source("rtsp://admin:s3cret@10.0.0.2/stream") == "rtsp://admin:***@10.0.0.2/stream"


@pytest.mark.parametrize("uri, words", [
    ("no/such/file.mp4", ["no such file or folder", "no/such/file.mp4", "demo"]),
    ("ftp://host/x.mp4", ["unsupported URL scheme ftp://"]),
    ("", ["empty --video"]),
])
def test_bad_uris_say_what_and_how(uri: str, words: list[str]) -> None:
    with pytest.raises(SourceError) as err:
        parse_source(uri)
    assert all(w in str(err.value) for w in words)


def test_unopenable_sources(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no images in folder"):
        parse_source(str(tmp_path))
    bogus = tmp_path / "fake.mp4"
    bogus.write_bytes(b"not a video at all" * 10)
    with pytest.raises(SourceError, match=r"cannot open video file .*ffprobe"):
        open_source(str(bogus))
    with pytest.raises(SourceError, match=r"/dev/video97 does not exist"):
        open_source("cam97")


# -- live grabber: newest frame wins, stale ones are counted; lost streams reconnect --------------
class ScriptedCapture:
    """Stands in for a camera (the device this machine lacks): yields `n` frames `period` apart."""

    def __init__(self, n: int, period: float, start: int = 0) -> None:
        self.n, self.period, self.i, self.start = n, period, 0, start

    def isOpened(self) -> bool:
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        time.sleep(self.period)
        if self.i >= self.n:
            return False, None
        self.i += 1
        return True, np.full((4, 4, 3), self.start + self.i - 1, np.uint8)

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        pass


class ScriptedLive(LiveSource):
    kind = "scripted"

    def __init__(self, captures: list[ScriptedCapture], **options: object) -> None:
        super().__init__("scripted", SourceOptions(**options))
        self.captures = captures

    def _capture(self) -> ScriptedCapture:
        return self.captures.pop(0) if self.captures else ScriptedCapture(0, 0.0)

    def _open_error(self) -> str:
        return "cannot open"


def test_live_source_drops_stale_frames() -> None:
    src = ScriptedLive([ScriptedCapture(40, 0.002)], reconnect=0)
    got = []
    with src:
        for frame in src.frames():
            got.append(frame)
            time.sleep(0.02)  # a slow consumer: inference slower than the camera
    values = [int(f.image[0, 0, 0]) for f in got]
    assert values == sorted(values) and values[-1] == 39  # newest frames, in order, the last one kept
    assert src.drops[STALE] == 40 - len(got) > 0
    assert [f.index for f in got] == values  # index = position in the stream: gaps show drops
    assert src.end_reason == "stream ended"


def test_live_source_reconnects_then_ends() -> None:
    first, second = ScriptedCapture(3, 0.001), ScriptedCapture(3, 0.001, start=100)
    src = ScriptedLive([first, second], reconnect=2, reconnect_delay=0.01)
    with src:
        values = [int(f.image[0, 0, 0]) for f in src.frames()]
    assert values[0] == 0 and values[-1] == 102  # frames from before and after the reconnect
    assert len(values) + src.drops[STALE] == 6  # each frame either processed or counted as stale
    assert src.reconnects >= 1
    assert src.end_reason == "stream lost; 2 reconnect attempt(s) failed"


def test_live_source_stop_event_ends_promptly() -> None:
    src = ScriptedLive([ScriptedCapture(10_000, 0.001)], reconnect=0)
    stop = threading.Event()
    t0 = time.perf_counter()
    with src:
        for n, _ in enumerate(src.frames(stop)):
            if n == 3:
                stop.set()
    assert time.perf_counter() - t0 < 5
    assert src.end_reason == "stopped"
