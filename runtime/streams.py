"""Several sources sharing one backend in one process: `pspnet-rt --video cam0 --video rtsp://...`.

    stream 0: capture ─q_in─┐                       ┌─q_post─► render ─► write (its own sinks)
    stream 1: capture ─q_in─┼─► shared inference ───┼─q_post─► render ─► write
    stream 2: capture ─q_in─┘   (one backend, its   └─q_post─► render ─► write
                                 slots all busy)

Each stream keeps the single-stream rules: files, folders and demo are lossless and in order (its
input queue is bounded and its capture waits), live sources keep the newest frame. Every put into a
stream's input queue also drops that stream's index into one token queue, so the inference thread
sleeps until some stream has a frame and serves streams in the order their frames arrived.
Results come back from the backend in submission order, so each stream's frames stay in order.

Names: `--video NAME=SRC` names a stream (letters, digits, '_', '.', '-'); unnamed streams are
called by their position, 0, 1, ... Outputs per stream: `--output out.mp4` -> out-NAME.mp4,
`--masks DIR` -> DIR/NAME/NNNNNN.png, `--stats` one file whose lines carry "stream": NAME.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import re
import sys
import threading
from pathlib import Path
from typing import Any

from runtime.backends.base import Backend
from runtime.pipeline import _END, SHUTDOWN, Outputs, Pipeline
from runtime.render import Renderer
from runtime.stats import Reservoir, RunStats

log = logging.getLogger(__name__)

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


def stream_path(path: str | Path, name: str) -> Path:
    """A per-stream file beside the one asked for: out.mp4 -> out-NAME.mp4."""
    path = Path(path)
    return path.with_name(f"{path.stem}-{name}{path.suffix}")


class _NotifyingQueue(queue.Queue):
    """A stream's input queue: every item put also puts the stream's index into `tokens`."""

    def __init__(self, maxsize: int, tokens: queue.Queue, index: int) -> None:
        super().__init__(maxsize)
        self.tokens, self.index = tokens, index

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self.tokens.put(self.index)


class StreamPipeline(Pipeline):
    """One stream of several: capture, render and write threads; inference is shared."""

    def __init__(self, name: str, index: int, tokens: queue.Queue, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stream = name
        self.index = index
        self.q_in = _NotifyingQueue(self.q_in.maxsize, tokens, index)

    def wiring(self) -> list[tuple[str, Any, queue.Queue | None, queue.Queue | None]]:
        return [stage for stage in super().wiring() if stage[0] != "inference"]


class SharedInference:
    """The one thread that feeds every stream's frames to the shared backend."""

    def __init__(self, backend: Backend, stop: threading.Event) -> None:
        self.backend = backend
        self.stop = stop
        self.tokens: queue.Queue = queue.Queue()
        self.pipes: list[StreamPipeline] = []
        self.errors: list[tuple[str, BaseException]] = []
        self._thread: threading.Thread | None = None

    def add(self, name: str, source: Any, outputs: Outputs, renderer: Renderer | None,
            queue_size: int = 4) -> StreamPipeline:
        pipe = StreamPipeline(name, len(self.pipes), self.tokens, source, self.backend, outputs, renderer,
                              RunStats(), stop=self.stop, queue_size=queue_size)
        self.pipes.append(pipe)
        return pipe

    def start(self) -> None:
        for pipe in self.pipes:
            pipe.start()
        self._thread = threading.Thread(target=self._guarded, name="pspnet-rt-inference", daemon=True)
        self._thread.start()

    def wait(self, poll: float = 0.2) -> None:
        threads = [self._thread] if self._thread else []
        for thread in threads:
            while thread.is_alive():
                thread.join(poll)
        for pipe in self.pipes:
            pipe.wait(poll)

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
            # as Pipeline: with the input dry, collect only what needs no later frame (--temporal)
            if backend.in_flight and (not self._open or backend.in_flight >= backend.max_in_flight
                                      or (tokens.empty() and backend.collect_ready())):
                (i, job), labels = backend.collect()
                job.labels = labels
                job.confidence = backend.last_confidence
                job.times["inference"] = backend.last_infer_ms
                job.times.update(backend.last_stage_ms)
                job.fields = backend.last_fields
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


