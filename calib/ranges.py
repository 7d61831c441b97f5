"""Where INT8 calibration ranges come from: this machine's cache, the model's shipped ranges, or a run.

Calibrating is the slowest part of an INT8 build (every frame through a graph that outputs every
Conv input, then histograms of all of it). The ranges depend on three things only: the FP32 graph
(its sha256), the frames (their content fingerprint) and the method with its settings. So they are
kept as a *ranges record* under a key of exactly those, and a model may ship its own records
(`ModelSpec.shipped_ranges_path`, e.g. `pspnet/weights/demo_synthetic.ranges.json`, written by
`python -m build_engine.shipped_ranges`), so the demo model's first INT8 build calibrates nothing.

Frames of a generated source (the synthetic scenes: split, count, size, generator version and
sampling seed fix every byte) are found by that name before any frame is rendered; the record
holds their content fingerprint and per-frame hashes, so the held-out check against the gate's
frames still runs. Any other source is read first and found by its content fingerprint.
A record whose tensors the graph no longer has is ignored and the ranges are recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artefact.files import atomic_write_json, parse_json_text

log = logging.getLogger(__name__)
FORMAT = "pspnet-rt/calibration-ranges/1"


@dataclass(frozen=True)
class RangesKey:
    """What a set of ranges depends on. `frames` is a generated source's full name (found before
    rendering) or, for any other source, the frames' content fingerprint."""

    onnx_sha256: str
    frames: str
    method: str
    settings: dict[str, Any]

    def digest(self) -> str:
        blob = json.dumps([self.onnx_sha256, self.frames, self.method, self.settings], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def matches(self, record: dict[str, Any]) -> bool:
        return (record.get("format") == FORMAT and record.get("onnx_sha256") == self.onnx_sha256
                and record.get("frames_key") == self.frames and record.get("method") == self.method
                and record.get("settings") == self.settings)


def key_for(onnx_sha256: str, frames: str, method: str) -> RangesKey:
    """The key of ranges computed by calib.quantize.calibrate with its current settings."""
    from calib.quantize import settings

    return RangesKey(onnx_sha256, frames, method, settings(method))


def local_path(cache_dir: Path, key: RangesKey) -> Path:
    return cache_dir / f"{key.onnx_sha256[:16]}-{key.digest()}-{key.method}.ranges.json"


def find(key: RangesKey, cache_dir: Path, shipped: Path | None) -> tuple[dict[str, Any], str] | None:
    """(record, where it came from) for `key`: this machine's cache first, then the shipped file."""
    local = local_path(cache_dir, key)
    for where, path in (("cached", local), ("shipped", shipped)):
        if path is None or not path.is_file():
            continue
        for record in records_in(path):
            if key.matches(record):
                return record, f"{where} ({path})"
    return None


def records_in(path: Path) -> list[dict[str, Any]]:
    try:
        data = parse_json_text(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable calibration ranges %s: %s", path, exc)
        return []
    records = data.get("records", [data]) if isinstance(data, dict) else []
    return [r for r in records if isinstance(r, dict)]


def make_record(key: RangesKey, tensors: dict[str, Any], frames: dict[str, Any],
                frame_sha1: list[str]) -> dict[str, Any]:
    """A ranges record: the key, the frames' provenance and hashes, ORT's TensorsData payload."""
    return {"format": FORMAT, "onnx_sha256": key.onnx_sha256, "frames_key": key.frames,
            "method": key.method, "settings": key.settings, "frames": frames,
            "frame_sha1": frame_sha1, "tensors": tensors}


def save_local(cache_dir: Path, key: RangesKey, record: dict[str, Any]) -> Path:
    path = local_path(cache_dir, key)
    atomic_write_json(path, record)
    return path


def usable(record: dict[str, Any], tensor_names: set[str]) -> bool:
    """Every tensor the record has ranges for is still in the graph (else: recompute)."""
    names = set(record.get("tensors", {}).get("data", {}))
    missing = names - tensor_names
    if missing or not names:
        log.warning("calibration ranges do not fit this graph (%d tensors missing, e.g. %s): "
                    "recalibrating", len(missing), sorted(missing)[:2])
        return False
    return True


def write_ort_cache(record: dict[str, Any], path: Path) -> Path:
    """The record's ranges as ONNX Runtime's calibration cache (its TensorsData JSON)."""
    path.write_text(json.dumps(record["tensors"]))
    return path


def read_ort_cache(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
