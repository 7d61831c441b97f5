"""What pspnet-rt may delete or replace: only files it wrote, proven by their content, never by a name.

A file is *ours* when it is a regular file (not a symlink, device, FIFO or folder) whose sha256 is
the one a record of ours gives for its name:

- a folder's ownership record, `RECORD` (`.pspnet-rt-owned`, JSON), where every command that
  writes into a folder notes each file it wrote, with its sha256 and a role, once the file has
  landed (`record`); a file changed since then is no longer ours;
- a pspnet-rt manifest: the model file and companion files it names, with their sha256
  (`manifest_claims`), so artefacts built before the record existed are still known.

Everything else in a folder is foreign: it is left alone, and an operation that would have to
replace it is refused (`NotOurs`, exit 2 in the commands), before any work where that can be known.
A name pattern (`NAME.<12 hex>.onnx`, `.X.build-*`) is never a proof: users name files that way too.

Folders we create for our own work (a build's work folder, a staged Triton model) carry a marker
(`WORK_MARKER`) that names the folder's own device and inode, so a marker copied into another folder
proves nothing; such a folder may be removed whole. A folder of finished files we publish (a Triton
model) lists every file in its record; it may be replaced only while it holds nothing else.

Removal is checked against the very file it removes: the file is hashed through an open descriptor,
renamed aside, and unlinked only if what was renamed is the inode that was hashed (else put back).

Torch-free, like all of artefact/: the runtime may use it for its own files.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import stat
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from artefact.files import atomic_write_bytes, parse_json_text

log = logging.getLogger(__name__)

RECORD = ".pspnet-rt-owned"
RECORD_FORMAT = "pspnet-rt-owned/1"
WORK_MARKER = ".pspnet-rt-work"
WORK_FORMAT = "pspnet-rt-work/1"
MANIFEST_FORMAT = "pspnet-rt/1"  # artefact.manifest.MANIFEST_FORMAT (not imported: no cycle)
_HEX64 = frozenset("0123456789abcdef")


class NotOurs(ValueError):
    """A path pspnet-rt would have to replace or remove holds something it did not write: a usage
    problem (exit 2), the message names the path and the way out."""


# --------------------------------------------------------------------------------- locking
_locks: dict[tuple[int, int], list[Any]] = {}  # (dev, ino) -> [fd, depth, RLock]
_locks_guard = threading.Lock()


@contextlib.contextmanager
def folder_lock(folder: str | Path, waiting: str | None = None) -> Iterator[None]:
    """Writers into `folder` take turns (an flock on the folder, released when the process dies, so
    it never goes stale). Re-entrant within a process: a build that holds its output folder may
    update that folder's record. `waiting` is logged if another process holds the lock."""
    st = os.stat(folder)
    key = (st.st_dev, st.st_ino)
    with _locks_guard:
        entry = _locks.setdefault(key, [None, 0, threading.RLock()])
    with entry[2]:
        if entry[1] == 0:
            fd = os.open(folder, os.O_RDONLY)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    if waiting:
                        log.warning(waiting)
                    fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
            entry[0] = fd
        entry[1] += 1
        try:
            yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                os.close(entry[0])
                entry[0] = None


# ---------------------------------------------------------------------------------- records
MAX_JSON_BYTES = 16 << 20  # records and manifests are kilobytes: a bigger "manifest" is not read


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX64


def _inside(name: object) -> bool:
    """A name relative to its folder that stays inside it (no '..', not absolute)."""
    if not isinstance(name, str) or not name or "\0" in name or "\\" in name or name.startswith("/"):
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def _small_json(path: Path) -> object:
    """Parsed JSON of a regular file of at most MAX_JSON_BYTES (never a link); ValueError else."""
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_JSON_BYTES:
        raise ValueError(f"{path} is not a small regular file")
    return parse_json_text(path.read_text(encoding="utf-8"))


def read_record(folder: str | Path) -> dict[str, dict[str, str]]:
    """name -> {"sha256", "role"} of the folder's record; {} if there is none or it is not ours."""
    try:
        data = _small_json(Path(folder) / RECORD)
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT \
            or not isinstance(data.get("files"), dict):
        return {}
    return {name: entry for name, entry in data["files"].items()
            if _inside(name) and isinstance(entry, dict) and _is_sha256(entry.get("sha256"))}


def check_record(folder: str | Path) -> None:
    """NotOurs if something that is not our record sits at the record's name in `folder` (we would
    have to replace it to note what we write there)."""
    path = Path(folder) / RECORD
    if os.path.lexists(path) and not read_record(folder) and not _empty_record(path):
        raise NotOurs(f"{path} is not a pspnet-rt ownership record, so it is left alone; move it away so "
                      "pspnet-rt can note the files it writes in that folder")


