"""TensorRT backend (TensorRT 10 and 11): deserialized engine, tensors by name, pinned host
buffers, two buffer sets rotating over a copy stream and a compute stream so frame n+1's
host-to-device copy overlaps frame n's compute, `execute_async_v3`, optional CUDA graphs.

Every CUDA call goes through devices.cuda; TensorRT itself is imported lazily. Resource
lifetimes are explicit: everything allocated is pushed on an ExitStack and released in
reverse order by close() (also on a failed start), after the streams are drained.

Not run on the machine it was written on (no GPU there): written to TensorRT's documented
Python API and the project's tensorrt-notes.md; tests marked `gpu` exercise it on a GPU box.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from artefact.manifest import ArtefactError, Manifest
from devices.cuda import CudaApi, CudaError, CudaUnavailable, DeviceBuffer, HostBuffer, get_cuda
from runtime.backends.base import Backend, Collected, check_backend
from runtime.errors import BackendUnavailable

log = logging.getLogger(__name__)

INSTALL_HINT = ("the tensorrt backend needs TensorRT and CUDA Python bindings on an NVIDIA GPU machine: "
                "`pip install 'pspnet-rt[tensorrt]'` (TensorRT wheels come from NVIDIA's package index, "
                "see docs/install.md); or run an ONNX artefact with --backend openvino or onnxruntime")


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailable(f"{INSTALL_HINT} ({exc})") from None
    return trt


# ---------------------------------------------------------------------------------------------
# compatibility: an engine runs only on the TensorRT version and GPU it was built for
# ---------------------------------------------------------------------------------------------
def _version_key(version: str, parts: int = 3) -> tuple[str, ...]:
    return tuple(str(version).strip().split(".")[:parts])


def _cc_tuple(value: Any) -> tuple[int, int] | None:
    """'8.6', 8.6, [8, 6], (8, 6), 'sm_86' -> (8, 6)."""
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    text = str(value).lower().removeprefix("sm_").removeprefix("sm")
    if "." in text:
        major, minor = text.split(".", 1)
        return int(major), int(minor)
    if text.isdigit() and len(text) >= 2:
        return int(text[:-1]), int(text[-1])
    raise ArtefactError(f"unreadable compute capability {value!r} in manifest tools.gpu")


def check_compat(manifest: Manifest, trt_version: str, gpu_name: str, cc: tuple[int, int]) -> None:
    """Refuse an engine built for another TensorRT version or GPU, saying how to rebuild here.

    Honours the builder's portability options when the manifest records them:
    build.version_compatible (same major TensorRT) and build.hardware_compatibility_level
    ('same_compute_capability': any GPU of that SM; 'ampere_plus': SM 8.0 or newer).
    """
    where = manifest.path or manifest.model_file
    rebuild = f"rebuild it on this machine with {manifest.rebuild_hint()}"
    built = str(manifest.tools.get("tensorrt") or "")
    if not built:
        raise ArtefactError(f"{where} records no TensorRT version (tools.tensorrt); {rebuild}")
    if manifest.build.get("version_compatible"):
        same = _version_key(built, 1) == _version_key(trt_version, 1)
    else:
        same = _version_key(built) == _version_key(trt_version)
    if not same:
        raise ArtefactError(f"{where} was built with TensorRT {built} but this machine has TensorRT "
                            f"{trt_version}; engines only run on the TensorRT version that built them: "
                            f"{rebuild}")
    gpu = manifest.tools.get("gpu") or {}
    built_cc = _cc_tuple(gpu.get("compute_capability"))
    built_name = str(gpu.get("name") or "")
    if built_cc is None or not built_name:
        raise ArtefactError(f"{where} records no GPU (tools.gpu.name / compute_capability); {rebuild}")
    level = str(manifest.build.get("hardware_compatibility_level") or "none").lower().replace("-", "_")
    have = f"{gpu_name} (compute capability {cc[0]}.{cc[1]})"
    was = f"{built_name} (compute capability {built_cc[0]}.{built_cc[1]})"
    if level in ("ampere_plus", "ampere+"):
        if cc < (8, 0):
            raise ArtefactError(f"{where} is an Ampere-plus engine; this GPU is {have}: {rebuild}")
        return
    if cc != built_cc:
        raise ArtefactError(f"{where} was built for {was} but this GPU is {have}; {rebuild}")
    if level != "same_compute_capability" and gpu_name.strip() != built_name.strip():
        raise ArtefactError(f"{where} was built on {was} but this GPU is {have}; TensorRT tunes engines to "
                            f"one GPU model: {rebuild}")


# ---------------------------------------------------------------------------------------------
# two buffer sets on a copy stream + a compute stream
# ---------------------------------------------------------------------------------------------
@dataclass
class BufferSet:
    """One frame's worth of pinned host and device buffers, with the events that guard them."""

    index: int
    host_in: HostBuffer
    dev_in: DeviceBuffer
    dev_out: DeviceBuffer
    host_out: HostBuffer
    h2d_done: Any  # recorded on the copy stream after the upload
    done: Any  # recorded on the compute stream after the download
    graph: Any = field(default=None, repr=False)
    # more outputs read per frame (the confidence map when asked for): (device, pinned host) each
    extra_out: list[tuple[DeviceBuffer, HostBuffer]] = field(default_factory=list)


