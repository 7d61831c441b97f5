"""Interleaved per-frame timing of several contenders on the same frames.

Why interleaved: on a shared 2-core machine the speed drifts (turbo, heat, a neighbour's job).
Running contender A over all frames and then B puts the drift into the A/B ratio; running
frame 0 through A, B, C, then frame 1 through B, C, A, ... spreads it evenly over everyone.
The starting contender rotates per frame so none always runs right after the same one (whose
thread pools may still be spinning down).

Each frame is timed as the whole per-frame path a user's loop has, not only the network:
pre (to_model_input), inference, post (labels back to the frame size + overlay render with
legend, as pspnet-rt draws it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from benchmarks.common import fps_of, ratio, summarize_ms
from benchmarks.contenders import Contender, ContenderSpec
from runtime.stats import BASELINE_SECONDS_PER_FRAME

STAGES = ("pre", "inference", "post")


def schedule(n_frames: int, n_contenders: int, rotate: bool = True) -> list[tuple[int, int]]:
    """(frame, contender) pairs in run order: round-robin per frame, start rotating per frame."""
    order = []
    for f in range(n_frames):
        start = f % n_contenders if rotate and n_contenders else 0
        order.extend((f, (start + k) % n_contenders) for k in range(n_contenders))
    return order


class FramePath:
    """pre -> inference -> post for one contender, with the runtime's own pre/post code."""

    def __init__(self, classes: Sequence[str], palette: Sequence[Sequence[int]]) -> None:
        from runtime.render import Renderer

        self.renderer = Renderer(list(classes), [list(p) for p in palette], mode="overlay")
        self.num_classes = len(classes)

    def run(self, contender: Contender, frame: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
        from runtime.render import present_classes
        from segdata.frames import labels_to_size, to_model_input

        h, w = contender.spec.input_size
        t0 = time.perf_counter()
        x = to_model_input(frame, h, w)
        t1 = time.perf_counter()
        labels = contender.infer(x)
        t2 = time.perf_counter()
        labels = labels_to_size(labels, frame.shape[0], frame.shape[1])
        self.renderer.render(frame, labels, present_classes(labels, self.num_classes))
        t3 = time.perf_counter()
        return {"pre": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3, "post": (t3 - t2) * 1e3}, labels


def run_interleaved(contenders: Sequence[Contender], frames: Sequence[np.ndarray], path: FramePath,
                    warmup: int = 5, progress: Callable[[int], None] | None = None,
                    rotate: bool = True) -> dict[str, dict[str, list[float]]]:
    """Per contender name, per stage, one time in ms per frame (warm-up runs not recorded)."""
    times = {c.spec.name: {s: [] for s in STAGES} for c in contenders}
    for f, k in schedule(warmup, len(contenders), rotate):
        path.run(contenders[k], frames[f % len(frames)])
    for i, (f, k) in enumerate(schedule(len(frames), len(contenders), rotate)):
        stage_ms, _ = path.run(contenders[k], frames[f])
        for stage, ms in stage_ms.items():
            times[contenders[k].spec.name][stage].append(ms)
        if progress and (i + 1) % len(contenders) == 0:
            progress(1)
    return times


def summarize(times: dict[str, list[float]]) -> dict[str, Any]:
    """Stage statistics, total = pre + inference + post per frame, and the FPS they imply."""
    total = [sum(v) for v in zip(*(times[s] for s in STAGES))]
    latency = {s: summarize_ms(times[s]) for s in STAGES}
    latency["total"] = summarize_ms(total)
    return {"frames": len(total), "latency_ms": latency,
            "fps": {"pipeline_sequential": fps_of(latency["total"]["mean"]),
                    "inference_only": fps_of(latency["inference"]["mean"])},
            "per_frame_ms": {s: [round(v, 3) for v in times[s]] for s in STAGES}}


def timed_entries(specs: Sequence[ContenderSpec], contenders: Sequence[Contender],
                  times: dict[str, dict[str, list[float]]], per_frame: bool = True) -> list[dict[str, Any]]:
    """One result entry per spec, in order: what ran and its stage statistics (or why it did not
    run). Closes the contenders."""
    from benchmarks.contenders import label_for

    opened = {c.spec.name: c for c in contenders}
    entries = []
    for spec in specs:
        c = opened.get(spec.name)
        if c is None:
            entries.append({**spec.to_dict(), "precision_ran": None,
                            "label": label_for(spec.backend, spec.precision, None, spec.kind)})
            continue
        entry = {**c.describe(), **summarize(times[spec.name])}
        if not per_frame:
            entry.pop("per_frame_ms")
        c.close()
        entries.append(entry)
    return entries


def add_speedups(results: list[dict[str, Any]]) -> None:
    """Ratios of mean whole-frame latency: vs PyTorch eager FP32, vs the best PyTorch peer, and
    vs the 2017 TF baseline's 0.6 s/frame (which is inference alone, so this ratio is conservative)."""
    def total(r: dict[str, Any]) -> float | None:
        return r.get("latency_ms", {}).get("total", {}).get("mean")

    ran = [r for r in results if r.get("status") == "ok" and total(r)]
    eager = next((total(r) for r in ran if r["kind"] == "pytorch-eager"), None)
    peers = [total(r) for r in ran if r["kind"] == "pytorch-peer"]
    best_peer = min(peers) if peers else None
    for r in ran:
        t = total(r)
        r["speedup"] = {"vs_pytorch_eager_fp32": ratio(eager, t), "vs_best_pytorch_peer": ratio(best_peer, t),
                        "vs_baseline_0.6s_per_frame": ratio(BASELINE_SECONDS_PER_FRAME * 1000.0, t)}
