"""The evaluation protocol: how one image becomes one class map, and how maps become mIoU.

One module for every accuracy figure in the project, so they agree: the accuracy benchmark
(PyTorch and every artefact on the same images), the build's accuracy gate and training's
held-out score all count pixels the same way. Anything that predicts plugs in as a `Model`:
a PyTorch module, an artefact's runner, a backend's `infer`. Torch-free (numpy and OpenCV).

Modes (semseg's test protocol, adapted to fixed-size artefacts):
  whole  resize the image to the model's input size (the artefact's fixed size), predict,
         class map back to the label's size by nearest neighbour. The runtime's own path.
  flip   whole, plus the mirrored image: softmax probabilities averaged.
  slide  the image at base_size (default: its own size) padded with the mean to at least
         the crop (= the model's input size), crops every ceil(2/3 crop), softmax averaged
         over overlaps, bilinear to the label's size.
  ms     slide at scales 0.5..1.75 of the base size, each with flip, probabilities summed
         (semseg's multi-scale). The crop stays the artefact's fixed size, so every scale
         runs on the same static-shape artefact: no dynamic shapes are needed.
slide/flip/ms need logits. Metrics: one segdata.metrics.ConfusionMatrix per model,
accumulated over the whole set and divided at the end, as hszhao/semseg computes them
(ignore label 255; allAcc = sum I / sum target).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from segdata.frames import labels_to_size, to_model_input
from segdata.metrics import ConfusionMatrix

MODES = ("whole", "slide", "flip", "ms")
SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
STRIDE_RATE = 2 / 3

LabelsFn = Callable[[np.ndarray], np.ndarray]  # model input -> HxW class ids
LogitsFn = Callable[[np.ndarray], np.ndarray]  # model input -> CxHxW float logits


def softmax_hwc(logits: np.ndarray) -> np.ndarray:
    """CxHxW logits -> HxWxC probabilities (float32, numerically stable)."""
    x = np.moveaxis(np.asarray(logits, np.float32), 0, -1)
    x = x - x.max(-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(-1, keepdims=True)
    return x


def net_probs(logits_fn: LogitsFn, crop: np.ndarray, flip: bool) -> np.ndarray:
    """semseg's net_process: softmax, averaged with the mirrored crop's when flipping."""
    probs = softmax_hwc(logits_fn(crop))
    if flip:
        mirrored = softmax_hwc(logits_fn(np.ascontiguousarray(crop[:, ::-1])))
        probs = (probs + mirrored[:, ::-1]) / 2
    return probs


def resize_probs(probs: np.ndarray, height: int, width: int) -> np.ndarray:
    if probs.shape[:2] == (height, width):
        return probs
    # cv2.resize handles at most 512 channels; beyond that, resize in chunks of classes
    chunks = [cv2.resize(np.ascontiguousarray(probs[..., i:i + 512]), (width, height),
                         interpolation=cv2.INTER_LINEAR) for i in range(0, probs.shape[2], 512)]
    chunks = [c[..., None] if c.ndim == 2 else c for c in chunks]
    return np.concatenate(chunks, -1) if len(chunks) > 1 else chunks[0]


def windows(height: int, width: int, crop_h: int, crop_w: int,
            stride_rate: float = STRIDE_RATE) -> list[tuple[int, int]]:
    """Top-left corners of semseg's sliding-window grid (the last window flush with the edge)."""
    stride_h, stride_w = math.ceil(crop_h * stride_rate), math.ceil(crop_w * stride_rate)
    grid_h = math.ceil(max(height - crop_h, 0) / stride_h) + 1
    grid_w = math.ceil(max(width - crop_w, 0) / stride_w) + 1
    out = []
    for i in range(grid_h):
        for j in range(grid_w):
            y1 = min(i * stride_h + crop_h, height)
            x1 = min(j * stride_w + crop_w, width)
            out.append((y1 - crop_h, x1 - crop_w))
    return out


def scale_process(logits_fn: LogitsFn, image: np.ndarray, crop_hw: tuple[int, int], out_hw: tuple[int, int],
                  pad_bgr: Sequence[float], flip: bool) -> np.ndarray:
    """semseg's scale_process: pad with the mean to the crop, slide, average, unpad, resize."""
    crop_h, crop_w = crop_hw
    h, w = image.shape[:2]
    pad_h, pad_w = max(crop_h - h, 0), max(crop_w - w, 0)
    top, left = pad_h // 2, pad_w // 2
    if pad_h or pad_w:
        image = cv2.copyMakeBorder(image, top, pad_h - top, left, pad_w - left, cv2.BORDER_CONSTANT,
                                   value=[float(v) for v in pad_bgr])
    new_h, new_w = image.shape[:2]
    total: np.ndarray | None = None
    count = np.zeros((new_h, new_w, 1), np.float32)
    for y, x in windows(new_h, new_w, crop_h, crop_w):
        probs = net_probs(logits_fn, np.ascontiguousarray(image[y:y + crop_h, x:x + crop_w]), flip)
        if total is None:
            total = np.zeros((new_h, new_w, probs.shape[2]), np.float32)
        total[y:y + crop_h, x:x + crop_w] += probs
        count[y:y + crop_h, x:x + crop_w] += 1
    assert total is not None
    total /= count
    total = total[top:top + h, left:left + w]
    return resize_probs(total, *out_hw)


