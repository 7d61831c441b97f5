"""`python -m benchmarks.calibration`: INT8 calibration methods side by side on held-out frames.

Builds one INT8 artefact per method (entropy, minmax, percentile) from the same calibration
frames and reports what each one's accuracy gate measured (mIoU vs ground truth, drop vs
FP32, pixel agreement with FP32) and its bare inference latency, timed interleaved with the
FP32 artefact of the same backend (benchmarks.timing, the loop every benchmark uses) so the
speed-up ratio comes from one run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import clikit
from benchmarks.common import markdown_table, parse_size, prepare_out, run_benchmark, write_json, write_text
from calib.quantize import METHODS
from clikit import positive_int

PROG = "benchmarks.calibration"
EXAMPLES = """\
examples:
  python -m benchmarks.calibration --out results
      the demo model on OpenVINO: FP32 and INT8 entropy / minmax / percentile (a few minutes)
  python -m benchmarks.calibration --backend onnxruntime --calib-images 50 --frames 10
exit codes: 0 ok, 1 a build or timing failed, 2 bad arguments
"""


def build_parser() -> argparse.ArgumentParser:
    p = clikit.parser(f"python -m {PROG}", __doc__, EXAMPLES)
    p.add_argument("--model", default="demo", type=clikit.non_empty("a model zoo name"))
    p.add_argument("--backend", default="openvino", choices=("openvino", "onnxruntime"))
    p.add_argument("--input-size", type=parse_size, metavar="HxW", help="default: the model's")
    p.add_argument("--calib-images", type=positive_int, default=200)
    p.add_argument("--eval-images", type=positive_int, default=48)
    p.add_argument("--frames", type=positive_int, default=40, help="frames timed per artefact")
    p.add_argument("--max-miou-drop", type=clikit.float_in(0, 100, "mIoU points"), default=100.0,
                   help="gate limit while comparing (default: report, do not fail)")
    p.add_argument("--artefacts", default=None, type=clikit.output_dir(),
                   help="artefact folder (default: the cache)")
    p.add_argument("--out", default="results", type=clikit.output_dir())
    clikit.add_verbose(p)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_benchmark(PROG, build_parser(), run, lambda result: None, argv)


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    from artefact.manifest import load_manifest
    from benchmarks.contenders import ContenderSpec, open_contender
    from benchmarks.timing import FramePath, run_interleaved, summarize
    from build_engine.api import build_artefact
    from calib.sources import load_frames

    prepare_out(args.out)  # before the builds: writable, and no other run writing it
    common = {"backend": args.backend, "output": args.artefacts, "input_size": args.input_size}
    gated = {"calib_images": args.calib_images, "eval_images": args.eval_images,
             "max_miou_drop": args.max_miou_drop}
    manifests = {"fp32": load_manifest(build_artefact(args.model, "fp32", **common))}
    for method in METHODS:
        manifests[method] = load_manifest(build_artefact(args.model, "int8", calib_method=method,
                                                         **common, **gated))
    height, width = manifests["fp32"].input_size
    frames = load_frames("synthetic:test", args.frames, height, width).frames
    contenders = [open_contender(ContenderSpec(key, "artefact", m.backend, m.precision, m.model,
                                               (height, width), manifest=str(m.path)))
                  for key, m in manifests.items()]
    try:
        path = FramePath(manifests["fp32"].classes, manifests["fp32"].palette)
        times = run_interleaved(contenders, frames, path, warmup=3)
    finally:
        for c in contenders:
            c.close()
    p50 = {key: summarize(times[key])["latency_ms"]["inference"]["p50"] for key in manifests}
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
            "p50_ms": round(p50[key], 2),
            "speedup_vs_fp32": round(p50["fp32"] / p50[key], 2),
        })
    result = {"model": args.model, "backend": args.backend, "frames": len(frames), "command": command,
              "rows": rows}
    out = Path(args.out)
    write_json(out / "calibration.json", result)
    table = markdown_table(["artefact", "mIoU", "drop (points)", "agreement with FP32", "p50 ms",
                            "speed-up vs FP32"], [_cells(r) for r in rows], align="l" * 6)
    write_text(out / "calibration.md", table + "\n")
    print(table)
    print(f"wrote {out / 'calibration.json'} and {out / 'calibration.md'}", file=sys.stderr)
    return result


def _cells(r: dict[str, Any]) -> list[str]:
    return [r["artefact"],
            "" if r["miou"] is None else f"{r['miou'] * 100:.2f}",
            "" if r["miou_drop_points"] is None else f"{r['miou_drop_points']:.2f}",
            "" if r["pixel_agreement"] is None else f"{r['pixel_agreement'] * 100:.2f} %",
            str(r["p50_ms"]), f"{r['speedup_vs_fp32']}x"]


if __name__ == "__main__":
    raise SystemExit(main())
