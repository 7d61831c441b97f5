"""Video-aware inference as a backend: the same interface around any backend.

Key frames go to the wrapped backend (OpenVINO, ONNX Runtime, TensorRT, or any later one);
the frames in between get a key frame's class map moved to them by dense motion. The pipeline
cannot tell the difference except by the per-frame facts it is handed (key frame or not, and
why), so sources, sinks, stats and the CLI stay as they are.

Ordering with several requests in flight: the scheduler decides at submit time, from the
images alone, so key frames reach the wrapped backend in order and stay asynchronous; a
propagated frame remembers its key frame(s) and is warped at collect time, when their results
are in. Results leave in submission order and every submitted frame comes back with a mask.

Directions: `forward` warps from the last key frame (live sources: nothing waits for the
future). `both` also waits for the next key frame and takes each pixel from whichever of the
two explains it better, like a video codec's B-frames; it adds an interval of latency, so it
is for files, where the order is kept and nothing is dropped. `collect_ready()` tells the
pipeline when the oldest frame can leave without waiting for that next key frame.
"""

from __future__ import annotations

import collections
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.backends.base import Backend, Collected
from runtime.stats import Reservoir
from runtime.temporal.config import TemporalConfig
from runtime.temporal.motion import Motion, MotionEstimator, Thumb, histogram_distance
from runtime.temporal.scheduler import SCENE_CUT, Decision


@dataclass(eq=False)  # identity, not field equality (fields hold arrays)
class _Pending:
    """One submitted frame until `collect` hands it back."""

    tag: Any
    decision: Decision
    scheduler_ms: float
    thumb: Thumb
    prev_key: _Pending | None = None  # propagated: the key frame before it
    motion: Motion | None = None  # propagated: motion back to prev_key
    next_key: _Pending | None = None  # propagated, both directions: the key frame after it
    closed: bool = False  # propagated: no usable key frame will follow (scene cut, end)
    labels: np.ndarray | None = None  # key frames: the wrapped backend's result
    infer_ms: float = 0.0


