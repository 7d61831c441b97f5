"""Which backend a build targets, and the tool versions a manifest records.

The facts themselves (CPU, CUDA device, installed libraries) come from `devices`, which the
runtime and the benchmarks ask too.
"""

from __future__ import annotations

import platform

from clikit import UsageError
from devices import backend_usable, cpu_info, install_hint, version

BACKEND_ORDER = ("tensorrt", "openvino", "onnxruntime")


def resolve_backend(requested: str) -> str:
    """`auto` = tensorrt where a GPU and TensorRT are present, else openvino, else onnxruntime,
    among what is installed; a named CPU backend that is not installed is a usage error that
    names its extra (TensorRT says what it lacks when the build reaches it)."""
    if requested == "auto":
        for backend in BACKEND_ORDER:
            if backend_usable(backend):
                return backend
        raise UsageError(f"no inference backend is installed: {install_hint('openvino')} "
                         f"(or {install_hint('onnxruntime')})")
    if requested != "tensorrt" and not backend_usable(requested):
        raise UsageError(f"the {requested} backend needs {install_hint(requested)}")
    return requested


def tool_versions() -> dict:
    return {
        "python": platform.python_version(),
        "torch": version("torch"),
        "onnx": version("onnx"),
        "onnxslim": version("onnxslim"),
        "onnxruntime": version("onnxruntime"),
        "openvino": version("openvino"),
        "tensorrt": None,
        "cpu": cpu_info()["model"],
        "machine": platform.machine(),
    }
