"""semseg's training augmentation in numpy/OpenCV: scale, rotate, blur, flip, crop (pad with mean).

`strength` scales the whole recipe for the hyper-parameter search: 1 is semseg's, 0 only crops
(the scale range shrinks towards 1, rotation and blur towards nothing, flip off). A crop of
None keeps the whole (augmented) image: training at the images' own size, batches padded.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

IGNORE = 255


@dataclass
class Augment:
    """Random scale [0.5, 2.0], rotate [-10, 10] deg, Gaussian blur, h-flip, crop: semseg's recipe."""

    crop: tuple[int, int] | None
    scale: tuple[float, float] = (0.5, 2.0)
    rotate: tuple[float, float] = (-10.0, 10.0)
    mean_bgr: tuple[float, float, float] = (103.53, 116.28, 123.675)
    blur_p: float = 0.5
    strength: float = 1.0

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
        k = self.strength
        lo, hi = 1 + (self.scale[0] - 1) * k, 1 + (self.scale[1] - 1) * k
        s = rng.uniform(lo, hi)  # always drawn: the random stream stays the same for any range
        if abs(s - 1) > 1e-6:
            image = cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR)
            label = cv2.resize(label, None, fx=s, fy=s, interpolation=cv2.INTER_NEAREST)
        angle = rng.uniform(self.rotate[0] * k, self.rotate[1] * k)
        if abs(angle) > 0.1:
            h, w = label.shape
            m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
            image = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=self.mean_bgr)
            label = cv2.warpAffine(label, m, (w, h), flags=cv2.INTER_NEAREST,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=IGNORE)
        if k > 0 and rng.random() < self.blur_p * k:
            image = cv2.GaussianBlur(image, (5, 5), 0)
        if k > 0 and rng.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        if self.crop is None:
            return np.ascontiguousarray(image), np.ascontiguousarray(label)
        return self._crop(image, label, rng)

    def _crop(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray]:
        assert self.crop is not None
        ch, cw = self.crop
        h, w = label.shape
        ph, pw = max(ch - h, 0), max(cw - w, 0)
        if ph or pw:
            top, left = ph // 2, pw // 2
            image = cv2.copyMakeBorder(np.ascontiguousarray(image), top, ph - top, left, pw - left,
                                       cv2.BORDER_CONSTANT, value=self.mean_bgr)
            label = cv2.copyMakeBorder(np.ascontiguousarray(label), top, ph - top, left, pw - left,
                                       cv2.BORDER_CONSTANT, value=IGNORE)
            h, w = label.shape
        y = int(rng.integers(0, h - ch + 1))
        x = int(rng.integers(0, w - cw + 1))
        return (np.ascontiguousarray(image[y:y + ch, x:x + cw]),
                np.ascontiguousarray(label[y:y + ch, x:x + cw]))


def pad_batch(images: list[np.ndarray], labels: list[np.ndarray],
              mean_bgr: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Stack images of different sizes: each padded bottom-right to the largest (image with the
    mean, label with the ignore id), so padding never counts in the loss."""
    h = max(x.shape[0] for x in images)
    w = max(x.shape[1] for x in images)
    out_i = np.empty((len(images), h, w, 3), np.uint8)
    out_l = np.full((len(images), h, w), IGNORE, np.uint8)
    out_i[:] = np.clip(np.rint(mean_bgr), 0, 255).astype(np.uint8)
    for n, (image, label) in enumerate(zip(images, labels)):
        out_i[n, :image.shape[0], :image.shape[1]] = image
        out_l[n, :label.shape[0], :label.shape[1]] = label
    return out_i, out_l
