"""semseg's training augmentation in numpy/OpenCV: scale, rotate, blur, flip, crop (pad with mean)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

IGNORE = 255


@dataclass
class Augment:
    """Random scale [0.5, 2.0], rotate [-10, 10] deg, Gaussian blur, h-flip, crop: semseg's recipe."""

    crop: tuple[int, int]
    scale: tuple[float, float] = (0.5, 2.0)
    rotate: tuple[float, float] = (-10.0, 10.0)
    mean_bgr: tuple[float, float, float] = (103.53, 116.28, 123.675)
    blur_p: float = 0.5

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
        s = rng.uniform(*self.scale)
        image = cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR)
        label = cv2.resize(label, None, fx=s, fy=s, interpolation=cv2.INTER_NEAREST)
        angle = rng.uniform(*self.rotate)
        if abs(angle) > 0.1:
            h, w = label.shape
            m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
            image = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=self.mean_bgr)
            label = cv2.warpAffine(label, m, (w, h), flags=cv2.INTER_NEAREST,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=IGNORE)
        if rng.random() < self.blur_p:
            image = cv2.GaussianBlur(image, (5, 5), 0)
        if rng.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        return self._crop(image, label, rng)

    def _crop(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray]:
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
