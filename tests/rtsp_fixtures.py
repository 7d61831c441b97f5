"""What the RTSP tests share: real IP cameras (benchmarks.rtsp_camera: GStreamer's
gst-rtsp-server on 127.0.0.1, each stopped by its PID), skipping with the reason where the
server cannot run here, and reading back what a run wrote."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import TINY_SIZE

CAMERA_FPS = 25.0


def need_rtsp_server() -> None:
    """Skip (saying why and how to fix it) where GStreamer's RTSP server or ffprobe is missing."""
    from runtime.rtsp_server import RtspUnavailable, gst_python

    try:
        gst_python()
    except RtspUnavailable as exc:
        pytest.skip(f"no RTSP server here: {exc}")
    if shutil.which("ffprobe") is None or shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg/ffprobe (scripts/install-system-deps.sh)")


_clip: np.ndarray | None = None


def clip() -> np.ndarray:
    """The demo street clip at the test artefacts' size, 50 frames (rendered once, cached)."""
    global _clip
    if _clip is None:
        from benchmarks.rtsp_camera import demo_clip

        _clip = demo_clip(*TINY_SIZE, frames=50)
    return _clip


@contextlib.contextmanager
def cameras() -> Iterator[contextlib.ExitStack]:
    """`with cameras() as stack: cam = stack.enter_context(camera(...))`: every one stopped at the end."""
    need_rtsp_server()
    with contextlib.ExitStack() as stack:
        yield stack


def camera(**options: object):  # -> RtspCamera (not started; `with` starts and stops it)
    from benchmarks.rtsp_camera import RtspCamera

    return RtspCamera(clip(), fps=options.pop("fps", CAMERA_FPS), **options)


def video_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    return frames


def burned_indices(path: Path, width: int | None = None) -> list[int | None]:
    """The camera index burned into each frame of a --visualize side-by-side video (left half)."""
    from benchmarks.rtsp_camera import video_indices

    return video_indices(path, width)


def stats_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]
