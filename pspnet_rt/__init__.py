"""pspnet-rt from Python: build an artefact, open it, segment frames, stream sources.

    import pspnet_rt as rt

    artefact = rt.build(model="demo", precision="auto")     # python -m build_engine
    engine = rt.load(artefact)                               # any backend, or "triton://HOST:PORT/MODEL"
    labels = engine(frame_bgr)                               # uint8 HxW class ids at the frame's size
    for r in rt.stream("demo", engine, max_frames=30):      # frame, labels, timings, key/propagated
        ...
    summary = rt.run(rt.RunOptions(videos=["demo"], output="out.mp4"))   # pspnet-rt

These are the objects the two commands use: `python -m build_engine` maps its flags onto
`BuildOptions`, `pspnet-rt` onto `RunOptions`. Importing this package never imports torch
(building does, when it runs). docs/python-api.md has the whole tour.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from artefact.built import Artefact
from artefact.manifest import ArtefactError, Manifest
from runtime.engine import Engine, Segmented, load
from runtime.options import RunOptions
from runtime.results import RunFailed, Stream, StreamResult
from runtime.summary import RunSummary

if TYPE_CHECKING:
    from build_engine.api import BuildOptions

__version__ = "0.1.0"
__all__ = ["Artefact", "ArtefactError", "BuildOptions", "Engine", "Manifest", "RunFailed", "RunOptions",
           "RunSummary", "Segmented", "Stream", "StreamResult", "__version__", "build", "load", "run",
           "stream"]


def build(options: BuildOptions | str | None = None, /, **fields: Any) -> Artefact:
    """Build (or find in the cache) an artefact, as `python -m build_engine` does.

    `build("demo", precision="int8")` names the zoo model first; `build(BuildOptions(...))` or
    `build(model=..., ...)` work too.

    `fields` are BuildOptions' (model, precision, backend, input_size, output, calib_data,
    max_miou_drop, ...) and override `options`. precision="auto" (the default) picks the
    fastest precision that passes the accuracy gate; `artefact.precision_choice` says why.
    Needs the export extra (torch, onnx). Raises calib.precision.GateFailed when the asked
    precision fails its gate, build_engine.errors.BuildError when verification fails.
    """
    import dataclasses

    from build_engine.api import BuildOptions
    from build_engine.api import build as build_artefact

    if isinstance(options, str):  # build("demo", ...): the model's name
        options, fields = None, {"model": options, **fields}
    elif options is not None and not isinstance(options, BuildOptions):
        raise TypeError(f"build() takes a model name or BuildOptions first, not {type(options).__name__}")
    # BuildOptions checks each value by its flag's rule ([96, 192] -> (96, 192), a Path -> str)
    options = dataclasses.replace(options or BuildOptions(), **fields)
    if options.stop_after:
        raise ValueError("stop_after keeps one step's output, not an artefact: "
                         "use build_engine.api.build(options)")
    return Artefact.open(build_artefact(options))


def stream(source: str | list[str], engine: Any = None, **fields: Any) -> Stream:
    """Iterate the segmented frames of a source (or several): `StreamResult`s in order.

    `source`: camN, /dev/videoN, a video file, a folder or glob of images, rtsp:// http(s)://
    udp:// URLs, or "demo"; a list runs several streams on one engine ("NAME=SRC" names one).
    `engine`: an open `Engine` (left open), an artefact or its path, or "triton://..." (opened and
    closed here); None builds the default artefact. `fields` are RunOptions' (max_frames,
    temporal, output, masks, stats, serve, ...): outputs are written as `pspnet-rt` writes them.
    `stream(...).summary` holds the RunSummary once the loop has ended.
    """
    videos = [source] if isinstance(source, str) else list(source)
    if isinstance(engine, Engine):
        return Stream(RunOptions(videos=videos, **fields), engine)
    return Stream(RunOptions(videos=videos, engine=engine, **fields))


def run(options: RunOptions | None = None, /, **fields: Any) -> RunSummary:
    """Run streams to their end with their outputs, as `pspnet-rt` does; the summary as a value.

    `fields` are RunOptions' and override `options`; `engine` may also be an open `Engine` (left
    open). Bad input raises (UsageError, ArtefactError);
    a stage that failed or an output that is not whole is in `summary.errors` (`summary.ok` is
    False). Ctrl-C stops the run cleanly (every output closed whole), then raises
    KeyboardInterrupt.
    """
    import dataclasses

    from runtime.run import run as run_streams

    engine = fields.pop("engine") if isinstance(fields.get("engine"), Engine) else None
    options = dataclasses.replace(options, **fields) if options is not None else RunOptions(**fields)
    return run_streams(options, engine=engine)


def __getattr__(name: str) -> Any:
    if name == "BuildOptions":  # the build side, imported when asked for (it never loads torch itself)
        from build_engine.api import BuildOptions

        return BuildOptions
    raise AttributeError(f"module 'pspnet_rt' has no attribute {name!r}")
