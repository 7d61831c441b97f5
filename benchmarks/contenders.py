"""The things a benchmark compares: PyTorch baselines and artefacts on their runtime backends.

Why a spec/instance split: a `ContenderSpec` is plain data (JSON-able), so a subprocess can
open the same contender to measure its peak memory alone; `open_contender` turns it into
something with `infer(model_input) -> labels`. Artefacts run through `runtime.backends`, the
code users run, never through a benchmark-only path. Every contender carries the precision
that REALLY ran (OpenVINO reports its compiled INFERENCE_PRECISION_HINT), because OpenVINO
silently runs "FP32" in BF16 on CPUs with BF16 units unless told f32.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("benchmarks")

BACKEND_NAMES = {"pytorch": "PyTorch", "openvino": "OpenVINO", "onnxruntime": "ONNX Runtime",
                 "tensorrt": "TensorRT"}
# The default grid: ONNX Runtime FP16 is left out because its CPU provider has few FP16 kernels
# (it runs the graph through casts, slower than FP32); ask for it with --backends/--precisions.
DEFAULT_COMBOS = (("openvino", "fp32"), ("openvino", "fp16"), ("openvino", "int8"),
                  ("onnxruntime", "fp32"), ("onnxruntime", "int8"),
                  ("tensorrt", "fp32"), ("tensorrt", "fp16"), ("tensorrt", "int8"))
PYTORCH_KINDS = ("pytorch-eager", "pytorch-peer")


@dataclass
class ContenderSpec:
    """What to run, as plain data. `status` is "ok", "not available here: ..." or "failed: ..."."""

    name: str  # stable key: pytorch-eager-fp32, openvino-int8, ...
    kind: str  # pytorch-eager | pytorch-peer | artefact
    backend: str  # pytorch | openvino | onnxruntime | tensorrt
    precision: str  # what was asked for (the manifest's precision for artefacts)
    model: str
    input_size: tuple[int, int]
    manifest: str | None = None
    compile: bool = False
    weights: str | None = None  # "random" where no trained weights exist
    weights_file: str | None = None  # --weights CKPT instead of the zoo's shipped weights
    status: str = "ok"
    build_s: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContenderSpec:
        data = dict(data)
        data["input_size"] = tuple(data["input_size"])
        return cls(**data)


def label_for(backend: str, precision: str, precision_ran: str | None, kind: str = "artefact",
              compiled: bool = False) -> str:
    """A figure's caption, naming what really ran where it differs from what was asked."""
    if kind == "pytorch-eager":
        return "PyTorch eager FP32"
    if kind == "pytorch-peer":
        return "PyTorch channels_last+BF16 autocast" + (" +compile" if compiled else "")
    base = f"{BACKEND_NAMES.get(backend, backend)} {precision.upper()}"
    ran = (precision_ran or "").lower()
    if precision == "int8" and ran.startswith("int8/"):
        ran = ran.split("/", 1)[1]  # the runtime reports "int8/<float type of the unquantized layers>"
    if not ran or ran == precision.lower() or (precision == "fp32" and ran == "f32"):
        return base
    if precision == "fp16" and ran in ("bf16", "f32"):
        return f"{base}→{ran.upper()}"  # no FP16 units: OpenVINO runs the FP16 model in BF16
    if precision == "int8":
        return f"{base} (+{ran.upper()} float layers)" if ran != "int8" else base
    return f"{base} (ran {ran.upper()}!)"


# ---------------------------------------------------------------------------- construction
def pytorch_specs(model: str, size: tuple[int, int], compile_peer: bool = False,
                  weights_file: str | None = None) -> list[ContenderSpec]:
    """The users' baseline (eager FP32) and the strongest plain-PyTorch peer."""
    common: dict[str, Any] = {"weights": weights_kind(model, weights_file), "weights_file": weights_file}
    specs = [ContenderSpec("pytorch-eager-fp32", "pytorch-eager", "pytorch", "fp32", model, size, **common),
             ContenderSpec("pytorch-peer-bf16", "pytorch-peer", "pytorch", "bf16", model, size, **common)]
    if compile_peer:
        specs.append(ContenderSpec("pytorch-peer-bf16-compiled", "pytorch-peer", "pytorch", "bf16", model,
                                   size, compile=True, **common))
    return specs


def weights_kind(model: str, weights_file: str | None = None) -> str:
    """"trained (file)" or "random": the output must say when figures come from random weights."""
    from pspnet.zoo import get_spec

    if weights_file:
        return f"file ({Path(weights_file).name})"
    path = get_spec(model).weights_path
    return f"trained ({path.name})" if path is not None and path.is_file() else "random"


def unavailable_reason(backend: str) -> str | None:
    from devices import backend_usable

    if backend_usable(backend):
        return None
    if backend == "tensorrt":
        return "not available here: needs an NVIDIA GPU with TensorRT"
    return f"not available here: `pip install {backend}`"


def artefact_spec(model: str, backend: str, precision: str, size: tuple[int, int],
                  output: str | Path | None = None, weights_file: str | None = None,
                  **build_options: Any) -> ContenderSpec:
    """Build (or find in the cache) one artefact; a failed build becomes a reported status."""
    name = f"{backend}-{precision}"
    spec = ContenderSpec(name, "artefact", backend, precision, model, size,
                         weights=weights_kind(model, weights_file), weights_file=weights_file)
    if weights_file:
        build_options["weights"] = weights_file
    reason = unavailable_reason(backend)
    if reason:
        spec.status = reason
        return spec
    from build_engine.api import build_artefact

    t0 = time.perf_counter()
    try:
        path = build_artefact(model, precision, backend, size, output=output, **build_options)
    except Exception as exc:  # a failed gate or build is a result to report, not a crash
        log.debug("build of %s failed", name, exc_info=True)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        spec.status = f"failed: {type(exc).__name__}: {first[:300]}"
        return spec
    spec.build_s = round(time.perf_counter() - t0, 2)
    spec.manifest = str(path)
    return spec


