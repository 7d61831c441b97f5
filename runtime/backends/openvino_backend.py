"""OpenVINO backend: the CPU default. Several infer requests in flight, precision pinned from
the manifest (OpenVINO would otherwise run an FP32 model in BF16 on AMX/AVX512-BF16 CPUs),
compiled blobs cached beside the artefact so the second start is fast."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from typing import Any

import numpy as np

from artefact.manifest import ArtefactError, Manifest
from runtime.backends.base import Backend, check_backend, labels_2d
from runtime.backends.ov_cache import BlobCache
from runtime.errors import BackendUnavailable

log = logging.getLogger(__name__)

CACHE_DIRNAME = "ov_cache"


def choose_precision(manifest_precision: str, capabilities: list[str], override: str | None = None) -> str:
    """INFERENCE_PRECISION_HINT for a manifest precision on a device with these capabilities.

    fp32 -> f32 always (the accuracy the manifest reports was measured in FP32); fp16 -> f16
    where the CPU has FP16 units, else bf16 where it has BF16, else f32; int8 -> the device's
    fastest float for the layers left unquantized (its default behaviour, stated in the report).
    """
    if override:
        return override
    caps = {c.upper() for c in capabilities}
    if manifest_precision == "fp32":
        return "f32"
    if "FP16" in caps:
        return "f16"
    if "BF16" in caps:
        return "bf16"
    return "f32"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[-300:]  # OpenVINO's text spans lines; keep one


class _Completions:
    """Where OpenVINO's callback thread drops finished results. Deliberately holds no reference to
    the backend or the compiled model: OpenVINO may release the callback in its own worker thread,
    and if that released the last reference to the compiled model its executor would try to join
    the very thread it runs on (std::terminate)."""

    def __init__(self, output_index: int, manifest: Manifest) -> None:
        self.output_index = output_index
        self.manifest = manifest
        self.cond = threading.Condition()
        self.results: dict[int, tuple[np.ndarray | BaseException, float]] = {}

    def __call__(self, request: Any, seq: int) -> None:
        try:
            result: np.ndarray | BaseException = labels_2d(
                request.get_output_tensor(self.output_index).data.copy(), self.manifest)
        except BaseException as exc:  # surfaced by collect(), never lost in OpenVINO's thread
            result = exc
        with self.cond:
            self.results[seq] = (result, time.perf_counter())
            self.cond.notify_all()


class OpenVINOBackend(Backend):
    name = "openvino"
    OPTIONS = ("device", "hint", "requests", "precision_hint", "cache")

    def __init__(self, manifest: Manifest, *, device: str = "CPU", hint: str = "latency",
                 requests: int | None = None, precision_hint: str | None = None, cache: bool = True) -> None:
        super().__init__(manifest)
        check_backend(manifest, self.name)
        manifest.verify_file()
        try:
            import openvino as ov
        except ImportError as exc:
            raise BackendUnavailable(
                f"the openvino backend needs OpenVINO (`pip install openvino`): {exc}") from None
        core = ov.Core()
        self.device = device.upper()
        config: dict[str, Any] = {"PERFORMANCE_HINT": hint.upper()}
        try:
            caps = list(core.get_property(self.device, "OPTIMIZATION_CAPABILITIES"))
        except RuntimeError:
            raise BackendUnavailable(f"OpenVINO has no device {self.device!r} here (available: "
                                     f"{', '.join(core.available_devices)}); pass --device CPU") from None
        wanted = choose_precision(manifest.precision, caps, precision_hint)
        config["INFERENCE_PRECISION_HINT"] = wanted
        self.cache_dir = self._cache_dir() if cache else None
        t0 = time.perf_counter()
        self._compiled = self._compile(core, config)
        self.compile_s = time.perf_counter() - t0
        ran = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        ran = ran.get_type_name() if hasattr(ran, "get_type_name") else str(ran)
        if ran != wanted:
            log.warning("OpenVINO asked for %s but runs %s on %s", wanted, ran, self.device)
        # an INT8 (Q/DQ) model runs its quantized layers in int8 and the rest at the hint's precision
        self.precision_ran = f"int8/{ran}" if manifest.precision == "int8" else ran
        self.hint = hint.lower()
        try:
            self._in_port = self._compiled.input(manifest.input_name)
            self._out_port = self._compiled.output(manifest.output_name)
        except RuntimeError:
            names = [p.get_any_name() for p in self._compiled.inputs + self._compiled.outputs]
            raise ArtefactError(f"{manifest.model_path} has tensors {names}, not the manifest's "
                                f"{manifest.input_name!r} -> {manifest.output_name!r}; rebuild with "
                                f"{manifest.rebuild_hint()}") from None
        # Twice OpenVINO's optimum: results are collected in order, so a stream that finishes
        # early still has a queued request to start instead of idling (measured on the 2-core box:
        # THROUGHPUT 2 -> 4 requests, pipeline/bare FPS 0.88 -> 0.94 with video + masks).
        optimal = int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.max_in_flight = max(1, requests or max(2, 2 * optimal))
        self._sync = self._compiled.create_infer_request()
        out_index = next(i for i, o in enumerate(self._compiled.outputs)
                         if manifest.output_name in o.get_names())
        self._done_box = _Completions(out_index, manifest)
        self._queue = ov.AsyncInferQueue(self._compiled, self.max_in_flight)
        self._queue.set_callback(self._done_box)
        self._pending: collections.deque[tuple[int, Any, float, np.ndarray]] = collections.deque()
        self._seq = 0
        log.info("openvino: %s on %s, %s hint, precision %s (manifest %s), %d requests, compiled in %.2f s%s",
                 manifest.model_path.name, self.device, hint, self.precision_ran, manifest.precision,
                 self.max_in_flight, self.compile_s, f", cache {self.cache_dir}" if self.cache_dir else "")

    def _compile(self, core: Any, config: dict[str, Any]) -> Any:
        """compile_model from a path (a cache hit skips reading the model entirely), through a
        blob cache whose every file is checked first (ov_cache.BlobCache); a blob that passes the
        check but will not import costs one compile without it, never the run."""
        model = str(self.manifest.model_path)
        if self.cache_dir:
            blobs = BlobCache(self.cache_dir)
            blobs.prepare()
            try:
                compiled = core.compile_model(model, self.device, {**config, "CACHE_DIR": self.cache_dir})
            except RuntimeError as exc:
                log.warning("openvino: compiling through the cache %s failed (%s); clearing it and compiling "
                            "without it", self.cache_dir, _one_line(exc))
                blobs.clear()
            else:
                blobs.record()
                return compiled
        try:
            return core.compile_model(model, self.device, config)
        except RuntimeError as exc:
            raise ArtefactError(f"OpenVINO cannot compile {self.manifest.model_path}: {_one_line(exc)}; "
                                f"rebuild with {self.manifest.rebuild_hint()}") from None

    def _cache_dir(self) -> str | None:
        folder = self.manifest.model_path.parent
        path = folder / CACHE_DIRNAME
        with contextlib.suppress(OSError):
            path.mkdir(exist_ok=True)
        if path.is_dir() and os.access(path, os.W_OK):
            return str(path)
        log.info("openvino: %s is not writable; compiling without a blob cache", folder)
        return None

    def infer(self, frame: np.ndarray) -> np.ndarray:
        self._check_frame(frame)
        self._sync.infer({self._in_port: frame[None]}, share_inputs=True)
        return labels_2d(self._sync.get_tensor(self._out_port).data.copy(), self.manifest)

    def submit(self, frame: np.ndarray, tag: Any) -> None:
        self._check_frame(frame)
        if len(self._pending) >= self.max_in_flight:
            raise RuntimeError("submit() with every infer request busy; collect() first")
        seq = self._seq
        self._seq += 1
        batch = np.ascontiguousarray(frame[None])
        # share_inputs: no copy into the request; `batch` stays referenced in _pending until done
        self._pending.append((seq, tag, time.perf_counter(), batch))
        self._queue.start_async({self._in_port: batch}, seq, share_inputs=True)

    def collect(self) -> tuple[Any, np.ndarray]:
        seq, tag, t0, _batch = self._pending[0]
        box = self._done_box
        with box.cond:
            box.cond.wait_for(lambda: seq in box.results)
            result, t_done = box.results.pop(seq)
        self._pending.popleft()
        if isinstance(result, BaseException):
            raise result
        self.last_infer_ms = (t_done - t0) * 1e3
        return tag, result

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        if self._closed:
            return
        queue = getattr(self, "_queue", None)
        if queue is not None:
            queue.wait_all()
        # release in this thread, newest first: requests, then the compiled model
        self._queue = self._sync = None
        self._in_port = self._out_port = None
        self._compiled = None
        super().close()

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(hint=self.hint, cache_dir=self.cache_dir, compile_s=round(self.compile_s, 3))
        return info
