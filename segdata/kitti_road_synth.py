"""A SYNTHETIC data set in the KITTI road `data_road` layout and colours, made here.

Why: KITTI road cannot be downloaded on this project's machines, but its loader, the fork's
recipe, the benchmark and the search must run on something with the very same files. The
project's synthetic street generator (segdata.synthetic) renders the scenes; their exact
Cityscapes labels become KITTI road ground truth: road -> magenta, sky -> black (the
generator's stand-in for 'outside the annotated area'), everything else -> red. Figures on it
say nothing about real KITTI road accuracy; they show that the pipeline is whole.

Scenes come from the generator's "test" seed range, disjoint from the range the shipped demo
model was trained on. The three categories take turns (um, umm, uu) and differ slightly in
size, as KITTI's own images do (375x1242, 370x1224, 374x1238 ...), so native-size training
meets several H/W; um also gets an `um_lane_*` file (the ego-lane task, which the loader skips).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from segdata.labels import KITTI_ROAD_BLACK, KITTI_ROAD_MAGENTA, KITTI_ROAD_RED
from segdata.synthetic import ROAD, SKY, render_scene, split_seeds

# (dH, dW) of each category from the nominal size: KITTI's sizes vary by a few pixels too
SIZE_OFFSETS = {"um": (0, 0), "umm": (-2, -6), "uu": (1, -2)}
CATEGORIES = tuple(SIZE_OFFSETS)


def road_gt_bgr(label: np.ndarray) -> np.ndarray:
    """Cityscapes trainIds -> a gt_image_2 colour image (BGR, as cv2 writes it)."""
    out = np.empty((*label.shape, 3), np.uint8)
    out[:] = KITTI_ROAD_RED[::-1]
    out[label == ROAD] = KITTI_ROAD_MAGENTA[::-1]
    out[label == SKY] = KITTI_ROAD_BLACK[::-1]
    return out


def _write(path: Path, image: np.ndarray) -> None:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    if not cv2.imwrite(str(tmp), image):
        raise OSError(f"cannot write {tmp}")
    os.replace(tmp, path)


def write_data_road(root: str | Path, n_train: int, n_test: int = 0, height: int = 96,
                    width: int = 320, lanes: bool = True) -> Path:
    """Write ROOT/data_road/{training,testing}/... and return the data_road folder."""
    if n_train < 1 or n_test < 0 or height < 16 or width < 16:
        raise ValueError(f"need n_train >= 1, n_test >= 0 and at least 16x16, got {n_train}, {n_test}, "
                         f"{height}x{width}")
    base = Path(root) / "data_road"
    dirs = {k: base / k for k in ("training/image_2", "training/gt_image_2", "testing/image_2")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    counters = dict.fromkeys(CATEGORIES, 0)
    seeds = split_seeds("test", n_train + n_test)
    for i, seed in enumerate(seeds):
        cat = CATEGORIES[i % len(CATEGORIES)]
        dh, dw = SIZE_OFFSETS[cat]
        image, label = render_scene(seed, height + dh, width + dw)
        idx = f"{counters[cat]:06d}"
        counters[cat] += 1
        if i < n_train:
            _write(dirs["training/image_2"] / f"{cat}_{idx}.png", image)
            gt = road_gt_bgr(label)
            _write(dirs["training/gt_image_2"] / f"{cat}_road_{idx}.png", gt)
            if lanes and cat == "um":
                _write(dirs["training/gt_image_2"] / f"um_lane_{idx}.png", gt)
        else:
            _write(dirs["testing/image_2"] / f"{cat}_{idx}.png", image)
    return base
