"""ONNX Runtime backend: CPU by default, CUDA / TensorRT execution providers when installed.

`load_session` is the one place an ONNX Runtime session is made (non-spinning threads,
providers); `OnnxRuntimeRunner` runs a bare model file through it, `OnnxRuntimeBackend` an
artefact.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from artefact.manifest import ArtefactError, Manifest
from devices import install_hint
from runtime.backends.base import Backend, check_backend, labels_2d, map_2d
from runtime.backends.runner import Runner
from runtime.errors import BackendUnavailable

if TYPE_CHECKING:
    from runtime.backends.contract import ModelFacts

log = logging.getLogger(__name__)

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
CPU_PROVIDER = "CPUExecutionProvider"


def import_onnxruntime() -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailable(f"the onnxruntime backend needs {install_hint('onnxruntime')} "
                                 f"({exc})") from None
    return ort


def choose_providers(available: list[str], wanted: list[str] | None, trt_cache_dir: Path,
                     fp16: bool = False) -> list[Any]:
    """GPU providers first where present, CPU always last as the fallback ORT needs."""
    if wanted:
        missing = [p for p in wanted if p not in available]
        if missing:
            raise BackendUnavailable(f"ONNX Runtime here lacks {', '.join(missing)} (available: "
                                     f"{', '.join(available)}); install onnxruntime-gpu for CUDA/TensorRT")
        names = list(wanted)
    else:
        names = [p for p in GPU_PROVIDERS if p in available]
    if CPU_PROVIDER not in names:
        names.append(CPU_PROVIDER)
    providers: list[Any] = []
    for name in names:
        if name == "TensorrtExecutionProvider":
            # TRT EP builds an engine at session start: cache it beside the model file
            providers.append((name, {"trt_engine_cache_enable": True,
                                     "trt_engine_cache_path": str(trt_cache_dir), "trt_fp16_enable": fp16}))
        else:
            providers.append(name)
    return providers


def load_session(path: str | Path, *, providers: list[str] | None = None, threads: int | None = None,
                 fp16: bool = False, data: bytes | None = None) -> Any:
    """An InferenceSession on `path` with the project's settings (the loader every ORT user calls).

    `providers` None = GPU providers where installed, then CPU; ["CPUExecutionProvider"] = CPU
    only. `threads` None = $PSPNET_RT_THREADS, else ORT's default (all cores). `data`: the model's
    bytes, already checked against the manifest's sha256 (Manifest.read_verified), loaded instead of
    reading `path` again (no swap between the check and the load; the fused graph keeps its weights
    inside the file, so no external data file is read from `path`'s folder).
    """
    ort = import_onnxruntime()
    path = Path(path)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: ORT's graph warnings are not the user's problem
    threads = threads or int(os.environ.get("PSPNET_RT_THREADS", "0") or 0)
    if threads:
        options.intra_op_num_threads = threads
    # ORT's workers spin after each run by default; on a few-core box they then steal the
    # cores that capture, encoding (and, in a benchmark, the next contender) need. Measured
    # here: PyTorch eager ran at 148 ms/frame right after spinning ORT, 88 ms without it.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    chosen = choose_providers(ort.get_available_providers(), providers, path.parent / "ort_trt_cache", fp16)
    try:
        return ort.InferenceSession(data if data is not None else str(path), options, providers=chosen)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NoSuchFile types
        detail = " ".join(str(exc).split())[-300:]
        raise ArtefactError(f"ONNX Runtime cannot load {path}: {detail}") from None


def session_facts(session: Any, input_name: str) -> ModelFacts:
    """What an ONNX model says about itself through its session: shapes, and the class count the
    build recorded in its metadata (ORT shows nothing of the graph's inside)."""
    from artefact.manifest import CLASSES_METADATA
    from runtime.backends.contract import ModelFacts

    def dims(shape: list[Any]) -> list[int | None]:
        return [d if isinstance(d, int) and d > 0 else None for d in shape]

    inputs = {i.name: dims(i.shape) for i in session.get_inputs()}
    recorded = session.get_modelmeta().custom_metadata_map.get(CLASSES_METADATA, "")
    return ModelFacts(inputs.get(input_name, []), {o.name: dims(o.shape) for o in session.get_outputs()},
                      int(recorded) if recorded.isdigit() else None)


def model_facts(path: str | Path, input_name: str) -> ModelFacts:
    return session_facts(load_session(path, providers=[CPU_PROVIDER], threads=1), input_name)


class OnnxRuntimeRunner(Runner):
    """A bare ONNX file on ONNX Runtime; `device` CPU (default) or GPU (the GPU providers)."""

    backend = "onnxruntime"
    OPTIONS = ("providers", "threads", "device")

    def __init__(self, path: str | Path, precision: str = "fp32", *, providers: list[str] | None = None,
                 threads: int | None = None, device: str = "CPU", files: dict[str, bytes] | None = None,
                 **names: str) -> None:
        super().__init__(path, precision, files=files, **names)
        if providers is None and device.upper() == "CPU":
            providers = [CPU_PROVIDER]
        self.providers_wanted = providers
        self.threads = threads
        self._session: Any = None
        self._outputs: list[str] = []

    def _open(self) -> None:
        self._session = load_session(self.path, providers=self.providers_wanted, threads=self.threads,
                                     fp16=self.precision == "fp16", data=self._take_file(self.path.name))
        self._outputs = [o.name for o in self._session.get_outputs()]
        try:
            self._check_names([i.name for i in self._session.get_inputs()], self._outputs)
        except ArtefactError:
            self._session = None
            raise
        self.providers = self._session.get_providers()
        self.device = {"TensorrtExecutionProvider": "GPU (TensorRT EP)",
                       "CUDAExecutionProvider": "GPU (CUDA EP)"}.get(self.providers[0], "CPU")

    def _close(self) -> None:
        self._session = None

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    def facts(self) -> ModelFacts:
        return session_facts(self._session, self.input_name)

    def _run(self, batch: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
        return self._session.run(outputs, {self.input_name: batch})


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    OPTIONS = ("providers", "threads", "confidence")

    def __init__(self, manifest: Manifest, *, providers: list[str] | None = None,
                 threads: int | None = None, confidence: bool = False) -> None:
        super().__init__(manifest)
        check_backend(manifest, self.name)
        self.want_confidence(confidence)
        # the streaming backend uses the GPU providers where installed (device "GPU"); it loads the
        # very bytes whose hash was checked
        self._runner = self._activate(OnnxRuntimeRunner(
            manifest.model_path, manifest.precision, providers=providers, threads=threads, device="GPU",
            files=manifest.read_verified(), **self.tensor_names()))
        self.providers = self._runner.providers
        self.device = self._runner.device
        log.info("onnxruntime: %s with %s", manifest.model_path.name, ", ".join(self.providers))

    def infer(self, frame: np.ndarray) -> np.ndarray:
        self._check_frame(frame)
        names = [self.manifest.output_name] + ([self.confidence_name] if self.confidence_name else [])
        out = self._runner.infer(frame, names)
        if self.confidence_name:
            self.last_confidence = map_2d(out[self.confidence_name], self.manifest, self.confidence_name)
        return labels_2d(out[self.manifest.output_name], self.manifest)

    def close(self) -> None:
        self._runner.deactivate()
        super().close()

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["providers"] = self.providers
        return info
