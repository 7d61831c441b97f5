"""FP32 ONNX -> the ONNX of the requested precision, gated on held-out frames.

Precision lives in the ONNX (float16 compute for FP16, explicit Q/DQ for INT8), so one graph
serves TensorRT's strongly typed builder, OpenVINO and ONNX Runtime alike.
"""

from __future__ import annotations

import functools
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from tqdm import tqdm

from artefact.files import atomic_path, sha256_file
from artefact.manifest import CONFIDENCE_NAME, LABELS_NAME
from calib.gate import GateReport, gate
from calib.gate_backends import GateRun, GateTarget, gate_target
from calib.options import PrecisionOptions
from calib.sources import CalibrationError, FrameSet, generated_id, load_frames
from runtime.naming import redact_source
from segdata.evaluation import agreement, predict_all

if TYPE_CHECKING:
    from pspnet.zoo import ModelSpec

log = logging.getLogger(__name__)


class GateFailed(RuntimeError):
    """The reduced-precision model lost more accuracy than allowed (message holds the table)."""

    def __init__(self, message: str, report: GateReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class PrecisionResult:
    onnx_path: Path
    calibration: dict[str, Any] | None = None
    accuracy: dict[str, Any] = field(default_factory=dict)
    tools: dict[str, Any] = field(default_factory=dict)


def final_graph(src: Path, dst: Path, outputs: list[str]) -> Path:
    """The FP32 graph with only the outputs the artefact keeps (before any precision change)."""
    from calib.onnx_tools import keep_outputs, slim

    model = onnx.load(str(src))
    if [o.name for o in model.graph.output] != outputs:
        model = slim(keep_outputs(model, outputs))
    onnx.save(model, str(dst))
    return dst


def apply_precision(fp32_onnx: Path, work: Path, options: PrecisionOptions, spec: ModelSpec,
                    outputs: list[str], cache_dir: Path, backend: str | GateTarget) -> PrecisionResult:
    """The graph of `options.precision` for an artefact of `backend` (its name, or its GateTarget:
    a build_engine.compilers Compiler), gated on held-out frames."""
    base = final_graph(fp32_onnx, work / "fp32_final.onnx", outputs)
    if options.precision == "fp32":
        return PrecisionResult(base)
    height, width = spec.input_size
    if options.dynamic:
        raise ValueError("fp16/int8 builds need a fixed --input-size (calibration and the gate "
                         "run at one size); drop --dynamic")
    evalset = labels_for(spec, gate_frames(options.eval_data or "synthetic:val", options.eval_images,
                                           height, width))
    gate_backend = gate_target(backend)  # what runs for each target, and its words (calib/gate_backends.py)
    # with a confidence output, FP32's confidence maps come along: the gate reports their error too
    fp32_preds = fp32_reference(gate_backend, base, evalset, cache_dir, CONFIDENCE_NAME in outputs)
    classes = list(spec.classes)

    if options.precision == "fp16":
        from calib.fp16 import convert_fp16

        path, kept = convert_fp16(base, work / "fp16.onnx")
        report, ran = _gate(gate_backend, path, "fp16", fp32_preds, evalset, classes, options)
        return PrecisionResult(path, None, _accuracy(report, evalset, ran, kept_fp32=kept),
                               {"onnxconverter_common": _version("onnxconverter-common")})

    ranges_base = base if outputs == [LABELS_NAME] else final_graph(fp32_onnx, work / "fp32_labels.onnx",
                                                                    [LABELS_NAME])
    return _int8(base, work, options, spec, evalset, fp32_preds, gate_backend, cache_dir, classes,
                 ranges_base)


class Reference(list):
    """FP32's class maps of the gate frames (a list, as everywhere) that also carries FP32's
    confidence maps when the artefact has a confidence output: the gate reports their error."""

    def __init__(self, labels: list[np.ndarray], confidence: list[np.ndarray]) -> None:
        super().__init__(labels)
        self.confidence = confidence


def labels_for(spec: ModelSpec, evalset: FrameSet) -> FrameSet:
    """The gate's frames with ground truth only where it is in the model's label set (scored with
    its ignore index); frames labelled in another label set (the synthetic scenes' Cityscapes ids
    for a 3-class road model) gate on agreement with FP32's predictions instead."""
    import dataclasses

    if evalset.label_set is None or not any(label is not None for label in evalset.labels):
        return evalset
    from segdata.label_sets import canonical_name

    if canonical_name(evalset.label_set) != canonical_name(spec.label_set):
        log.warning("--eval-data %s is labelled in %s, the model predicts %s: the gate compares with "
                    "FP32's predictions instead of the labels", evalset.source, evalset.label_set,
                    spec.label_set)
        return dataclasses.replace(evalset, labels=[None] * len(evalset.frames))
    return dataclasses.replace(evalset, ignore_index=spec.ignore_index)


@functools.lru_cache(maxsize=1)
def gate_frames(source: str, n: int, height: int, width: int) -> FrameSet:
    """The gate's held-out frames; kept for the process, so `--precision auto` trying INT8 then
    FP16 renders them once (callers do not change a FrameSet)."""
    return load_frames(source, n, height, width, seed=1, default_split="val")


def fp32_reference(gate_backend: GateTarget, base: Path, evalset: FrameSet, cache_dir: Path,
                   confidence: bool = False) -> list[np.ndarray]:
    """FP32's class maps of the gate frames on the gate backend: what every candidate is compared
    with (with `confidence`, a Reference that also holds FP32's confidence maps, from the same
    runs). Kept in `cache_dir` under the graph's sha256, the frames' fingerprint and the backend's
    version, so another precision of the same model does not run FP32 again."""
    from artefact.files import cache_key
    from devices import version

    parts = {"onnx": sha256_file(base), "frames": evalset.fingerprint(), "backend": gate_backend.name,
             "version": version(gate_backend.name)}
    if confidence:  # a key of its own; the labels-only key is unchanged, so older caches stay valid
        parts["outputs"] = [LABELS_NAME, CONFIDENCE_NAME]
    key = cache_key(parts)
    path = cache_dir / f"{key}-fp32-reference.npz"
    n = len(evalset.frames)
    if path.is_file():
        try:
            with np.load(path) as data:
                preds = [data[f"p{i}"] for i in range(n)]
                conf = [data[f"c{i}"] for i in range(n)] if confidence else None
            tqdm.write(f"FP32 reference of the gate frames: cached ({path.name})", file=sys.stderr)
            return preds if conf is None else Reference(preds, conf)
        except (OSError, KeyError, ValueError) as exc:
            log.warning("recomputing the FP32 reference, %s is unreadable: %s", path, exc)
    with gate_backend.open_gate_runner(base, "fp32") as fp32_run:
        if confidence:
            both = _outputs_of(fp32_run, evalset.frames, [fp32_run.labels_name, CONFIDENCE_NAME],
                               "FP32 reference")
            preds, conf = [p for p, _ in both], [c for _, c in both]
        else:
            preds, conf = predict_all(fp32_run, evalset.frames, "FP32 reference"), None
    cache_dir.mkdir(parents=True, exist_ok=True)
    arrays = {f"p{i}": p for i, p in enumerate(preds)} | {f"c{i}": c for i, c in enumerate(conf or [])}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return preds if conf is None else Reference(preds, conf)


def _int8(base: Path, work: Path, options: PrecisionOptions, spec: ModelSpec, evalset: FrameSet,
          fp32_preds: list, gate_backend: GateTarget, cache_dir: Path, classes: list[str],
          ranges_base: Path | None = None) -> PrecisionResult:
    from calib.graph_parts import head_convs, quantized_blocks, unquantized_graph_options
    from calib.qdq_placement import describe
    from calib.quantize import preprocess, quantize_int8

    pre = preprocess(base, work / "int8_pre.onnx")
    graph = onnx.load(str(pre))
    exclude: list[str] = []
    if not options.quantize_classifier:  # the final classifier (with --flip, each branch's)
        exclude += [conv.name for conv in head_convs(graph)]
    exclude += unquantized_graph_options(graph)  # --flip's average, the confidence tail; none if plain
    cache, provenance = calibration_ranges(ranges_base or base, pre, graph, options, spec, evalset,
                                           cache_dir, work)
    placement = options.qdq_placement or gate_backend.qdq_placement
    out = quantize_int8(pre, work / "int8.onnx", None, options.calib_method, exclude, cache, placement)
    report, ran = _gate(gate_backend, out, "int8", fp32_preds, evalset, classes, options,
                        fail=False)
    kept_blocks: list[str] = []
    if not report.passed and options.fallback:
        blocks = quantized_blocks(graph)
        ranking = sensitivity(pre, work, blocks, exclude, options, cache, evalset, fp32_preds,
                              gate_backend, placement)
        for block, _ in ranking:
            kept_blocks.append(block)
            names = exclude + [n for b in kept_blocks for n in blocks[b]]
            out = quantize_int8(pre, work / "int8.onnx", None, options.calib_method, names, cache,
                                placement)
            report, ran = _gate(gate_backend, out, "int8", fp32_preds, evalset, classes, options,
                                fail=False)
            tqdm.write(f"fallback: kept {', '.join(kept_blocks)} in float -> drop "
                       f"{report.miou_drop_points} points, agreement "
                       f"{report.pixel_agreement * 100:.2f} %", file=sys.stderr)
            if report.passed:
                break
    if not report.passed:
        raise GateFailed(_fail_message(report, "int8") +
                         ("" if options.fallback else " (try --fallback, --calib-method, or more "
                          "--calib-images)"), report)
    calibration = {**provenance, "method": options.calib_method, "excluded_nodes": exclude,
                   "kept_float_blocks": kept_blocks,
                   "scheme": "QDQ, symmetric int8 activations per tensor, weights per channel "
                             "(axis 0), bias float",
                   "placement": placement, "qdq": describe(onnx.load(str(out)))}
    return PrecisionResult(out, calibration, _accuracy(report, evalset, ran),
                           {"onnxruntime_quantization": _version("onnxruntime")})


def calibration_ranges(base: Path, pre: Path, graph: onnx.ModelProto, options: PrecisionOptions,
                       spec: ModelSpec, evalset: FrameSet, cache_dir: Path, work: Path
                       ) -> tuple[Path, dict[str, Any]]:
    """ORT's calibration cache for `pre` (found, shipped or computed: see calib/ranges.py) and
    where its ranges came from. Refuses calibration frames that are also gate frames."""
    from calib import ranges
    from calib.quantize import calibrate

    height, width = spec.input_size
    source = options.calib_data or spec.calibration or "synthetic:calib"
    generated = generated_id(source, options.calib_images, height, width, seed=0, default_split="calib")
    calibset = None
    if generated is None:  # only the frames' content can say which ranges fit them
        calibset = _calibration_frames(source, options, height, width)
    key = ranges.key_for(sha256_file(base), generated or calibset.fingerprint(), options.calib_method)
    found = ranges.find(key, cache_dir, spec.shipped_ranges_path)
    tensors = {name for node in graph.graph.node for name in [*node.input, *node.output]}
    if found is not None and ranges.usable(found[0], tensors):
        record, where = found
    else:
        calibset = calibset or _calibration_frames(source, options, height, width)
        _refuse_overlap(calibset.frame_sha1(), evalset)
        tqdm.write(f"calibration: {len(calibset.frames)} frames from {redact_source(calibset.source)} "
                   f"({options.calib_method})", file=sys.stderr)
        calibrate(pre, calibset.frames, options.calib_method, work / "computed.calib")
        record = ranges.make_record(key, ranges.read_ort_cache(work / "computed.calib"),
                                    calibset.describe(), calibset.frame_sha1())
        where = f"calibrated, cached ({ranges.save_local(cache_dir, key, record)})"
    _refuse_overlap(record["frame_sha1"], evalset)
    tqdm.write(f"calibration ranges: {record['frames']['source']} ({options.calib_method}): {where}",
               file=sys.stderr)
    return ranges.write_ort_cache(record, work / "ranges.calib"), {**record["frames"], "ranges": where}


def _calibration_frames(source: str, options: PrecisionOptions, height: int, width: int) -> FrameSet:
    return load_frames(source, options.calib_images, height, width, seed=0, default_split="calib")


def _refuse_overlap(frame_sha1: list[str], evalset: FrameSet) -> None:
    overlap = len({bytes.fromhex(h) for h in frame_sha1} & evalset.hashes())
    if overlap:
        raise CalibrationError(f"{overlap} of the {len(evalset.frames)} evaluation frames are also "
                               "calibration frames; the gate must use held-out data (--eval-data)")


def sensitivity(pre: Path, work: Path, blocks: dict[str, list[str]], exclude: list[str],
                options: PrecisionOptions, cache: Path, evalset: FrameSet, fp32_preds: list,
                gate_backend: GateTarget, placement: str = "tensorrt") -> list[tuple[str, float]]:
    """Per block: agreement with FP32 when ONLY that block is INT8. Worst first."""
    from calib.quantize import quantize_int8

    frames = evalset.frames[:16]
    scores = []
    all_nodes = [n for names in blocks.values() for n in names]
    for block, names in tqdm(blocks.items(), desc="sensitivity", unit="block", disable=None):
        if set(names) <= set(exclude):
            continue
        others = [n for n in all_nodes if n not in names] + exclude
        path = quantize_int8(pre, work / "probe.onnx", None, options.calib_method, others, cache,
                             placement)
        with gate_backend.open_gate_runner(path, "int8") as run:
            scores.append((block, agreement(predict_all(run, frames), fp32_preds[:16])))
    scores.sort(key=lambda s: s[1])
    tqdm.write("sensitivity (agreement with FP32 when only this block is INT8): " +
               ", ".join(f"{b} {a * 100:.2f}%" for b, a in scores[:6]), file=sys.stderr)
    return scores


def _gate(backend: GateTarget, path: Path, precision: str, fp32_preds: list, evalset: FrameSet,
          classes: list[str], options: PrecisionOptions, fail: bool = True
          ) -> tuple[GateReport, GateRun]:
    fp32_confidence = getattr(fp32_preds, "confidence", None)
    with backend.open_gate_runner(path, precision) as run:
        if fp32_confidence is None:
            preds = predict_all(run, evalset.frames, f"{precision} gate")
        else:
            both = _outputs_of(run, evalset.frames, [run.labels_name, CONFIDENCE_NAME],
                               f"{precision} gate")
            preds = [labels for labels, _ in both]
    report = gate(fp32_preds, preds, evalset, classes, options.max_miou_drop)
    if fp32_confidence is not None:
        from segdata.confidence import confidence_error

        report.confidence = confidence_error(fp32_confidence, [conf for _, conf in both])
    report.precision_ran = run.precision_ran
    ran = backend.what_ran(precision, run)
    tqdm.write(f"{precision} gate ran on: {ran.description}\n{report.table()}", file=sys.stderr)
    if fail and not report.passed:
        raise GateFailed(_fail_message(report, precision), report)
    return report, ran


def _outputs_of(run: Any, frames: list[np.ndarray], names: list[str], desc: str) -> list[tuple]:
    """The named outputs of each frame, as a tuple per frame (without the batch axis)."""
    out = []
    for frame in tqdm(frames, desc=desc, unit="img", leave=False, disable=None):
        values = run.infer(frame, names)
        out.append(tuple(values[n] for n in names))
    return out


def _fail_message(report: GateReport, precision: str) -> str:
    drop = (f"mIoU drop {report.miou_drop_points:.2f} points" if report.miou_drop_points is not None
            else f"mIoU vs FP32 {report.miou_vs_fp32 * 100:.2f}")
    return f"{precision} accuracy gate failed: {drop} > --max-miou-drop {report.limit_points} (table above)"


def _accuracy(report: GateReport, evalset: FrameSet, ran: GateRun, **extra: Any) -> dict:
    return {"gate": report.to_dict(), "eval_data": evalset.describe(),
            "gate_backend": ran.description, "gate_float_precision": ran.float_precision,
            **ran.facts, **extra}


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None
