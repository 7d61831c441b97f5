"""Backends on real tiny artefacts (OpenVINO, ONNX Runtime), the manifest refusals, and the
TensorRT buffer rotation on a simulated CUDA layer (the real path runs in the gpu tests)."""

from __future__ import annotations

import collections
import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from artefact.manifest import ArtefactError, Manifest, load_manifest
from devices import openvino_precision_hint as choose_precision
from devices.cuda import CudaApi, DeviceBuffer, HostBuffer
from runtime.backends import load_backend
from runtime.backends.tensorrt_backend import StreamRing, check_compat
from runtime.errors import BackendUnavailable
from segdata.frames import to_model_input


def clone_artefact(manifest_path: Path, dest: Path, **changes: Any) -> Path:
    """Copy an artefact (manifest + its model files) and edit manifest fields; 'a.b' edits nested keys."""
    dest.mkdir(parents=True, exist_ok=True)
    stem = Path(manifest_path).stem
    for f in Path(manifest_path).parent.glob(f"{stem}.*"):
        shutil.copy(f, dest / f.name)
    target = dest / f"{stem}.json"
    data = json.loads(target.read_text())
    for key, value in changes.items():
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    target.write_text(json.dumps(data))
    return target


def frames_for(manifest: Path, n: int = 4) -> list[np.ndarray]:
    from segdata.synthetic import StreetClip

    m = load_manifest(manifest)
    clip = StreetClip(seed=1, height=120, width=240, frames=n)  # other size: goes through to_model_input
    return [to_model_input(clip[i][0], m.height, m.width) for i in range(n)]


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_backend_infer_and_async_order(demo_artefacts: dict[str, Path], backend: str) -> None:
    frames = frames_for(demo_artefacts[backend])
    with load_backend(demo_artefacts[backend]) as be:
        assert be.name == backend
        sync = [be.infer(f) for f in frames]
        assert all(s.shape == frames[0].shape[:2] and s.dtype == np.uint8 for s in sync)
        assert all(int(s.max()) < len(be.manifest.classes) for s in sync)
        got = []
        for i, f in enumerate(frames):
            if be.in_flight >= be.max_in_flight:
                got.append(be.collect())
            be.submit(f, i)
        while be.in_flight:
            got.append(be.collect())
        assert [tag for tag, _ in got] == list(range(len(frames)))  # submission order
        for (_, labels), ref in zip(got, sync):
            assert np.array_equal(labels, ref)
        assert be.last_infer_ms > 0
        info = be.describe()
    assert info["precision"] == "fp32"
    if backend == "openvino":
        assert info["precision_ran"] == "f32"  # pinned: no silent BF16 for an FP32 artefact
        assert info["cache_dir"] and Path(info["cache_dir"]).is_dir()


def test_backends_agree(demo_artefacts: dict[str, Path]) -> None:
    ov_m, ort_m = load_manifest(demo_artefacts["openvino"]), load_manifest(demo_artefacts["onnxruntime"])
    if ov_m.onnx_sha256 != ort_m.onnx_sha256:
        pytest.skip("the two demo artefacts come from different ONNX files (unseeded random weights)")
    frames = frames_for(demo_artefacts["openvino"], 2)
    with load_backend(demo_artefacts["openvino"]) as ov, \
            load_backend(demo_artefacts["onnxruntime"]) as ort:
        for f in frames:
            assert (ov.infer(f) == ort.infer(f)).mean() > 0.99


def test_openvino_precision_choice() -> None:
    assert choose_precision("fp32", ["BF16", "FP32", "FP16"]) == "f32"
    assert choose_precision("fp16", ["FP32", "BF16", "FP16"]) == "f16"
    assert choose_precision("fp16", ["FP32", "BF16"]) == "bf16"
    assert choose_precision("fp16", ["FP32"]) == "f32"
    assert choose_precision("fp32", ["BF16"], override="bf16") == "bf16"


