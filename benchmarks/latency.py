"""`python -m benchmarks.latency`: every contender on the same video frames, in one run, interleaved.

Contenders: PyTorch eager FP32 (what users run today), the strongest plain-PyTorch peer
(channels_last + BF16 autocast, optionally torch.compile), and each backend x precision the
machine can run, built through build_engine (cached). Each figure is labelled with the
precision that really ran. Per frame: pre (to_model_input), inference, post (resize + overlay
render) — FPS figures that hide pre/post are what users complain about. Then, per contender,
peak RSS in a fresh process, and the whole threaded pipeline (`pspnet-rt`) on the OpenVINO
INT8 artefact for the FPS a user really gets.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
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
    out_folder,
    parse_size,
    ratio,
    run_benchmark,
    summarize_ms,
    text_table,
    write_json,
    write_text,
    zoo_model,
)
from benchmarks.contenders import (
    ContenderSpec,
    artefact_spec,
    manifest_spec,
    open_contenders,
    pytorch_specs,
    select_combos,
    unique_names,
)
from benchmarks.peak import PEAK_HEADER, ceiling_line, peak_rows, rate_text, share_text
from benchmarks.probe import run_child
from clikit import csv_list, non_negative_int, positive_int

log = logging.getLogger("benchmarks")
PROG = "benchmarks.latency"
PIPELINE_CONTENDER = "openvino-int8"
PIPELINE_TARGET_X = 15.0  # target: OpenVINO INT8 whole pipeline >= 15x PyTorch eager FP32 FPS

EXAMPLES = """\
examples:
  python -m benchmarks.latency --frames 100 --out results/
      the demo model on 100 frames of the demo clip: PyTorch eager/peer, OpenVINO FP32/FP16/INT8,
      ONNX Runtime FP32/INT8 (TensorRT where a GPU exists), then RSS probes and pspnet-rt
  python -m benchmarks.latency --video drive.mp4 --frames 50 --model pspnet50_ade20k
  python -m benchmarks.latency --engine a.json b.json --frames 30 --no-rss
      your own artefacts beside the PyTorch baselines
  python -m benchmarks.latency --frames 3 --input-size 96x192 --backends openvino --precisions fp32
      a seconds-long smoke run
