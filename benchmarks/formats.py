"""`python -m benchmarks`: every format this machine can build for a model, in one table.

Ultralytics' `benchmark` shape: one command builds (or finds in the cache) every backend x
precision, and for each says whether it is usable here (ok / built but failed its accuracy
gate / not available here and why), how big it is on disk, how accurate it is on held-out
frames (mIoU, pixels equal to PyTorch FP32), how fast (latency p50/p99 one frame at a time,
the `pspnet-rt` pipeline's FPS) and how close to the hardware (GMAC/s, share of its own
library's peak). The PyTorch rows (eager FP32, the BF16 peer, and with --compile the
torch.compile peer with its compile time) are the reference users know.

Everything comes from the other benchmarks' plumbing: contenders (build, open), the
evaluation protocol (segdata.evaluation, whole-image mode), the interleaved timing loop, the
peak probes and the pipeline run of `benchmarks.latency`; this module only orders and reports.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import clikit
from benchmarks.common import (
    BenchmarkError,
    LoadMonitor,
    describe_cpu,
    environment,
    fmt,
    header_block,
    load_note,
    markdown_table,
    now,
    parse_size,
    prepare_out,
    run_benchmark,
    text_table,
    write_json,
    write_text,
    zoo_model,
)
from benchmarks.contenders import ContenderSpec, open_contenders
from benchmarks.peak import PEAK_HEADER, ceiling_line, peak_rows, rate_text, share_text
from clikit import csv_list, non_negative_int, positive_int

log = logging.getLogger("benchmarks")
PROG = "benchmarks"
BACKENDS = ("openvino", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
GATE_FAILED = "failed: GateFailed: "

EXAMPLES = """\
examples:
  python -m benchmarks
      the demo model: PyTorch eager / BF16 peer, then OpenVINO, ONNX Runtime and TensorRT in
      FP32, FP16 and INT8 (TensorRT: not available without an NVIDIA GPU); writes
      results/formats.{json,md}
  python -m benchmarks --compile
      adds the torch.compile'd BF16 peer (compiling takes a minute or more; its time is shown)
  python -m benchmarks --model pspnet50_ade20k --frames 20 --images 20 --backends openvino
  python -m benchmarks --input-size 96x192 --frames 3 --images 2 --pipeline-frames 20 \\
        --backends onnxruntime --precisions fp32          # a smoke run
