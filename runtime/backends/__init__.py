"""Backends behind one interface: `load_backend(manifest) -> Backend` (see base.Backend).

Each backend module imports its library lazily, so `import runtime.backends` costs nothing and
a machine carries only the runtime it uses.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from artefact.manifest import BACKENDS, Manifest, load_manifest
from runtime.backends.base import Backend, check_backend
from runtime.errors import UsageError

log = logging.getLogger(__name__)

__all__ = ["BACKENDS", "Backend", "backend_class", "check_backend", "connect_backend", "is_remote",
           "load_backend"]


def backend_class(name: str) -> type[Backend]:
    if name == "openvino":
        from runtime.backends.openvino_backend import OpenVINOBackend
        return OpenVINOBackend
    if name == "onnxruntime":
        from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
        return OnnxRuntimeBackend
    if name == "tensorrt":
        from runtime.backends.tensorrt_backend import TensorRTBackend
        return TensorRTBackend
    raise UsageError(f"unknown backend {name!r}; choose auto, {', '.join(BACKENDS)}")


def load_backend(manifest: Manifest | str | Path, backend: str = "auto", **opts: Any) -> Backend:
    """Open an artefact on its backend ('auto' = the one the manifest names).

    Refuses (ArtefactError, with the rebuild command) an artefact built for another backend,
    whose file hash differs, or - for TensorRT - built for another TensorRT version or GPU.
    Options a backend does not take are ignored, so one CLI can pass them all.
    """
    if not isinstance(manifest, Manifest):
        manifest = load_manifest(manifest)
    name = manifest.backend if backend in (None, "", "auto") else backend
    cls = backend_class(name)
    check_backend(manifest, name)
    accepted = {k: v for k, v in opts.items() if k in cls.OPTIONS and v is not None}
    ignored = sorted(set(opts) - set(cls.OPTIONS))
    if ignored:
        log.debug("%s ignores options %s", name, ignored)
    return cls(manifest, **accepted)


def is_remote(engine: str | None) -> bool:
    """`--engine triton://HOST:PORT/MODEL`: a served model rather than an artefact file."""
    return bool(engine) and str(engine).startswith("triton://")


def connect_backend(url: str, **opts: Any) -> Backend:
    """A client backend for a served model; its manifest comes from the server."""
    from runtime.backends.triton_backend import TritonBackend

    accepted = {k: v for k, v in opts.items() if k in TritonBackend.OPTIONS and v is not None}
    return TritonBackend(url, **accepted)