def _write_record(folder: Path, files: Mapping[str, Mapping[str, str]]) -> None:
    path = folder / RECORD
    check_record(folder)
    if not files:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    body = {"format": RECORD_FORMAT, "files": {k: dict(files[k]) for k in sorted(files)}}
    atomic_write_bytes(path, (json.dumps(body, indent=1) + "\n").encode())


def _empty_record(path: Path) -> bool:
    try:
        data = _small_json(path)
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and data.get("format") == RECORD_FORMAT


def record(folder: str | Path, files: Mapping[str, str | None], role: str) -> None:
    """Note files we have just written into `folder` (name relative to it -> sha256, or None to hash
    the file now). Call it once a file has landed under its final name."""
    folder = Path(folder)
    with folder_lock(folder):
        entries = read_record(folder)
        for name, digest in files.items():
            entries[name] = {"sha256": digest or sha256_of(folder / name), "role": role}
        _write_record(folder, entries)


def forget(folder: str | Path, names: Iterable[str]) -> None:
    """Drop names from the folder's record (the files are gone, or no longer ours)."""
    folder = Path(folder)
    names = set(names)
    with folder_lock(folder):
        entries = read_record(folder)
        if names & set(entries):
            _write_record(folder, {k: v for k, v in entries.items() if k not in names})


def recorded(folder: str | Path, role: str | None = None) -> dict[str, str]:
    """name -> sha256 of the files the folder's record lists (of one role, if given)."""
    return {n: e["sha256"] for n, e in read_record(folder).items() if role is None or e.get("role") == role}


def manifest_claims(manifest: str | Path) -> dict[str, str]:
    """name -> sha256 of the files a pspnet-rt manifest names (model file, companions); {} for a
    file that is not one of our manifests."""
    try:
        data = _small_json(Path(manifest))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        return {}
    claims: dict[str, str] = {}
    if isinstance(data.get("model_file"), str) and _is_sha256(data.get("model_sha256")):
        claims[data["model_file"]] = data["model_sha256"]
    companions = data.get("companion_files")
    if isinstance(companions, dict):
        claims.update({k: v for k, v in companions.items() if isinstance(k, str) and _is_sha256(v)})
    return {k: v for k, v in claims.items() if _inside(k) and "/" not in k}


