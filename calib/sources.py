"""Calibration frames from folders, globs, videos, cameras/URLs, data sets or the synthetic scenes.

Frame sources (files, folders, globs, videos, cameras, URLs, demo) are opened by the runtime's
one parser, `runtime.sources.parse_source`; data sets (labelled, for the accuracy gate) by
`segdata.datasets.open_dataset`. Every frame then passes through
`segdata.frames.to_model_input`, the runtime's own input path, so the ranges INT8 learns are
measured on the very bytes the engine will see.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from tqdm import tqdm

from segdata.datasets import canonical_synthetic, even_sample, is_dataset_source
from segdata.frames import IMAGE_SUFFIXES, FrameError, read_image, to_model_input

if TYPE_CHECKING:
    from runtime.sources import Source

log = logging.getLogger(__name__)
LIVE_STRIDE = 10  # live sources: every 10th frame, so n frames span more than a moment


class CalibrationError(ValueError):
    """A calibration source that yields no usable frame (the message says what was found)."""


@dataclass
class FrameSet:
    """Model-ready frames (uint8 BGR at the artefact size), optional labels, and provenance."""

    frames: list[np.ndarray]
    labels: list[np.ndarray | None]
    source: str
    available: int  # frames the source had before sampling
    skipped: list[str] = field(default_factory=list)  # unreadable items, with why
    label_set: str | None = None  # what the labels mean (a data set's label set); None: no labels
    ignore_index: int = 255  # the label value scoring skips

    def fingerprint(self) -> str:
        return fingerprint_of(self.frame_sha1())

    def hashes(self) -> set[bytes]:
        return {hashlib.sha1(f.tobytes()).digest() for f in self.frames}

    def frame_sha1(self) -> list[str]:
        """Per-frame sha1 in order; `fingerprint` is `fingerprint_of` these."""
        return [hashlib.sha1(f.tobytes()).hexdigest() for f in self.frames]

    def describe(self) -> dict:
        from runtime.naming import redact_source

        return {"source": redact_source(self.source), "images": len(self.frames), "available": self.available,
                "skipped": len(self.skipped), "fingerprint": self.fingerprint()}

    def add(self, image: np.ndarray, height: int, width: int, label: np.ndarray | None = None) -> None:
        self.frames.append(to_model_input(image, height, width))
        self.labels.append(label)


def fingerprint_of(frame_sha1: list[str]) -> str:
    """FrameSet.fingerprint from per-frame sha1s (hex), without the frames."""
    digest = hashlib.sha256()
    for item in frame_sha1:
        digest.update(bytes.fromhex(item))
    return digest.hexdigest()[:16]


def generated_id(source: str, n: int, height: int, width: int, seed: int = 0,
                 default_split: str = "calib") -> str | None:
    """A name that fixes every byte of a generated source's frames (for the synthetic scenes:
    split, count, size, the generator's version and the sampling seed), so what was computed
    from them can be found before they are rendered; None for any other source."""
    if not (source == "synthetic" or source.startswith(("synthetic:", "synthetic@"))):
        return None
    from segdata.synthetic import GENERATOR_VERSION

    return (f"{canonical_synthetic(source, n, height, width, default_split)}"
            f"/n{n}/seed{seed}/generator-v{GENERATOR_VERSION}")


def load_frames(source: str, n: int, height: int, width: int, seed: int = 0,
                default_split: str = "calib") -> FrameSet:
    """Up to n frames from `source`, sampled evenly; fewer than n is a warning, none an error."""
    if n < 1:
        raise CalibrationError(f"need at least one image, asked for {n}")
    if is_dataset_source(source):
        frames = _from_dataset(source, n, height, width, seed, default_split)
    else:
        frames = _from_source(source, n, height, width, seed)
    if not frames.frames:
        why = f" ({len(frames.skipped)} unreadable: {'; '.join(frames.skipped[:3])})" \
            if frames.skipped else ""
        raise CalibrationError(f"{source} yielded no usable image{why}")
    if len(frames.frames) < n:
        log.warning("%s has only %d usable images (asked for %d); using all of them", source,
                    len(frames.frames), n)
    for item in frames.skipped[:5]:
        log.warning("skipped %s", item)
    return frames


def check_source(source: str, what: str) -> None:
    """Cheap, before any export: CalibrationError if `source` cannot be a frame source at all
    (a path that does not exist, a folder without images). Reading the frames comes later."""
    try:
        if is_dataset_source(source):
            root = source.split(":", 1)[1] if ":" in source else source
            if not source.startswith("synthetic") and not Path(root).expanduser().exists():
                raise CalibrationError(f"data set folder {root} does not exist")
            return
        _parse(source, 1, 1, 1)
    except CalibrationError as exc:
        raise CalibrationError(f"{what}: {exc}") from None


def _parse(source: str, n: int, height: int, width: int) -> Source:
    """The runtime's own parser (no I/O beyond the file system), its refusals as CalibrationError."""
    from runtime.errors import SourceError, SourceMissing
    from runtime.sources import ImageFolderSource, SourceOptions, parse_source

    try:
        src = parse_source(str(Path(source).expanduser()) if "://" not in source else source,
                           SourceOptions(demo_size=(height, width), demo_frames=n, reconnect=0))
    except SourceMissing:
        raise CalibrationError(f"calibration source {source} does not exist (expected a folder, a glob, a "
                               "video file or URL, a camera, a data set, or synthetic:calib:N)") from None
    except SourceError as exc:
        raise CalibrationError(f"calibration source {source} holds no images or video: {exc}") from None
    if isinstance(src, ImageFolderSource) and not _image_paths(src):
        raise CalibrationError(f"{source} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return src


def _image_paths(src: Source) -> list[Path]:
    return [Path(f) for f in src.files if Path(f).suffix.lower() in IMAGE_SUFFIXES]


def _from_source(source: str, n: int, height: int, width: int, seed: int) -> FrameSet:
    from runtime.errors import SourceError
    from runtime.sources import ImageFolderSource

    src = _parse(source, n, height, width)
    if isinstance(src, ImageFolderSource):
        return _from_images(_image_paths(src), source, n, height, width, seed)
    try:
        with src:
            return _from_frames(src, source, n, height, width, seed)
    except SourceError as exc:
        raise CalibrationError(f"cannot open calibration source {source}: {exc}") from None


def _from_images(files: list[Path], source: str, n: int, height: int, width: int,
                 seed: int) -> FrameSet:
    """Random access over the files: an unreadable one is replaced, so N stays N where it can."""
    out = FrameSet([], [], source, len(files))
    order = even_sample(len(files), n, seed)
    spare = [i for i in range(len(files)) if i not in set(order)]
    while order and len(out.frames) < n:
        path = files[order.pop(0)]
        try:
            out.add(read_image(str(path)), height, width)
        except FrameError as exc:
            out.skipped.append(f"{path.name}: {exc}")
            if spare:
                order.append(spare.pop(0))
    return out


def _from_frames(src: Source, source: str, n: int, height: int, width: int, seed: int) -> FrameSet:
    """One pass over a video (frames spread evenly over its length) or a live source (every
    LIVE_STRIDE-th frame until n)."""
    total = src.frame_count
    out = FrameSet([], [], source, total or 0)
    if total:
        wanted = set(even_sample(total, n, seed))
        for frame in src.frames():
            if frame.index in wanted:
                out.add(frame.image, height, width)
                if len(out.frames) >= len(wanted):
                    break
    else:
        seen = 0
        for frame in src.frames():
            if seen % LIVE_STRIDE == 0:
                out.add(frame.image, height, width)
            seen += 1
            if len(out.frames) >= n or seen >= n * LIVE_STRIDE + 100:
                break
        out.available = seen
    out.skipped += [f"{count} x {why}" for why, count in src.drops.items()]
    return out


def _from_dataset(source: str, n: int, height: int, width: int, seed: int,
                  split: str) -> FrameSet:
    from segdata.datasets import open_dataset

    if source.startswith("synthetic"):
        source = canonical_synthetic(source, n, height, width, split)
    dataset = open_dataset(source, split=split)
    out = FrameSet([], [], source, len(dataset), label_set=getattr(dataset, "label_set", None))
    for i in tqdm(even_sample(len(dataset), n, seed), desc=f"frames {source}", unit="img", leave=False,
                  disable=None):
        try:
            sample = dataset[i]
        except (FrameError, OSError) as exc:
            out.skipped.append(f"#{i}: {exc}")
            continue
        label = sample.label
        if label is not None and label.shape != (height, width):
            label = cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST)
        out.add(sample.image, height, width, label)
    return out
