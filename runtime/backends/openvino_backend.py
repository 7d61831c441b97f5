"""OpenVINO backend: the CPU default. Several infer requests in flight, precision pinned by
devices.openvino_precision_hint (OpenVINO would otherwise run an FP32 model in BF16 on
AMX/AVX512-BF16 CPUs), compiled blobs cached beside the artefact so the second start is fast.

`compile_model` is the one place an OpenVINO model is compiled; `OpenVINORunner` runs a bare
model file through it, `OpenVINOBackend` an artefact.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from artefact.files import sha256_file
from artefact.manifest import ArtefactError, Manifest
from devices import install_hint, openvino_precision_hint
from runtime.backends.base import Backend, Collected, check_backend, labels_2d, map_2d
from runtime.backends.ov_cache import BlobCache, cache_key
from runtime.backends.runner import Runner
from runtime.errors import BackendUnavailable

if TYPE_CHECKING:
    from runtime.backends.contract import ModelFacts

log = logging.getLogger(__name__)

CACHE_DIRNAME = "ov_cache"


def import_openvino() -> Any:
    try:
        import openvino as ov
    except ImportError as exc:
        raise BackendUnavailable(f"the openvino backend needs {install_hint('openvino')} "
                                 f"({exc})") from None
    return ov


def compile_model(path: str | Path, precision: str, *, device: str = "CPU", hint: str = "latency",
                  precision_hint: str | None = None, cache_dir: str | None = None,
                  threads: int | None = None, files: dict[str, bytes] | None = None,
                  input_name: str | None = None) -> tuple[Any, str, ModelFacts | None]:
    """(compiled model, the precision it really runs, the model's facts) for a model file of
    `precision`: the loader every OpenVINO user calls. The label is OpenVINO's own
    INFERENCE_PRECISION_HINT after compiling, `int8/<float>` for Q/DQ models (their unquantized
    layers run in that float). `files`: the IR's .xml and .bin bytes, already checked against the
    artefact's hashes (Manifest.read_verified): the model is read from them, never from `path`
    again. The facts (for runtime.backends.contract) come from the very model compiled, where
    `input_name` is given."""
    ov = import_openvino()
    core = ov.Core()
    device = device.upper()
    try:
        caps = list(core.get_property(device, "OPTIMIZATION_CAPABILITIES"))
    except RuntimeError:
        raise BackendUnavailable(f"OpenVINO has no device {device!r} here (available: "
                                 f"{', '.join(core.available_devices)}); pass --device CPU") from None
    wanted = openvino_precision_hint(precision, caps, precision_hint)
    config: dict[str, Any] = {"PERFORMANCE_HINT": hint.upper(), "INFERENCE_PRECISION_HINT": wanted}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    path = Path(path)
    model, digests = _read(core, path, files)
    facts = model_facts_of(model, input_name) if input_name else None
    compiled = _compile_through_cache(core, model, path, device, config, cache_dir, digests, ov.__version__)
    del model
    ran = compiled.get_property("INFERENCE_PRECISION_HINT")
    ran = ran.get_type_name() if hasattr(ran, "get_type_name") else str(ran)
    if ran != wanted:
        log.warning("OpenVINO asked for %s but runs %s on %s", wanted, ran, device)
    # an INT8 (Q/DQ) model runs its quantized layers in int8 and the rest at the hint's precision
    return compiled, (f"int8/{ran}" if precision == "int8" else ran), facts


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[-300:]  # OpenVINO's text spans lines; keep one


def _read(core: Any, path: Path, files: dict[str, bytes] | None) -> tuple[Any, list[str]]:
    """(ov.Model, sha256 of the bytes it was read from): from the verified bytes where given (an IR
    .xml with its .bin), else from the file (a bare ONNX or IR a build checks)."""
    import hashlib

    try:
        if files and path.name in files:
            xml = files[path.name]
            weights = files.get(path.with_suffix(".bin").name, b"")
            digests = [hashlib.sha256(xml).hexdigest(), hashlib.sha256(weights).hexdigest()]
            return core.read_model(xml, weights), digests
        digests = [sha256_file(p) for p in (path, path.with_suffix(".bin")) if p.is_file()]
        return core.read_model(str(path)), digests
    except RuntimeError as exc:
        raise ArtefactError(f"OpenVINO cannot read {path}: {_one_line(exc)}") from None


def _compile_through_cache(core: Any, model: Any, path: Path, device: str, config: dict[str, Any],
                           cache_dir: str | Path | None, digests: list[str], version: str) -> Any:
    """compile_model, through our blob cache (ov_cache.BlobCache: only blobs whose bytes prove we
    wrote them are imported, from those very bytes); a blob that will not import costs one compile,
    never the run."""
    blobs = BlobCache(cache_dir) if cache_dir else None
    key = cache_key(digests, device, config, version)
    if blobs is not None:
        blobs.forget_legacy()
        found = blobs.load(key)
        if found is not None:
            name, blob = found
            try:
                return core.import_model(blob, device, config)
            except RuntimeError as exc:
                log.warning("openvino: the cached compiled model %s does not import (%s); removing it and "
                            "compiling afresh", Path(cache_dir) / name, _one_line(exc))
                blobs.drop(name)
            finally:
                del blob
    try:
        compiled = core.compile_model(model, device, config)
    except RuntimeError as exc:
        raise ArtefactError(f"OpenVINO cannot compile {path}: {_one_line(exc)}") from None
    if blobs is not None:
        try:
            exported = compiled.export_model()  # bytes, or a BytesIO in newer OpenVINO
            exported = exported.getvalue() if hasattr(exported, "getvalue") else bytes(exported)
        except RuntimeError as exc:
            log.info("openvino: cannot export the compiled model for the cache: %s", _one_line(exc))
        else:
            blobs.store(key, exported)
            del exported
    return compiled


def model_facts(path: str | Path, input_name: str) -> ModelFacts:
    """What an OpenVINO model file says about itself, read without compiling it."""
    try:
        model = import_openvino().Core().read_model(str(path))
    except RuntimeError as exc:
        raise ArtefactError(f"OpenVINO cannot read {path}: {_one_line(exc)}") from None
    return model_facts_of(model, input_name)


def model_facts_of(model: Any, input_name: str) -> ModelFacts:
    """The input's and outputs' shapes of an ov.Model, and the class count from the graph itself
    (the TopK that the fused graph's ArgMax became, over the logits' class axis)."""
    from runtime.backends.contract import ModelFacts

    def dims(shape: Any) -> list[int | None]:
        return [d.get_length() if d.is_static else None for d in shape] if shape.rank.is_static else []

    inputs = {name: dims(p.get_partial_shape()) for p in model.inputs for name in p.get_names()}
    outputs = {name: dims(p.get_partial_shape()) for p in model.outputs for name in p.get_names()}
    counts = set()
    for op in model.get_ops():
        if op.get_type_name() in ("TopK", "ArgMax"):
            shape = op.input(0).get_partial_shape()
            if not shape.rank.is_static:
                continue
            axis = int(op.get_attributes().get("axis", 1)) % shape.rank.get_length()
            if shape[axis].is_static:
                counts.add(shape[axis].get_length())
    return ModelFacts(inputs.get(input_name, []), outputs, counts.pop() if len(counts) == 1 else None)


class OpenVINORunner(Runner):
    """A bare model file (ONNX or IR) on OpenVINO, one synchronous infer request."""

    backend = "openvino"
    OPTIONS = ("device", "hint", "precision_hint", "cache_dir", "threads")

    def __init__(self, path: str | Path, precision: str = "fp32", *, device: str = "CPU",
                 hint: str = "latency", precision_hint: str | None = None, cache_dir: str | None = None,
                 threads: int | None = None, files: dict[str, bytes] | None = None, **names: str) -> None:
        super().__init__(path, precision, files=files, **names)
        self.device = device.upper()
        self.hint = hint.lower()
        self.precision_hint = precision_hint
        self.cache_dir = cache_dir
        self.threads = threads
        self.compiled: Any = None
        self.compile_s = 0.0
        self._facts: ModelFacts | None = None

    def _open(self) -> None:
        t0 = time.perf_counter()
        files, self._files = self._files, {}
        self.compiled, self.precision_ran, self._facts = compile_model(
            self.path, self.precision, device=self.device, hint=self.hint, precision_hint=self.precision_hint,
            cache_dir=self.cache_dir, threads=self.threads, files=files, input_name=self.input_name)
        del files
        self.compile_s = time.perf_counter() - t0
        self._ports = {name: port for port in self.compiled.outputs for name in port.get_names()}
        try:
            self._check_names([n for p in self.compiled.inputs for n in p.get_names()], list(self._ports))
        except ArtefactError:
            self.compiled = None
            raise
        self.input_port = self.compiled.input(self.input_name)
        self._request = self.compiled.create_infer_request()
        self._release_weight_file_pages()

    def _release_weight_file_pages(self) -> None:
        """OpenVINO keeps the weights file (or cache blob) it compiled from mapped, but computes
        from its own repacked copy: drop those pages from our resident set (runtime/memory.py)."""
        from runtime.memory import release_read_only_mappings

        path = Path(self.path)
        files = [path, path.with_suffix(".bin")]
        if self.cache_dir:
            with contextlib.suppress(OSError):
                files += [p for p in Path(self.cache_dir).iterdir() if p.is_file()]
        released = release_read_only_mappings(files)
        if released:
            log.info("openvino: released %.0f MB of mapped weight pages it no longer reads", released / 2**20)

    def _close(self) -> None:
        # release in this thread, newest first: the request, then the compiled model
        self._request = self.input_port = None
        self._ports = {}
        self.compiled = None

    @property
    def output_names(self) -> list[str]:
        return [p.get_any_name() for p in self.compiled.outputs] if self.compiled is not None else []

    def facts(self) -> ModelFacts:
        """The facts of the model that was compiled (read from the same bytes), not of the file now."""
        return self._facts if self._facts is not None else model_facts(self.path, self.input_name)

    def output_index(self, name: str) -> int:
        return next(i for i, o in enumerate(self.compiled.outputs) if name in o.get_names())

    def _run(self, batch: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
        self._request.infer({self.input_port: batch}, share_inputs=True)
        return [self._request.get_tensor(self._ports[name]).data.copy() for name in outputs]


class _Completions:
    """Where OpenVINO's callback thread drops finished results. Deliberately holds no reference to
    the backend or the compiled model: OpenVINO may release the callback in its own worker thread,
    and if that released the last reference to the compiled model its executor would try to join
    the very thread it runs on (std::terminate)."""

    def __init__(self, output_index: int, manifest: Manifest, confidence_index: int | None = None) -> None:
        self.output_index = output_index
        self.confidence_index = confidence_index  # the confidence output's index, when asked for
        self.manifest = manifest
        self.cond = threading.Condition()
        self.results: dict[int, tuple[tuple[np.ndarray, np.ndarray | None] | BaseException, float]] = {}

    def __call__(self, request: Any, seq: int) -> None:
        try:
            labels = labels_2d(request.get_output_tensor(self.output_index).data.copy(), self.manifest)
            confidence = None
            if self.confidence_index is not None:
                confidence = map_2d(request.get_output_tensor(self.confidence_index).data.copy(),
                                       self.manifest, self.manifest.confidence_name)
            result: tuple[np.ndarray, np.ndarray | None] | BaseException = (labels, confidence)
        except BaseException as exc:  # surfaced by collect(), never lost in OpenVINO's thread
            result = exc
        with self.cond:
            self.results[seq] = (result, time.perf_counter())
            self.cond.notify_all()


class OpenVINOBackend(Backend):
    name = "openvino"
    OPTIONS = ("device", "hint", "requests", "precision_hint", "cache", "confidence")

    def __init__(self, manifest: Manifest, *, device: str = "CPU", hint: str = "latency",
                 requests: int | None = None, precision_hint: str | None = None, cache: bool = True,
                 confidence: bool = False) -> None:
        super().__init__(manifest)
        check_backend(manifest, self.name)
        self.want_confidence(confidence)
        files = manifest.read_verified()  # the .xml and .bin bytes the model is read from
        self.cache_dir = self._cache_dir() if cache else None
        runner = OpenVINORunner(manifest.model_path, manifest.precision, device=device, hint=hint,
                                precision_hint=precision_hint, cache_dir=self.cache_dir, files=files,
                                **self.tensor_names())
        del files
        self._runner = self._activate(runner)
        self.device = runner.device
        self.precision_ran = runner.precision_ran
        self.compile_s = runner.compile_s
        self.hint = runner.hint
        compiled = runner.compiled
        # Twice OpenVINO's optimum: results are collected in order, so a stream that finishes
        # early still has a queued request to start instead of idling (measured on the 2-core box:
        # THROUGHPUT 2 -> 4 requests, pipeline/bare FPS 0.88 -> 0.94 with video + masks).
        optimal = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.max_in_flight = max(1, requests or max(2, 2 * optimal))
        confidence_index = runner.output_index(self.confidence_name) if self.confidence_name else None
        self._done_box = _Completions(runner.output_index(manifest.output_name), manifest, confidence_index)
        self._queue = import_openvino().AsyncInferQueue(compiled, self.max_in_flight)
        self._queue.set_callback(self._done_box)
        self._pending: collections.deque[tuple[int, Any, float, np.ndarray]] = collections.deque()
        self._seq = 0
        log.info("openvino: %s on %s, %s hint, precision %s (manifest %s), %d requests, compiled in %.2f s%s",
                 manifest.model_path.name, self.device, hint, self.precision_ran, manifest.precision,
                 self.max_in_flight, self.compile_s, f", cache {self.cache_dir}" if self.cache_dir else "")

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
        names = [self.manifest.output_name] + ([self.confidence_name] if self.confidence_name else [])
        out = self._runner.infer(frame, names)
        if self.confidence_name:
            self.last_confidence = map_2d(out[self.confidence_name], self.manifest, self.confidence_name)
        return labels_2d(out[self.manifest.output_name], self.manifest)

    def submit(self, frame: np.ndarray, tag: Any) -> None:
        self._check_frame(frame)
        if len(self._pending) >= self.max_in_flight:
            raise RuntimeError("submit() with every infer request busy; collect() first")
        seq = self._seq
        self._seq += 1
        batch = np.ascontiguousarray(frame[None])
        # share_inputs: no copy into the request; `batch` stays referenced in _pending until done
        self._pending.append((seq, tag, time.perf_counter(), batch))
        self._queue.start_async({self._runner.input_port: batch}, seq, share_inputs=True)

    def collect_result(self) -> Collected:
        seq, tag, t0, _batch = self._pending[0]
        box = self._done_box
        with box.cond:
            box.cond.wait_for(lambda: seq in box.results)
            result, t_done = box.results.pop(seq)
        self._pending.popleft()
        if isinstance(result, BaseException):
            raise result
        labels, confidence = result
        return Collected(tag, labels, (t_done - t0) * 1e3, confidence=confidence)

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
        self._queue = None
        self._runner.deactivate()
        super().close()

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(hint=self.hint, cache_dir=self.cache_dir, compile_s=round(self.compile_s, 3))
        return info