class LockedSink:
    """One sink written by several streams' writer threads (the shared --stats file)."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self._lock = threading.Lock()

    def write(self, *args: Any) -> None:
        with self._lock:
            self.sink.write(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sink, name)


def merge_stats(parts: list[RunStats]) -> RunStats:
    """All streams as one run: frames and drops summed, percentiles over every frame, wall time from
    the first start to the last frame (so FPS is summed over streams)."""
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


def stream_line(pipe: StreamPipeline) -> str:
    s = pipe.stats
    e2e = s.stages["end-to-end"]
    p50, _, p99 = e2e.percentiles() if e2e.seen else (float("nan"),) * 3
    dropped = sum(s.drops.values())
    source = pipe.source
    ended = f", ended: {source.end_reason}" if source.end_reason else ""
    return (f"{s.frames} frames, {s.fps:.2f} FPS, end-to-end p50 {p50:.1f} / p99 {p99:.1f} ms, "
            f"{dropped} dropped - {source.describe()}{ended}")


def open_stream_outputs(args: Any, manifest: Any, streams: list[tuple[str, Any]],
                        opened: list[Any]) -> tuple[list[Outputs], list[Renderer], Any]:
    """Per-stream sinks (video and masks per stream, one locked stats file); all opened (and so
    checked) before any frame is read."""
    from runtime.errors import UsageError
    from runtime.sinks import ConfidenceSink, MaskSink, StatsSink, VideoSink

    if args.show:
        raise UsageError("--show shows one stream; with several --video streams write --output files instead")
    stats = None
    if args.stats:
        stats = StatsSink(args.stats)
        stats.open()
        opened.append(stats)
        stats = LockedSink(stats)
    server = None
    if args.serve:  # one server, one view per stream under /streams/NAME/ (the first also at /)
        from runtime.live import open_server

        server = open_server(*args.serve, token=args.serve_token or os.environ.get("PSPNET_RT_SERVE_TOKEN"),
                             max_clients=args.serve_clients)
        opened.append(server)
        print(f"pspnet-rt: {server.describe()}", file=sys.stderr, flush=True)
    outputs, renderers = [], []
    for name, source in streams:
        out = Outputs(stats=stats)
        if server is not None:
            out.live = server.add_stream(name, source.describe(), manifest.classes, manifest.palette)
            out.live.open()
            opened.append(out.live)
        if args.output:
            out.video = VideoSink(stream_path(args.output, name), args.fps or source.fps or 25.0,
                                  preset=args.x264_preset)
            size = source.frame_size
            if size:
                w, h = size
                out.video.open((w * 2 if args.visualize == "side-by-side" else w, h))
            else:
                out.video.open()
            opened.append(out.video)
        if args.masks:
            out.masks = MaskSink(Path(args.masks) / name)
            out.masks.open()
            opened.append(out.masks)
        if args.confidence:
            out.confidence = ConfidenceSink(Path(args.confidence) / name)
            out.confidence.open()
            opened.append(out.confidence)
        outputs.append(out)
        renderers.append(Renderer.from_manifest(manifest, mode=args.visualize, alpha=args.alpha,
                                                legend=not args.no_legend))
    if getattr(args, "bag", None) or getattr(args, "foxglove", None):  # one bag, one server, every stream
        from runtime.cli import open_ros_outputs

        shared = Outputs()
        open_ros_outputs(args, manifest, shared, list(streams), opened)
        for out in outputs:
            out.bag, out.foxglove = shared.bag, shared.foxglove
    return outputs, renderers, stats


def run_streams(args: Any, signals: Any, streams: list[tuple[str, Any]], backend: Backend, manifest: Any,
                opened: list[Any]) -> int:
    """Run every stream to its end through the shared backend; finalise, summarise, exit code."""
    from runtime.cli import _cpu_s, exit_code
    from runtime.errors import UsageError
    from runtime.finish import close_outputs, stage_errors, write_summary

    if args.benchmark:
        raise UsageError("--benchmark measures one stream; drop it or pass a single --video")
    outputs, renderers, stats_sink = open_stream_outputs(args, manifest, streams, opened)
    shared = SharedInference(backend, signals.stop)
    for (name, source), out, renderer in zip(streams, outputs, renderers):
        pipe = shared.add(name, source, out, renderer)
        if out.live is not None:
            pipe.stats.startup_s = backend.startup_s
            out.live.attach(pipe.stats, {**backend.describe(), "model": backend.manifest.model}, source.drops)
    if not (args.output or args.masks or args.stats or args.serve or args.bag or args.foxglove
            or args.confidence):
        log.warning("no --output, --masks, --stats or --serve: frames are segmented and only timed")
    cpu0 = _cpu_s()
    sinks = [s for out in outputs for s in (out.video, out.masks, out.live, out.confidence) if s is not None]
    sinks += [stats_sink.sink] if stats_sink is not None else []
    sinks += [s for s in (outputs[0].bag, outputs[0].foxglove) if s is not None] if outputs else []
    for sink in sinks:
        if hasattr(sink, "discard"):
            signals.on_abort(sink.discard)
    signals.graceful = True  # from here a signal stops the run, and every output is still closed
    try:
        shared.start()
        shared.wait()
        failures = shared.errors + [(f"{stage} of stream {p.stream}", exc)
                                    for p in shared.pipes for stage, exc in p.errors]
        errors = stage_errors(failures, args.verbose)
        errors += [f"{p.source.describe()} {p.source.incomplete}"
                   for p in shared.pipes if p.source.incomplete]
        close_outputs(sinks, opened, errors)  # finalise now so the summary can vouch for the files
        for pipe in shared.pipes:
            pipe.stats.drops.update(pipe.source.drops)
        total = merge_stats([p.stats for p in shared.pipes])
        total.startup_s = backend.startup_s
        cpu_ms = (_cpu_s() - cpu0) / max(1, total.frames) * 1e3
        info = backend.describe()
        extra = [("backend", f"{info['backend']} on {info['device']}, precision {info['precision_ran']} "
                             f"(manifest {info['precision']}), {info['in_flight']} in flight, shared by "
                             f"{len(streams)} streams")]
        extra += [(f"stream {p.stream}", stream_line(p)) for p in shared.pipes]
        extra += backend.summary_lines()
        if errors:
            extra.append(("outputs", "NOT all written: " + errors[0]))
        print(total.summary(f"pspnet-rt summary ({len(streams)} streams, throughput summed over them)", extra,
                            outputs_whole=not errors), flush=True)
        if args.summary_json:
            write_summary(args.summary_json, {
                **total.to_dict(), "backend": info, "cpu_ms_per_frame": round(cpu_ms, 2),
                "exit_signal": signals.code,
                "streams": {p.stream: {**p.stats.to_dict(), "source": p.source.describe(),
                                       "end_reason": p.source.end_reason, "reconnects": p.source.reconnects}
                            for p in shared.pipes}}, errors)
    finally:
        signals.graceful = False
    return exit_code(args, signals, errors, [], total.frames, "no frames came from any stream")
