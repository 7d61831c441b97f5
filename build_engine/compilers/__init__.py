"""The build side's backends, one module each (like the runtime's runtime.backends registry).

    compiler_for("openvino") -> Compiler     extension, compile, graph rules, FP16 rule, Q/DQ
                                             placement and accuracy gate of that backend

A new backend: a `Compiler` subclass in build_engine/compilers/NAME_compiler.py, one line in
COMPILERS below (and its runtime side in runtime/backends/). Each compiler is also registered
as the accuracy gate's target for its backend (calib.gate_backends). The modules are light:
each imports its backend's library only when it compiles or gates.
"""

from __future__ import annotations

from build_engine.compilers.base import Compiler, Written
from build_engine.compilers.onnxruntime_compiler import OnnxRuntimeCompiler
from build_engine.compilers.openvino_compiler import OpenVINOCompiler
from build_engine.compilers.tensorrt_compiler import TensorRTCompiler
from calib.gate_backends import register_gate_target
from clikit import UsageError

__all__ = ["COMPILERS", "Compiler", "Written", "compiler_for"]

COMPILERS: dict[str, Compiler] = {c.name: c for c in (TensorRTCompiler(), OpenVINOCompiler(),
                                                      OnnxRuntimeCompiler())}
for _compiler in COMPILERS.values():
    register_gate_target(_compiler)


def compiler_for(backend: str) -> Compiler:
    """The build side of `backend` (a resolved name, not auto)."""
    if backend not in COMPILERS:
        raise UsageError(f"no compiler for backend {backend!r}; choose {', '.join(COMPILERS)}")
    return COMPILERS[backend]
