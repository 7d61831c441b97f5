"""The demo clip rendered once to disk, then memory-mapped.

Rendering a 240x480 frame costs about as much CPU as INT8 inference of the demo model; on a
2-core edge box a live render would compete with the engine and make every pipeline figure
about the generator. Frames are written once (atomically) under the cache folder and read
back through np.memmap, which costs almost nothing per frame.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np

from artefact.files import cache_root
from segdata.dynamics import Dynamics
from segdata.synthetic import FPS, GENERATOR_VERSION, StreetClip

log = logging.getLogger(__name__)

def cache_dir() -> Path:
    return cache_root() / "clips"


class CachedClip:
    """Same interface as StreetClip (len, [i] -> (image, label), iteration), backed by .npy files."""

    def __init__(self, seed: int = 0, height: int = 240, width: int = 480, frames: int = 300,
                 folder: Path | None = None, progress: bool = True, dynamics: Dynamics | None = None,
                 stop: threading.Event | None = None) -> None:
        self.seed, self.height, self.width, self.frames = seed, height, width, frames
        self.dynamics = dynamics or Dynamics()
        folder = folder or cache_dir()
        stem = f"street-v{GENERATOR_VERSION}-s{seed}-{height}x{width}-n{frames}"
        if not self.dynamics.is_default:  # default clips keep their names (and their caches)
            stem += f"-{self.dynamics.tag()}"
        self.image_path = folder / f"{stem}-images.npy"
        self.label_path = folder / f"{stem}-labels.npy"
        if not (self.image_path.is_file() and self.label_path.is_file()):
            self._render(folder, progress, stop)
        try:
            self.images, self.labels = self._load()
        except (OSError, ValueError) as exc:  # truncated or damaged cache files: render them again
            log.warning("demo clip cache %s is damaged (%s); rendering it again", self.image_path, exc)
            self._render(folder, progress, stop)
            self.images, self.labels = self._load()
        self.fps = FPS

    def _load(self) -> tuple[np.ndarray, np.ndarray]:
        images = np.load(self.image_path, mmap_mode="r")
        labels = np.load(self.label_path, mmap_mode="r")
        shapes = (images.shape, images.dtype, labels.shape, labels.dtype)
        if shapes != ((self.frames, self.height, self.width, 3), np.uint8,
                      (self.frames, self.height, self.width), np.uint8):
            raise ValueError(f"holds {images.shape} {images.dtype} / {labels.shape} {labels.dtype}")
        return images, labels

    def _render(self, folder: Path, progress: bool, stop: threading.Event | None) -> None:
        from tqdm import tqdm

        folder.mkdir(parents=True, exist_ok=True)
        clip = StreetClip(self.seed, self.height, self.width, self.frames, dynamics=self.dynamics)
        tmp_i = self.image_path.with_suffix(f".{os.getpid()}.tmp")
        tmp_l = self.label_path.with_suffix(f".{os.getpid()}.tmp")
        try:
            images = np.lib.format.open_memmap(tmp_i, "w+", np.uint8,
                                               (self.frames, self.height, self.width, 3))
            labels = np.lib.format.open_memmap(tmp_l, "w+", np.uint8,
                                               (self.frames, self.height, self.width))
            for i in tqdm(range(self.frames), desc="rendering street clip (once)", unit="frame",
                          disable=None if progress else True):
                if stop is not None and stop.is_set():
                    raise InterruptedError("demo clip rendering stopped")  # the temp files go
                images[i], labels[i] = clip[i]
            images.flush()
            labels.flush()
            del images, labels
            os.replace(tmp_l, self.label_path)
            os.replace(tmp_i, self.image_path)
        finally:
            tmp_i.unlink(missing_ok=True)
            tmp_l.unlink(missing_ok=True)

    def __len__(self) -> int:
        return self.frames

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.images[i]), np.asarray(self.labels[i])

    def __iter__(self):
        for i in range(self.frames):
            yield self[i]
