"""How a build replaces an artefact without ever destroying the one that was there.

Everything is built in a hidden work folder inside the output folder (`.NAME.build-XXXX`, same
file system, so renames are atomic). Only when the new artefact is complete and verified are
its model files moved in, under names that carry the model's hash (`NAME.<sha12>.xml/.bin`),
so they never overwrite the files the current manifest points at; then the manifest is
replaced atomically (the commit point); then the files only the old manifest used are
removed. A crash or signal at any moment leaves either the old manifest with its own, intact
files or the new one with its own: never a manifest pointing at a mismatched model.

Builds into one folder take turns (an flock on the folder), so a work folder that exists while
we hold the lock belongs to a build that died (SIGKILL, power loss): it is removed, as are
model files that no manifest names.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from artefact.files import probe_writable, sha256_file
from build_engine.errors import OutputDirError

log = logging.getLogger(__name__)

WORK_MARK = ".build-"
# work folders: this layout's, and the previous one's (mkdtemp(prefix=".NAME."))
_WORK = re.compile(r"^\..+\.build-[A-Za-z0-9_]{8}$")
_OLD_WORK = re.compile(r"^\..+\.[A-Za-z0-9_]{8}$")
_OLD_WORK_FILES = {"raw.onnx", "fp32.onnx"}
_VERSIONED = re.compile(r"^(?P<name>.+)\.(?P<sha>[0-9a-f]{12})(?P<ext>\.[A-Za-z0-9]+)$")


def prepare_output(folder: Path) -> None:
    """Create the output folder and prove it takes files: OutputDirError (exit 2) otherwise,
    before any export work starts."""
    if folder.exists() and not folder.is_dir():
        raise OutputDirError(f"--output {folder} is a file, not a folder; choose a folder for the artefacts")
    try:
        probe_writable(folder)
    except OSError as exc:
        raise OutputDirError(f"cannot write artefacts to {folder}: {exc.strerror or exc}; "
                             "choose a writable --output") from None


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Builds into `folder` take turns; the lock dies with its process, so it never goes stale."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("another build is writing to %s; waiting for it", folder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _is_work_dir(path: Path) -> bool:
    if not path.is_dir() or path.is_symlink():
        return False
    if _WORK.match(path.name):
        return True
    if not _OLD_WORK.match(path.name):
        return False
    try:  # the previous layout, mkdtemp(prefix=".NAME."): only if it holds what a build put there
        return bool({p.name for p in path.iterdir()} & _OLD_WORK_FILES)
    except OSError:
        return False


def manifest_files(manifest: Path) -> set[str] | None:
    """The files a manifest names; None if it cannot be read (then we cannot tell what is its)."""
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    names = {data["model_file"]} if isinstance(data.get("model_file"), str) else set()
    companions = data.get("companion_files")
    if isinstance(companions, dict):
        names.update(k for k in companions if isinstance(k, str))
    return names


def sweep_stale(folder: Path) -> None:
    """Under the folder lock: remove dead builds' work folders, and versioned model files that
    a build moved in but died before committing (named by no manifest of that name)."""
    for path in folder.iterdir():
        if _is_work_dir(path):
            log.info("removing %s, left by a build that did not finish", path)
            shutil.rmtree(path, ignore_errors=True)
            continue
        m = _VERSIONED.match(path.name)
        if m is None or not path.is_file():
            continue
        manifest = folder / f"{m['name']}.json"
        named = manifest_files(manifest) if manifest.exists() else set()
        if named is not None and path.name not in named:
            log.info("removing %s, moved in by a build that did not commit", path)
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def work_dir(folder: Path, name: str) -> Iterator[Path]:
    """A fresh work folder inside `folder`, removed on every way out (error, Ctrl-C, SIGTERM)."""
    work = Path(tempfile.mkdtemp(prefix=f".{name}{WORK_MARK}", dir=folder))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def versioned_name(name: str, sha256: str, suffix: str) -> str:
    return f"{name}.{sha256[:12]}{suffix}"


def move_in(files: dict[Path, str], folder: Path) -> None:
    """Move finished files from the work folder to their final names in `folder` (companions
    first, the model file last) and check that what arrived is what was hashed."""
    for src, target_name in files.items():
        target = folder / target_name
        digest = sha256_file(src)
        os.replace(src, target)
        if sha256_file(target) != digest:  # the move crossed a failing disk
            raise OSError(f"{target} changed while it was moved in")


def remove_superseded(folder: Path, old: set[str], keep: set[str]) -> None:
    """After the commit: delete files the old manifest used and the new one does not."""
    for name in old - keep:
        if "/" in name or name.startswith("."):
            continue
        with contextlib.suppress(OSError):
            (folder / name).unlink()
