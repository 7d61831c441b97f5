"""`python -m benchmarks.scaling`: latency vs input size and vs backbone, and the speed and memory targets.

Why a separate command: big inputs and deep backbones take seconds per PyTorch frame, so
this run measures few frames per point (as many as fit a per-point time budget, at least 2)
and reuses one small code path for every point: build (cached), open, warm up, time the
contenders interleaved on the same demo-clip frames, close.

Random weights: the zoo's R18/R50/R101 Cityscapes entries ship no trained weights here, so
they run with random weights (their speed is the speed of any weights; the output says
"random"). INT8 needs calibration all the same: the scaling run calibrates on a few synthetic
frames with min/max ranges and turns the accuracy gate off (max_miou_drop=100), because a
gate on random predictions means nothing. These INT8 artefacts are for timing only; measure
accuracy with `python -m benchmarks.accuracy`.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import clikit
from benchmarks.common import (
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
from benchmarks.contenders import ContenderSpec, artefact_spec, open_contenders, pytorch_specs
from benchmarks.peak import PEAK_HEADER, PeakBracket, add_shares, peak_rows, rate_text, share_text
from benchmarks.work import gmac_per_frame
from clikit import csv_list, positive_int

log = logging.getLogger("benchmarks")
PROG = "benchmarks.scaling"
SIZES = ((240, 480), (480, 960), (512, 1024), (1024, 2048))
BACKBONES = ("pspnet18_cityscapes", "pspnet50_cityscapes", "pspnet101_cityscapes")
BACKBONE_SIZE = (713, 713)  # the 2017 baselines' Cityscapes setting
# INT8/FP16 here are for timing: few min/max calibration frames, a gate that cannot fail, checked
# against FP32's own predictions on unlabelled frames (see eval_folder), one verification frame.
SPEED_ONLY = {"calib_images": 4, "calib_method": "minmax", "eval_images": 2, "max_miou_drop": 100.0,
              "verify_frames": 1}
EVAL_SEED_SPLIT = "test"  # the unlabelled gate frames: disjoint from the calibration seeds
TARGET_MODEL, TARGET_S = "pspnet101_cityscapes", 0.3  # target: < 0.3 s/frame at 713x713 INT8
# targets: pspnet-rt's peak RSS on a PSPNet50 INT8 artefact at the model's own size, one request
RSS_TARGETS = (("pspnet50_cityscapes", (713, 713), 300.0), ("pspnet50_ade20k", (473, 473), 350.0))

EXAMPLES = """\
examples:
  python -m benchmarks.scaling --out results/
      demo model at 240x480..1024x2048, R18/R50/R101 at 713x713, the targets (~10 min cold,
      much less once the artefacts are cached)
  python -m benchmarks.scaling --sizes 240x480,480x960 --backbones pspnet18_cityscapes --no-pytorch
  python -m benchmarks.scaling --sizes 96x192 --backbones none --frames 2     # a smoke run