def scaled(image: np.ndarray, long_side: int) -> np.ndarray:
    """semseg: the long side to `long_side`, the other in proportion (bilinear)."""
    h, w = image.shape[:2]
    if h > w:
        new_h, new_w = long_side, round(long_side / h * w)
    else:
        new_h, new_w = round(long_side / w * h), long_side
    if (new_h, new_w) == (h, w):
        return image
    return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)


@dataclass
class Protocol:
    """How one image becomes one class map at the label's size."""

    mode: str
    input_hw: tuple[int, int]
    pad_bgr: tuple[float, float, float]
    scales: tuple[float, ...] = SCALES
    base_size: int | None = None

    @property
    def needs_logits(self) -> bool:
        return self.mode != "whole"

    def predict(self, image: np.ndarray, out_hw: tuple[int, int], labels_fn: LabelsFn | None,
                logits_fn: LogitsFn | None) -> np.ndarray:
        h, w = self.input_hw
        if self.mode == "whole":
            assert labels_fn is not None
            return labels_to_size(labels_fn(to_model_input(image, h, w)), *out_hw)
        assert logits_fn is not None
        if self.mode == "flip":
            probs = net_probs(logits_fn, to_model_input(image, h, w), flip=True)
            return labels_to_size(probs.argmax(-1).astype(np.uint8), *out_hw)
        base = self.base_size or max(image.shape[:2])
        scales = (1.0,) if self.mode == "slide" else self.scales
        flip = self.mode == "ms"
        total = None
        for s in scales:
            probs = scale_process(logits_fn, scaled(image, round(base * s)), (h, w), out_hw, self.pad_bgr,
                                  flip)
            total = probs if total is None else total + probs
        return total.argmax(-1).astype(np.uint8)


def pad_value_bgr(mean: Sequence[float], channel_order: str) -> tuple[float, float, float]:
    """The mean as a BGR pixel: padding with it is zero after normalisation, as semseg pads."""
    m = [float(v) for v in mean]
    b, g, r = (m[::-1] if channel_order.upper() == "RGB" else m)
    return b, g, r


# ------------------------------------------------------------------------------- scoring
@dataclass
class Model:
    """Whatever predicts: `labels` for whole-image mode, `logits` for slide/flip/ms."""

    name: str
    labels: LabelsFn | None = None
    logits: LogitsFn | None = None


@dataclass
class Score:
    """One model's tally over a set: its confusion matrix, time, and pixels equal to the reference's."""

    cm: ConfusionMatrix
    seconds: float = 0.0
    agree: int = 0
    pixels: int = 0

    @property
    def agreement(self) -> float | None:
        return self.agree / self.pixels if self.pixels else None


@dataclass
class Evaluation:
    scores: dict[str, Score]
    images: int  # labelled images scored
    unlabelled: int = 0  # skipped: no ground truth
    names: list[str] = field(default_factory=list)


def evaluate(models: Sequence[Model], samples: Iterable, protocol: Protocol, num_classes: int,
             reference: str | None = None) -> Evaluation:
    """Every model on every labelled sample (anything with `.image` BGR and `.label` HxW or None),
    in one pass, so all see byte-identical inputs read once. `reference` names the model the
    others' pixel agreement is measured against."""
    scores = {m.name: Score(ConfusionMatrix(num_classes)) for m in models}
    images = unlabelled = 0
    for sample in samples:
        if sample.label is None:
            unlabelled += 1
            continue
        images += 1
        out_hw = sample.label.shape[:2]
        ref_pred = None
        for model in models:
            score = scores[model.name]
            t0 = time.perf_counter()
            pred = protocol.predict(sample.image, out_hw, model.labels, model.logits)
            score.seconds += time.perf_counter() - t0
            score.cm.update(pred, sample.label)
            if model.name == reference:
                ref_pred = pred
            elif ref_pred is not None:
                score.agree += int(np.count_nonzero(pred == ref_pred))
                score.pixels += pred.size
    return Evaluation(scores, images, unlabelled, [m.name for m in models])


def confusion(predictions: Sequence[np.ndarray], labels: Sequence[np.ndarray | None],
              num_classes: int, ignore_index: int = 255) -> ConfusionMatrix:
    """One matrix over predictions already at their labels' size (None labels skipped)."""
    cm = ConfusionMatrix(num_classes, ignore_index)
    for pred, label in zip(predictions, labels):
        if label is not None:
            cm.update(pred, label)
    return cm


def agreement(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    """Share of pixels with the same class id in two lists of class maps."""
    same = sum(int(np.count_nonzero(x == y)) for x, y in zip(a, b))
    return same / max(sum(x.size for x in a), 1)


def predict_all(predict: Callable, frames: Sequence[np.ndarray], desc: str = "") -> list[np.ndarray]:
    """Class maps of model-size frames from a predictor returning (labels, logits) (a Runner)."""
    from tqdm import tqdm

    return [predict(f)[0] for f in tqdm(frames, desc=desc, unit="img", leave=False,
                                        disable=None if desc else True)]
