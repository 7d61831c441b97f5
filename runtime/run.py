"""The one run path: N streams (N = 1 included) -> one backend -> each stream's outputs -> one
summary. `pspnet-rt` is a thin layer over `run()` (flags -> RunOptions, RunSummary -> exit
code), and so is `pspnet_rt.run`.

    check     sources parsed, outputs planned and checked (no clash, no input overwritten,
              writable): bad input fails here, before any model work (UsageError, exit 2)
    open      sources (a demo clip renders while the default artefact builds), the artefact
              (or the Triton server), the outputs (runtime.outputs.open_outputs), the backend
    stream    runtime.pipeline: each stream's capture/render/write, one shared inference loop
    finish    every output closed (and so verified) before the summary vouches for it

Stopping from outside goes through `control` (clikit.Signals for the command: Ctrl-C, SIGTERM,
SIGHUP): its `stop` event ends the run cleanly, every output still closed; while `graceful` is
set a signal only sets `stop`. Whatever happens, what was opened is closed, in reverse order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from runtime.options import RunOptions
from runtime.summary import RunSummary

log = logging.getLogger("pspnet-rt")
PROG = "pspnet-rt"


class RunControl:
    """How a run is stopped from outside, for callers without signal handlers (Python code):
    `stop.set()` ends it as Ctrl-C ends `pspnet-rt`. clikit.Signals has the same members."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.graceful = False  # set while the run can stop cleanly; a signal handler reads it
        self.code: int | None = None  # the exit code of what stopped the run (a signal's)

    def on_abort(self, hook: Callable[[], None]) -> None:
        """A hook that removes this run's temp files if the process is aborted; none here."""


def cpu_s() -> float:
    """CPU seconds of this process and its finished children (ffmpeg)."""
    import resource

    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + child.ru_utime + child.ru_stime


def run(options: RunOptions, control: Any = None, engine: Any = None, results: Any = None) -> RunSummary:
    """Run every stream of `options` to its end and return what happened.

    `engine`: an open runtime.engine.Engine to use instead of `options.engine` (the caller keeps
    it: it is not closed here). `results`: a sink that also receives every frame's result
    (runtime.pipeline.Outputs.results). Raises UsageError (bad input: exit 2), ArtefactError,
    WriteError and the like before streaming; failures while streaming are in the summary.
    """
    from runtime.cpu_share import restore_opencv_threads, settle_opencv_threads
    from runtime.finish import close_all
    from runtime.memory import fix_malloc_mmap_threshold
    from runtime.output_target import begin_run, release_all, remove_made_folders
    from runtime.outputs import open_outputs

    control = control if control is not None else RunControl()
    begin_run()
    control.on_abort(release_all)  # a third signal: this run's lock files go too
    fix_malloc_mmap_threshold()  # frame buffers must not pile up in per-thread heaps (runtime/memory.py)
    opened: list[Any] = []  # closed in reverse order whatever happens
    streamed = False
    opencv_settled = False  # whether this run set OpenCV's thread count (runtime/cpu_share.py)
    try:
        temporal = _check_options(options)
        streams = _open_sources(options, engine, opened)
        sources = [source for _, source in streams]
        backend, startup_s = (engine.backend, engine.startup_s) if engine is not None else (None, 0.0)
        if backend is None and _remote(options.engine):
            backend, startup_s = _connect(options, sources)
            opened.append(backend)
        manifest = backend.manifest if backend is not None else _manifest(options)
        if engine is not None and options.wants_confidence and not backend.confidence_name:
            from runtime.errors import UsageError

            raise UsageError("this run writes or draws the confidence: open the engine with "
                             "load(..., confidence=True) (an artefact built with --confidence)")
        _open_demos(options, manifest, sources, opened)
        outputs = open_outputs(options, manifest, streams, opened)
        if results is not None:
            for out in outputs:
                out.results = results
            results.open()
            opened.append(results)
        if backend is None:
            backend, startup_s = _load(options, manifest, sources)
            opened.append(backend)
        if temporal is not None:
            backend = _video_aware(backend, temporal, streams, opened, owned=engine is None)
        opencv_settled = settle_opencv_threads(backend)
        bench = None
        if options.benchmark:  # measured before and after the run, on the same frames
            from runtime.bare import Benchmark

            source = sources[0]
            bench = Benchmark(source.uri, source, getattr(backend, "inner", backend), options.max_frames)
        streamed = True
        return _stream(options, control, streams, backend, startup_s, manifest, outputs, opened, bench)
    finally:
        graceful, control.graceful = control.graceful, True  # a signal now must not cut the closing short
        close_all(reversed(opened), PROG)  # a sink still open here belongs to a run that did not finish
        release_all()  # outputs claimed by checks whose sinks never opened (a run that failed early)
        if not streamed:  # refused before any frame: the folders made for its outputs go, if empty
            remove_made_folders()
        restore_opencv_threads(opencv_settled)
        control.graceful = graceful


