"""Where one output of a run goes, and the one way every sink (video, masks, stats, the summary,
and later bags) claims, writes and commits it.

What a path names decides how it is written:
- a regular file, or a name that does not exist yet (through symlinks: the file they point at,
  so a link stays a link): FILE. Written under a unique hidden temp name beside it
  (`.NAME.<token>.partial[.EXT]`) and renamed over the real path only when whole;
- something written in place and never renamed over: STREAM. `/dev/null` (and /dev/zero,
  /dev/full), a FIFO, a terminal,
  and this process's own descriptors (`/dev/stdout`, `/dev/stderr`, `/dev/fd/N`,
  `/proc/self/fd/N`, e.g. bash's `>(jq ...)`). A FIFO is waited for a reader for READER_WAIT_S
  at most (exit 2 after, never a hang), and a reader that stops reading for STALL_S fails the
  run (exit 1) instead of holding it for ever;
- anything else is refused before any work (exit 2): block devices (disks), other character
  devices (/dev/zero, /dev/mem, a watchdog: writing there does harm or means nothing), sockets,
  stdin, a descriptor that is closed.

Concurrent runs: a FILE output (or a masks folder) is claimed for the whole run by an flock on
a lock file beside it (`.NAME.lock`; `DIR/.pspnet-rt.lock` for a folder). A second run naming
it fails at once with one line and the holder's PID (exit 2): at most one run writes a file,
and the file is whole. The lock file is created whole (written, then linked into place) and
records, as JSON with our mark, the run's PID and the random token in every temp name it
makes. A lock whose holder died (SIGKILL: the kernel dropped its flock) is taken over: the
encoder it left (a process whose command line carries that token) is ended and the temp files
its record names are removed: they are proven ours by the record, not guessed from a name. A
lock file that does not hold our record is someone else's file: refused, untouched.

Standard library only; claims live in a per-process registry, so the cheap check before model
work and the sink that writes later share one claim.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import json
import logging
import os
import re
import secrets
import select
import signal
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from runtime.errors import OutputError, WriteError

log = logging.getLogger(__name__)

FILE, STREAM = "file", "stream"
LOCK_MARK = "pspnet-rt output lock"
FOLDER_LOCK = ".pspnet-rt.lock"
TOKEN_HEX = 12
# the longest name we add beside NAME: its temp, `.NAME.<token>.partial` (+ the suffix again for
# a video, whose container ffmpeg reads from the name: `.STEM.<token>.partial.EXT`)
TEMP_EXTRA = len("..") + TOKEN_HEX + len(".partial")
READER_WAIT_S = 10.0  # a FIFO's reader must come within this
STALL_S = 30.0  # a stream's reader that takes no bytes for this long fails the run
PIPE_CHUNK = 4096  # PIPE_BUF on Linux: a write this size to a writable pipe never blocks

# the memory devices that swallow writes harmlessly: /dev/null, /dev/zero, /dev/full (ENOSPC)
_DISCARDING = {os.makedev(1, 3): "/dev/null", os.makedev(1, 5): "/dev/zero", os.makedev(1, 7): "/dev/full"}
# a terminal to show lines on: a pseudo-terminal (an xterm, ssh, tmux) or /dev/tty, this process's own.
# Not the virtual consoles, /dev/console or serial ports (ttyS, ttyUSB): a robot may listen there.
_PTS_MAJORS = frozenset(range(136, 144))
_OWN_TTY = os.makedev(5, 0)
_OWN_FD_DIR = re.compile(r"^/proc/(?:self|thread-self|(\d+)(?:/task/\d+)?)/fd$")
_FIX = "choose a regular file (or /dev/null, a FIFO, a terminal, /dev/stdout)"


# ------------------------------------------------------------------------------ resolving
class Where:
    """What a path names: kind FILE (path = the real file to write) or STREAM (written in
    place: `fd` for this process's own descriptors, else `path` is opened)."""

    def __init__(self, kind: str, path: Path, what: str, fd: int | None = None) -> None:
        self.kind, self.path, self.what, self.fd = kind, path, what, fd

    def key(self) -> tuple:
        if self.fd is not None:
            st = os.fstat(self.fd)
            return ("fd", st.st_dev, st.st_ino)
        return ("path", str(self.path))


def _own_fd_dir(folder: str) -> bool:
    m = _OWN_FD_DIR.match(folder)
    return bool(m) and (m.group(1) is None or int(m.group(1)) == os.getpid())


def resolve(path: str | Path, flag: str) -> Where:
    """Follow `path` (symlinks, /dev/stdout, /dev/fd/N) to what it names; OutputError (exit 2)
    for what a run must not write to."""
    given = str(path)
    current = os.path.abspath(given)
    for _ in range(40):
        parent = os.path.realpath(os.path.dirname(current))
        name = os.path.basename(current)
        current = os.path.join(parent, name)
        if re.match(r"^/proc/\d+", parent) and parent.endswith("/fd") and not _own_fd_dir(parent):
            raise OutputError(f"{flag} {given} is another process's descriptor; {_FIX}")
        if _own_fd_dir(parent) and name.isdigit():
            return _descriptor(int(name), given, flag)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return Where(FILE, Path(current), "a new file")
        except OSError as exc:
            raise OutputError(f"{flag} {given}: {exc.strerror or exc}; {_FIX}") from None
        if stat.S_ISLNK(st.st_mode):
            current = os.path.join(parent, os.readlink(current))
            continue
        return _by_mode(st, Path(current), given, flag)
    raise OutputError(f"{flag} {given}: too many levels of symbolic links; {_FIX}")


def _descriptor(fd: int, given: str, flag: str) -> Where:
    names = {1: "stdout", 2: "stderr"}
    if fd == 0:
        raise OutputError(f"{flag} {given} is standard input; {_FIX}")
    try:
        st = os.fstat(fd)
    except OSError:
        raise OutputError(f"{flag} {given}: descriptor {fd} is not open (was it closed with >&-?); "
                          f"{_FIX}") from None
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{flag} {given}: descriptor {fd} is a folder; {_FIX}")
    return Where(STREAM, Path(given), names.get(fd, f"descriptor {fd}"), fd=fd)


def _by_mode(st: os.stat_result, real: Path, given: str, flag: str) -> Where:
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return Where(FILE, real, "a file")
    if stat.S_ISDIR(mode):
        raise OutputError(f"{flag} {given} is a folder; give a file name inside it")
    if stat.S_ISFIFO(mode):
        return Where(STREAM, real, "a FIFO")
    if stat.S_ISCHR(mode):
        if st.st_rdev in _DISCARDING:
            return Where(STREAM, real, _DISCARDING[st.st_rdev])
        if os.major(st.st_rdev) in _PTS_MAJORS or st.st_rdev == _OWN_TTY:
            return Where(STREAM, real, "a terminal")
        raise OutputError(f"{flag} {given} is a character device ({real}), not a file: writing there could "
                          f"harm the device and nothing written could be checked; {_FIX}")
    if stat.S_ISBLK(mode):
        raise OutputError(f"{flag} {given} is a block device (a disk, {real}): it would be overwritten; "
                          f"{_FIX}")
    if stat.S_ISSOCK(mode):
        raise OutputError(f"{flag} {given} is a socket; {_FIX}")
    raise OutputError(f"{flag} {given} is not a file; {_FIX}")


def check_name_length(real: Path, flag: str, given: str | Path | None = None) -> None:
    """The temp name beside `real` must fit the file system's NAME_MAX (and PATH_MAX)."""
    folder = real.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        name_max = os.pathconf(folder, "PC_NAME_MAX")
        path_max = os.pathconf(folder, "PC_PATH_MAX")
    except OSError:
        name_max, path_max = 255, 4096
    size = len(os.fsencode(real.name))
    extra = TEMP_EXTRA + len(os.fsencode(real.suffix))
    if size + extra > name_max:
        raise OutputError(f"{flag} {given or real}: its name is {size} bytes; with the temp name written "
                          f"first (.NAME.<token>.partial, {extra} bytes more) it passes this file system's "
                          f"limit of {name_max}; shorten the name by {size + extra - name_max} bytes")
    if len(os.fsencode(str(real))) + extra > path_max:
        raise OutputError(f"{flag} {given or real}: the path is too long for this file system (PATH_MAX "
                          f"{path_max}); choose a shorter one")


# ---------------------------------------------------------------------------------- locks
class _Lock:
    """An flock on `path`, whose content is our record (see the module doc)."""

    def __init__(self, path: Path, flag: str, shown: str, token: str, temps: list[str]) -> None:
        self.path, self.flag, self.shown = path, flag, shown
        self.record = {"mark": LOCK_MARK, "pid": os.getpid(), "token": token, "temps": temps,
                       "output": shown}
        self.fd: int | None = None

    def _data(self) -> bytes:
        return (json.dumps(self.record) + "\n").encode()

    def acquire(self) -> None:
        for _ in range(20):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:
                self._create()
                continue
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    self._foreign("is a symbolic link")
                raise OutputError(f"{self.flag} {self.shown}: cannot open its lock {self.path}: "
                                  f"{exc.strerror or exc}; choose another path") from None
            if self._take(fd):
                return
        raise OutputError(f"{self.flag} {self.shown}: its lock {self.path} keeps changing; is another "
                          "program removing it? choose another path")

    def _take(self, fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                # a file system without locks (some FUSE, NFS without lockd): the temp names stay
                # unique, but another run writing the same output cannot be seen
                log.warning("%s %s: cannot lock %s (%s); another run writing it at the same time would "
                            "not be noticed", self.flag, self.shown, self.path, exc.strerror or exc)
                return self._record_in(fd)
            held = _read_record(fd)
            os.close(fd)
            pid = held.get("pid") if held else None
            who = "another pspnet-rt run" + (f" (PID {pid})" if pid and pid != os.getpid() else "")
            raise OutputError(f"{self.flag} {self.shown} is being written by {who}; wait for it to end or "
                              "choose another path") from None
        return self._record_in(fd)

    def _record_in(self, fd: int) -> bool:
        """Holding the lock (or unable to lock): check the file is the lock file and ours, take
        over a dead run's record, write ours."""
        try:
            st, now = os.fstat(fd), os.lstat(self.path)
        except FileNotFoundError:  # its holder removed it as we opened it: take the next one
            os.close(fd)
            return False
        if (st.st_dev, st.st_ino) != (now.st_dev, now.st_ino):
            os.close(fd)
            return False
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            self._foreign("is not a regular file")
        held = _read_record(fd)
        if held is None:
            os.close(fd)
            self._foreign("does not hold a pspnet-rt lock record")
        if held.get("token") != self.record["token"]:  # its run died: what it recorded is ours
            _end_children(held)  # its encoder may still be finishing the temp file
            _remove_temps(self.path.parent, held)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, self._data(), 0)
        except OSError as exc:
            os.close(fd)
            raise OutputError(f"cannot write {self.flag} {self.shown}: {exc.strerror or exc} (writing its "
                              "lock file); free space or choose another folder") from None
        self.fd = fd
        return True

    def _create(self) -> None:
        """A lock file that appears whole: written under a temp name, then linked into place."""
        try:
            fd, tmp = tempfile.mkstemp(prefix=".pspnet-rt-lock.", dir=self.path.parent)
        except OSError as exc:
            raise OutputError(f"cannot write {self.flag} {self.shown}: {exc.strerror or exc}; "
                              "choose a writable folder") from None
        try:
            try:
                os.write(fd, self._data())
                os.fchmod(fd, 0o644)
            finally:
                os.close(fd)
            with contextlib.suppress(FileExistsError):
                os.link(tmp, self.path)
        except OSError as exc:
            if exc.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):  # no hard links here (FAT)
                try:
                    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                    lock = os.open(self.path, flags, 0o644)
                except FileExistsError:
                    return
                with contextlib.suppress(OSError):
                    os.write(lock, self._data())
                os.close(lock)
                return
            raise OutputError(f"cannot write {self.flag} {self.shown}: {exc.strerror or exc} (writing its "
                              "lock file); free space or choose another folder") from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _foreign(self, why: str) -> None:
        raise OutputError(f"{self.flag} {self.shown}: {self.path} {why}: it is not ours, so it is left "
                          "alone; remove it yourself or choose another path")

    def release(self) -> None:
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            st, now = os.fstat(fd), os.lstat(self.path)
            if (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino):
                os.unlink(self.path)
        except OSError:
            pass
        finally:
            os.close(fd)


