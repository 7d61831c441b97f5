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


def _reader(frames: Sequence[np.ndarray], input_name: str, bar: tqdm):
    from onnxruntime.quantization import CalibrationDataReader

    class FrameReader(CalibrationDataReader):
        """Feeds raw uint8 frames: the fused graph's own pre-processing runs during calibration."""

        def __init__(self) -> None:
            self.items = iter(frames)

        def get_next(self) -> dict | None:
            frame = next(self.items, None)
            if frame is None:
                return None
            bar.update()
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
    op_types, residual = list(qdq_placement.QUANTIZED_OPS[placement]), {}
    if placement == "tensorrt":
        graph = onnx.load(str(model_path))
        residual = qdq_placement.residual_adds(graph)
        exclude = [*exclude, *qdq_placement.adds_to_exclude(graph)]
        extra["OpTypesToExcludeOutputQuantization"] = op_types
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


# Ops whose float inputs and outputs get ranges: what any placement quantizes, less Add (whose
# inputs are Conv outputs and block outputs, which are Conv inputs: ranged already). Part of
# the ranges' cache key (settings()).
CALIBRATED_OPS = ("Conv", "Concat")


# ORT's entropy defaults (128 bins, 128 quantized bins) leave the KL search one candidate, the
# full range, which makes "entropy" identical to minmax; quantize_static does not pass the bin
# counts through, so calibration runs here. TensorRT's entropy calibrator searches 2048 bins for
# a 128-level threshold; so does this one.
CALIBRATOR_OPTIONS = {
    "entropy": {"num_bins": 2048, "num_quantized_bins": 128, "symmetric": True},
    "percentile": {"num_bins": 2048, "percentile": 99.99, "symmetric": True},
    "minmax": {"symmetric": True, "moving_average": False},
}


# Frames whose intermediate outputs are held at once. ORT's calibrators keep every Conv input of
# every frame they are given before they histogram (~78 MB per 240x480 demo frame: 200 frames
# peaked at 13.6-16.9 GB). Fed CHUNK frames at a time, with the histograms' bins fixed first from
# the whole set's range (`_seed_histograms`), ORT's collectors add each chunk into bins that are
# exactly those of one histogram over all frames, so memory is bounded and the ranges are those
# of the all-at-once run (docs/building.md, step 4, has the measurement).
CHUNK = 8


def calibrate(model_path: Path, frames: Sequence[np.ndarray], method: str, cache: Path,
              chunk: int = CHUNK) -> None:
    """Collect activation ranges over the frames, `chunk` at a time, and save them as ORT's
    calibration cache."""
    import contextlib
    import io
    import tempfile

    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    chunk = max(1, chunk)
    with tempfile.TemporaryDirectory(prefix="pspnet-calib.") as tmp, \
            contextlib.redirect_stdout(io.StringIO()):  # ORT prints chatter per chunk on stdout
        calibrator = create_calibrator(model_path, list(CALIBRATED_OPS), str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=_method_enum()[method],
                                       extra_options=CALIBRATOR_OPTIONS[method])
        if method != "minmax" and len(frames) > chunk:
            _seed_histograms(calibrator, frames)
        with tqdm(total=len(frames), desc="calibrate", unit="img", leave=False, disable=None) as bar:
            for start in range(0, len(frames), chunk):
                calibrator.collect_data(_reader(frames[start:start + chunk], INPUT_NAME, bar))
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


def _seed_histograms(calibrator, frames: Sequence[np.ndarray]) -> None:
    """A first pass for each tensor's range over all frames (one frame's outputs in memory at a
    time), then empty histograms with the bins ORT would give one histogram of all frames: its
    collector then only adds counts into them (a chunk never widens them)."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    session = calibrator.infer_session
    names = [o.name for o in session.get_outputs()]
    wanted = set(calibrator.tensors_to_calibrate)
    low: dict[str, np.ndarray] = {}
    high: dict[str, np.ndarray] = {}
    low_abs: dict[str, np.ndarray] = {}
    for frame in tqdm(frames, desc="calibration range", unit="img", leave=False, disable=None):
        for name, value in zip(names, session.run(None, {INPUT_NAME: frame[None]})):
            if name in wanted:
                lo, hi = np.nanmin(value), np.nanmax(value)
                low[name] = min(low.get(name, lo), lo)
                high[name] = max(high.get(name, hi), hi)
                if value.size:
                    small = np.nanmin(np.abs(value))
                    low_abs[name] = min(low_abs.get(name, small), small)
    bins = calibrator.num_bins
    collector = HistogramCollector(method=calibrator.method, symmetric=calibrator.symmetric, num_bins=bins,
                                   num_quantized_bins=calibrator.num_quantized_bins,
                                   percentile=calibrator.percentile, scenario=calibrator.scenario)
    for name in low:
        lo, hi = low[name], high[name]
        if calibrator.method == "percentile" and calibrator.symmetric:  # collect_absolute_value
            span = np.array([low_abs.get(name, 0), max(abs(lo), abs(hi))], lo.dtype)
            edges = np.histogram(span, bins=bins)[1]
            collector.histogram_dict[name] = (np.zeros(bins, np.int64), edges.astype(lo.dtype), lo, hi)
        else:  # collect_value: bins over [-threshold, threshold]
            threshold = np.array(max(abs(lo), abs(hi)), dtype=lo.dtype)
            edges = np.histogram(np.zeros(0, lo.dtype), bins, range=(-threshold, threshold))[1]
            collector.histogram_dict[name] = (np.zeros(bins, np.int64), edges, lo, hi, threshold)
    calibrator.collector = collector


def settings(method: str) -> dict:
    """What besides graph, frames and method decides the ranges (part of their cache key; the
    chunk size does not: the bins are fixed before the first chunk)."""
    return {**CALIBRATOR_OPTIONS[method], "ops": list(CALIBRATED_OPS)}


def _method_enum() -> dict:
    from onnxruntime.quantization import CalibrationMethod

    return {"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax,
            "percentile": CalibrationMethod.Percentile}