# ------------------------------------------------------------------------------- one file
def sha256_of(path: str | Path) -> str:
    """sha256 of a regular file, never following a symlink (OSError for anything else)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        return _hash_fd(fd)
    finally:
        os.close(fd)


def _hash_fd(fd: int) -> str:
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        raise OSError(errno.EINVAL, "not a regular file")
    digest = hashlib.sha256()
    while block := os.read(fd, 1 << 20):
        digest.update(block)
    return digest.hexdigest()


def _expected(path: Path, claims: Mapping[str, str] | None, base: Path | None) -> set[str]:
    """The digests a record of ours gives for `path` (its folder's record, or `base`'s for a path
    below `base`, and `claims`)."""
    base = base or path.parent
    name = path.relative_to(base).as_posix()
    wanted = {e["sha256"] for n, e in read_record(base).items() if n == name}
    if claims and name in claims:
        wanted.add(claims[name])
    return wanted


def is_ours(path: str | Path, claims: Mapping[str, str] | None = None,
            base: str | Path | None = None) -> bool:
    """Whether `path` is a regular file whose content a record of ours gives for its name."""
    path = Path(path)
    wanted = _expected(path, claims, Path(base) if base else None)
    if not wanted:
        return False
    try:
        return sha256_of(path) in wanted
    except OSError:
        return False


def may_replace(path: str | Path, claims: Mapping[str, str] | None = None) -> bool:
    """Nothing is at `path`, or what is there is ours."""
    return not os.path.lexists(path) or is_ours(path, claims)


def require_replaceable(path: str | Path, fix: str, claims: Mapping[str, str] | None = None) -> None:
    """NotOurs unless `path` is free or ours; `fix` says what the user can do instead."""
    if not may_replace(path, claims):
        raise NotOurs(f"{path} exists and was not written by pspnet-rt (or was changed since); it is left "
                      f"alone: {fix}")


def remove_if_ours(path: str | Path, claims: Mapping[str, str] | None = None,
                   base: str | Path | None = None) -> bool:
    """Remove `path` only if it is ours; True if it was removed. The file removed is the file that
    was hashed: hashed through a descriptor, renamed aside, unlinked only if it is that inode."""
    path = Path(path)
    base_path = Path(base) if base else path.parent
    wanted = _expected(path, claims, base_path)
    if not wanted:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    aside = path.with_name(f".{path.name}.removing.{os.getpid()}")
    try:
        if _hash_fd(fd) not in wanted:
            return False
        hashed = os.fstat(fd)
        os.rename(path, aside)
        moved = os.lstat(aside)
        if (moved.st_dev, moved.st_ino) != (hashed.st_dev, hashed.st_ino):
            os.rename(aside, path)  # replaced between the hash and the rename: not the file we checked
            return False
        os.unlink(aside)
    except OSError:
        return False
    finally:
        os.close(fd)
    forget(base_path, [path.relative_to(base_path).as_posix()])
    return True


# ---------------------------------------------------------------------------- work folders
def mark_work_dir(folder: str | Path, purpose: str) -> None:
    """Mark a folder we just created (mkdtemp) as ours: the marker names the folder (its name,
    device and inode) and its own inode, so neither a copied marker nor one in a folder made later
    under another name proves anything."""
    folder = Path(folder)
    st = os.stat(folder)
    fd = os.open(folder / WORK_MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"format": WORK_FORMAT, "name": folder.name, "dev": st.st_dev, "ino": st.st_ino,
                   "marker_ino": os.fstat(fd).st_ino, "pid": os.getpid(), "purpose": purpose}, fh)


def is_work_dir(folder: str | Path) -> bool:
    """A real folder (not a symlink) holding the marker `mark_work_dir` wrote into this very folder."""
    folder = Path(folder)
    marker = folder / WORK_MARKER
    try:
        st = os.lstat(folder)
        if not stat.S_ISDIR(st.st_mode):
            return False
        fd = os.open(marker, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            marker_st = os.fstat(fd)
            regular = stat.S_ISREG(marker_st.st_mode)
            data = parse_json_text(os.read(fd, 4096).decode("utf-8")) if regular else None
        finally:
            os.close(fd)
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and data.get("format") == WORK_FORMAT and data.get("name") == folder.name \
        and data.get("dev") == st.st_dev and data.get("ino") == st.st_ino \
        and data.get("marker_ino") == marker_st.st_ino


def unmark_work_dir(folder: str | Path) -> None:
    """The folder becomes a finished one (its files are then listed by `record_tree`)."""
    with contextlib.suppress(FileNotFoundError):
        (Path(folder) / WORK_MARKER).unlink()


def remove_work_dir(folder: str | Path) -> bool:
    """Remove a work folder of ours whole (symlinks inside are removed, never followed)."""
    if not is_work_dir(folder):
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return True


# ------------------------------------------------------------------ folders of finished files
def _tree(folder: Path) -> tuple[list[str], list[str]]:
    """(regular files, everything else that is not a folder) below `folder`, relative, posix;
    symlinks are listed as 'everything else' and never followed."""
    files, other = [], []
    for root, dirs, names in os.walk(folder, followlinks=False):
        here = Path(root)
        for name in [*names, *[d for d in dirs if (here / d).is_symlink()]]:
            rel = (here / name).relative_to(folder).as_posix()
            mode = os.lstat(here / name).st_mode
            (files if stat.S_ISREG(mode) else other).append(rel)
    return sorted(files), sorted(other)


def record_tree(folder: str | Path, role: str) -> None:
    """List every file below `folder` (which we have just written) in its record."""
    folder = Path(folder)
    files, other = _tree(folder)
    if other:
        raise NotOurs(f"{folder / other[0]} is not a regular file; pspnet-rt did not write it")
    _write_record(folder, {n: {"sha256": sha256_of(folder / n), "role": role}
                           for n in files if n not in (RECORD, WORK_MARKER)})


def foreign_in_tree(folder: str | Path) -> list[str]:
    """What below `folder` is not ours: files its record does not list or that changed, links,
    devices, folders holding none of our files. Empty for a folder wholly ours."""
    folder = Path(folder)
    entries = recorded(folder)
    if not entries:
        return ["(no pspnet-rt record)"]
    files, other = _tree(folder)
    foreign = list(other)
    for name in files:
        if name == RECORD:
            continue
        try:
            same = entries.get(name) == sha256_of(folder / name)
        except OSError:
            same = False
        if not same:
            foreign.append(name)
    listed_dirs = {p for n in entries for p in Path(n).parents if str(p) != "."}
    for root, dirs, _ in os.walk(folder):
        for d in dirs:
            rel = Path(root, d).relative_to(folder)
            if not (folder / rel).is_symlink() and rel not in listed_dirs:
                foreign.append(rel.as_posix() + "/")
    return sorted(foreign)


def changed_in_tree(folder: str | Path) -> list[str]:
    """Files the folder's record lists that are missing or no longer hold what was written: the
    integrity check of a folder we published (extra files the user added are not counted)."""
    folder = Path(folder)
    changed = []
    for name, digest in recorded(folder).items():
        try:
            same = sha256_of(folder / name) == digest
        except OSError:
            same = False
        if not same:
            changed.append(name)
    return sorted(changed)


def remove_tree_if_ours(folder: str | Path) -> bool:
    """Remove a folder of finished files only while everything in it is ours."""
    folder = Path(folder)
    if os.path.islink(folder) or not folder.is_dir() or foreign_in_tree(folder):
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return True
