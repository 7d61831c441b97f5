"""Triton Python-backend model written by `python -m build_engine --triton-repo` (pspnet-rt).

It runs the artefact beside it (in this version folder, hashes checked) on pspnet-rt's own runtime
backend, so a CPU-only Triton serves exactly the class maps the in-process runtime computes. It is
a fixed file of the pspnet-rt package copied as it is: it reads only values (file names, a hint,
a count) from its config, never code.

Tensors cross the stub by DLPack: with numpy 2 in the stub's environment `pb_utils.Tensor(name,
array)` sends 0 bytes and `as_numpy()` returns garbage without an error, while `from_dlpack` is
exact with numpy 1 and 2.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


def _honour_pythonpath() -> None:
    """The stub's embedded interpreter ignores PYTHONPATH; apply it the way `python` would."""
    for entry in reversed(os.environ.get("PYTHONPATH", "").split(os.pathsep)):
        if entry and entry not in sys.path:
            sys.path.insert(0, entry)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        _honour_pythonpath()
        try:
            from artefact.manifest import load_manifest
            from runtime.backends import load_backend
        except ImportError as exc:
            raise pb_utils.TritonModelException(
                f"pspnet-rt is not importable by the server's Python ({sys.executable}): install it there "
                f"(pip install pspnet-rt) or put it on PYTHONPATH: {exc}") from None
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        folder = Path(__file__).resolve().parent
        manifest = folder / Path(params["pspnet_rt_artefact"]).name  # a name in this folder only
        options: dict = {"hint": params.get("pspnet_rt_hint") or "latency"}
        if params.get("pspnet_rt_requests"):
            options["requests"] = int(params["pspnet_rt_requests"])
        artefact = load_manifest(manifest)
        # an artefact built with --confidence serves its confidence map as a second output
        self.confidence_name = artefact.confidence_name
        options["confidence"] = bool(self.confidence_name)
        self.backend = load_backend(artefact, "auto", **options)
        self.input_name = self.backend.manifest.input_name
        self.output_name = self.backend.manifest.output_name

    def execute(self, requests: list) -> list:
        """Every frame of every request goes to the runtime backend's async slots, then results
        come back in order: a dynamically batched call keeps all the backend's requests busy."""
        backend = self.backend
        rows: list[tuple[int, np.ndarray]] = []
        failed: dict[int, str] = {}
        for r, request in enumerate(requests):
            try:
                batch = np.from_dlpack(pb_utils.get_input_tensor_by_name(request, self.input_name))
                if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
                    raise ValueError(f"expected uint8 Nx H x W x 3, got {batch.dtype} {batch.shape}")
                rows.extend((r, np.ascontiguousarray(frame)) for frame in batch)
            except Exception as exc:
                failed[r] = f"{type(exc).__name__}: {exc}"
        labels: dict[int, list[np.ndarray]] = {r: [] for r in range(len(requests))}
        confidence: dict[int, list[np.ndarray]] = {r: [] for r in range(len(requests))}

        def collect() -> None:
            done_r, out = backend.collect()
            labels[done_r].append(out)
            if self.confidence_name:
                confidence[done_r].append(backend.last_confidence)

        try:
            for r, frame in rows:
                if backend.in_flight >= backend.max_in_flight:
                    collect()
                backend.submit(frame, r)
            while backend.in_flight:
                collect()
        except Exception as exc:
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}"))
                    for _ in requests]
        responses = []
        for r in range(len(requests)):
            if r in failed:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(failed[r])))
                continue
            out = np.ascontiguousarray(np.stack(labels[r]))
            tensors = [pb_utils.Tensor.from_dlpack(self.output_name, out)]
            if self.confidence_name:
                tensors.append(pb_utils.Tensor.from_dlpack(self.confidence_name,
                                                           np.ascontiguousarray(np.stack(confidence[r]))))
            responses.append(pb_utils.InferenceResponse(tensors))
        return responses

    def finalize(self) -> None:
        self.backend.close()
