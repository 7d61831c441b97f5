"""What the accuracy gate runs for each target backend, and words that say truthfully what ran.

The gate must measure the arithmetic the artefact will run. OpenVINO and ONNX Runtime run here,
so they gate themselves. TensorRT cannot (no GPU at build-gate time is assumed), so its graphs
are gated on this CPU by emulation: FP16 by rounding every float16 tensor (calib/fp16_emulation),
INT8 by running the Q/DQ graph on ONNX Runtime, which for TensorRT's placement (no Q/DQ on Conv
outputs) computes each Conv in float32 on int8-rounded inputs and weights, as TensorRT's int8
kernels do up to accumulation order. Every figure is labelled with what really ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.backends import Runner, open_runner


@dataclass
class GateRun:
    """What one gate run was, for the manifest's accuracy record."""

    description: str  # accuracy.gate_backend
    float_precision: str  # the float arithmetic of the candidate's float layers
    facts: dict[str, Any] = field(default_factory=dict)  # e.g. fp16_headroom


def open_gate_runner(backend: str, path: str | Path, precision: str) -> Runner:
    """An open Runner for the gate of an artefact of `backend` (`with` it)."""
    if backend == "tensorrt":
        if precision == "fp16":
            from calib.fp16_emulation import EmulatedFP16

            return EmulatedFP16(path).activate()
        return open_runner("onnxruntime", path, precision)
    return open_runner(backend, path, precision)


def what_ran(backend: str, precision: str, runner: Runner) -> GateRun:
    """The words for what `runner` (opened by open_gate_runner) computed."""
    ran = runner.precision_ran or precision
    if backend == "openvino":  # what OpenVINO really ran here ("int8/f32", "bf16"), not what was asked
        floats = ran.split("/")[-1]
        text = (f"openvino CPU (int8 where quantized, {floats} elsewhere)" if precision == "int8"
                else f"openvino CPU (inference precision {floats})")
        return GateRun(text, floats)
    if backend == "tensorrt" and precision == "fp16":
        from calib.fp16_emulation import DESCRIPTION

        return GateRun(DESCRIPTION, ran, {"fp16_headroom": runner.headroom.to_dict()})
    if backend == "tensorrt" and precision == "int8":
        return GateRun("onnxruntime CPU Q/DQ emulation of TensorRT INT8 (int8-rounded Conv inputs, "
                       "residual inputs and weights; float32 arithmetic)", "f32")
    if precision == "fp16":
        return GateRun("onnxruntime CPU (float16 weights; no float16 kernels on x86, so the "
                       "float16 nodes compute in float32)", "f32")
    if precision == "int8":
        return GateRun("onnxruntime CPU (int8 QLinearConv where a Conv's output is quantized too; "
                       "other Q/DQ pairs run as int8 rounding with float32 arithmetic)", "f32")
    return GateRun("onnxruntime CPU (float32)", "f32")
