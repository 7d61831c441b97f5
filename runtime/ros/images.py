"""sensor_msgs/Image and sensor_msgs/CompressedImage <-> the pipeline's uint8 BGR frames.

Decoding follows cv_bridge: the encodings cameras publish (bgr8, rgb8, bgra8, rgba8, mono8,
mono16, the Bayer patterns, demosaiced by OpenCV) become BGR; 16-bit data is scaled to 8 bits
as cv_bridge does (x 255/65535). Anything else (depth floats, YUV, 32-bit ints) is refused with
the encoding's name, because guessing a conversion would feed the model garbage. Only numpy
and OpenCV here: the bag reader hands over plain fields, not ROS message objects.
"""

from __future__ import annotations

import cv2
import numpy as np

# encoding -> (channels, dtype, conversion to BGR or None for none)
_RAW: dict[str, tuple[int, type, int | None]] = {
    "bgr8": (3, np.uint8, None),
    "rgb8": (3, np.uint8, cv2.COLOR_RGB2BGR),
    "bgra8": (4, np.uint8, cv2.COLOR_BGRA2BGR),
    "rgba8": (4, np.uint8, cv2.COLOR_RGBA2BGR),
    "mono8": (1, np.uint8, cv2.COLOR_GRAY2BGR),
    "mono16": (1, np.uint16, cv2.COLOR_GRAY2BGR),
}
# ROS names the colour of the first 2x2 cell; OpenCV names the 2nd and 3rd pixel of the 2nd row:
# ROS rggb is OpenCV's BayerBG (the long-standing cv_bridge mapping).
_BAYER = {"rggb": cv2.COLOR_BayerBG2BGR, "bggr": cv2.COLOR_BayerRG2BGR,
          "gbrg": cv2.COLOR_BayerGR2BGR, "grbg": cv2.COLOR_BayerGB2BGR}
SUPPORTED = (*_RAW, *(f"bayer_{p}{b}" for p in _BAYER for b in (8, 16)))
COMPRESSED_FORMATS = ("jpeg", "png")


class ImageFormatError(ValueError):
    """An image this reader refuses (encoding or format named in the message)."""


def check_encoding(encoding: str) -> None:
    if encoding.lower() not in SUPPORTED:
        raise ImageFormatError(f"sensor_msgs/Image encoding {encoding!r} is not supported "
                               f"(supported: {', '.join(SUPPORTED)})")


def decode_raw(encoding: str, height: int, width: int, step: int, is_bigendian: bool,
               data: np.ndarray | bytes) -> np.ndarray:
    """A sensor_msgs/Image's fields -> uint8 BGR HxWx3 (a new array the caller may keep)."""
    enc = encoding.lower()
    check_encoding(enc)
    if enc.startswith("bayer_"):
        channels, dtype, code = 1, (np.uint16 if enc.endswith("16") else np.uint8), _BAYER[enc[6:10]]
    else:
        channels, dtype, code = _RAW[enc]
    itemsize = np.dtype(dtype).itemsize
    row = width * channels * itemsize
    buf = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8).ravel()
    if height <= 0 or width <= 0 or step < row or buf.size < step * (height - 1) + row:
        raise ImageFormatError(f"sensor_msgs/Image {width}x{height} {encoding} with step {step} "
                               f"holds {buf.size} bytes: not a whole image")
    rows = np.lib.stride_tricks.as_strided(buf, (height, row), (step, 1))  # drops the row padding
    pixels = np.ascontiguousarray(rows).view(np.dtype(dtype).newbyteorder(">" if is_bigendian else "<"))
    image = pixels.astype(dtype, copy=False).reshape(height, width, channels) if channels > 1 \
        else pixels.astype(dtype, copy=False).reshape(height, width)
    if itemsize == 2:  # cv_bridge's 16 -> 8 bit scaling; demosaic first, at full depth
        if code is not None and enc.startswith("bayer_"):
            image = cv2.cvtColor(image, code)
            code = None
        image = cv2.convertScaleAbs(image, alpha=255.0 / 65535.0)
    if code is not None:
        image = cv2.cvtColor(image, code)
    return np.ascontiguousarray(image)


def compressed_kind(fmt: str) -> str:
    """'jpeg' or 'png' for a CompressedImage's format field ('jpeg', 'rgb8; jpeg compressed bgr8',
    'png', ...); ImageFormatError for anything else (compressedDepth, h264, ...)."""
    text = fmt.lower()
    if "compresseddepth" in text:
        raise ImageFormatError(f"sensor_msgs/CompressedImage format {fmt!r} (a depth image) is not supported "
                               "(supported: jpeg, png)")
    for kind, names in (("jpeg", ("jpeg", "jpg")), ("png", ("png",))):
        if any(n in text for n in names):
            return kind
    raise ImageFormatError(f"sensor_msgs/CompressedImage format {fmt!r} is not supported "
                           "(supported: jpeg, png)")


def decode_compressed(fmt: str, data: np.ndarray | bytes) -> np.ndarray:
    """A CompressedImage's format and bytes -> uint8 BGR HxWx3."""
    compressed_kind(fmt)
    buf = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8).ravel()
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if image is None:
        raise ImageFormatError(f"sensor_msgs/CompressedImage ({fmt}, {buf.size} bytes) cannot be decoded")
    return image
