"""Atomic writes and hashing: an interrupted build never leaves a half-written artefact."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def parse_json_text(text: str | bytes) -> Any:
    """json.loads, but JSON nested too deeply for the parser is a ValueError like any other bad
    JSON (json raises RecursionError there), so every reader refuses it with one line."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply to read") from None


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `target`; rename it over `target` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; artefacts are shared files
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def probe_writable(folder: str | Path) -> None:
    """Create `folder` if needed and prove a file can be created in it (OSError if not): the
    check every command makes before long work. A real file, since root ignores mode bits."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=".probe.", dir=folder)
    os.close(fd)
    os.unlink(probe)


def atomic_write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_json(target: str | Path, obj: object) -> None:
    atomic_write_bytes(target, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def cache_key(parts: dict) -> str:
    """Stable key of everything that influences a build (sorted JSON, sha256, 16 hex)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


CACHE_ENV = "PSPNET_RT_CACHE"


def cache_root() -> Path:
    """Where every cache lives (artefacts/, clips/, triton-venv): $PSPNET_RT_CACHE, else
    ~/.cache/pspnet-rt. An empty variable counts as unset (never the current folder)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "pspnet-rt")
