"""Device facts both sides share: the builder, the runtime and the benchmarks import them here.

Torch-free, and lazy about every library it asks: `devices.cuda` holds every CUDA call the
project makes (the runtime's TensorRT backend and the builder's GPU facts use it alike);
`devices.facts` holds the CPU, OpenVINO and library facts and the one rule for the float
precision OpenVINO really runs.
"""

from devices.cuda import device_info
from devices.facts import (
    backend_usable,
    cpu_info,
    install_hint,
    openvino_capabilities,
    openvino_precision_hint,
    tensorrt_usable,
    usable_cores,
    version,
)

__all__ = ["backend_usable", "cpu_info", "device_info", "install_hint", "openvino_capabilities",
           "openvino_precision_hint", "tensorrt_usable", "usable_cores", "version"]
