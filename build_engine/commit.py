"""How a build replaces an artefact without ever destroying the one that was there.

Everything is built in a hidden work folder inside the output folder (`.NAME.build-XXXX`, same
file system, so renames are atomic). Only when the new artefact is complete and verified are
its model files moved in, under names that carry the model's hash (`NAME.<sha12>.xml/.bin`),
so they never overwrite the files the current manifest points at; then the manifest is
replaced atomically (the commit point); then the files only the old manifest used are
removed. A crash or signal at any moment leaves either the old manifest with its own, intact
files or the new one with its own: never a manifest pointing at a mismatched model.

Builds into one folder take turns (an flock on the folder). We delete or replace only what we
wrote, proven by content (artefact.ownership), never by a name: work folders carry a marker naming
their own inode; model files are noted in the folder's ownership record before they are moved in
and are named, with their sha256, by the manifest that commits them; the manifest is noted once it
lands. So under the lock, a marked work folder belongs to a build that died (SIGKILL, power loss)
and is removed, as are recorded model files that no manifest names (moved in by a build that died
before its commit) whose content is still what was recorded. Anything else in the folder - a
user's `server.202612061325.log`, a `NAME.json` that is not our manifest, a file named like ours
with other bytes - is left alone; a build that would have to replace such a file is refused
(OutputDirError, exit 2), before any export where the name is known in advance.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from artefact import ownership
from artefact.files import probe_writable, sha256_file
from build_engine.errors import OutputDirError

if TYPE_CHECKING:
    from artefact.manifest import Manifest

log = logging.getLogger(__name__)

WORK_MARK = ".build-"
ARTEFACT_ROLE = "artefact"  # model and companion files, named by a manifest once committed
MANIFEST_ROLE = "manifest"
KEPT_ROLE = "kept"  # --stop-after outputs
CACHE_ROLE = "cache"  # e.g. TensorRT's timing cache


def prepare_output(folder: Path) -> None:
    """Create the output folder and prove it takes files: OutputDirError (exit 2) otherwise,
    before any export work starts."""
    if folder.exists() and not folder.is_dir():
        raise OutputDirError(f"--output {folder} is a file, not a folder; choose a folder for the artefacts")
    try:
        ownership.check_record(folder)
    except ownership.NotOurs as exc:
        raise OutputDirError(str(exc)) from None
    try:
        probe_writable(folder)
    except OSError as exc:
        raise OutputDirError(f"cannot write artefacts to {folder}: {exc.strerror or exc}; "
                             "choose a writable --output") from None


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Builds into `folder` take turns; the lock dies with its process, so it never goes stale."""
    with ownership.folder_lock(folder, waiting=f"another build is writing to {folder}; waiting for it"):
        yield


def manifest_is_ours(path: Path) -> bool:
    """A manifest we may replace: the folder's record lists it with this content, or it is a
    pspnet-rt manifest whose files are still what it says they are (an artefact of ours, perhaps
    written before the record existed, perhaps with a field edited since)."""
    if ownership.is_ours(path):
        return True
    claims = ownership.manifest_claims(path)
    return any(ownership.is_ours(path.parent / n, claims) for n in claims)


def check_free(folder: Path, names: Iterable[str],
               fix: str = "move it away or choose another --output") -> None:
    """OutputDirError (exit 2) if a file we are about to write over exists and is not ours."""
    for name in names:
        path = folder / name
        if not os.path.lexists(path):
            continue
        ours = manifest_is_ours(path) if name.endswith(".json") and ownership.manifest_claims(path) \
            else ownership.is_ours(path)
        if not ours:
            kind = " (a link)" if path.is_symlink() else "" if path.is_file() else " (not a regular file)"
            raise OutputDirError(f"{path}{kind} exists and was not written by pspnet-rt (or was changed "
                                 f"since), so it is left alone; {fix}")


def _manifests_in(folder: Path) -> list[Path]:
    return [p for p in folder.glob("*.json") if ownership.manifest_claims(p)]


def sweep_stale(folder: Path) -> None:
    """Under the folder lock: remove dead builds' work folders (marked as ours), and model files a
    build noted and moved in but died before committing (named by no manifest here), if their
    content is still what was noted. Nothing else."""
    for path in folder.iterdir():
        if path.name.startswith(".") and ownership.is_work_dir(path):
            log.info("removing %s, left by a build that did not finish", path)
            ownership.remove_work_dir(path)
    named = {n for m in _manifests_in(folder) for n in ownership.manifest_claims(m)}
    stale = [n for n in ownership.recorded(folder, ARTEFACT_ROLE) if n not in named]
    for name in stale:
        if ownership.remove_if_ours(folder / name):
            log.info("removing %s, moved in by a build that did not commit", folder / name)
    gone = [n for n in ownership.recorded(folder) if not os.path.lexists(folder / n)]
    if gone:
        ownership.forget(folder, gone)


