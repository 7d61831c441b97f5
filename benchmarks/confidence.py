"""`python -m benchmarks.confidence`: what the --confidence output costs, and how well it is calibrated.

Cost: `pspnet-rt` on the demo clip writing a video and mask PNGs, interleaved round by round
(benchmarks.pipeline_runs), with three variants of the same model, backend and precision:
  plain        the artefact built without --confidence (its graph has no confidence node)
  conf-unread  the --confidence artefact, run without asking for the output
  conf         the --confidence artefact with `--confidence DIR` (its PNGs written too)
The figure that matters is conf's FPS over plain's, per round (the issue asks <= 10 % lost).

Calibration: on the held-out labelled frames (the gate's synthetic:val, at the model's size), per
precision: the pixels' max softmax probability against whether the class is right, in 15 equal
bins (reliability diagram, PNG), the expected and maximum calibration errors, and what a robot
keeps if it ignores pixels below a threshold (share of pixels, and their accuracy).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import clikit
from benchmarks.common import (
    LoadMonitor,
    environment,
    header_block,
    markdown_table,
    parse_size,
    prepare_out,
    run_benchmark,
    write_json,
    write_text,
    zoo_model,
)
from clikit import positive_int

PROG = "benchmarks.confidence"
THRESHOLDS = (0.5, 0.7, 0.9)
EXAMPLES = """\
examples:
  python -m benchmarks.confidence --out results
      the demo model, OpenVINO INT8 (what `pspnet-rt --video demo` picks): 3 interleaved rounds of
      150 frames per variant, then calibration of FP32 and INT8 on 48 held-out frames
  python -m benchmarks.confidence --backend onnxruntime --precision fp32 --frames 60 --rounds 2
