"""`RunOptions`: everything a run depends on, typed; `pspnet-rt`'s flags and `pspnet_rt.run()`'s
keywords are the same fields.

The command (runtime/cli.py) maps its parsed flags onto these fields by name (flag `--x-y` is
field `x_y`), so a new option is a field here, a flag there and the code that reads it; nothing
below the command sees argparse.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from runtime.errors import UsageError
from runtime.sources import SourceOptions


@dataclass
class RunOptions:
    """One run: its streams, the artefact (or what to build), its outputs and its tuning."""

    # -- input and model -------------------------------------------------------------------
    videos: list[str] = field(default_factory=lambda: ["demo"])  # [NAME=]SRC per stream (runtime.sources)
    engine: str | None = None  # manifest, model file, folder holding one, or triton://HOST:PORT/MODEL
    model: str = "demo"  # built once (cached) when no engine is given
    precision: str = "auto"  # of that build: auto | fp32 | fp16 | int8
    backend: str = "auto"  # auto = the artefact's own
    input_size: tuple[int, int] | None = None  # (H, W) for builds and dynamic-shape artefacts
    max_frames: int | None = None
    loop: bool = False
    # -- outputs (opened in runtime.outputs.open_outputs) ----------------------------------
    output: str | None = None  # video file; several streams: X-NAME.mp4
    masks: str | None = None  # folder of class-id PNGs; several streams: DIR/NAME/
    show: bool = False  # a window (one stream only)
    stats: str | None = None  # JSONL, one object per frame
    summary_json: str | None = None
    visualize: str = "overlay"  # overlay | mask | side-by-side
    alpha: float = 0.5
    legend: bool = True
    fps: float | None = None  # output video rate (default: the source's)
    x264_preset: str = "superfast"
    serve: tuple[str, int] | None = None  # (host, port) of the live view
    serve_token: str | None = None  # default $PSPNET_RT_SERVE_TOKEN
    serve_clients: int = 32
    serve_allow_host: list[str] | None = None  # Host header names answered besides its own addresses
    bag: str | None = None  # a ROS 2 MCAP bag out (the ros extra; runtime/ros/bag_sink.py)
    bag_topic: str = "/pspnet/class_map"
    foxglove: tuple[str, int] | None = None  # (host, port) of the Foxglove live view (the ros extra)
    rtsp_out: str | None = None  # rtsp://[USER:PASSWORD@]HOST:PORT/PATH: serve the rendered stream there
    # (runtime/rtsp_sink.py; several streams: PATH/NAME); an rtsp:// `output` lands here
    # -- runtime tuning --------------------------------------------------------------------
    device: str | None = None  # OpenVINO device name, or a CUDA index for tensorrt
    hint: str = "auto"  # OpenVINO: auto | latency | throughput
    requests: int | None = None  # requests in flight
    cuda_graph: bool = False
    benchmark: bool = False  # bare inference before and after the run (one stream)
    # -- live sources ----------------------------------------------------------------------
    capture_size: tuple[int, int] | None = None  # (W, H)
    capture_fps: float | None = None
    reconnect: int = 5
    reconnect_delay: float = 0.5
    timeout: float = 10.0
    rtsp_transport: str = "auto"  # rtsp:// sources: auto | tcp | udp
    demo_frames: int = 300
    demo_seed: int = 0
    topic: str | None = None  # bags: the image topic of every bag source that does not name one
    realtime: bool = False  # bags: replay at the recorded rate, like a live camera
    # -- video-aware inference (runtime.temporal.config) ------------------------------------
    temporal: str = "off"  # off | adaptive | fixed:N
    temporal_threshold: float | None = None
    temporal_max_interval: int | None = None
    temporal_direction: str | None = None
    temporal_flow_scale: float | None = None
    verbose: int = 0  # tracebacks of failed stages with >= 1

    def __post_init__(self) -> None:
        if isinstance(self.videos, str):
            self.videos = [self.videos]
        if isinstance(self.engine, os.PathLike):  # a Path, or an artefact.built.Artefact
            self.engine = os.fspath(self.engine)
        if not self.videos:
            raise UsageError("give at least one source (videos=['demo'], a file, camN, a URL, ...)")
        if self.serve_token and not self.serve:
            raise UsageError("--serve-token needs --serve [HOST:]PORT")
        if self.output and str(self.output).lower().startswith("rtsp://"):
            if self.rtsp_out:
                raise UsageError("give one rtsp:// URL to serve (output or rtsp_out), not two")
            self.output, self.rtsp_out = None, str(self.output)
        if self.serve_allow_host and not self.serve:
            raise UsageError("--serve-allow-host needs --serve [HOST:]PORT")

    @classmethod
    def from_fields(cls, values: Any, **overrides: Any) -> RunOptions:
        """Options from any object with these attribute names (the command's parsed flags); names
        it lacks keep their defaults. `overrides` win."""
        known = {f.name for f in dataclasses.fields(cls)}
        taken = {name: getattr(values, name) for name in known if hasattr(values, name)}
        return cls(**{**taken, **overrides})

    @property
    def several(self) -> bool:
        """More than one stream shares the backend (per-stream output names, no window)."""
        return len(self.videos) > 1

    def source_options(self) -> SourceOptions:
        return SourceOptions(loop=self.loop, max_frames=self.max_frames, capture_size=self.capture_size,
                             capture_fps=self.capture_fps, reconnect=self.reconnect,
                             reconnect_delay=self.reconnect_delay, timeout=self.timeout,
                             rtsp_transport=self.rtsp_transport, demo_frames=self.demo_frames,
                             demo_seed=self.demo_seed, topic=self.topic, realtime=self.realtime)

    def backend_options(self, live: bool) -> dict[str, Any]:
        """runtime.backends.load_backend's keywords; `live`: a live source is among the streams."""
        hint = self.hint if self.hint != "auto" else ("latency" if live else "throughput")
        # live: one request in flight, so every inference starts on the newest frame
        requests = self.requests or (1 if live else None)
        opts: dict[str, Any] = {"hint": hint, "requests": requests, "cuda_graph": self.cuda_graph}
        if self.device is not None:
            if self.device.isdigit():
                opts["device_index"] = int(self.device)
            else:
                opts["device"] = self.device
        return opts
