"""What the fault tests share: running a command in-process or as a subprocess and checking the
rules (one line, the exit code, no traceback), real tmpfs mounts, and whole-output checks."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def call_main(main: Callable[[list[str]], int], argv: list[str]) -> int:
    """A command's main() in-process; argparse's SystemExit becomes the exit code."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else 1


def rt(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str, float]:
    """pspnet-rt in-process: (exit code, stdout, stderr, seconds it took)."""
    from runtime.cli import main

    t0 = time.monotonic()
    code = call_main(main, argv)
    out, err = capsys.readouterr()
    return code, out, err, time.monotonic() - t0


def one_line(stderr: str, *words: str) -> str:
    """The rule for an error: exactly one line, no traceback, naming what it must."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{stderr}"
    for word in words:
        assert word in lines[0], f"{word!r} not in: {lines[0]}"
    return lines[0]


def last_line(stderr: str, *words: str) -> str:
    """For runs that print progress first: no traceback, and the last line says it all."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert lines, "no error line"
    for word in words:
        assert word in lines[-1], f"{word!r} not in: {lines[-1]}"
    return lines[-1]


def spawn(module: str, *args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, "-m", module, *args], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, **(env or {})}, **kwargs)


def run(module: str, *args: str, timeout: float = 300, env: dict | None = None
        ) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 240,
             proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"process ended (exit {proc.returncode}) before {what}:\n{err[-3000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def stop(proc: subprocess.Popen) -> None:
    """End a child we started, by its PID, whatever state it is in."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)


# ------------------------------------------------------------------------------------ tmpfs
def _mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def tmpfs(where: Path, size: str = "4m", read_only: bool = False) -> Iterator[Path]:
    """A real tmpfs at `where` (root only; the test skips, saying why, where mount is refused)."""
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("needs root and mount(8) for a real tmpfs (full / read-only file systems)")
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    done = _mount("-t", "tmpfs", "-o", options, "tmpfs", str(where))
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs refused here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        for _ in range(50):
            if subprocess.run(["umount", str(where)], capture_output=True, timeout=30).returncode == 0:
                break
            time.sleep(0.1)  # a child may still hold a file open for a moment


def fill(folder: Path, leave_bytes: int) -> None:
    """Fill the file system of `folder` until about `leave_bytes` are free."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    with open(folder / "filler", "wb") as fh:
        remaining = max(0, free - leave_bytes)
        block = b"\0" * (1 << 16)
        while remaining > 0:
            n = fh.write(block[: min(len(block), remaining)])
            remaining -= n


def free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


# --------------------------------------------------------------------------- whole outputs
def video_frames(path: Path) -> int:
    """Frames ffprobe decodes from the file (fails on a video that does not play)."""
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                          "-show_entries", "stream=nb_read_frames", "-of", "json", str(path)],
                         capture_output=True, text=True, timeout=60, check=True)
    return int(json.loads(out.stdout)["streams"][0]["nb_read_frames"])


def hidden_leftovers(folder: Path) -> list[str]:
    """Temp files and folders a run may have left (all of ours are hidden names); not the ownership
    records (artefact.ownership.RECORD), which say what in a folder we wrote."""
    from artefact.ownership import RECORD

    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*") if p.name != RECORD)


def artefact_state(folder: Path) -> dict[str, bytes]:
    """Every file of an artefact folder (not caches), to prove a failed run changed nothing."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Silent:
    """A TCP server on 127.0.0.1 that accepts connections and never says a word (a hung camera or
    Triton, a black-holed proxy); `held` are the connections it accepted."""

    def __init__(self, port: int, held: list) -> None:
        self.port, self.held = port, held


@contextlib.contextmanager
def silent_server() -> Iterator[Silent]:
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield Silent(server.getsockname()[1], held)
    finally:
        done.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        server.close()


def scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="pspnet-faults."))


needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                  reason="needs ffmpeg/ffprobe (scripts/install-system-deps.sh)")