# -- runners: a bare model file through the same loaders the backends use ------------------------
@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_runner_on_a_bare_model_file_matches_the_backend(demo_artefacts: dict[str, Path],
                                                          backend: str) -> None:
    from runtime.backends import artefact_runner, open_runner

    manifest = load_manifest(demo_artefacts[backend])
    frames = frames_for(demo_artefacts[backend], 2)
    with load_backend(manifest) as be, open_runner(backend, manifest.model_path, "fp32") as runner:
        assert runner.active and runner.output_names == ["labels"]
        for f in frames:
            labels, logits = runner.predict(f)
            assert logits is None and labels.dtype == np.uint8 and np.array_equal(labels, be.infer(f))
            assert set(runner.infer(f)) == {"labels"}
        assert runner.precision_ran == be.precision_ran  # one loader, one precision rule
    assert not runner.active
    with artefact_runner(manifest) as again:  # the manifest's names and hash checks
        assert np.array_equal(again.predict(frames[0])[0], runner.activate().predict(frames[0])[0])
    runner.deactivate()


def test_onnxruntime_loader_turns_spinning_off(demo_artefacts: dict[str, Path]) -> None:
    from runtime.backends.onnxruntime_backend import load_session

    options = load_session(load_manifest(demo_artefacts["onnxruntime"]).model_path).get_session_options()
    for key in ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning"):
        assert options.get_session_config_entry(key) == "0"


def test_runner_refusals(demo_artefacts: dict[str, Path], tmp_path: Path) -> None:
    from clikit import UsageError
    from runtime.backends import artefact_runner, open_runner

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    for backend in ("onnxruntime", "openvino"):
        with pytest.raises(ArtefactError, match=r"junk\.onnx"):
            open_runner(backend, junk)
    with pytest.raises(UsageError, match="pass its artefact's manifest"):
        open_runner("tensorrt", junk)
    with pytest.raises(UsageError, match="unknown backend"):
        open_runner("nope", junk)
    tampered = clone_artefact(demo_artefacts["onnxruntime"], tmp_path / "t")
    model = load_manifest(tampered).model_path
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(ArtefactError, match="sha256"):
        artefact_runner(tampered)


def test_refuses_wrong_backend(demo_artefacts: dict[str, Path]) -> None:
    with pytest.raises(ArtefactError, match=r"built for openvino, not onnxruntime.*--backend openvino"):
        load_backend(demo_artefacts["openvino"], backend="onnxruntime")


def test_refuses_changed_model_file(demo_artefacts: dict[str, Path], tmp_path: Path) -> None:
    manifest = clone_artefact(demo_artefacts["onnxruntime"], tmp_path)
    model = load_manifest(manifest).model_path
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(ArtefactError,
                       match=r"does not match the sha256.*Rebuild with `python -m build_engine"):
        load_backend(manifest)


def test_refuses_manifest_edited_to_other_backend(demo_artefacts: dict[str, Path], tmp_path: Path) -> None:
    manifest = clone_artefact(demo_artefacts["onnxruntime"], tmp_path, backend="openvino")
    with pytest.raises(ArtefactError, match="built for openvino, not onnxruntime"):
        load_backend(manifest, backend="onnxruntime")


def test_tensorrt_artefact_without_tensorrt(demo_artefacts: dict[str, Path], tmp_path: Path) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    manifest = clone_artefact(demo_artefacts["onnxruntime"], tmp_path, backend="tensorrt",
                              **{"tools.tensorrt": "10.16.0.72"})
    with pytest.raises(BackendUnavailable, match=r"pspnet-rt\[tensorrt\].*--backend openvino or onnxruntime"):
        load_backend(manifest)


# -- TensorRT / GPU compatibility (pure logic, runs everywhere) ---------------------------------
def trt_manifest(**build: Any) -> Manifest:
    return Manifest(name="t", model="demo", backend="tensorrt", precision="fp16", model_file="t.engine",
                    classes=["a"], palette=[[0, 0, 0]], input_size=[96, 192], mean=[0, 0, 0], std=[1, 1, 1],
                    tools={"tensorrt": "10.16.0.72", "gpu": {"name": "NVIDIA A100-SXM4-40GB",
                                                             "compute_capability": "8.0"}},
                    build={"command": "python -m build_engine --backend tensorrt --precision fp16", **build})