def manifest_spec(path: str | Path) -> ContenderSpec:
    """A contender for an artefact the user built (`--engine`)."""
    from artefact.manifest import load_manifest

    m = load_manifest(path)
    spec = ContenderSpec(f"{m.backend}-{m.precision}", "artefact", m.backend, m.precision, m.model,
                         (m.height, m.width), manifest=str(m.path),
                         weights="random" if m.weights.get("source") == "random" else "trained (file)")
    reason = unavailable_reason(m.backend)
    if reason:
        spec.status = reason
    return spec


def select_combos(backends: list[str] | None, precisions: list[str] | None) -> list[tuple[str, str]]:
    """The default grid, or the product of what the user named."""
    if backends is None and precisions is None:
        return list(DEFAULT_COMBOS)
    bs = backends or ["openvino", "onnxruntime", "tensorrt"]
    ps = precisions or ["fp32", "fp16", "int8"]
    return [(b, p) for b in bs for p in ps]


def unique_names(specs: list[ContenderSpec]) -> list[ContenderSpec]:
    """Two --engine files of the same backend/precision still get distinct keys."""
    seen: dict[str, int] = {}
    for spec in specs:
        n = seen.get(spec.name, 0)
        seen[spec.name] = n + 1
        if n:
            spec.name = f"{spec.name}-{n + 1}"
    return specs


# ------------------------------------------------------------------------------- instances
class Contender:
    """An opened contender: `infer(uint8 BGR HxWx3 at input_size) -> uint8 HxW labels`."""

    def __init__(self, spec: ContenderSpec) -> None:
        self.spec = spec
        self.precision_ran = spec.precision
        self.startup_s = 0.0
        self.info: dict[str, Any] = {}

    @property
    def label(self) -> str:
        return label_for(self.spec.backend, self.spec.precision, self.precision_ran, self.spec.kind,
                         self.spec.compile)

    def infer(self, model_input: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {**self.spec.to_dict(), "label": self.label, "precision_ran": self.precision_ran,
                "startup_s": round(self.startup_s, 3), **self.info}


class TorchContender(Contender):
    """The model PyTorch users run: the very FusedSegmenter that is exported (normalise, net,
    bilinear resize, argmax), eager FP32, or channels_last + BF16 autocast (+ torch.compile)."""

    def __init__(self, spec: ContenderSpec) -> None:
        super().__init__(spec)
        import torch

        from build_engine.export import FusedSegmenter
        from devices import usable_cores
        from pspnet.build import load_model
        from pspnet.zoo import get_spec

        t0 = time.perf_counter()
        # frames may be read-only views (cached clips); the model never writes to its input
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        torch.set_num_threads(usable_cores())
        model_spec = get_spec(spec.model).with_size(*spec.input_size)
        net, weights = load_model(model_spec, self.spec.weights_file)
        self.peer = spec.kind == "pytorch-peer"
        if self.peer:
            net = net.to(memory_format=torch.channels_last)
            self.precision_ran = "bf16" if torch.backends.mkldnn.is_available() else "fp32"
        module = FusedSegmenter(net, model_spec).eval()
        self.module = torch.compile(module) if spec.compile else module
        self._torch = torch
        self.info = {"weights": weights.get("source"), "threads": torch.get_num_threads(),
                     "memory_format": "channels_last" if self.peer else "contiguous"}
        self.startup_s = time.perf_counter() - t0

    def infer(self, model_input: np.ndarray) -> np.ndarray:
        torch = self._torch
        t0 = time.perf_counter()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.peer):
            labels, _ = self.module(torch.from_numpy(model_input[None]))
        if self.spec.compile and "compile_s" not in self.info:  # torch.compile compiles on the first call
            self.info["compile_s"] = round(time.perf_counter() - t0, 2)
        return labels[0].numpy()


class ArtefactContender(Contender):
    """An artefact on its runtime backend, blocking `infer` with the latency hint (one frame at
    a time, which is what a per-frame latency figure means)."""

    def __init__(self, spec: ContenderSpec) -> None:
        super().__init__(spec)
        from artefact.manifest import load_manifest
        from runtime.backends import load_backend

        t0 = time.perf_counter()
        manifest = load_manifest(spec.manifest or "")
        self.backend = load_backend(manifest, hint="latency")
        self.startup_s = time.perf_counter() - t0
        self.precision_ran = self.backend.precision_ran
        info = self.backend.describe()
        self.info = {k: info[k] for k in ("device", "artefact", "providers", "hint", "compile_s")
                     if k in info}
        self.info["weights"] = manifest.weights.get("source")

    def infer(self, model_input: np.ndarray) -> np.ndarray:
        return self.backend.infer(model_input)

    def close(self) -> None:
        self.backend.close()


def open_contenders(specs: list[ContenderSpec]) -> list[Contender]:
    """Every runnable spec opened; one that fails to open keeps a 'failed: cannot open' status."""
    opened = []
    for spec in specs:
        if not spec.ok:
            continue
        try:
            opened.append(open_contender(spec))
        except Exception as exc:
            spec.status = f"failed: cannot open: {type(exc).__name__}: {str(exc)[:300]}"
    return opened


def open_contender(spec: ContenderSpec) -> Contender:
    if not spec.ok:
        raise ValueError(f"{spec.name} cannot run: {spec.status}")
    if spec.kind in PYTORCH_KINDS:
        return TorchContender(spec)
    return ArtefactContender(spec)
