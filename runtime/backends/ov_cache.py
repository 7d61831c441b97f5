"""OpenVINO's compiled-model cache (`ov_cache/` beside the artefact), trusted only as far as we
can vouch for it.

OpenVINO names a blob by a hash of the model and its settings but never checks the blob's own
bytes: flip a few inside it and the next run imports it and computes garbage (masks that agree
with a clean run on a quarter of the pixels), with exit 0. The artefact's manifest cannot help,
its hashes cover the .xml/.bin only. So every blob OpenVINO writes is recorded here with its
size and sha256 (a sidecar JSON written atomically), and before each compile every blob that is
not recorded, or whose bytes no longer match, is deleted, so OpenVINO compiles afresh and
writes a new one. A blob that passes the check but still fails to import makes the caller
clear the cache and compile without it (see OpenVINOBackend).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path

from artefact.files import atomic_write_json, parse_json_text, sha256_file

log = logging.getLogger(__name__)

SIDECAR = "pspnet-rt-blobs.json"


class BlobCache:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.sidecar = self.folder / SIDECAR
        self._verified: dict[str, tuple[int, int, str]] = {}  # name -> (size, mtime_ns, sha256)

    def _records(self) -> dict[str, dict]:
        try:
            data = parse_json_text(self.sidecar.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, dict) and isinstance(v.get("sha256"), str)
                and isinstance(v.get("size"), int)}

    def _entries(self) -> list[Path]:
        try:
            return [p for p in self.folder.iterdir() if p.name != SIDECAR and not p.name.startswith(".")]
        except OSError:
            return []

    def prepare(self) -> list[str]:
        """Delete every blob we cannot vouch for; returns their names (for the log and tests)."""
        records = self._records()
        dropped = []
        self._verified.clear()
        for path in self._entries():
            record = records.get(path.name)
            try:
                st = path.stat()
                good = (record is not None and path.is_file() and st.st_size == record["size"]
                        and sha256_file(path) == record["sha256"])
            except OSError:
                good = False
            if good:
                self._verified[path.name] = (st.st_size, st.st_mtime_ns, record["sha256"])
                continue
            dropped.append(path.name)
            _remove(path)
            # a damaged blob is news; one we never recorded (an older pspnet-rt wrote it) is not
            log.log(logging.WARNING if record else logging.INFO,
                    "openvino: dropped compiled-model cache file %s (%s); compiling afresh", path,
                    "it does not match what was recorded" if record else "not recorded by pspnet-rt")
        return dropped

    def record(self) -> None:
        """Record every blob now in the folder (after a compile that may have written one): those
        prepare() verified and nobody touched since keep their hash, the others are hashed."""
        fresh: dict[str, dict] = {}
        for path in self._entries():
            try:
                st = path.stat()
                if not path.is_file():
                    continue
                known = self._verified.get(path.name)
                unchanged = known is not None and known[:2] == (st.st_size, st.st_mtime_ns)
                digest = known[2] if unchanged else sha256_file(path)
            except OSError:
                continue
            fresh[path.name] = {"sha256": digest, "size": st.st_size}
        if fresh != self._records():
            try:
                atomic_write_json(self.sidecar, fresh)
            except OSError as exc:  # a cache we cannot vouch for is dropped at the next start
                log.info("openvino: cannot record the compiled-model cache in %s: %s", self.folder, exc)

    def clear(self) -> None:
        for path in [*self._entries(), self.sidecar]:
            _remove(path)
        self._verified.clear()


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
