"""`python -m benchmarks.accuracy`: mIoU / mAcc / allAcc of PyTorch and every artefact, same frames.

Every contender (PyTorch eager, each artefact on its backend) plugs into the one evaluation
protocol, segdata.evaluation (whole / flip / slide / ms, semseg's mIoU accumulation): one loop
over the images with every contender inside it, so FP32, FP16 and INT8 (and PyTorch) are
compared on byte-identical inputs, read once, and a large data set never sits in memory.
slide/flip/ms need logits: artefacts are built with a float `logits` output for them.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import clikit
from benchmarks.common import (
    BenchmarkError,
    describe_cpu,
    environment,
    fmt,
    header_block,
    markdown_table,
    now,
    out_folder,
    parse_size,
    run_benchmark,
    text_table,
    write_json,
    write_text,
    zoo_model,
)
from benchmarks.contenders import (
    ContenderSpec,
    artefact_spec,
    label_for,
    manifest_spec,
    select_combos,
    unique_names,
    weights_kind,
)
from clikit import csv_list, positive_int
from segdata.evaluation import (
    MODES,
    SCALES,
    STRIDE_RATE,
    Evaluation,
    Model,
    Protocol,
    evaluate,
    pad_value_bgr,
)

log = logging.getLogger("benchmarks")
PROG = "benchmarks.accuracy"
FP32_TOLERANCE_POINTS = 0.1  # an FP32 artefact must reproduce PyTorch's mIoU within this

EXAMPLES = """\
examples:
  python -m benchmarks.accuracy
      the demo model on 100 held-out synthetic scenes: PyTorch, OpenVINO FP32/FP16/INT8, ORT FP32/INT8
  python -m benchmarks.accuracy --backends openvino --precisions fp32 --images 20
  python -m benchmarks.accuracy --model pspnet50_cityscapes --data cityscapes:/data/cityscapes \\
        --mode slide --images 500
  python -m benchmarks.accuracy --engine my-int8.json --mode flip
