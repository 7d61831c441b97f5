"""Why an rtsp:// source cannot be opened, in words the user can act on.

OpenCV only says that an open failed. FFmpeg knows why (the camera answered 401 Unauthorized,
404 Not Found, 461 Unsupported transport, or nothing listens at the port), so after a failed
open that did not use up the --timeout, ffprobe is asked the same question within the time left
and its reason is mapped to the fix. Nothing of ffprobe's text reaches the user verbatim: it
names the URL, password included.
"""

from __future__ import annotations

import re
import shutil
import subprocess

STATUS = re.compile(r"method (\w+) failed: (\d{3})")
REASONS = {
    401: "the camera refused the credentials (RTSP 401 Unauthorized); check the user name and password "
         "in the URL (rtsp://USER:PASSWORD@HOST:PORT/PATH)",
    403: "the camera refused access (RTSP 403 Forbidden); check that this user may view the stream",
    404: "no stream at this path (RTSP 404 Not Found); check the path after HOST:PORT",
    454: "the camera lost the session (RTSP 454 Session Not Found); try again",
    461: "the camera does not offer the transport asked for (RTSP 461 Unsupported transport); use "
         "--rtsp-transport auto, or the other of tcp / udp",
    503: "the camera is busy or cannot start the stream (RTSP 503 Service Unavailable); try again later "
         "or check its stream count limit",
}
NETWORK = (
    ("Connection refused", "connection refused: nothing listens at that host and port; is the camera up, "
                           "is the port right?"),
    ("Failed to resolve hostname", "the host name does not resolve; check the host in the URL"),
    ("No route to host", "no route to the host; check the address and the network"),
    ("Connection timed out", "the connection timed out; check the address and any firewall"),
)


def rtsp_refusal(uri: str, transport: str, seconds: float) -> str | None:
    """What the camera said when asked for `uri` (within `seconds`), as a sentence with its fix;
    None where ffprobe is absent, time is too short, or it opened the stream after all."""
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None or seconds < 0.3:
        return None
    cmd = [ffprobe, "-v", "error", "-timeout", str(int(seconds * 1e6))]
    if transport != "auto":
        cmd += ["-rtsp_transport", transport]
    cmd += ["-show_entries", "stream=codec_type", "-of", "csv=p=0", uri]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode == 0:
        return None
    return explain(done.stderr)


def explain(ffmpeg_stderr: str) -> str | None:
    """ffprobe's error text -> one of our sentences (never its own words, which hold the URL)."""
    match = STATUS.search(ffmpeg_stderr)
    if match:
        code = int(match.group(2))
        return REASONS.get(code, f"the camera answered RTSP {code} to {match.group(1)}")
    for needle, sentence in NETWORK:
        if needle in ffmpeg_stderr:
            return sentence
    return None
