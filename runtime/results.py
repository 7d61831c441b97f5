"""Each frame's result handed to Python code while a run streams: `stream()` iterates them.

`Stream` runs the one run path (runtime.run) in a background thread with one more sink, a
bounded queue the iterator reads: files stay lossless (a slow reader holds the run up, nothing
is dropped), live sources keep the newest frame as they do for every sink. Leaving the loop
early (break, an exception, Ctrl-C) stops the run cleanly: frames in flight finish, every
output is closed whole.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runtime.options import RunOptions
from runtime.summary import RunSummary

_DONE = object()


@dataclass
class StreamResult:
    """One frame of a stream, segmented."""

    index: int  # the frame's index in its source (file frame number, image order, demo frame)
    frame: np.ndarray  # the source's uint8 BGR HxWx3 image
    labels: np.ndarray  # uint8 HxW class ids at the frame's size
    timings: dict[str, float]  # ms per stage (capture, pre, inference, post, render, write) and end-to-end
    stream: str | None = None  # the stream's name when several run at once
    name: str | None = None  # the image's file name (folder and glob sources)
    key: bool | None = None  # video-aware inference: a key frame (True) or a propagated one (False)
    fields: dict[str, Any] = field(default_factory=dict)  # more per-frame facts (why a key frame, ...)
    # uint8 HxW max softmax probability (255 = 1.0) at the frame's size, when the run asked for it
    # (confidence=DIR or visualize="confidence", an artefact built with --confidence)
    confidence: np.ndarray | None = None

    @property
    def propagated(self) -> bool:
        """The result was moved from a key frame by motion, not computed by the network."""
        return self.key is False


class ResultQueue:
    """The sink behind `Stream`: every written frame becomes a StreamResult in a bounded queue."""

    def __init__(self, size: int = 4) -> None:
        self.queue: queue.Queue = queue.Queue(size)
        self.draining = threading.Event()  # the reader left: results are no longer kept

    def describe(self) -> str:
        return "results to Python"

    def open(self) -> None:
        """Nothing to check: the results stay in memory."""

    def write(self, stream: str | None, job: Any, e2e_ms: float) -> None:
        if self.draining.is_set():
            return
        fields = dict(job.fields)
        timings = {**job.times, "end-to-end": e2e_ms}
        result = StreamResult(job.frame.index, job.frame.image, job.labels, timings, stream, job.frame.name,
                              fields.pop("key", None), fields, job.confidence)
        while not self.draining.is_set():
            try:
                self.queue.put(result, timeout=0.1)
                return
            except queue.Full:
                continue

    def close(self, failed: bool = False) -> None:
        """The results were handed over as they came; nothing is pending."""


class Stream:
    """An iterator over a run's results (`StreamResult`), with the run's `summary` once it ended.

    Use it in a `for` loop or a `with` block; `close()` stops the run early. Raises what the run
    raised (bad input, a refused artefact) on the first `next()`, and `RunFailed` at the end when a
    stage failed or an output is not whole.
    """

    def __init__(self, options: RunOptions, engine: Any = None, queue_size: int = 4) -> None:
        from runtime.run import RunControl

        self.options = options
        self.summary: RunSummary | None = None
        self._engine = engine
        self._results = ResultQueue(queue_size)
        self._control = RunControl()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pspnet-rt-stream", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from runtime.run import run

        try:
            self.summary = run(self.options, self._control, engine=self._engine, results=self._results)
        except BaseException as exc:  # handed to the reader
            self._error = exc
        while True:  # the end marker, after the last result
            try:
                self._results.queue.put(_DONE, timeout=0.1)
                break
            except queue.Full:
                if self._results.draining.is_set():
                    self._drain()

    def _drain(self) -> None:
        while True:
            try:
                self._results.queue.get_nowait()
            except queue.Empty:
                return

    def __iter__(self) -> Iterator[StreamResult]:
        try:
            while True:
                item = self._results.queue.get()
                if item is _DONE:
                    break
                yield item
        finally:
            self.close()
        if self._error is not None:
            raise self._error
        if self.summary is not None and self.summary.errors:
            raise RunFailed(self.summary)

    def close(self) -> None:
        """Stop the run (if it still runs), let every output close whole, and wait for it."""
        self._control.stop.set()
        self._results.draining.set()
        while self._thread.is_alive():
            self._drain()
            self._thread.join(0.1)
        self._drain()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RunFailed(RuntimeError):
    """A stage failed or an output is not whole; `summary` says what ran and what failed."""

    def __init__(self, summary: RunSummary) -> None:
        super().__init__(summary.errors[0] if summary.errors else "the run failed")
        self.summary = summary
