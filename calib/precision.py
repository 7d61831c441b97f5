"""FP32 ONNX -> the ONNX of the requested precision, with its calibration and accuracy record.

Precision lives in the ONNX (float16 compute for FP16, explicit Q/DQ for INT8), so one graph
serves TensorRT's strongly typed builder, OpenVINO and ONNX Runtime alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx


@dataclass
class PrecisionResult:
    onnx_path: Path
    calibration: dict[str, Any] | None = None
    accuracy: dict[str, Any] = field(default_factory=dict)
    tools: dict[str, Any] = field(default_factory=dict)


def _final_graph(src: Path, dst: Path, outputs: list[str]) -> Path:
    from calib.onnx_tools import keep_outputs, slim

    model = onnx.load(str(src))
    if [o.name for o in model.graph.output] != outputs:
        model = slim(keep_outputs(model, outputs))
    onnx.save(model, str(dst))
    return dst


def apply_precision(fp32_onnx: Path, work: Path, options: Any, spec: Any,
                    outputs: list[str]) -> PrecisionResult:
    """`options` is build_engine's BuildOptions (precision, calibration and gate settings)."""
    if options.precision == "fp32":
        return PrecisionResult(_final_graph(fp32_onnx, work / "final.onnx", outputs))
    raise NotImplementedError(f"--precision {options.precision} is not available yet")
