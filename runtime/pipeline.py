"""Capture, inference, render and write overlap: threads joined by small bounded queues.

    stream 0: capture+pre ─q_in─┐                      ┌─q_post─► post+render ─q_write─► sinks + stats
    stream 1: capture+pre ─q_in─┼─► shared inference ──┼─q_post─► post+render ─q_write─► sinks + stats
              (decode n+2)      ┘   (one backend, its  └  (frame n-1)                    (frame n-2)
                                     slots all busy)

One stream is the case N = 1 of several: every run has one `SharedInference` (the one collect
loop) and one `Pipeline` per stream (its capture, render and write threads).

Files, folders and the demo are lossless: every frame passes every queue in order, and a full
queue makes the producer wait. Live sources drop stale frames in their grabber thread, and
their input queue holds one frame that a newer one replaces, so latency stays bounded. Every put
into a stream's input queue also drops that stream's index into one token queue, so the
inference thread sleeps until some stream has a frame and serves streams in the order their
frames arrived; results come back from the backend in submission order, so each stream's frames
stay in order. Stopping (Ctrl-C, SIGTERM, a sink error, the window's q key) stops capture, lets
frames already in inference finish and be written, then returns: every output is finalised by
the caller (runtime.run).
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runtime.backends.base import Backend
from runtime.render import Renderer, present_classes
from runtime.sinks import MaskSink, StatsSink, VideoSink, WindowSink
from runtime.sources import STALE, Frame, Source
from runtime.stats import RunStats
from segdata.frames import labels_to_size, to_model_input

log = logging.getLogger(__name__)

SHUTDOWN = "not processed (run stopped)"


@dataclass
class Job:
    """One frame and everything the later stages add to it."""

    frame: Frame
    model_input: np.ndarray | None = None
    labels: np.ndarray | None = None  # at the model's size after inference, the frame's after post
    image: np.ndarray | None = None  # rendered picture
    present: list[int] | None = None
    times: dict[str, float] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)  # backend facts for --stats (key frame, why)


_END = object()


@dataclass
class Outputs:
    """The sinks of one stream (any may be None; `stats` may be shared by several streams).

    A new kind of output is a field here, opened in runtime.outputs.open_outputs and written in
    `Pipeline._write`.
    """

    video: VideoSink | None = None
    masks: MaskSink | None = None
    stats: StatsSink | None = None
    window: WindowSink | None = None
    live: Any = None  # runtime.live.stream.LiveStream (the optional serve extra)
    bag: Any = None  # runtime.ros.bag_sink.BagSink (the ros extra; shared by streams)
    foxglove: Any = None  # runtime.ros.foxglove_sink.FoxgloveSink (the ros extra; shared by streams)
    results: Any = None  # runtime.results.ResultQueue: each frame's result handed to Python code
    rtsp: Any = None  # runtime.rtsp_sink.RtspSink, or one stream's RtspMount of the shared one

    def all(self) -> list[Any]:
        sinks = (self.video, self.masks, self.stats, self.window, self.live, self.bag, self.foxglove,
                 self.results, self.rtsp)
        return [s for s in sinks if s is not None]


class _NotifyingQueue(queue.Queue):
    """A stream's input queue: every item put also puts the stream's index into `tokens`."""

    def __init__(self, maxsize: int, tokens: queue.Queue, index: int) -> None:
        super().__init__(maxsize)
        self.tokens, self.index = tokens, index

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self.tokens.put(self.index)


class Pipeline:
    """One stream's own stages: capture (+ pre), render (+ post) and write, each a thread. Its
    frames go through the run's `SharedInference`, which made it (`SharedInference.add`)."""

    def __init__(self, source: Source, backend: Backend, outputs: Outputs, renderer: Renderer | None,
                 stats: RunStats, stop: threading.Event, tokens: queue.Queue, index: int,
                 stream: str | None = None, queue_size: int = 4) -> None:
        self.source = source
        self.backend = backend
        self.outputs = outputs
        self.renderer = renderer
        self.stats = stats
        self.stop = stop
        self.index = index
        self.stream = stream  # the stream's name in --stats lines when several share a backend
        self.q_in: queue.Queue = _NotifyingQueue(1 if source.live else queue_size, tokens, index)
        self.q_post: queue.Queue = queue.Queue(queue_size)
        self.q_write: queue.Queue = queue.Queue(queue_size)
        self.errors: list[tuple[str, BaseException]] = []
        pictures = (outputs.video, outputs.window, outputs.live, outputs.bag, outputs.foxglove, outputs.rtsp)
        self.need_render = renderer is not None and any(s is not None for s in pictures)
        self.need_present = (outputs.stats is not None or outputs.bag is not None
                             or (self.need_render and renderer.legend))
        self.num_classes = len(backend.manifest.classes)
        self._threads: list[threading.Thread] = []
        self._ended: set[int] = set()

    # -- control ---------------------------------------------------------------------------
    def wiring(self) -> list[tuple[str, Any, queue.Queue | None, queue.Queue | None]]:
        """The stages and the queues between them (inference is the shared loop's)."""
        return [("capture", self._capture, None, self.q_in),
                ("render", self._render, self.q_post, self.q_write),
                ("write", self._write, self.q_write, None)]

    def start(self) -> None:
        self.stats.start()
        for name, fn, q_from, q_to in self.wiring():
            thread = threading.Thread(target=self._guard, args=(name, fn, q_from, q_to),
                                      name=f"pspnet-rt-{name}" + (f"-{self.stream}" if self.stream else ""),
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def wait(self, poll: float = 0.2) -> None:
        """Block until every stage ended; short joins keep the main thread free for signals."""
        for thread in self._threads:
            while thread.is_alive():
                thread.join(poll)

    def _get(self, q: queue.Queue) -> Any:
        item = q.get()
        if item is _END:
            self._ended.add(id(q))
        return item

    def _guard(self, stage: str, fn: Any, q_from: queue.Queue | None, q_to: queue.Queue | None) -> None:
        """Run a stage; on failure record it, stop the run and keep draining the input (dropping
        it) so no upstream stage blocks; always pass the end marker on exactly once."""
        try:
            fn()
        except BaseException as exc:
            self.errors.append((stage, exc))
            self.stop.set()
            log.debug("%s stage failed", stage, exc_info=True)
            while q_from is not None and id(q_from) not in self._ended:
                if self._get(q_from) is not _END:
                    self.stats.drops[SHUTDOWN] += 1
        finally:
            if q_to is not None:
                q_to.put(_END)

    # -- stages ----------------------------------------------------------------------------
    def _capture(self) -> None:
        backend, live = self.backend, self.source.live
        for frame in self.source.frames(self.stop):
            t0 = time.perf_counter()
            h, w = backend.input_hw(frame.image.shape[:2])
            job = Job(frame, to_model_input(frame.image, h, w))
            job.times["capture"] = frame.capture_ms
            job.times["pre"] = (time.perf_counter() - t0) * 1e3
            if live:
                self._put_newest(job)
            else:
                self.q_in.put(job)  # lossless: wait for inference

    def _put_newest(self, job: Job) -> None:
        """Live sources: the waiting frame is replaced by a newer one instead of growing latency."""
        while True:
            try:
                self.q_in.put_nowait(job)
                return
            except queue.Full:
                try:
                    self.q_in.get_nowait()
                    self.stats.drops[STALE] += 1
                except queue.Empty:
                    pass

    def _render(self) -> None:
        while (job := self._get(self.q_post)) is not _END:
            t0 = time.perf_counter()
            h, w = job.frame.image.shape[:2]
            job.labels = labels_to_size(job.labels, h, w)
            if self.need_present:
                job.present = present_classes(job.labels, self.num_classes)
            t1 = time.perf_counter()
            if self.need_render:
                job.image = self.renderer.render(job.frame.image, job.labels, job.present)
            t2 = time.perf_counter()
            job.times["post"] = (t1 - t0) * 1e3
            job.times["render"] = (t2 - t1) * 1e3
            self.q_write.put(job)

    def _write(self) -> None:
        out = self.outputs
        while (job := self._get(self.q_write)) is not _END:
            t0 = time.perf_counter()
            if out.video is not None:
                out.video.write(job.image)
            if out.masks is not None:
                out.masks.write(job.frame.index, job.labels)
            if out.bag is not None:  # its frame_stats message carries the stages before this one
                so_far = (time.perf_counter() - job.frame.t_capture) * 1e3
                out.bag.write(job.frame, job.labels, job.image, job.times, so_far, job.present, job.fields,
                              stream=self.stream)
            if out.rtsp is not None:  # hands the frame to the RTSP server process: never waits for it
                out.rtsp.write(job.image)
            if out.window is not None:
                out.window.write(job.image)
                if out.window.quit_requested and not self.stop.is_set():
                    log.warning("window closed with q/Esc: stopping")
                    self.stop.set()
            now = time.perf_counter()
            job.times["write"] = (now - t0) * 1e3
            e2e = (now - job.frame.t_capture) * 1e3
            self.stats.add(job.times, e2e)
            if out.live is not None:  # hands over references only: viewers never hold up this stage
                out.live.write(job.image, job.labels, job.times, e2e)
            if out.foxglove is not None:  # the same: a reference into a one-frame slot
                out.foxglove.write(job.frame, job.labels, job.image, job.times, e2e, stream=self.stream)
            if out.stats is not None:
                record: dict[str, Any] = {"frame": job.frame.index, "n": self.stats.frames - 1,
                                          "time": round(time.time(), 6)}
                if self.stream is not None:
                    record = {"stream": self.stream, **record}
                if job.frame.name:
                    record["name"] = job.frame.name
                if job.frame.stamp_ns is not None:  # bags: the image message's header
                    record["stamp_ns"] = job.frame.stamp_ns
                    record["frame_id"] = job.frame.frame_id
                record.update({f"{k}_ms": round(v, 3) for k, v in job.times.items()})
                record["e2e_ms"] = round(e2e, 3)
                record["classes"] = job.present
                record.update(job.fields)
                out.stats.write(record)
            if out.results is not None:  # last: a slow reader holds up only this stream, and late
                out.results.write(self.stream, job, e2e)


class SharedInference:
    """The one collect loop: the thread that feeds every stream's frames to the one backend and
    hands each result back to its stream, timings included (`Backend.collect_result`)."""

    def __init__(self, backend: Backend, stop: threading.Event | None = None) -> None:
        self.backend = backend
        self.stop = stop or threading.Event()
        self.tokens: queue.Queue = queue.Queue()
        self.pipes: list[Pipeline] = []
        self.errors: list[tuple[str, BaseException]] = []
        self._thread: threading.Thread | None = None

    def add(self, source: Source, outputs: Outputs, renderer: Renderer | None, stream: str | None = None,
            stats: RunStats | None = None, queue_size: int = 4) -> Pipeline:
        """A stream's pipeline; `stream` names it in the stats lines (None: a run of one stream)."""
        pipe = Pipeline(source, self.backend, outputs, renderer, stats or RunStats(), self.stop, self.tokens,
                        len(self.pipes), stream, queue_size)
        self.pipes.append(pipe)
        return pipe

    def start(self) -> None:
        for pipe in self.pipes:
            pipe.start()
        self._thread = threading.Thread(target=self._guarded, name="pspnet-rt-inference", daemon=True)
        self._thread.start()

    def wait(self, poll: float = 0.2) -> None:
        """Block until every stream ended; short joins keep the main thread free for signals."""
        threads = [self._thread] if self._thread else []
        for thread in threads:
            while thread.is_alive():
                thread.join(poll)
        for pipe in self.pipes:
            pipe.wait(poll)

    def run(self) -> None:
        self.start()
        self.wait()

    def failures(self) -> list[tuple[str, BaseException]]:
        """(stage, exception) of every stage that failed; a stream's stages carry its name when
        several streams ran."""
        several = len(self.pipes) > 1
        return self.errors + [(f"{stage} of stream {p.stream}" if several else stage, exc)
                              for p in self.pipes for stage, exc in p.errors]

    def _guarded(self) -> None:
        self._open = set(range(len(self.pipes)))
        self._ended_out: set[int] = set()
        self._in_flight: collections.Counter[int] = collections.Counter()
        try:
            self._run()
        except BaseException as exc:
            self.errors.append(("inference", exc))
            self.stop.set()
            log.debug("shared inference failed", exc_info=True)
            while self._open:  # drop what the captures still send until each has ended
                i = self.tokens.get()
                try:
                    job = self.pipes[i].q_in.get_nowait()
                except queue.Empty:
                    continue
                if job is _END:
                    self._open.discard(i)
                else:
                    self.pipes[i].stats.drops[SHUTDOWN] += 1
        finally:
            for i, pipe in enumerate(self.pipes):
                if i not in self._ended_out:
                    pipe.q_post.put(_END)

    def _end_stream(self, i: int) -> None:
        self._ended_out.add(i)
        self.pipes[i].q_post.put(_END)

    def _run(self) -> None:
        backend, pipes, tokens = self.backend, self.pipes, self.tokens
        waiting_end: set[int] = set()  # ended streams whose last frames are still in the backend
        while self._open or backend.in_flight:
            # collect when every slot is busy, at the end, or when the input ran dry and the oldest
            # result needs no later frame (video-aware inference may wait for the next key frame)
            if backend.in_flight and (not self._open or backend.in_flight >= backend.max_in_flight
                                      or (tokens.empty() and backend.collect_ready())):
                result = backend.collect_result()
                i, job = result.tag
                job.labels = result.labels
                job.times["inference"] = result.infer_ms
                job.times.update(result.stage_ms)
                job.fields = result.fields
                job.model_input = None
                pipes[i].q_post.put(job)
                self._in_flight[i] -= 1
                if i in waiting_end and not self._in_flight[i]:
                    waiting_end.discard(i)
                    self._end_stream(i)
                continue
            i = tokens.get()
            try:
                job = pipes[i].q_in.get_nowait()
            except queue.Empty:  # a live stream replaced the frame this token announced
                continue
            if job is _END:
                self._open.discard(i)
                backend.stream_ended(i)
                if self._in_flight[i]:
                    waiting_end.add(i)
                else:
                    self._end_stream(i)
            elif self.stop.is_set():
                pipes[i].stats.drops[SHUTDOWN] += 1
            else:
                backend.submit(job.model_input, (i, job))
                self._in_flight[i] += 1
