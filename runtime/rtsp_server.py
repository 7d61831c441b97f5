"""Start, feed and stop an RTSP server process (runtime/rtsp_helper.py: GStreamer's gst-rtsp-server).

The helper runs under a Python that has PyGObject and GStreamer, usually the system's
/usr/bin/python3 (a virtualenv rarely has `gi`); `gst_python()` finds one once per process
($PSPNET_RT_GST_PYTHON names it explicitly). Frames go to the helper's stdin from one feeder
thread: `offer()` never waits - when the helper is behind, the waiting frame is replaced by the
newer one and counted as dropped - so a slow or absent RTSP client can never slow the caller.
The helper is in its own session (a Ctrl-C in the terminal reaches only us) and is stopped by
its PID: EOF on stdin first (it ends its clients' streams), then SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

log = logging.getLogger(__name__)

HELPER = Path(__file__).with_name("rtsp_helper.py")
HEADER = struct.Struct("<HHHH")  # as runtime/rtsp_helper.py reads it: mount, width, height, 0
PYTHON_ENV = "PSPNET_RT_GST_PYTHON"
CREDENTIALS_ENV = "PSPNET_RT_RTSP_CREDENTIALS"  # read (and removed from its environment) by the helper
INSTALL = ("install GStreamer's RTSP server: scripts/install-system-deps.sh, or apt-get install python3-gi "
           "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
           "gstreamer1.0-plugins-ugly")


class RtspUnavailable(RuntimeError):
    """No Python here can run the RTSP server (the message says what is missing and how to fix it)."""


class RtspServerError(RuntimeError):
    """The server process failed to start or ended early (the message carries its own words);
    `crashed` when it died of an exception of its own (a bug or a broken GStreamer, not the user's
    mistake), whose last line alone is the message."""

    def __init__(self, message: str, crashed: bool = False) -> None:
        super().__init__(message)
        self.crashed = crashed


_found: tuple[str | None, str] | None = None
_found_lock = threading.Lock()


def gst_python() -> str:
    """The first Python that can run the helper: $PSPNET_RT_GST_PYTHON, this one, /usr/bin/python3,
    python3 on PATH. Raises RtspUnavailable with the first candidate's reason when none can."""
    global _found
    with _found_lock:
        if _found is None:
            _found = _search()
    python, why = _found
    if python is None:
        raise RtspUnavailable(why)
    return python


