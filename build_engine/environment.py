"""Which backend a build targets, and the tool versions a manifest records.

The facts themselves (CPU, CUDA device, installed libraries) come from `devices`, which the
runtime and the benchmarks ask too.
"""

from __future__ import annotations

import platform

from devices import backend_usable, cpu_info, version

BACKEND_ORDER = ("tensorrt", "openvino", "onnxruntime")


def resolve_backend(requested: str) -> str:
    """`auto` = tensorrt where a GPU and TensorRT are present, else openvino, else onnxruntime."""
    if requested != "auto":
        return requested
    for backend in BACKEND_ORDER:
        if backend_usable(backend):
            return backend
    raise RuntimeError("no inference backend is installed: pip install openvino or onnxruntime")


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