exit codes: 0 ok, 1 a point failed, 2 bad arguments
"""


def _items(text: str) -> list[str]:
    """'none' -> [] (skip the sweep); otherwise at least one comma-separated item."""
    if text.strip().lower() == "none":
        return []
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected comma-separated items or none, got {text!r}")
    return items


@clikit.option_type("HxW,... or none", good="240x480,480x960", bad=("", ",", "abc", "10x10", "240x480,0x5"))
def _sizes(text: str) -> list[tuple[int, int]]:
    return [parse_size(t) for t in _items(text)]


@clikit.option_type("model names, comma-separated, or none", good="demo", bad=("", ","))
def _models(text: str) -> list[str]:
    return _items(text)


def build_parser() -> argparse.ArgumentParser:
    p = clikit.parser(f"python -m {PROG}", __doc__, EXAMPLES)
    p.add_argument("--out", default="results", metavar="DIR", type=clikit.output_dir(),
                   help="writes DIR/scaling.{json,md,png}")
    p.add_argument("--model", default="demo", type=clikit.non_empty("a model zoo name"),
                   help="model for the size sweep (default: demo)")
    p.add_argument("--sizes", type=_sizes, default=list(SIZES), metavar="HxW,...",
                   help="size sweep (default 240x480,480x960,512x1024,1024x2048; 'none' to skip)")
    p.add_argument("--backbones", type=_models, default=list(BACKBONES), metavar="NAME,...",
                   help="backbone sweep (default R18, R50, R101 Cityscapes; 'none' to skip)")
    p.add_argument("--backbone-size", type=parse_size, default=BACKBONE_SIZE, metavar="HxW",
                   help="input size of the backbone sweep (default 713x713, the 2017 baselines')")
    p.add_argument("--backend", choices=("openvino", "onnxruntime", "tensorrt"), default="openvino")
    p.add_argument("--precisions", type=csv_list(("fp32", "fp16", "int8")), default=["fp32", "int8"],
                   help="artefacts of the size sweep (default fp32,int8)")
    p.add_argument("--backbone-precisions", type=csv_list(("fp32", "fp16", "int8")), default=["int8"],
                   help="artefacts of the backbone sweep (default int8: R50/R101 FP32 builds take minutes)")
    p.add_argument("--no-pytorch", action="store_true", help="leave out PyTorch eager FP32")
    p.add_argument("--frames", type=positive_int, default=10, metavar="N", help="most frames per point")
    p.add_argument("--point-budget", type=clikit.float_in(high=3600, what="seconds", above=0),
                   default=15.0, metavar="S",
                   help="seconds of timed frames per point; frames = budget / one round, 2..--frames")
    p.add_argument("--no-rss", action="store_true", help="skip the PSPNet50 INT8 pspnet-rt memory runs")
    p.add_argument("--rss-models", type=_models, metavar="NAME,...",
                   help="memory targets to measure: pspnet50_cityscapes (713x713), pspnet50_ade20k (473x473) "
                        "(default: those in --backbones; each builds its INT8 timing artefact if needed)")
    p.add_argument("--no-peak", action="store_true",
                   help="skip the peak-rate probes (before and after the sweep, a few seconds each)")
    p.add_argument("--artefacts", metavar="DIR", type=clikit.output_dir(),
                   help="build cache folder (default: build_engine's)")
    clikit.add_verbose(p)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_benchmark(PROG, build_parser(), run, _failures, argv)


def _failures(result: dict[str, Any]) -> str | None:
    failed = [f"{p['model']}@{p['input_size'][0]}x{p['input_size'][1]} {c['name']}"
              for p in result["sizes"] + result["backbones"] for c in p["contenders"]
              if c["status"].startswith("failed")]
    return f"failed: {'; '.join(failed)}" if failed else None



# --------------------------------------------------------------------------------- a point
def eval_folder(size: tuple[int, int], artefacts: str | None, n: int = SPEED_ONLY["eval_images"]) -> str:
    """A stable folder of n unlabelled synthetic test-split frames for the INT8/FP16 gate.

    Why unlabelled: the gate then compares with FP32's predictions instead of ground truth,
    which is all a timing build needs, and it sidesteps calib.gate's table() failing on a
    class the candidate never predicts (common with random weights). Stable path and
    content, so the build cache key stays the same from run to run.
    """
    import cv2

    from artefact.files import atomic_write_bytes
    from build_engine.api import DEFAULT_OUTPUT
    from segdata.synthetic import render_scene, split_seeds

    h, w = size
    folder = Path(artefacts or DEFAULT_OUTPUT) / "benchmark-eval" / f"{h}x{w}"
    folder.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(split_seeds(EVAL_SEED_SPLIT, n)):
        path = folder / f"{i:03d}.png"
        if not path.is_file():
            image, _ = render_scene(seed, h, w)
            atomic_write_bytes(path, cv2.imencode(".png", image)[1].tobytes())
    return str(folder)


def point_specs(model: str, size: tuple[int, int], args: argparse.Namespace,
                precisions: list[str]) -> list[ContenderSpec]:
    specs = [] if args.no_pytorch else pytorch_specs(model, size)[:1]
    for precision in precisions:
        options: dict[str, Any] = {"verify_frames": SPEED_ONLY["verify_frames"]}
        if precision != "fp32":
            options = {**SPEED_ONLY, "eval_data": eval_folder(size, args.artefacts)}
        print(f"{model} {size[0]}x{size[1]} {args.backend} {precision}: building or finding in the cache ...",
              file=sys.stderr, flush=True)
        specs.append(artefact_spec(model, args.backend, precision, size, args.artefacts, **options))
    return specs


def measure_point(model: str, size: tuple[int, int], args: argparse.Namespace,
                  precisions: list[str]) -> dict[str, Any]:
    """Build, open, warm up once, then time as many interleaved frames as the budget allows."""
    from benchmarks.contenders import weights_kind
    from benchmarks.timing import FramePath, add_speedups, run_interleaved, timed_entries
    from benchmarks.video import load_video
    from pspnet.zoo import get_spec

    model_spec = get_spec(model)
    specs = point_specs(model, size, args, precisions)
    contenders = open_contenders(specs)
    path = FramePath(model_spec.classes, model_spec.palette)
    times: dict[str, dict[str, list[float]]] = {}
    n = 0
    if contenders:
        first = load_video("demo", 1, size).frames
        round_s = 0.0
        for c in contenders:  # warm-up, also tells how long one round takes
            path.run(c, first[0])
            t0 = time.perf_counter()
            path.run(c, first[0])
            round_s += time.perf_counter() - t0
        n = max(2, min(args.frames, int(args.point_budget / max(round_s, 1e-6))))
        clip = load_video("demo", n, size)
        print(f"  timing {len(contenders)} contenders on {n} frames ({round_s:.2f} s per round)",
              file=sys.stderr, flush=True)
        times = run_interleaved(contenders, clip.frames, path, warmup=0)
    results = timed_entries(specs, contenders, times, per_frame=False)
    add_speedups(results)
    gmac = gmac_per_frame(model, *size)
    return {"model": model, "input_size": list(size), "weights": weights_kind(model), "frames": n,
            "gmac_per_frame": round(gmac, 2), "contenders": results}


def runtime_rss(manifest: str, frames: int = 5, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Peak RSS of `pspnet-rt` itself running an artefact on the demo clip (writing masks)."""
    from benchmarks.probe import run_child

    with tempfile.TemporaryDirectory(prefix="pspnet-bench-") as tmp:
        summary = Path(tmp) / "summary.json"
        cmd = [sys.executable, "-m", "runtime", "--video", "demo", "--engine", manifest, "--max-frames",
               str(frames), "--demo-frames", str(frames), "--masks", str(Path(tmp) / "masks"),
               "--summary-json", str(summary), *extra]
        try:
            done = run_child(cmd, timeout=900)
        except subprocess.TimeoutExpired:
            return {"status": "failed: pspnet-rt timed out"}
        if done.returncode != 0 or not summary.is_file():
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return {"status": f"failed: pspnet-rt exited {done.returncode}: {tail[:300]}"}
        data = json.loads(summary.read_text())
    return {"status": "ok", "command": ["pspnet-rt", *cmd[3:]], "peak_rss_mb": data.get("peak_rss_mb"),
            "frames": data.get("frames"), "fps": data.get("fps"),
            "precision_ran": data.get("backend", {}).get("precision_ran"),
            "in_flight": data.get("backend", {}).get("in_flight"),
            "hint": data.get("backend", {}).get("hint")}