def test_check_compat_accepts_the_build_machine() -> None:
    check_compat(trt_manifest(), "10.16.0.72", "NVIDIA A100-SXM4-40GB", (8, 0))
    check_compat(trt_manifest(), "10.16.0", "NVIDIA A100-SXM4-40GB", (8, 0))  # build number may be absent


@pytest.mark.parametrize("trt, gpu, cc, words", [
    ("10.15.1.29", "NVIDIA A100-SXM4-40GB", (8, 0), ["TensorRT 10.16.0.72", "10.15.1.29", "--force"]),
    ("11.4.0", "NVIDIA A100-SXM4-40GB", (8, 0), ["TensorRT 10.16.0.72", "11.4.0"]),
    ("10.16.0.72", "NVIDIA A100-SXM4-80GB", (8, 0), ["built on NVIDIA A100-SXM4-40GB", "A100-SXM4-80GB"]),
    ("10.16.0.72", "NVIDIA GeForce RTX 4090", (8, 9), ["compute capability 8.0", "8.9"]),
])
def test_check_compat_refuses(trt: str, gpu: str, cc: tuple[int, int], words: list[str]) -> None:
    with pytest.raises(ArtefactError) as err:
        check_compat(trt_manifest(), trt, gpu, cc)
    assert all(w in str(err.value) for w in words)
    assert "python -m build_engine --backend tensorrt --precision fp16 --force" in str(err.value)


def test_check_compat_portability_options() -> None:
    check_compat(trt_manifest(version_compatible=True), "10.18.0", "NVIDIA A100-SXM4-40GB", (8, 0))
    with pytest.raises(ArtefactError):
        check_compat(trt_manifest(version_compatible=True), "11.0.0", "NVIDIA A100-SXM4-40GB", (8, 0))
    check_compat(trt_manifest(hardware_compatibility_level="same_compute_capability"), "10.16.0.72",
                 "NVIDIA A30", (8, 0))
    check_compat(trt_manifest(hardware_compatibility_level="ampere_plus"), "10.16.0.72", "NVIDIA L4", (8, 9))
    with pytest.raises(ArtefactError, match="Ampere-plus"):
        check_compat(trt_manifest(hardware_compatibility_level="ampere_plus"), "10.16.0.72", "Tesla T4",
                     (7, 5))
    bare = trt_manifest()
    bare.tools.pop("gpu")
    with pytest.raises(ArtefactError, match="records no GPU"):
        check_compat(bare, "10.16.0.72", "NVIDIA A100-SXM4-40GB", (8, 0))


# -- buffer rotation on a simulated CUDA: work runs lazily, only when someone waits ---------------
class _Event:
    def __init__(self) -> None:
        self.stream: Any = None
        self.recorded = 0  # records enqueued
        self.fired = 0  # records executed


