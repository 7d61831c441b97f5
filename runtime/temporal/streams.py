"""Video-aware inference for several streams sharing one engine (`--temporal` with several --video).

Key frames and motion belong to one stream, so each stream gets its own `TemporalBackend`; the
engine stays one. `EngineShare` hands each wrapper its own results back from the shared engine
(the engine returns them in submission order across all streams), and `PerStreamTemporal` is the
one backend the shared inference loop sees: tags are `(stream index, anything)`, as that loop
submits them.
"""

from __future__ import annotations

import collections
from typing import Any

import numpy as np

from runtime.backends.base import Backend, Collected
from runtime.temporal.backend import TemporalBackend
from runtime.temporal.config import TemporalConfig


class EngineShare:
    """The shared engine's results, sorted by the wrapper (owner) that submitted them."""

    def __init__(self, engine: Backend) -> None:
        self.engine = engine
        self._stash: dict[int, collections.deque[Collected]] = collections.defaultdict(collections.deque)

    def pull_one(self) -> None:
        """Move the engine's oldest result to its owner's stash."""
        result = self.engine.collect_result()
        owner, result.tag = result.tag
        self._stash[owner].append(result)

    def take(self, owner: int) -> Collected:
        while not self._stash[owner]:
            self.pull_one()
        return self._stash[owner].popleft()


class _EngineView(Backend):
    """One stream's window on the shared engine: its own in-flight count, the engine's room."""

    def __init__(self, share: EngineShare, owner: int) -> None:
        super().__init__(share.engine.manifest)
        self.share, self.owner = share, owner
        engine = share.engine
        self.name, self.device, self.precision_ran = engine.name, engine.device, engine.precision_ran
        self.max_in_flight = engine.max_in_flight
        self._outstanding = 0

    def input_hw(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        return self.share.engine.input_hw(frame_hw)

    def submit(self, frame: np.ndarray, tag: Any) -> None:
        engine = self.share.engine
        while engine.in_flight >= engine.max_in_flight:  # other streams' results wait in their stash
            self.share.pull_one()
        engine.submit(frame, (self.owner, tag))
        self._outstanding += 1

    def collect_result(self) -> Collected:
        result = self.share.take(self.owner)
        self._outstanding -= 1
        return result

    @property
    def in_flight(self) -> int:
        return self._outstanding

    def close(self) -> None:  # the engine is closed once, by PerStreamTemporal
        self._closed = True

    def describe(self) -> dict[str, Any]:
        return self.share.engine.describe()


class PerStreamTemporal(Backend):
    """A `TemporalBackend` per stream over one engine, behind the one Backend interface.

    Order is kept within each stream, not across them: `collect` returns the oldest stream head
    that needs no later frame, so one stream waiting for its next key frame holds up no other,
    and every stream gets the masks it would get alone.
    """

    def __init__(self, engine: Backend, config: TemporalConfig, lives: list[bool], names: list[str]) -> None:
        super().__init__(engine.manifest)
        self.engine = engine
        share = EngineShare(engine)
        self.streams = [TemporalBackend(_EngineView(share, i), config, live=live)
                        for i, live in enumerate(lives)]
        self.names = names
        self.scheduler = self.streams[0].scheduler  # for the start line
        self.name, self.device, self.precision_ran = engine.name, engine.device, engine.precision_ran
        self.max_in_flight = sum(s.max_in_flight for s in self.streams)
        self._seqs: list[collections.deque[int]] = [collections.deque() for _ in lives]  # per stream
        self._next_seq = 0

    def input_hw(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        return self.engine.input_hw(frame_hw)

    def infer(self, frame: np.ndarray) -> np.ndarray:
        raise RuntimeError("several streams: submit(frame, (stream index, tag)), then collect()")

    def submit(self, frame: np.ndarray, tag: Any) -> None:
        index = tag[0]
        self.streams[index].submit(frame, tag)
        self._seqs[index].append(self._next_seq)
        self._next_seq += 1

    def stream_ended(self, index: int) -> None:
        self.streams[index].flush()

    def _ready(self) -> list[int]:
        return [i for i, seqs in enumerate(self._seqs) if seqs and self.streams[i].collect_ready()]

    def collect_ready(self) -> bool:
        return bool(self._ready())

    def collect_result(self) -> Collected:
        """The oldest ready stream head; when none is ready (the window is full), the oldest head."""
        candidates = self._ready() or [i for i, seqs in enumerate(self._seqs) if seqs]
        index = min(candidates, key=lambda i: self._seqs[i][0])
        self._seqs[index].popleft()
        return self.streams[index].collect_result()

    @property
    def in_flight(self) -> int:
        return sum(len(seqs) for seqs in self._seqs)

    def close(self) -> None:
        if not self._closed:
            self.engine.close()
        super().close()

    def describe(self) -> dict[str, Any]:
        info = self.engine.describe()
        info["temporal"] = {name: s.describe()["temporal"] for name, s in zip(self.names, self.streams)}
        return info

    def summary_lines(self) -> list[tuple[str, str]]:
        lines = []
        for name, stream in zip(self.names, self.streams):
            for label, text in stream.summary_lines():
                lines.append((f"temporal {name}" if label else "", text))
        return lines
