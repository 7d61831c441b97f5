"""Calibration frames from folders, globs, videos/URLs, data sets or the synthetic scenes.

Every frame passes through `segdata.frames.to_model_input`, the runtime's own input path, so
the ranges INT8 learns are measured on the very bytes the engine will see.
"""

from __future__ import annotations

import glob
import hashlib
import logging
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np

from segdata.frames import FrameError, read_image, to_model_input

log = logging.getLogger(__name__)
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
VIDEO_EXTENSIONS = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts"}


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

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for frame in self.frames:
            digest.update(hashlib.sha1(frame.tobytes()).digest())
        return digest.hexdigest()[:16]

    def hashes(self) -> set[bytes]:
        return {hashlib.sha1(f.tobytes()).digest() for f in self.frames}

    def describe(self) -> dict:
        return {"source": self.source, "images": len(self.frames), "available": self.available,
                "skipped": len(self.skipped), "fingerprint": self.fingerprint()}


def even_sample(total: int, n: int, seed: int = 0) -> list[int]:
    """One index drawn at random from each of n equal strata: spread over the whole source."""
    if n >= total:
        return list(range(total))
    rng = np.random.default_rng(seed)
    edges = np.linspace(0, total, n + 1)
    return [int(min(total - 1, np.floor(rng.uniform(a, b)))) for a, b in pairwise(edges)]


def load_frames(source: str, n: int, height: int, width: int, seed: int = 0,
                default_split: str = "calib") -> FrameSet:
    """Up to n frames from `source`, sampled evenly; fewer than n is a warning, none an error."""
    if n < 1:
        raise CalibrationError(f"need at least one image, asked for {n}")
    kind = classify(source)
    if kind == "dataset":
        frames = _from_dataset(source, n, height, width, seed, default_split)
    elif kind == "video":
        frames = _from_video(source, n, height, width, seed)
    else:
        frames = _from_images(_image_files(source), source, n, height, width, seed)
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
    kind = classify(source)
    if kind == "images":
        try:
            _image_files(source)
        except CalibrationError as exc:
            raise CalibrationError(f"{what}: {exc}") from None
    elif kind == "video" and "://" not in source and not Path(source).expanduser().is_file():
        raise CalibrationError(f"{what}: {source} does not exist")
    elif kind == "dataset" and not source.startswith("synthetic"):
        root = source.split(":", 1)[1] if ":" in source else source
        if not Path(root).expanduser().exists():
            raise CalibrationError(f"{what}: data set folder {root} does not exist")


def classify(source: str) -> str:
    if source.startswith("synthetic") or source.split(":", 1)[0] in ("cityscapes", "kitti",
                                                                      "ade20k", "voc"):
        return "dataset"
    if "://" in source:
        return "video"
    path = Path(source).expanduser()
    if path.is_file():
        return "video" if path.suffix.lower() in VIDEO_EXTENSIONS else "images"
    if path.is_dir():
        entries = list(path.iterdir())
        if any(p.is_dir() for p in entries) and not any(
                p.suffix.lower() in IMAGE_EXTENSIONS for p in entries):
            return "dataset"  # a folder of folders: try the data-set layouts
    return "images"


def _image_files(source: str) -> list[Path]:
    path = Path(source).expanduser()
    if any(c in source for c in "*?["):
        files = [Path(p) for p in sorted(glob.glob(source, recursive=True))]
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
    elif path.is_file():
        files = [path]
    else:
        raise CalibrationError(f"calibration source {source} does not exist (expected a folder, "
                               "a glob, a video file or URL, a data set, or synthetic:calib:N)")
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not images:
        raise CalibrationError(f"{source} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return images


def _from_images(files: list[Path], source: str, n: int, height: int, width: int,
                 seed: int) -> FrameSet:
    out = FrameSet([], [], source, len(files))
    order = even_sample(len(files), n, seed)
    spare = [i for i in range(len(files)) if i not in set(order)]
    while order and len(out.frames) < n:
        path = files[order.pop(0)]
        try:
            out.frames.append(to_model_input(read_image(str(path)), height, width))
            out.labels.append(None)
        except FrameError as exc:
            out.skipped.append(f"{path.name}: {exc}")
            if spare:  # replace an unreadable image so N stays N where the folder allows
                order.append(spare.pop(0))
    return out


def _from_dataset(source: str, n: int, height: int, width: int, seed: int,
                  split: str) -> FrameSet:
    from segdata.datasets import open_dataset

    if source.startswith("synthetic"):
        source = canonical_synthetic(source, n, height, width, split)
    dataset = open_dataset(source, split=split)
    out = FrameSet([], [], source, len(dataset))
    for i in even_sample(len(dataset), n, seed):
        try:
            sample = dataset[i]
        except (FrameError, OSError) as exc:
            out.skipped.append(f"#{i}: {exc}")
            continue
        out.frames.append(to_model_input(sample.image, height, width))
        label = sample.label
        if label is not None and label.shape != (height, width):
            label = cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST)
        out.labels.append(label)
    return out


def canonical_synthetic(source: str, n: int, height: int, width: int, split: str) -> str:
    """`synthetic[:split][:N][@HxW]` with every part filled: N defaults to n, size to the model's."""
    head, _, size = source.partition("@")
    parts = head.split(":")
    split_name = parts[1] if len(parts) > 1 and parts[1] else split
    count = parts[2] if len(parts) > 2 and parts[2] else str(n)
    return f"synthetic:{split_name}:{count}@{size or f'{height}x{width}'}"


def _from_video(source: str, n: int, height: int, width: int, seed: int) -> FrameSet:
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise CalibrationError(f"cannot open video {source}")
    try:
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        out = FrameSet([], [], source, max(total, 0))
        if total > 0:
            wanted = set(even_sample(total, n, seed))
            index = 0
            while len(out.frames) < len(wanted):
                ok = cap.grab()
                if not ok:
                    break
                if index in wanted:
                    ok, frame = cap.retrieve()
                    if ok and frame is not None:
                        out.frames.append(to_model_input(frame, height, width))
                        out.labels.append(None)
                    else:
                        out.skipped.append(f"frame {index}: decode failed")
                index += 1
        else:  # a stream: no frame count, take every 10th frame until n
            index = 0
            while len(out.frames) < n and index < n * 10 + 100:
                ok, frame = cap.read()
                if not ok:
                    break
                if index % 10 == 0:
                    out.frames.append(to_model_input(frame, height, width))
                    out.labels.append(None)
                index += 1
            out.available = index
        return out
    finally:
        cap.release()