exit codes: 0 ok, 1 a contender failed or an FP32 artefact misses PyTorch's mIoU by more than
0.1 point, 2 bad arguments or data
"""


def build_parser() -> argparse.ArgumentParser:
    p = clikit.parser(f"python -m {PROG}", __doc__, EXAMPLES)
    p.add_argument("--data", metavar="SRC",
                   help="labelled data: synthetic[:split][:N][@HxW], cityscapes:/path, kitti:/path, "
                        "ade20k:/path, voc:/path or a data-set folder (default: synthetic:val:N at the "
                        "model's input size, held out from training and calibration)")
    p.add_argument("--model", default=None, help="model zoo name (default: demo, or the --engine's model)")
    p.add_argument("--engine", nargs="+", metavar="MANIFEST",
                   help="evaluate these artefacts instead of building")
    p.add_argument("--precisions", type=csv_list(("fp32", "fp16", "int8")), help="comma-separated")
    p.add_argument("--backends", type=csv_list(("openvino", "onnxruntime", "tensorrt")),
                   help="comma-separated")
    p.add_argument("--mode", choices=MODES, default="whole")
    p.add_argument("--images", type=positive_int, default=100, metavar="N",
                   help="images, sampled evenly over the data set (default 100)")
    p.add_argument("--input-size", type=parse_size, metavar="HxW",
                   help="model input size (default: the model's)")
    p.add_argument("--base-size", type=positive_int, metavar="PX",
                   help="slide/ms: long side at scale 1.0 (default: the image's own; semseg uses 2048 "
                        "for Cityscapes, 512 for ADE20K/VOC)")
    p.add_argument("--scales", default=",".join(map(str, SCALES)), help="ms scales (default semseg's)")
    p.add_argument("--weights", metavar="CKPT",
                   help="a checkpoint (e.g. semseg's .pth) instead of the model's shipped weights")
    p.add_argument("--no-pytorch", action="store_true", help="artefacts only (e.g. where torch is absent)")
    p.add_argument("--artefacts", metavar="DIR", help="build cache folder (default: build_engine's)")
    p.add_argument("--out", default="results", metavar="DIR", help="writes DIR/accuracy.{json,md}")
    clikit.add_verbose(p)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_benchmark(PROG, build_parser(), run, _failures, argv)


def _failures(result: dict[str, Any]) -> str | None:
    failed = [r["name"] for r in result["results"] if r["status"].startswith("failed")]
    missed = [c["name"] for c in result["checks"] if c["passed"] is False]
    why = [f"failed: {', '.join(failed)}"] if failed else []
    if missed:
        why.append(f"FP32 off PyTorch by more than {FP32_TOLERANCE_POINTS} point: {', '.join(missed)}")
    return "; ".join(why) or None



# ------------------------------------------------------------------------------ evaluators
@dataclass
class Evaluator:
    """One contender opened: the Model it plugs into the protocol, and what to report about it."""

    spec: ContenderSpec
    model: Model
    precision_ran: str | None = None
    close: Callable[[], None] = field(default=lambda: None)
    weights_sha256: str | None = None  # which weights it computes with (None: random)


def torch_evaluator(spec: ContenderSpec) -> Evaluator:
    """The eager model with the shipped weights, through the exported module's own arithmetic."""
    import torch

    from build_engine.export import FusedSegmenter
    from devices import usable_cores
    from pspnet.build import load_model
    from pspnet.zoo import get_spec

    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")  # never written
    torch.set_num_threads(usable_cores())
    model_spec = get_spec(spec.model).with_size(*spec.input_size)
    net, weights = load_model(model_spec, spec.weights_file)
    fused = FusedSegmenter(net, model_spec).eval()

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            labels, logits = fused(torch.from_numpy(x[None]))
        return labels[0].numpy(), logits[0].numpy()

    return Evaluator(spec, Model(spec.name, lambda x: run(x)[0], lambda x: run(x)[1]), "fp32",
                     weights_sha256=weights.get("sha256"))


def artefact_evaluator(spec: ContenderSpec, needs_logits: bool) -> Evaluator:
    """whole: the runtime backend users run. Logit modes: the same file and precision hint,
    reading the extra `logits` output the runtime does not expose."""
    from artefact.manifest import load_manifest

    manifest = load_manifest(spec.manifest or "")
    ev = _artefact_evaluator(spec, manifest, needs_logits)
    ev.weights_sha256 = manifest.weights.get("sha256")
    return ev


def _artefact_evaluator(spec: ContenderSpec, manifest: Any, needs_logits: bool) -> Evaluator:
    if not needs_logits:
        from runtime.backends import load_backend

        backend = load_backend(manifest, hint="latency")
        return Evaluator(spec, Model(spec.name, labels=backend.infer), backend.precision_ran,
                         close=backend.close)
    if not manifest.logits_name:
        raise BenchmarkError(f"{manifest.path} has no logits output; slide/flip/ms need one: rebuild with "
                             "with_logits=True (this CLI does that for the artefacts it builds)")
    if manifest.backend == "tensorrt":
        raise BenchmarkError(f"{spec.name}: --mode {'/'.join(MODES[1:])} is implemented for the CPU "
                             "backends; use --mode whole for TensorRT")
    from runtime.backends import artefact_runner

    runner = artefact_runner(manifest)
    name = manifest.logits_name
    return Evaluator(spec, Model(spec.name, logits=lambda x: runner.infer(x, [name])[name]),
                     runner.precision_ran, close=runner.deactivate)


