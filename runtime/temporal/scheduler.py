"""Which frames run the full network (key frames) and which reuse the last key frame's result.

Why a scheduler at all: a fixed interval pays for a key frame when nothing moved and reuses a
stale result when everything did. The adaptive policy looks at what the motion estimate says
about the current frame (how much of it the warped key frame fails to explain, how far things
moved, whether it is another scene) and asks for a key frame only when the propagated result
stops being trustworthy; a maximum interval bounds the cost of any wrong guess.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.temporal.motion import Motion

# Reasons, as they appear in --stats and the summary.
FIRST, INTERVAL, MAX_INTERVAL, SCENE_CUT, CHANGE, PROPAGATED = (
    "first", "interval", "max-interval", "scene-cut", "change", "propagated")


# Scene cuts, measured on street clips (fast and busy ones included): within a clip the grey
# histogram distance to a key frame up to 4 frames back stayed <= 0.20 and the unexplained share
# <= 0.29; between two different streets the distance was >= 0.23 for 99 % of pairs and the
# share >= 0.38 for 95 %. Either signal over its line is a cut; a cut under both lines still
# exceeds any useful change threshold, so it becomes a key frame all the same.
CUT_HISTOGRAM = 0.25
CUT_BAD_SHARE = 0.4


@dataclass
class Decision:
    key: bool
    reason: str
    score: float | None = None  # the change score the decision was made on (adaptive only)


def change_score(motion: Motion) -> float:
    """How untrustworthy a propagated result is: the share of pixels the warped key frame does
    not explain (grey-level residual above RESIDUAL_LEVEL: occlusions, new objects, motion the
    flow got wrong). Of the cheap candidates it predicted best how many pixels a forward-warped
    class map disagrees with inference on that frame (correlation over 672 key/frame pairs of
    three tuning clips, 1-8 frames apart: unexplained share 0.85, mean residual 0.87, mean flow
    magnitude 0.51, motion along label edges 0.49; distance in frames alone 0.74). The mean
    residual did as well, but a share reads as one: 0.05 = 5 % of the picture unexplained.
    """
    return motion.bad_share


class FixedInterval:
    """A key frame every `n` frames (n = 1: every frame), whatever the motion."""

    adaptive = False

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"fixed interval must be >= 1, got {n}")
        self.n = n
        self.max_interval = n

    def needs_key_now(self, since_key: int | None) -> Decision | None:
        if since_key is None:
            return Decision(True, FIRST)
        if since_key >= self.n:
            return Decision(True, INTERVAL)
        return None

    def decide(self, motion: Motion) -> Decision:
        return Decision(False, PROPAGATED)

    def describe(self) -> str:
        return f"fixed:{self.n}"


class Adaptive:
    """A key frame when the change score exceeds `threshold`, on a scene cut, or after
    `max_interval` frames, whichever comes first."""

    adaptive = True

    def __init__(self, threshold: float, max_interval: int, cut_threshold: float = CUT_HISTOGRAM,
                 cut_bad_share: float = CUT_BAD_SHARE) -> None:
        if threshold <= 0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        if max_interval < 1:
            raise ValueError(f"max interval must be >= 1, got {max_interval}")
        self.threshold = threshold
        self.max_interval = max_interval
        self.cut_threshold = cut_threshold
        self.cut_bad_share = cut_bad_share

    def needs_key_now(self, since_key: int | None) -> Decision | None:
        """Decisions that need no motion estimate (so none is computed)."""
        if since_key is None:
            return Decision(True, FIRST)
        if since_key >= self.max_interval:
            return Decision(True, MAX_INTERVAL)
        return None

    def is_cut(self, hist_distance: float) -> bool:
        return hist_distance > self.cut_threshold

    def decide(self, motion: Motion) -> Decision:
        score = change_score(motion)
        if score > self.cut_bad_share:  # most of the picture follows no motion from the key frame
            return Decision(True, SCENE_CUT, score)
        if score > self.threshold:
            return Decision(True, CHANGE, score)
        return Decision(False, PROPAGATED, score)

    def describe(self) -> str:
        return f"adaptive (threshold {self.threshold:g}, max interval {self.max_interval})"
