"""OpenVINO's compiled models cached in `ov_cache/` beside the artefact, trusted only as far as we
can prove they are ours, and never deleting anything we cannot.

OpenVINO's own CACHE_DIR names a blob by a hash of the model and settings but never checks the
blob's bytes (flip a few and the next run computes garbage with exit 0), and it imports whatever
sits at that name. So pspnet-rt keeps the cache itself: a compiled model is exported to bytes
(`CompiledModel.export_model`), written atomically as `KEY.blob` and noted with its sha256 in the
folder's ownership record (artefact.ownership); a later start reads the blob's bytes once, checks
them against that record, and imports those very bytes (`Core.import_model`), so a blob changed
between the check and the import is never the one that runs.

What is not provably ours (a damaged blob, a file or folder a user put there, a blob an older
pspnet-rt wrote through OpenVINO's CACHE_DIR) is never read and never deleted: it is left alone
with a warning, and the new blob goes beside it (`KEY-1.blob`). Only a blob that is ours and still
fails to import (another OpenVINO build) is removed, because its bytes prove we wrote it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from artefact import ownership
from artefact.files import atomic_write_bytes

log = logging.getLogger(__name__)

ROLE = "openvino-cache"
LEGACY_SIDECAR = "pspnet-rt-blobs.json"  # what pspnet-rt before issue 21 recorded OpenVINO's blobs in
MAX_ALTERNATIVES = 8  # KEY.blob, KEY-1.blob ... beside files that are not ours


def cache_key(model_digests: list[str], device: str, config: dict[str, Any], version: str) -> str:
    """What a compiled model depends on: the model's files, the device, the compile settings and
    OpenVINO's version (a blob from another version may not import)."""
    text = json.dumps({"files": model_digests, "device": device, "version": version,
                       "config": {k: str(v) for k, v in sorted(config.items())}}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class BlobCache:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._warned: set[str] = set()

    def _names(self, key: str) -> list[str]:
        return [f"{key}.blob"] + [f"{key}-{n}.blob" for n in range(1, MAX_ALTERNATIVES)]

    def load(self, key: str) -> tuple[str, bytes] | None:
        """(name, bytes) of our blob for `key`, its bytes checked against our record; None if there
        is none. Anything at those names that is not ours is reported once and left alone."""
        recorded = ownership.recorded(self.folder, ROLE)
        for name in self._names(key):
            path = self.folder / name
            if not os.path.lexists(path):
                continue
            data = _read_regular(path)
            if data is not None and name in recorded and hashlib.sha256(data).hexdigest() == recorded[name]:
                return name, data
            self._left_alone(path, name in recorded)
        return None

    def store(self, key: str, blob: bytes) -> str | None:
        """Write `blob` under the first of the key's names that is free or ours, and record it; None
        when none is (or the folder cannot take it: the run goes on without a cache)."""
        digest = hashlib.sha256(blob).hexdigest()
        try:
            for name in self._names(key):
                path = self.folder / name
                if os.path.lexists(path) and not ownership.is_ours(path):
                    self._left_alone(path, name in ownership.recorded(self.folder, ROLE))
                    continue
                with ownership.folder_lock(self.folder):
                    atomic_write_bytes(path, blob)
                    ownership.record(self.folder, {name: digest}, ROLE)
                return name
        except (OSError, ownership.NotOurs) as exc:
            log.info("openvino: cannot cache the compiled model in %s: %s", self.folder, exc)
            return None
        log.warning("openvino: %s holds %d files at the compiled-model cache's names that pspnet-rt did not "
                    "write; compiling each time until they are moved away", self.folder, MAX_ALTERNATIVES)
        return None

    def forget_legacy(self) -> None:
        """Blobs OpenVINO's CACHE_DIR wrote for an older pspnet-rt, which recorded their sha256 in a
        sidecar: removed where their bytes still match it (never read again, so only space); the
        sidecar itself, and anything it does not prove, stay."""
        try:
            data = ownership.parse_json_text((self.folder / LEGACY_SIDECAR).read_text()) \
                if (self.folder / LEGACY_SIDECAR).is_file() else None
        except (OSError, ValueError, UnicodeDecodeError):
            return
        if not isinstance(data, dict):
            return
        claims = {k: v["sha256"] for k, v in data.items()
                  if isinstance(v, dict) and isinstance(v.get("sha256"), str) and "/" not in k}
        for name in claims:
            with contextlib.suppress(OSError, ValueError, ownership.NotOurs):
                ownership.remove_if_ours(self.folder / name, claims)

    def drop(self, name: str) -> None:
        """Remove one of our blobs (it no longer imports); never anything that is not provably ours."""
        with contextlib.suppress(OSError, ownership.NotOurs):
            ownership.remove_if_ours(self.folder / name)

    def _left_alone(self, path: Path, was_ours: bool) -> None:
        if path.name in self._warned:
            return
        self._warned.add(path.name)
        why = "it changed since pspnet-rt wrote it (damaged?)" if was_ours else "pspnet-rt did not write it"
        log.warning("openvino: %s is not used as a compiled-model cache file: %s; it is left alone (delete "
                    "it to reclaim the space) and the model is compiled afresh", path, why)


def _read_regular(path: Path) -> bytes | None:
    """A regular file's bytes, never through a link, never blocking on a FIFO; None otherwise."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read()
    except OSError:
        return None
    finally:
        os.close(fd)