exit codes: 0 ok, 1 a benchmark failed, 2 bad arguments
"""


def build_parser() -> argparse.ArgumentParser:
    p = clikit.parser(f"python -m {PROG}", __doc__, EXAMPLES)
    p.add_argument("--video", default="demo", metavar="SRC",
                   help="demo (synthetic street clip at the model's size), a video file, a folder or glob")
    p.add_argument("--frames", type=positive_int, default=100, metavar="N", help="timed frames (default 100)")
    p.add_argument("--warmup", type=non_negative_int, default=5, metavar="K",
                   help="untimed frames per contender first (default 5)")
    p.add_argument("--out", default="results", metavar="DIR", help="writes DIR/latency.{json,md,png}")
    p.add_argument("--model", default="demo", help="model zoo name (default: the shipped demo model)")
    p.add_argument("--input-size", type=parse_size, metavar="HxW",
                   help="model input size (default: the model's)")
    p.add_argument("--weights", metavar="CKPT",
                   help="a checkpoint instead of the model's shipped weights (PyTorch and the builds)")
    p.add_argument("--engine", nargs="+", metavar="MANIFEST", help="use these artefacts instead of building")
    p.add_argument("--backends", type=csv_list(("openvino", "onnxruntime", "tensorrt")),
                   help="comma-separated (default: openvino, onnxruntime, tensorrt where present)")
    p.add_argument("--precisions", type=csv_list(("fp32", "fp16", "int8")), help="comma-separated")
    p.add_argument("--artefacts", metavar="DIR", help="build cache folder (default: build_engine's)")
    p.add_argument("--calib-images", type=positive_int, default=None, metavar="N",
                   help="INT8 calibration images (default: build_engine's)")
    p.add_argument("--no-pytorch", action="store_true", help="leave out the PyTorch baselines")
    p.add_argument("--compile", action="store_true",
                   help="add torch.compile'd PyTorch peer (compiling takes minutes)")
    p.add_argument("--no-rss", action="store_true", help="skip the per-contender peak-RSS subprocesses")
    p.add_argument("--rss-frames", type=positive_int, default=3, metavar="N", help="frames per RSS probe")
    p.add_argument("--no-pipeline", action="store_true", help="skip the pspnet-rt whole-pipeline run")
    p.add_argument("--no-peak", action="store_true",
                   help="skip the peak-rate probes (one large GEMM per precision and library, before and "
                        "after the timing loop, a few seconds each)")
    p.add_argument("--pipeline-frames", type=positive_int, metavar="N", help="default: --frames")
    p.add_argument("--pipeline-contender", default=PIPELINE_CONTENDER, metavar="NAME",
                   help=f"artefact pspnet-rt runs (default {PIPELINE_CONTENDER}, the x15 target)")
    clikit.add_verbose(p)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_benchmark(PROG, build_parser(), run, _failures, argv)


def _failures(result: dict[str, Any]) -> str | None:
    failed = [c["name"] for c in result["contenders"] if c["status"].startswith("failed")]
    return f"these contenders failed: {', '.join(failed)} (see the status column)" if failed else None



# --------------------------------------------------------------------------------- the run
def contender_specs(args: argparse.Namespace, size: tuple[int, int]) -> list[ContenderSpec]:
    specs: list[ContenderSpec] = []
    if not args.no_pytorch:
        specs += pytorch_specs(args.model, size, args.compile, args.weights)
    if args.engine:
        specs += [manifest_spec(m) for m in args.engine]
        return unique_names(specs)
    build: dict[str, Any] = {}
    if args.calib_images:
        build["calib_images"] = args.calib_images
    for backend, precision in select_combos(args.backends, args.precisions):
        print(f"artefact {backend} {precision}: building or finding in the cache ...", file=sys.stderr,
              flush=True)
        specs.append(artefact_spec(args.model, backend, precision, size, args.artefacts, args.weights,
                                   **build))
    return unique_names(specs)


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    from tqdm import tqdm

    from benchmarks.peak import PeakBracket, add_shares, int8_ceiling, libraries_for
    from benchmarks.probe import measure_rss
    from benchmarks.timing import FramePath, add_speedups, run_interleaved, timed_entries
    from benchmarks.video import load_video
    from pspnet.zoo import get_spec

    model_spec = zoo_model(args.model)
    out = out_folder(args.out)
    env = environment()
    size = tuple(args.input_size or model_spec.input_size)
    if args.engine:
        from artefact.manifest import ArtefactError

        try:
            first = manifest_spec(args.engine[0])
        except ArtefactError as exc:
            raise BenchmarkError(str(exc)) from None
        size, args.model = first.input_size, first.model
        model_spec = get_spec(args.model)
    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    clip = load_video(args.video, args.frames, size)
    specs = contender_specs(args, size)
    phases["frames_and_artefacts_s"] = time.perf_counter() - t0

    contenders = open_contenders(specs)
    if not contenders:
        raise BenchmarkError("no contender could run: " + "; ".join(f"{s.name}: {s.status}" for s in specs))
    print(f"timing {len(contenders)} contenders on {len(clip.frames)} frames of {clip.description}, "
          f"interleaved, {args.warmup} warm-up frames each", file=sys.stderr, flush=True)
    path = FramePath(model_spec.classes, model_spec.palette)
    t0 = time.perf_counter()
    bracket = PeakBracket(libraries_for(c.spec.to_dict() for c in contenders), not args.no_peak)
    with LoadMonitor() as load, bracket, \
            tqdm(total=len(clip.frames), desc="latency", unit="frame", disable=None) as bar:
        times = run_interleaved(contenders, clip.frames, path, args.warmup, bar.update)
    env["load_during_run"] = load.summary()
    phases["timing_s"] = time.perf_counter() - t0 - bracket.seconds
    phases["peak_probes_s"] = bracket.seconds

    results = timed_entries(specs, contenders, times)
    del contenders
    add_speedups(results)
    gmac = work_per_frame(args.model, size)
    if gmac:
        add_shares(results, bracket.peaks, gmac)

    t0 = time.perf_counter()
    if not args.no_rss:
        for entry, spec in zip(results, specs):
            if spec.ok and entry["status"] == "ok" and spec.compile:
                entry["memory"] = {"error": "not probed: a fresh process would compile for minutes"}
            elif spec.ok and entry["status"] == "ok":
                print(f"peak RSS of {spec.name} in a fresh process ...", file=sys.stderr, flush=True)
                entry["memory"] = measure_rss(spec, args.video, args.rss_frames)

    phases["rss_probes_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pipeline = None
    if not args.no_pipeline:
        target = next((s for s in specs if s.name == args.pipeline_contender and s.ok), None)
        if target is None or target.kind != "artefact":
            pipeline = {"status": f"skipped: no {args.pipeline_contender} artefact in this run"}
        else:
            print(f"whole pipeline: pspnet-rt on {target.name} ...", file=sys.stderr, flush=True)
            with LoadMonitor() as load:
                pipeline = run_pipeline(target, args.video, args.pipeline_frames or args.frames, out)
            pipeline["load_during_run"] = load.summary()
            add_pipeline_share(pipeline, target, results, gmac)
            eager = next((r for r in results if r["kind"] == "pytorch-eager" and r["status"] == "ok"), None)
            if eager and pipeline.get("fps"):
                x = ratio(pipeline["fps"], eager["fps"]["pipeline_sequential"])
                pipeline["speedup_vs_pytorch_eager_fp32"] = x
                if target.name == PIPELINE_CONTENDER:
                    pipeline["target"] = {"min_speedup": PIPELINE_TARGET_X,
                                          "met": x is not None and x >= PIPELINE_TARGET_X}
                # the pipeline cannot beat its own network: the best one-frame-at-a-time ratio
                # of this run is the ceiling its speed-up is read against
                pipeline["best_contender_speedup_vs_eager"] = max(
                    ((r.get("speedup") or {}).get("vs_pytorch_eager_fp32") or 0.0 for r in results),
                    default=None)

    phases["pipeline_s"] = time.perf_counter() - t0
    unavailable = [{"name": s.name, "status": s.status} for s in specs if not s.ok]
    result = {
        "benchmark": "latency", "created": now(), "command": command, "environment": env,
        "config": {"video": args.video, "video_description": clip.description, "frames": len(clip.frames),
                   "frame_size": list(clip.size), "warmup": args.warmup, "model": args.model,
                   "input_size": list(size), "weights": specs[0].weights if specs else None,
                   "order": "interleaved: round-robin per frame, the first contender rotating per frame",
                   "stages": {"pre": "segdata.frames.to_model_input (resize to the model input)",
                              "inference": "one blocking infer() (latency hint); PyTorch: the fused "
                                           "module incl. normalise, resize, argmax",
                              "post": "labels_to_size + present_classes + overlay render with legend "
                                      "(runtime.render)"},
                   "threads": "each library's default on this machine (all usable cores)"},
        "contenders": results, "unavailable": unavailable, "pipeline": pipeline,
        "gmac_per_frame": round(gmac, 3) if gmac else None, "peak": bracket.to_dict(),
        "int8_ceiling": int8_ceiling(results, bracket.peaks),
        "phases_s": {k: round(v, 1) for k, v in phases.items()},
    }
    result["environment"]["load_average_end"] = list(os.getloadavg())
    write_outputs(result, out)
    print(terminal_report(result), flush=True)
    return result


def work_per_frame(model: str, size: tuple[int, int]) -> float | None:
    """GMAC per frame (counted with torch on the meta device); None where torch is absent."""
    from benchmarks.work import gmac_per_frame

    try:
        return gmac_per_frame(model, *size)
    except ImportError:
        return None


def add_pipeline_share(pipeline: dict[str, Any], spec: ContenderSpec, results: list[dict[str, Any]],
                       gmac: float | None) -> None:
    """The whole pipeline's sustained GMAC/s (steady FPS x work per frame) against the peak its
    contender's share used."""
    fps = pipeline.get("fps_after_10_frames") or pipeline.get("fps")
    entry = next((r for r in results if r["name"] == spec.name), {})
    peak = entry.get("peak") or {}
    if not gmac or not fps:
        return
    rate = gmac * fps
    pipeline["gmac_per_s"] = round(rate, 1)
    pipeline["peak"] = {"probe": peak.get("probe"), "gmac_per_s": peak.get("gmac_per_s"),
                        "share": round(rate / peak["gmac_per_s"], 3) if peak.get("gmac_per_s") else None}


