"""Whole `pspnet-rt` runs of several variants, interleaved round by round, for the cost of an option.

An artefact option (--confidence, --flip) costs what the user's whole pipeline loses: decode,
inference, render, encode and the writes overlap on the same cores, so bare inference times alone
would hide or inflate it. Each variant is one `pspnet-rt` command (a subprocess, the way users
run it) on the same source; the variants run in turn, A B C, then B C A, ... for `rounds`
rounds, so a neighbour's load drifting during the measurement falls on all of them alike, and
each variant's FPS is compared with the baseline's of the same round (paired ratios).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

STEADY_AFTER = 10  # frames left out of the steady FPS (each infer request's first run is slow)


def pipeline_run(args: list[str], video: str, frames: int, stats: Path) -> dict[str, Any]:
    """One `pspnet-rt --video VIDEO --max-frames N ARGS...` run; `stats` keeps its per-frame JSONL.
    Returns FPS (the summary's, from the first frame), the steady FPS (after STEADY_AFTER) and the
    CPU ms per frame of pspnet-rt and its children (ffmpeg): on a shared machine the CPU cost holds
    still while FPS follows the neighbours' load."""
    from benchmarks.probe import run_child

    with tempfile.TemporaryDirectory(prefix="pspnet-bench-") as tmp:
        summary_path = Path(tmp) / "summary.json"
        cmd = [sys.executable, "-m", "runtime", "--video", video, "--max-frames", str(frames),
               "--stats", str(stats), "--summary-json", str(summary_path),
               *[a.replace("{tmp}", tmp) for a in args]]
        if video == "demo":
            cmd += ["--demo-frames", str(frames)]
        try:
            done = run_child(cmd, timeout=1800)
        except subprocess.TimeoutExpired:
            return {"status": "failed: pspnet-rt timed out"}
        if done.returncode != 0 or not summary_path.is_file():
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return {"status": f"failed: pspnet-rt exited {done.returncode}: {tail[:300]}"}
        summary = json.loads(summary_path.read_text())
    stamps = [r["time"] for r in map(json.loads, stats.read_text().splitlines()) if "time" in r]
    steady = None
    if len(stamps) > STEADY_AFTER + 1 and stamps[-1] > stamps[STEADY_AFTER]:
        steady = (len(stamps) - STEADY_AFTER - 1) / (stamps[-1] - stamps[STEADY_AFTER])
    return {"status": "ok", "frames": summary.get("frames"), "fps": summary.get("fps"),
            "steady_fps": None if steady is None else round(steady, 3),
            "cpu_ms_per_frame": summary.get("cpu_ms_per_frame"),
            "precision_ran": (summary.get("backend") or {}).get("precision_ran")}


def interleaved(variants: dict[str, list[str]], video: str, frames: int, rounds: int, out: Path,
                baseline: str, progress: Any = None) -> dict[str, Any]:
    """Every variant `rounds` times, interleaved; per variant its runs, median FPS and the median
    of its per-round FPS ratio to `baseline`."""
    names = list(variants)
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]  # rotate who goes first
        for name in order:
            stats = out / f"{name}-round{r}.stats.jsonl"
            runs[name].append(pipeline_run(variants[name], video, frames, stats))
            stats.unlink(missing_ok=True)  # the figures are kept in the result, not the raw lines
            if progress is not None:
                progress(1)
    result: dict[str, Any] = {}
    for name in names:
        ok = [x for x in runs[name] if x["status"] == "ok"]
        failed = [x["status"] for x in runs[name] if x["status"] != "ok"]
        result[name] = {
            "args": variants[name], "runs": runs[name], "status": failed[0] if failed else "ok",
            "median_fps": _median([run_fps(x) for x in ok]),
            "fps_ratio_to_baseline": median_ratio(runs[name], runs[baseline], run_fps),
            "median_cpu_ms_per_frame": _median([x.get("cpu_ms_per_frame") for x in ok]),
            "cpu_ratio_to_baseline": median_ratio(runs[name], runs[baseline],
                                                   lambda x: x.get("cpu_ms_per_frame")),
            "precision_ran": ok[0]["precision_ran"] if ok else None}
    return result


def run_fps(run: dict[str, Any]) -> float | None:
    return run.get("steady_fps") or run.get("fps")


def _median(values: list[float | None]) -> float | None:
    kept = [v for v in values if v]
    return round(statistics.median(kept), 3) if kept else None


def median_ratio(mine: list[dict[str, Any]], base: list[dict[str, Any]], value: Any) -> float | None:
    """The median over rounds of value(my run) / value(the baseline's run of the same round)."""
    ratios = [value(a) / value(b) for a, b in zip(mine, base)
              if a["status"] == b["status"] == "ok" and value(a) and value(b)]
    return round(statistics.median(ratios), 4) if ratios else None