def rss_target(model: str, size: tuple[int, int], limit_mb: float,
               args: argparse.Namespace) -> dict[str, Any]:
    """pspnet-rt's peak RSS on the model's INT8 artefact (the timing build, from the cache), with
    one request (--hint latency, what a camera gets: the target) and with the default for files
    (the throughput hint: several requests, each with its own buffers)."""
    print(f"{model} {size[0]}x{size[1]} {args.backend} int8 for the RSS target: building or finding in "
          "the cache ...", file=sys.stderr, flush=True)
    spec = artefact_spec(model, args.backend, "int8", size, args.artefacts,
                         **{**SPEED_ONLY, "eval_data": eval_folder(size, args.artefacts)})
    what = f"{model} {size[0]}x{size[1]} INT8: pspnet-rt peak RSS <= {limit_mb:.0f} MB with --hint latency"
    if not spec.ok or not spec.manifest:
        return {"status": spec.status, "what": what}
    print(f"peak RSS of pspnet-rt running {model} INT8 ...", file=sys.stderr, flush=True)
    rss = runtime_rss(spec.manifest, extra=("--hint", "latency"))
    rss["throughput_hint"] = runtime_rss(spec.manifest)
    rss["what"] = what
    rss["limit_mb"] = limit_mb
    if rss.get("peak_rss_mb") is not None:
        rss["met"] = rss["peak_rss_mb"] <= limit_mb
    return rss


