"""Compare an exported graph with the PyTorch model it came from, on real frames."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from segdata.confidence import confidence_error, confidence_from_logits
from segdata.evaluation import agreement

FP32_MIN_AGREEMENT = 0.999
# An FP32 graph's confidence output against the same formula on PyTorch's logits, in uint8
# levels: float noise moves a value across a rounding boundary by at most one level.
CONFIDENCE_MAX_LEVELS = 1


@dataclass
class Agreement:
    """How closely two predictors agree on the same frames."""

    frames: int
    pixel_agreement: float  # share of pixels with the same class id
    max_abs_logit_diff: float | None  # None when one side gives no logits
    mean_abs_logit_diff: float | None
    confidence: dict[str, Any] | None = None  # segdata.confidence.confidence_error, when the graph has one

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        logit = ("" if self.max_abs_logit_diff is None else
                 f", max |Δlogit| {self.max_abs_logit_diff:.2e}")
        conf = ("" if self.confidence is None else
                f", confidence max |Δ| {self.confidence['max_abs_levels']} of 255 levels")
        return f"{self.pixel_agreement * 100:.3f} % pixels agree over {self.frames} frames{logit}{conf}"


def compare(reference: list[tuple[np.ndarray, np.ndarray | None]],
            candidate: list[tuple[np.ndarray, np.ndarray | None]]) -> Agreement:
    """Each list holds (labels HxW, logits CxHxW or None) per frame, in the same order."""
    diffs_max, diffs_mean = [], []
    for (_, ref_logits), (_, cand_logits) in zip(reference, candidate):
        if ref_logits is not None and cand_logits is not None:
            diff = np.abs(ref_logits.astype(np.float32) - cand_logits.astype(np.float32))
            diffs_max.append(float(diff.max()))
            diffs_mean.append(float(diff.mean()))
    return Agreement(
        frames=len(reference),
        pixel_agreement=agreement([r[0] for r in reference], [c[0] for c in candidate]),
        max_abs_logit_diff=max(diffs_max) if diffs_max else None,
        mean_abs_logit_diff=float(np.mean(diffs_mean)) if diffs_mean else None,
    )


def confidence_vs_logits(runner: Any, frames: list[np.ndarray],
                         reference: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """A graph's `confidence` output (through `runner`) against the same definition computed
    from the reference's logits (segdata.confidence), frame by frame."""
    from artefact.manifest import CONFIDENCE_NAME

    got = [runner.infer(f, [CONFIDENCE_NAME])[CONFIDENCE_NAME] for f in frames]
    return confidence_error([confidence_from_logits(logits) for _, logits in reference], got)


def verification_frames(height: int, width: int, count: int = 4, seed: int = 7) -> list[np.ndarray]:
    """Street scenes (not noise): agreement on noise says little about agreement on roads."""
    from segdata.synthetic import render_scene, split_seeds

    return [render_scene(s, height, width)[0] for s in split_seeds("test", count)[:count]]
