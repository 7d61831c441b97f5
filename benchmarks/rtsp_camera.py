"""A simulated IP camera for the RTSP tests and benchmark: a real RTSP server (GStreamer's
gst-rtsp-server, through runtime.rtsp_server) serving a known clip in real time, every frame
stamped with its index.

Frame k leaves the camera at epoch + k / fps (the wall clock, time.time(), the clock of
pspnet-rt's --stats "time"), with k burned into its top-left corner as large black/white
cells that survive H.264 both ways (read_index). `sent[k]` is when frame k was handed to the
server: the "glass" of glass-to-mask latency. The index follows the wall clock, so a camera
that is killed and restarted resumes at a later index, like a real camera's frame counter:
frames nobody could receive during the outage are the gap.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from pathlib import Path

import numpy as np

from runtime.rtsp_server import RtspServerError, RtspServerProcess, ServerOptions

INDEX_BITS = 16
CHECK_BITS = 4  # popcount of the index mod 16: any one misread cell is caught
ROWS = 2


def _cells(height: int) -> tuple[int, int]:
    """(cell side in pixels, cells per row) for a frame of this height."""
    bits = INDEX_BITS + CHECK_BITS
    return max(4, height // 12), math.ceil(bits / ROWS)


def _bits(index: int) -> list[int]:
    index %= 1 << INDEX_BITS
    check = bin(index).count("1") % (1 << CHECK_BITS)
    word = index | (check << INDEX_BITS)
    return [(word >> i) & 1 for i in range(INDEX_BITS + CHECK_BITS)]


def burn_index(image: np.ndarray, index: int) -> np.ndarray:
    """Write `index` into the top-left corner of `image` (in place) and return it."""
    side, per_row = _cells(image.shape[0])
    for i, bit in enumerate(_bits(index)):
        r, c = divmod(i, per_row)
        image[r * side:(r + 1) * side, c * side:(c + 1) * side] = 255 if bit else 0
    return image


def read_index(image: np.ndarray) -> int | None:
    """The index burned into `image` (mod 2**16), or None when the cells do not check out."""
    side, per_row = _cells(image.shape[0])
    margin = max(1, side // 4)
    grey = image.mean(axis=2) if image.ndim == 3 else image
    bits = []
    for i in range(INDEX_BITS + CHECK_BITS):
        r, c = divmod(i, per_row)
        cell = grey[r * side + margin:(r + 1) * side - margin, c * side + margin:(c + 1) * side - margin]
        bits.append(1 if cell.mean() > 127 else 0)
    index = sum(b << i for i, b in enumerate(bits[:INDEX_BITS]))
    return index if _bits(index) == bits else None


def video_indices(path: str | Path, width: int | None = None) -> list[int | None]:
    """The index burned into each frame of a video, read from its left `width` pixels (the source
    half of a --visualize side-by-side video: half the width when not given)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    found = []
    try:
        while True:
            ok, image = cap.read()
            if not ok:
                break
            found.append(read_index(image[:, : (width or image.shape[1] // 2)]))
    finally:
        cap.release()
    return found


def demo_clip(height: int, width: int, frames: int = 50, seed: int = 0) -> np.ndarray:
    """The demo street clip (rendered once into the clip cache) as an (N, H, W, 3) array."""
    from segdata.clip_cache import CachedClip

    return np.asarray(CachedClip(seed=seed, height=height, width=width, frames=frames, progress=False).images)


class RtspCamera:
    """rtsp://127.0.0.1:PORT/PATH serving `clip` (N, H, W, 3) in a loop at `fps`, index burned in."""

    def __init__(self, clip: np.ndarray, fps: float = 25.0, path: str = "/cam", *, port: int = 0,
                 protocols: str = "tcp,udp", credentials: str | None = None, auth: str = "basic,digest",
                 host: str = "127.0.0.1", index_offset: int = 0) -> None:
        self.clip, self.fps = clip, float(fps)
        self.index_offset = index_offset  # burned index = offset + k: cameras told apart by their frames
        self.options = ServerOptions(host=host, port=port, paths=(path,), fps=fps, protocols=protocols,
                                     credentials=credentials, auth=auth, preset="ultrafast", quality=20)
        self.sent: dict[int, float] = {}  # burned index -> time.time() it was handed to the server
        self.epoch: float | None = None
        self.server: RtspServerProcess | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.options.port

    def url(self, credentials: str | None = None) -> str:
        who = f"{credentials}@" if credentials else ""
        return f"rtsp://{who}{self.options.host}:{self.options.port}{self.options.paths[0]}"

    @property
    def pid(self) -> int | None:
        return self.server.pid if self.server is not None else None

    def start(self) -> RtspCamera:
        """Start serving (again, on the same port, after kill()); frames resume at the index of now."""
        server = RtspServerProcess(self.options)
        server.start()
        self.options.port = server.port  # a restart listens where clients reconnect
        if self.epoch is None:
            self.epoch = time.time()
        self.server = server
        if self._thread is None:
            self._thread = threading.Thread(target=self._pace, name="rtsp-camera", daemon=True)
            self._thread.start()
        return self

    def kill(self) -> None:
        """The camera dies mid-stream (SIGKILL of its server, by PID): nothing more is sent."""
        server, self.server = self.server, None
        if server is not None:
            server.kill()
            server.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        server, self.server = self.server, None
        if server is not None:
            server.stop()

    def __enter__(self) -> RtspCamera:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _pace(self) -> None:
        k = 0
        while not self._stop.is_set():
            due = self.epoch + k / self.fps
            if self._stop.wait(max(0.0, due - time.time())):
                return
            server = self.server
            now = time.time()
            if server is None:  # dead: the frame counter runs on
                k = max(k + 1, math.ceil((now - self.epoch) * self.fps))
                continue
            index = self.index_offset + k
            frame = burn_index(np.array(self.clip[k % len(self.clip)]), index)
            t_send = time.time()
            with contextlib.suppress(RtspServerError):  # killed under us
                server.send(frame)
                self.sent[index] = t_send
            # a camera never catches up on frames it was late for
            k = max(k + 1, math.floor((time.time() - self.epoch) * self.fps))
