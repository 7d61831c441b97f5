"""Where rendered frames and class maps go: an H.264 video, lossless mask PNGs, a window, and
the per-frame JSONL stats. Each sink checks at check()/open() that it can write (so a bad path
fails before any model is loaded, exit 2) and makes every file it finishes whole: masks by temp
file + rename (size checked), the video and the stats by writing to a hidden temp name that is
verified at close (frames counted, lines parsed) and only then renamed over the target. What
was at a target before stays until a verified file replaces it; a run that failed
(`close(failed=True)`) never replaces it: its file is kept beside, as NAME.incomplete.EXT.

How a path is written, and that no other run writes it at the same time, is runtime.output_target's
job (one claim per output): a regular file goes through a unique temp name under a lock;
/dev/null, a FIFO, a terminal or /dev/stdout is written in place and never renamed over;
devices, disks and sockets are refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from artefact.files import probe_writable
from runtime.errors import OutputError, WriteError
from runtime.output_check import MIN_FREE_BYTES, free_bytes, jsonl_problem, video_frame_count
from runtime.output_target import (
    FILE,
    STALL_S,
    STREAM,
    Claim,
    claim,
    claim_folder,
    create_exclusive,
    resolve,
    write_all,
)

log = logging.getLogger(__name__)

INSTALL_FFMPEG = "install ffmpeg (apt-get install ffmpeg, or scripts/install-system-deps.sh)"


_MASK_NAME = re.compile(r"\d{6,}\.png")
MASK_ROLE = "masks"  # the role of masks in an ownership record


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


class Sink:
    """What every sink does: open() checks the target, write() adds a frame, close(failed) makes
    the output whole (or says why not); `failed` = the run failed, keep what was there before."""

    def describe(self) -> str:
        raise NotImplementedError

    def check(self) -> None:
        """Check the target can be written (no output yet); raise OutputError (exit 2) if not.
        Cheap, so the CLI calls it before any model work; open() calls it again."""

    def open(self) -> None:
        """Check the target and get ready to write."""
        self.check()

    def close(self, failed: bool = False) -> None:
        """Finish the output; raise WriteError if it is not whole."""

    def discard(self) -> None:
        """Abort (a third signal): remove this run's temp files now, finish nothing. Must be safe
        to call from a signal handler while another thread writes."""


def check_writable(folder: Path, what: str) -> None:
    """Create `folder` if needed and prove a file can be written there (root ignores modes); the
    folders made are noted, so that a run that fails before writing removes them again."""
    from runtime.output_target import made_folders, missing_folders

    missing = missing_folders(folder)
    try:
        probe_writable(folder)
    except OSError as exc:
        raise OutputError(f"cannot write {what} to {folder}: {_why(exc)}; choose a writable folder") from None
    finally:
        made_folders([f for f in missing if f.is_dir()])


class VideoSink(Sink):
    """The rendered frames as a video. H.264 (libx264, yuv420p, +faststart: plays in browsers)
    through an ffmpeg subprocess when ffmpeg exists, else OpenCV's mp4v writer with a warning.
    Into a stream (a FIFO, /dev/stdout, /dev/null) ffmpeg writes in place, in a container that
    needs no seeking (runtime.video_container); such a video cannot be read back, so ffmpeg's
    own success is what vouches for it.

    x264 preset 'superfast' by default: at 240x480 it costs ~3 ms CPU per frame against ~5.5 ms
    for 'veryfast', which matters when the encoder shares two cores with inference.
    """

    def __init__(self, path: str | Path, fps: float, *, preset: str = "superfast", crf: int = 23,
                 ffmpeg: str | None = "auto", flag: str = "--output") -> None:
        self.path = Path(path)
        self.flag = flag
        self.fps = float(fps) if fps and fps > 0 else 25.0
        self.preset, self.crf = preset, crf
        self.ffmpeg = shutil.which("ffmpeg") if ffmpeg == "auto" else ffmpeg
        self.claim: Claim | None = None
        self.tmp: Path | None = None  # a file's hidden temp name (unique to this run)
        self._container: list[str] = []
        self.size: tuple[int, int] | None = None  # (w, h) fixed by the first frame
        self.frames = 0
        self.replaces = False  # a file was at `path` when the run started
        self.written: Path | None = None  # where the verified video went
        self._closed = False
        self._proc: subprocess.Popen | None = None
        self._stderr: IO[bytes] | None = None
        self._writer: cv2.VideoWriter | None = None

    def describe(self) -> str:
        how = "H.264 via ffmpeg" if self.ffmpeg else "mp4v via OpenCV"
        return f"video {self.path} ({how}, {self.fps:g} fps)"

    @property
    def _stream(self) -> bool:
        return self.claim is not None and self.claim.kind == STREAM

    def check(self) -> None:
        if self.path.is_dir():
            raise OutputError(f"{self.flag} {self.path} is a folder; give a file name such as "
                              f"{self.path}/out.mp4")
        where = resolve(self.path, self.flag)
        if where.kind == FILE:
            check_writable(where.path.parent, "the video")
            with contextlib.suppress(OSError):
                free = free_bytes(where.path.parent)
                if free < MIN_FREE_BYTES:
                    raise OutputError(f"{self.flag} {self.path}: only {free // 1024} KB free on its file "
                                      f"system (a video needs at least {MIN_FREE_BYTES // 1024} KB); free "
                                      "space or choose another folder")
        elif not self.ffmpeg:
            raise OutputError(f"{self.flag} {self.path} is {where.what}: a video is written there in place "
                              f"by ffmpeg, which is not installed; {INSTALL_FFMPEG}, or give a file name")
        elif where.what == "a terminal" or (where.fd is not None and os.isatty(where.fd)):
            raise OutputError(f"{self.flag} {self.path} is a terminal: a video is binary; redirect it to a "
                              "file or a pipe (pspnet-rt ... --output /dev/stdout | ffplay -), or give a "
                              "file name")
        if self.ffmpeg:
            from runtime.video_container import check_container

            self._container = check_container(self.ffmpeg, where.path.suffix, where.kind == STREAM,
                                              self.flag, str(self.path))
        self.claim = claim(self.path, self.flag)  # the last step: refused if another run writes it

    def open(self, size: tuple[int, int] | None = None) -> None:
        """Check the path; with the frame size (w, h) known, start the encoder now so its
        start-up (a second on a busy machine) does not stall the first frames."""
        self.check()
        if not self._stream:
            self.replaces = self.claim.path.exists()
            # OpenCV reads the container from the name: a name without a suffix is written as MP4
            self.tmp = self.claim.temp_for(suffix=None if self.ffmpeg or self.path.suffix else ".mp4")
        if not self.ffmpeg:
            log.warning("ffmpeg not found: writing %s as MPEG-4 Part 2 (mp4v) with OpenCV, which "
                        "browsers may not play; %s", self.path, INSTALL_FFMPEG)
        if size is not None:
            self._start(*size)

    def _start(self, w: int, h: int) -> None:
        self.size = (w, h)
        if self.ffmpeg:
            cmd = [self.ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
                   "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{w}x{h}", "-r", f"{self.fps:g}",
                   "-i", "pipe:0",
                   "-an", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",  # yuv420p needs even sides
                   "-c:v", "libx264", "-preset", self.preset, "-crf", str(self.crf), "-pix_fmt", "yuv420p",
                   *self._container]
            if self._stream:
                os.set_blocking(self.claim.fd, True)  # ffmpeg's own writes block; ours to it are bounded
                stdout: Any = self.claim.fd
                cmd.append("pipe:1")
            else:
                os.close(create_exclusive(self.tmp))  # the temp name is ours alone; ffmpeg -y writes it
                stdout = subprocess.DEVNULL
                cmd.append(str(self.tmp))
            self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
            # its own session: a Ctrl-C in the terminal reaches only us, and we close the video cleanly
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=stdout,
                                          stderr=self._stderr, start_new_session=True)
        else:
            self._writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self._writer.isOpened():
                raise WriteError(f"OpenCV cannot write {self.path}; {INSTALL_FFMPEG}")

    def _ffmpeg_error(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").strip().splitlines()
        return " | ".join(text[-3:])

    def write(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        if self.size is None:
            self._start(w, h)
        elif (w, h) != self.size:  # folders of mixed sizes: the video keeps the first frame's size
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self._check_space()
        if self._proc is not None:
            data = np.ascontiguousarray(image).data
            try:
                if self._stream:  # a stalled reader downstream must not hold the run for ever
                    write_all(self._proc.stdin.fileno(), data, f"video {self.path} (ffmpeg)")
                else:
                    self._proc.stdin.write(data)
            except WriteError:
                self._proc.kill()
                raise
            except (BrokenPipeError, OSError) as exc:
                self._proc.wait()
                detail = self._ffmpeg_error() or _why(exc)
                raise WriteError(f"cannot write video {self.path}: ffmpeg stopped ({detail})") from None
        else:
            self._writer.write(image)
        self.frames += 1

    def _check_space(self) -> None:
        """The encoder writes the file, so its ENOSPC never reaches us (and ffmpeg may still exit
        0): watch the free space instead, and stop while the index can still be written."""
        if self.tmp is None:
            return
        try:
            free = free_bytes(self.tmp.parent)
        except OSError:
            return
        if free < MIN_FREE_BYTES:
            raise WriteError(f"cannot write video {self.path}: {free // 1024} KB left on its file system "
                             f"(need at least {MIN_FREE_BYTES // 1024} KB to finish the file); free space "
                             "or choose another --output")

    def close(self, failed: bool = False) -> None:
        """Finish the file (moov atom, faststart), check it holds every frame written, and move it
        to its name; a file that is not whole is removed (WriteError). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self._finish(failed)
        finally:
            if self.tmp is not None:
                self.tmp.unlink(missing_ok=True)  # committed already, or not whole
            if self.claim is not None:
                self.claim.release()

    def _finish(self, failed: bool) -> None:
        proc, self._proc = self._proc, None
        writer, self._writer = self._writer, None
        problem = ""
        if proc is not None:
            with contextlib.suppress(BrokenPipeError, OSError):
                proc.stdin.close()
            try:
                rc = proc.wait(timeout=STALL_S if self._stream else 120)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
            err = self._ffmpeg_error()
            if rc != 0:
                problem = f"ffmpeg exit {rc}: {err}"
            elif err:  # -loglevel error: anything it printed is an error, whatever its exit code
                problem = f"ffmpeg: {err}"
        if writer is not None:
            writer.release()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        if not self.frames:
            log.info("no frames; %s not written", self.path)
            return
        if self._stream:
            if problem:
                raise WriteError(f"video {self.path} is not whole: {problem}")
            self.written = self.path
            return
        if not problem:
            counted = video_frame_count(self.tmp) if self.tmp.exists() else None
            if counted is None:
                problem = "the file cannot be opened (no index: was the disk full?)"
            elif counted != self.frames:
                problem = f"it holds {counted} of the {self.frames} frames written"
        if problem:
            kept = f"; {self.path} was left as it was" if self.replaces else ""
            raise WriteError(f"video {self.path} is not whole, removed: {problem}{kept}")
        self.written = self.claim.commit(self.tmp, self.replaces, failed)

    def discard(self) -> None:
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.kill()
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
        if self.claim is not None:
            self.claim.release()


