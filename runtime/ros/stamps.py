"""ROS stamps for every frame: a bag's frames keep their own; other sources get one here.

    bag            the image message's header.stamp and frame_id; logged at its receive time
    live sources   the wall clock (Unix time) when the frame was grabbed, as a camera driver
                   stamps its images; logged at the same time
    files, folders, the run's start (wall clock) + the frame's media time (index / fps, 25 fps
    demo           when the source does not say): the bag plays at the video's own rate and
                   repeated runs space their frames the same way
The frame id of a stamp-less frame is 'camera', or the stream's name when several streams run.
"""

from __future__ import annotations

import time
from typing import Any

DEFAULT_FPS = 25.0


class StampClock:
    """(stamp ns, frame id, log time ns) for the frames of one stream."""

    def __init__(self, *, live: bool, fps: float | None, frame_id: str = "camera") -> None:
        self.live = live
        self.fps = fps if fps and fps > 0 else DEFAULT_FPS
        self.frame_id = frame_id
        self.wall0_ns = time.time_ns()
        self.perf0 = time.perf_counter()

    def stamp(self, frame: Any) -> tuple[int, str, int]:
        if getattr(frame, "stamp_ns", None) is not None:
            log_ns = frame.log_time_ns if frame.log_time_ns is not None else frame.stamp_ns
            return int(frame.stamp_ns), frame.frame_id or "", int(log_ns)
        if self.live:
            ns = self.wall0_ns + int((frame.t_capture - self.perf0) * 1e9)
        else:
            ns = self.wall0_ns + round(frame.index * 1e9 / self.fps)
        return ns, self.frame_id, ns
