"""What this machine can build for, and the tool versions a manifest records."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import platform

BACKEND_ORDER = ("tensorrt", "openvino", "onnxruntime")


def version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def tensorrt_usable() -> bool:
    """TensorRT imports AND a CUDA device answers (the builder fails without one)."""
    if importlib.util.find_spec("tensorrt") is None:
        return False
    try:
        from runtime.cuda import device_info  # one place for CUDA calls

        return device_info() is not None
    except Exception:
        return False


def backend_usable(backend: str) -> bool:
    if backend == "tensorrt":
        return tensorrt_usable()
    module = {"openvino": "openvino", "onnxruntime": "onnxruntime"}[backend]
    return importlib.util.find_spec(module) is not None


def resolve_backend(requested: str) -> str:
    """`auto` = tensorrt where a GPU and TensorRT are present, else openvino, else onnxruntime."""
    if requested != "auto":
        return requested
    for backend in BACKEND_ORDER:
        if backend_usable(backend):
            return backend
    raise RuntimeError("no inference backend is installed: pip install openvino or onnxruntime")


def tool_versions() -> dict:
    info = {
        "python": platform.python_version(),
        "torch": version("torch"),
        "onnx": version("onnx"),
        "onnxslim": version("onnxslim"),
        "onnxruntime": version("onnxruntime"),
        "openvino": version("openvino"),
        "tensorrt": None,
        "cpu": cpu_name(),
        "machine": platform.machine(),
    }
    return info


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
