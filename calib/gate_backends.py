"""What the accuracy gate runs for each target backend, and words that say truthfully what ran.

The gate must measure the arithmetic the artefact will run. OpenVINO and ONNX Runtime run here,
so they gate themselves. TensorRT cannot (no GPU at build-gate time is assumed), so its graphs
are gated on this CPU by emulation: FP16 by rounding every float16 tensor (calib/fp16_emulation),
INT8 by running the Q/DQ graph on ONNX Runtime, which for TensorRT's placement (no Q/DQ on Conv
outputs) computes each Conv in float32 on int8-rounded inputs and weights, as TensorRT's int8
kernels do up to accumulation order. Every figure is labelled with what really ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calib.runners import Predictor, onnxruntime_predictor, predictor_for


@dataclass
class GateRunner:
    predict: Predictor
    description: str  # the manifest's accuracy.gate_backend
    float_precision: str  # what float arithmetic the candidate's float layers used

    def facts(self) -> dict[str, Any]:
        """Anything the run measured beyond labels (FP16 headroom), for the manifest."""
        headroom = getattr(self.predict, "headroom", None)
        return {"fp16_headroom": headroom.to_dict()} if headroom is not None else {}


def gate_runner(backend: str, path: str | Path, precision: str) -> GateRunner:
    """The predictor the gate uses for an artefact of `backend` at `precision`."""
    if backend == "openvino":
        from calib.runners import openvino_hint

        hint = openvino_hint(precision)  # what OpenVINO really runs here, not what was asked
        text = (f"openvino CPU (int8 where quantized, {hint} elsewhere)" if precision == "int8"
                else f"openvino CPU (inference precision {hint})")
        return GateRunner(predictor_for("openvino", path, precision), text, hint)
    if backend == "onnxruntime":
        if precision == "fp16":
            text = ("onnxruntime CPU (float16 weights; no float16 kernels on x86, so the float16 "
                    "nodes compute in float32)")
        elif precision == "int8":
            text = ("onnxruntime CPU (int8 QLinearConv where a Conv's output is quantized too; "
                    "other Q/DQ pairs run as int8 rounding with float32 arithmetic)")
        else:
            text = "onnxruntime CPU (float32)"
        return GateRunner(onnxruntime_predictor(path), text, "f32")
    if backend == "tensorrt":
        if precision == "fp16":
            from calib.fp16_emulation import DESCRIPTION, EmulatedFP16

            return GateRunner(EmulatedFP16(path), DESCRIPTION, "f16 (emulated rounding)")
        if precision == "int8":
            return GateRunner(onnxruntime_predictor(path),
                              "onnxruntime CPU Q/DQ emulation of TensorRT INT8 (int8-rounded "
                              "Conv inputs, residual inputs and weights; float32 arithmetic)",
                              "f32")
        return GateRunner(onnxruntime_predictor(path), "onnxruntime CPU (float32)", "f32")
    raise ValueError(f"no gate for backend {backend!r}")