class TemporalBackend(Backend):
    """Wraps `inner`; `config` says how key frames are chosen and how motion is estimated."""

    def __init__(self, inner: Backend, config: TemporalConfig, live: bool = False) -> None:
        super().__init__(inner.manifest)
        self.inner = inner
        self.config = config
        self.both_ways = config.both_ways(live)
        self.name = inner.name
        self.device = inner.device
        self.precision_ran = inner.precision_ran
        self.scheduler = config.scheduler()
        self.motion = MotionEstimator(config.flow_scale)
        # Room for as many key frames as the engine runs at once, each with its interval behind
        # it: then the engine's requests all stay busy while propagated frames wait for their next
        # key frame (a window of one interval left OpenVINO's second stream idle: fixed:5 ran no
        # faster than fixed:3), and the oldest frame's next key frame is always inside the window.
        self.max_in_flight = (inner.max_in_flight + 1) * self.scheduler.max_interval
        self._pending: collections.deque[_Pending] = collections.deque()
        self._inner_order: collections.deque[_Pending] = collections.deque()  # key frames inside `inner`
        self._open: list[_Pending] = []  # propagated frames still waiting for their next key frame
        self._last_key: _Pending | None = None
        self._since_key: int | None = None
        # what the run did, for the exit summary
        self.frames = 0
        self.key_frames = 0
        self.reasons: Counter[str] = Counter()
        self.scheduler_ms = Reservoir()
        self.propagate_ms = Reservoir()

    # -- the Backend interface ---------------------------------------------------------------
    def input_hw(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        return self.inner.input_hw(frame_hw)

    def infer(self, frame: np.ndarray) -> np.ndarray:
        """Blocking: one frame through the scheduler (key frame, or warped forward)."""
        if self._pending:
            raise RuntimeError("infer() with frames in flight; collect() them first")
        self.submit(frame, None)
        return self.collect()[1]

    def submit(self, frame: np.ndarray, tag: Any) -> None:
        self._check_frame(frame)
        t0 = time.perf_counter()
        thumb = self.motion.thumb(frame)
        decision, motion = self._decide(thumb, frame.shape[1])
        job = _Pending(tag, decision, (time.perf_counter() - t0) * 1e3, thumb)
        if decision.key:
            while self.inner.in_flight >= self.inner.max_in_flight:
                self._take_inner()
            self.inner.submit(frame, job)
            self._inner_order.append(job)
            cut = decision.reason == SCENE_CUT  # a cut's key frame shows another scene: no use backwards
            for waiting in self._open:
                waiting.next_key, waiting.closed = (None, True) if cut else (job, False)
            self._open = []
            self._last_key, self._since_key = job, 1
        else:
            job.prev_key, job.motion = self._last_key, motion
            self._since_key += 1
            if self.both_ways:
                self._open.append(job)
        self._pending.append(job)

    def _decide(self, thumb: Thumb, width: int) -> tuple[Decision, Motion | None]:
        decision = self.scheduler.needs_key_now(self._since_key)
        if decision is not None:
            return decision, None
        if self.scheduler.adaptive and self.scheduler.is_cut(histogram_distance(self._last_key.thumb.hist,
                                                                                thumb.hist)):
            return Decision(True, SCENE_CUT), None  # no flow across a cut
        motion = self.motion.estimate(self._last_key.thumb, thumb, width)
        return self.scheduler.decide(motion), motion

    def flush(self) -> None:
        """The stream ended: frames waiting for a next key frame take the last one only."""
        for waiting in self._open:
            waiting.closed = True
        self._open = []

    def collect_ready(self) -> bool:
        job = self._pending[0]
        return job.decision.key or not self.both_ways or job.closed or job.next_key is not None

    def collect_result(self) -> Collected:
        job = self._pending[0]
        fields: dict[str, Any] = {"key": job.decision.key, "reason": job.decision.reason}
        if job.decision.key:
            while job.labels is None:
                self._take_inner()
            labels, ms = job.labels, job.infer_ms
        else:
            needed = [k for k in (job.prev_key, job.next_key) if k is not None]
            while any(k.labels is None for k in needed):  # waiting for a key frame is not our cost
                self._take_inner()
            t0 = time.perf_counter()
            labels, fields["direction"] = self._propagate(job)
            ms = (time.perf_counter() - t0) * 1e3
            self.propagate_ms.add(ms)
            fields["motion_px"] = round(job.motion.magnitude, 2)
        if job.decision.score is not None:
            fields["score"] = round(job.decision.score, 4)
        self._pending.popleft()
        if job in self._open:  # collected before its next key frame came (end of stream): forward only
            self._open.remove(job)
        self._account(job)
        return Collected(job.tag, labels, ms, {"scheduler": job.scheduler_ms}, fields)

    def _propagate(self, job: _Pending) -> tuple[np.ndarray, str]:
        before = self.motion.warp_labels(job.prev_key.labels, job.motion)
        after_key = job.next_key
        if after_key is None:
            return before, "forward"
        back = self.motion.estimate(after_key.thumb, job.thumb, job.prev_key.labels.shape[1])
        after = self.motion.warp_labels(after_key.labels, back)
        return self.motion.blend_labels(before, after, job.motion, back), "both"

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def _take_inner(self) -> None:
        """Move the oldest result out of the wrapped backend into its job."""
        result = self.inner.collect_result()
        expected = self._inner_order.popleft()
        if result.tag is not expected:
            raise RuntimeError("the wrapped backend returned results out of submission order")
        expected.labels, expected.infer_ms = result.labels, result.infer_ms

    def _account(self, job: _Pending) -> None:
        self.frames += 1
        self.key_frames += job.decision.key
        self.reasons[job.decision.reason] += 1
        self.scheduler_ms.add(job.scheduler_ms)

    # -- lifetime and reporting ------------------------------------------------------------
    def close(self) -> None:
        if not self._closed:
            self.inner.close()
        super().close()

    def describe(self) -> dict[str, Any]:
        info = self.inner.describe()
        info["temporal"] = {
            "mode": self.scheduler.describe(), "direction": "both" if self.both_ways else "forward",
            "flow_scale": self.config.flow_scale, "frames": self.frames, "key_frames": self.key_frames,
            "key_share": round(self.key_frames / self.frames, 4) if self.frames else None,
            "reasons": dict(self.reasons.most_common()),
            "scheduler_ms": _ms(self.scheduler_ms), "propagate_ms": _ms(self.propagate_ms)}
        return info

    def summary_lines(self) -> list[tuple[str, str]]:
        head = (f"{self.scheduler.describe()}, {'both directions' if self.both_ways else 'forward'}, "
                f"flow at {self.config.flow_scale:g}x")
        if not self.frames:
            return [("temporal", f"{head}: no frames")]
        why = ", ".join(f"{n} {reason}" for reason, n in self.reasons.most_common())
        sched = self.scheduler_ms.percentiles((50,))[0]
        prop = (f", propagation p50 {self.propagate_ms.percentiles((50,))[0]:.2f} ms"
                if self.propagate_ms.seen else "")
        return [("temporal", f"{head}: {self.key_frames}/{self.frames} key frames "
                             f"({100 * self.key_frames / self.frames:.0f} %; {why})"),
                ("", f"scheduler p50 {sched:.2f} ms/frame{prop}")]


def _ms(r: Reservoir) -> dict[str, float] | None:
    if not r.seen:
        return None
    p50, p90, p99 = r.percentiles()
    return {"mean": round(r.mean(), 3), "p50": round(p50, 3), "p90": round(p90, 3), "p99": round(p99, 3)}
