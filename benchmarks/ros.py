"""`python -m benchmarks.ros`: what reading and writing ROS bags costs the pipeline.

One run, interleaved rounds; in each round `pspnet-rt` (a subprocess, as users run it) segments
the same frames of the synthetic street clip from
    video        an MP4 file (OpenCV's mp4v encoder: the file baseline)
    bag raw      an MCAP bag of sensor_msgs/Image bgr8 (written by rosbags)
    bag jpeg     an MCAP bag of sensor_msgs/CompressedImage jpeg
    bag + --bag  bag raw again, writing the results as a bag (--bag out.mcap)
Pipeline FPS comes from each run's --summary-json. Targets: each bag source >= 0.95 x the video
file, and --bag costs <= 5 % of FPS (bag + --bag vs bag raw). A shared machine's speed drifts by
more than the effects measured here (the same run went from 22.6 to 18.0 FPS within minutes), so
each round compares runs made next to each other: 'bag raw' and 'bag + --bag' always run back to
back, their order flipped every round; the other conditions rotate around that pair. A target is
judged on the median of the per-round ratios (one round hit by a neighbour's load does not decide
it); the mean and every round's ratio are reported beside it.

Memory: a reader-only pass (no model) over a short and a long bag of the same frames, in fresh
processes, compares peak RSS: bag reading streams, so the long bag must not cost more memory.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import clikit
from benchmarks.common import (
    BenchmarkError,
    LoadMonitor,
    environment,
    fmt,
    header_block,
    markdown_table,
    prepare_out,
    run_benchmark,
    text_table,
    write_json,
    write_text,
)
from benchmarks.probe import child_env
from clikit import positive_int

log = logging.getLogger("benchmarks")
PROG = "benchmarks.ros"
SOURCE_TARGET = 0.95
BAG_OUTPUT_MAX_COST = 0.05
MEMORY_TARGET = 1.10  # long-bag peak RSS over short-bag peak RSS
CONDITIONS = ("video", "bag raw", "bag jpeg", "bag + --bag")

EXAMPLES = """\
examples:
  python -m benchmarks.ros --out results
      300 frames at 240x480 through the default artefact, 8 interleaved rounds
  python -m benchmarks.ros --engine artefacts/demo-240x480-int8-openvino.json --frames 100 --rounds 2
