"""Give back memory a long-running runtime process holds but no longer uses (Linux, glibc).

Two measured costs on pspnet50_cityscapes INT8 at 713x713 (docs/memory.md):

* OpenVINO maps the model's weights file (the IR's .bin, or its cache blob) and keeps that
  mapping for the compiled model's lifetime, although after compiling it computes only from its
  own repacked copy: the mapped pages (45 MB there) count in our resident set and are never read
  again. `release_read_only_mappings` drops them from this process with
  madvise(MADV_DONTNEED). Only read-only mappings are touched, so nothing written can be lost;
  the pages stay in the page cache, and should OpenVINO ever read one again the kernel faults it
  back in from the same file (the artefact's hashes were checked before the compile).
* glibc raises its mmap threshold each time a large block is freed, so frame-sized buffers
  (1.5 MB at 713x713) freed by one pipeline thread and reallocated by another end up in
  per-thread heaps that never shrink: +15 MB over the first 40 frames. A fixed threshold
  (`fix_malloc_mmap_threshold`) keeps such buffers in their own mappings, returned on free.

Both are best effort: elsewhere (no /proc, no glibc) they do nothing and say so at -v.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

MADV_DONTNEED = 4
M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
# Blocks from this size up get their own mapping (glibc's starting value, no longer adjusted).
MMAP_THRESHOLD_BYTES = 128 * 1024


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None


def read_only_mappings(files: Iterable[str | Path], maps: str = "/proc/self/maps") -> list[tuple[int, int]]:
    """(start, end) of every mapping of one of `files` that is not writable."""
    wanted = {os.path.realpath(f) for f in files}
    found = []
    try:
        with open(maps) as fh:
            for line in fh:
                parts = line.split(maxsplit=5)
                if len(parts) < 6 or "w" in parts[1] or os.path.realpath(parts[5].rstrip("\n")) not in wanted:
                    continue
                start, end = (int(v, 16) for v in parts[0].split("-"))
                found.append((start, end))
    except OSError:
        return []
    return found


def release_read_only_mappings(files: Iterable[str | Path]) -> int:
    """Drop this process's resident pages of read-only mappings of `files`; returns the bytes
    of mapping released (0 where the platform has no /proc or madvise)."""
    libc = _libc()
    spans = read_only_mappings(files)
    if libc is None or not spans:
        return 0
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    released = 0
    for start, end in spans:
        if libc.madvise(start, end - start, MADV_DONTNEED) == 0:
            released += end - start
        else:
            log.debug("madvise(%#x, %d) failed: %s", start, end - start, os.strerror(ctypes.get_errno()))
    return released


def fix_malloc_mmap_threshold(nbytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Pin glibc's mmap threshold (it stops adapting); False where that is not glibc."""
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None) if libc is not None else None
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, nbytes))