# --------------------------------------------------------------------------------- the run
def run(args: argparse.Namespace, command: str) -> dict[str, Any]:

    for name in [args.model, *args.backbones, *(args.rss_models or [])]:
        zoo_model(name)
    out = prepare_out(args.out)
    env = environment()
    t0 = time.perf_counter()
    libraries = [] if args.no_pytorch else ["torch"]
    bracket = PeakBracket([*libraries, args.backend], not args.no_peak)
    with LoadMonitor() as load, bracket:
        sizes = [measure_point(args.model, tuple(s), args, args.precisions) for s in args.sizes]
        backbones = [measure_point(m, tuple(args.backbone_size), args, args.backbone_precisions)
                     for m in args.backbones]
    env["load_during_run"] = load.summary()
    for point in sizes + backbones:  # shares once the closing probe is in
        add_shares(point["contenders"], bracket.peaks, point["gmac_per_frame"])

    targets: dict[str, Any] = {}
    target_point = next((p for p in backbones if p["model"] == TARGET_MODEL), None)
    if target_point and tuple(target_point["input_size"]) == BACKBONE_SIZE:
        c = next((c for c in target_point["contenders"] if c["precision"] == "int8" and c["status"] == "ok"),
                 None)
        if c:
            s = c["latency_ms"]["inference"]["mean"] / 1000
            gmac = target_point["gmac_per_frame"]
            best = max((x.get("gmac_per_s") or 0.0 for p in sizes + backbones for x in p["contenders"]),
                       default=0.0)
            targets["pspnet101_cityscapes_713_int8"] = {
                "gmac_per_frame": gmac, "gmac_per_s_needed": round(gmac / TARGET_S, 1),
                "gmac_per_s_best_measured": best,
                "what": f"{TARGET_MODEL} 713x713 INT8 inference < {TARGET_S} s/frame", "label": c["label"],
                "seconds_per_frame": round(s, 4),
                "p90_s": round(c["latency_ms"]["inference"]["p90"] / 1000, 4),
                "whole_frame_s": round(c["latency_ms"]["total"]["mean"] / 1000, 4), "frames": c["frames"],
                "met": s < TARGET_S}
    if not args.no_rss:
        wanted = args.backbones if args.rss_models is None else args.rss_models
        for model, size, limit in RSS_TARGETS:
            if model in wanted:
                targets[f"{model}_int8_runtime_rss"] = rss_target(model, size, limit, args)

    result = {"benchmark": "scaling", "created": now(), "command": command, "environment": env,
              "config": {"backend": args.backend, "precisions": args.precisions,
                         "backbone_precisions": args.backbone_precisions, "frames_max": args.frames,
                         "point_budget_s": args.point_budget, "reduced_precision_build_options": SPEED_ONLY,
                         "video": "demo (synthetic street clip rendered at each input size)",
                         "note": "INT8 artefacts here are calibrated for timing only (min/max ranges on "
                                 f"{SPEED_ONLY['calib_images']} synthetic frames, accuracy gate off); "
                                 "random-weight models say so in "
                                 "`weights`"},
              "sizes": sizes, "backbones": backbones, "targets": targets, "peak": bracket.to_dict(),
              "wall_s": round(time.perf_counter() - t0, 1)}
    from benchmarks.plots import scaling_figure

    write_json(out / "scaling.json", result)
    scaling_figure(result, out / "scaling.png")
    write_text(out / "scaling.md", markdown_report(result))
    print(terminal_report(result), flush=True)
    return result


# ------------------------------------------------------------------------------- reporting
HEADER = ["model", "input", "GMAC", "weights", "contender", "ran", "frames", "inference ms mean / p90",
          "GMAC/s", "share of peak", "total ms", "FPS", "x eager"]