exit codes: 0 ok, 1 a build or a run failed, 2 bad arguments
"""


def build_parser() -> argparse.ArgumentParser:
    p = clikit.parser(f"python -m {PROG}", __doc__, EXAMPLES)
    p.add_argument("--model", default="demo", type=clikit.non_empty("a model zoo name"))
    p.add_argument("--backend", default="openvino", choices=("openvino", "onnxruntime"))
    p.add_argument("--precision", default="int8", choices=("fp32", "fp16", "int8"),
                   help="precision of the artefacts whose pipeline cost is measured (default int8)")
    p.add_argument("--calibration-precisions", type=clikit.csv_list(("fp32", "fp16", "int8")),
                   default=["fp32", "int8"], metavar="P,P",
                   help="precisions whose calibration is measured (default fp32,int8)")
    p.add_argument("--flip", action="store_true", help="measure artefacts built with --flip too")
    p.add_argument("--input-size", type=parse_size, metavar="HxW", help="default: the model's")
    p.add_argument("--frames", type=positive_int, default=150, help="demo frames per pipeline run")
    p.add_argument("--rounds", type=positive_int, default=3, help="interleaved rounds of the three runs")
    p.add_argument("--eval-images", type=positive_int, default=48, help="held-out frames for calibration")
    p.add_argument("--artefacts", default=None, type=clikit.output_dir(),
                   help="artefact folder (default: the cache)")
    p.add_argument("--out", default="results", type=clikit.output_dir())
    clikit.add_verbose(p)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_benchmark(PROG, build_parser(), run, _failures, argv)


def _failures(result: dict[str, Any]) -> str | None:
    bad = [f"{k}: {v['status']}" for k, v in result["cost"]["variants"].items() if v["status"] != "ok"]
    return "; ".join(bad) or None


def _build(args: argparse.Namespace, precision: str, confidence: bool) -> Any:
    from artefact.manifest import load_manifest
    from build_engine.api import build_artefact

    print(f"artefact {args.backend} {precision}{' --confidence' if confidence else ''}: building or finding "
          "in the cache ...", file=sys.stderr, flush=True)
    return load_manifest(build_artefact(args.model, precision, args.backend, args.input_size,
                                        output=args.artefacts, confidence=confidence, flip=args.flip))


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    from tqdm import tqdm

    from benchmarks.pipeline_runs import interleaved

    spec = zoo_model(args.model)
    out = prepare_out(args.out)
    plain = _build(args, args.precision, False)
    conf = _build(args, args.precision, True)
    env = environment()
    common = ["--output", "{tmp}/out.mp4", "--masks", "{tmp}/masks"]
    variants = {"plain": ["--engine", str(plain.path), *common],
                "conf-unread": ["--engine", str(conf.path), *common],
                "conf": ["--engine", str(conf.path), *common, "--confidence", "{tmp}/confidence"]}
    with LoadMonitor() as load, tqdm(total=args.rounds * len(variants), desc="pipeline runs", unit="run",
                                     disable=None) as bar:
        cost = interleaved(variants, "demo", args.frames, args.rounds, out, "plain", bar.update)
    calibration = []
    with LoadMonitor() as calib_load:
        for precision in args.calibration_precisions:
            manifest = conf if precision == args.precision else _build(args, precision, True)
            calibration.append(measure_calibration(manifest, args.eval_images, spec.label_set))
    env["load_during_run"] = load.summary()
    env["load_during_calibration"] = calib_load.summary()
    result = {"model": args.model, "backend": args.backend, "precision": args.precision, "flip": args.flip,
              "input_size": list(plain.input_size), "command": command, "environment": env,
              "cost": {"video": "demo", "frames_per_run": args.frames, "rounds": args.rounds,
                       "sinks": "H.264 video + mask PNGs (+ confidence PNGs for conf)",
                       "fps": "steady FPS (after the first 10 frames) of each run, and CPU ms per frame "
                              "of pspnet-rt and its ffmpeg; ratios = median of the per-round ratios to "
                              "plain's run of the same round",
                       "artefacts": {"plain": str(plain.path), "conf": str(conf.path)},
                       "variants": cost},
              "calibration": calibration}
    write_outputs(result, out)
    return result


def measure_calibration(manifest: Any, images: int, label_set: str) -> dict[str, Any]:
    """The artefact's confidence against ground truth on held-out frames (the artefact's runner)."""
    from tqdm import tqdm

    from benchmarks.accuracy import open_eval_data
    from runtime.backends import artefact_runner
    from segdata.confidence import Reliability
    from segdata.frames import labels_to_size, to_model_input

    h, w = manifest.input_size
    dataset, indices = open_eval_data(None, images, (h, w), label_set)
    reliability = Reliability()
    runner = artefact_runner(manifest)
    try:
        for i in tqdm(indices, desc=f"calibration {manifest.precision}", unit="img", leave=False,
                      disable=None):
            sample = dataset[i]
            names = [manifest.output_name, manifest.confidence_name]
            out = runner.infer(to_model_input(sample.image, h, w), names)
            size = sample.label.shape[:2]
            reliability.update(labels_to_size(out[manifest.confidence_name], *size),
                               labels_to_size(out[manifest.output_name], *size), sample.label,
                               manifest.ignore_index)
        ran = runner.precision_ran
    finally:
        runner.deactivate()
    return {"artefact": str(manifest.path), "precision": manifest.precision, "precision_ran": ran,
            "backend": manifest.backend, "images": len(indices), "data": repr(dataset),
            **reliability.to_dict(THRESHOLDS)}


# ------------------------------------------------------------------------------------ output
def cost_rows(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    what = {"plain": "artefact without --confidence", "conf-unread": "--confidence artefact, output not read",
            "conf": "--confidence artefact + `--confidence DIR`"}
    for name, v in result["cost"]["variants"].items():
        ratio = v["fps_ratio_to_baseline"]
        cpu, cpu_ratio = v.get("median_cpu_ms_per_frame"), v.get("cpu_ratio_to_baseline")
        rows.append([name, what.get(name, name), v["status"] if v["status"] != "ok" else "ok",
                     "" if v["median_fps"] is None else f"{v['median_fps']:.2f}",
                     "" if ratio is None else f"{ratio:.3f}",
                     "" if ratio is None else f"{(1 - ratio) * 100:+.1f} %",
                     "" if cpu is None else f"{cpu:.0f}", "" if cpu_ratio is None else f"{cpu_ratio:.3f}",
                     str(v["precision_ran"] or "")])
    return rows


def calibration_rows(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    for c in result["calibration"]:
        cover = "; ".join(f">= {k['threshold']:g}: {k['share'] * 100:.1f} % px, "
                          + ("none" if k["accuracy"] is None else f"{k['accuracy'] * 100:.2f} % right")
                          for k in c["coverage"])
        rows.append([c["precision"], c["precision_ran"], str(c["images"]), f"{c['pixels']:,}",
                     f"{c['accuracy'] * 100:.2f} %", f"{c['mean_confidence'] * 100:.2f} %",
                     f"{c['ece'] * 100:.2f}", f"{c['mce'] * 100:.2f}", cover])
    return rows


COST_HEADER = ["variant", "what", "status", "pipeline FPS (median)", "FPS / plain", "FPS lost",
               "CPU ms / frame", "CPU / plain", "precision ran"]
CALIBRATION_HEADER = ["precision", "ran", "images", "pixels", "pixel accuracy", "mean confidence",
                      "ECE (points)", "MCE (points)", "kept if ignoring below threshold"]


def markdown_report(result: dict[str, Any]) -> str:
    h, w = result["input_size"]
    cost = result["cost"]
    lines = [header_block(f"Confidence output: cost and calibration ({result['model']} {h}x{w}, "
                          f"{result['backend']})", result["environment"], result["command"]), "",
             f"## Cost: `pspnet-rt` on the demo clip, {cost['frames_per_run']} frames per run, "
             f"{cost['rounds']} interleaved rounds, {result['precision']}"
             f"{' --flip' if result['flip'] else ''}", "",
             f"Sinks: {cost['sinks']}. {cost['fps']}.", "",
             markdown_table(COST_HEADER, cost_rows(result), align="lllrrrrrl"), "",
             "## Calibration on held-out frames", "",
             "Max softmax probability against correctness per pixel (15 equal bins; ECE = pixel-weighted "
             "mean |accuracy - confidence|, MCE = the largest bin's gap, in percentage points). "
             "Reliability diagram: `confidence.png`.", "",
             markdown_table(CALIBRATION_HEADER, calibration_rows(result), align="llrrrrrrl"), ""]
    return "\n".join(lines)


def reliability_figure(result: dict[str, Any], path: Path) -> Path:
    """Per precision: accuracy per confidence bin against the diagonal, and the pixels per bin."""
    from benchmarks.plots import _pyplot

    plt = _pyplot()
    runs = result["calibration"]
    fig, axes = plt.subplots(2, max(1, len(runs)), figsize=(4.2 * max(1, len(runs)), 6.4),
                             gridspec_kw={"height_ratios": [3, 1]}, squeeze=False)
    h, w = result["input_size"]
    fig.suptitle(f"{result['model']} {h}x{w} on {result['backend']}: reliability of the max softmax "
                 f"probability (held-out frames)", fontsize=10)
    for k, c in enumerate(runs):
        bins = c["per_bin"]
        centres = [(b["low"] + b["high"]) / 2 for b in bins]
        width = bins[0]["high"] - bins[0]["low"]
        ax = axes[0][k]
        ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="perfect calibration")
        filled = [(x, b) for x, b in zip(centres, bins) if b["pixels"]]
        ax.bar([x for x, _ in filled], [b["accuracy"] for _, b in filled], width * 0.9, color="#fc8d62",
               edgecolor="#b3541e", label="accuracy")
        ax.plot([b["confidence"] for _, b in filled], [b["accuracy"] for _, b in filled], ".", color="black",
                markersize=4, label="mean confidence in bin")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{c['precision']} ({c['precision_ran']}): ECE {c['ece'] * 100:.2f}, "
                     f"MCE {c['mce'] * 100:.1f}", fontsize=9)
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(True, alpha=0.3)
        ax = axes[1][k]
        ax.bar(centres, [b["pixels"] / max(1, c["pixels"]) for b in bins], width * 0.9, color="#8da0cb")
        ax.set_yscale("log")
        ax.set_xlim(0, 1)
        ax.set_xlabel("confidence (max softmax probability)")
        ax.set_ylabel("share of pixels")
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(result: dict[str, Any], out: Path) -> None:
    write_json(out / "confidence.json", result)
    write_text(out / "confidence.md", markdown_report(result))
    reliability_figure(result, out / "confidence.png")
    print(markdown_table(COST_HEADER, cost_rows(result)))
    print(markdown_table(CALIBRATION_HEADER, calibration_rows(result)))
    print(f"wrote {out / 'confidence.json'}, {out / 'confidence.md'} and {out / 'confidence.png'}",
          file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
