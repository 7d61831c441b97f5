"""Minimal in-process predictors over a model file, for verification, calibration and gates.

The streaming runtime has the full backends (async, stats, TensorRT); builds only need
"frame in, (labels, logits) out" on the CPU, before any manifest exists.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

Prediction = tuple[np.ndarray, np.ndarray | None]
Predictor = Callable[[np.ndarray], Prediction]



def cpu_threads() -> int:
    return int(os.environ.get("PSPNET_RT_THREADS", "0")) or (os.cpu_count() or 1)


def onnxruntime_predictor(path: str | Path, threads: int | None = None) -> Predictor:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or cpu_threads()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    outputs = [o.name for o in session.get_outputs()]

    def predict(frame: np.ndarray) -> Prediction:
        result = dict(zip(outputs, session.run(None, {input_name: frame[None]})))
        logits = result.get("logits")
        return result["labels"][0], (logits[0] if logits is not None else None)

    return predict


def openvino_predictor(path: str | Path, precision_hint: str = "f32",
                       threads: int | None = None) -> Predictor:
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": precision_hint, "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    names = [o.get_any_name() for o in compiled.outputs]

    def predict(frame: np.ndarray) -> Prediction:
        request.infer({0: frame[None]})
        result = {n: request.get_output_tensor(i).data for i, n in enumerate(names)}
        logits = result.get("logits")
        return result["labels"][0].copy(), (logits[0].copy() if logits is not None else None)

    return predict


def openvino_hint(precision: str) -> str:
    """The float precision OpenVINO will really use, chosen exactly as the runtime chooses it.

    OpenVINO silently runs "FP32" models in BF16 on BF16-capable CPUs unless told; the gate
    must measure the arithmetic the runtime will run, so both ask one function.
    """
    import openvino as ov

    from runtime.backends.openvino_backend import choose_precision

    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return choose_precision(precision, list(caps))


def predictor_for(backend: str, path: str | Path, precision: str = "fp32") -> Predictor:
    if backend == "onnxruntime":
        return onnxruntime_predictor(path)
    if backend == "openvino":
        return openvino_predictor(path, openvino_hint(precision))
    raise ValueError(f"no CPU predictor for backend {backend!r}")
