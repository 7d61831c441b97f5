"""ONNX Runtime backend: CPU by default, CUDA / TensorRT execution providers when installed."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from artefact.manifest import ArtefactError, Manifest
from runtime.backends.base import Backend, check_backend, labels_2d
from runtime.errors import BackendUnavailable

log = logging.getLogger(__name__)

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def choose_providers(available: list[str], wanted: list[str] | None, manifest: Manifest) -> list[Any]:
    """GPU providers first where present, CPU always last as the fallback ORT needs."""
    if wanted:
        missing = [p for p in wanted if p not in available]
        if missing:
            raise BackendUnavailable(f"ONNX Runtime here lacks {', '.join(missing)} (available: "
                                     f"{', '.join(available)}); install onnxruntime-gpu for CUDA/TensorRT")
        names = list(wanted)
    else:
        names = [p for p in GPU_PROVIDERS if p in available]
    if "CPUExecutionProvider" not in names:
        names.append("CPUExecutionProvider")
    providers: list[Any] = []
    for name in names:
        if name == "TensorrtExecutionProvider":
            # TRT EP builds an engine at session start: cache it beside the artefact
            cache = str(manifest.model_path.parent / "ort_trt_cache")
            providers.append((name, {"trt_engine_cache_enable": True, "trt_engine_cache_path": cache,
                                     "trt_fp16_enable": manifest.precision == "fp16"}))
        else:
            providers.append(name)
    return providers


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    OPTIONS = ("providers", "threads")

    def __init__(self, manifest: Manifest, *, providers: list[str] | None = None,
                 threads: int | None = None) -> None:
        super().__init__(manifest)
        check_backend(manifest, self.name)
        manifest.verify_file()
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable(
                f"the onnxruntime backend needs `pip install onnxruntime`: {exc}") from None
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        # ORT's workers spin after each run by default; on a few-core box they then steal the
        # cores that capture, encoding (and, in a benchmark, the next contender) need. Measured
        # here: PyTorch eager ran at 148 ms/frame right after spinning ORT, 88 ms without it.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        chosen = choose_providers(ort.get_available_providers(), providers, manifest)
        try:
            self._session = ort.InferenceSession(str(manifest.model_path), options, providers=chosen)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
            detail = " ".join(str(exc).split())[-300:]
            raise ArtefactError(f"ONNX Runtime cannot load {manifest.model_path}: {detail}; "
                                f"rebuild with {manifest.rebuild_hint()}") from None
        inputs = [i.name for i in self._session.get_inputs()]
        outputs = [o.name for o in self._session.get_outputs()]
        if manifest.input_name not in inputs or manifest.output_name not in outputs:
            raise ArtefactError(f"{manifest.model_path} has inputs {inputs} and outputs {outputs}, not the "
                                f"manifest's {manifest.input_name!r} -> {manifest.output_name!r}; "
                                f"rebuild with "
                                f"{manifest.rebuild_hint()}")
        self.providers = self._session.get_providers()
        self.device = {"TensorrtExecutionProvider": "GPU (TensorRT EP)",
                       "CUDAExecutionProvider": "GPU (CUDA EP)"}.get(self.providers[0], "CPU")
        log.info("onnxruntime: %s with %s", manifest.model_path.name, ", ".join(self.providers))

    def infer(self, frame: np.ndarray) -> np.ndarray:
        self._check_frame(frame)
        out = self._session.run([self.manifest.output_name], {self.manifest.input_name: frame[None]})[0]
        return labels_2d(out, self.manifest)

    def close(self) -> None:
        self._session = None
        super().close()

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["providers"] = self.providers
        return info