def _search() -> tuple[str | None, str]:
    explicit = os.environ.get(PYTHON_ENV)
    candidates = [explicit] if explicit else [sys.executable, "/usr/bin/python3", shutil.which("python3")]
    reasons = []
    for python in dict.fromkeys(c for c in candidates if c):
        if not os.access(python, os.X_OK):
            reasons.append(f"{python}: not an executable")
            continue
        try:
            done = subprocess.run([python, str(HELPER), "--check"], capture_output=True, text=True,
                                  timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            reasons.append(f"{python}: {exc}")
            continue
        if done.returncode == 0:
            return python, ""
        reasons.append(f"{python} lacks {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    where = f"${PYTHON_ENV}={explicit}" if explicit else "no Python here"
    first = reasons[0] if reasons else "none found"
    return None, f"{where} can run GStreamer's RTSP server ({first}); {INSTALL}"


@dataclass
class ServerOptions:
    """How the helper serves; see runtime/rtsp_helper.py for each knob."""

    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port, said in `port` once started
    paths: tuple[str, ...] = ("/stream",)  # one mount point each; offer(image, mount=i) feeds paths[i]
    fps: float = 25.0
    protocols: str = "tcp,udp"
    auth: str = "basic,digest"
    credentials: str | None = None  # "user:password": clients must authenticate
    preset: str = "superfast"
    quality: int = 23
    threads: int = 1
    key_seconds: float = 1.0


class RtspServerProcess:
    """One helper process serving BGR frames at rtsp://HOST:PORT/PATH, one mount per path."""

    def __init__(self, options: ServerOptions | None = None) -> None:
        self.options = options or ServerOptions()
        self.port: int | None = None
        self.pid: int | None = None
        self.clients = 0
        self.most_clients = 0
        self.offered = 0  # frames offered by the caller
        self.sent = 0  # frames written to the helper
        self.dropped = 0  # frames replaced by a newer one while the helper was busy
        self.ended: dict | None = None  # the helper's last words ({"ended": why, "frames": n, ...})
        self.failure: str | None = None  # why feeding stopped, when it did
        self._proc: subprocess.Popen | None = None
        self._stderr: IO[bytes] | None = None
        self._slots: dict[int, bytes] = {}  # mount -> the newest frame (header included) not yet written
        self._wake = threading.Condition()
        self._stopping = False
        self._feeder: threading.Thread | None = None
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()

    def start(self, timeout: float = 30.0) -> None:
        """Start the helper and wait until it listens; RtspServerError with its words if it cannot."""
        python = gst_python()
        o = self.options
        cmd = [python, str(HELPER), "--host", o.host, "--port", str(o.port),
               *(a for path in o.paths for a in ("--path", path)), "--fps", str(max(1, round(o.fps))),
               "--protocols", o.protocols, "--auth", o.auth, "--preset", o.preset,
               "--quality", str(o.quality), "--threads", str(o.threads), "--key-seconds", str(o.key_seconds)]
        env = {k: v for k, v in os.environ.items() if k != CREDENTIALS_ENV}
        if o.credentials:
            env[CREDENTIALS_ENV] = o.credentials
        env.setdefault("GST_DEBUG", "0")
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                      env=env, start_new_session=True, close_fds=True)
        self.pid = self._proc.pid
        with contextlib.suppress(OSError):  # a whole frame fits the pipe: fewer wake-ups per frame
            import fcntl

            fcntl.fcntl(self._proc.stdin.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
        self._reader = threading.Thread(target=self._read_events, name="rtsp-server-events", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                words, crashed = self._last_words()
                why = words or (f"exit {self._proc.returncode}" if self._proc.poll() is not None
                                else f"not listening after {timeout:g} s")
                self.stop()
                raise RtspServerError(why, crashed=crashed)
        self._feeder = threading.Thread(target=self._feed, name="rtsp-server-feed", daemon=True)
        self._feeder.start()

    def _read_events(self) -> None:
        for line in self._proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("ready"):
                self.port = int(event["port"])
                self._ready.set()
            elif "clients" in event:
                self.clients = int(event["clients"])
                self.most_clients = max(self.most_clients, self.clients)
            elif "ended" in event:
                self.ended = event

    def _last_words(self) -> tuple[str, bool]:
        """What the helper said last, and whether it died of a Python exception (then only the
        exception's own line: never a traceback's frames in a one-line error)."""
        if self._stderr is None:
            return "", False
        with contextlib.suppress(OSError, ValueError):
            self._stderr.seek(0)
            lines = [line.strip() for line in self._stderr.read().decode(errors="replace").splitlines()
                     if line.strip()]
            if any(line.startswith("Traceback (most recent call last)") for line in lines):
                return f"the helper {HELPER.name} failed: {lines[-1]}", True
            return " | ".join(lines[-3:]), False
        return "", False

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @staticmethod
    def _frame(image: np.ndarray, mount: int) -> bytes:
        h, w = image.shape[:2]
        return HEADER.pack(mount, w, h, 0) + np.ascontiguousarray(image, dtype=np.uint8).tobytes()

    def offer(self, image: np.ndarray, mount: int = 0) -> None:
        """Hand a frame (H x W x 3 BGR) to the feeder and return at once; a frame of the same mount
        still waiting is replaced (counted as dropped)."""
        data = self._frame(image, mount)
        with self._wake:
            self.offered += 1
            if self._slots.pop(mount, None) is not None:
                self.dropped += 1
            self._slots[mount] = data
            self._wake.notify()

    def send(self, image: np.ndarray, mount: int = 0) -> None:
        """Write a frame to the helper now, waiting for the pipe (a camera: every frame, paced by
        the caller). Raises RtspServerError once the helper is gone."""
        try:
            self._proc.stdin.write(self._frame(image, mount))
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError, AttributeError) as exc:
            raise RtspServerError(self._gone(exc)) from None
        self.offered += 1
        self.sent += 1

    def _gone(self, exc: BaseException) -> str:
        rc = self._proc.poll() if self._proc is not None else None
        words, _ = self._last_words()
        how = f"exit {rc}" if rc is not None else str(exc)
        return f"the RTSP server process ended ({how}{': ' + words if words else ''})"

    def _feed(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._slots or self._stopping)
                if self._stopping:
                    return
                mount = next(iter(self._slots))  # the oldest waiting mount first: streams take turns
                data = self._slots.pop(mount)
            try:
                self._proc.stdin.write(data)
                self._proc.stdin.flush()
                self.sent += 1
            except (BrokenPipeError, OSError, ValueError) as exc:
                self.failure = self._gone(exc)
                return

    def stop(self, timeout: float = 5.0) -> None:
        """End the helper by its PID: EOF (clients' streams end), then SIGTERM, then SIGKILL."""
        proc = self._proc
        if proc is None:
            return
        if self._feeder is not None:
            with self._wake:
                self._stopping = True  # frames still waiting are not sent
                self._wake.notify()
            self._feeder.join(timeout)
        with contextlib.suppress(OSError, ValueError):
            proc.stdin.close()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(timeout)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self._proc = None

    def kill(self) -> None:
        """SIGKILL by PID (an abort, or a test's camera that dies); safe from a signal handler."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.kill()

    def __enter__(self) -> RtspServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
