"""What the accuracy gate needs from the backend an artefact targets: a `GateTarget`.

The gate must measure the arithmetic the artefact will run, in words that say truthfully what
ran. That knowledge is the build side's, one place per backend (build_engine/compilers/): each
compiler is a GateTarget and registers itself here, so calib gates any backend the build side
knows without importing it (calib sits below build_engine).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from runtime.backends import Runner


@dataclass
class GateRun:
    """What one gate run was, for the manifest's accuracy record."""

    description: str  # accuracy.gate_backend
    float_precision: str  # the float arithmetic of the candidate's float layers
    facts: dict[str, Any] = field(default_factory=dict)  # e.g. fp16_headroom


class GateTarget(Protocol):
    """The backend an artefact is built for, as the gate sees it."""

    name: str  # the backend (openvino, onnxruntime, tensorrt)
    qdq_placement: str  # its INT8 Q/DQ placement when none is asked for (calib.qdq_placement)

    def open_gate_runner(self, path: str | Path, precision: str) -> Runner:
        """An open Runner that computes as an artefact of this backend will (`with` it)."""

    def what_ran(self, precision: str, runner: Runner) -> GateRun:
        """The words for what `runner` (opened by open_gate_runner) computed."""


_TARGETS: dict[str, GateTarget] = {}


def register_gate_target(target: GateTarget) -> None:
    _TARGETS[target.name] = target


def gate_target(backend: str | GateTarget) -> GateTarget:
    """The registered target of a backend name (a target is returned as it is)."""
    if not isinstance(backend, str):
        return backend
    if backend not in _TARGETS:
        known = ", ".join(sorted(_TARGETS)) or "none (import build_engine.compilers, which registers them)"
        raise ValueError(f"no accuracy gate is registered for backend {backend!r}; registered: {known}")
    return _TARGETS[backend]
