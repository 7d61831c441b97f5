"""Benchmark frames: decoded once, up front, through the runtime's own sources.

Why preload: decoding is the source's cost, not the model's, and it must not land inside one
contender's figure and not another's. Every contender then sees the very same frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmarks.common import BenchmarkError


@dataclass
class VideoFrames:
    frames: list[np.ndarray]  # uint8 BGR at the source's own size
    description: str

    @property
    def size(self) -> tuple[int, int]:
        return self.frames[0].shape[:2] if self.frames else (0, 0)


def load_video(src: str, n: int, model_size: tuple[int, int], seed: int = 0) -> VideoFrames:
    """Up to n frames of `src` (camN, a file, a folder or glob, a URL, or `demo`).

    `demo` is the synthetic street clip rendered at the model's input size, as `pspnet-rt
    --video demo` renders it, so the pipeline run sees the same frames.
    """
    from runtime.errors import UsageError
    from runtime.sources import SourceOptions, parse_source

    options = SourceOptions(max_frames=n, demo_size=tuple(model_size), demo_frames=max(n, 1),
                            demo_seed=seed)
    try:
        source = parse_source(src, options)
        frames = []
        with source:
            description = source.describe()
            for frame in source.frames():
                frames.append(frame.image)
                if len(frames) >= n:
                    break
    except (UsageError, OSError) as exc:
        raise BenchmarkError(f"cannot read --video {src}: {exc}") from None
    if not frames:
        raise BenchmarkError(f"--video {src} gave no frames")
    if len(frames) < n:
        description += f" (only {len(frames)} of the {n} frames asked for)"
    return VideoFrames(frames, description)
