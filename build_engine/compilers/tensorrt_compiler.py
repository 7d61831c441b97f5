"""TensorRT on the build side: a strongly typed engine (build_engine/tensorrt_builder.py).

The gate cannot run TensorRT without a GPU, so its graphs are gated on this CPU by emulation:
FP16 by rounding every float16 tensor (calib/fp16_emulation), INT8 by running the Q/DQ graph
on ONNX Runtime, which for TensorRT's placement (no Q/DQ on Conv outputs) computes each Conv in
float32 on int8-rounded inputs and weights, as TensorRT's int8 kernels do up to accumulation
order. Every figure is labelled with what really ran.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from build_engine.compilers.base import Compiler, Written
from calib.gate_backends import GateRun

if TYPE_CHECKING:
    from runtime.backends import Runner


class TensorRTCompiler(Compiler):
    name = "tensorrt"
    extension = ".engine"
    qdq_placement = "tensorrt"  # NVIDIA's: Conv inputs and residual Add inputs (calib/qdq_placement.py)
    graph_rules_bind = True
    runs_here = False  # verified by the gpu-marked tests and the runtime's first frames

    def compile(self, onnx_path: Path, target: Path, options: Any, output: Path) -> Written:
        from build_engine import commit
        from build_engine.tensorrt_builder import TensorRTOptions, build_engine
        from devices import device_info

        timing = commit.own_cache_file(output, "timing.cache")  # None: a file there is not ours
        trt_options = TensorRTOptions(workspace_mb=options.workspace_mb, timing_cache=timing)
        facts = build_engine(onnx_path, target, trt_options)
        facts["gpu"] = device_info()
        if timing is not None:
            commit.record_cache(output, timing.name)
        return Written(facts=facts)

    def cache_key_parts(self, options: Any) -> dict[str, Any]:
        return {"trt": options.workspace_mb}

    def open_gate_runner(self, path: str | Path, precision: str) -> Runner:
        from runtime.backends import open_runner

        if precision == "fp16":
            from calib.fp16_emulation import EmulatedFP16

            return EmulatedFP16(path).activate()
        return open_runner("onnxruntime", path, precision)

    def what_ran(self, precision: str, runner: Runner) -> GateRun:
        ran = runner.precision_ran or precision
        if precision == "fp16":
            from calib.fp16_emulation import DESCRIPTION

            return GateRun(DESCRIPTION, ran, {"fp16_headroom": runner.headroom.to_dict()})
        if precision == "int8":
            return GateRun("onnxruntime CPU Q/DQ emulation of TensorRT INT8 (int8-rounded Conv inputs, "
                           "residual inputs and weights; float32 arithmetic)", "f32")
        return GateRun("onnxruntime CPU (float32)", "f32")