class SimCuda(CudaApi):
    """Executes each stream's queued operations only when a host sync needs them, honouring
    event records and cross-stream waits as CUDA defines them (a wait binds to the record made
    before it). Ordering mistakes in StreamRing therefore show up as wrong results."""

    name = "sim"

    def __init__(self) -> None:
        super().__init__(0)
        self.mem: dict[int, np.ndarray] = {}
        self._ptr = 0x1000
        self.h2d = 0

    def activate(self) -> None:
        pass

    def stream_create(self) -> collections.deque:
        return collections.deque()

    def stream_handle(self, stream: Any) -> int:
        return id(stream)

    def _step(self, stream: collections.deque) -> None:
        kind, *args = stream.popleft()
        if kind == "call":
            args[0]()
        elif kind == "record":
            args[0].fired = args[1]
        elif kind == "wait":
            self._until(args[0], args[1])

    def _until(self, event: _Event, generation: int) -> None:
        while event.fired < generation:
            self._step(event.stream)

    def stream_sync(self, stream: Any) -> None:
        while stream:
            self._step(stream)

    def stream_destroy(self, stream: Any) -> None:
        pass

    def event_create(self) -> _Event:
        return _Event()

    def event_record(self, event: _Event, stream: Any) -> None:
        event.stream, event.recorded = stream, event.recorded + 1
        stream.append(("record", event, event.recorded))

    def event_sync(self, event: _Event) -> None:
        self._until(event, event.recorded)

    def event_destroy(self, event: Any) -> None:
        pass

    def stream_wait_event(self, stream: Any, event: _Event) -> None:
        stream.append(("wait", event, event.recorded))

    def malloc(self, nbytes: int) -> DeviceBuffer:
        self._ptr += 0x1000
        self.mem[self._ptr] = np.zeros(nbytes, np.uint8)
        return DeviceBuffer(self._ptr, nbytes)

    def free(self, buf: DeviceBuffer) -> None:
        del self.mem[buf.ptr]

    def pinned(self, shape: tuple[int, ...], dtype: Any) -> HostBuffer:
        array = np.zeros(shape, dtype)
        return HostBuffer(array, array.ctypes.data)

    def free_pinned(self, buf: HostBuffer) -> None:
        pass

    def htod_async(self, dst: DeviceBuffer, src: HostBuffer, stream: Any) -> None:
        def copy() -> None:
            self.mem[dst.ptr][:] = src.array.reshape(-1).view(np.uint8)
            self.h2d += 1
        stream.append(("call", copy))

    def dtoh_async(self, dst: HostBuffer, src: DeviceBuffer, stream: Any) -> None:
        stream.append(("call", lambda: dst.array.reshape(-1).view(np.uint8).__setitem__(
            slice(None), self.mem[src.ptr][: dst.array.nbytes])))


class NoCrossStreamWait(SimCuda):
    def stream_wait_event(self, stream: Any, event: Any) -> None:
        pass  # the bug the ring must not have: compute would not wait for the upload


