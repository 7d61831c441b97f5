"""Several sources sharing one backend in one process: `pspnet-rt --video cam0 --video rtsp://...`.

A run of several streams is the same run as one (runtime.run, runtime.pipeline): each stream
keeps the single-stream rules (files, folders and demo lossless and in order, live sources the
newest frame) and the one inference loop serves them in the order their frames arrived.

Names: `--video NAME=SRC` names a stream (letters, digits, '_', '.', '-'); unnamed streams are
called by their position, 0, 1, ... Outputs per stream (runtime.outputs): `--output out.mp4` ->
out-NAME.mp4, `--masks DIR` -> DIR/NAME/NNNNNN.png, `--stats` one file whose lines carry
"stream": NAME.
"""

from __future__ import annotations

import re
from pathlib import Path

from runtime.output_plan import stream_path
from runtime.stats import Reservoir, RunStats

__all__ = ["merge_stats", "parse_streams", "stream_path"]

_NAMED = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.-]{0,31})=(.+)$")


def parse_streams(videos: list[str]) -> list[tuple[str, str]]:
    """(name, SRC) per --video; NAME=SRC names a stream unless the whole text is an existing path."""
    from runtime.errors import UsageError

    streams = []
    for i, text in enumerate(videos):
        match = _NAMED.match(text)
        if match and not Path(text).exists():
            streams.append((match.group(1), match.group(2)))
        else:
            streams.append((str(i), text))
    names = [n for n, _ in streams]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UsageError(f"two --video streams are named {', '.join(dupes)}; give each its own NAME=SRC")
    return streams


def merge_stats(parts: list[RunStats]) -> RunStats:
    """All streams as one run: frames and drops summed, percentiles over every frame, wall time from
    the first start to the last frame (so FPS is summed over streams). One part is itself."""
    if len(parts) == 1:
        return parts[0]
    total = RunStats()
    for name in list(total.stages):
        merged = Reservoir()
        for part in parts:
            merged.values.extend(part.stages[name].values)
            merged.seen += part.stages[name].seen
        total.stages[name] = merged
    total.frames = sum(p.frames for p in parts)
    for part in parts:
        total.drops.update(part.drops)
    total.t_start = min(p.t_start for p in parts)
    lasts = [p.t_last for p in parts if p.t_last is not None]
    total.t_last = max(lasts) if lasts else None
    firsts = [p.t_first for p in parts if p.t_first is not None]
    total.t_first = min(firsts) if firsts else None
    return total
