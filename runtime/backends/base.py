"""The one small interface every backend implements, and the manifest checks they share."""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from artefact.manifest import LOGITS_NAME, ArtefactError, Manifest

log = logging.getLogger(__name__)


@dataclass
class Collected:
    """One result of the async pair, with its timings as values (what `collect_result` returns).

    `infer_ms` is submit-to-done time; `stage_ms` more stages a wrapper ran for it (video-aware
    inference: "scheduler"); `fields` per-frame facts for the stats (key frame or not, why).
    """

    tag: Any
    labels: np.ndarray
    infer_ms: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)
    confidence: np.ndarray | None = None  # HxW uint8, when the backend was opened with confidence=True


class Backend:
    """Runs a fused artefact: uint8 BGR HxWx3 in, uint8 HxW class ids out.

    `infer` is the blocking call. The pipeline uses the async pair instead: `submit` up to
    `max_in_flight` frames, then `collect_result` returns results in submission order, each a
    `Collected` that carries its own timings. Subclasses with real asynchrony (OpenVINO infer
    requests, TensorRT streams) override `submit` and `collect_result`; the default runs `infer`
    at submit time, which already overlaps with the pipeline's other threads because the
    libraries release the GIL while they compute. `collect()` is the older two-value form.

    Lifetime is explicit: use `with load_backend(...) as backend:` or call `close()`.

    Confidence: a backend opened with `confidence=True` (an artefact built with --confidence)
    also fetches the graph's uint8 confidence output: each `Collected` carries its HxW map, and
    `last_confidence` is the one of the job `collect` (or `infer`) returned last; None when not
    asked for.
    """

    name = "backend"
    max_in_flight = 1
    OPTIONS: tuple[str, ...] = ()

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.device = "CPU"
        self.precision_ran = manifest.precision  # what really ran; backends refine it
        # the timings of the result `collect()` returned last, for callers of that two-value
        # form; the pipeline reads them from `collect_result()`'s value instead
        self.last_infer_ms = 0.0
        self.last_stage_ms: dict[str, float] = {}
        self.last_fields: dict[str, Any] = {}
        self.confidence_name: str | None = None  # set by want_confidence(): fetch that output too
        self.last_confidence: np.ndarray | None = None
        self._done: collections.deque[tuple[Any, np.ndarray, float, np.ndarray | None]] = collections.deque()
        self._closed = False

    # -- opening ---------------------------------------------------------------------------
    def tensor_names(self) -> dict[str, str]:
        """The manifest's tensor names, in the keywords a Runner takes."""
        m = self.manifest
        return {"input_name": m.input_name, "labels_name": m.output_name,
                "logits_name": m.logits_name or LOGITS_NAME}

    def want_confidence(self, wanted: bool) -> None:
        """Fetch the artefact's confidence output too; refuses an artefact built without one."""
        if wanted:
            self.confidence_name = require_confidence(self.manifest)

    def _activate(self, runner: Any) -> Any:
        """Open the artefact's model through its backend's runner; a refusal names the rebuild."""
        try:
            runner.activate()
        except ArtefactError as exc:
            raise ArtefactError(f"{exc}; rebuild with {self.manifest.rebuild_hint()}") from None
        from runtime.backends.contract import check_contract

        try:
            check_contract(self.manifest, runner.facts())  # the manifest describes this model file
        except BaseException:
            runner.deactivate()
            raise
        return runner

    # -- shape -----------------------------------------------------------------------------
    def input_hw(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        """Model input size for a frame: the manifest's, or the frame's own when dynamic, where a
        frame larger than MAX_SIDE a side is refused (FrameTooLarge): the network's activations
        grow with the frame, and one huge image would otherwise try to allocate tens of GB."""
        h, w = self.manifest.input_size
        if self.manifest.dynamic_shape and (h <= 0 or w <= 0):
            check_frame_size(frame_hw, self.manifest)
            return frame_hw
        return h, w

    def _check_frame(self, frame: np.ndarray) -> None:
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected a uint8 HxWx3 BGR frame, got {frame.dtype} {frame.shape}")

    # -- inference -------------------------------------------------------------------------
    def infer(self, frame: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def submit(self, frame: np.ndarray, tag: Any) -> None:
        t0 = time.perf_counter()
        labels = self.infer(frame)
        self._done.append((tag, labels, (time.perf_counter() - t0) * 1e3, self.last_confidence))

    def collect_result(self) -> Collected:
        """The oldest submitted frame's result (waiting for it), with its timings."""
        tag, labels, ms, confidence = self._done.popleft()
        return Collected(tag, labels, ms, confidence=confidence)

    def collect(self) -> tuple[Any, np.ndarray]:
        """(tag, labels) of the oldest submitted frame; its timings (and confidence) stay in `last_*`."""
        result = self.collect_result()
        self.last_infer_ms, self.last_stage_ms, self.last_fields = (result.infer_ms, result.stage_ms,
                                                                    result.fields)
        self.last_confidence = result.confidence
        return result.tag, result.labels

    @property
    def in_flight(self) -> int:
        return len(self._done)

    def collect_ready(self) -> bool:
        """Whether `collect` can return without later submissions (it may still wait for the
        engine). Always for a plain backend; video-aware inference may need the next key frame."""
        return True

    def stream_ended(self, index: int) -> None:
        """Stream `index` of a shared backend sends no more frames; nothing to do for a plain one
        (video-aware inference lets its last frames leave without a next key frame)."""

    # -- lifetime --------------------------------------------------------------------------
    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def summary_lines(self) -> list[tuple[str, str]]:
        """Extra (label, text) rows for the exit summary; none for a plain backend."""
        return []

    def describe(self) -> dict[str, Any]:
        """What ran, for the start line, the summary and the stats file."""
        return {"backend": self.name, "device": self.device, "precision": self.manifest.precision,
                "precision_ran": self.precision_ran, "artefact": str(self.manifest.path or ""),
                "input_size": list(self.manifest.input_size), "in_flight": self.max_in_flight}


def check_frame_size(frame_hw: tuple[int, int], manifest: Manifest) -> None:
    """FrameTooLarge unless a dynamic-shape artefact may run a frame of this size."""
    from artefact.fields import MAX_SIDE
    from runtime.errors import FrameTooLarge

    if max(frame_hw) > MAX_SIDE:
        name = manifest.path.name if manifest.path else manifest.name
        raise FrameTooLarge(f"a {frame_hw[0]}x{frame_hw[1]} frame is larger than the dynamic-shape artefact "
                            f"{name} takes (at most {MAX_SIDE} pixels a side, which already needs GBs of "
                            "memory); scale the source down, or use a fixed-size artefact (built without "
                            "--dynamic), which resizes every frame to its input size")


def check_backend(manifest: Manifest, backend: str) -> None:
    """Refuse an artefact built for another backend, with the command that builds the right one."""
    if manifest.backend != backend:
        raise ArtefactError(
            f"{manifest.path} was built for {manifest.backend}, not {backend}; run it with "
            f"--backend {manifest.backend} (or auto), or build a {backend} one with `python -m build_engine "
            f"--model {manifest.model} --precision {manifest.precision} --backend {backend}`")


def require_confidence(manifest: Manifest) -> str:
    """The artefact's confidence output name; ArtefactError (exit 2) naming the rebuild if it has none."""
    if manifest.confidence_name:
        return manifest.confidence_name
    command = manifest.build.get("command")
    rebuild = (f"`{command} --confidence`" if command and "--confidence" not in command else
               f"`python -m build_engine --model {manifest.model} --precision {manifest.precision} "
               f"--backend {manifest.backend} --confidence`")
    raise ArtefactError(f"{manifest.path or manifest.name} has no confidence output (it was built without "
                        f"--confidence); rebuild it with {rebuild}")


def map_2d(out: np.ndarray, manifest: Manifest, name: str | None = None) -> np.ndarray:
    """[1,H,W] (or [H,W]) uint8 graph output (the labels, or the `confidence` map) -> HxW uint8,
    refusing any other shape loudly."""
    if out.ndim == 3 and out.shape[0] == 1:
        out = out[0]
    if out.ndim != 2:
        shown = name or manifest.output_name
        raise ArtefactError(f"{manifest.path}: output {shown!r} has shape {out.shape}; "
                            "the fused contract is uint8 [1,H,W] maps. Rebuild with "
                            f"{manifest.rebuild_hint()}")
    if out.dtype != np.uint8:
        out = out.astype(np.uint8)
    return out


def labels_2d(out: np.ndarray, manifest: Manifest) -> np.ndarray:
    """[1,H,W] (or [H,W]) class-id output -> HxW uint8, refusing anything else loudly, and ids the
    manifest has no class for."""
    out = map_2d(out, manifest)
    if len(manifest.classes) < 256 and out.size and int(out.max()) >= len(manifest.classes):
        # a class id the manifest has no name or colour for: the manifest does not describe the model
        raise ArtefactError(f"{manifest.path}: the model output class id {int(out.max())} but classes lists "
                            f"{len(manifest.classes)}; rebuild with {manifest.rebuild_hint()}")
    return out
