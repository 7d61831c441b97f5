"""scripts/gpu-check.sh on a machine without a GPU: exit 0, an honest report, every part accounted for."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = ["environment", "gpu tests", "ort cuda", "torch cuda", "tensorrt"]

HAS_GPU = shutil.which("nvidia-smi") is not None or any(Path("/dev").glob("nvidia[0-9]*"))
pytestmark = pytest.mark.skipif(HAS_GPU, reason="a GPU is present: there, gpu-check.sh itself is the test")


def gpu_check(out: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(["bash", "scripts/gpu-check.sh", str(out), *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    return result, json.loads((out / "report.json").read_text())


def test_without_a_gpu_it_says_so_and_exits_0(tmp_path: Path) -> None:
    result, report = gpu_check(tmp_path / "r")
    assert result.returncode == 0, result.stderr
    assert "no NVIDIA GPU on this machine" in result.stdout
    assert report["gpu"] is False and [p["name"] for p in report["parts"]] == PARTS
    statuses = {p["name"]: p["status"] for p in report["parts"]}
    assert statuses.pop("environment") == "ran"
    assert all(s.startswith("skipped: no NVIDIA GPU here") for s in statuses.values())
    assert "| tensorrt | skipped: no NVIDIA GPU here" in (tmp_path / "r" / "report.md").read_text()


def test_every_part_says_why_it_cannot_run(tmp_path: Path) -> None:
    """--all-parts: each part meets its own missing piece and names it; none fails."""
    result, report = gpu_check(tmp_path / "r", "--all-parts")
    assert result.returncode == 0, result.stderr
    statuses = {p["name"]: p["status"] for p in report["parts"]}
    assert statuses["environment"] == "ran"
    assert "gpu/cuda tests skipped" in statuses["gpu tests"]
    # the CUDA device tests (devices/cuda.py through cuda-bindings/pycuda) are collected and skip
    # with their reason, each listed in the report
    assert "needs an NVIDIA GPU and CUDA Python bindings" in statuses["gpu tests"]
    tests = next(p for p in report["parts"] if p["name"] == "gpu tests")["details"]["tests"]
    cuda = [t for t in tests if "test_cuda_device" in t["test"]]
    assert cuda and all(t["outcome"] == "skipped" and "CUDA Python bindings" in t["why"] for t in cuda)
    assert "CUDAExecutionProvider" in statuses["ort cuda"]
    assert "sees no CUDA device" in statuses["torch cuda"]
    assert "TensorRT" in statuses["tensorrt"]
    assert not [s for s in statuses.values() if s.startswith("failed")], statuses