def _read_record(fd: int) -> dict | None:
    try:
        data = os.pread(fd, 65536, 0)
        record = json.loads(data)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("mark") != LOCK_MARK:
        return None
    return record


def _end_children(record: dict) -> None:
    """SIGKILL what a dead run left writing its temp files: its encoder, orphaned when the run
    was killed, finishes the temp file it was given and would create it again after we removed
    it. Ours are proven by content: an ffmpeg whose command line names the run's random token
    (a recorded PID could have been reused, and a child started an instant before the run died
    is not recorded yet, so every process is looked at; a `tail -f` of the temp is not ours)."""
    token = str(record.get("token", "")).encode()
    if not re.fullmatch(rb"[0-9a-f]{%d}" % TOKEN_HEX, token):
        return
    ours = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]).startswith(b"ffmpeg") and any(token in a for a in argv[1:]):
            ours.append(int(entry.name))
    for pid in ours:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    for pid in ours:
        while Path(f"/proc/{pid}").exists() and not _zombie(pid) and time.monotonic() < deadline:
            time.sleep(0.02)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _remove_temps(folder: Path, record: dict) -> None:
    """Remove the temp files a dead run's record names (each pattern carries its token)."""
    token = str(record.get("token", ""))
    if not re.fullmatch(rf"[0-9a-f]{{{TOKEN_HEX}}}", token):
        return
    for pattern in record.get("temps", []):
        if not isinstance(pattern, str) or "/" in pattern or token not in pattern:
            continue
        for path in folder.glob(pattern):
            with contextlib.suppress(OSError):
                if stat.S_ISREG(os.lstat(path).st_mode):
                    path.unlink()