# ------------------------------------------------------------------------------------ data
def open_eval_data(data: str | None, n: int, input_hw: tuple[int, int],
                   label_set: str) -> tuple[Any, list[int]]:
    """The data set and the evenly spread indices every contender will see."""
    from segdata.datasets import DatasetError, canonical_synthetic, even_sample, open_dataset

    h, w = input_hw
    source = data or f"synthetic:val:{n}@{h}x{w}"
    if source.startswith("synthetic"):
        source = canonical_synthetic(source, n, h, w, "val")
    try:
        dataset = open_dataset(source, split="val")
    except (DatasetError, OSError) as exc:
        raise BenchmarkError(f"--data {source}: {exc}") from None
    if len(dataset) == 0:
        raise BenchmarkError(f"--data {source} holds no images")
    if dataset.label_set != label_set:
        raise BenchmarkError(f"--data {source} is labelled with {dataset.label_set} classes but the model "
                             f"predicts {label_set} classes; pick a matching --model or --data")
    return dataset, even_sample(len(dataset), n)


# --------------------------------------------------------------------------------- the run
def contender_specs(args: argparse.Namespace, model: str, size: tuple[int, int],
                    needs_logits: bool) -> list[ContenderSpec]:
    specs: list[ContenderSpec] = []
    if not args.no_pytorch:
        specs.append(ContenderSpec("pytorch-fp32", "pytorch-eager", "pytorch", "fp32", model, size,
                                   weights=weights_kind(model, args.weights), weights_file=args.weights))
    if args.engine:
        return unique_names(specs + [manifest_spec(m) for m in args.engine])
    for backend, precision in select_combos(args.backends, args.precisions):
        print(f"artefact {backend} {precision}: building or finding in the cache ...", file=sys.stderr,
              flush=True)
        specs.append(artefact_spec(model, backend, precision, size, args.artefacts, args.weights,
                                   with_logits=needs_logits))
    return unique_names(specs)


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    from tqdm import tqdm


    model = args.model or "demo"
    size: tuple[int, int] | None = tuple(args.input_size) if args.input_size else None
    if args.engine:
        from artefact.manifest import ArtefactError

        try:
            first = manifest_spec(args.engine[0])
        except ArtefactError as exc:
            raise BenchmarkError(str(exc)) from None
        model, size = args.model or first.model, first.input_size
    model_spec = zoo_model(model)
    size = size or tuple(model_spec.input_size)
    try:
        scales = tuple(float(s) for s in args.scales.split(",") if s.strip())
    except ValueError:
        raise BenchmarkError(f"--scales {args.scales!r}: expected numbers such as 0.5,1.0,1.5") from None
    protocol = Protocol(args.mode, size, pad_value_bgr(model_spec.mean, model_spec.channel_order), scales,
                        args.base_size)
    out = out_folder(args.out)
    dataset, indices = open_eval_data(args.data, args.images, size, model_spec.label_set)
    env = environment()
    specs = contender_specs(args, model, size, protocol.needs_logits)

    evaluators: list[Evaluator] = []
    for spec in specs:
        if not spec.ok:
            continue
        try:
            ev = torch_evaluator(spec) if spec.kind == "pytorch-eager" else \
                artefact_evaluator(spec, protocol.needs_logits)
        except BenchmarkError as exc:
            spec.status = f"failed: {exc}"
            continue
        except Exception as exc:
            spec.status = f"failed: cannot open: {type(exc).__name__}: {str(exc)[:300]}"
            continue
        evaluators.append(ev)
    if not evaluators:
        raise BenchmarkError("nothing to evaluate: " + "; ".join(f"{s.name}: {s.status}" for s in specs))

    reference = next((e for e in evaluators if e.spec.backend == "pytorch"), None)
    samples = (dataset[i] for i in tqdm(indices, desc=f"accuracy ({args.mode})", unit="img", disable=None))
    try:
        scored = evaluate([e.model for e in evaluators], samples, protocol, model_spec.num_classes,
                          reference=reference.spec.name if reference else None)
    finally:
        for ev in evaluators:
            ev.close()
    if scored.images == 0:
        raise BenchmarkError(f"{dataset.description} has no labels; accuracy needs a labelled data set")

    result = assemble(args, command, env, model, model_spec, size, protocol, dataset, scored, specs,
                      evaluators, reference)
    write_json(out / "accuracy.json", result)
    write_text(out / "accuracy.md", markdown_report(result))
    print(terminal_report(result), flush=True)
    return result


