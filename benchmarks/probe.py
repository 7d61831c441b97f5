"""`python -m benchmarks.probe SPEC_JSON`: one contender alone in a fresh process, for its memory.

Why a subprocess: peak RSS is a per-process figure. Measured inside the interleaved run it
would hold every contender's weights and libraries at once; a fresh interpreter that opens
one contender and runs a few frames through pre -> inference -> post gives a peak that
belongs to that contender alone (PyTorch contenders import torch, artefact contenders only
the runtime's libraries, as a deployment would).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import clikit
from benchmarks.common import gpu_memory_used_mb
from runtime.stats import peak_rss_mb


def current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return float("nan")


def run_child(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run a command of this checkout (see child_env), capturing its output."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=child_env())


def probe(spec_data: dict[str, Any], video: str, frames: int) -> dict[str, Any]:
    from benchmarks.contenders import ContenderSpec, open_contender
    from benchmarks.timing import FramePath
    from benchmarks.video import load_video
    from pspnet.zoo import get_spec

    spec = ContenderSpec.from_dict(spec_data)
    clip = load_video(video, frames, spec.input_size)
    model_spec = get_spec(spec.model)
    path = FramePath(model_spec.classes, model_spec.palette)
    before = current_rss_mb()
    gpu_before = gpu_memory_used_mb() if spec.backend == "tensorrt" else None
    contender = open_contender(spec)
    try:
        for frame in clip.frames:
            path.run(contender, frame)
        gpu_after = gpu_memory_used_mb() if spec.backend == "tensorrt" else None
    finally:
        contender.close()
    return {"peak_rss_mb": round(peak_rss_mb(), 1), "rss_before_model_mb": round(before, 1),
            "frames": len(clip.frames), "precision_ran": contender.precision_ran,
            "gpu_memory_mb": (round(gpu_after - gpu_before, 1)
                              if gpu_before is not None and gpu_after is not None else None)}


def child_env() -> dict[str, str]:
    """This checkout first on PYTHONPATH, so `python -m benchmarks...`/`runtime` resolve to it."""
    root = str(Path(__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}


def measure_rss(spec: Any, video: str, frames: int = 3, timeout: float = 600) -> dict[str, Any]:
    """Run the probe for one ContenderSpec in a fresh interpreter; never raises."""
    cmd = [sys.executable, "-m", "benchmarks.probe", json.dumps(spec.to_dict()), "--video", video,
           "--frames", str(frames)]
    try:
        done = run_child(cmd, timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"probe timed out after {timeout:.0f} s"}
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": f"probe exited {done.returncode}: {tail[0][:300]}"}
    return json.loads(lines[-1])


def build_parser() -> argparse.ArgumentParser:
    p = clikit.parser("python -m benchmarks.probe", __doc__)
    p.add_argument("spec", type=clikit.json_object("a ContenderSpec as JSON"), help="a ContenderSpec as JSON")
    p.add_argument("--video", default="demo", type=clikit.non_empty("a source (SRC)"))
    p.add_argument("--frames", type=clikit.positive_int, default=3)
    clikit.add_verbose(p)
    return p


def main(argv: list[str] | None = None) -> int:
    def body(args: argparse.Namespace) -> int:
        print(json.dumps(probe(args.spec, args.video, args.frames)), flush=True)
        return clikit.EXIT_OK

    return clikit.run("benchmarks.probe", build_parser(), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