def rows(points: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for p in points:
        for c in p["contenders"]:
            head = [p["model"], f"{p['input_size'][0]}x{p['input_size'][1]}",
                    fmt(p.get("gmac_per_frame"), ".1f"), p["weights"], c["label"]]
            if c["status"] != "ok":
                out.append([*head, c["status"][:60], *[""] * (len(HEADER) - len(head) - 1)])
                continue
            lat = c["latency_ms"]
            out.append([*head, str(c["precision_ran"]), str(c["frames"]),
                        f"{lat['inference']['mean']:.1f} / {lat['inference']['p90']:.1f}",
                        rate_text(c.get("gmac_per_s")), share_text(c), fmt(lat["total"]["mean"], ".1f"),
                        fmt(c["fps"]["pipeline_sequential"], ".2f"),
                        fmt((c.get("speedup") or {}).get("vs_pytorch_eager_fp32"), ".1f")])
    return out


def target_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    t = result["targets"].get("pspnet101_cityscapes_713_int8")
    if t:
        lines.append(f"target: {t['what']}: {t['seconds_per_frame']:.3f} s/frame inference "
                     f"({t['whole_frame_s']:.3f} s whole frame, {t['frames']} frames) -> "
                     f"{'met' if t['met'] else 'NOT met'}")
        if t.get("gmac_per_s_needed"):
            lines.append(f"work: {t['gmac_per_frame']:.0f} GMAC per frame, so {t['gmac_per_s_needed']:.0f} "
                         f"GMAC/s are needed; the fastest contender of this run sustained "
                         f"{t['gmac_per_s_best_measured']:.0f} GMAC/s")
    for key, r in result["targets"].items():
        if not key.endswith("_runtime_rss"):
            continue
        if r.get("status") == "ok":
            high = r.get("throughput_hint") or {}
            lines.append(f"target: {r['what']}: {fmt(r['peak_rss_mb'], '.0f')} MB with --hint latency "
                         f"({r.get('in_flight')} in flight) -> {'met' if r.get('met') else 'NOT met'}; "
                         f"{fmt(high.get('peak_rss_mb'), '.0f')} MB with the default {high.get('hint')} hint "
                         f"({high.get('in_flight')} in flight)")
        else:
            lines.append(f"target: {r['what']}: {r['status']}")
    return lines


def terminal_report(result: dict[str, Any]) -> str:
    lines = [f"scaling on {describe_cpu(result['environment'])} ({result['wall_s']:.0f} s)",
             *[f"WARNING: {n}" for n in [load_note(result["environment"].get("load_during_run"))] if n], ""]
    lines.append(text_table(HEADER, rows(result["sizes"] + result["backbones"])))
    if (result.get("peak") or {}).get("probes"):
        lines += ["", text_table(PEAK_HEADER, peak_rows(result["peak"]["probes"]))]
    lines += ["", *target_lines(result)]
    return "\n".join(lines)


def markdown_report(result: dict[str, Any]) -> str:
    cfg = result["config"]
    parts = [header_block("Scaling benchmark", result["environment"], result["command"]),
             f"Backend {cfg['backend']}; frames per point: as many as fit {cfg['point_budget_s']:g} s, 2 to "
             f"{cfg['frames_max']}, interleaved, after one warm-up each; frames of the {cfg['video']}. "
             f"{cfg['note']}.", ""]
    for title, key in (("Latency vs input size", "sizes"), ("Latency vs backbone", "backbones")):
        if result[key]:  # a memory-only run (--sizes none --backbones none) has neither sweep
            parts += [f"## {title}", "", markdown_table(HEADER, rows(result[key])), ""]
    parts += ["## Targets", ""]
    parts += [f"- {line.removeprefix('target: ')}" for line in target_lines(result)] or ["- not measured"]
    peak = result.get("peak") or {}
    if peak.get("probes"):
        parts += ["", "## Peak rates of this machine (before and after the sweep)", "",
                  markdown_table(PEAK_HEADER, peak_rows(peak["probes"]), "llrrr"), "",
                  f"{peak['method']}. *share of peak*: a contender's GMAC/s against its own library's probe "
                  "at the precision it ran."]
    parts += ["", "![scaling](scaling.png)", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    raise SystemExit(main())