exit codes: 0 ok (a format that fails its accuracy gate is a result, not an error),
1 a build or a contender failed, 2 bad arguments
"""


def build_parser() -> argparse.ArgumentParser:
    p = clikit.parser(f"python -m {PROG}", __doc__, EXAMPLES)
    p.add_argument("--model", default="demo", type=clikit.non_empty("a model zoo name"),
                   help="model zoo name (default: the shipped demo model)")
    p.add_argument("--input-size", type=parse_size, metavar="HxW",
                   help="model input size (default: the model's)")
    p.add_argument("--weights", metavar="CKPT", type=clikit.input_file("a checkpoint file"),
                   help="a checkpoint instead of the model's shipped weights")
    p.add_argument("--backends", type=csv_list(BACKENDS), default=list(BACKENDS),
                   help="comma-separated (default: all; those absent here are listed as such)")
    p.add_argument("--precisions", type=csv_list(PRECISIONS), default=list(PRECISIONS),
                   help="comma-separated (default fp32,fp16,int8)")
    p.add_argument("--compile", action="store_true", help="add the torch.compile'd BF16 peer")
    p.add_argument("--no-pytorch", action="store_true",
                   help="artefacts only (no PyTorch rows; mIoU agreement then has no FP32 reference)")
    p.add_argument("--images", type=positive_int, default=100, metavar="N",
                   help="held-out labelled frames for mIoU (default 100)")
    p.add_argument("--data", metavar="SRC", type=clikit.non_empty("a labelled data source"),
                   help="labelled data for mIoU, as benchmarks.accuracy takes it (default: the synthetic "
                        "validation split at the model's input size, held out from training and calibration)")
    p.add_argument("--frames", type=positive_int, default=50, metavar="N",
                   help="timed frames of the demo clip per format, interleaved (default 50)")
    p.add_argument("--warmup", type=non_negative_int, default=3, metavar="K",
                   help="untimed frames per format first (default 3)")
    p.add_argument("--pipeline-frames", type=positive_int, default=60, metavar="N",
                   help="frames of each artefact's pspnet-rt pipeline run (default 60)")
    p.add_argument("--no-pipeline", action="store_true", help="skip the pspnet-rt runs")
    p.add_argument("--no-peak", action="store_true", help="skip the peak-rate probes")
    p.add_argument("--artefacts", metavar="DIR", type=clikit.output_dir(),
                   help="build cache folder (default: build_engine's)")
    p.add_argument("--calib-images", type=positive_int, metavar="N", help="INT8 calibration images")
    p.add_argument("--out", default="results", metavar="DIR", type=clikit.output_dir(),
                   help="writes DIR/formats.{json,md}")
    clikit.add_verbose(p)
    p.set_defaults(engine=None)  # the latency benchmark's contender list, without --engine
    return p


def main(argv: list[str] | None = None) -> int:
    return run_benchmark(PROG, build_parser(), run, _failures, argv)


def _failures(result: dict[str, Any]) -> str | None:
    failed = [r["name"] for r in result["formats"] if r["state"] == "failed"]
    return f"these formats failed: {', '.join(failed)} (see the status column)" if failed else None


# ------------------------------------------------------------------------------------- facts
def state_of(status: str) -> str:
    """ok | gate (built, failed its accuracy gate) | n/a (not available here) | failed."""
    if status == "ok":
        return "ok"
    if status.startswith(GATE_FAILED):
        return "gate"
    return "n/a" if status.startswith("not available") else "failed"


def size_on_disk_mb(spec: ContenderSpec) -> float | None:
    """An artefact's model file and companions (e.g. OpenVINO's .bin); PyTorch: the checkpoint."""
    if spec.kind == "artefact":
        if not spec.manifest:
            return None
        from artefact.manifest import load_manifest

        m = load_manifest(spec.manifest)
        files = [m.model_path, *(m.model_path.parent / name for name in m.companion_files)]
    else:
        from pspnet.zoo import get_spec

        path = Path(spec.weights_file) if spec.weights_file else get_spec(spec.model).weights_path
        files = [path] if path is not None else []
    existing = [f for f in files if f.is_file()]
    return round(sum(f.stat().st_size for f in existing) / 2**20, 1) if existing else None


# --------------------------------------------------------------------------------- the run
def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    from tqdm import tqdm

    from benchmarks.accuracy import open_eval_data
    from benchmarks.latency import add_pipeline_share, contender_specs, run_pipeline, work_per_frame
    from benchmarks.peak import PeakBracket, add_shares, int8_ceiling, libraries_for
    from benchmarks.timing import FramePath, add_speedups, run_interleaved, timed_entries
    from benchmarks.video import load_video
    from segdata.evaluation import Model, Protocol, evaluate, pad_value_bgr

    model_spec = zoo_model(args.model)
    out = prepare_out(args.out)
    size = tuple(args.input_size or model_spec.input_size)
    dataset, indices = open_eval_data(args.data, args.images, size, model_spec.label_set)
    env = environment()
    phases: dict[str, float] = {}

    t0 = time.perf_counter()
    specs = contender_specs(args, size)
    sizes = {s.name: size_on_disk_mb(s) for s in specs}
    clip = load_video("demo", args.frames, size)
    phases["builds_s"] = time.perf_counter() - t0
    contenders = open_contenders(specs)
    if not contenders:
        raise BenchmarkError("no format could run: " + "; ".join(f"{s.name}: {s.status}" for s in specs))

    # accuracy first: its frames also warm every contender up (and compile the torch.compile peer)
    t0 = time.perf_counter()
    reference = next((c.spec.name for c in contenders if c.spec.kind == "pytorch-eager"), None)
    protocol = Protocol("whole", size, pad_value_bgr(model_spec.mean, model_spec.channel_order))
    samples = (dataset[i] for i in tqdm(indices, desc="mIoU", unit="img", disable=None))
    scored = evaluate([Model(c.spec.name, labels=c.infer) for c in contenders], samples, protocol,
                      model_spec.num_classes, reference=reference)
    phases["accuracy_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    path = FramePath(model_spec.classes, model_spec.palette)
    bracket = PeakBracket(libraries_for(c.spec.to_dict() for c in contenders), not args.no_peak)
    with LoadMonitor() as load, bracket, \
            tqdm(total=len(clip.frames), desc="latency", unit="frame", disable=None) as bar:
        times = run_interleaved(contenders, clip.frames, path, args.warmup, bar.update)
    env["load_during_run"] = load.summary()
    phases["timing_s"] = time.perf_counter() - t0 - bracket.seconds
    phases["peak_probes_s"] = bracket.seconds
    entries = timed_entries(specs, contenders, times, per_frame=False)
    del contenders
    add_speedups(entries)
    gmac = work_per_frame(args.model, size)
    if gmac:
        add_shares(entries, bracket.peaks, gmac)

    t0 = time.perf_counter()
    pipelines: dict[str, dict[str, Any]] = {}
    if not args.no_pipeline:
        with tempfile.TemporaryDirectory(prefix="pspnet-formats-") as tmp:
            for spec in specs:
                if spec.ok and spec.kind == "artefact":
                    print(f"pspnet-rt pipeline on {spec.name} ...", file=sys.stderr, flush=True)
                    p = run_pipeline(spec, "demo", args.pipeline_frames, Path(tmp), f"{spec.name}.jsonl")
                    p.pop("stats_jsonl", None)
                    add_pipeline_share(p, spec, entries, gmac)
                    pipelines[spec.name] = p
    phases["pipelines_s"] = time.perf_counter() - t0

    formats = [format_entry(e, scored, reference, sizes.get(e["name"]), pipelines.get(e["name"]))
               for e in entries]
    result = {"benchmark": "formats", "created": now(), "command": command, "environment": env,
              "config": {"model": args.model, "input_size": list(size), "weights": specs[0].weights,
                         "accuracy_data": dataset.description, "accuracy_images": scored.images,
                         "timing": f"{len(clip.frames)} frames of {clip.description}, interleaved, "
                                   f"{args.warmup} warm-up frames each (after the accuracy pass)",
                         "pipeline_frames": None if args.no_pipeline else args.pipeline_frames},
              "gmac_per_frame": round(gmac, 3) if gmac else None, "formats": formats,
              "peak": bracket.to_dict(), "int8_ceiling": int8_ceiling(entries, bracket.peaks),
              "phases_s": {k: round(v, 1) for k, v in phases.items()}}
    write_json(out / "formats.json", result)
    write_text(out / "formats.md", markdown_report(result))
    print(terminal_report(result), flush=True)
    return result


def format_entry(entry: dict[str, Any], scored: Any, reference: str | None, size_mb: float | None,
                 pipeline: dict[str, Any] | None) -> dict[str, Any]:
    """One row's facts: the timed entry plus accuracy, size and the pipeline run."""
    out = {**entry, "state": state_of(entry["status"]), "size_mb": size_mb}
    score = scored.scores.get(entry["name"])
    if score is not None:
        out["miou"] = score.cm.miou()
        out["pixel_agreement_with_pytorch_fp32"] = (round(score.agreement, 6) if score.agreement is not None
                                                    else None if entry["name"] != reference else 1.0)
    if pipeline is not None:
        out["pipeline"] = pipeline
    return out


