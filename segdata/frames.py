"""One way to turn any image into the bytes the fused graph takes.

Calibration, evaluation and the runtime all call `to_model_input`, so INT8 ranges are
measured on exactly the pixels the engine later sees.
"""

from __future__ import annotations

import cv2
import numpy as np

# What counts as an image file, for every folder/glob reader (runtime sources, calibration, data sets).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
                            ".pnm", ".jp2"})


class FrameError(ValueError):
    """An image that cannot be turned into a model input (the message says why)."""


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Grayscale, BGRA and 16-bit images -> 3-channel uint8 BGR; anything else is refused."""
    if image is None or not isinstance(image, np.ndarray) or image.size == 0:
        raise FrameError("empty or unreadable image")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = np.clip(image * (255.0 if image.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise FrameError(f"unsupported pixel type {image.dtype}; expected 8- or 16-bit images")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise FrameError(f"unsupported image shape {image.shape}; expected HxW, HxWx1, HxWx3 or HxWx4")


def to_model_input(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Any image -> contiguous uint8 BGR HxWx3 at the artefact's size (bilinear, as OpenCV does)."""
    image = to_bgr8(image)
    if image.shape[:2] != (height, width):
        interp = cv2.INTER_AREA if image.shape[0] > height else cv2.INTER_LINEAR
        image = cv2.resize(image, (width, height), interpolation=interp)
    return np.ascontiguousarray(image)


def labels_to_size(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Class map back to a frame's size: nearest neighbour, so no invented class ids."""
    if labels.shape[:2] == (height, width):
        return labels
    return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)


def read_image(path: str) -> np.ndarray:
    """cv2.imread keeping 16-bit and alpha, so to_bgr8 can convert them deliberately."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise FrameError(f"cannot read image {path} (missing, not an image, or truncated)")
    return image
