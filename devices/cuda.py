"""Every CUDA call the project makes, in one place, over pycuda or cuda-python.

The runtime's TensorRT backend runs on it and the builder asks it for the GPU it builds for
(`device_info`). Nothing here imports a CUDA library until `get_cuda()` is called, so the
project installs and runs on machines without a GPU. Two implementations of one small API:

* pycuda (`pip install pycuda`, builds against a CUDA toolkit) through `pycuda.autoprimaryctx`,
  so pycuda and TensorRT share the device's primary context;
* cuda-python (`pip install cuda-python`, prebuilt wheels; what NVIDIA's TensorRT samples use)
  through `from cuda.bindings import runtime as cudart` (or `from cuda import cudart` before
  cuda-bindings 12.8/13).

CUDA graphs are offered through cuda-python only; with pycuda alone `supports_graphs` is False
and the TensorRT backend enqueues normally.

The CUDA context is current per thread: the pipeline calls the backend from its inference
thread, so every entry point calls `activate()` first (cheap after the first call per thread).
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

INSTALL_HINT = ("install CUDA bindings for the tensorrt backend: `pip install cuda-python` (prebuilt) or "
                "`pip install pycuda` (needs a CUDA toolkit), i.e. `pip install 'pspnet-rt[tensorrt]'`")


class CudaError(RuntimeError):
    """A CUDA call failed; the message names the call and CUDA's error string."""


class CudaUnavailable(RuntimeError):
    """No usable CUDA here (bindings, driver or device missing); the message says what to install."""


@dataclass
class DeviceBuffer:
    ptr: int
    nbytes: int
    handle: Any = field(default=None, repr=False)  # what must stay alive / be freed


@dataclass
class HostBuffer:
    """Page-locked host memory viewed as a numpy array (async copies need pinned memory)."""

    array: np.ndarray
    ptr: int
    handle: Any = field(default=None, repr=False)


class CudaApi:
    """The calls the TensorRT backend needs; see the two implementations below."""

    name = "cuda"
    supports_graphs = False

    def __init__(self, device: int = 0) -> None:
        self.device_index = device
        self._local = threading.local()

    # device & context
    def activate(self) -> None: raise NotImplementedError
    def device_name(self) -> str: raise NotImplementedError
    def compute_capability(self) -> tuple[int, int]: raise NotImplementedError
    # streams & events
    def stream_create(self) -> Any: raise NotImplementedError
    def stream_handle(self, stream: Any) -> int: raise NotImplementedError
    def stream_sync(self, stream: Any) -> None: raise NotImplementedError
    def stream_destroy(self, stream: Any) -> None: raise NotImplementedError
    def event_create(self) -> Any: raise NotImplementedError
    def event_record(self, event: Any, stream: Any) -> None: raise NotImplementedError
    def event_sync(self, event: Any) -> None: raise NotImplementedError
    def event_destroy(self, event: Any) -> None: raise NotImplementedError
    def stream_wait_event(self, stream: Any, event: Any) -> None: raise NotImplementedError
    # memory
    def malloc(self, nbytes: int) -> DeviceBuffer: raise NotImplementedError
    def free(self, buf: DeviceBuffer) -> None: raise NotImplementedError
    def pinned(self, shape: tuple[int, ...], dtype: Any) -> HostBuffer: raise NotImplementedError
    def free_pinned(self, buf: HostBuffer) -> None: raise NotImplementedError
    def htod_async(self, dst: DeviceBuffer, src: HostBuffer, stream: Any) -> None: raise NotImplementedError
    def dtoh_async(self, dst: HostBuffer, src: DeviceBuffer, stream: Any) -> None: raise NotImplementedError

    # graphs (cuda-python only)
    def begin_capture(self, stream: Any) -> None:
        raise CudaError(f"CUDA graphs are not available through {self.name}")

    def end_capture(self, stream: Any) -> Any:
        raise CudaError(f"CUDA graphs are not available through {self.name}")

    def graph_launch(self, graph_exec: Any, stream: Any) -> None:
        raise CudaError(f"CUDA graphs are not available through {self.name}")

    def graph_destroy(self, graph_exec: Any) -> None:
        raise CudaError(f"CUDA graphs are not available through {self.name}")


def _pinned_view(ptr: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(ptr))
    return raw.view(dtype).reshape(shape)