# ------------------------------------------------------------------------------- reporting
HEADER = ["format", "ran", "status", "size MB", "mIoU %", "= FP32 %", "p50 / p99 ms", "FPS",
          "pipeline FPS", "x eager", "x baseline", "GMAC/s", "share of peak", "ready s"]


def _status_cell(r: dict[str, Any]) -> str:
    return {"ok": "ok", "gate": "failed the gate", "n/a": "not available", "failed": "FAILED"}[r["state"]]


def _ready_s(r: dict[str, Any]) -> str:
    """Seconds before the first frame: torch.compile's compile, an artefact's backend compile."""
    if r.get("compile") and r.get("compile_s") is not None:
        return f"{r['compile_s']:.0f} (torch.compile)"
    return fmt(r.get("startup_s"), ".1f")


def row(r: dict[str, Any]) -> list[str]:
    head = [r.get("label") or r["name"], str(r.get("precision_ran") or ""), _status_cell(r),
            fmt(r.get("size_mb"), ".1f")]
    if r["state"] != "ok":
        return [*head, *[""] * (len(HEADER) - len(head))]
    lat, sp = r["latency_ms"], r.get("speedup") or {}
    agree = r.get("pixel_agreement_with_pytorch_fp32")
    p = r.get("pipeline") or {}
    return [*head, fmt(None if r.get("miou") is None else r["miou"] * 100, ".2f"),
            fmt(None if agree is None else agree * 100, ".2f"),
            f"{lat['inference']['p50']:.1f} / {lat['inference']['p99']:.1f}",
            fmt(r["fps"]["pipeline_sequential"], ".1f"),
            fmt(p.get("fps_after_10_frames") or p.get("fps"), ".1f") if p.get("status") == "ok" else
            ("–" if not p else "failed"),
            fmt(sp.get("vs_pytorch_eager_fp32"), ".1f"), fmt(sp.get("vs_baseline_0.6s_per_frame"), ".1f"),
            rate_text(r.get("gmac_per_s")), share_text(r), _ready_s(r)]