def run_pipeline(spec: ContenderSpec, video: str, frames: int, out: Path,
                 stats_name: str = "latency_pipeline_stats.jsonl") -> dict[str, Any]:
    """`pspnet-rt` in a subprocess writing a video and masks; its stats JSONL (kept as
    out/stats_name) -> stage figures."""
    stats_path = out / stats_name
    with tempfile.TemporaryDirectory(prefix="pspnet-bench-") as tmp:
        summary_path = Path(tmp) / "summary.json"
        cmd = [sys.executable, "-m", "runtime", "--video", video, "--engine", str(spec.manifest),
               "--max-frames", str(frames), "--output", str(Path(tmp) / "out.mp4"),
               "--masks", str(Path(tmp) / "masks"), "--stats", str(stats_path),
               "--summary-json", str(summary_path)]
        if video == "demo":
            cmd += ["--demo-frames", str(frames)]
        shown = ["pspnet-rt", *cmd[3:]]
        try:
            done = run_child(cmd, timeout=1800)
        except subprocess.TimeoutExpired:
            return {"status": "failed: pspnet-rt timed out", "command": shown}
        if done.returncode != 0 or not summary_path.is_file():
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return {"status": f"failed: pspnet-rt exited {done.returncode}: {tail[:300]}", "command": shown}
        summary = json.loads(summary_path.read_text())
    records = [json.loads(line) for line in stats_path.read_text().splitlines() if line.strip()]
    stages: dict[str, Any] = {}
    for key in ("capture", "pre", "inference", "post", "render", "write", "e2e"):
        values = [r[f"{key}_ms"] for r in records if f"{key}_ms" in r]
        if values:
            stages[key] = summarize_ms(values)
    # The summary's FPS counts from the first frame, so warm-up (every infer request's first
    # run) weighs on short runs; the steady rate leaves out the first 10 frames.
    stamps = [r["time"] for r in records if "time" in r]
    steady = None
    if len(stamps) >= 20 and stamps[-1] > stamps[10]:
        steady = round((len(stamps) - 11) / (stamps[-1] - stamps[10]), 3)
    backend = summary.get("backend", {})
    return {"status": "ok", "contender": spec.name, "command": shown, "frames": summary.get("frames"),
            "fps": summary.get("fps"), "fps_after_10_frames": steady, "wall_s": summary.get("wall_s"),
            "startup_s": summary.get("startup_s"),
            "peak_rss_mb": summary.get("peak_rss_mb"), "dropped": summary.get("dropped"),
            "precision_ran": backend.get("precision_ran"), "in_flight": backend.get("in_flight"),
            "hint": backend.get("hint"), "stages_ms": stages, "stats_jsonl": str(stats_path),
            "note": "threaded pipeline: capture, inference, render and write (H.264 video + mask PNGs) "
                    "overlap, so its FPS exceeds 1 / (sum of stage times)"}


