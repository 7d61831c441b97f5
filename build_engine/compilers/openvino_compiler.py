"""OpenVINO on the build side: the final ONNX converted to IR (.xml + .bin)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from artefact.files import sha256_file
from build_engine.compilers.base import Compiler, Written
from calib.gate_backends import GateRun

if TYPE_CHECKING:
    from runtime.backends import Runner


class OpenVINOCompiler(Compiler):
    name = "openvino"
    extension = ".xml"
    # unquantized, the pyramid pooling's Concat inputs and the last residual stay f32 (docs/tensorrt.md)
    qdq_placement = "conv-outputs"

    def compile(self, onnx_path: Path, target: Path, options: Any, output: Path) -> Written:
        from build_engine.openvino_compile import onnx_to_ir

        _, bin_path = onnx_to_ir(onnx_path, target)
        return Written(companions={bin_path.name: sha256_file(bin_path)})

    def fp16_not_faster(self) -> str | None:
        from devices import openvino_capabilities

        caps = {c.upper() for c in openvino_capabilities() or []}
        if not caps & {"FP16", "BF16"}:
            return "this CPU has neither FP16 nor BF16 units: OpenVINO would run fp16 as f32"
        return None

    def what_ran(self, precision: str, runner: Runner) -> GateRun:
        """What OpenVINO really ran here ("int8/f32", "bf16"), not what was asked."""
        floats = (runner.precision_ran or precision).split("/")[-1]
        text = (f"openvino CPU (int8 where quantized, {floats} elsewhere)" if precision == "int8"
                else f"openvino CPU (inference precision {floats})")
        return GateRun(text, floats)