def status_lines(result: dict[str, Any]) -> list[str]:
    """Why a format has no figures, one line each."""
    lines = []
    for r in result["formats"]:
        if r["state"] == "gate":
            why = r["status"].removeprefix(GATE_FAILED).splitlines()[0]
            lines.append(f"{r['label']}: built, but failed its accuracy gate (no artefact written): {why}")
        elif r["state"] != "ok":
            lines.append(f"{r['label']}: {r['status']}")
        p = r.get("pipeline") or {}
        if p and p.get("status") != "ok":
            lines.append(f"{r['label']} pipeline: {p.get('status')}")
    return lines


def _notes(result: dict[str, Any]) -> list[str]:
    cfg = result["config"]
    return [f"mIoU on {cfg['accuracy_images']} held-out frames of {cfg['accuracy_data']} (whole image); "
            "*= FP32* = pixels equal to PyTorch eager FP32's class map",
            f"latency: {cfg['timing']}; p50 / p99 of one blocking inference call; *FPS* = one frame at a "
            "time, pre + inference + post; *x eager* / *x baseline*: mean whole-frame time vs PyTorch eager "
            "FP32 and vs the 2017 baseline's 0.6 s/frame",
            f"*pipeline FPS*: `pspnet-rt --video demo` on the artefact ({cfg['pipeline_frames']} frames, "
            "steady rate after the first 10; capture, inference, render and masks overlap)",
            f"*GMAC/s*: {fmt(result.get('gmac_per_frame'), '.2f')} GMAC per frame / mean inference time; "
            "*share of peak*: against the peak of the contender's own library at the precision it ran "
            "(table below)",
            "*ready s*: opening the format (OpenVINO compile, ORT session) or, for torch.compile, "
            "compiling on the first frame"]


def terminal_report(result: dict[str, Any]) -> str:
    cfg = result["config"]
    h, w = cfg["input_size"]
    lines = [f"every format of {cfg['model']} ({cfg['weights']}) at {h}x{w}",
             f"machine: {describe_cpu(result['environment'])}",
             *[f"WARNING: {n}" for n in [load_note(result["environment"].get("load_during_run"))] if n], "",
             text_table(HEADER, [row(r) for r in result["formats"]]), *status_lines(result)]
    peak = result.get("peak") or {}
    if peak.get("probes"):
        lines += ["", text_table(PEAK_HEADER, peak_rows(peak["probes"]))]
    ceiling = ceiling_line(result.get("int8_ceiling"))
    if ceiling:
        lines.append(ceiling)
    ph = result.get("phases_s") or {}
    lines.append(f"run: {sum(ph.values()):.0f} s (" + ", ".join(f"{k.removesuffix('_s')} {v:.0f} s"
                                                            for k, v in ph.items()) + ")")
    return "\n".join(lines)


def markdown_report(result: dict[str, Any]) -> str:
    parts = [header_block("Every format", result["environment"], result["command"]),
             markdown_table(HEADER, [row(r) for r in result["formats"]]), "",
             *[f"- {line}" for line in status_lines(result)], "",
             *[f"- {line}" for line in _notes(result)], ""]
    peak = result.get("peak") or {}
    if peak.get("probes"):
        parts += ["## Peak rates of this machine (same run)", "",
                  markdown_table(PEAK_HEADER, peak_rows(peak["probes"]), "llrrr"), "",
                  f"{peak['method']}.", ""]
    ceiling = ceiling_line(result.get("int8_ceiling"))
    if ceiling:
        parts += [ceiling + ".", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    raise SystemExit(main())
