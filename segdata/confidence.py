"""Per-pixel confidence: its definition, how far two confidence maps differ, how well it is calibrated.

The fused graph's optional `confidence` output (python -m build_engine --confidence) is the
largest softmax probability of the resized logits, as uint8 with 255 = 1.0, rounded to the
nearest level. `confidence_from_logits` is the same definition in numpy, so a build can check
its graph against PyTorch's logits and a benchmark can compute it for any model. Torch-free.

Calibration (Guo et al. 2017, "On Calibration of Modern Neural Networks"): pixels are put in
equal-width confidence bins; a calibrated model's accuracy in each bin equals its mean
confidence there. The expected calibration error (ECE) is the pixel-weighted mean of
|accuracy - confidence| over the bins; the reliability diagram draws one against the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

LEVELS = 255  # uint8 confidence: value / 255 is the probability
BINS = 15  # Guo et al.'s bin count for the ECE


def confidence_from_logits(logits: np.ndarray) -> np.ndarray:
    """CxHxW logits -> HxW uint8 max softmax probability (x255, rounded), as the graph computes it."""
    x = np.asarray(logits, np.float32)
    total = np.exp(x - x.max(0, keepdims=True)).sum(0)
    return np.floor(np.float32(LEVELS) / total + np.float32(0.5)).astype(np.uint8)


def confidence_error(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> dict[str, Any]:
    """How far a candidate's confidence maps are from the reference's, in uint8 levels (of 255):
    mean |Δ|, 99th percentile |Δ|, max |Δ| and the mean signed Δ (candidate - reference: > 0 is
    over-confident against the reference)."""
    diffs = np.concatenate([(np.asarray(c, np.int16) - np.asarray(r, np.int16)).ravel()
                            for r, c in zip(reference, candidate)])
    if not diffs.size:
        raise ValueError("no confidence maps to compare")
    absolute = np.abs(diffs)
    return {"frames": len(reference), "mean_abs_levels": round(float(absolute.mean()), 4),
            "p99_abs_levels": float(np.percentile(absolute, 99)), "max_abs_levels": int(absolute.max()),
            "mean_signed_levels": round(float(diffs.mean()), 4),
            "mean_abs_probability": round(float(absolute.mean()) / LEVELS, 6)}


class Reliability:
    """Confidence against accuracy over many pixels: exact counts per uint8 level, from which the
    equal-width bins of the reliability diagram, the ECE and any threshold's coverage follow."""

    def __init__(self, bins: int = BINS) -> None:
        self.bins = bins
        self.count = np.zeros(LEVELS + 1, np.int64)  # pixels per confidence level 0..255
        self.correct = np.zeros(LEVELS + 1, np.int64)  # of those, correctly classified

    def update(self, confidence: np.ndarray, prediction: np.ndarray, label: np.ndarray,
               ignore_index: int = 255) -> None:
        """Add one frame: uint8 confidence, predicted and true class maps of the same size."""
        valid = label != ignore_index
        level = np.asarray(confidence, np.uint8)[valid]
        hit = np.asarray(prediction)[valid] == label[valid]
        self.count += np.bincount(level, minlength=LEVELS + 1)
        self.correct += np.bincount(level[hit], minlength=LEVELS + 1)

    @property
    def pixels(self) -> int:
        return int(self.count.sum())

    def _binned(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pixels, correct, confidence sum) per bin; bin b holds p in (b/bins, (b+1)/bins], and p = 0
        the first bin."""
        levels = np.arange(LEVELS + 1)
        which = np.clip(np.ceil(levels * self.bins / LEVELS).astype(np.int64) - 1, 0, self.bins - 1)
        pixels = np.bincount(which, weights=self.count, minlength=self.bins)
        correct = np.bincount(which, weights=self.correct, minlength=self.bins)
        confidence = np.bincount(which, weights=self.count * levels / LEVELS, minlength=self.bins)
        return pixels, correct, confidence

    def ece(self) -> float:
        """Expected calibration error: the pixel-weighted mean over bins of |accuracy - confidence|."""
        pixels, correct, confidence = self._binned()
        filled = pixels > 0
        gap = np.abs(correct[filled] - confidence[filled])  # = pixels x |accuracy - mean confidence|
        return float(gap.sum() / max(1, self.pixels))

    def mce(self) -> float:
        """Maximum calibration error: the largest |accuracy - confidence| of any non-empty bin."""
        pixels, correct, confidence = self._binned()
        filled = pixels > 0
        if not filled.any():
            return float("nan")
        return float((np.abs(correct[filled] - confidence[filled]) / pixels[filled]).max())

    def overall(self) -> tuple[float, float]:
        """(pixel accuracy, mean confidence) over every pixel counted."""
        n = max(1, self.pixels)
        return float(self.correct.sum() / n), float((self.count * np.arange(LEVELS + 1)).sum() / LEVELS / n)

    def coverage(self, threshold: float) -> tuple[float, float | None]:
        """(share of pixels with confidence >= `threshold`, their accuracy): what a robot that
        ignores less certain pixels keeps, and how often those pixels are right."""
        first = int(np.ceil(threshold * LEVELS - 1e-9))
        kept, right = int(self.count[first:].sum()), int(self.correct[first:].sum())
        return kept / max(1, self.pixels), (right / kept if kept else None)

    def to_dict(self, thresholds: Sequence[float] = (0.5, 0.7, 0.9)) -> dict[str, Any]:
        pixels, correct, confidence = self._binned()
        edges = np.linspace(0.0, 1.0, self.bins + 1)
        accuracy, mean_confidence = self.overall()
        return {"bins": self.bins, "pixels": self.pixels, "ece": round(self.ece(), 5),
                "mce": round(self.mce(), 5), "accuracy": round(accuracy, 5),
                "mean_confidence": round(mean_confidence, 5),
                "per_bin": [{"low": round(float(edges[b]), 4), "high": round(float(edges[b + 1]), 4),
                             "pixels": int(pixels[b]),
                             "accuracy": round(float(correct[b] / pixels[b]), 5) if pixels[b] else None,
                             "confidence": round(float(confidence[b] / pixels[b]), 5) if pixels[b] else None}
                            for b in range(self.bins)],
                "coverage": [{"threshold": t, "share": round(share, 5),
                              "accuracy": None if acc is None else round(acc, 5)}
                             for t in thresholds for share, acc in [self.coverage(t)]]}