class StreamRing:
    """Frames in flight over rotating buffer sets.

    Per frame on set k: host waits until set k's previous upload finished (its pinned input can be
    overwritten), copies the frame in; the copy stream waits until set k's previous compute and
    download finished, uploads, records h2d_done; the compute stream waits for h2d_done, runs
    `enqueue(set)`, downloads, records done. `collect` waits for done. With two sets the upload of
    frame n+1 runs while frame n computes, and nothing is overwritten while in use.
    """

    def __init__(self, cuda: CudaApi, stack: contextlib.ExitStack, in_shape: tuple[int, ...],
                 in_dtype: Any, out_shape: tuple[int, ...], out_dtype: Any,
                 enqueue: Callable[[BufferSet, Any], None], sets: int = 2,
                 extra_outputs: tuple[tuple[tuple[int, ...], Any], ...] = ()) -> None:
        self.cuda = cuda
        self.enqueue = enqueue
        self.copy_stream = cuda.stream_create()
        stack.callback(cuda.stream_destroy, self.copy_stream)
        self.compute_stream = cuda.stream_create()
        stack.callback(cuda.stream_destroy, self.compute_stream)
        in_bytes = int(np.prod(in_shape)) * np.dtype(in_dtype).itemsize
        out_bytes = int(np.prod(out_shape)) * np.dtype(out_dtype).itemsize
        self.sets: list[BufferSet] = []
        for k in range(sets):
            host_in = cuda.pinned(in_shape, in_dtype)
            stack.callback(cuda.free_pinned, host_in)
            host_out = cuda.pinned(out_shape, out_dtype)
            stack.callback(cuda.free_pinned, host_out)
            dev_in = cuda.malloc(in_bytes)
            stack.callback(cuda.free, dev_in)
            dev_out = cuda.malloc(out_bytes)
            stack.callback(cuda.free, dev_out)
            h2d_done = cuda.event_create()
            stack.callback(cuda.event_destroy, h2d_done)
            done = cuda.event_create()
            stack.callback(cuda.event_destroy, done)
            extra = []
            for shape, dtype in extra_outputs:
                extra_host = cuda.pinned(shape, dtype)
                stack.callback(cuda.free_pinned, extra_host)
                extra_dev = cuda.malloc(int(np.prod(shape)) * np.dtype(dtype).itemsize)
                stack.callback(cuda.free, extra_dev)
                extra.append((extra_dev, extra_host))
            self.sets.append(BufferSet(k, host_in, dev_in, dev_out, host_out, h2d_done, done,
                                       extra_out=extra))
        # drain before anything above is freed (callbacks run last-in first-out)
        stack.callback(self.synchronize)
        self._next = 0
        self.last_extra: list[np.ndarray] = []
        self._in_flight: collections.deque[tuple[BufferSet, Any, float]] = collections.deque()

    def __len__(self) -> int:
        return len(self._in_flight)

    def submit(self, frame: np.ndarray, tag: Any) -> None:
        if len(self._in_flight) >= len(self.sets):
            raise RuntimeError("submit() with every buffer set in flight; collect() first")
        cuda = self.cuda
        s = self.sets[self._next % len(self.sets)]
        self._next += 1
        t0 = time.perf_counter()
        cuda.event_sync(s.h2d_done)  # the DMA engine reads pinned memory until the upload ends
        np.copyto(s.host_in.array.reshape(frame.shape), frame)
        cuda.stream_wait_event(self.copy_stream, s.done)  # set k's previous frame is out of dev_in/dev_out
        cuda.htod_async(s.dev_in, s.host_in, self.copy_stream)
        cuda.event_record(s.h2d_done, self.copy_stream)
        cuda.stream_wait_event(self.compute_stream, s.h2d_done)
        self.enqueue(s, self.compute_stream)
        cuda.dtoh_async(s.host_out, s.dev_out, self.compute_stream)
        for extra_dev, extra_host in s.extra_out:
            cuda.dtoh_async(extra_host, extra_dev, self.compute_stream)
        cuda.event_record(s.done, self.compute_stream)
        self._in_flight.append((s, tag, t0))

    def collect(self) -> tuple[Any, np.ndarray, float]:
        """(tag, output copy, submit-to-done ms) of the oldest frame in flight; copies of its extra
        outputs, in `extra_outputs` order, are in `last_extra`."""
        s, tag, t0 = self._in_flight.popleft()
        self.cuda.event_sync(s.done)
        self.last_extra = [host.array.copy() for _, host in s.extra_out]
        return tag, s.host_out.array.copy(), (time.perf_counter() - t0) * 1e3

    def synchronize(self) -> None:
        self.cuda.stream_sync(self.copy_stream)
        self.cuda.stream_sync(self.compute_stream)


