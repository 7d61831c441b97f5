"""`python -m benchmarks.flip`: what flip at inference (`python -m build_engine --flip`) gains and costs.

Per precision, two artefacts of the same model and backend: plain, and --flip (the graph runs the
image and its mirror as one batch of two and averages their logits). One table:
  mIoU      on held-out labelled frames (the accuracy benchmark's synthetic:val at the model's
            size), whole-image protocol through the runtime backend users run, both artefacts in
            the same loop over the same frames (segdata.evaluation)
  latency   bare inference p50, the artefacts timed interleaved frame by frame (benchmarks.timing)
  pipeline  `pspnet-rt` on the demo clip writing a video and masks, the variants interleaved
            round by round (benchmarks.pipeline_runs), FPS and the per-round ratio to plain's
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import clikit
from benchmarks.common import (
    BenchmarkError,
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

PROG = "benchmarks.flip"
EXAMPLES = """\
examples:
  python -m benchmarks.flip --out results
      the demo model on OpenVINO, FP32 and INT8, plain vs --flip: mIoU on 100 held-out frames,
      bare latency interleaved on 40 frames, 3 interleaved rounds of 150-frame pipeline runs
  python -m benchmarks.flip --backend onnxruntime --precisions fp32 --images 20 --rounds 1
exit codes: 0 ok, 1 a build or a run failed, 2 bad arguments or data
"""


def build_parser() -> argparse.ArgumentParser:
    p = clikit.parser(f"python -m {PROG}", __doc__, EXAMPLES)
    p.add_argument("--model", default="demo", type=clikit.non_empty("a model zoo name"))
    p.add_argument("--backend", default="openvino", choices=("openvino", "onnxruntime"))
    p.add_argument("--precisions", type=clikit.csv_list(("fp32", "fp16", "int8")), default=["fp32", "int8"],
                   metavar="P,P", help="precisions compared (default fp32,int8)")
    p.add_argument("--input-size", type=parse_size, metavar="HxW", help="default: the model's")
    p.add_argument("--images", type=positive_int, default=100, help="held-out frames for mIoU")
    p.add_argument("--latency-frames", type=positive_int, default=40, help="frames timed per artefact")
    p.add_argument("--frames", type=positive_int, default=150, help="demo frames per pipeline run")
    p.add_argument("--rounds", type=positive_int, default=3, help="interleaved rounds of pipeline runs")
    p.add_argument("--artefacts", default=None, type=clikit.output_dir(),
                   help="artefact folder (default: the cache)")
    p.add_argument("--out", default="results", type=clikit.output_dir())
    clikit.add_verbose(p)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_benchmark(PROG, build_parser(), run, _failures, argv)


def _failures(result: dict[str, Any]) -> str | None:
    bad = [f"{r['artefact']}: {r['pipeline_status']}" for r in result["rows"] if r["pipeline_status"] != "ok"]
    return "; ".join(bad) or None


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    from tqdm import tqdm

    from artefact.manifest import load_manifest
    from benchmarks.accuracy import artefact_evaluator, open_eval_data
    from benchmarks.contenders import manifest_spec, open_contender
    from benchmarks.pipeline_runs import interleaved, median_ratio, run_fps
    from benchmarks.timing import FramePath, run_interleaved, summarize
    from build_engine.api import build_artefact
    from calib.sources import load_frames
    from segdata.evaluation import Protocol, evaluate, pad_value_bgr

    spec = zoo_model(args.model)
    out = prepare_out(args.out)
    manifests: dict[str, Any] = {}
    for precision in args.precisions:
        for flip in (False, True):
            key = f"{precision}{'-flip' if flip else ''}"
            print(f"artefact {args.backend} {key}: building or finding in the cache ...", file=sys.stderr,
                  flush=True)
            path = build_artefact(args.model, precision, args.backend, args.input_size, output=args.artefacts,
                                  flip=flip)
            manifests[key] = load_manifest(path)
    first = next(iter(manifests.values()))
    size = (first.height, first.width)
    env = environment()
    specs = {}
    for key, m in manifests.items():
        specs[key] = manifest_spec(m.path)
        specs[key].name = key
    with LoadMonitor() as load:
        # mIoU: every artefact in one loop over the same held-out frames
        dataset, indices = open_eval_data(None, args.images, size, spec.label_set)
        evaluators = [artefact_evaluator(s, needs_logits=False) for s in specs.values()]
        protocol = Protocol("whole", size, pad_value_bgr(spec.mean, spec.channel_order))
        samples = (dataset[i] for i in tqdm(indices, desc="mIoU", unit="img", disable=None))
        try:
            scored = evaluate([e.model for e in evaluators], samples, protocol, spec.num_classes)
        finally:
            for ev in evaluators:
                ev.close()
        if scored.images == 0:
            raise BenchmarkError(f"{dataset.description} has no labels")
        ran = {e.spec.name: e.precision_ran for e in evaluators}
        # bare latency, interleaved frame by frame
        frames = load_frames("synthetic:test", args.latency_frames, *size).frames
        contenders = [open_contender(s) for s in specs.values()]
        try:
            times = run_interleaved(contenders, frames, FramePath(first.classes, first.palette), warmup=3)
        finally:
            for c in contenders:
                c.close()
        p50 = {k: summarize(times[k])["latency_ms"]["inference"]["p50"] for k in specs}
        # whole pipeline runs, interleaved round by round
        variants = {k: ["--engine", str(m.path), "--output", "{tmp}/out.mp4", "--masks", "{tmp}/masks"]
                    for k, m in manifests.items()}
        with tqdm(total=args.rounds * len(variants), desc="pipeline runs", unit="run", disable=None) as bar:
            pipeline = interleaved(variants, "demo", args.frames, args.rounds, out, next(iter(variants)),
                                   bar.update)
    env["load_during_run"] = load.summary()
    rows = []
    for key, m in manifests.items():
        base = key.removesuffix("-flip")
        miou, base_miou = scored.scores[key].cm.miou(), scored.scores[base].cm.miou()
        mine, theirs = pipeline[key]["runs"], pipeline[base]["runs"]
        rows.append({"artefact": key, "precision": m.precision, "precision_ran": ran[key], "flip": m.flip,
                     "file": str(m.path), "miou": round(float(miou), 5),
                     "miou_gain_points": round(float(miou - base_miou) * 100, 3),
                     "inference_p50_ms": round(p50[key], 2),
                     "inference_cost_x": round(p50[key] / p50[base], 3),
                     "pipeline_fps": pipeline[key]["median_fps"], "pipeline_status": pipeline[key]["status"],
                     "pipeline_fps_ratio": median_ratio(mine, theirs, run_fps),
                     "pipeline_cpu_ms_per_frame": pipeline[key]["median_cpu_ms_per_frame"],
                     "pipeline_cpu_ratio": median_ratio(mine, theirs, lambda x: x.get("cpu_ms_per_frame"))})
    result = {"model": args.model, "backend": args.backend, "input_size": list(size), "command": command,
              "environment": env, "images": scored.images, "data": repr(dataset),
              "latency_frames": len(frames), "pipeline": {"video": "demo", "frames_per_run": args.frames,
                                                          "rounds": args.rounds, "runs": pipeline},
              "rows": rows}
    write_outputs(result, out)
    return result


HEADER = ["artefact", "ran", "mIoU", "gain (points)", "inference p50 ms", "x plain", "pipeline FPS",
          "FPS / plain", "pipeline CPU ms / frame", "CPU / plain"]


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    return [[r["artefact"], str(r["precision_ran"]), f"{r['miou'] * 100:.2f}",
             f"{r['miou_gain_points']:+.2f}" if r["flip"] else "",
             f"{r['inference_p50_ms']:.1f}", f"{r['inference_cost_x']:.2f}x" if r["flip"] else "",
             "" if r["pipeline_fps"] is None else f"{r['pipeline_fps']:.2f}",
             f"{r['pipeline_fps_ratio']:.3f}" if r["flip"] and r["pipeline_fps_ratio"] else "",
             "" if r["pipeline_cpu_ms_per_frame"] is None else f"{r['pipeline_cpu_ms_per_frame']:.0f}",
             f"{r['pipeline_cpu_ratio']:.2f}x" if r["flip"] and r["pipeline_cpu_ratio"] else ""]
            for r in result["rows"]]


def markdown_report(result: dict[str, Any]) -> str:
    h, w = result["input_size"]
    p = result["pipeline"]
    return "\n".join([
        header_block(f"Flip at inference: mIoU gain and cost ({result['model']} {h}x{w}, "
                     f"{result['backend']})", result["environment"], result["command"]), "",
        f"mIoU on {result['images']} held-out frames ({result['data']}), whole-image protocol through the "
        f"runtime backend; inference p50 from {result['latency_frames']} frames timed interleaved; pipeline: "
        f"`pspnet-rt` on the demo clip ({p['frames_per_run']} frames, video + masks), {p['rounds']} "
        "interleaved rounds, steady FPS (after 10 frames), ratio = median of per-round ratios.", "",
        markdown_table(HEADER, table_rows(result), align="llrrrrrrrr"), ""])


def write_outputs(result: dict[str, Any], out: Path) -> None:
    write_json(out / "flip.json", result)
    write_text(out / "flip.md", markdown_report(result))
    print(markdown_table(HEADER, table_rows(result)))
    print(f"wrote {out / 'flip.json'} and {out / 'flip.md'}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