# ------------------------------------------------------------------------------- reporting
def _row(r: dict[str, Any]) -> list[str]:
    if r["status"] != "ok":
        return [r.get("label") or r["name"], "n/a" if "not available" in r["status"] else "FAILED",
                *[""] * (len(HEADER) - 2)]
    lat, sp = r["latency_ms"], r.get("speedup") or {}
    mem = r.get("memory") or {}
    rss = fmt(mem.get("peak_rss_mb"), ".0f") if "error" not in mem else \
        "skipped" if mem["error"].startswith("not probed") else "error"
    return [r["label"], str(r.get("precision_ran")), fmt(lat["pre"]["mean"], ".2f"),
            f"{lat['inference']['mean']:.1f} / {lat['inference']['p50']:.1f} / {lat['inference']['p90']:.1f}"
            f" / {lat['inference']['p99']:.1f}",
            fmt(lat["post"]["mean"], ".2f"), fmt(lat["total"]["mean"], ".1f"),
            fmt(r["fps"]["pipeline_sequential"], ".1f"), fmt(sp.get("vs_pytorch_eager_fp32"), ".1f"),
            fmt(sp.get("vs_best_pytorch_peer"), ".1f"), fmt(sp.get("vs_baseline_0.6s_per_frame"), ".1f"),
            rate_text(r.get("gmac_per_s")), share_text(r), rss]


HEADER = ["contender", "ran", "pre ms", "inference ms mean/p50/p90/p99", "post ms", "total ms", "FPS",
          "x eager", "x peer", "x baseline", "GMAC/s", "share of peak", "peak RSS MB"]


def hardware_lines(result: dict[str, Any]) -> list[str]:
    """The peak probes' table and the INT8 ceiling: how close each contender is to the hardware."""
    peak = result.get("peak")
    if not peak or not peak.get("probes"):
        return []
    lines = [f"Work: {fmt(result.get('gmac_per_frame'), '.2f')} GMAC per frame. Peak rates of this machine, "
             f"measured in this run ({peak['method']}):", "",
             markdown_table(PEAK_HEADER, peak_rows(peak["probes"]), "llrrr"), "",
             "*GMAC/s* = work per frame / mean inference time; *share of peak* reads it against the probe "
             "of the contender's own library at the precision its convolutions ran.", ""]
    line = ceiling_line(result.get("int8_ceiling"))
    return lines + ([line + ".", ""] if line else [])


