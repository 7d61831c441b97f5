"""Segmentation accuracy as semseg reports it: mIoU, mAcc and allAcc from one confusion matrix.

Why a matrix: every evaluation (training validation, the INT8 accuracy gate, benchmarks)
accumulates over the whole set and then divides, exactly as hszhao/semseg does, so numbers
from different tools agree, and per-shard matrices merge without loss.
"""

from __future__ import annotations

import math

import numpy as np


class ConfusionMatrix:
    """Counts (target class, predicted class) pixel pairs; `ignore_index` targets are skipped.

    Rows are targets, columns predictions. A prediction outside [0, num_classes) counts as a
    miss of its target (a false negative) without being a false positive of any class, which
    is what semseg's histogram-based intersectionAndUnion does.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        # The extra last column collects out-of-range predictions.
        self.matrix = np.zeros((self.num_classes, self.num_classes + 1), np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> ConfusionMatrix:
        """Add one prediction/target pair (any shape, same shape; integer class ids)."""
        pred = np.asarray(pred)
        target = np.asarray(target)
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from target shape {target.shape}; "
                             "resize the prediction to the label size (nearest) first")
        n = self.num_classes
        t = target.reshape(-1).astype(np.int64)
        p = pred.reshape(-1).astype(np.int64)
        keep = (t != self.ignore_index) & (t >= 0) & (t < n)
        t, p = t[keep], p[keep]
        p = np.where((p >= 0) & (p < n), p, n)
        counts = np.bincount(t * (n + 1) + p, minlength=n * (n + 1))
        self.matrix += counts.reshape(n, n + 1)
        return self

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix's counts (e.g. from another worker or shard)."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge a {other.num_classes}-class matrix into a "
                             f"{self.num_classes}-class one")
        self.matrix += other.matrix
        return self

    @property
    def intersection(self) -> np.ndarray:
        return np.diag(self.matrix[:, : self.num_classes]).astype(np.int64)

    @property
    def target_pixels(self) -> np.ndarray:
        return self.matrix.sum(1)

    @property
    def pred_pixels(self) -> np.ndarray:
        return self.matrix[:, : self.num_classes].sum(0)

    def iou(self) -> np.ndarray:
        """Per-class IoU; NaN for classes neither present in targets nor predicted."""
        inter = self.intersection
        union = self.target_pixels + self.pred_pixels - inter
        out = np.full(self.num_classes, np.nan)
        ok = union > 0
        out[ok] = inter[ok] / union[ok]
        return out

    def acc(self) -> np.ndarray:
        """Per-class accuracy (recall); NaN for classes absent from the targets."""
        tgt = self.target_pixels
        out = np.full(self.num_classes, np.nan)
        ok = tgt > 0
        out[ok] = self.intersection[ok] / tgt[ok]
        return out

    def miou(self) -> float:
        """Mean IoU over classes with a non-empty union (NaN when nothing was counted)."""
        return _nanmean(self.iou())

    def macc(self) -> float:
        """Mean per-class accuracy over classes present in the targets."""
        return _nanmean(self.acc())

    def all_acc(self) -> float:
        """Pixel accuracy: sum of intersections over all labelled target pixels (semseg allAcc)."""
        total = int(self.target_pixels.sum())
        return float(self.intersection.sum() / total) if total else math.nan

    def to_dict(self, class_names: tuple[str, ...] | list[str] | None = None) -> dict:
        """JSON-friendly summary; NaN becomes None so json.dumps writes valid JSON."""
        if class_names is None:
            class_names = [str(i) for i in range(self.num_classes)]
        if len(class_names) != self.num_classes:
            raise ValueError(f"{len(class_names)} class names for {self.num_classes} classes")
        iou, acc, tgt = self.iou(), self.acc(), self.target_pixels
        return {
            "miou": _json_float(self.miou()),
            "macc": _json_float(self.macc()),
            "all_acc": _json_float(self.all_acc()),
            "pixels": int(tgt.sum()),
            "per_class": {
                name: {"iou": _json_float(iou[i]), "acc": _json_float(acc[i]), "pixels": int(tgt[i])}
                for i, name in enumerate(class_names)
            },
        }


def _nanmean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else math.nan


def _json_float(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)