def make_ring(cuda: SimCuda, stack: Any, used: list[int]) -> StreamRing:
    def enqueue(s: Any, stream: Any) -> None:  # the "engine": labels = blue channel // 4
        used.append(s.index)
        stream.append(("call", lambda: cuda.mem[s.dev_out.ptr].__setitem__(
            slice(None), cuda.mem[s.dev_in.ptr].reshape(6, 8, 3)[:, :, 0].reshape(-1) // 4)))
    return StreamRing(cuda, stack, (1, 6, 8, 3), np.uint8, (1, 6, 8), np.uint8, enqueue)


def run_ring(cuda: SimCuda, n: int = 9) -> tuple[list, list, list[int]]:
    import contextlib

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (6, 8, 3), dtype=np.uint8) for _ in range(n)]
    used: list[int] = []
    out = []
    with contextlib.ExitStack() as stack:
        ring = make_ring(cuda, stack, used)
        for i, f in enumerate(frames):
            if len(ring) == 2:
                out.append(ring.collect())
            ring.submit(f, i)
        with pytest.raises(RuntimeError, match="collect"):
            ring.submit(frames[0], "third")  # both sets busy
        while len(ring):
            out.append(ring.collect())
    return frames, out, used


def test_stream_ring_rotates_and_keeps_frames_apart() -> None:
    cuda = SimCuda()
    frames, out, used = run_ring(cuda)
    assert used == [0, 1] * 4 + [0]  # two buffer sets, alternating
    assert [tag for tag, _, _ in out] == list(range(len(frames)))
    for (_, labels, ms), f in zip(out, frames):
        assert np.array_equal(labels[0], f[:, :, 0] // 4)  # every frame got its own result
        assert ms >= 0
    assert cuda.h2d == len(frames)
    assert not cuda.mem  # every device buffer freed by the ExitStack


def test_stream_ring_simulation_catches_missing_waits() -> None:
    frames, out, _ = run_ring(NoCrossStreamWait())
    wrong = sum(not np.array_equal(labels[0], f[:, :, 0] // 4) for (_, labels, _), f in zip(out, frames))
    assert wrong > 0  # without the event wait, compute reads the buffer before the upload


def test_stream_ring_reads_extra_outputs_per_buffer_set() -> None:
    """The confidence map rides in every buffer set beside the labels: each frame gets its own."""
    import contextlib

    cuda = SimCuda()
    frames = [np.random.default_rng(i).integers(0, 255, (6, 8, 3), dtype=np.uint8) for i in range(5)]
    got = {}
    with contextlib.ExitStack() as stack:
        def enqueue(s: Any, stream: Any) -> None:  # labels = blue // 4, "confidence" = green
            def run() -> None:
                image = cuda.mem[s.dev_in.ptr].reshape(6, 8, 3)
                cuda.mem[s.dev_out.ptr][:] = image[:, :, 0].reshape(-1) // 4
                cuda.mem[s.extra_out[0][0].ptr][:] = image[:, :, 1].reshape(-1)
            stream.append(("call", run))

        ring = StreamRing(cuda, stack, (1, 6, 8, 3), np.uint8, (1, 6, 8), np.uint8, enqueue,
                          extra_outputs=(((1, 6, 8), np.uint8),))
        for i, f in enumerate(frames):
            if len(ring) == 2:
                tag, labels, _ = ring.collect()
                got[tag] = (labels, ring.last_extra[0])
            ring.submit(f, i)
        while len(ring):
            tag, labels, _ = ring.collect()
            got[tag] = (labels, ring.last_extra[0])
    for i, f in enumerate(frames):
        assert np.array_equal(got[i][0][0], f[:, :, 0] // 4) and np.array_equal(got[i][1][0], f[:, :, 1])
    assert not cuda.mem  # the extra buffers are freed with the rest


@pytest.mark.gpu
def test_tensorrt_backend_on_gpu(tmp_path: Path) -> None:
    """Real TensorRT on a GPU machine: build a tiny engine, run it with and without CUDA graphs."""
    from build_engine.api import build_artefact

    manifest = build_artefact("demo", "fp16", "tensorrt", (96, 192), output=tmp_path)
    frames = frames_for(manifest, 4)
    with load_backend(manifest) as plain:
        ref = [plain.infer(f) for f in frames]
        for i, f in enumerate(frames):
            if plain.in_flight == plain.max_in_flight:
                plain.collect()
            plain.submit(f, i)
        while plain.in_flight:
            plain.collect()
    with load_backend(manifest, cuda_graph=True) as graphs:
        for f, r in zip(frames, ref):
            assert np.array_equal(graphs.infer(f), r)


@pytest.mark.gpu
def test_tensorrt_confidence_engine_on_gpu(tmp_path: Path) -> None:
    """Real TensorRT: an engine built with --confidence --flip returns each frame's confidence map,
    close to ONNX Runtime's on the same ONNX (FP32), with and without CUDA graphs."""
    from artefact.manifest import CONFIDENCE_NAME, LABELS_NAME
    from build_engine.api import build_artefact
    from runtime.backends import open_runner

    options = {"output": tmp_path, "confidence": True, "flip": True}
    manifest = build_artefact("demo", "fp32", "tensorrt", (96, 192), **options)
    twin = build_artefact("demo", "fp32", "onnxruntime", (96, 192), **options)
    frames = frames_for(manifest, 4)
    for graphs in (False, True):
        with load_backend(manifest, confidence=True, cuda_graph=graphs) as be:
            got = {}
            for i, f in enumerate(frames):
                if be.in_flight == be.max_in_flight:
                    tag, labels = be.collect()
                    got[tag] = (labels, be.last_confidence)
                be.submit(f, i)
            while be.in_flight:
                tag, labels = be.collect()
                got[tag] = (labels, be.last_confidence)
        assert all(c.shape == (96, 192) and c.dtype == np.uint8 for _, c in got.values())
        with open_runner("onnxruntime", load_manifest(twin).model_path) as ref:  # the same graph on ORT
            for i, f in enumerate(frames):
                want = ref.infer(f, [LABELS_NAME, CONFIDENCE_NAME])
                assert np.mean(got[i][0] == want[LABELS_NAME]) >= 0.999
                assert np.abs(got[i][1].astype(int) - want[CONFIDENCE_NAME]).max() <= 2
