"""An artefact opened on its backend, for Python code and for the run: `Engine`, and where it
comes from (`find_artefact`, `default_artefact`, `load`).

`Engine` takes frames as a camera gives them (uint8 BGR, any size) and returns class maps at the
frame's own size: it resizes to the model input before the backend and back after it, the same
two steps the pipeline's capture and render threads run. The backend underneath
(`engine.backend`, runtime.backends.base.Backend) takes model-sized inputs; the pipeline uses it
directly so that pre- and post-processing overlap with inference.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from runtime.backends.base import Backend

if TYPE_CHECKING:
    from artefact.manifest import Manifest

log = logging.getLogger("pspnet-rt")


@dataclass
class Segmented:
    """One frame's result from `Engine.collect()`: class ids at the frame's size, and timings."""

    tag: Any
    labels: np.ndarray  # uint8 HxW class ids (indices into engine.classes)
    timings: dict[str, float] = field(default_factory=dict)  # ms: pre, inference, post
    # uint8 HxW max softmax probability (255 = 1.0) at the frame's size, resized like the labels;
    # None unless the engine was loaded with confidence=True (an artefact built with --confidence)
    confidence: np.ndarray | None = None


class Engine:
    """A segmentation engine: `labels = engine(frame)`, or `submit`/`collect` to keep several
    frames in flight; `close()` (or `with`) releases the backend.

    Works the same on every backend: OpenVINO, ONNX Runtime, TensorRT, and a Triton server
    (`load("triton://HOST:PORT/MODEL")`).
    """

    def __init__(self, backend: Backend, startup_s: float = 0.0) -> None:
        self.backend = backend
        self.startup_s = startup_s  # how long opening it took (load, compile, connect)
        self._sizes: deque[tuple[int, int, float]] = deque()  # (h, w, pre ms) of each frame in flight

    # -- what it is ------------------------------------------------------------------------
    @property
    def manifest(self) -> Manifest:
        return self.backend.manifest

    @property
    def classes(self) -> list[str]:
        return list(self.backend.manifest.classes)

    @property
    def palette(self) -> list[list[int]]:
        return [list(c) for c in self.backend.manifest.palette]

    def describe(self) -> dict[str, Any]:
        """Backend, device, precision asked and precision that really ran, requests in flight."""
        return self.backend.describe()

    # -- one frame -------------------------------------------------------------------------
    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Segment one uint8 BGR HxWx3 frame (blocking): uint8 HxW class ids at the frame's size."""
        if self.in_flight:
            raise RuntimeError("engine(frame) with frames in flight; collect() them first")
        self.submit(frame)
        return self.collect().labels

    # -- several in flight -----------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return self.backend.in_flight

    @property
    def max_in_flight(self) -> int:
        """How many frames `submit` takes before a `collect` (OpenVINO requests, TensorRT buffers)."""
        return self.backend.max_in_flight

    def submit(self, frame: np.ndarray, tag: Any = None) -> None:
        """Start segmenting `frame`; `collect()` returns results in submission order."""
        from segdata.frames import to_model_input

        if not (isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3
                and frame.shape[2] == 3):
            raise ValueError(f"expected a uint8 HxWx3 BGR frame, got {getattr(frame, 'dtype', type(frame))} "
                             f"{getattr(frame, 'shape', '')}")
        if self.in_flight >= self.max_in_flight:
            raise RuntimeError(f"submit() with {self.in_flight} frames in flight (the most); collect() first")
        t0 = time.perf_counter()
        h, w = frame.shape[:2]
        model_input = to_model_input(frame, *self.backend.input_hw((h, w)))
        pre_ms = (time.perf_counter() - t0) * 1e3
        self.backend.submit(model_input, tag)
        self._sizes.append((h, w, pre_ms))

    def collect(self) -> Segmented:
        """The oldest submitted frame's result (waits for it)."""
        from segdata.frames import labels_to_size

        result = self.backend.collect_result()
        h, w, pre_ms = self._sizes.popleft()
        t0 = time.perf_counter()
        labels = labels_to_size(result.labels, h, w)
        confidence = None if result.confidence is None else labels_to_size(result.confidence, h, w)
        timings = {"pre": pre_ms, "inference": result.infer_ms, **result.stage_ms,
                   "post": (time.perf_counter() - t0) * 1e3}
        return Segmented(result.tag, labels, timings, confidence)

    # -- lifetime --------------------------------------------------------------------------
    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        info = self.describe()
        return (f"<Engine {self.manifest.model} on {info['backend']} ({info['device']}), "
                f"precision {info['precision_ran']}>")


