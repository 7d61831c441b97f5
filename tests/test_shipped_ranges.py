"""The demo model's shipped INT8 ranges: a generated file that must match today's export and frames."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from artefact.manifest import load_manifest
from calib.ranges import records_in
from calib.sources import fingerprint_of
from pspnet.zoo import get_spec
from segdata.datasets import open_dataset
from segdata.frames import to_model_input

ROOT = Path(__file__).resolve().parents[1]
REGENERATE = "python -m build_engine.shipped_ranges"


def shipped_record(method: str = "percentile") -> dict:
    spec = get_spec("demo")
    assert spec.shipped_ranges_path is not None and spec.shipped_ranges_path.is_file(), \
        f"no shipped ranges: run `{REGENERATE}`"
    return next(r for r in records_in(spec.shipped_ranges_path) if r["method"] == method)


def test_shipped_frames_are_the_frames_rendered_today() -> None:
    """The record's frame hashes are its fingerprint's, and spot frames re-rendered now match them
    (a change to the scene generator without a GENERATOR_VERSION bump fails here)."""
    record = shipped_record()
    assert fingerprint_of(record["frame_sha1"]) == record["frames"]["fingerprint"]
    h, w = get_spec("demo").input_size
    data = open_dataset(record["frames"]["source"], split="calib")
    assert len(data) == len(record["frame_sha1"]) == 200
    for i in (0, 117, 199):
        frame = to_model_input(data[i].image, h, w)
        assert hashlib.sha1(frame.tobytes()).hexdigest() == record["frame_sha1"][i], \
            f"calibration frame {i} renders differently today: regenerate with `{REGENERATE}`"


def test_shipped_ranges_fit_the_current_export_and_a_build_uses_them(tmp_path: Path) -> None:
    """Fails when the exporter (or weights, onnxslim, torch) changed the FP32 graph and nobody reran
    the generator; then a default INT8 build of the demo model takes its ranges from the file."""
    check = subprocess.run([sys.executable, "-m", "build_engine.shipped_ranges", "--check"], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr.strip().splitlines()[-1]
    build = subprocess.run([sys.executable, "-m", "build_engine", "--precision", "int8", "--backend",
                            "onnxruntime", "--eval-images", "4", "--max-miou-drop", "100", "--output",
                            str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    calibration = load_manifest(build.stdout.strip().splitlines()[-1]).calibration
    assert calibration["ranges"].startswith("shipped") and calibration["fingerprint"] == \
        shipped_record()["frames"]["fingerprint"]
    assert "calibration: 200 frames" not in build.stderr  # nothing was rendered or calibrated
