"""INT8 as explicit Q/DQ ONNX, with the settings TensorRT's parser accepts.

Symmetric int8 activations (per tensor) and weights (per output channel, axis 0), bias left in
float: ONNX Runtime's defaults (asymmetric activations) are refused by TensorRT ("zeroPt must
be all zeros"). The same Q/DQ file runs on OpenVINO and ORT's CPU provider with real int8
kernels, so what TensorRT will get is testable on a CPU.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from artefact.manifest import INPUT_NAME

log = logging.getLogger(__name__)
METHODS = ("entropy", "minmax", "percentile")


def _reader(frames: Sequence[np.ndarray], input_name: str):
    from onnxruntime.quantization import CalibrationDataReader

    class FrameReader(CalibrationDataReader):
        """Feeds raw uint8 frames: the fused graph's own pre-processing runs during calibration."""

        def __init__(self) -> None:
            self.bar = tqdm(total=len(frames), desc="calibrate", unit="img", leave=False,
                            disable=None)
            self.items = iter(frames)

        def get_next(self) -> dict | None:
            frame = next(self.items, None)
            if frame is None:
                self.bar.close()
                return None
            self.bar.update()
            return {input_name: frame[None]}

        def __len__(self) -> int:
            return len(frames)

    return FrameReader()


def preprocess(fp32_onnx: Path, out: Path) -> Path:
    """ORT's quant_pre_process: shape inference before inserting Q/DQ.

    Its optimisation pass is skipped: onnxslim has already folded the graph, and ORT's pass
    merges ArgMax's Cast(int64->float)->Cast(float->uint8) into one Cast(int64->uint8), which
    TensorRT refuses (rule R3 in build_engine/tensorrt_rules.py).
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(fp32_onnx), str(out), skip_optimization=True, skip_symbolic_shape=True)
    return out


def quantize_int8(model_path: Path, out: Path, frames: Sequence[np.ndarray] | None, method: str,
                  exclude: Sequence[str], cache_path: Path | None,
                  placement: str = "tensorrt") -> Path:
    """Insert Q/DQ for every Conv except `exclude`; ranges come from `cache_path` when present.

    `placement` (calib/qdq_placement.py): "tensorrt" quantizes Conv inputs and residual Add
    inputs only, as NVIDIA recommends; "conv-outputs" also quantizes every Conv output (ORT's
    default, which its CPU provider needs for QLinearConv).
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from calib import qdq_placement

    if placement not in qdq_placement.PLACEMENTS:
        raise ValueError(f"unknown Q/DQ placement {placement!r}")
    calib_method = _method_enum()[method]
    extra = {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "QuantizeBias": False,
    }
    if cache_path is not None and Path(cache_path).is_file() and not _cache_readable(Path(cache_path)):
        log.warning("calibration cache %s is unreadable or damaged; calibrating again", cache_path)
        Path(cache_path).unlink(missing_ok=True)
    op_types, residual = ["Conv"], {}
    if placement == "tensorrt":
        graph = onnx.load(str(model_path))
        residual = qdq_placement.residual_adds(graph)
        op_types = ["Conv", "Add"]
        exclude = [*exclude, *qdq_placement.adds_to_exclude(graph)]
        extra["OpTypesToExcludeOutputQuantization"] = ["Conv", "Add"]
    if cache_path is None or not Path(cache_path).is_file():
        if frames is None:
            raise ValueError("no calibration frames and no calibration cache")
        cache_path = cache_path or out.with_suffix(".calib")
        calibrate(model_path, frames, method, Path(cache_path))
    quantize_static(
        str(model_path), str(out), None,
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=op_types,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=list(exclude),
        calibrate_method=calib_method,
        extra_options=extra,
        calibration_cache_path=str(cache_path),
    )
    if residual:
        model = onnx.load(str(out))
        qdq_placement.unquantize_fused_inputs(model, residual)
        onnx.save(model, str(out))
    return out


# ORT's entropy defaults (128 bins, 128 quantized bins) leave the KL search one candidate, the
# full range, which makes "entropy" identical to minmax; quantize_static does not pass the bin
# counts through, so calibration runs here. TensorRT's entropy calibrator searches 2048 bins for
# a 128-level threshold; so does this one.
CALIBRATOR_OPTIONS = {
    "entropy": {"num_bins": 2048, "num_quantized_bins": 128, "symmetric": True},
    "percentile": {"num_bins": 2048, "percentile": 99.99, "symmetric": True},
    "minmax": {"symmetric": True, "moving_average": False},
}


def calibrate(model_path: Path, frames: Sequence[np.ndarray], method: str, cache: Path) -> None:
    """Collect activation ranges over the frames and save them as ORT's calibration cache."""
    import tempfile

    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    with tempfile.TemporaryDirectory(prefix="pspnet-calib.") as tmp:
        calibrator = create_calibrator(model_path, ["Conv"], str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=_method_enum()[method],
                                       extra_options=CALIBRATOR_OPTIONS[method])
        calibrator.collect_data(_reader(frames, INPUT_NAME))
        ranges = calibrator.compute_data()
    from artefact.files import atomic_path

    with atomic_path(cache) as tmp_cache:
        save_tensors_data(ranges, tmp_cache)


def _cache_readable(cache: Path) -> bool:
    """A cache ORT can load and that holds ranges (a damaged one would fail deep inside ORT)."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    try:
        return len(list(load_tensors_data(str(cache)).keys())) > 0
    except Exception:  # any damage: truncated, not the format, wrong types
        return False


def _method_enum() -> dict:
    from onnxruntime.quantization import CalibrationMethod

    return {"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax,
            "percentile": CalibrationMethod.Percentile}
