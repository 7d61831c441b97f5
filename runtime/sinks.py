"""Where rendered frames and class maps go: an H.264 video, lossless mask PNGs, a window, and
the per-frame JSONL stats. Each sink checks at open() that it can write (so a bad path fails
before any model is loaded, exit 2) and makes every file it finishes whole: masks by temp file
+ rename (size checked), the video and the stats by writing to a hidden temp name that is
verified at close (frames counted, lines parsed) and only then renamed over the target. What
was at a target before stays until a verified file replaces it; a run that failed
(`close(failed=True)`) never replaces it: its file is kept beside, as NAME.incomplete.EXT."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from artefact.files import atomic_path, probe_writable
from runtime.errors import OutputError, WriteError
from runtime.output_check import MIN_FREE_BYTES, free_bytes, jsonl_problem, video_frame_count

log = logging.getLogger(__name__)

INSTALL_FFMPEG = "install ffmpeg (apt-get install ffmpeg, or scripts/install-system-deps.sh)"


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


def _commit(tmp: Path, target: Path, replaces: bool, failed: bool) -> Path:
    """Move a finished, verified temp file to its name; after a failed run keep what was there."""
    if failed and replaces:
        target = target.with_name(f"{target.stem}.incomplete{target.suffix}")
    os.replace(tmp, target)
    return target


def check_writable(folder: Path, what: str) -> None:
    """Create `folder` if needed and prove a file can be written there (root ignores modes)."""
    try:
        probe_writable(folder)
    except OSError as exc:
        raise OutputError(f"cannot write {what} to {folder}: {_why(exc)}; choose a writable folder") from None


class VideoSink(Sink):
    """The rendered frames as a video. H.264 (libx264, yuv420p, +faststart: plays in browsers)
    through an ffmpeg subprocess when ffmpeg exists, else OpenCV's mp4v writer with a warning.

    x264 preset 'superfast' by default: at 240x480 it costs ~3 ms CPU per frame against ~5.5 ms
    for 'veryfast', which matters when the encoder shares two cores with inference.
    """

    def __init__(self, path: str | Path, fps: float, *, preset: str = "superfast", crf: int = 23,
                 ffmpeg: str | None = "auto") -> None:
        self.path = Path(path)
        self.fps = float(fps) if fps and fps > 0 else 25.0
        self.preset, self.crf = preset, crf
        self.ffmpeg = shutil.which("ffmpeg") if ffmpeg == "auto" else ffmpeg
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix or '.mp4'}")
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

    def check(self) -> None:
        if self.path.is_dir():
            raise OutputError(f"--output {self.path} is a folder; give a file name such as "
                              f"{self.path}/out.mp4")
        check_writable(self.path.parent, "the video")
        with contextlib.suppress(OSError):
            free = free_bytes(self.path.parent)
            if free < MIN_FREE_BYTES:
                raise OutputError(f"--output {self.path}: only {free // 1024} KB free on its file system "
                                  f"(a video needs at least {MIN_FREE_BYTES // 1024} KB); free space or "
                                  "choose another folder")

    def open(self, size: tuple[int, int] | None = None) -> None:
        """Check the path; with the frame size (w, h) known, start the encoder now so its
        start-up (a second on a busy machine) does not stall the first frames."""
        self.check()
        self.replaces = self.path.exists()
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
                   "-c:v", "libx264", "-preset", self.preset, "-crf", str(self.crf), "-pix_fmt", "yuv420p"]
            if self.tmp.suffix.lower() in (".mp4", ".m4v", ".mov"):
                cmd += ["-movflags", "+faststart"]
            cmd.append(str(self.tmp))
            self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
            # its own session: a Ctrl-C in the terminal reaches only us, and we close the video cleanly
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
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
            try:
                self._proc.stdin.write(np.ascontiguousarray(image).data)
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
        proc, self._proc = self._proc, None
        writer, self._writer = self._writer, None
        problem = ""
        if proc is not None:
            with contextlib.suppress(BrokenPipeError, OSError):
                proc.stdin.close()
            try:
                rc = proc.wait(timeout=120)
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
            self.tmp.unlink(missing_ok=True)
            log.info("no frames; %s not written", self.path)
            return
        if not problem:
            counted = video_frame_count(self.tmp) if self.tmp.exists() else None
            if counted is None:
                problem = "the file cannot be opened (no index: was the disk full?)"
            elif counted != self.frames:
                problem = f"it holds {counted} of the {self.frames} frames written"
        if problem:
            self.tmp.unlink(missing_ok=True)
            kept = f"; {self.path} was left as it was" if self.replaces else ""
            raise WriteError(f"video {self.path} is not whole, removed: {problem}{kept}")
        self.written = _commit(self.tmp, self.path, self.replaces, failed)

    def discard(self) -> None:
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.kill()
        self.tmp.unlink(missing_ok=True)


class MaskSink(Sink):
    """Lossless class-id PNGs, one per frame, named by frame index; each written whole."""

    flag = "--masks"

    def __init__(self, folder: str | Path, compression: int = 1) -> None:
        self.folder = Path(folder)
        # lossless at any level; run-length strategy: class maps are long runs (~30 % smaller, same CPU)
        self.params = [cv2.IMWRITE_PNG_COMPRESSION, int(compression),
                       cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
        self.frames = 0

    def describe(self) -> str:
        return f"masks {self.folder}/NNNNNN.png"

    def check(self) -> None:
        if self.folder.exists() and not self.folder.is_dir():
            raise OutputError(f"{self.flag} {self.folder} is a file, not a folder; choose a folder")
        check_writable(self.folder, "masks")

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
        try:
            with atomic_path(target) as tmp:
                tmp.write_bytes(buf.data)
                if tmp.stat().st_size != len(buf):  # a short write on a full or failing disk
                    raise OSError(f"wrote {tmp.stat().st_size} of {len(buf)} bytes")
        except OSError as exc:
            raise WriteError(f"cannot write mask {target}: {_why(exc)}") from None
        self.frames += 1

    def close(self, failed: bool = False) -> None:
        """Each mask was renamed into place whole as it was written; nothing is pending."""

    def discard(self) -> None:
        for tmp in self.folder.glob(".*.png.*.tmp"):  # atomic_path's temp name of a mask in flight
            tmp.unlink(missing_ok=True)


class ConfidenceSink(MaskSink):
    """--confidence DIR: the per-pixel confidence (max softmax probability, 255 = 1.0) as lossless
    8-bit grey PNGs, one per frame, named by frame index like --masks and written whole the same way."""

    flag = "--confidence"  # the masks' PNG settings: RLE suits it too (most pixels are 255),
    # measured on the demo at 240x480: 1.5 ms and 17 KB a frame, against 2.0 ms and 20 KB with
    # PNG's default strategy

    def describe(self) -> str:
        return f"confidence {self.folder}/NNNNNN.png"


class StatsSink(Sink):
    """One JSON object per frame, flushed as it is written, so `tail -f` shows every frame and a
    killed run keeps every line. A new file is written in place; a file that already exists is
    left alone until the run closes: the lines go to a hidden NAME.partial that replaces it then.
    At close a line cut short by a failed write is cut off and every line is parsed back."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.partial")
        self._fh: IO[str] | None = None
        self.lines = 0
        self.replaces = False
        self.written: Path | None = None

    def describe(self) -> str:
        return f"stats {self.path}"

    @property
    def _target(self) -> Path:
        """Where the lines go: /dev/null or a pipe as they are, else the file or its partial."""
        if _is_device(self.path):
            return self.path
        return self.tmp if self.replaces else self.path

    def check(self) -> None:
        if self.path.is_dir():
            raise OutputError(f"--stats {self.path} is a folder; give a file name such as "
                              f"{self.path}/stats.jsonl")
        if not _is_device(self.path):
            check_writable(self.path.parent, "stats")

    def open(self) -> None:
        self.check()
        self.replaces = self.path.is_file()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self._target, "w", buffering=1, encoding="utf-8")  # noqa: SIM115 (lives for the run)
        except OSError as exc:
            raise OutputError(f"cannot write stats to {self.path}: {_why(exc)}; "
                              "choose a writable path") from None

    def write(self, record: dict[str, Any]) -> None:
        try:
            self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._fh.flush()
        except OSError as exc:
            raise WriteError(f"cannot write stats {self.path}: {_why(exc)}") from None
        self.lines += 1

    def close(self, failed: bool = False) -> None:
        fh, self._fh = self._fh, None
        if fh is None:
            return
        with contextlib.suppress(OSError):  # a failed flush here is the line cut off below
            fh.close()
        target = self._target
        if target == self.path and _is_device(self.path):
            return
        _cut_partial_line(target)
        if not self.lines:
            target.unlink(missing_ok=True)
            return
        problem = jsonl_problem(target, self.lines)
        if problem:
            target.unlink(missing_ok=True)
            raise WriteError(f"stats {self.path} not written: the file {problem}")
        self.written = _commit(target, self.path, True, failed) if self.replaces else self.path

    def discard(self) -> None:
        if self.replaces:
            self.tmp.unlink(missing_ok=True)


def _cut_partial_line(path: Path) -> None:
    """Drop the tail of a line a failed write left (disk full); the whole lines before it stay."""
    with contextlib.suppress(OSError), open(path, "rb+") as fh:
        data = fh.read()
        if data and not data.endswith(b"\n"):
            fh.truncate(data.rfind(b"\n") + 1)


def _is_device(path: Path) -> bool:
    return path.exists() and not path.is_file() and not path.is_dir()


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
