"""Checks that an output is whole before a run may call it written.

An encoder's exit code is not proof: ffmpeg exits 0 after "Error writing trailer ... No space
left on device", leaving an mp4 without its moov atom that nothing can play. So the video is
re-read (packets counted, i.e. demuxed, not decoded: ~0.1 s per minute of video), the stats
file is re-parsed line by line, and free space is watched while writing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import cv2

# Below this much free space a video cannot be trusted to get its index (moov atom) written:
# +faststart rewrites the file with the index in front, which needs the index's size again.
MIN_FREE_BYTES = 256 * 1024


def free_bytes(folder: str | Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def video_frame_count(path: str | Path, timeout: float = 120.0) -> int | None:
    """Frames in a video file by reading its packets (ffprobe), or OpenCV's container count where
    ffprobe is absent; None when the file cannot be opened at all (e.g. no moov atom)."""
    path = Path(path)
    ffprobe = shutil.which("ffprobe")
    if ffprobe:
        try:
            done = subprocess.run([ffprobe, "-v", "error", "-select_streams", "v:0", "-count_packets",
                                   "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", str(path)],
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        text = done.stdout.strip().split(",")[0] if done.returncode == 0 else ""
        return int(text) if text.isdigit() else None
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return None
        count = 0
        while cap.grab():
            count += 1
        return count
    finally:
        cap.release()


def jsonl_problem(path: str | Path, lines: int) -> str | None:
    """None if `path` holds exactly `lines` whole JSON objects, else what is wrong."""
    try:
        with open(path, encoding="utf-8") as fh:
            count = 0
            for count, line in enumerate(fh, 1):
                if not line.endswith("\n"):
                    return f"line {count} is cut short"
                json.loads(line)
    except (OSError, ValueError) as exc:
        return f"cannot be read back ({exc})"
    return None if count == lines else f"holds {count} lines, {lines} were written"