# ---------------------------------------------------------------------------------------------
class TensorRTBackend(Backend):
    name = "tensorrt"
    OPTIONS = ("device_index", "cuda_graph", "cuda_api", "confidence")

    def __init__(self, manifest: Manifest, *, device_index: int = 0, cuda_graph: bool = False,
                 cuda_api: str | None = None, confidence: bool = False) -> None:
        super().__init__(manifest)
        check_backend(manifest, self.name)
        self.want_confidence(confidence)
        # the engine is deserialized from these very bytes, checked against the manifest's sha256
        self._engine_bytes: bytes = manifest.read_verified()[manifest.model_file]
        trt = import_tensorrt()
        try:
            cuda = get_cuda(cuda_api, need_graphs=cuda_graph, device=device_index)
        except CudaUnavailable as exc:
            raise BackendUnavailable(str(exc)) from None
        cuda.activate()
        check_compat(manifest, trt.__version__, cuda.device_name(), cuda.compute_capability())
        self.cuda = cuda
        self.device = f"{cuda.device_name()} (cuda:{device_index}, {cuda.name})"
        self.trt_version = trt.__version__
        self._stack = contextlib.ExitStack()
        try:
            self._setup(trt, manifest, cuda_graph)
        except BaseException:
            self._stack.close()
            raise

    def _setup(self, trt: Any, manifest: Manifest, cuda_graph: bool) -> None:
        stack = self._stack
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        stack.callback(self._drop, "_runtime")
        engine_bytes, self._engine_bytes = self._engine_bytes, b""
        self._engine = self._runtime.deserialize_cuda_engine(engine_bytes)
        del engine_bytes
        if self._engine is None:
            raise ArtefactError(f"TensorRT {trt.__version__} cannot deserialize {manifest.model_path} (built "
                                f"by another TensorRT version or for another GPU, or damaged); rebuild with "
                                f"{manifest.rebuild_hint()}")
        stack.callback(self._drop, "_engine")
        engine = self._engine
        modes = {engine.get_tensor_name(i): engine.get_tensor_mode(engine.get_tensor_name(i))
                 for i in range(engine.num_io_tensors)}
        inputs = [n for n, m in modes.items() if m == trt.TensorIOMode.INPUT]
        outputs = [n for n, m in modes.items() if m == trt.TensorIOMode.OUTPUT]
        if manifest.input_name not in inputs or manifest.output_name not in outputs:
            raise ArtefactError(f"{manifest.model_path} has inputs {inputs} and outputs {outputs}, not the "
                                f"manifest's {manifest.input_name!r} -> {manifest.output_name!r}; "
                                f"rebuild with "
                                f"{manifest.rebuild_hint()}")
        in_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(manifest.input_name)))
        out_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(manifest.output_name)))
        if in_dtype != np.uint8 or out_dtype != np.uint8:
            raise ArtefactError(f"{manifest.model_path}: tensors are {in_dtype} -> {out_dtype}; the fused "
                                f"contract is uint8 -> uint8. Rebuild with {manifest.rebuild_hint()}")
        self._check_contract(engine, manifest, outputs)
        self._context = engine.create_execution_context()
        if self._context is None:
            raise CudaError("TensorRT could not create an execution context (out of GPU memory?)")
        stack.callback(self._drop, "_context")
        in_shape = tuple(engine.get_tensor_shape(manifest.input_name))
        if any(d < 0 for d in in_shape):  # dynamic engine: run it at the profile's optimum shape
            h, w = manifest.input_size
            if h <= 0 or w <= 0:
                _, opt, _ = engine.get_tensor_profile_shape(manifest.input_name, 0)
                h, w = int(opt[1]), int(opt[2])
            in_shape = (1, h, w, 3)
            self._context.set_input_shape(manifest.input_name, in_shape)
        self._hw = (int(in_shape[1]), int(in_shape[2]))
        out_shape = tuple(self._context.get_tensor_shape(manifest.output_name))
        extra: tuple[tuple[tuple[int, ...], Any], ...] = ()
        if self.confidence_name:  # read per frame: a buffer in every set, like the labels
            if self.confidence_name not in outputs or \
                    np.dtype(trt.nptype(engine.get_tensor_dtype(self.confidence_name))) != np.uint8:
                raise ArtefactError(f"{manifest.model_path} has no uint8 output {self.confidence_name!r} "
                                    f"(outputs {outputs}); rebuild with {manifest.rebuild_hint()}")
            extra = ((tuple(self._context.get_tensor_shape(self.confidence_name)), np.uint8),)
        # outputs the runtime does not read (logits) still need an address: one scratch each,
        # shared by both sets because the compute stream runs one frame at a time
        for name in outputs:
            if name == manifest.output_name or name == self.confidence_name:
                continue
            shape = tuple(self._context.get_tensor_shape(name))
            nbytes = int(np.prod(shape)) * np.dtype(trt.nptype(engine.get_tensor_dtype(name))).itemsize
            scratch = self.cuda.malloc(nbytes)
            stack.callback(self.cuda.free, scratch)
            self._context.set_tensor_address(name, scratch.ptr)
        self._ring = StreamRing(self.cuda, stack, in_shape, np.uint8, out_shape, np.uint8, self._enqueue,
                                extra_outputs=extra)
        self.max_in_flight = len(self._ring.sets)
        self.cuda_graph = False
        if cuda_graph:
            self.cuda_graph = self._capture_graphs()
        log.info("tensorrt %s: %s on %s, %d buffer sets%s", self.trt_version, self.manifest.model_path.name,
                 self.device, self.max_in_flight, ", CUDA graphs" if self.cuda_graph else "")

    @staticmethod
    def _check_contract(engine: Any, manifest: Manifest, outputs: list[str]) -> None:
        """The manifest describes this engine (runtime.backends.contract), before any GPU memory is
        taken for it: input shape and dynamic dims, outputs, classes where a logits output shows
        them (an engine records no class count otherwise), and a manifest size within the profile."""
        from runtime.backends.contract import ModelFacts, check_contract

        def dims(name: str) -> list[int | None]:
            return [int(d) if int(d) >= 0 else None for d in engine.get_tensor_shape(name)]

        check_contract(manifest, ModelFacts(dims(manifest.input_name), {n: dims(n) for n in outputs},
                                            can_tell_classes=False))
        h, w = manifest.input_size
        if manifest.dynamic_shape and h > 0 and w > 0:
            low, _, high = engine.get_tensor_profile_shape(manifest.input_name, 0)
            if not (low[1] <= h <= high[1] and low[2] <= w <= high[2]):
                raise ArtefactError(f"{manifest.path}: input_size {h}x{w} is outside the engine's profile "
                                    f"({low[1]}x{low[2]} to {high[1]}x{high[2]}); rebuild with "
                                    f"{manifest.rebuild_hint()}")

    def _drop(self, attr: str) -> None:
        setattr(self, attr, None)  # TensorRT objects free their memory when released, in this order

    def _bind(self, s: BufferSet) -> None:
        self._context.set_tensor_address(self.manifest.input_name, s.dev_in.ptr)
        self._context.set_tensor_address(self.manifest.output_name, s.dev_out.ptr)
        if self.confidence_name:
            self._context.set_tensor_address(self.confidence_name, s.extra_out[0][0].ptr)

    def _enqueue(self, s: BufferSet, stream: Any) -> None:
        if s.graph is not None:
            self.cuda.graph_launch(s.graph, stream)
            return
        self._bind(s)  # addresses are read at enqueue time, so switching sets per frame is fine
        if not self._context.execute_async_v3(self.cuda.stream_handle(stream)):
            raise CudaError("TensorRT execute_async_v3 failed (see the TensorRT log above)")

    def _capture_graphs(self) -> bool:
        """One graph per buffer set (a graph bakes in its addresses); falls back on failure."""
        if not self.cuda.supports_graphs:
            log.warning("--cuda-graph needs cuda-python (pycuda is in use); running without graphs")
            return False
        stream = self._ring.compute_stream
        handle = self.cuda.stream_handle(stream)
        try:
            for s in self._ring.sets:
                self._bind(s)
                self._context.execute_async_v3(handle)  # one plain enqueue before capture
                self.cuda.stream_sync(stream)
                self.cuda.begin_capture(stream)
                try:
                    self._context.execute_async_v3(handle)
                finally:
                    graph = self.cuda.end_capture(stream)
                s.graph = graph
                self._stack.callback(self.cuda.graph_destroy, graph)
        except CudaError as exc:
            log.warning("CUDA graph capture failed (%s); running without graphs", exc)
            for s in self._ring.sets:
                s.graph = None
            return False
        return True

    def input_hw(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        return self._hw

    def infer(self, frame: np.ndarray) -> np.ndarray:
        if len(self._ring):
            raise RuntimeError("infer() while frames are in flight; collect() them first")
        self.submit(frame, None)
        return self.collect()[1]

    def submit(self, frame: np.ndarray, tag: Any) -> None:
        self._check_frame(frame)
        if frame.shape[:2] != self._hw:
            raise ValueError(f"frame is {frame.shape[:2]}, engine input is {self._hw}; resize with "
                             "segdata.frames.to_model_input")
        self.cuda.activate()
        self._ring.submit(frame, tag)

    def collect_result(self) -> Collected:
        self.cuda.activate()
        tag, out, ms = self._ring.collect()
        confidence = None
        if self.confidence_name:
            extra = self._ring.last_extra[0]
            confidence = extra.reshape(extra.shape[-2:])
        return Collected(tag, out.reshape(out.shape[-2:]), ms, confidence=confidence)

    @property
    def in_flight(self) -> int:
        return len(self._ring)

    def close(self) -> None:
        if self._closed:
            return
        self.cuda.activate()
        try:
            self._ring.synchronize()  # nothing may still run when graphs and buffers are released
        finally:
            self._stack.close()
            super().close()

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(tensorrt=self.trt_version, cuda=self.cuda.name, cuda_graph=self.cuda_graph)
        return info
