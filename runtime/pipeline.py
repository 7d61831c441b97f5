"""Capture, inference, render and write overlap: four threads joined by small bounded queues.

    capture+pre ──q_in──► inference ──q_post──► post+render ──q_write──► sinks + stats
    (decode n+2)          (frames n+1, n        (frame n-1)              (frame n-2)
                           in flight)

Files, folders and the demo are lossless: every frame passes every queue in order, and a full
queue makes the producer wait. Live sources drop stale frames in their grabber thread, and
their input queue holds one frame that a newer one replaces, so latency stays bounded.
Stopping (Ctrl-C, SIGTERM, a sink error, the window's q key) stops capture, lets frames already
in inference finish and be written, then returns: every output is finalised by the caller.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runtime.backends.base import Backend
from runtime.render import Renderer, present_classes
from runtime.sinks import ConfidenceSink, MaskSink, StatsSink, VideoSink, WindowSink
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
    confidence: np.ndarray | None = None  # uint8 max softmax probability, resized like the labels
    image: np.ndarray | None = None  # rendered picture
    present: list[int] | None = None
    times: dict[str, float] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)  # backend facts for --stats (key frame, why)


_END = object()


@dataclass
class Outputs:
    """The sinks of one run (any may be None)."""

    video: VideoSink | None = None
    masks: MaskSink | None = None
    stats: StatsSink | None = None
    window: WindowSink | None = None
    live: Any = None  # runtime.live.stream.LiveStream (the optional serve extra)
    bag: Any = None  # runtime.ros.bag_sink.BagSink (the ros extra; shared by streams)
    foxglove: Any = None  # runtime.ros.foxglove_sink.FoxgloveSink (the ros extra; shared by streams)
    confidence: ConfidenceSink | None = None

    def all(self) -> list[Any]:
        sinks = (self.video, self.masks, self.stats, self.window, self.live, self.bag, self.foxglove,
                 self.confidence)
        return [s for s in sinks if s is not None]


class Pipeline:
    def __init__(self, source: Source, backend: Backend, outputs: Outputs, renderer: Renderer | None,
                 stats: RunStats, stop: threading.Event | None = None, queue_size: int = 4) -> None:
        self.source = source
        self.backend = backend
        self.outputs = outputs
        self.renderer = renderer
        self.stats = stats
        self.stop = stop or threading.Event()
        live = source.live
        self.q_in: queue.Queue = queue.Queue(1 if live else queue_size)
        self.q_post: queue.Queue = queue.Queue(queue_size)
        self.q_write: queue.Queue = queue.Queue(queue_size)
        self.errors: list[tuple[str, BaseException]] = []
        pictures = (outputs.video, outputs.window, outputs.live, outputs.bag, outputs.foxglove)
        self.need_render = renderer is not None and any(s is not None for s in pictures)
        self.need_present = (outputs.stats is not None or outputs.bag is not None
                             or (self.need_render and renderer.legend))
        self.num_classes = len(backend.manifest.classes)
        self._threads: list[threading.Thread] = []
        self._ended: set[int] = set()
        self.stream: str | None = None  # the stream's name when several share a backend (runtime.streams)

    # -- control ---------------------------------------------------------------------------
    def wiring(self) -> list[tuple[str, Any, queue.Queue | None, queue.Queue | None]]:
        """The stages and the queues between them (a shared-backend stream leaves out inference)."""
        return [("capture", self._capture, None, self.q_in),
                ("inference", self._inference, self.q_in, self.q_post),
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

    def run(self) -> None:
        self.start()
        self.wait()

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

    def _inference(self) -> None:
        backend, q_in = self.backend, self.q_in
        ended = False
        while not ended or backend.in_flight:
            # collect when every slot is busy, at the end, or when the input ran dry and the oldest
            # result needs no later frame (video-aware inference may wait for the next key frame)
            if backend.in_flight and (ended or backend.in_flight >= backend.max_in_flight
                                      or (q_in.empty() and backend.collect_ready())):
                job, labels = backend.collect()
                job.labels = labels
                job.confidence = backend.last_confidence
                job.times["inference"] = backend.last_infer_ms
                job.times.update(backend.last_stage_ms)
                job.fields = backend.last_fields
                job.model_input = None
                self.q_post.put(job)
                continue
            job = self._get(q_in)
            if job is _END:
                ended = True
            elif self.stop.is_set():
                self.stats.drops[SHUTDOWN] += 1
            else:
                backend.submit(job.model_input, job)

    def _render(self) -> None:
        while (job := self._get(self.q_post)) is not _END:
            t0 = time.perf_counter()
            h, w = job.frame.image.shape[:2]
            job.labels = labels_to_size(job.labels, h, w)
            if job.confidence is not None:  # nearest neighbour, exactly as the labels
                job.confidence = labels_to_size(job.confidence, h, w)
            if self.need_present:
                job.present = present_classes(job.labels, self.num_classes)
            t1 = time.perf_counter()
            if self.need_render:
                job.image = self.renderer.render(job.frame.image, job.labels, job.present, job.confidence)
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
            if out.confidence is not None:
                out.confidence.write(job.frame.index, job.confidence)
            if out.bag is not None:  # its frame_stats message carries the stages before this one
                so_far = (time.perf_counter() - job.frame.t_capture) * 1e3
                out.bag.write(job.frame, job.labels, job.image, job.times, so_far, job.present, job.fields,
                              stream=self.stream)
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


def bare_inference(backend: Backend, frames: list[np.ndarray]) -> dict[str, float]:
    """Inference alone on preloaded model inputs: the ceiling the pipeline is measured against.

    'sync' calls infer() frame after frame; 'async' keeps every slot of the backend busy. CPU
    milliseconds per frame (all threads of this process) are reported beside FPS because on a
    shared machine they stay put while FPS follows the neighbours' load.
    """
    for f in frames[: min(3, len(frames))]:
        backend.infer(f)
    result: dict[str, float] = {}
    n = len(frames)
    t0, c0 = time.perf_counter(), time.process_time()
    for f in frames:
        backend.infer(f)
    result["sync_fps"] = n / (time.perf_counter() - t0)
    result["sync_cpu_ms"] = (time.process_time() - c0) / n * 1e3
    t0, c0 = time.perf_counter(), time.process_time()
    for i, f in enumerate(frames):
        if backend.in_flight >= backend.max_in_flight:
            backend.collect()
        backend.submit(f, i)
    while backend.in_flight:
        backend.collect()
    result["async_fps"] = n / (time.perf_counter() - t0)
    result["async_cpu_ms"] = (time.process_time() - c0) / n * 1e3
    result["fps"] = max(result["sync_fps"], result["async_fps"])
    return result
