"""KITTI road scores: road/not-road IoU and the KITTI devkit's MaxF in the image plane.

The devkit (evaluateRoad.py / helper.py of the KITTI road benchmark) reads a road-probability
PNG (uint8, / 255) and the ground truth (road = blue channel > 0, valid = red channel > 0, so
black is not evaluated), histograms the probabilities of road and not-road pixels inside the
valid area at thresholds 0/255 .. 255/255 (road predicted where p >= t), sums FN and FP over
all images, and takes the threshold with the best F-measure (precision and recall from the
totals). `MaxF` does exactly that on probabilities quantised to uint8 as the PNG would hold
them. Torch-free: evaluation and the benchmark share it.
"""

from __future__ import annotations

import math

import numpy as np

from segdata.labels import IGNORE_INDEX
from segdata.metrics import ConfusionMatrix

THRESHOLDS = np.arange(256) / 255.0


class MaxF:
    """Accumulates the devkit's FN/FP histograms over images; `result()` gives MaxF and friends."""

    def __init__(self) -> None:
        self.fn = np.zeros(256, np.int64)  # fn[k]: road pixels with quantised prob < k
        self.fp = np.zeros(256, np.int64)  # fp[k]: not-road pixels with quantised prob >= k
        self.pos = 0
        self.neg = 0

    def update(self, road_prob: np.ndarray, road: np.ndarray, valid: np.ndarray) -> MaxF:
        """road_prob: HxW float in [0, 1] (or uint8 0..255); road, valid: HxW bool ground truth."""
        if road_prob.shape != road.shape or road.shape != valid.shape:
            raise ValueError(f"shapes differ: prob {road_prob.shape}, road {road.shape}, valid {valid.shape}")
        q = road_prob if road_prob.dtype == np.uint8 else \
            np.clip(np.rint(np.asarray(road_prob, np.float64) * 255), 0, 255).astype(np.uint8)
        pos_hist = np.bincount(q[road & valid].ravel(), minlength=256)
        neg_hist = np.bincount(q[~road & valid].ravel(), minlength=256)
        # road pixels missed at threshold k/255: those below it
        self.fn += np.concatenate(([0], np.cumsum(pos_hist)[:-1]))
        # not-road pixels taken for road at threshold k/255: those at or above it
        self.fp += np.cumsum(neg_hist[::-1])[::-1]
        self.pos += int(pos_hist.sum())
        self.neg += int(neg_hist.sum())
        return self

    def result(self) -> dict:
        """{"maxf", "precision", "recall", "threshold", "avg_precision"} (None when undefined)."""
        if self.pos == 0:
            return {"maxf": None, "precision": None, "recall": None, "threshold": None,
                    "avg_precision": None}
        tp = self.pos - self.fn
        recall = tp / float(self.pos)
        precision = tp / (tp + self.fp + 1e-10)
        keep = ~((recall == 0) & (precision == 0))
        recall, precision, thresholds = recall[keep], precision[keep], THRESHOLDS[keep]
        if recall.size == 0:
            return {"maxf": 0.0, "precision": 0.0, "recall": 0.0, "threshold": None, "avg_precision": 0.0}
        f = 2 * precision * recall / (precision + recall + 1e-10)
        best = int(f.argmax())
        # the devkit's Pascal VOC 11-point average precision, reported beside MaxF
        ap = [precision[recall >= r].max() for r in np.arange(0, 1.1, 0.1) if (recall >= r).any()]
        return {"maxf": float(f[best]), "precision": float(precision[best]),
                "recall": float(recall[best]), "threshold": float(thresholds[best]),
                "avg_precision": float(np.mean(ap)) if ap else 0.0}


def road_ground_truth(label: np.ndarray, label_set: str) -> tuple[np.ndarray, np.ndarray]:
    """(road, valid) boolean maps from training ids of a KITTI road label set."""
    if label_set == "kitti-road":
        return label == 2, (label == 1) | (label == 2)
    if label_set == "kitti-road-binary":
        return label == 1, (label == 0) | (label == 1)
    raise ValueError(f"not a KITTI road label set: {label_set!r}")


def road_class(label_set: str) -> int:
    return {"kitti-road": 2, "kitti-road-binary": 1}[label_set]


class RoadScores:
    """Everything the KITTI road table reports for one model on one set, from class probabilities:
    mIoU over the label set's own classes, road/not-road mIoU inside the valid area, MaxF."""

    def __init__(self, label_set: str, num_classes: int) -> None:
        self.label_set = label_set
        self.classes = ConfusionMatrix(num_classes)
        self.binary = ConfusionMatrix(2)
        self.maxf = MaxF()

    def update(self, probs: np.ndarray, label: np.ndarray) -> None:
        """probs: CxHxW class probabilities at the label's size; label: HxW training ids."""
        pred = probs.argmax(0).astype(np.uint8)
        self.classes.update(pred, label)
        road, valid = road_ground_truth(label, self.label_set)
        road_id = road_class(self.label_set)
        target = np.where(valid, road.astype(np.uint8), IGNORE_INDEX).astype(np.uint8)
        self.binary.update((pred == road_id).astype(np.uint8), target)
        self.maxf.update(probs[road_id], road, valid)

    def result(self, class_names: tuple[str, ...]) -> dict:
        m = self.maxf.result()
        return {"miou": _num(self.classes.miou()),
                "per_class": self.classes.to_dict(class_names)["per_class"],
                "road_miou": _num(self.binary.miou()),
                "road_iou": _num(self.binary.iou()[1]), "maxf": m["maxf"], "maxf_detail": m}


def _num(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)
