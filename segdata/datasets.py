"""Loaders for the real data-set layouts and the synthetic street scenes.

Why here (numpy + OpenCV only): evaluation, calibration and the accuracy gate run on edge
boxes without torch. Every loader yields `Sample(name, image BGR uint8, label uint8 | None)`
with labels already in the training ids of its label set (255 = ignore), so a metric never
has to know where the data came from. Wrong or partial folders fail early with a
`DatasetError` that says what was expected and where it looked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import numpy as np

from segdata.dataset_base import (
    DatasetError,
    FileDataset,
    Sample,
    SegDataset,
    _empty,
    _report_unpaired,
    _require_dir,
)
from segdata.frames import IMAGE_SUFFIXES
from segdata.labels import ade20k_to_train, cityscapes_labelids_to_trainids, voc_palette
from segdata.split_lists import SplitDataset, is_split_list, read_split_list

LAYOUTS = ("cityscapes", "kitti", "kitti-road", "kitti-road-binary", "ade20k", "voc", "synthetic")


# ----------------------------------------------------------------------------------- files
def _identity(label: np.ndarray) -> np.ndarray:
    return label


# VOC: palette PNG colours -> class ids. The border colour (224,224,192) is palette entry 255.
_VOC_IDS = [*range(21), 255]
_VOC_PAL = voc_palette(256)
_VOC_CODES = np.array([(_VOC_PAL[i][2] << 16) | (_VOC_PAL[i][1] << 8) | _VOC_PAL[i][0] for i in _VOC_IDS],
                      np.int64)  # BGR packed as b<<16 | g<<8 | r
_VOC_ORDER = np.argsort(_VOC_CODES)
_VOC_SORTED = _VOC_CODES[_VOC_ORDER]
_VOC_SORTED_IDS = np.array(_VOC_IDS, np.uint8)[_VOC_ORDER]


def voc_colors_to_ids(bgr: np.ndarray) -> np.ndarray:
    """VOC SegmentationClass colours (as cv2 reads them, BGR) -> class ids; unknown colours -> 255."""
    b = bgr[:, :, 0].astype(np.int64)
    g = bgr[:, :, 1].astype(np.int64)
    r = bgr[:, :, 2].astype(np.int64)
    code = (b << 16) | (g << 8) | r
    pos = np.clip(np.searchsorted(_VOC_SORTED, code), 0, len(_VOC_SORTED) - 1)
    out = _VOC_SORTED_IDS[pos]
    out[_VOC_SORTED[pos] != code] = 255
    return out


def _voc_label(raw: np.ndarray) -> np.ndarray:
    """Colour PNGs go through the palette; index PNGs (e.g. SegmentationClassAug) are ids already."""
    if raw.ndim == 3:
        return voc_colors_to_ids(raw)
    out = raw.copy()
    out[(out > 20) & (out != 255)] = 255
    return out


# ----------------------------------------------------------------------------------- layouts
def _cityscapes(root: Path, split: str) -> FileDataset:
    img_dir = root / "leftImg8bit" / split
    gt_dir = root / "gtFine" / split
    _require_dir(img_dir, f"leftImg8bit/{split}/<city>/*_leftImg8bit.png", "cityscapes")
    _require_dir(gt_dir, f"gtFine/{split}/<city>/*_gtFine_labelIds.png or *_gtFine_labelTrainIds.png",
                 "cityscapes")
    images = {p.relative_to(img_dir).as_posix()[: -len("_leftImg8bit.png")]: p
              for p in img_dir.glob("*/*_leftImg8bit.png")}
    train_ids = {p.relative_to(gt_dir).as_posix()[: -len("_gtFine_labelTrainIds.png")]: p
                 for p in gt_dir.glob("*/*_gtFine_labelTrainIds.png")}
    label_ids = {p.relative_to(gt_dir).as_posix()[: -len("_gtFine_labelIds.png")]: p
                 for p in gt_dir.glob("*/*_gtFine_labelIds.png")}
    if not images:
        raise _empty("cityscapes", img_dir, "<city>/*_leftImg8bit.png")
    # One conversion for the whole set: trainIds where every image has them, else labelIds.
    use_train = bool(train_ids) and set(images) <= set(train_ids)
    labels = train_ids if use_train else label_ids
    kind = "labelTrainIds" if use_train else "labelIds"
    _report_unpaired("cityscapes", root, sorted(set(images) - set(labels)), sorted(set(labels) - set(images)),
                     f"leftImg8bit/{split}/<city>/<name>_leftImg8bit.png",
                     f"gtFine/{split}/<city>/<name>_gtFine_{kind}.png")
    pairs = [(k.split("/")[-1], images[k], labels[k]) for k in sorted(images)]
    convert = _identity if use_train else cityscapes_labelids_to_trainids
    return FileDataset(pairs, "cityscapes", convert, f"cityscapes:{root} [{split}]")


def _kitti(root: Path, split: str) -> FileDataset:
    # KITTI semantics ships one labelled folder (training/) and an unlabelled testing/.
    if split in ("test", "testing"):
        img_dir = root / "testing" / "image_2"
        _require_dir(img_dir, "testing/image_2/*.png", "kitti")
        images = sorted(img_dir.glob("*.png"))
        if not images:
            raise _empty("kitti", img_dir, "*.png")
        return FileDataset([(p.stem, p, None) for p in images], "cityscapes", _identity,
                           f"kitti:{root} [testing, unlabelled]")
    img_dir, lab_dir = root / "training" / "image_2", root / "training" / "semantic"
    _require_dir(img_dir, "training/image_2/*.png", "kitti")
    _require_dir(lab_dir, "training/semantic/*.png (Cityscapes labelIds)", "kitti")
    images = {p.stem: p for p in img_dir.glob("*.png")}
    labels = {p.stem: p for p in lab_dir.glob("*.png")}
    if not images:
        raise _empty("kitti", img_dir, "*.png")
    _report_unpaired("kitti", root, sorted(set(images) - set(labels)), sorted(set(labels) - set(images)),
                     "training/image_2/<name>.png", "training/semantic/<name>.png")
    pairs = [(k, images[k], labels[k]) for k in sorted(images)]
    return FileDataset(pairs, "cityscapes", cityscapes_labelids_to_trainids, f"kitti:{root} [training]")


_ADE_SPLITS = {"train": "training", "training": "training", "val": "validation", "validation": "validation"}


def _ade20k(root: Path, split: str) -> FileDataset:
    if (root / "ADEChallengeData2016").is_dir():
        root = root / "ADEChallengeData2016"
    if split not in _ADE_SPLITS:
        raise DatasetError(f"ade20k: unknown split {split!r}; expected one of {sorted(_ADE_SPLITS)}")
    sub = _ADE_SPLITS[split]
    img_dir, lab_dir = root / "images" / sub, root / "annotations" / sub
    _require_dir(img_dir, f"images/{sub}/*.jpg", "ade20k")
    _require_dir(lab_dir, f"annotations/{sub}/*.png", "ade20k")
    images = {p.stem: p for p in img_dir.glob("*.jpg")}
    labels = {p.stem: p for p in lab_dir.glob("*.png")}
    if not images:
        raise _empty("ade20k", img_dir, "*.jpg")
    _report_unpaired("ade20k", root, sorted(set(images) - set(labels)), sorted(set(labels) - set(images)),
                     f"images/{sub}/<name>.jpg", f"annotations/{sub}/<name>.png")
    pairs = [(k, images[k], labels[k]) for k in sorted(images)]
    return FileDataset(pairs, "ade20k", ade20k_to_train, f"ade20k:{root} [{sub}]")


def _voc_root(root: Path) -> Path:
    for cand in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (cand / "JPEGImages").is_dir() or (cand / "SegmentationClass").is_dir():
            return cand
    return root


def _voc(root: Path, split: str) -> FileDataset:
    root = _voc_root(root)
    img_dir, lab_dir = root / "JPEGImages", root / "SegmentationClass"
    _require_dir(img_dir, "JPEGImages/*.jpg", "voc")
    _require_dir(lab_dir, "SegmentationClass/*.png (palette PNGs)", "voc")
    list_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if list_file.is_file():
        names = [ln.split()[0] for ln in list_file.read_text().splitlines() if ln.strip()]
        if not names:
            raise DatasetError(f"voc: split list {list_file} is empty")
        no_label = [n for n in names if not (lab_dir / f"{n}.png").is_file()]
        no_image = [n for n in names if not (img_dir / f"{n}.jpg").is_file()]
        _report_unpaired("voc", root, no_label, no_image, "JPEGImages/<name>.jpg",
                         "SegmentationClass/<name>.png")
        where = f"{split} list"
    else:
        # No split list: every label file with its image (most JPEGs are unlabelled in VOC).
        names = sorted(p.stem for p in lab_dir.glob("*.png"))
        if not names:
            raise _empty("voc", lab_dir, "*.png")
        no_image = [n for n in names if not (img_dir / f"{n}.jpg").is_file()]
        _report_unpaired("voc", root, [], no_image, "JPEGImages/<name>.jpg", "SegmentationClass/<name>.png")
        where = f"all of SegmentationClass (no ImageSets/Segmentation/{split}.txt)"
    pairs = [(n, img_dir / f"{n}.jpg", lab_dir / f"{n}.png") for n in names]
    return FileDataset(pairs, "voc2012", _voc_label, f"voc:{root} [{where}]", color_labels=True)


def _kitti_road(label_set: str) -> Callable[[Path, str], FileDataset]:
    def load(root: Path, split: str) -> FileDataset:
        from segdata.kitti_road import open_data_road

        return open_data_road(root, split, label_set)
    return load


_LOADERS: dict[str, Callable[[Path, str], FileDataset]] = {
    "cityscapes": _cityscapes, "kitti": _kitti, "ade20k": _ade20k, "voc": _voc,
    "kitti-road": _kitti_road("kitti-road"), "kitti-road-binary": _kitti_road("kitti-road-binary"),
}


def detect_layout(root: Path) -> str:
    """Which layout a folder holds, from its characteristic sub-folders."""
    if not root.is_dir():
        raise DatasetError(f"data folder {root} does not exist")
    if (root / "leftImg8bit").is_dir() or (root / "gtFine").is_dir():
        return "cityscapes"
    from segdata.kitti_road import data_road_root

    if data_road_root(root) is not None:
        return "kitti-road"
    if (root / "training" / "image_2").is_dir() or (root / "testing" / "image_2").is_dir():
        return "kitti"
    ade = root / "ADEChallengeData2016" if (root / "ADEChallengeData2016").is_dir() else root
    if (ade / "images").is_dir() and (ade / "annotations").is_dir():
        return "ade20k"
    voc = _voc_root(root)
    if (voc / "JPEGImages").is_dir() or (voc / "SegmentationClass").is_dir():
        return "voc"
    have = sorted(p.name for p in root.iterdir())[:10]
    raise DatasetError(
        f"cannot tell the data-set layout of {root} (it holds {have}); expected one of: "
        "cityscapes (leftImg8bit/<split>/<city>/*_leftImg8bit.png + gtFine/<split>/<city>/"
        "*_gtFine_labelIds.png), kitti (training/image_2/*.png + training/semantic/*.png), "
        "kitti-road (data_road: training/image_2/um_000000.png + training/gt_image_2/um_road_000000.png), "
        "ade20k (ADEChallengeData2016/images/{training,validation}/*.jpg + annotations/.../*.png), "
        "voc (JPEGImages/*.jpg + SegmentationClass/*.png); or name it: cityscapes:/path, kitti:/path, "
        "kitti-road:/path, kitti-road-binary:/path, ade20k:/path, voc:/path, synthetic[:split][:N][@HxW], "
        "or a split list written by --val-split (SPLIT/val.txt)")


# ----------------------------------------------------------------------------------- synthetic
class SyntheticDataset(SegDataset):
    """Seeded synthetic street scenes of one split (see segdata.synthetic.split_seeds)."""

    label_set = "cityscapes"

    def __init__(self, split: str = "val", n: int = 100, height: int = 240, width: int = 480) -> None:
        from segdata.synthetic import split_seeds

        try:
            self.seeds = split_seeds(split, n)
        except ValueError as e:
            raise DatasetError(f"synthetic: {e}") from e
        self.split, self.height, self.width = split, height, width
        self.description = f"synthetic:{split}:{n}@{height}x{width}"

    def __len__(self) -> int:
        return len(self.seeds)

    def name_of(self, i: int) -> str:
        return f"synthetic_{self.split}_{self.seeds[self._index(i)]}"

    def __getitem__(self, i: int) -> Sample:
        from segdata.synthetic import render_scene

        seed = self.seeds[self._index(i)]
        image, label = render_scene(seed, self.height, self.width)
        return Sample(self.name_of(i), image, label)


_SYN = re.compile(r"^synthetic(?::(?P<split>[a-z]+))?(?::(?P<n>\d+))?(?:@(?P<h>\d+)x(?P<w>\d+))?$")


def _synthetic(spec: str, split: str, limit: int | None) -> SyntheticDataset:
    m = _SYN.match(spec)
    if not m:
        raise DatasetError(f"cannot parse synthetic source {spec!r}; expected synthetic[:split][:N][@HxW], "
                           "e.g. synthetic:val:64@240x480")
    n = int(m["n"]) if m["n"] else 100
    if limit is not None:
        n = min(n, limit)
    h, w = (int(m["h"]), int(m["w"])) if m["h"] else (240, 480)
    if h < 8 or w < 8:
        raise DatasetError(f"synthetic image size must be at least 8x8, got {h}x{w}")
    return SyntheticDataset(m["split"] or split, n, h, w)


class _Limited(SegDataset):
    def __init__(self, base: SegDataset, limit: int) -> None:
        self.base = base
        self.n = min(limit, len(base))
        self.label_set = base.label_set
        self.notes = base.notes
        self.description = f"{base.description} first {self.n}"

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Sample:
        return self.base[self._index(i)]

    def group_of(self, name: str) -> str:
        return self.base.group_of(name)

    def name_of(self, i: int) -> str:
        return self.base.name_of(self._index(i))


def open_dataset(source: str, split: str = "val", limit: int | None = None) -> SegDataset:
    """A data set from a folder (layout auto-detected), `layout:/path`, or `synthetic[:split][:N][@HxW]`."""
    if limit is not None and limit < 0:
        raise DatasetError(f"limit must be >= 0, got {limit}")
    source = str(source)
    if source == "synthetic" or source.startswith(("synthetic:", "synthetic@")):
        return _synthetic(source, split, limit)
    if is_split_list(source):
        ds = open_split_list(source)
        return ds if limit is None or limit >= len(ds) else _Limited(ds, limit)
    layout, _, rest = source.partition(":")
    if rest and layout in _LOADERS:
        root = Path(rest).expanduser()
        if not root.is_dir():
            raise DatasetError(f"{layout}: data folder {root} does not exist")
    else:
        root = Path(source).expanduser()
        layout = detect_layout(root)
    ds = _LOADERS[layout](root, split)
    return ds if limit is None or limit >= len(ds) else _Limited(ds, limit)


def open_split_list(path: str | Path) -> SplitDataset:
    """The samples a split list names, from the data set its header names (segdata/split.py)."""
    header, names = read_split_list(path)
    source = header.get("source")
    if not source:
        raise DatasetError(f"split list {path} names no source (a '# source: ...' line)")
    if not names:
        raise DatasetError(f"split list {path} lists no samples")
    base = open_dataset(source, split="train")
    index = {base.name_of(i): i for i in range(len(base))}
    missing = [n for n in names if n not in index]
    if missing:
        raise DatasetError(f"split list {path}: {len(missing)} of its {len(names)} samples are not in "
                           f"{source} any more, e.g. {missing[:5]}")
    part = header.get("part", "?")
    return SplitDataset(base, [index[n] for n in names],
                        f"{base.description} {part} part of the split in {path} ({len(names)})")


def is_dataset_source(source: str) -> bool:
    """`synthetic[...]`, `layout:/path`, or a folder of folders (a data-set layout rather than a
    folder of images): what open_dataset reads, as opposed to a frame source (runtime.sources)."""
    if source == "synthetic" or source.startswith(("synthetic:", "synthetic@")):
        return True
    layout, _, rest = source.partition(":")
    if rest and layout in _LOADERS:
        return True
    if is_split_list(source):
        return True
    path = Path(source).expanduser()
    if not path.is_dir():
        return False
    entries = list(path.iterdir())
    return any(p.is_dir() for p in entries) and not any(p.suffix.lower() in IMAGE_SUFFIXES for p in entries)


def canonical_synthetic(source: str, n: int, height: int, width: int, split: str) -> str:
    """`synthetic[:split][:N][@HxW]` with every part filled: N defaults to n, size to the model's."""
    head, _, size = source.partition("@")
    parts = head.split(":")
    split_name = parts[1] if len(parts) > 1 and parts[1] else split
    count = parts[2] if len(parts) > 2 and parts[2] else str(n)
    return f"synthetic:{split_name}:{count}@{size or f'{height}x{width}'}"


def even_sample(total: int, n: int, seed: int = 0) -> list[int]:
    """One index drawn at random from each of n equal strata: spread over the whole source."""
    if n >= total:
        return list(range(total))
    rng = np.random.default_rng(seed)
    edges = np.linspace(0, total, n + 1)
    return [int(min(total - 1, np.floor(rng.uniform(a, b)))) for a, b in pairwise(edges)]
