"""ONNX Runtime on the build side: the artefact is the final ONNX graph itself."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from artefact.files import atomic_path
from build_engine.compilers.base import Compiler, Written
from calib.gate_backends import GateRun

if TYPE_CHECKING:
    from runtime.backends import Runner


class OnnxRuntimeCompiler(Compiler):
    name = "onnxruntime"
    extension = ".onnx"
    # ORT's CPU provider turns Q/DQ groups into QLinearConv only with Conv outputs quantized too
    qdq_placement = "conv-outputs"

    def compile(self, onnx_path: Path, target: Path, options: Any, output: Path) -> Written:
        """The final graph with its class count in its metadata (the runtime holds the manifest's
        classes to it: runtime.backends.contract; ORT shows nothing else of the graph's inside)."""
        from build_engine.graph_facts import check_class_count, copy_with_class_record

        with atomic_path(target) as tmp:
            copy_with_class_record(onnx_path, tmp, check_class_count(onnx_path, None))
        return Written()

    def fp16_not_faster(self) -> str | None:
        import onnxruntime as ort

        if not {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers()):
            return "ONNX Runtime's CPU provider has no fast FP16 kernels (fp16 runs slower than fp32)"
        return None

    def what_ran(self, precision: str, runner: Runner) -> GateRun:
        if precision == "fp16":
            return GateRun("onnxruntime CPU (float16 weights; no float16 kernels on x86, so the "
                           "float16 nodes compute in float32)", "f32")
        if precision == "int8":
            return GateRun("onnxruntime CPU (int8 QLinearConv where a Conv's output is quantized too; "
                           "other Q/DQ pairs run as int8 rounding with float32 arithmetic)", "f32")
        return GateRun("onnxruntime CPU (float32)", "f32")
