"""What this machine offers, asked the same way by the builder, the runtime and the benchmarks.

CPU model and SIMD flags, OpenVINO's view of the CPU, which inference libraries are installed
and usable, and the one rule for the float precision OpenVINO really runs. Nothing here
imports a heavy library at import time, and nothing raises where "absent" is the answer.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import logging
import os
import platform
from typing import Any

log = logging.getLogger(__name__)

CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
             "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16")
LIBRARY_MODULES = {"openvino": "openvino", "onnxruntime": "onnxruntime", "tensorrt": "tensorrt"}


def version(dist: str) -> str | None:
    """An installed distribution's version, or None."""
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


# ----------------------------------------------------------------------------------- CPU
def cpu_info() -> dict[str, Any]:
    """CPU model, the SIMD flags that decide which kernels exist, and the cores we may use."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"model": model, "logical_cores": os.cpu_count(), "usable_cores": usable_cores(),
            "flags": {f: f in flags for f in CPU_FLAGS}}


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# ------------------------------------------------------------------------------ OpenVINO
def openvino_capabilities(device: str = "CPU") -> list[str] | None:
    """OpenVINO's OPTIMIZATION_CAPABILITIES of a device (e.g. FP32, BF16, INT8), or None."""
    try:
        import openvino as ov

        return [str(c) for c in ov.Core().get_property(device, "OPTIMIZATION_CAPABILITIES")]
    except Exception:  # not installed, or no such device: an answer, not an error
        return None


def openvino_precision_hint(precision: str, capabilities: list[str], override: str | None = None) -> str:
    """INFERENCE_PRECISION_HINT for an artefact of `precision` on a device with these capabilities.

    OpenVINO silently runs an "FP32" model in BF16 on BF16-capable CPUs unless told, so the
    hint is always set, by this one rule: fp32 -> f32 (the accuracy the manifest reports was
    measured in FP32); fp16 -> f16 where the device has FP16 units, else bf16 where it has BF16,
    else f32; int8 -> the device's fastest float for the layers left unquantized.
    """
    if override:
        return override
    caps = {c.upper() for c in capabilities}
    if precision == "fp32":
        return "f32"
    if "FP16" in caps:
        return "f16"
    if "BF16" in caps:
        return "bf16"
    return "f32"


# ---------------------------------------------------------------------------- libraries
def tensorrt_usable() -> bool:
    """TensorRT imports AND a CUDA device answers (the builder and the runtime need both)."""
    if importlib.util.find_spec("tensorrt") is None:
        return False
    from devices.cuda import device_info

    return device_info() is not None


def install_hint(backend: str) -> str:
    """How to install what `backend` needs: its extra of the package, quoted for a shell."""
    return f"pip install 'pspnet-rt[{backend}]'"


def backend_usable(backend: str) -> bool:
    """Whether `backend` (tensorrt, openvino, onnxruntime) can run here."""
    if backend == "tensorrt":
        return tensorrt_usable()
    module = LIBRARY_MODULES.get(backend)
    return module is not None and importlib.util.find_spec(module) is not None
