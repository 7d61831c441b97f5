"""What the build side knows about one backend, in one class: `Compiler`.

A compiler says how an artefact of its backend is written (file extension, `compile`), which
TensorRT graph rules bind it (a TensorRT build stops on a violation; the others only record
it), whether FP16 would be faster than FP32 here (for `--precision auto`), where INT8 Q/DQ pairs
go by default, and what the accuracy gate runs for it (a calib.gate_backends.GateTarget). The
registry is build_engine/compilers/__init__.py; `Builder` looks a backend up there once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calib.gate_backends import GateRun

if TYPE_CHECKING:
    from runtime.backends import Runner

log = logging.getLogger(__name__)


@dataclass
class Written:
    """What `Compiler.compile` wrote beside the model file, and facts for the manifest."""

    companions: dict[str, str] = field(default_factory=dict)  # file name -> sha256 (OpenVINO's .bin)
    facts: dict[str, Any] = field(default_factory=dict)  # TensorRT version, GPU, workspace, ...


class Compiler:
    """One backend on the build side. Subclasses set the class attributes and `compile`."""

    name = ""
    extension = ""  # the model file's suffix
    qdq_placement = "tensorrt"  # INT8 Q/DQ placement by default (calib.qdq_placement.PLACEMENTS)
    graph_rules_bind = False  # TensorRT's parser rules stop the build (True) or are recorded (False)
    runs_here = True  # the written file can be run against PyTorch on this machine

    def compile(self, onnx_path: Path, target: Path, options: Any, output: Path) -> Written:
        """Write the model file at `target` (atomically) from the final ONNX graph. `options` are the
        build's (build_engine.api.BuildOptions); `output` is the artefact folder (for caches kept
        across builds)."""
        raise NotImplementedError

    def fp16_not_faster(self) -> str | None:
        """Why FP16 would run no faster than FP32 on this backend here; None where it would."""
        return None

    def cache_key_parts(self, options: Any) -> dict[str, Any]:
        """Build settings only this backend reads, so they are part of the cache key."""
        return {}

    def graph_rules(self, onnx_path: Path) -> dict[str, Any]:
        """TensorRT's parser rules on the final ONNX, offline, for the manifest: binding rules stop
        the build on a violation; otherwise it is recorded (this ONNX is what TensorRT would get)."""
        from build_engine.tensorrt_rules import check_file, record, require_pass

        if self.graph_rules_bind:
            return require_pass(onnx_path)
        result = record(check_file(onnx_path))
        if result["violations"]:
            log.warning("this graph would not parse on TensorRT: %s", result["first"][0])
        return result

    def open_compiled(self, model_path: Path, precision: str) -> Runner | None:
        """The written model file as an open Runner, to compare with PyTorch; None when it cannot
        run here."""
        if not self.runs_here:
            return None
        from runtime.backends import open_runner

        return open_runner(self.name, model_path, precision)

    # -- the accuracy gate (calib.gate_backends.GateTarget) ---------------------------------
    def open_gate_runner(self, path: str | Path, precision: str) -> Runner:
        """The backend itself, where it runs here."""
        from runtime.backends import open_runner

        return open_runner(self.name, path, precision)

    def what_ran(self, precision: str, runner: Runner) -> GateRun:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
