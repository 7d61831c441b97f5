"""OpenCV's own thread pool, settled for a run once its backend is known.

When inference runs on this machine's CPU (OpenVINO CPU, ONNX Runtime CPU) it already keeps every
core busy; OpenCV's pthreads pool then splits each resize, LUT and JPEG encode of the capture,
render and write stages over workers that wait actively for work and take cores from inference.
Measured on the 2-vCPU Zen 3 CI machine, 240x480 overlay render: 1.07 ms with OpenCV's default
2 threads, 0.45 ms with 1. The pipeline's stages are threads of their own already, so one OpenCV
thread per call is the better split there. On a GPU (TensorRT, CUDA EPs) or a remote server the
cores are the CPU stages' own and OpenCV keeps its default. A user's OPENCV_FOR_THREADS_NUM wins,
and a run from Python gives the caller's setting back when it ends (cv2's setting is global).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

log = logging.getLogger(__name__)

ENV = "OPENCV_FOR_THREADS_NUM"


def inference_on_host_cpu(backend: Any) -> bool:
    """Whether the backend computes on this machine's CPU cores (device strings from runtime.backends;
    the --temporal wrappers carry their engine's name and device)."""
    return (getattr(backend, "name", "") != "triton"
            and str(getattr(backend, "device", "")).upper().startswith("CPU"))


_lock = threading.Lock()
_runs = 0  # runs in this process that settled OpenCV's threads and have not ended
_before = 0  # OpenCV's thread count before the first of them


def settle_opencv_threads(backend: Any) -> bool:
    """One OpenCV thread while inference shares the CPU; True when this run changed it (then it
    calls restore_opencv_threads when it ends). Runs at once in one process share the setting:
    the caller's count comes back when the last of them ends."""
    global _runs, _before
    import cv2

    if ENV in os.environ or not inference_on_host_cpu(backend):
        return False
    with _lock:
        if _runs == 0:
            _before = cv2.getNumThreads()
        _runs += 1
        cv2.setNumThreads(1)
    log.debug("inference on the CPU: OpenCV runs each call on its stage's own thread")
    return True


def restore_opencv_threads(settled: bool) -> None:
    """This run is over: the last run out gives OpenCV back the count the first one found."""
    global _runs
    if not settled:
        return
    import cv2

    with _lock:
        _runs -= 1
        if _runs == 0:
            cv2.setNumThreads(_before)