def assemble(args: argparse.Namespace, command: str, env: dict[str, Any], model: str, model_spec: Any,
             size: tuple[int, int], protocol: Protocol, dataset: Any, scored: Evaluation,
             specs: list[ContenderSpec], evaluators: list[Evaluator],
             reference: Evaluator | None) -> dict[str, Any]:
    by_name = {e.spec.name: e for e in evaluators}
    ref_miou = scored.scores[reference.spec.name].cm.miou() if reference else None
    results = []
    for spec in specs:
        ev = by_name.get(spec.name)
        entry: dict[str, Any] = {**spec.to_dict(), "precision_ran": ev.precision_ran if ev else None}
        entry["label"] = (label_for(spec.backend, spec.precision, entry["precision_ran"], spec.kind)
                          if spec.kind != "pytorch-eager" else "PyTorch FP32 (eager)")
        if ev:
            score = scored.scores[spec.name]
            metrics = score.cm.to_dict(list(model_spec.classes))
            entry.update(metrics)
            entry["seconds"] = round(score.seconds, 2)
            entry["ms_per_image"] = round(score.seconds * 1000 / max(scored.images, 1), 1)
            if reference and ev is not reference and ev.weights_sha256 != reference.weights_sha256:
                entry["note"] = ("built from other weights than the PyTorch reference (the manifest's "
                                 "weights sha256 differs): Δ compares different models")
            if ev is not reference and ref_miou is not None and metrics["miou"] is not None:
                entry["miou_delta_vs_pytorch_points"] = round((metrics["miou"] - ref_miou) * 100, 3)
                agree = score.agreement
                entry["pixel_agreement_with_pytorch"] = round(agree, 6) if agree is not None else None
        results.append(entry)
    what = f"FP32 artefact mIoU within {FP32_TOLERANCE_POINTS} point of PyTorch"
    # Random weights are drawn afresh by every load, so PyTorch and the artefact are different
    # random models there: the comparison means nothing and is not judged.
    random = weights_kind(model, args.weights) == "random"
    checks = [{"name": r["name"], "what": what, "delta_points": r["miou_delta_vs_pytorch_points"],
               "passed": None if random or "note" in r
               else abs(r["miou_delta_vs_pytorch_points"]) <= FP32_TOLERANCE_POINTS,
               **({"note": "not judged: random weights (PyTorch and the artefact are different random draws)"}
                  if random else {"note": "not judged: " + r["note"]} if "note" in r else {})}
              for r in results if r.get("precision") == "fp32" and r["backend"] != "pytorch"
              and r.get("miou_delta_vs_pytorch_points") is not None]
    return {
        "benchmark": "accuracy", "created": now(), "command": command, "environment": env,
        "config": {"model": model, "weights": weights_kind(model, args.weights), "input_size": list(size),
                   "data": dataset.description, "images": scored.images,
                   "unlabelled_skipped": scored.unlabelled, "mode": protocol.mode,
                   "scales": list(protocol.scales) if protocol.mode == "ms" else None,
                   "base_size": protocol.base_size, "stride_rate": round(STRIDE_RATE, 4),
                   "crop": list(size), "flip": protocol.mode in ("flip", "ms"),
                   "pad_value_bgr": [round(v, 2) for v in protocol.pad_bgr],
                   "metrics": "semseg: per-class IoU = I/U accumulated over the set, mIoU = mean over "
                              "classes with a non-empty union, mAcc = mean per-class recall, allAcc = "
                              "sum I / sum target; label 255 ignored"},
        "results": results, "checks": checks,
    }


