"""Backends behind one interface, and the only code that opens a model on a backend.

    load_backend(manifest) -> Backend        an artefact, streaming (submit/collect) or blocking
    open_runner(backend, path, precision)    a bare model file, blocking, every named output
    artefact_runner(manifest)                an artefact's model file as a Runner (e.g. for logits)

Each backend module has one loader (`load_session`, `compile_model`) that both use, and
imports its library lazily, so `import runtime.backends` costs nothing and a machine carries
only the runtime it uses. This package's public names are the seam other rooms (build_engine,
calib, benchmarks) import; nothing else in runtime/ is theirs to reach into.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from artefact.manifest import BACKENDS, Manifest, load_manifest
from runtime.backends.base import Backend, Collected, check_backend
from runtime.backends.runner import Prediction, Runner
from runtime.errors import UsageError

log = logging.getLogger(__name__)

__all__ = ["BACKENDS", "Backend", "Collected", "Prediction", "Runner", "artefact_runner", "backend_class",
           "check_backend", "check_model_agrees", "connect_backend", "is_remote", "load_backend",
           "open_runner", "runner_class"]


# backend -> (its module, its Backend class, its Runner class or None); imported on first use,
# so a machine needs only the libraries of the backends it runs. A new backend registers here.
BACKEND_MODULES: dict[str, tuple[str, str, str | None]] = {
    "openvino": ("runtime.backends.openvino_backend", "OpenVINOBackend", "OpenVINORunner"),
    "onnxruntime": ("runtime.backends.onnxruntime_backend", "OnnxRuntimeBackend", "OnnxRuntimeRunner"),
    "tensorrt": ("runtime.backends.tensorrt_backend", "TensorRTBackend", None),
}


def _registered(name: str) -> tuple[Any, str, str | None]:
    if name not in BACKEND_MODULES:
        raise UsageError(f"unknown backend {name!r}; choose auto, {', '.join(BACKEND_MODULES)}")
    module, backend, runner = BACKEND_MODULES[name]
    return importlib.import_module(module), backend, runner


def backend_class(name: str) -> type[Backend]:
    module, backend, _ = _registered(name)
    return getattr(module, backend)


def runner_class(name: str) -> type[Runner]:
    module, _, runner = _registered(name)
    if runner is None:
        raise UsageError(f"a bare {name} model file cannot be run on its own: pass its artefact's manifest "
                         "(NAME.json), which names the TensorRT version and GPU the engine needs")
    return getattr(module, runner)


def _accepted(cls: type, opts: dict[str, Any]) -> dict[str, Any]:
    """Options a class takes; the others are ignored, so one caller can pass them all."""
    ignored = sorted(set(opts) - set(cls.OPTIONS))
    if ignored:
        log.debug("%s ignores options %s", cls.__name__, ignored)
    return {k: v for k, v in opts.items() if k in cls.OPTIONS and v is not None}


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
    return cls(manifest, **_accepted(cls, opts))


def open_runner(backend: str, path: str | Path, precision: str = "fp32", **opts: Any) -> Runner:
    """A bare model file on `backend` (openvino, onnxruntime), opened and ready: `with` it, or call
    deactivate(). On the CPU unless `device` says otherwise; options a runner does not take are
    ignored. Raises ArtefactError when the file cannot be opened."""
    cls = runner_class(backend)
    return cls(path, precision, **_accepted(cls, opts)).activate()


def artefact_runner(manifest: Manifest | str | Path, **opts: Any) -> Runner:
    """An artefact's model file as a Runner, after the manifest's own checks (file hashes), with
    the manifest's tensor names: for callers that need outputs the streaming backend does not
    return, such as logits."""
    if not isinstance(manifest, Manifest):
        manifest = load_manifest(manifest)
    manifest.verify_file()
    cls = runner_class(manifest.backend)
    names = {"input_name": manifest.input_name, "labels_name": manifest.output_name}
    if manifest.logits_name:
        names["logits_name"] = manifest.logits_name
    runner = cls(manifest.model_path, manifest.precision, **_accepted(cls, opts), **names).activate()
    from runtime.backends.contract import check_contract

    try:
        check_contract(manifest, runner.facts())
    except BaseException:
        runner.deactivate()
        raise
    return runner


def is_remote(engine: str | None) -> bool:
    """`--engine triton://HOST:PORT/MODEL`: a served model rather than an artefact file."""
    return bool(engine) and str(engine).startswith("triton://")


def connect_backend(url: str, **opts: Any) -> Backend:
    """A client backend for a served model; its manifest comes from the server."""
    from runtime.backends.triton_backend import TritonBackend

    return TritonBackend(url, **_accepted(TritonBackend, opts))


def check_model_agrees(manifest: Manifest) -> bool:
    """ArtefactError unless the manifest describes its model file (input size, dynamic shape, class
    count: runtime.backends.contract), read without running the model; False where this machine
    cannot read that model file (a TensorRT engine, a backend not installed), True when checked."""
    from runtime.backends.contract import check_contract, read_facts

    facts = read_facts(manifest)
    if facts is None:
        return False
    check_contract(manifest, facts)
    return True