def _check_options(options: RunOptions) -> Any:
    """What needs no file or model: the video-aware settings (returned, None for off), the extras
    that outputs need, flags that fit one stream only."""
    from runtime.temporal.config import parse_temporal

    temporal = parse_temporal(options.temporal, options.temporal_threshold, options.temporal_max_interval,
                              options.temporal_flow_scale, options.temporal_direction)
    if options.serve:
        from runtime.live import check_extra

        check_extra()  # before any model work
    if options.bag or options.foxglove:
        from runtime.ros import require

        require("--bag" if options.bag else "--foxglove", *(("rosbags", "mcap") if options.bag else ()),
                *(("foxglove",) if options.foxglove else ()))  # before any model work
    if options.benchmark and options.several:
        from runtime.errors import UsageError

        raise UsageError("--benchmark measures one stream; drop it or pass a single --video")
    return temporal


def _open_sources(options: RunOptions, engine: Any, opened: list[Any]) -> list[tuple[str, Any]]:
    """(name, source) per stream, every output checked; all but the demo open (a demo clip starts
    rendering now when a default artefact is to be built, and opens at the artefact's size)."""
    from runtime.sources import parse_source
    from runtime.streams import parse_streams

    source_options = options.source_options()
    # a missing file fails before any model work, and so do outputs that cannot be written,
    # clash with each other or would overwrite an input
    streams = [(name, parse_source(src, source_options)) for name, src in parse_streams(options.videos)]
    if options.benchmark and streams[0][1].live:
        from runtime.errors import UsageError

        raise UsageError("--benchmark needs a file, folder or demo source (live frames cannot be "
                         "replayed)")
    _check_outputs(options, streams)
    sources = [source for _, source in streams]
    for source in sources:  # a stream that cannot be opened fails before a default build
        if source.kind != "demo":
            source.open()
            opened.append(source)
    demo = next((s for s in sources if hasattr(s, "prefetch")), None)  # every demo is one clip
    if demo is not None and not options.engine and engine is None:  # it renders while the default builds
        source_options.demo_size = options.input_size or source_options.demo_size
        demo.prefetch()
        opened.append(demo)
    return streams


def _open_demos(options: RunOptions, manifest: Any, sources: list[Any], opened: list[Any]) -> None:
    """Demo sources, rendered at the artefact's size (known only now) unless --input-size says."""
    h, w = manifest.input_size
    for source in sources:
        if source.kind != "demo":
            continue
        if options.input_size:
            source.options.demo_size = options.input_size
        elif h > 0 and w > 0:
            source.options.demo_size = (h, w)
        source.open()
        if source not in opened:
            opened.append(source)


def _check_outputs(options: RunOptions, streams: list[tuple[str, Any]]) -> None:
    """Every output of the run checked before any model work (cheap: nothing written)."""
    from runtime.output_plan import check_outputs
    from runtime.outputs import plan_outputs, sinks_of

    check_outputs(options, streams)
    for sink in sinks_of(plan_outputs(options, streams)):
        sink.check()  # and claimed: a second run writing the same output is refused now
    if options.summary_json:
        from runtime.sinks import check_summary

        check_summary(options.summary_json)


def _remote(engine: str | None) -> bool:
    from runtime.backends import is_remote

    return is_remote(engine)


def _manifest(options: RunOptions) -> Any:
    """--engine as given (manifest, model file or folder), else the cached default build."""
    from artefact.manifest import load_manifest
    from runtime.engine import default_artefact, find_artefact

    if options.engine:
        return load_manifest(find_artefact(options.engine, options.backend))
    o = options
    return load_manifest(default_artefact(o.model, o.precision, o.backend, o.input_size, o.verbose,
                                          confidence=o.wants_confidence))