# -------------------------------------------------------------------------------- claims
class Claim:
    """One output claimed by this run: a FILE (locked, written through temps) or a STREAM
    (opened once, written in place). Sinks get theirs from claim() / claim_folder()."""

    def __init__(self, where: Where, flag: str, shown: str, folder: bool = False) -> None:
        self.where, self.flag, self.shown, self.folder = where, flag, shown, folder
        self.token = secrets.token_hex(TOKEN_HEX // 2)
        self.kind = where.kind
        self.path = where.path
        self._lock: _Lock | None = None
        self.fd: int | None = None  # a STREAM's descriptor, ours to close
        self._write_lock = threading.Lock()

    # -- names ------------------------------------------------------------------------------
    def temp_for(self, name: str | None = None, suffix: str | None = None) -> Path:
        """This run's temp name for `name` (the claimed file by default; `suffix` replaces its
        own, for a writer that reads the format from the name): unique, hidden, recorded."""
        if self.folder:
            return self.path / f".{name}.{self.token}.tmp"
        target = self.path
        ending = target.suffix if suffix is None else suffix
        return target.with_name(f".{target.stem}.{self.token}.partial{ending}")

    def _temp_patterns(self) -> list[str]:
        if self.folder:
            return [f".*.{self.token}.tmp"]
        return [f".{glob.escape(self.path.stem)}.{self.token}.partial*"]

    # -- taking and letting go --------------------------------------------------------------
    def _take(self) -> None:
        if self.kind == FILE:
            name = self.path.name
            lock_path = self.path / FOLDER_LOCK if self.folder else self.path.with_name(f".{name}.lock")
            self._lock = _Lock(lock_path, self.flag, self.shown, self.token, self._temp_patterns())
            self._lock.acquire()
        elif self.where.fd is not None:
            self.fd = os.dup(self.where.fd)
            os.set_inheritable(self.fd, False)
        else:
            self.fd = _open_stream(self.path, self.where.what, self.flag, self.shown)
        if self.same_as_stdout():
            _STDOUT_IS_AN_OUTPUT.set()  # till the run ends: the summary is printed after the sinks close

    def release(self) -> None:
        """Let the output go (the lock file removed, the stream closed); idempotent."""
        with _REGISTRY_LOCK:
            for key, claim in list(_CLAIMS.items()):
                if claim is self:
                    del _CLAIMS[key]
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        fd, self.fd = self.fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- FILE: commit -----------------------------------------------------------------------
    def commit(self, tmp: Path, replaces: bool, failed: bool) -> Path:
        """Move a finished, verified temp to the real path; after a failed run a file that was
        there stays, and the new one is kept beside it as NAME.incomplete.EXT (never over a
        file of that name: NAME.incomplete-2.EXT, ...)."""
        target = self.path
        if not (failed and replaces):
            os.replace(tmp, target)
            return target
        for n in range(1, 100):
            mark = "incomplete" if n == 1 else f"incomplete-{n}"
            kept = target.with_name(f"{target.stem}.{mark}{target.suffix}")
            try:
                os.link(tmp, kept)
            except FileExistsError:
                continue
            except OSError:  # no hard links on this file system
                if kept.exists():
                    continue
                os.replace(tmp, kept)
                return kept
            tmp.unlink()
            return kept
        raise WriteError(f"{self.flag} {self.shown}: 99 older NAME.incomplete files are in the way; "
                         f"the new file is left as {tmp}")

    # -- STREAM: writing in place ------------------------------------------------------------
    def write(self, data: bytes, what: str | None = None) -> None:
        """Write `data` to a STREAM whole; a reader that takes nothing for STALL_S: WriteError
        ("cannot write WHAT: why", WHAT the option and path by default)."""
        what = what or f"{self.flag} {self.shown}"
        fd = self.fd
        if fd is None:
            raise WriteError(f"cannot write {what}: it is closed")
        with self._write_lock:
            write_all(fd, data, what)

    def same_as_stdout(self) -> bool:
        """True when this STREAM is where the summary would be printed (fd 1)."""
        if self.fd is None:
            return False
        try:
            mine, out = os.fstat(self.fd), os.fstat(1)
        except OSError:
            return False
        discarding = self.where.what in _DISCARDING.values()
        return (mine.st_dev, mine.st_ino) == (out.st_dev, out.st_ino) and not discarding


def _open_stream(path: Path, what: str, flag: str, shown: str) -> int:
    """Open a FIFO, /dev/null or a terminal for writing in place, without ever blocking for ever:
    a FIFO's reader gets READER_WAIT_S to appear."""
    flags = os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    deadline = time.monotonic() + READER_WAIT_S
    while True:
        try:
            fd = os.open(path, flags)
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: a FIFO with no reader yet
                raise OutputError(f"cannot write {flag} {shown}: {exc.strerror or exc}; {_FIX}") from None
            if time.monotonic() >= deadline:
                raise OutputError(f"{flag} {shown} is a FIFO and nothing read it within {READER_WAIT_S:g} s; "
                                  f"start its reader first (e.g. cat {shown}), or {_FIX}") from None
            time.sleep(0.05)
    return fd


def write_all(fd: int, data: bytes, what: str) -> None:
    view = memoryview(data)
    while view:
        try:
            _, writable, _ = select.select([], [fd], [], STALL_S)
        except (OSError, ValueError) as exc:
            raise WriteError(f"cannot write {what}: {exc}") from None
        if not writable:
            raise WriteError(f"cannot write {what}: its reader took nothing for {STALL_S:g} s")
        try:
            n = os.write(fd, view[:PIPE_CHUNK])
        except BlockingIOError:
            continue
        except OSError as exc:
            raise WriteError(f"cannot write {what}: {exc.strerror or exc}") from None
        view = view[n:]


# ------------------------------------------------------------------------------- registry
_CLAIMS: dict[tuple, Claim] = {}
_REGISTRY_LOCK = threading.RLock()
_STDOUT_IS_AN_OUTPUT = threading.Event()


def claim(path: str | Path, flag: str) -> Claim:
    """The claim on output file `path` for this run (made now, or the one made earlier in this
    process): resolved, its temp name checked against NAME_MAX, locked or opened. OutputError
    (exit 2) when it cannot be written or another run writes it."""
    where = resolve(path, flag)
    if where.kind == FILE:
        check_name_length(where.path, flag, path)
    return _claim(where, flag, str(path), folder=False)


def claim_folder(folder: str | Path, flag: str) -> Claim:
    """The claim on an output folder (masks): the folder must exist already (the sink makes it)."""
    real = Path(os.path.realpath(folder))
    return _claim(Where(FILE, real, "a folder"), flag, str(folder), folder=True)


def _claim(where: Where, flag: str, shown: str, folder: bool) -> Claim:
    # by option too: two options on one stream (--stats and --summary-json on a terminal) each
    # get their own descriptor; two on one file are refused before (runtime.output_plan)
    key = (flag, *where.key(), folder)
    with _REGISTRY_LOCK:
        held = _CLAIMS.get(key)
        if held is not None:
            return held
        made = Claim(where, flag, shown, folder)
        made._take()
        _CLAIMS[key] = made
        return made


def release_all() -> None:
    """Let go of every output this process still claims (a run that ended early)."""
    with _REGISTRY_LOCK:
        held = list(_CLAIMS.values())
    for made in held:
        made.release()


def begin_run() -> None:
    """A new run in this process: where its summary goes is decided by its own outputs (the
    previous run's are released; the summary was printed after that)."""
    _STDOUT_IS_AN_OUTPUT.clear()
    with _REGISTRY_LOCK:
        _MADE_FOLDERS.clear()


_MADE_FOLDERS: list[Path] = []  # folders this run created for its outputs (parents first)


def missing_folders(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, outermost first: what creating it
    will make (call before creating it, then `made_folders` with the result)."""
    missing: list[Path] = []
    folder = Path(os.path.abspath(folder))
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.insert(0, folder)
        folder = folder.parent
    return missing


def made_folders(folders: list[Path]) -> None:
    """Note folders this run created for an output: a run that fails before writing into them
    removes them again (`remove_made_folders`), so a refused source leaves no empty folders."""
    with _REGISTRY_LOCK:
        _MADE_FOLDERS.extend(f for f in folders if f not in _MADE_FOLDERS)


def remove_made_folders() -> None:
    """Remove the folders this run created that are still empty, innermost first (rmdir: a folder
    that holds anything, ours or not, stays); for a run that failed before its outputs were written."""
    with _REGISTRY_LOCK:
        made, _MADE_FOLDERS[:] = list(_MADE_FOLDERS), []
    for folder in sorted(made, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def open_standard_descriptors() -> None:
    """A process started with stdin, stdout or stderr closed (`>&-`) would hand those numbers to
    the next file it opens, and then anything written to "stdout" (a library's print, a child's
    output) would land in an output file. Point each closed one at /dev/null first."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def summary_file() -> object:
    """Where the human summary goes: stdout, unless an output of this run streams to stdout (its
    bytes must not get the summary's text mixed in), then stderr."""
    return sys.stderr if _STDOUT_IS_AN_OUTPUT.is_set() else sys.stdout


def write_whole(path: str | Path, data: bytes, flag: str) -> Path:
    """A small output written at once (the summary JSON): a FILE through a temp file, fsynced
    and renamed; a STREAM in place. OSError / WriteError when it cannot be."""
    made = claim(path, flag)
    try:
        if made.kind == STREAM:
            made.write(data)
            return made.path
        tmp = made.temp_for()
        with _exclusive(tmp) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, made.path)
        return made.path
    finally:
        if made.kind == FILE:
            made.temp_for().unlink(missing_ok=True)
        made.release()


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        yield fh


def create_exclusive(path: Path) -> int:
    """A new file at `path` (never over anything there), as a descriptor."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
