"""Peak-rate probes and shares of peak: real GEMMs and real Conv models on tiny sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import peak
from benchmarks.peak import ProbeSize, add_shares, bracket, int8_ceiling, measure_peaks, peak_for

TINY = ProbeSize(gemm_side=256, conv_channels=64, conv_side=16, budget_s=0.02)


def test_every_probe_runs_through_its_library_and_reports_a_rate() -> None:
    peaks = measure_peaks(["torch", "openvino", "onnxruntime"], TINY)
    assert set(peaks) == {f"{lib}/{p}" for lib, ps in peak.PROBES.items() for p in ps}
    for key, p in peaks.items():
        if key == "openvino/bf16" and "error" in p:  # a CPU without BF16 units says so
            assert "no BF16 units" in p["error"]
            continue
        assert "error" not in p, (key, p)
        assert p["gmac_per_s"] >= p["median_gmac_per_s"] > 0 and p["calls"] >= peak.MIN_CALLS
    assert peaks["openvino/int8"]["precision_ran"].startswith("int8/")
    assert peaks["openvino/fp32"]["precision_ran"] == "f32"


def test_int8_probe_model_computes_what_the_float_one_does(tmp_path: Path) -> None:
    """The Q/DQ Conv chain is the float chain quantized (same weights), not some other graph."""
    from runtime.backends import open_runner

    fp32 = peak.conv_model(tmp_path / "f.onnx", False, 32, 8)
    int8 = peak.conv_model(tmp_path / "q.onnx", True, 32, 8)
    x = np.random.default_rng(0).standard_normal((32, 8, 8)).astype(np.float32)
    with open_runner("onnxruntime", fp32) as a, open_runner("onnxruntime", int8, "int8") as b:
        ya, yb = a.infer(x)["labels"], b.infer(x)["labels"]
    assert ya.shape == (32, 8, 8)
    assert np.corrcoef(ya.ravel(), yb.ravel())[0, 1] > 0.99


def test_each_contender_is_read_against_its_own_library_at_the_precision_it_ran() -> None:
    assert peak_for("pytorch", "fp32", "fp32") == "torch/fp32"
    assert peak_for("pytorch", "bf16", "bf16") == "torch/bf16"
    assert peak_for("openvino", "fp32", "f32") == "openvino/fp32"
    assert peak_for("openvino", "fp16", "bf16") == "openvino/bf16"
    assert peak_for("openvino", "fp16", "f32") == "openvino/fp32"  # no BF16 units: FP16 runs in f32
    assert peak_for("openvino", "int8", "int8/bf16") == "openvino/int8"
    assert peak_for("onnxruntime", "int8", "int8") == "onnxruntime/int8"
    assert peak_for("onnxruntime", "fp16", "fp16") is None  # no FP16 probe: ORT runs it through casts
    assert peak_for("tensorrt", "int8", None) is None


def test_shares_bracket_and_ceiling_arithmetic() -> None:
    def probes(bf16: float, int8: float) -> dict:
        return {"torch/bf16": {"gmac_per_s": bf16, "what": "g"},
                "openvino/int8": {"gmac_per_s": int8, "what": "c"},
                "openvino/bf16": {"error": "not available here"}}

    peaks = bracket(probes(180.0, 400.0), probes(200.0, 360.0))
    assert peaks["torch/bf16"]["gmac_per_s"] == 190.0 and peaks["torch/bf16"]["drift"] == pytest.approx(0.111)
    assert peaks["openvino/int8"]["gmac_per_s"] == 380.0 and "error" in peaks["openvino/bf16"]

    def entry(name: str, kind: str, backend: str, precision: str, ran: str | None, ms: float | None) -> dict:
        e = {"name": name, "kind": kind, "backend": backend, "precision": precision, "precision_ran": ran,
             "status": "ok" if ms else "not available here"}
        return {**e, "latency_ms": {"inference": {"mean": ms}}} if ms else e

    entries = [entry("peer", "pytorch-peer", "pytorch", "bf16", "bf16", 100.0),  # 10 GMAC in 100 ms
               entry("ov8", "artefact", "openvino", "int8", "int8/bf16", 50.0),
               entry("trt", "artefact", "tensorrt", "int8", None, None)]
    add_shares(entries, peaks, 10.0)
    assert entries[0]["gmac_per_s"] == 100.0
    assert entries[0]["peak"]["share"] == pytest.approx(100 / 190, abs=1e-3)
    assert entries[1]["peak"] == {"probe": "openvino/int8", "gmac_per_s": 380.0,
                                  "share": pytest.approx(200 / 380, abs=1e-3)}
    assert "peak" not in entries[2]
    c = int8_ceiling(entries, peaks)
    assert c["max_speedup_int8_vs_pytorch"] == 3.8 and c["best_int8_speedup_vs_pytorch"] == 2.0
    assert peak.ceiling_line(c).startswith("INT8 ceiling")
