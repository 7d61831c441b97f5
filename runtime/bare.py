"""`--benchmark`: bare inference on preloaded frames, the ceiling the pipeline is measured against."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from runtime.backends.base import Backend


def bare_inference(backend: Backend, frames: list[np.ndarray]) -> dict[str, float]:
    """Inference alone on preloaded model inputs: the ceiling the pipeline is measured against.

    'sync' calls infer() frame after frame; 'async' keeps every slot of the backend busy. CPU
    milliseconds per frame (all threads of this process) are reported beside FPS because on a
    shared machine they stay put while FPS follows the neighbours' load.
    """
    for f in frames[: min(3, len(frames))]:
        backend.infer(f)
    result: dict[str, float] = {}
    n = len(frames)
    t0, c0 = time.perf_counter(), time.process_time()
    for f in frames:
        backend.infer(f)
    result["sync_fps"] = n / (time.perf_counter() - t0)
    result["sync_cpu_ms"] = (time.process_time() - c0) / n * 1e3
    t0, c0 = time.perf_counter(), time.process_time()
    for i, f in enumerate(frames):
        if backend.in_flight >= backend.max_in_flight:
            backend.collect()
        backend.submit(f, i)
    while backend.in_flight:
        backend.collect()
    result["async_fps"] = n / (time.perf_counter() - t0)
    result["async_cpu_ms"] = (time.process_time() - c0) / n * 1e3
    result["fps"] = max(result["sync_fps"], result["async_fps"])
    return result


class Benchmark:
    """Bare inference on preloaded frames of the run's one source, measured just before and just
    after the pipeline run (the mean brackets it, so a neighbour's load drifting during the run
    biases neither side)."""

    def __init__(self, uri: str, source: Any, backend: Backend, max_frames: int | None) -> None:
        from runtime.errors import UsageError
        from runtime.sources import SourceOptions, parse_source
        from segdata.frames import to_model_input

        if source.live:
            raise UsageError("--benchmark needs a file, folder or demo source "
                             "(live frames cannot be replayed)")
        options = SourceOptions(**{**vars(source.options), "loop": False, "max_frames": max_frames or 100})
        self.backend = backend
        self.frames = []
        with parse_source(uri, options) as replay:
            for frame in replay.frames():
                self.frames.append(to_model_input(frame.image, *backend.input_hw(frame.image.shape[:2])))
        self.runs = [self._measure("before")]

    def _measure(self, when: str) -> dict[str, float]:
        r = bare_inference(self.backend, self.frames)
        print(f"bare inference {when}, {len(self.frames)} preloaded frames: infer() {r['sync_fps']:.2f} FPS "
              f"({r['sync_cpu_ms']:.0f} CPU ms/frame), submit/collect with {self.backend.max_in_flight} in "
              f"flight {r['async_fps']:.2f} FPS ({r['async_cpu_ms']:.0f} CPU ms/frame)", flush=True)
        return r

    def finish(self, fps: float, cpu_ms: float) -> tuple[str, dict[str, Any]]:
        self.runs.append(self._measure("after"))
        bare = sum(r["fps"] for r in self.runs) / len(self.runs)
        bare_cpu = sum(min(r["sync_cpu_ms"], r["async_cpu_ms"]) for r in self.runs) / len(self.runs)
        line = (f"pipeline {fps:.2f} FPS = {fps / bare:.2f} x bare inference ({bare:.2f} FPS, best mode, "
                f"mean of before/after); CPU per frame {cpu_ms:.0f} ms pipeline vs {bare_cpu:.0f} ms bare")
        return line, {"runs": self.runs, "bare_fps": bare, "ratio": fps / bare, "pipeline_cpu_ms": cpu_ms,
                      "bare_cpu_ms": bare_cpu}