def _load(options: RunOptions, manifest: Any, sources: list[Any]) -> tuple[Any, float]:
    """The artefact on its backend, shared by every stream, and its load time."""
    from runtime.engine import open_backend

    live = any(s.live for s in sources)
    opts = options.backend_options(live)
    if len(sources) > 1 and live and not options.requests:
        opts["requests"] = len(sources)  # live: one frame in flight per stream, each the newest
    backend, startup_s = open_backend(manifest, options.backend, **opts)
    what = sources[0].describe() if len(sources) == 1 else f"{len(sources)} streams"
    info = backend.describe()
    log.info("%s -> %s on %s, precision %s (manifest %s), %d in flight, loaded in %.2f s", what,
             info["backend"], info["device"], info["precision_ran"], info["precision"], info["in_flight"],
             startup_s)
    return backend, startup_s


def _connect(options: RunOptions, sources: list[Any]) -> tuple[Any, float]:
    """A Triton client backend; live streams keep one request in flight each (newest frame)."""
    from runtime.engine import connect

    live = [s for s in sources if s.live]
    return connect(options.engine, requests=options.requests or (len(live) if live else None),
                   timeout=options.timeout, reconnect=max(0, options.reconnect),
                   reconnect_delay=options.reconnect_delay, confidence=options.wants_confidence)


def _video_aware(backend: Any, temporal: Any, streams: list[tuple[str, Any]], opened: list[Any],
                 owned: bool) -> Any:
    """--temporal: key frames chosen per stream over the one engine. Closing the wrapper closes the
    engine, so it takes the engine's place among what the run closes (unless the caller owns it)."""
    if len(streams) > 1:
        from runtime.temporal.streams import PerStreamTemporal

        wrapper = PerStreamTemporal(backend, temporal, [s.live for _, s in streams], [n for n, _ in streams])
        log.info("video-aware inference per stream: %s", wrapper.scheduler.describe())
    else:
        from runtime.temporal.backend import TemporalBackend

        wrapper = TemporalBackend(backend, temporal, live=streams[0][1].live)
        log.info("video-aware inference: %s", wrapper.scheduler.describe())
    if owned:
        opened[opened.index(backend)] = wrapper
    return wrapper


def _stream(options: RunOptions, control: Any, streams: list[tuple[str, Any]], backend: Any, startup_s: float,
            manifest: Any, outputs: list[Any], opened: list[Any], bench: Any) -> RunSummary:
    """Every stream to its end through the shared backend; then close, verify and summarise."""
    from runtime.finish import close_outputs, stage_errors, write_summary
    from runtime.outputs import renderer, sinks_of
    from runtime.pipeline import SharedInference
    from runtime.sinks import WindowSink
    from runtime.streams import merge_stats
    from runtime.summary import summarize

    sinks = sinks_of(outputs)
    if all(isinstance(s, WindowSink) and not s.enabled for s in sinks):
        log.warning("no --output, --masks, --stats, --serve or window: frames are segmented and only timed")
    shared = SharedInference(backend, control.stop)
    several = len(streams) > 1
    for (name, source), out in zip(streams, outputs):
        pipe = shared.add(source, out, renderer(options, manifest), name if several else None)
        pipe.stats.startup_s = startup_s
        if out.live is not None:
            out.live.attach(pipe.stats, {**backend.describe(), "model": manifest.model}, source.drops)
    for sink in sinks:
        if hasattr(sink, "discard"):
            control.on_abort(sink.discard)
    cpu0 = cpu_s()
    control.graceful = True  # from here a signal stops the run, and every output is still closed
    interrupted = False
    try:
        try:
            shared.run()
        except KeyboardInterrupt:  # Python code without signal handlers: stop as pspnet-rt stops on Ctrl-C
            interrupted = True
            control.stop.set()
            shared.wait()
        errors = stage_errors(shared.failures(), options.verbose)
        errors += [f"{s.describe()} {s.incomplete}" for s in (p.source for p in shared.pipes) if s.incomplete]
        close_outputs(sinks, opened, errors)  # finalise now so the summary can vouch for the files
        for pipe in shared.pipes:  # after the live view froze its figures, which added them live
            pipe.stats.drops.update(pipe.source.drops)
        total = merge_stats([p.stats for p in shared.pipes])
        total.startup_s = startup_s
        cpu_ms = (cpu_s() - cpu0) / max(1, total.frames) * 1e3
        measured = None
        if bench is not None and total.frames and control.code is None:
            measured = bench.finish(total.fps, cpu_ms)
        summary = summarize(total, [(name, p.source, p.stats) for (name, _), p in zip(streams, shared.pipes)],
                            backend, cpu_ms, errors, control.code, measured, sinks)
        if options.summary_json:
            write_summary(options.summary_json, summary.data, errors)
    finally:
        control.graceful = False
    if interrupted:  # every output is closed whole; the caller's program stops as Ctrl-C asked
        raise KeyboardInterrupt
    return summary
