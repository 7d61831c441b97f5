"""The settings of a reduced-precision build, typed, importable without onnx or torch.

`build_engine.api.BuildOptions` extends them with what the rest of a build needs, so a
BuildOptions is the PrecisionOptions that `calib.precision.apply_precision` takes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PrecisionOptions:
    """What a reduced-precision build needs to know: the precision, calibration and gate settings."""

    precision: str = "fp32"  # fp32 | fp16 | int8 (build_engine also takes auto: build_engine/auto.py)
    dynamic: bool = False
    calib_data: str | None = None
    calib_images: int = 200
    calib_method: str = "percentile"
    eval_data: str | None = None
    eval_images: int = 48
    max_miou_drop: float = 1.0
    fallback: bool = False
    quantize_classifier: bool = False  # by default the final classifier stays in float
    qdq_placement: str | None = None  # INT8 Q/DQ placement; None = the backend's (calib/qdq_placement.py)