class CudaPython(CudaApi):
    """cuda-python's runtime API: every call returns (error, *values)."""

    name = "cuda-python"
    supports_graphs = True

    def __init__(self, device: int = 0) -> None:
        super().__init__(device)
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # cuda-python < 12.8
        self.rt = cudart
        count = self._call("cudaGetDeviceCount", cudart.cudaGetDeviceCount())
        if device >= count:
            raise CudaUnavailable(f"CUDA device {device} requested but {count} device(s) found")
        self.activate()
        self._props = self._call("cudaGetDeviceProperties", cudart.cudaGetDeviceProperties(device))

    def _call(self, what: str, result: Any) -> Any:
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:
            text = self.rt.cudaGetErrorString(err)[1]
            raise CudaError(f"{what} failed: {text.decode() if isinstance(text, bytes) else text}")
        if not values:
            return None
        return values[0] if len(values) == 1 else tuple(values)

    def activate(self) -> None:
        if getattr(self._local, "active", False):
            return
        self._call("cudaSetDevice", self.rt.cudaSetDevice(self.device_index))
        self._local.active = True

    def device_name(self) -> str:
        name = self._props.name
        text = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
        return text.rstrip("\x00").strip()

    def compute_capability(self) -> tuple[int, int]:
        return int(self._props.major), int(self._props.minor)

    def stream_create(self) -> Any:
        return self._call("cudaStreamCreateWithFlags",
                          self.rt.cudaStreamCreateWithFlags(self.rt.cudaStreamNonBlocking))

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def stream_sync(self, stream: Any) -> None:
        self._call("cudaStreamSynchronize", self.rt.cudaStreamSynchronize(stream))

    def stream_destroy(self, stream: Any) -> None:
        self._call("cudaStreamDestroy", self.rt.cudaStreamDestroy(stream))

    def event_create(self) -> Any:
        return self._call("cudaEventCreateWithFlags",
                          self.rt.cudaEventCreateWithFlags(self.rt.cudaEventDisableTiming))

    def event_record(self, event: Any, stream: Any) -> None:
        self._call("cudaEventRecord", self.rt.cudaEventRecord(event, stream))

    def event_sync(self, event: Any) -> None:
        self._call("cudaEventSynchronize", self.rt.cudaEventSynchronize(event))

    def event_destroy(self, event: Any) -> None:
        self._call("cudaEventDestroy", self.rt.cudaEventDestroy(event))

    def stream_wait_event(self, stream: Any, event: Any) -> None:
        self._call("cudaStreamWaitEvent", self.rt.cudaStreamWaitEvent(stream, event, 0))

    def malloc(self, nbytes: int) -> DeviceBuffer:
        ptr = self._call("cudaMalloc", self.rt.cudaMalloc(max(1, nbytes)))
        return DeviceBuffer(int(ptr), nbytes)

    def free(self, buf: DeviceBuffer) -> None:
        self._call("cudaFree", self.rt.cudaFree(buf.ptr))

    def pinned(self, shape: tuple[int, ...], dtype: Any) -> HostBuffer:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        ptr = int(self._call("cudaMallocHost", self.rt.cudaMallocHost(max(1, nbytes))))
        return HostBuffer(_pinned_view(ptr, shape, dtype), ptr)

    def free_pinned(self, buf: HostBuffer) -> None:
        self._call("cudaFreeHost", self.rt.cudaFreeHost(buf.ptr))

    def htod_async(self, dst: DeviceBuffer, src: HostBuffer, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call("cudaMemcpyAsync(H2D)", self.rt.cudaMemcpyAsync(dst.ptr, src.ptr, src.array.nbytes,
                                                                    kind, stream))

    def dtoh_async(self, dst: HostBuffer, src: DeviceBuffer, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call("cudaMemcpyAsync(D2H)", self.rt.cudaMemcpyAsync(dst.ptr, src.ptr, dst.array.nbytes,
                                                                    kind, stream))

    def begin_capture(self, stream: Any) -> None:
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._call("cudaStreamBeginCapture", self.rt.cudaStreamBeginCapture(stream, mode))

    def end_capture(self, stream: Any) -> Any:
        """End capture and return an instantiated graph (the graph itself is freed at once)."""
        graph = self._call("cudaStreamEndCapture", self.rt.cudaStreamEndCapture(stream))
        try:
            return self._call("cudaGraphInstantiate", self.rt.cudaGraphInstantiate(graph, 0))
        finally:
            self._call("cudaGraphDestroy", self.rt.cudaGraphDestroy(graph))

    def graph_launch(self, graph_exec: Any, stream: Any) -> None:
        self._call("cudaGraphLaunch", self.rt.cudaGraphLaunch(graph_exec, stream))

    def graph_destroy(self, graph_exec: Any) -> None:
        self._call("cudaGraphExecDestroy", self.rt.cudaGraphExecDestroy(graph_exec))


class PyCuda(CudaApi):
    """pycuda's driver API on the device's primary context (shared with TensorRT)."""

    name = "pycuda"

    def __init__(self, device: int = 0) -> None:
        super().__init__(device)
        if device != 0:
            os.environ.setdefault("CUDA_DEVICE", str(device))  # read by pycuda.autoprimaryctx
        import pycuda.autoprimaryctx as primary
        import pycuda.driver as drv

        self.drv = drv
        self._ctx = primary.context
        self._dev = primary.device
        self._local.active = True  # autoprimaryctx made it current in this thread

    def activate(self) -> None:
        if getattr(self._local, "active", False):
            return
        self._ctx.push()  # this thread's context stack; released when the thread ends
        self._local.active = True

    def device_name(self) -> str:
        return str(self._dev.name()).strip()

    def compute_capability(self) -> tuple[int, int]:
        major, minor = self._dev.compute_capability()
        return int(major), int(minor)

    def stream_create(self) -> Any:
        return self.drv.Stream()

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def stream_sync(self, stream: Any) -> None:
        stream.synchronize()

    def stream_destroy(self, stream: Any) -> None:
        del stream  # pycuda destroys streams when the object is collected

    def event_create(self) -> Any:
        return self.drv.Event(self.drv.event_flags.DISABLE_TIMING)

    def event_record(self, event: Any, stream: Any) -> None:
        event.record(stream)

    def event_sync(self, event: Any) -> None:
        event.synchronize()

    def event_destroy(self, event: Any) -> None:
        del event

    def stream_wait_event(self, stream: Any, event: Any) -> None:
        stream.wait_for_event(event)

    def malloc(self, nbytes: int) -> DeviceBuffer:
        alloc = self.drv.mem_alloc(max(1, nbytes))
        return DeviceBuffer(int(alloc), nbytes, alloc)

    def free(self, buf: DeviceBuffer) -> None:
        buf.handle.free()

    def pinned(self, shape: tuple[int, ...], dtype: Any) -> HostBuffer:
        array = self.drv.pagelocked_empty(shape, dtype)
        return HostBuffer(array, int(array.ctypes.data), array.base)

    def free_pinned(self, buf: HostBuffer) -> None:
        buf.handle.free()

    def htod_async(self, dst: DeviceBuffer, src: HostBuffer, stream: Any) -> None:
        self.drv.memcpy_htod_async(dst.ptr, src.array, stream)

    def dtoh_async(self, dst: HostBuffer, src: DeviceBuffer, stream: Any) -> None:
        self.drv.memcpy_dtoh_async(dst.array, src.ptr, stream)


def get_cuda(prefer: str | None = None, *, need_graphs: bool = False, device: int = 0) -> CudaApi:
    """The CUDA API to use: `prefer` ('pycuda' / 'cuda-python') or $PSPNET_RT_CUDA, else pycuda
    when importable (cuda-python when graphs are wanted), else cuda-python."""
    prefer = prefer or os.environ.get("PSPNET_RT_CUDA") or None
    order = ["cuda-python", "pycuda"] if need_graphs else ["pycuda", "cuda-python"]
    if prefer:
        if prefer not in ("pycuda", "cuda-python"):
            raise CudaUnavailable(f"unknown CUDA bindings {prefer!r}; use pycuda or cuda-python")
        order = [prefer]
    errors = []
    for name in order:
        try:
            return PyCuda(device) if name == "pycuda" else CudaPython(device)
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
        except CudaError as exc:
            raise CudaUnavailable(f"CUDA is not usable here ({exc}); is there an NVIDIA GPU and "
                                  "driver?") from None
        except Exception as exc:  # pycuda raises its own errors when no driver/GPU is present
            if type(exc).__module__.startswith("pycuda"):
                raise CudaUnavailable(f"CUDA is not usable here ({exc}); is there an NVIDIA GPU and "
                                         "driver?") from None
            raise
    raise CudaUnavailable(f"no CUDA Python bindings found ({'; '.join(errors)}); {INSTALL_HINT}")


def device_info(device: int = 0) -> dict[str, Any] | None:
    """Name and compute capability of a CUDA device, as manifests record them in tools.gpu;
    None where no bindings, driver or device answer (the builder uses this to decide whether
    TensorRT is usable, so it must never raise)."""
    try:
        cuda = get_cuda(device=device)
        major, minor = cuda.compute_capability()
        return {"name": cuda.device_name(), "compute_capability": f"{major}.{minor}", "index": device,
                "bindings": cuda.name}
    except Exception as exc:  # no bindings / no driver / no device: not an error here
        log.debug("no CUDA device: %s", exc)
        return None
