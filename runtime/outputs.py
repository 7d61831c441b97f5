"""The one place a run's outputs are made from its options: `plan_outputs` (the sinks, not yet
opened, so they can be checked before any model work) and `open_outputs` (the same sinks and
the live-view server, opened). One stream is the case N = 1 of several:

    one stream   --output out.mp4   --masks DIR          --stats s.jsonl (lines as they were)
    several      out-NAME.mp4 each  DIR/NAME/ each       one s.jsonl, lines carry "stream": NAME

A new kind of output (an RTSP stream out, confidence PNGs) is a RunOptions field, a
field of runtime.pipeline.Outputs, a few lines in `stream_outputs` and its write in
`Pipeline._write`; the run opens, checks, closes and vouches for it like the others.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from runtime.options import RunOptions
from runtime.output_plan import masks_folder, stream_path
from runtime.pipeline import Outputs
from runtime.render import Renderer

PROG = "pspnet-rt"


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


def stream_outputs(options: RunOptions, name: str, fps: float | None, stats: Any = None) -> Outputs:
    """One stream's file and window sinks, not opened yet; `stats` is the run's shared stats sink."""
    from runtime.sinks import MaskSink, VideoSink, WindowSink

    several = options.several
    out = Outputs(stats=stats)
    if options.output:
        out.video = VideoSink(stream_path(options.output, name) if several else options.output,
                              options.fps or fps or 25.0, preset=options.x264_preset)
    if options.masks:
        out.masks = MaskSink(masks_folder(options.masks, name, several))
    if options.show:
        out.window = WindowSink()
    return out


def plan_outputs(options: RunOptions, streams: list[tuple[str, Any]]) -> list[Outputs]:
    """Every stream's sinks, not opened: `check()` them before any model work."""
    from runtime.errors import UsageError
    from runtime.sinks import StatsSink

    if options.show and options.several:
        raise UsageError("--show shows one stream; with several --video streams write --output files instead")
    if options.output and options.several:
        from runtime.output_target import STREAM, resolve

        if resolve(options.output, "--output").kind == STREAM:  # X-NAME.mp4 beside /dev/null?
            raise UsageError(f"--output {options.output} is not a file: with several streams each writes its "
                             "own video, X-NAME.EXT beside the name given; give a file name such as out.mp4")
    stats = StatsSink(options.stats) if options.stats else None
    if stats is not None and options.several:
        stats = LockedSink(stats)
    outputs = [stream_outputs(options, name, source.fps, stats) for name, source in streams]
    if options.bag:  # one bag, every stream's topics in it (runtime/ros/bag_sink.py)
        from runtime.ros.bag_sink import BagSink

        bag = BagSink(options.bag, [], [], topic=options.bag_topic)  # classes once the manifest is read
        for out in outputs:
            out.bag = bag
    if options.rtsp_out:  # one RTSP server; several streams each at PATH/NAME (runtime/rtsp_sink.py)
        from runtime.rtsp_sink import RtspSink

        names = [name for name, _ in streams] if options.several else None
        rtsp = RtspSink(options.rtsp_out, options.fps or streams[0][1].fps or 25.0, streams=names,
                        preset=options.x264_preset)
        for i, out in enumerate(outputs):
            out.rtsp = rtsp.mount(i) if options.several else rtsp
    return outputs


def sinks_of(outputs: list[Outputs]) -> list[Any]:
    """Every sink of the run once, in the order they open and close (a shared one unwrapped)."""
    from runtime.rtsp_sink import RtspMount

    found: list[Any] = []
    for out in outputs:
        for sink in out.all():
            sink = sink.sink if isinstance(sink, LockedSink | RtspMount) else sink
            if sink not in found:
                found.append(sink)
    return found


def open_outputs(options: RunOptions, manifest: Any, streams: list[tuple[str, Any]],
                 opened: list[Any]) -> list[Outputs]:
    """Open every output of the run (each added to `opened`, so a failure closes it): the live-view
    server first (one server, one view per stream under /streams/NAME/, the first also at /),
    then each stream's sinks; a video starts its encoder now when the source's size is known."""
    outputs = plan_outputs(options, streams)
    if options.serve:
        from runtime.live import open_server

        token = options.serve_token or os.environ.get("PSPNET_RT_SERVE_TOKEN")
        server = open_server(*options.serve, token=token, max_clients=options.serve_clients,
                             allowed_hosts=options.serve_allow_host or ())
        opened.append(server)
        print(f"{PROG}: {server.describe()}", file=sys.stderr, flush=True)
        for out, (name, source) in zip(outputs, streams):
            out.live = server.add_stream(name, source.describe(), manifest.classes, manifest.palette)
    bag = outputs[0].bag if outputs else None
    if bag is not None:
        bag.classes, bag.palette = list(manifest.classes), [list(c) for c in manifest.palette]
    sizes = {id(out.video): source.frame_size for out, (_, source) in zip(outputs, streams) if out.video}
    for sink in sinks_of(outputs):
        size = sizes.get(id(sink))
        if size:
            w, h = size
            sink.open((w * 2 if options.visualize == "side-by-side" else w, h))
        else:
            sink.open()
        opened.append(sink)
    # shared by every stream, each under its own name (none for a run of one)
    labels = [(name if options.several else None, source) for name, source in streams]
    if bag is not None:
        for label, source in labels:
            bag.add_stream(label, live=source.live, fps=source.fps)
    if options.foxglove:
        from runtime.ros.foxglove_sink import FoxgloveSink

        foxglove = FoxgloveSink(*options.foxglove, manifest.classes, manifest.palette)
        foxglove.open()
        opened.append(foxglove)
        print(f"{PROG}: {foxglove.describe()}", file=sys.stderr, flush=True)
        for label, source in labels:
            foxglove.add_stream(label, live=source.live, fps=source.fps)
        for out in outputs:
            out.foxglove = foxglove
    return outputs


def renderer(options: RunOptions, manifest: Any) -> Renderer:
    """What draws a stream's frames for the video, window and live view."""
    return Renderer.from_manifest(manifest, mode=options.visualize, alpha=options.alpha,
                                  legend=options.legend)
