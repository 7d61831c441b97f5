"""runtime/memory.py: pages OpenVINO maps but never reads again leave our resident set, and the
answers stay bit-identical; only read-only mappings are ever touched."""

from __future__ import annotations

import mmap
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime import memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc/self/smaps (Linux)")


def resident_kb(path: Path) -> int:
    """Resident KiB of every mapping of `path` in this process (/proc/self/smaps)."""
    target, total, current = os.path.realpath(path), 0, False
    with open("/proc/self/smaps") as fh:
        for line in fh:
            first = line.split(maxsplit=5)
            if "-" in first[0] and len(first) >= 5 and ":" in first[3]:  # a mapping's header line
                current = len(first) == 6 and os.path.realpath(first[5].strip()) == target
            elif current and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total


def test_a_read_only_file_mapping_is_released_and_still_reads_the_same(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 255, 4 << 20, dtype=np.uint8).tobytes()
    path = tmp_path / "weights.bin"
    path.write_bytes(data)
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        assert mapped[:] == data  # every page touched
        assert resident_kb(path) >= 4 << 10
        assert memory.read_only_mappings([path])
        assert memory.release_read_only_mappings([path]) >= len(data)
        assert resident_kb(path) == 0
        assert mapped[:] == data  # faulted back in from the same file


def test_writable_mappings_are_never_touched(tmp_path: Path) -> None:
    path = tmp_path / "state.bin"
    path.write_bytes(b"\0" * (1 << 20))
    with open(path, "r+b") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY) as private:
        private[:5] = b"dirty"  # a copy-on-write page that madvise would throw away
        assert memory.read_only_mappings([path]) == []
        assert memory.release_read_only_mappings([path]) == 0
        assert private[:5] == b"dirty"


def test_the_malloc_threshold_is_pinned_on_glibc() -> None:
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert memory.fix_malloc_mmap_threshold() is True


def test_openvino_compiles_from_the_checked_bytes_and_keeps_no_weights_file_mapped(
        demo_artefacts: dict[str, Path]) -> None:
    """The OpenVINO backend compiles the very bytes whose hash it checked (a file swapped after the
    check is never read), so the .bin is not mapped at all once it runs, and the bytes are freed
    after compiling: nothing of the weights file stays in our resident set, and it answers the
    same frame the same way twice."""
    pytest.importorskip("openvino")
    from artefact.manifest import load_manifest
    from runtime.backends import load_backend

    manifest = load_manifest(demo_artefacts["openvino"])
    weights = manifest.model_path.with_suffix(".bin")
    frame = np.random.default_rng(1).integers(0, 255, (manifest.height, manifest.width, 3), dtype=np.uint8)
    with load_backend(demo_artefacts["openvino"], cache=False) as backend:
        assert not memory.read_only_mappings([weights])
        assert resident_kb(weights) == 0
        first = backend.infer(frame)
        second = backend.infer(frame)
    assert first.shape == (manifest.height, manifest.width)
    np.testing.assert_array_equal(second, first)
