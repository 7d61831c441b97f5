"""`python -m build_engine`: artefact + manifest, cache, clear errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from artefact.manifest import ArtefactError, load_manifest
from build_engine.cli import main
from tests.conftest import TINY_SIZE


def test_manifest_fields(demo_artefacts):
    for backend, path in demo_artefacts.items():
        m = load_manifest(path)
        assert m.backend == backend and m.precision == "fp32" and m.model == "demo"
        assert m.input_size == list(TINY_SIZE) and m.input_layout == "NHWC"
        assert m.input_dtype == "uint8" and m.input_channels == "BGR"
        assert len(m.classes) == 19 and len(m.palette) == 19 and m.classes[0] == "road"
        assert len(m.mean) == 3 and len(m.std) == 3
        assert len(m.model_sha256) == 64 and len(m.onnx_sha256) == 64
        assert m.verification["onnx_vs_torch"]["pixel_agreement"] >= 0.999
        assert m.verification["backend_vs_torch"]["pixel_agreement"] >= 0.999
        assert m.verification["nodes_after_slim"] <= m.verification["nodes_before_slim"]
        assert m.tools["onnxruntime"] and m.tools["openvino"] and m.tools["torch"]
        assert "python -m build_engine" in m.build["command"]
        assert m.build["cache_key"]
        m.verify_file()
    assert load_manifest(demo_artefacts["openvino"]).companion_files  # the IR's .bin


def test_second_build_is_a_cache_hit_and_force_rebuilds(demo_artefacts, artefact_dir):
    from build_engine.api import build_artefact

    before = json.loads(demo_artefacts["onnxruntime"].read_text())["build"]["created"]
    t0 = time.perf_counter()
    again = build_artefact("demo", "fp32", "onnxruntime", TINY_SIZE, output=artefact_dir)
    assert again == demo_artefacts["onnxruntime"]
    assert time.perf_counter() - t0 < 5  # generous: no export happened
    assert json.loads(again.read_text())["build"]["created"] == before


def test_tampered_model_file_is_refused_then_rebuilt(tmp_path):
    from build_engine.api import build_artefact

    path = build_artefact("demo", "fp32", "onnxruntime", TINY_SIZE, output=tmp_path)
    model_file = load_manifest(path).model_path
    model_file.write_bytes(model_file.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ArtefactError, match="sha256"):
        load_manifest(path).verify_file()
    rebuilt = build_artefact("demo", "fp32", "onnxruntime", TINY_SIZE, output=tmp_path)
    load_manifest(rebuilt).verify_file()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "build_engine", *args], capture_output=True,
                          text=True, timeout=300)


def test_cli_prints_manifest_path(tmp_path):
    result = run_cli("--precision", "fp32", "--backend", "onnxruntime", "--input-size", "96x192", "--output",
                     str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("demo-96x192-fp32-onnxruntime.json")


@pytest.mark.parametrize(("args", "needle"), [
    (["--model", "nope"], "unknown model 'nope'"),
    (["--input-size", "16x200"], "too small"),
    (["--input-size", "abc"], "expected HxW"),
    (["--weights", "/does/not/exist.pth"], "does not exist"),
])
def test_cli_usage_errors_exit_2_without_traceback(tmp_path, args, needle):
    result = run_cli("--backend", "onnxruntime", "--output", str(tmp_path), *args)
    assert result.returncode == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_mismatched_checkpoint(tmp_path):
    import torch

    from pspnet.model import PSPNet

    ckpt = tmp_path / "ade.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in PSPNet(50, 150).state_dict().items()}},
               ckpt)
    result = run_cli("--model", "pspnet50_cityscapes", "--weights", str(ckpt), "--backend",
                     "onnxruntime", "--output", str(tmp_path))
    assert result.returncode == 2
    assert "pspnet50_ade20k" in result.stderr and "Traceback" not in result.stderr


def test_list_models():
    result = run_cli("--list-models")
    assert result.returncode == 0 and "pspnet101_cityscapes" in result.stdout


def test_main_returns_codes_in_process(tmp_path):
    assert main(["--precision", "fp32", "--backend", "onnxruntime", "--input-size", "96x192", "--output",
                 str(tmp_path)]) == 0


@pytest.mark.parametrize("step", ["verify", "compile"])
def test_stop_after_keeps_that_steps_output(tmp_path, step):
    """Every step inspectable: the build stops after STEP, keeps its output, writes no manifest."""
    from pathlib import Path

    from runtime.backends import open_runner

    result = run_cli("--precision", "fp32", "--backend", "onnxruntime", "--input-size", "96x192", "--output",
                     str(tmp_path), "--stop-after", step)
    assert result.returncode == 0, result.stderr
    kept = Path(result.stdout.strip())
    stem = "demo-96x192-fp32-onnxruntime"
    assert kept.name == f"{stem}.{step}{'.json' if step == 'verify' else '.onnx'}" and kept.is_file()
    assert not (tmp_path / f"{stem}.json").exists() and not (tmp_path / f"{stem}.onnx").exists()
    from artefact.ownership import RECORD

    hidden = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert hidden == [RECORD]  # work folder removed; the kept file noted as ours (a rerun may replace it)
    if step == "verify":
        report = json.loads(kept.read_text())
        assert report["onnx_vs_torch"]["pixel_agreement"] >= 0.999
        onnx_path = Path(report["onnx"])
    else:
        onnx_path = kept
    with open_runner("onnxruntime", onnx_path) as runner:  # the kept graph runs as it is
        labels, _ = runner.predict(np.zeros((96, 192, 3), np.uint8))
    assert labels.shape == (96, 192)