@contextlib.contextmanager
def work_dir(folder: Path, name: str) -> Iterator[Path]:
    """A fresh work folder inside `folder`, marked as ours, removed on every way out (error,
    Ctrl-C, SIGTERM)."""
    work = Path(tempfile.mkdtemp(prefix=f".{name}{WORK_MARK}", dir=folder))
    try:
        ownership.mark_work_dir(work, "build")
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def versioned_name(name: str, sha256: str, suffix: str) -> str:
    return f"{name}.{sha256[:12]}{suffix}"


def final_names(folder: Path, name: str, sha256: str, sources: list[Path]) -> dict[Path, str]:
    """source file -> its name in `folder`: `NAME.<sha12><suffix>` (one stem for all, so OpenVINO
    finds its .bin), or where a file that is not ours holds one of those names (a user's file named
    like ours, or one of ours changed since), `NAME.<sha12>-N<suffix>` beside it: never over it."""
    digests = {src: sha256_file(src) for src in sources}
    for n in range(100):
        stem = versioned_name(name, sha256, "") + (f"-{n}" if n else "")
        names = {src: f"{stem}{src.suffix}" for src in sources}
        if all(ownership.may_replace(folder / names[src], {names[src]: digests[src]}) for src in sources):
            if n:
                log.warning("%s holds files named like this build's that pspnet-rt did not write (or that "
                            "changed since); they are left alone and the new files are %s.*", folder, stem)
            return names
    raise OutputDirError(f"{folder} holds 100 files named like this build's that pspnet-rt did not write; "
                         "move them away or choose another --output")


def move_in(files: dict[Path, str], folder: Path) -> None:
    """Move finished files from the work folder to their final names in `folder` (companions
    first, the model file last), noted in the folder's record first (so a build that dies here
    leaves files the next one can prove are ours), never over a file that is not ours, and check
    that what arrived is what was hashed."""
    digests = {target_name: sha256_file(src) for src, target_name in files.items()}
    ownership.record(folder, digests, ARTEFACT_ROLE)
    for src, target_name in files.items():
        target = folder / target_name
        digest = digests[target_name]
        try:
            os.link(src, target)  # never over anything
            os.unlink(src)
        except OSError as exc:  # it exists, or a file system without hard links
            free = not isinstance(exc, FileExistsError) and not os.path.lexists(target)
            if free or ownership.is_ours(target, {target_name: digest}):  # ours, or these very bytes
                os.replace(src, target)
            else:
                raise OutputDirError(f"{target} exists and was not written by pspnet-rt, so it is left "
                                     "alone; move it away or choose another --output") from None
        if sha256_file(target) != digest:  # the move crossed a failing disk
            raise OSError(f"{target} changed while it was moved in")


def commit_artefact(folder: Path, manifest_path: Path, manifest: Manifest, files: dict[Path, str]) -> None:
    """Model files in (under names that carry their hash, so they never overwrite what the old
    manifest names), then the manifest (the commit point), then the files only the old manifest
    used out - each only if it is still the file that manifest described."""
    check_free(folder, [manifest_path.name])
    old = ownership.manifest_claims(manifest_path)
    move_in(files, folder)
    manifest.save(manifest_path)
    ownership.record(folder, {manifest_path.name: None}, MANIFEST_ROLE)
    remove_superseded(folder, old, keep=set(files.values()))


def remove_superseded(folder: Path, old: dict[str, str], keep: set[str]) -> None:
    """After the commit: delete files the old manifest named and the new one does not, where their
    content is what the old manifest said."""
    for name in set(old) - keep:
        if "/" in name or name.startswith("."):
            continue
        ownership.remove_if_ours(folder / name, old)


def own_cache_file(folder: Path, name: str) -> Path | None:
    """`folder/name` for a cache the build reads and rewrites (TensorRT's timing cache), or None
    where a file there is not ours: it is then neither read nor replaced, and the build goes on
    without the cache."""
    path = folder / name
    if ownership.may_replace(path):
        return path
    log.warning("%s was not written by pspnet-rt (or changed since), so it is neither read nor replaced; "
                "building without it (delete it to let builds keep their own)", path)
    return None


def record_cache(folder: Path, name: str) -> None:
    ownership.record(folder, {name: None}, CACHE_ROLE)


def record_kept(folder: Path, names: Iterable[str]) -> None:
    """Note the files --stop-after kept (so the next run may replace them, and only them)."""
    ownership.record(folder, {n: None for n in names}, KEPT_ROLE)
