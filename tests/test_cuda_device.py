"""devices/cuda.py on a real CUDA device: pinned buffers, two streams, events, a captured graph.

Marked `cuda`: they need an NVIDIA GPU and CUDA Python bindings, not TensorRT, so a GPU machine
without TensorRT (scripts/gpu-check.sh) runs them; they skip everywhere else. The simulated
stream ring (tests/test_runtime_backends.py) checks the same ordering rules on any machine.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import numpy as np
import pytest

pytestmark = pytest.mark.cuda
SHAPE = (240, 480, 3)  # one demo frame


@pytest.fixture(params=["cuda-python", "pycuda"])
def cuda(request: pytest.FixtureRequest):
    from devices.cuda import CudaUnavailable, get_cuda

    try:
        return get_cuda(request.param)
    except CudaUnavailable as exc:
        pytest.skip(f"{request.param}: {exc}")


@contextlib.contextmanager
def buffers(cuda) -> Iterator[tuple]:
    """Pinned in/out, one device buffer, a copy and a compute stream, one event; all freed after."""
    with contextlib.ExitStack() as stack:
        host_in = cuda.pinned(SHAPE, np.uint8)
        stack.callback(cuda.free_pinned, host_in)
        host_out = cuda.pinned(SHAPE, np.uint8)
        stack.callback(cuda.free_pinned, host_out)
        dev = cuda.malloc(host_in.array.nbytes)
        stack.callback(cuda.free, dev)
        copy, compute = cuda.stream_create(), cuda.stream_create()
        stack.callback(cuda.stream_destroy, copy)
        stack.callback(cuda.stream_destroy, compute)
        uploaded = cuda.event_create()
        stack.callback(cuda.event_destroy, uploaded)
        yield host_in, host_out, dev, copy, compute, uploaded


def test_device_answers(cuda) -> None:
    from devices.cuda import device_info

    major, _ = cuda.compute_capability()
    assert cuda.device_name() and major >= 3
    info = device_info()
    assert info is not None and info["name"]


def test_upload_on_one_stream_download_on_the_other(cuda) -> None:
    """The TensorRT backend's ordering: H2D on the copy stream, an event, the compute stream waits."""
    rng = np.random.default_rng(0)
    with buffers(cuda) as (host_in, host_out, dev, copy, compute, uploaded):
        for _ in range(3):
            frame = rng.integers(0, 255, SHAPE, np.uint8)
            host_in.array[...] = frame
            host_out.array[...] = 0
            cuda.htod_async(dev, host_in, copy)
            cuda.event_record(uploaded, copy)
            cuda.stream_wait_event(compute, uploaded)
            cuda.dtoh_async(host_out, dev, compute)
            cuda.stream_sync(compute)
            assert np.array_equal(host_out.array, frame)


def test_pinned_round_trip_bandwidth(cuda, record_property) -> None:
    with buffers(cuda) as (host_in, host_out, dev, copy, _, _):
        host_in.array[...] = 7
        t0 = time.perf_counter()
        for _ in range(50):
            cuda.htod_async(dev, host_in, copy)
            cuda.dtoh_async(host_out, dev, copy)
        cuda.stream_sync(copy)
        seconds = time.perf_counter() - t0
        assert np.all(host_out.array == 7)
    mb_s = 2 * 50 * host_in.array.nbytes / seconds / 1e6
    record_property("round_trip_MB_s", round(mb_s))
    assert mb_s > 100  # pinned PCIe/NVLink copies run at GB/s; pageable fallbacks would crawl


def test_cuda_graph_replays_a_captured_copy(cuda) -> None:
    if not cuda.supports_graphs:
        pytest.skip(f"{cuda.name} offers no CUDA graphs (cuda-python does)")
    with buffers(cuda) as (host_in, host_out, dev, _, compute, _):
        cuda.begin_capture(compute)
        cuda.htod_async(dev, host_in, compute)
        cuda.dtoh_async(host_out, dev, compute)
        graph = cuda.end_capture(compute)
        try:
            for value in (11, 42):  # the graph reads the pinned buffer's current contents each launch
                host_in.array[...] = value
                cuda.graph_launch(graph, compute)
                cuda.stream_sync(compute)
                assert np.all(host_out.array == value)
        finally:
            cuda.graph_destroy(graph)
