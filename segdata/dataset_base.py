"""What every data set is, below the loaders that read each layout (segdata/datasets.py,
segdata/kitti_road.py): `SegDataset`, `FileDataset`, `Sample`, `DatasetError`, and the error
helpers the loaders share. Kept apart so a loader in its own module does not import the
dispatcher (`open_dataset`) that imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from segdata.frames import FrameError, read_image, to_bgr8

_SHOW = 5  # how many example names an error message lists


class DatasetError(ValueError):
    """A data source that cannot be read as asked (the message names the expected files)."""


@dataclass(frozen=True)
class Sample:
    name: str
    image: np.ndarray  # BGR uint8 HxWx3
    label: np.ndarray | None  # uint8 HxW training ids (255 = ignore), None when unlabelled


class SegDataset:
    """A sized, indexable, iterable set of samples; `label_set` names a segdata.label_sets set."""

    label_set: str = "cityscapes"
    description: str = ""
    notes: tuple[str, ...] = ()  # what the loader left out on purpose, for the user to read

    def group_of(self, name: str) -> str:
        """A sample's stratum for hold-out splits (KITTI road: um/umm/uu); one stratum by default."""
        return ""

    def name_of(self, i: int) -> str:
        """Sample i's name; loaders that know names without decoding the sample override this."""
        return self[i].name

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, i: int) -> Sample:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    def _index(self, i: int) -> int:
        n = len(self)
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"sample index must be an int, got {type(i).__name__}")
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"sample {i} out of range for a data set of {n}")
        return int(i)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description} ({len(self)} samples, {self.label_set})>"


# ----------------------------------------------------------------------------------- files
class FileDataset(SegDataset):
    """Image/label file pairs plus the conversion from stored label values to training ids."""

    def __init__(self, pairs: list[tuple[str, Path, Path | None]], label_set: str,
                 convert: Callable[[np.ndarray], np.ndarray], description: str,
                 color_labels: bool = False) -> None:
        self.pairs = pairs
        self.label_set = label_set
        self.convert = convert
        self.description = description
        self.color_labels = color_labels  # palette PNGs: cv2 hands them over as BGR colours

    def __len__(self) -> int:
        return len(self.pairs)

    def name_of(self, i: int) -> str:
        return self.pairs[self._index(i)][0]

    def __getitem__(self, i: int) -> Sample:
        name, img_path, lab_path = self.pairs[self._index(i)]
        try:
            image = to_bgr8(read_image(str(img_path)))
        except FrameError as e:
            raise DatasetError(f"{self.description}: image of sample {name!r}: {e}") from e
        label = None
        if lab_path is not None:
            raw = cv2.imread(str(lab_path), cv2.IMREAD_UNCHANGED)
            if raw is None:
                raise DatasetError(f"{self.description}: cannot read label {lab_path} of sample {name!r}")
            label = self._decode(raw, lab_path)
            if label.shape != image.shape[:2]:
                (lh, lw), (ih, iw) = label.shape, image.shape[:2]
                raise DatasetError(f"{self.description}: label {lab_path} is {lw}x{lh} "
                                   f"but its image {img_path} is {iw}x{ih}")
        return Sample(name, image, label)

    def _decode(self, raw: np.ndarray, path: Path) -> np.ndarray:
        if self.color_labels and raw.ndim == 3:
            return self.convert(raw[:, :, :3])
        if raw.ndim == 3:
            # Some tools save single-channel label maps as three equal channels.
            if raw.shape[2] >= 3 and np.array_equal(raw[:, :, 0], raw[:, :, 1]) and \
                    np.array_equal(raw[:, :, 0], raw[:, :, 2]):
                raw = raw[:, :, 0]
            else:
                raise DatasetError(f"{self.description}: label {path} has colour channels; expected a "
                                   "single-channel PNG of class ids")
        if raw.dtype != np.uint8:
            if raw.max() > 255:
                raise DatasetError(f"{self.description}: label {path} holds ids above 255")
            raw = raw.astype(np.uint8)
        return self.convert(raw)


def _require_dir(path: Path, what: str, layout: str) -> None:
    if not path.is_dir():
        parent = path.parent
        have = sorted(p.name for p in parent.iterdir())[:10] if parent.is_dir() else []
        found = f"; {parent} holds {have}" if parent.is_dir() else f"; {parent} is missing too"
        raise DatasetError(f"{layout}: expected folder {path} ({what}) but it does not exist{found}")


def _report_unpaired(layout: str, root: Path, no_label: list[str], no_image: list[str],
                     img_pattern: str, lab_pattern: str) -> None:
    if not no_label and not no_image:
        return
    msg = [f"{layout} at {root}: images and labels do not pair up"]
    if no_label:
        msg.append(f"{len(no_label)} image(s) without a label {lab_pattern}, e.g. {no_label[:_SHOW]}")
    if no_image:
        msg.append(f"{len(no_image)} label(s) without an image {img_pattern}, e.g. {no_image[:_SHOW]}")
    raise DatasetError("; ".join(msg))


def _empty(layout: str, where: Path, pattern: str) -> DatasetError:
    return DatasetError(f"{layout}: no files matching {pattern} under {where}")
