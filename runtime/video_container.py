"""Which containers the video sink writes H.264 into, asked of ffmpeg itself before any work.

An --output whose container cannot hold H.264 (.webm, .gif, .ogv, .png, .txt ...) used to fail
after the model loaded, at the first frame or at close. Here the common containers are known
(tests/faults check each with a real encode), and any other suffix is tried once per process: two
16x16 frames encoded with the very arguments the run will use, into a scratch folder. Streams
(a FIFO, /dev/stdout, /dev/null) cannot seek back, so they get a container that never needs to:
MPEG-TS by default, Matroska, or fragmented MP4.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import tempfile

from runtime.errors import OutputError

# ffmpeg writes H.264 into these files (tests/faults/test_trust_outputs.py encodes into each)
FILE_CONTAINERS = (".mp4", ".m4v", ".mov", ".mkv", ".ts", ".avi", ".flv")
FASTSTART = (".mp4", ".m4v", ".mov")
_FRAGMENTED = ["-movflags", "frag_keyframe+empty_moov+default_base_moof"]
# containers written front to back without seeking, for outputs that are streams
STREAM_CONTAINERS = {"": ["-f", "mpegts"], ".ts": ["-f", "mpegts"], ".mkv": ["-f", "matroska"],
                     ".mp4": ["-f", "mp4", *_FRAGMENTED], ".m4v": ["-f", "mp4", *_FRAGMENTED],
                     ".mov": ["-f", "mov", *_FRAGMENTED], ".flv": ["-f", "flv"], ".nut": ["-f", "nut"],
                     ".h264": ["-f", "h264"], ".264": ["-f", "h264"]}
SUGGEST = "use .mp4 (or .mkv, .mov, .ts)"


def output_args(suffix: str, stream: bool) -> list[str]:
    """ffmpeg's output options for a target with this suffix (a file without one is MP4)."""
    suffix = suffix.lower()
    if stream:
        return list(STREAM_CONTAINERS.get(suffix, STREAM_CONTAINERS[""]))
    if not suffix:
        return ["-f", "mp4", "-movflags", "+faststart"]
    return ["-movflags", "+faststart"] if suffix in FASTSTART else []


def check_container(ffmpeg: str, suffix: str, stream: bool, flag: str, shown: str) -> list[str]:
    """The output options for `suffix`, or OutputError (exit 2) naming what ffmpeg said."""
    suffix = suffix.lower()
    if stream:
        if suffix not in STREAM_CONTAINERS:
            raise OutputError(f"{flag} {shown} is a stream (written in place, no seeking back): a {suffix} "
                              f"container needs a file; use .ts, .mkv or .mp4 (fragmented), or no suffix "
                              "(MPEG-TS)")
        return output_args(suffix, stream)
    if not suffix or suffix in FILE_CONTAINERS:
        return output_args(suffix, stream)
    problem = _try_encode(ffmpeg, suffix)
    if problem:
        raise OutputError(f"{flag} {shown}: ffmpeg cannot write H.264 video into a {suffix} file "
                          f"({problem}); {SUGGEST}")
    return output_args(suffix, stream)


@functools.lru_cache(maxsize=32)
def _try_encode(ffmpeg: str, suffix: str) -> str:
    """'' when ffmpeg writes two H.264 frames into a `suffix` file, else its last error line."""
    with tempfile.TemporaryDirectory(prefix="pspnet-rt-container.") as scratch:
        target = os.path.join(scratch, f"probe{suffix}")
        cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
               "color=c=gray:s=16x16:r=2:d=1", "-frames:v", "2", "-an", "-c:v", "libx264", "-preset",
               "ultrafast", "-pix_fmt", "yuv420p", *output_args(suffix, False), target]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
        # the first line is the muxer's own reason ("[webm @ 0x..] Only VP8 or VP9 ..."); -loglevel
        # error: anything printed is an error, whatever the exit code
        lines = [re.sub(r"^\[[^]]*@ 0x[0-9a-f]+\]\s*", "", line.strip()).replace(f"'{target}'", "it")
                 for line in done.stderr.splitlines() if line.strip()]
        if done.returncode != 0 or not os.path.exists(target) or lines:
            return lines[0] if lines else f"exit {done.returncode}"
    return ""