# ------------------------------------------------------------------------------- reporting
def _verdict(check: dict[str, Any]) -> str:
    if check["passed"] is None:
        return check.get("note", "not judged")
    return "PASS" if check["passed"] else "FAIL"


def _pct(x: float | None) -> str:
    return fmt(None if x is None else x * 100, ".2f")


def summary_rows(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    for r in result["results"]:
        if "miou" not in r:
            rows.append([r["label"], "n/a" if "not available" in r["status"] else "FAILED", *[""] * 6])
            continue
        delta = r.get("miou_delta_vs_pytorch_points")
        agree = r.get("pixel_agreement_with_pytorch")
        rows.append([r["label"], str(r.get("precision_ran")), _pct(r["miou"]), _pct(r["macc"]),
                     _pct(r["all_acc"]), "" if delta is None else f"{delta:+.2f}", _pct(agree),
                     fmt(r["ms_per_image"], ".1f")])
    return rows


def status_lines(result: dict[str, Any]) -> list[str]:
    """Why a contender has no figures (not available here, or failed), one line each."""
    return [f"{r['label']}: {r['status']}" for r in result["results"] if "miou" not in r]


SUMMARY_HEADER = ["contender", "ran", "mIoU %", "mAcc %", "allAcc %", "Δ mIoU vs PyTorch (points)",
                  "pixels = PyTorch %", "ms/img"]


def terminal_report(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [f"accuracy ({cfg['mode']}): {cfg['model']} ({cfg['weights']}) at {cfg['input_size'][0]}x"
             f"{cfg['input_size'][1]} on {cfg['images']} images of {cfg['data']}",
             f"machine: {describe_cpu(result['environment'])}", "",
             text_table(SUMMARY_HEADER, summary_rows(result)), *status_lines(result)]
    for c in result["checks"]:
        lines.append(f"check {c['name']}: Δ {c['delta_points']:+.3f} points vs PyTorch -> "
                     f"{_verdict(c)} (|Δ| <= {FP32_TOLERANCE_POINTS})")
    return "\n".join(lines)


def markdown_report(result: dict[str, Any]) -> str:
    cfg = result["config"]
    ran = [r for r in result["results"] if "per_class" in r]
    classes = list(ran[0]["per_class"]) if ran else []
    per_class = [[name] + [_pct(r["per_class"][name]["iou"]) for r in ran] +
                 [str(ran[0]["per_class"][name]["pixels"]) if ran else ""] for name in classes]
    mode_text = {"whole": "whole image resized to the model's input size, class map back to the label size "
                          "(nearest)",
                 "flip": "whole image + its mirror, softmax averaged",
                 "slide": f"sliding {cfg['crop'][0]}x{cfg['crop'][1]} window, stride 2/3 crop, mean padding, "
                          "softmax averaged",
                 "ms": f"multi-scale {cfg['scales']} x sliding window x flip, softmax summed"}[cfg["mode"]]
    parts = [header_block("Accuracy benchmark", result["environment"], result["command"]),
             f"Model **{cfg['model']}** ({cfg['weights']} weights), input {cfg['input_size'][0]}x"
             f"{cfg['input_size'][1]}; **{cfg['images']} images** of `{cfg['data']}`; "
             f"mode **{cfg['mode']}**: {mode_text}. Every contender saw the same images in the same order. "
             f"{cfg['metrics']}.", "",
             markdown_table(SUMMARY_HEADER, summary_rows(result)), "",
             *[f"- {line}" for line in status_lines(result)]]
    for c in result["checks"]:
        parts.append(f"- check `{c['name']}`: Δ {c['delta_points']:+.3f} points vs PyTorch: "
                     f"**{_verdict(c)}** (|Δ| ≤ {FP32_TOLERANCE_POINTS})")
    parts += ["", "## Per-class IoU %", "",
              markdown_table(["class"] + [r["label"] for r in ran] + ["target pixels"], per_class), ""]
    return "\n".join(parts)


if __name__ == "__main__":
    raise SystemExit(main())
