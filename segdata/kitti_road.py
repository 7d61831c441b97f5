"""The KITTI road benchmark's `data_road` layout, read as a segmentation data set.

Layout (as KITTI ships it):
    training/image_2/{um,umm,uu}_NNNNNN.png         camera images
    training/gt_image_2/{um,umm,uu}_road_NNNNNN.png  ground truth: magenta road, red not road,
                                                      black outside the annotated area
    training/gt_image_2/um_lane_NNNNNN.png           the ego-lane task: a different task, skipped
    testing/image_2/*.png                            no ground truth
Two label sets read the same files (segdata.label_sets says why both): "kitti-road", the KITTI
fork's three classes (black, red, magenta -> 0, 1, 2), and "kitti-road-binary" (road / not
road, black ignored as the KITTI devkit ignores it). A ground-truth pixel of any other colour is refused
with the file and the colour named, never mapped to a guess.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from segdata.dataset_base import DatasetError, FileDataset, _empty, _report_unpaired, _require_dir
from segdata.labels import kitti_road_colors_to_ids

ROAD_LABEL_SETS = ("kitti-road", "kitti-road-binary")
CATEGORIES = ("um", "umm", "uu")
_IMAGE = re.compile(r"^(?P<cat>um|umm|uu)_(?P<id>\d+)$")
_GT = re.compile(r"^(?P<cat>um|umm|uu)_(?P<task>road|lane)_(?P<id>\d+)$")


def data_road_root(root: Path) -> Path | None:
    """`root` itself or its `data_road` sub-folder, whichever holds the layout; None if neither."""
    for cand in (root, root / "data_road"):
        if (cand / "training" / "gt_image_2").is_dir():
            return cand
        # no ground truth: still data_road if its images carry the road categories' names
        # (KITTI semantics, the other training/image_2 layout, names them 000000_10.png)
        for sub in ("training", "testing"):
            folder = cand / sub / "image_2"
            if folder.is_dir() and any(_IMAGE.match(p.stem) for p in folder.glob("u*_*.png")):
                return cand
    return None


class KittiRoadDataset(FileDataset):
    """data_road image / gt pairs; labels in the ids of one of ROAD_LABEL_SETS."""

    def __init__(self, pairs: list, label_set: str, description: str, notes: tuple[str, ...]) -> None:
        super().__init__(pairs, label_set, _no_convert, description, color_labels=True)
        self.notes = notes

    def group_of(self, name: str) -> str:
        """The road category (um, umm, uu): the hold-out split keeps each in proportion."""
        return name.split("_", 1)[0]

    def _decode(self, raw: np.ndarray, path: Path) -> np.ndarray:
        if raw.ndim != 3 or raw.shape[2] < 3:
            raise DatasetError(f"{self.description}: ground truth {path.name} is not a colour image "
                               "(expected magenta road, red not road, black outside)")
        if raw.dtype != np.uint8:
            raise DatasetError(f"{self.description}: ground truth {path.name} is {raw.dtype}, "
                               "expected 8-bit colour")
        ids, strange = kitti_road_colors_to_ids(raw[:, :, :3], self.label_set)
        if strange:
            shown = ", ".join(f"({r},{g},{b})" for r, g, b in strange["colours"])
            raise DatasetError(f"{path.name} has {strange['pixels']} px of {strange['kinds']} colour(s) "
                               f"outside the KITTI road palette, e.g. RGB {shown} (expected only "
                               "magenta 255,0,255, red 255,0,0, black 0,0,0)")
        return ids


def _no_convert(label: np.ndarray) -> np.ndarray:
    return label


def open_data_road(root: Path, split: str, label_set: str = "kitti-road") -> FileDataset:
    """The labelled training folder (any split name but test/testing), or testing/ unlabelled."""
    if label_set not in ROAD_LABEL_SETS:
        raise DatasetError(f"unknown KITTI road label set {label_set!r}; expected one of {ROAD_LABEL_SETS}")
    layout = label_set
    root = data_road_root(root) or root
    if split in ("test", "testing"):
        img_dir = root / "testing" / "image_2"
        _require_dir(img_dir, "testing/image_2/*.png", layout)
        images = sorted(img_dir.glob("*.png"))
        if not images:
            raise _empty(layout, img_dir, "*.png")
        return KittiRoadDataset([(p.stem, p, None) for p in images], label_set,
                                f"{layout}:{root} [testing, unlabelled]", ())
    img_dir, gt_dir = root / "training" / "image_2", root / "training" / "gt_image_2"
    _require_dir(img_dir, "training/image_2/{um,umm,uu}_NNNNNN.png", layout)
    if not gt_dir.is_dir():
        has_test = (root / "testing" / "image_2").is_dir()
        raise DatasetError(
            f"{layout}: {root} has no ground truth: expected training/gt_image_2/"
            "{um,umm,uu}_road_NNNNNN.png" + (" (testing/ has no ground truth; train and evaluate on "
                                             "training/, split with --val-split)" if has_test else ""))
    images, odd_images = {}, []
    for p in img_dir.glob("*.png"):
        (images.__setitem__(p.stem, p) if _IMAGE.match(p.stem) else odd_images.append(p.name))
    labels, lanes, odd_labels = {}, [], []
    for p in gt_dir.glob("*.png"):
        m = _GT.match(p.stem)
        if not m:
            odd_labels.append(p.name)
        elif m["task"] == "lane":
            lanes.append(p.name)
        else:
            labels[f"{m['cat']}_{m['id']}"] = p
    if not images and not odd_images:
        raise _empty(layout, img_dir, "{um,umm,uu}_NNNNNN.png")
    if not labels and not odd_labels:
        raise DatasetError(f"{layout}: {root} has no ground truth: {gt_dir} holds no "
                           "{um,umm,uu}_road_NNNNNN.png" + (f" (only {len(lanes)} um_lane files, the "
                                                             "ego-lane task)" if lanes else ""))
    no_label = sorted(set(images) - set(labels)) + sorted(odd_images)
    no_image = [labels[k].name for k in sorted(set(labels) - set(images))] + sorted(odd_labels)
    _report_unpaired(layout, root, no_label, no_image, "training/image_2/<cat>_<id>.png",
                     "training/gt_image_2/<cat>_road_<id>.png")
    notes = (f"skipped {len(lanes)} um_lane ground-truth file(s): the ego-lane task, not road "
             "segmentation",) if lanes else ()
    pairs = [(k, images[k], labels[k]) for k in sorted(images)]
    return KittiRoadDataset(pairs, label_set, f"{layout}:{root} [training]", notes)
