"""`--precision auto`: the fastest precision that passes the gate, one artefact per precision, the why."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from artefact.manifest import load_manifest
from build_engine.api import Builder, BuildOptions, build_artefact
from build_engine.auto import Tried, plan
from tests.conftest import TINY_SIZE

SMALL = {"calib_images": 8, "eval_images": 6}  # tiny and quick; the gate limit decides the outcome


def build(precision: str, output: Path, limit: float) -> Path:
    return build_artefact("demo", precision, "onnxruntime", TINY_SIZE, output=output, max_miou_drop=limit,
                          **SMALL)


def names(order: list) -> list[str]:
    return [item if isinstance(item, str) else f"-{item.precision}" for item in order]


def test_plan_per_backend_and_model() -> None:
    demo_ort = plan(Builder(BuildOptions(precision="auto", backend="onnxruntime")))
    assert names(demo_ort) == ["int8", "-fp16", "fp32"]  # ORT's CPU provider: fp16 is no faster
    assert "no fast FP16" in demo_ort[1].why
    from devices import openvino_capabilities

    demo_ov = plan(Builder(BuildOptions(precision="auto", backend="openvino")))
    bf16_or_fp16 = bool({"BF16", "FP16"} & set(openvino_capabilities() or []))
    # fp16 only where OpenVINO would run it as f16/bf16: on a CPU without either it runs f32
    assert names(demo_ov) == ["int8", "fp16" if bf16_or_fp16 else "-fp16", "fp32"]
    user = plan(Builder(BuildOptions(model="pspnet50_cityscapes", precision="auto", backend="openvino")))
    assert names(user)[0] == "-int8"
    assert isinstance(user[0], Tried) and "no calibration frames" in user[0].why
    assert "--calib-data" in user[0].why
    with_data = plan(Builder(BuildOptions(model="pspnet50_cityscapes", precision="auto", backend="openvino",
                                          calib_data="synthetic:calib:8")))
    assert names(with_data)[0] == "int8"
    dynamic = plan(Builder(BuildOptions(precision="auto", backend="openvino", dynamic=True)))
    assert names(dynamic) == ["-int8", "-fp16", "fp32"]


def test_auto_and_explicit_int8_share_one_artefact(tmp_path: Path) -> None:
    """Explicit int8 first, then auto: auto adopts the same file (same name, same cache key) and
    records why; a third, identical request returns the recorded decision at once."""
    explicit = build("int8", tmp_path, 100)
    before = load_manifest(explicit)
    auto = build("auto", tmp_path, 100)
    assert auto == explicit
    after = load_manifest(auto)
    assert after.build["cache_key"] == before.build["cache_key"]
    assert after.model_sha256 == before.model_sha256 and after.build["created"] == before.build["created"]
    choice = after.build["precision_choice"]
    assert choice["chosen"] == "int8" and choice["requested"] == "auto"
    first = choice["tried"][0]
    assert (first["precision"], first["result"], first["cached"]) == ("int8", "passed", True)
    assert "passed the gate" in choice["why"] and "calibrated on synthetic:calib" in choice["why"]
    assert after.calibration["ranges"].startswith("calibrated")
    t0 = time.perf_counter()
    again = build("auto", tmp_path, 100)
    assert again == auto and time.perf_counter() - t0 < 5  # no export: the decision was recorded
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["demo-96x192-int8-percentile-onnxruntime.json"]


def test_failed_int8_gate_falls_back_and_is_not_retried(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A gate INT8 cannot pass: auto says so, skips FP16 on ORT's CPU provider (with why), builds
    FP32 from the same export, and the next identical request does not try INT8 again. The real
    gate measures; only its limit is one no option accepts (mIoU must rise by 100 points)."""
    import calib.precision as precision

    real_gate = precision.gate
    monkeypatch.setattr(precision, "gate", lambda *args: real_gate(*args[:-1], -100.0))
    path = build("auto", tmp_path, 0.0)
    err = capsys.readouterr().err
    assert "int8 failed the accuracy gate" in err and "precision auto -> fp32" in err
    m = load_manifest(path)
    assert m.precision == "fp32" and m.build["precision_requested"] == "auto"
    tried = m.build["precision_choice"]["tried"]
    assert [(t["precision"], t["result"]) for t in tried] == [
        ("int8", "failed the gate"), ("fp16", "skipped"), ("fp32", "passed")]
    assert tried[0]["miou_drop_points"] is not None and "> -100" in tried[0]["why"]
    assert m.build["step_seconds"]["export"] > 0 and "int8" in m.build["step_seconds"]
    assert not list(tmp_path.glob("*int8*.json"))  # the failed candidate left no artefact
    t0 = time.perf_counter()
    assert build("auto", tmp_path, 0.0) == path
    assert time.perf_counter() - t0 < 5
    assert "decided earlier" in capsys.readouterr().err


def test_runtime_summary_says_what_auto_chose(tmp_path: Path, demo_artefacts: dict[str, Path],
                                              capsys: pytest.CaptureFixture) -> None:
    """pspnet-rt's exit summary (and --summary-json) carries the manifest's precision choice."""
    from runtime.cli import build_parser, main
    from tests.test_runtime_backends import clone_artefact

    assert build_parser().parse_args(["--video", "demo"]).precision == "auto"
    choice = {"requested": "auto", "chosen": "fp32", "tried": [],
              "why": "int8 failed the gate (test); fp32 chosen: the reference"}
    manifest = clone_artefact(demo_artefacts["onnxruntime"], tmp_path / "a",
                              **{"build.precision_choice": choice})
    summary = tmp_path / "s.json"
    assert main(["--video", "demo", "--demo-frames", "2", "--engine", str(manifest),
                 "--summary-json", str(summary)]) == 0
    assert "--precision auto chose fp32: int8 failed the gate (test)" in capsys.readouterr().out
    assert json.loads(summary.read_text())["precision_choice"]["chosen"] == "fp32"


def test_stop_after_a_precision_step_needs_a_precision() -> None:
    from clikit import UsageError

    with pytest.raises(UsageError, match="--precision fp32, fp16 or int8"):
        Builder(BuildOptions(precision="auto", backend="onnxruntime", stop_after="quantize"))