# -- where an artefact comes from --------------------------------------------------------
def find_artefact(given: str | Path, backend: str = "auto") -> Path:
    """A manifest, its model file, or a folder holding exactly one manifest (of `backend`)."""
    from artefact.manifest import BACKENDS, ArtefactError

    path = Path(given)
    if path.is_dir():
        wanted = (backend,) if backend not in (None, "", "auto") else BACKENDS
        manifests = [p for p in sorted(path.glob("*.json"))
                     if not p.name.startswith(".") and _manifest_backend(p) in wanted]
        if len(manifests) != 1:
            names = ", ".join(m.name for m in manifests) or "none"
            raise ArtefactError(f"--engine {path} is a folder with {len(manifests)} manifests ({names}); "
                                "pass the .json you mean")
        return manifests[0]
    return path


def _manifest_backend(path: Path) -> str | None:
    """The backend a manifest names; None for any other JSON (e.g. a build step's report)."""
    from artefact.files import parse_json_text
    from artefact.manifest import MANIFEST_FORMAT

    try:
        data = parse_json_text(path.read_text())
    except (OSError, ValueError):
        return None
    return data.get("backend") if isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT else None


def default_artefact(model: str = "demo", precision: str = "auto", backend: str = "auto",
                     input_size: tuple[int, int] | None = None, verbose: int = 0,
                     confidence: bool = False) -> Path:
    """The cached default build (built once through runtime.default_build, the runtime's one door
    to the builder); needs the export extra."""
    from runtime.default_build import build_default, require_builder

    require_builder()  # before the announcement: an edge box without the export extra gets one line
    log.warning("no --engine: building (or finding in the cache) %s, precision %s, backend %s", model,
                precision, backend)
    return build_default(model, precision, backend, input_size, verbose, confidence=confidence)


def is_remote(engine: Any) -> bool:
    """`triton://HOST:PORT/MODEL`: a served model rather than an artefact file."""
    from runtime.backends import is_remote as remote

    return isinstance(engine, str) and remote(engine)


def open_backend(manifest: Manifest, backend: str = "auto", **opts: Any) -> tuple[Backend, float]:
    """The artefact on its backend, and how long opening it took (seconds). Opened with signals
    held (its library's import and set-up are native code that calls back into Python, where a
    raised signal aborts the process: clikit.signals_deferred); a signal that came meanwhile
    closes it again, then stops the command."""
    from clikit import signals_deferred
    from runtime.backends import load_backend

    t0 = time.perf_counter()
    opened: Backend | None = None
    try:
        with signals_deferred():
            opened = load_backend(manifest, backend, **opts)
    except KeyboardInterrupt:
        if opened is not None:
            opened.close()
        raise
    return opened, time.perf_counter() - t0


def connect(url: str, **opts: Any) -> tuple[Backend, float]:
    """A Triton client backend (its manifest comes from the server), and how long connecting took."""
    from runtime.backends import connect_backend

    t0 = time.perf_counter()  # not with signals held: a hung server must stay interruptible
    opened = connect_backend(url, **opts)
    return opened, time.perf_counter() - t0


def load(artefact: Any, backend: str = "auto", **opts: Any) -> Engine:
    """Open an artefact for segmenting frames.

    `artefact`: a manifest path (.json), its model file, a folder holding one manifest, a loaded
    `Manifest`, an `Artefact` (what `pspnet_rt.build` returns), or `triton://HOST:PORT/MODEL`
    (a Triton server's gRPC port). `backend` forces one
    (default: the artefact's own). `opts` are the backends' options (`device`, `hint`,
    `requests`, `cuda_graph`, `timeout`, ...); a backend ignores those it does not take.
    Refuses (artefact.manifest.ArtefactError) an artefact whose files or versions do not match.
    """
    from artefact.manifest import Manifest, load_manifest

    if is_remote(artefact):
        return Engine(*connect(artefact, **opts))
    if isinstance(getattr(artefact, "manifest", None), Manifest):  # artefact.built.Artefact
        artefact = artefact.manifest
    if not isinstance(artefact, Manifest):
        artefact = load_manifest(find_artefact(artefact, backend))
    return Engine(*open_backend(artefact, backend, **opts))
