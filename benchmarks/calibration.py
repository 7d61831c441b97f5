"""`python -m benchmarks.calibration`: INT8 calibration methods side by side on held-out frames.

Builds one INT8 artefact per method (entropy, minmax, percentile) from the same calibration
frames and reports what each one's accuracy gate measured (mIoU vs ground truth, drop vs
FP32, pixel agreement with FP32) and its bare inference latency, interleaved with the FP32
artefact of the same backend so the speed-up ratio comes from one run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from artefact.manifest import load_manifest
from calib.quantize import METHODS
from clikit import ArgumentParser
from clikit import types as t
from clikit.signals import stoppable


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m benchmarks.calibration", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="demo", type=t.text("a model zoo name"))
    p.add_argument("--backend", default="openvino", choices=("openvino", "onnxruntime"))
    p.add_argument("--calib-images", type=t.integer(1, 100_000), default=200)
    p.add_argument("--eval-images", type=t.integer(1, 100_000), default=48)
    p.add_argument("--frames", type=t.positive_int, default=40, help="frames timed per artefact")
    p.add_argument("--max-miou-drop", type=t.number(at_least=0, at_most=100), default=100.0,
                   help="gate limit while comparing (default: report, do not fail)")
    p.add_argument("--artefacts", default=None, type=t.output_dir(),
                   help="artefact folder (default: the cache)")
    p.add_argument("--out", default="results", type=t.output_dir())
    return p


@stoppable("python -m benchmarks.calibration")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from artefact.manifest import ArtefactError
    from benchmarks.common import BenchmarkError
    from pspnet.errors import CheckpointError

    try:
        return _run(args)
    except (KeyError, ArtefactError, CheckpointError, BenchmarkError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"python -m benchmarks.calibration: {message}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from benchmarks.common import prepare_out
    from build_engine.api import build_artefact
    from calib.runners import predictor_for
    from calib.sources import load_frames

    out = prepare_out(args.out)
    common = {"backend": args.backend, "output": args.artefacts,
              "calib_images": args.calib_images, "eval_images": args.eval_images,
              "max_miou_drop": args.max_miou_drop}
    manifests = {"fp32": load_manifest(build_artefact(args.model, "fp32", args.backend,
                                                       output=args.artefacts))}
    for method in METHODS:
        manifests[method] = load_manifest(build_artefact(args.model, "int8", calib_method=method,
                                                         **common))
    height, width = manifests["fp32"].input_size
    frames = load_frames("synthetic:test", args.frames, height, width).frames
    runners = {k: predictor_for(args.backend, m.model_path, m.precision) for k, m in manifests.items()}
    times: dict[str, list[float]] = {k: [] for k in runners}
    for frame in frames[:3]:
        for run in runners.values():
            run(frame)  # warm-up
    for frame in frames:  # interleaved: drift hits every contender alike
        for key, run in runners.items():
            t0 = time.perf_counter()
            run(frame)
            times[key].append((time.perf_counter() - t0) * 1000)
    fp32_ms = float(np.median(times["fp32"]))
    # FP32's own mIoU comes from the gate, which scored FP32 on the very same held-out frames.
    fp32_gate = manifests[METHODS[0]].accuracy["gate"]
    rows = []
    for key, manifest in manifests.items():
        gate = fp32_gate if key == "fp32" else manifest.accuracy["gate"]
        rows.append({
            "artefact": key, "file": str(manifest.path),
            "miou": gate["fp32_miou"] if key == "fp32" else gate["miou"],
            "miou_drop_points": None if key == "fp32" else gate["miou_drop_points"],
            "pixel_agreement": None if key == "fp32" else gate["pixel_agreement"],
            "p50_ms": round(float(np.median(times[key])), 2),
            "speedup_vs_fp32": round(fp32_ms / float(np.median(times[key])), 2),
        })
    (out / "calibration.json").write_text(json.dumps({"model": args.model, "backend": args.backend,
                                                      "frames": len(frames), "rows": rows}, indent=2))
    lines = ["| artefact | mIoU | drop (points) | agreement with FP32 | p50 ms | speed-up vs FP32 |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        miou = "" if r["miou"] is None else f"{r['miou'] * 100:.2f}"
        drop = "" if r["miou_drop_points"] is None else f"{r['miou_drop_points']:.2f}"
        agree = "" if r["pixel_agreement"] is None else f"{r['pixel_agreement'] * 100:.2f} %"
        lines.append(f"| {r['artefact']} | {miou} | {drop} | {agree} | {r['p50_ms']} | "
                     f"{r['speedup_vs_fp32']}x |")
    table = "\n".join(lines)
    (out / "calibration.md").write_text(table + "\n")
    print(table)
    print(f"wrote {out / 'calibration.json'} and {out / 'calibration.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