"""


def build_parser() -> argparse.ArgumentParser:
    p = clikit.parser(f"python -m {PROG}", __doc__, EXAMPLES)
    p.add_argument("--engine", metavar="ARTEFACT", type=clikit.input_path("an artefact manifest"),
                   help="artefact manifest (default: the default artefact pspnet-rt builds, cached)")
    p.add_argument("--frames", type=positive_int, default=300, help="frames per run (default 300)")
    p.add_argument("--size", type=clikit.hw_size, default=(240, 480), metavar="HxW",
                   help="frame size (default 240x480, the demo's)")
    p.add_argument("--rounds", type=positive_int, default=8, help="interleaved rounds (default 8)")
    p.add_argument("--long-frames", type=positive_int, default=3000,
                   help="frames of the long bag for the memory check (default 3000)")
    p.add_argument("--out", type=clikit.output_dir(), default="results", help="DIR for ros.{json,md,png}")
    clikit.add_verbose(p)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_benchmark(PROG, build_parser(), run, _failures, argv)


def _failures(result: dict[str, Any]) -> str | None:
    failed = [f"{r['condition']} round {r['round']}: {r['status']}"
              for r in result["runs"] if r["status"] != "ok"]
    return f"failed: {'; '.join(failed)}" if failed else None


def _inputs(folder: Path, frames: int, size: tuple[int, int], long_frames: int) -> dict[str, Path]:
    import cv2

    from benchmarks.ros_bags import ImageTopic, demo_frames, write_bag

    clip = demo_frames(min(frames, 150), *size)  # rendering is slow; longer runs repeat the clip
    images = [clip[i % len(clip)] for i in range(frames)]
    video = folder / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (size[1], size[0]))
    for image in images:
        writer.write(image)
    writer.release()
    paths = {"video": video,
             "bag raw": write_bag(folder / "raw.mcap", [ImageTopic("/camera/image_raw", images)]),
             "bag jpeg": write_bag(folder / "jpeg.mcap", [ImageTopic("/camera/image_raw/compressed", images,
                                                                     encoding="jpeg")])}
    short = min(frames, 100)
    paths["short"] = write_bag(folder / "short.mcap", [ImageTopic("/camera/image_raw", images[:short])])
    long = [clip[i % len(clip)] for i in range(long_frames)]
    paths["long"] = write_bag(folder / "long.mcap", [ImageTopic("/camera/image_raw", long)])
    return paths


def _default_engine() -> str:
    from runtime.default_build import build_default

    return str(build_default("demo", "auto", "auto"))


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    args.out = prepare_out(args.out)
    engine = args.engine or _default_engine()
    env = environment()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="pspnet-ros-bench-") as tmp:
        folder = Path(tmp)
        print(f"{PROG}: writing the inputs ({args.frames} frames, long bag {args.long_frames})",
              file=sys.stderr, flush=True)
        paths = _inputs(folder, args.frames, args.size, args.long_frames)
        sizes = {k: p.stat().st_size for k, p in paths.items()}
        with LoadMonitor() as load:
            for rnd in range(args.rounds):
                for condition in round_order(rnd):
                    print(f"{PROG}: round {rnd + 1}/{args.rounds} {condition}", file=sys.stderr, flush=True)
                    runs.append(_pipeline(condition, rnd, engine, paths, folder))
            memory = {name: _reader_peak(paths[name]) for name in ("short", "long")}
            memory_again = {name: _reader_peak(paths[name]) for name in ("long", "short")}  # order swapped
        env["load_during_run"] = load.summary()
    result = {"command": command, "environment": env, "engine": engine,
              "config": {"frames": args.frames, "size": list(args.size), "rounds": args.rounds,
                         "long_frames": args.long_frames, "conditions": list(CONDITIONS),
                         "input_bytes": sizes},
              "targets": {"bag_vs_video": SOURCE_TARGET, "bag_output_max_cost": BAG_OUTPUT_MAX_COST,
                          "long_over_short_rss": MEMORY_TARGET},
              "runs": runs, "memory": _memory_summary(memory, memory_again, args)}
    result["summary"] = _summary(result)
    write_json(args.out / "ros.json", result)
    write_text(args.out / "ros.md", markdown_report(result))
    try:
        figure(result, args.out / "ros.png")
    except ImportError:
        log.warning("matplotlib missing: no ros.png")
    print(terminal_report(result), flush=True)
    return result


def round_order(rnd: int) -> list[str]:
    """The conditions of round `rnd`: the --bag pair back to back (order flipped every round), the
    units rotated so no condition always runs first or after the same neighbour."""
    pair = ["bag raw", "bag + --bag"] if rnd % 2 == 0 else ["bag + --bag", "bag raw"]
    units = [["video"], ["bag jpeg"], pair]
    k = rnd % len(units)
    return [c for unit in units[k:] + units[:k] for c in unit]


def _pipeline(condition: str, rnd: int, engine: str, paths: dict[str, Path], folder: Path) -> dict[str, Any]:
    source = paths["video" if condition == "video" else "bag jpeg" if condition == "bag jpeg" else "bag raw"]
    summary = folder / "summary.json"
    cmd = [sys.executable, "-m", "runtime", "--video", str(source), "--engine", engine,
           "--summary-json", str(summary)]
    if condition == "bag + --bag":
        cmd += ["--bag", str(folder / "out.mcap")]
    done = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=3600)
    row: dict[str, Any] = {"condition": condition, "round": rnd + 1}
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return {**row, "status": f"exit {done.returncode}: {lines[-1] if lines else ''}"}
    data = json.loads(summary.read_text())
    return {**row, "status": "ok", "fps": data["fps"], "frames": data["frames"],
            "peak_rss_mb": data["peak_rss_mb"], "cpu_ms_per_frame": data.get("cpu_ms_per_frame"),
            "precision_ran": data["backend"]["precision_ran"], "backend": data["backend"]["backend"]}


READER = """
import sys, resource
from runtime.sources import parse_source, SourceOptions
n = 0
with parse_source(sys.argv[1], SourceOptions()) as source:
    for frame in source.frames():
        n += 1
peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]
print(n, int(peak) / 1024)
"""


def _reader_peak(bag: Path) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", READER, str(bag)], env=child_env(), capture_output=True,
                          text=True, timeout=3600, check=False)
    if done.returncode != 0:
        raise BenchmarkError(f"reading {bag.name} failed: {done.stderr.strip().splitlines()[-1:]}")
    frames, peak = done.stdout.split()
    return {"frames": int(frames), "peak_rss_mb": round(float(peak), 1),
            "bag_mb": round(bag.stat().st_size / 2**20, 1)}


def _memory_summary(first: dict, again: dict, args: argparse.Namespace) -> dict[str, Any]:
    short = min(first["short"]["peak_rss_mb"], again["short"]["peak_rss_mb"])
    long = min(first["long"]["peak_rss_mb"], again["long"]["peak_rss_mb"])
    return {"short": first["short"], "long": first["long"], "short_again": again["short"],
            "long_again": again["long"], "long_over_short": round(long / short, 3),
            "meets_target": long / short <= MEMORY_TARGET}


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    ok = [r for r in result["runs"] if r["status"] == "ok"]
    fps = {c: [r["fps"] for r in ok if r["condition"] == c] for c in CONDITIONS}
    rounds = sorted({r["round"] for r in ok})
    by_round = {(r["condition"], r["round"]): r["fps"] for r in ok}

    def ratios(a: str, b: str) -> list[float]:
        return [round(by_round[(a, n)] / by_round[(b, n)], 3) for n in rounds
                if (a, n) in by_round and (b, n) in by_round]

    means = {c: round(statistics.mean(v), 2) if v else None for c, v in fps.items()}
    out: dict[str, Any] = {"fps_mean": means}
    for name, a, b in (("bag raw / video", "bag raw", "video"), ("bag jpeg / video", "bag jpeg", "video"),
                       ("bag + --bag / bag raw", "bag + --bag", "bag raw")):
        r = ratios(a, b)
        out[name] = {"per_round": r, "median": round(statistics.median(r), 3) if r else None,
                     "mean": round(statistics.mean(r), 3) if r else None}
    out["meets"] = {
        "bag raw >= 0.95 x video": _ge(out["bag raw / video"]["median"], SOURCE_TARGET),
        "bag jpeg >= 0.95 x video": _ge(out["bag jpeg / video"]["median"], SOURCE_TARGET),
        "--bag costs <= 5 %": _ge(out["bag + --bag / bag raw"]["median"], 1 - BAG_OUTPUT_MAX_COST),
        "memory flat over a long bag": result["memory"]["meets_target"]}
    return out


def _ge(value: float | None, target: float) -> bool | None:
    return None if value is None else value >= target


HEADER = ("condition", "FPS per round", "mean FPS", "x reference (median of rounds)", "peak RSS MB")


def _rows(result: dict[str, Any]) -> list[list[str]]:
    s = result["summary"]
    ref = {"bag raw": "bag raw / video", "bag jpeg": "bag jpeg / video",
           "bag + --bag": "bag + --bag / bag raw"}
    rows = []
    for c in CONDITIONS:
        mine = [r for r in result["runs"] if r["condition"] == c and r["status"] == "ok"]
        ratio = s[ref[c]]["median"] if c in ref else None
        rows.append([c, ", ".join(fmt(r["fps"], ".2f") for r in mine), fmt(s["fps_mean"][c], ".2f"),
                     (fmt(ratio, ".3f") + (" (vs video)" if c != "bag + --bag" else " (vs bag raw)")) if ratio
                     else "–", fmt(max((r["peak_rss_mb"] for r in mine), default=None), ".0f")])
    return rows


def markdown_report(result: dict[str, Any]) -> str:
    cfg, s, mem = result["config"], result["summary"], result["memory"]
    first = next((r for r in result["runs"] if r["status"] == "ok"), {})
    parts = [header_block("ROS bags: pipeline FPS from bags vs a video file, and the cost of --bag",
                          result["environment"], result["command"]), "",
             f"`pspnet-rt --video SRC --engine {Path(result['engine']).name} --summary-json ...`, "
             f"{cfg['frames']} frames at {cfg['size'][0]}x{cfg['size'][1]} ({first.get('backend')}, "
             f"precision ran {first.get('precision_ran')}), {cfg['rounds']} interleaved rounds (order "
             "rotated each round). Inputs written by rosbags: MCAP with sensor_msgs/Image bgr8, MCAP with "
             "CompressedImage jpeg; the video is the same frames as mp4v. 'bag raw' and 'bag + --bag' run "
             "back to back in every round (order flipped each round); ratios are per round, the "
             "target judged on their median (mean beside it).", "", markdown_table(HEADER, _rows(result)), "",
             _ratio_line("bag raw / video", s["bag raw / video"], f">= {SOURCE_TARGET}"),
             _ratio_line("bag jpeg / video", s["bag jpeg / video"], f">= {SOURCE_TARGET}"),
             _ratio_line("--bag output: bag + --bag / bag raw", s["bag + --bag / bag raw"],
                         f">= {1 - BAG_OUTPUT_MAX_COST} (costs <= {BAG_OUTPUT_MAX_COST:.0%})"),
             f"- memory, reader only (no model), peak RSS: {mem['short']['frames']} frames "
             f"({mem['short']['bag_mb']} MB bag) {mem['short']['peak_rss_mb']} / "
             f"{mem['short_again']['peak_rss_mb']} MB, {mem['long']['frames']} frames "
             f"({mem['long']['bag_mb']} MB bag) {mem['long']['peak_rss_mb']} / "
             f"{mem['long_again']['peak_rss_mb']} MB: long/short {mem['long_over_short']} "
             f"(target <= {MEMORY_TARGET})",
             "", "Targets: " + "; ".join(f"{k}: {'met' if v else 'NOT met' if v is not None else 'no data'}"
                                         for k, v in s["meets"].items())]
    return "\n".join(parts) + "\n"


def _ratio_line(name: str, ratio: dict[str, Any], target: str) -> str:
    return (f"- {name}: median {ratio['median']}, mean {ratio['mean']} (per round {ratio['per_round']}); "
            f"target {target}")


def terminal_report(result: dict[str, Any]) -> str:
    s = result["summary"]
    lines = [text_table(HEADER, _rows(result)),
             f"memory (reader only): long/short peak RSS {result['memory']['long_over_short']}",
             "targets: " + "; ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in s["meets"].items())]
    return "\n".join(lines)


def figure(result: dict[str, Any], path: Path) -> Path:
    from benchmarks.plots import _pyplot

    plt = _pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [3, 1.4]})
    for i, c in enumerate(CONDITIONS):
        values = [r["fps"] for r in result["runs"] if r["condition"] == c and r["status"] == "ok"]
        ax.bar(i, statistics.mean(values) if values else 0, color="#4c78a8" if c == "video" else "#f58518")
        ax.scatter([i] * len(values), values, color="black", s=10, zorder=3)
    ax.set_xticks(range(len(CONDITIONS)), CONDITIONS)
    ax.set_ylabel("pipeline FPS")
    ax.set_title("same frames: video file vs bags; --bag output")
    mem = result["memory"]
    labels = [f"{mem['short']['frames']} frames", f"{mem['long']['frames']} frames"]
    ax2.bar(labels, [mem["short"]["peak_rss_mb"], mem["long"]["peak_rss_mb"]], color="#54a24b")
    ax2.set_ylabel("peak RSS MB (reader only)")
    ax2.set_title("bag reading streams")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    raise SystemExit(main())