def terminal_report(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [f"latency: {cfg['model']} ({cfg['weights']}) at {cfg['input_size'][0]}x{cfg['input_size'][1]}, "
             f"{cfg['frames']} frames of {cfg['video_description']}, interleaved",
             f"machine: {describe_cpu(result['environment'])}",
             *[f"WARNING: {n}" for n in [load_note(result["environment"].get("load_during_run"))] if n], "",
             text_table(HEADER, [_row(r) for r in result["contenders"]]), *status_lines(result)]
    ceiling = ceiling_line(result.get("int8_ceiling"))
    if result.get("peak") and result["peak"].get("probes"):
        lines += ["", text_table(PEAK_HEADER, peak_rows(result["peak"]["probes"]))]
    if ceiling:
        lines.append(ceiling)
    p = result.get("pipeline")
    if p:
        lines.append("")
        lines.append(pipeline_line(p))
    ph = result.get("phases_s") or {}
    if ph:
        lines.append(f"run: {sum(ph.values()):.0f} s (frames + artefacts "
                     f"{ph.get('frames_and_artefacts_s', 0):.0f} s, "
                     f"timing {ph.get('timing_s', 0):.0f} s, RSS probes {ph.get('rss_probes_s', 0):.0f} s, "
                     f"pipeline {ph.get('pipeline_s', 0):.0f} s)")
    return "\n".join(lines)


def status_lines(result: dict[str, Any]) -> list[str]:
    """Why a contender has no figures (not available here, or failed), one line each."""
    return [f"{r.get('label') or r['name']}: {r['status']}" for r in result["contenders"]
            if r["status"] != "ok"]


def pipeline_line(p: dict[str, Any]) -> str:
    if p.get("status") != "ok":
        return f"whole pipeline (pspnet-rt): {p.get('status')}"
    text = (f"whole pipeline (pspnet-rt, {p['contender']}, ran {p['precision_ran']}, "
            f"{p['in_flight']} in flight): {p['fps']:.1f} FPS over {p['frames']} frames "
            f"({fmt(p.get('fps_after_10_frames'), '.1f')} after the first 10), "
            f"peak RSS {fmt(p.get('peak_rss_mb'), '.0f')} MB")
    if p.get("gmac_per_s"):
        text += f"; sustains {p['gmac_per_s']:.0f} GMAC/s ({share_text(p)})"
    x = p.get("speedup_vs_pytorch_eager_fp32")
    if x is not None:
        text += f"; x{x:.1f} PyTorch eager FP32 FPS"
        if p.get("target"):
            text += f" (target >= x{PIPELINE_TARGET_X:.0f}: {'met' if p['target']['met'] else 'NOT met'})"
        best = p.get("best_contender_speedup_vs_eager")
        if best:
            text += f"; the fastest contender alone, one frame at a time: x{best:.1f}"
    return text


def write_outputs(result: dict[str, Any], out: Path) -> None:
    from benchmarks.plots import latency_figure

    write_json(out / "latency.json", result)
    latency_figure(result, out / "latency.png")
    write_text(out / "latency.md", markdown_report(result))


def markdown_report(result: dict[str, Any]) -> str:
    cfg = result["config"]
    parts = [header_block("Latency benchmark", result["environment"], result["command"]),
             f"Model **{cfg['model']}** ({cfg['weights']} weights) at "
             f"{cfg['input_size'][0]}x{cfg['input_size'][1]}; {cfg['frames']} frames of "
             f"{cfg['video_description']}; {cfg['warmup']} warm-up frames per contender; {cfg['order']}.", "",
             "Per frame: **pre** = to_model_input, **inference** = one blocking call, **post** = labels "
             "to the frame size + overlay render. *total* = their sum; FPS = 1000 / mean total (one frame "
             "at a time). Speed-ups are ratios of mean total latency; *x baseline* compares with the 2017 TF "
             "baseline's 0.6 s/frame (inference only, so conservative). *ran* is the precision the backend "
             "reports it ran. Peak RSS is measured per contender in a fresh process.", "",
             markdown_table(HEADER, [_row(r) for r in result["contenders"]]), "",
             *[f"- {line}" for line in status_lines(result)], ""]
    hardware = hardware_lines(result)
    if hardware:
        parts += ["## How close to the hardware", "", *hardware]
    p = result.get("pipeline")
    if p:
        parts += ["## Whole pipeline (pspnet-rt)", "", pipeline_line(p), ""]
        if p.get("status") == "ok":
            parts += [f"Command: `{' '.join(p['command'])}`", "",
                      markdown_table(["stage", "mean ms", "p50", "p90", "p99"],
                                     [[k, fmt(v["mean"], ".2f"), fmt(v["p50"], ".2f"), fmt(v["p90"], ".2f"),
                                       fmt(v["p99"], ".2f")] for k, v in p["stages_ms"].items()]), "",
                      p["note"] + ".", ""]
    parts += ["![latency](latency.png)", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    raise SystemExit(main())
