"""Per-stage timing, drop accounting and the exit summary table.

Stages: capture (waiting for the source, decode included), pre (resize to the model input),
inference (submit to result; a propagated frame: the warp), scheduler (video-aware inference:
motion estimate and change score), post (labels back to the frame size), render, write (all sinks),
and end-to-end (frame available -> written). Samples are kept in a bounded reservoir so a
camera running for days does not grow memory.
"""

from __future__ import annotations

import random
import resource
import sys
import time
from array import array
from collections import Counter
from typing import Any

import numpy as np

STAGES = ("capture", "pre", "inference", "scheduler", "post", "render", "write")
E2E = "end-to-end"
BASELINE_SECONDS_PER_FRAME = 0.6  # hellochick's TF PSPNet: "Inference time: ~0.6s" (reference.md)
RESERVOIR = 200_000


class Reservoir:
    """Every sample up to `size`, then a uniform random sample of them (Vitter's algorithm R)."""

    def __init__(self, size: int = RESERVOIR) -> None:
        self.size = size
        self.seen = 0
        self.values = array("f")
        self._rng = random.Random(0)

    def add(self, value: float) -> None:
        self.seen += 1
        if len(self.values) < self.size:
            self.values.append(value)
        else:
            j = self._rng.randrange(self.seen)
            if j < self.size:
                self.values[j] = value

    def percentiles(self, qs: tuple[float, ...] = (50, 90, 99)) -> list[float]:
        if not self.values:
            return [float("nan")] * len(qs)
        return [float(v) for v in np.percentile(np.frombuffer(self.values, np.float32), qs)]

    def mean(self) -> float:
        return float(np.frombuffer(self.values, np.float32).mean()) if self.values else float("nan")


def peak_rss_mb() -> float:
    """This address space's high-water RSS.

    Linux's VmHWM, not getrusage's ru_maxrss: a process exec'd from a big parent inherits the
    parent's resident size into ru_maxrss (measured: a 13 MB child of a 600 MB parent reports
    627 MB), which would charge this run with its launcher's memory. Elsewhere ru_maxrss
    (macOS reports bytes, Linux KiB).
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


class RunStats:
    """What a run did, for the summary table and the machine-readable result."""

    def __init__(self) -> None:
        self.stages = {name: Reservoir() for name in (*STAGES, E2E)}
        self.frames = 0
        self.drops: Counter[str] = Counter()
        self.t_start = time.perf_counter()
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.startup_s = 0.0

    def start(self) -> None:
        self.t_start = time.perf_counter()

    def add(self, times: dict[str, float], e2e_ms: float) -> None:
        now = time.perf_counter()
        self.t_first = self.t_first or now
        self.t_last = now
        self.frames += 1
        for name, ms in times.items():
            self.stages[name].add(ms)
        self.stages[E2E].add(e2e_ms)

    @property
    def wall_s(self) -> float:
        return (self.t_last or time.perf_counter()) - self.t_start

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.frames and self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames, "dropped": dict(self.drops), "fps": round(self.fps, 3),
            "wall_s": round(self.wall_s, 3), "startup_s": round(self.startup_s, 3),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "latency_ms": {name: dict(zip(("p50", "p90", "p99"), (round(v, 3) for v in r.percentiles())))
                           for name, r in self.stages.items() if r.seen},
        }

    def summary(self, title: str, extra: list[tuple[str, str]] | None = None) -> str:
        """The human table printed on exit."""
        lines = [title]
        dropped = sum(self.drops.values())
        why = "; ".join(f"{n} {reason}" for reason, n in self.drops.most_common())
        lines.append(f"  frames      {self.frames} written, {dropped} dropped" + (f" ({why})" if why else ""))
        lines.append(f"  throughput  {self.fps:.2f} FPS over {self.wall_s:.2f} s "
                     f"(startup {self.startup_s:.2f} s)")
        for label, value in extra or []:
            lines.append(f"  {label:<11} {value}")
        lines.append(f"  {'stage':<11} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'mean ms':>9}")
        for name, r in self.stages.items():
            if not r.seen:
                continue
            p50, p90, p99 = r.percentiles()
            lines.append(f"  {name:<11} {p50:>9.2f} {p90:>9.2f} {p99:>9.2f} {r.mean():>9.2f}")
        if self.fps > 0:
            speedup = self.fps * BASELINE_SECONDS_PER_FRAME
            lines.append(f"  reference   baseline TF PSPNet ~{BASELINE_SECONDS_PER_FRAME} s/frame "
                         f"({1 / BASELINE_SECONDS_PER_FRAME:.2f} FPS): this run x{speedup:.1f}")
        lines.append(f"  peak RSS    {peak_rss_mb():.0f} MB")
        return "\n".join(lines)
