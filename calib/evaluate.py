"""mIoU of any predictor (PyTorch, OpenVINO, ORT, TensorRT) on labelled frames, the same way."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from tqdm import tqdm

from segdata.metrics import ConfusionMatrix


def predict_all(predict: Callable, frames: Sequence[np.ndarray], desc: str = "") -> list[np.ndarray]:
    return [predict(f)[0] for f in tqdm(frames, desc=desc, unit="img", leave=False,
                                        disable=None if desc else True)]


def confusion(predictions: Sequence[np.ndarray], labels: Sequence[np.ndarray | None],
              num_classes: int) -> ConfusionMatrix:
    cm = ConfusionMatrix(num_classes)
    for pred, label in zip(predictions, labels):
        if label is not None:
            cm.update(pred, label)
    return cm


def agreement(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    same = sum(int(np.count_nonzero(x == y)) for x, y in zip(a, b))
    return same / max(sum(x.size for x in a), 1)