class MaskSink(Sink):
    """Lossless class-id PNGs, one per frame, named by frame index; each written whole under a
    temp name of this run's own (.NNNNNN.png.<token>.tmp) and renamed into place.

    Only masks pspnet-rt wrote are ever replaced: each is noted with its sha256 in the folder's
    ownership record (artefact.ownership; in batches, every RECORD_EVERY_S and at close), and a
    folder that holds a file at a mask's name that the record does not prove ours (a user's
    000000.png, a mask changed since, a link) is refused before any work (exit 2)."""

    RECORD_EVERY_S = 5.0

    def __init__(self, folder: str | Path, compression: int = 1, flag: str = "--masks") -> None:
        self.folder = Path(folder)
        self.flag = flag
        # lossless at any level; run-length strategy: class maps are long runs (~30 % smaller, same CPU)
        self.params = [cv2.IMWRITE_PNG_COMPRESSION, int(compression),
                       cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
        self.frames = 0
        self.claim: Claim | None = None
        self._in_flight: Path | None = None
        self._written: dict[str, str] = {}  # mask name -> sha256, not yet in the folder's record
        self._recorded_at = 0.0
        self._record_failed = False

    def describe(self) -> str:
        return f"masks {self.folder}/NNNNNN.png"

    def check(self) -> None:
        if self.folder.exists() and not self.folder.is_dir():
            raise OutputError(f"{self.flag} {self.folder} is a file, not a folder; choose a folder")
        check_writable(self.folder, "masks")
        # a mask name taken by something a rename would destroy (a device, a FIFO, a folder)
        with os.scandir(self.folder) as entries:
            for entry in entries:
                if _MASK_NAME.fullmatch(entry.name) and not (entry.is_symlink()
                                                             or entry.is_file(follow_symlinks=False)):
                    raise OutputError(f"{self.flag} {self.folder}: {entry.name} there is not a file (a "
                                      "folder, device or FIFO) and a mask would replace it; choose another "
                                      "folder")
        self.claim = claim_folder(self.folder, self.flag)
        self._check_owned()

    def _check_owned(self) -> None:
        """OutputError unless every file at a mask's name is a mask pspnet-rt wrote (by its record)."""
        from artefact import ownership

        with os.scandir(self.folder) as entries:
            named = sorted(e.name for e in entries if _MASK_NAME.fullmatch(e.name))
        if not named:
            return
        recorded = ownership.recorded(self.folder, MASK_ROLE)
        foreign = [n for n in named if n not in recorded or not ownership.is_ours(self.folder / n, recorded)]
        if foreign:
            more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
            self.claim.release()
            raise OutputError(f"{self.flag} {self.folder} holds {foreign[0]}{more}, which pspnet-rt did "
                              "not write (or which changed since), and a mask of this run would replace "
                              "it; it is left alone: choose an empty folder, or move those files away")

    def open(self) -> None:
        self.check()
        old = sum(1 for _ in self.folder.glob("*.png"))
        if old:
            log.warning("%s already holds %d PNGs; frames with the same index are replaced", self.folder, old)

    def path_for(self, index: int) -> Path:
        return self.folder / f"{index:06d}.png"

    def write(self, index: int, labels: np.ndarray) -> None:
        ok, buf = cv2.imencode(".png", labels, self.params)
        if not ok:
            raise WriteError(f"cannot encode mask for frame {index}")
        target = self.path_for(index)
        tmp = self._in_flight = self.claim.temp_for(target.name)
        try:
            fd = create_exclusive(tmp)
            with os.fdopen(fd, "wb") as fh:
                fh.write(buf.data)
            if tmp.stat().st_size != len(buf):  # a short write on a full or failing disk
                raise OSError(f"wrote {tmp.stat().st_size} of {len(buf)} bytes")
            os.replace(tmp, target)
        except OSError as exc:
            raise WriteError(f"cannot write mask {target}: {_why(exc)}") from None
        finally:
            tmp.unlink(missing_ok=True)
            self._in_flight = None
        self.frames += 1
        self._written[target.name] = hashlib.sha256(buf.data).hexdigest()
        if time.monotonic() - self._recorded_at >= self.RECORD_EVERY_S:
            self._record()

    def _record(self) -> None:
        """Note the masks written since the last time in the folder's ownership record."""
        from artefact import ownership

        self._recorded_at = time.monotonic()
        if not self._written or self._record_failed:
            return
        try:
            ownership.record(self.folder, self._written, MASK_ROLE)
            self._written = {}
        except (OSError, ValueError) as exc:  # the masks stay whole; a later run there is refused
            # the run reports its own failure (a full disk fails the next mask too); the masks stay
            # whole, and a later run there refuses to replace them, saying so
            self._record_failed = True
            log.info("%s: cannot note the masks written in %s (%s); a later run will not replace them",
                     self.flag, self.folder, exc)

    def close(self, failed: bool = False) -> None:
        """Each mask was renamed into place whole as it was written; only the record is pending."""
        self._record()
        if self.claim is not None:
            self.claim.release()

    def discard(self) -> None:
        tmp = self._in_flight  # this run's mask in flight, by the name it made (nothing else)
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        self._record()  # the masks already in place are whole and ours
        if self.claim is not None:
            self.claim.release()


class ConfidenceSink(MaskSink):
    """--confidence DIR: the per-pixel confidence (max softmax probability, 255 = 1.0) as lossless
    8-bit grey PNGs, one per frame, named by frame index like --masks and written whole the same way."""

    def __init__(self, folder: str | Path, compression: int = 1) -> None:
        # the masks' PNG settings: RLE suits it too (most pixels are 255), measured on the demo at
        # 240x480: 1.5 ms and 17 KB a frame, against 2.0 ms and 20 KB with PNG's default strategy
        super().__init__(folder, compression, flag="--confidence")

    def describe(self) -> str:
        return f"confidence {self.folder}/NNNNNN.png"


class StatsSink(Sink):
    """One JSON object per frame, flushed as it is written, so `tail -f` shows every frame and a
    killed run keeps every line. A new file is created (exclusively) and written in place; a
    file that already exists is left alone until the run closes: the lines go to this run's
    hidden temp (.NAME.<token>.partial) that replaces it then. At close a line cut short by a
    failed write is cut off and every line is parsed back. A stream (/dev/stdout, a FIFO,
    /dev/null) gets the lines as they come."""

    def __init__(self, path: str | Path, flag: str = "--stats") -> None:
        self.path = Path(path)
        self.flag = flag
        self.claim: Claim | None = None
        self.tmp: Path | None = None
        self._fh: IO[str] | None = None
        self.lines = 0
        self.replaces = False
        self.written: Path | None = None

    def describe(self) -> str:
        return f"stats {self.path}"

    def check(self) -> None:
        if self.path.is_dir():
            raise OutputError(f"{self.flag} {self.path} is a folder; give a file name such as "
                              f"{self.path}/stats.jsonl")
        where = resolve(self.path, self.flag)
        if where.kind == FILE:
            check_writable(where.path.parent, "stats")
        self.claim = claim(self.path, self.flag)

    def open(self) -> None:
        self.check()
        if self.claim.kind == STREAM:
            return
        real = self.claim.path
        self.replaces = real.is_file()
        try:
            fd = None
            if not self.replaces:
                try:
                    fd = create_exclusive(real)
                except FileExistsError:  # made since the check, by someone else: left alone till close
                    self.replaces = True
            if self.replaces:
                self.tmp = self.claim.temp_for()
                fd = create_exclusive(self.tmp)
            self._fh = os.fdopen(fd, "w", buffering=1, encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"cannot write stats to {self.path}: {_why(exc)}; "
                              "choose a writable path") from None

    @property
    def _target(self) -> Path:
        return self.tmp if self.replaces else self.claim.path

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        if self.claim.kind == STREAM:
            self.claim.write(line.encode(), f"stats {self.path}")
            self.lines += 1
            return
        try:
            self._fh.write(line)
            self._fh.flush()
        except OSError as exc:
            raise WriteError(f"cannot write stats {self.path}: {_why(exc)}") from None
        self.lines += 1

    def close(self, failed: bool = False) -> None:
        if self.claim is None:
            return
        try:
            self._finish(failed)
        finally:
            if self.tmp is not None:
                self.tmp.unlink(missing_ok=True)  # committed already, or not whole
            self.claim.release()

    def _finish(self, failed: bool) -> None:
        if self.claim.kind == STREAM:
            self.written = self.path if self.lines else None
            return
        fh, self._fh = self._fh, None
        if fh is None:
            return
        with contextlib.suppress(OSError):  # a failed flush here is the line cut off below
            fh.close()
        target = self._target
        _cut_partial_line(target)
        if not self.lines:
            target.unlink(missing_ok=True)  # created by this run (exclusively), empty
            return
        problem = jsonl_problem(target, self.lines)
        if problem:
            target.unlink(missing_ok=True)
            raise WriteError(f"stats {self.path} not written: the file {problem}")
        self.written = self.claim.commit(target, True, failed) if self.replaces else self.claim.path

    def discard(self) -> None:
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
        if self.claim is not None:
            self.claim.release()


def _cut_partial_line(path: Path) -> None:
    """Drop the tail of a line a failed write left (disk full); the whole lines before it stay."""
    with contextlib.suppress(OSError), open(path, "rb+") as fh:
        data = fh.read()
        if data and not data.endswith(b"\n"):
            fh.truncate(data.rfind(b"\n") + 1)


def check_summary(path: str | Path, flag: str = "--summary-json") -> None:
    """The summary JSON is written at the end, but claimed now: a path that cannot take it, or
    that another run writes, is refused before any model work."""
    where = resolve(path, flag)
    if where.kind == FILE:
        check_writable(where.path.parent, flag)
    claim(path, flag)


class WindowSink(Sink):
    """A live window when a display exists; otherwise one clear message and the run goes on."""

    TITLE = "pspnet-rt"

    def __init__(self) -> None:
        self.enabled = False
        self.quit_requested = False

    def describe(self) -> str:
        return "window" if self.enabled else "window (unavailable)"

    def open(self) -> None:
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or
                                                     os.environ.get("WAYLAND_DISPLAY")):
            log.warning("--show: no display here (DISPLAY and WAYLAND_DISPLAY are unset); running without a "
                        "window - write a video with --output instead")
            return
        try:
            cv2.namedWindow(self.TITLE, cv2.WINDOW_NORMAL)
        except cv2.error:
            log.warning("--show: this OpenCV has no GUI (opencv-python-headless); "
                        "`pip install opencv-python` for a window, or use --output; running without a window")
            return
        self.enabled = True

    def write(self, image: np.ndarray) -> None:
        if not self.enabled:
            return
        cv2.imshow(self.TITLE, image)
        if cv2.waitKey(1) & 0xFF in (27, ord("q")):
            self.quit_requested = True

    def close(self, failed: bool = False) -> None:
        if self.enabled:
            with contextlib.suppress(cv2.error):
                cv2.destroyWindow(self.TITLE)
            self.enabled = False
