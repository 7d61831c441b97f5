"""Compare an exported graph with the PyTorch model it came from, on real frames - and refuse a
model whose agreement would mean nothing.

Agreement with PyTorch proves the export, not the model: weights with NaN/Inf give NaN logits on
both sides and "100 % pixels agree", and a model that paints one class over every frame agrees
with itself perfectly. So a build first requires finite weights (`require_finite_weights`), then
finite logits and a class map that is not one class on every verification frame
(`require_meaningful`), each failing the build with one line that names the cause.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from build_engine.errors import BuildError
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


def require_finite_weights(net: object) -> None:
    """BuildError if any floating-point weight or buffer of the model is NaN or Inf."""
    import torch

    bad = [(name, int((~torch.isfinite(t)).sum())) for name, t in net.state_dict().items()
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        total = sum(n for _, n in bad)
        raise BuildError(f"the weights hold {total} NaN/Inf values in {len(bad)} tensors (first: "
                         f"{bad[0][0]}); the checkpoint is damaged or its training diverged - build from a "
                         "good checkpoint")


def require_meaningful(predictions: list[tuple[np.ndarray, np.ndarray | None]], who: str,
                       classes: list[str] | None = None) -> None:
    """BuildError for non-finite logits on any verification frame, or one class over every pixel of
    every verification frame (street scenes hold several: such a model has learned nothing)."""
    for i, (_, logits) in enumerate(predictions):
        if logits is not None and not np.isfinite(logits).all():
            count = int((~np.isfinite(logits)).sum())
            raise BuildError(f"{who} gives {count} NaN/Inf logits on verification frame {i + 1} of "
                             f"{len(predictions)}; the model is degenerate - build from a good checkpoint")
    if predictions and all(labels.size and labels.min() == labels.max() for labels, _ in predictions):
        ids = sorted({int(labels.flat[0]) for labels, _ in predictions})
        names = [f"{i} ({classes[i]!r})" if classes and i < len(classes) else str(i) for i in ids]
        raise BuildError(f"{who} gives one class over every pixel of each of the {len(predictions)} "
                         f"verification frames (id {', '.join(names)}); the model is degenerate - build "
                         "from a good checkpoint")
