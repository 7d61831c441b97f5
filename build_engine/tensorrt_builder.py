"""ONNX -> TensorRT engine with one strongly-typed builder for TensorRT 10 and 11.

Precision lives in the ONNX (float16 graph for FP16, Q/DQ nodes for INT8), so there are no
precision flags here: TensorRT 11 removed them and TensorRT 10 accepts STRONGLY_TYPED.
Nothing in this module has run on the machines this project is developed on (no GPU): it is
written to the TensorRT 10.16 / 11.4 Python API and tested by `gpu`-marked tests.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from artefact.files import atomic_write_bytes

log = logging.getLogger(__name__)


class TensorRTUnavailable(RuntimeError):
    """TensorRT or a CUDA GPU is missing; the message says how to install it."""


INSTALL_HINT = ("TensorRT is not installed: `pip install pspnet-rt[tensorrt]` with NVIDIA's "
                "package index (see docs/install.md, 'TensorRT'), on a machine with an NVIDIA GPU")


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailable(INSTALL_HINT) from exc
    return trt


@dataclass
class TensorRTOptions:
    workspace_mb: int = 1024  # small on Jetson: big workspaces get builds killed on 2-4 GB boards
    optimization_level: int = 3  # 0-5
    timing_cache: Path | None = None
    version_compatible: bool = False
    hardware_compatibility: str | None = None  # "ampere+" builds for every GPU from Ampere on
    # Dynamic H/W: (min, opt, max) per side; ignored for static ONNX.
    min_hw: tuple[int, int] = (240, 320)
    opt_hw: tuple[int, int] = (512, 1024)
    max_hw: tuple[int, int] = (1024, 2048)


def _progress_monitor(trt):
    """An IProgressMonitor that logs phases, so a minutes-long build never sits silent."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._bars: dict[str, object] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            from tqdm import tqdm

            self._bars[phase_name] = tqdm(total=num_steps, desc=f"TensorRT {phase_name}",
                                          leave=parent_phase is None, unit="step")

        def step_complete(self, phase_name, step):
            bar = self._bars.get(phase_name)
            if bar is not None:
                bar.n = step + 1
                bar.refresh()
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            bar = self._bars.pop(phase_name, None)
            if bar is not None:
                bar.close()

    return Monitor()


def build_engine(onnx_path: str | Path, engine_path: str | Path,
                 options: TensorRTOptions | None = None) -> dict:
    """Parse, build and atomically write the engine; returns facts for the manifest.

    The graph is checked against TensorRT's parser rules first (offline, build_engine/
    tensorrt_rules.py), so a refused node is named in one line before TensorRT is loaded.
    """
    from build_engine.tensorrt_rules import require_pass

    require_pass(onnx_path)
    trt = import_tensorrt()
    options = options or TensorRTOptions()
    logger = trt.Logger(trt.Logger.WARNING)
    try:
        builder = trt.Builder(logger)
    except (RuntimeError, TypeError) as exc:  # no GPU/driver: "CUDA initialization failure"
        raise TensorRTUnavailable(f"TensorRT cannot reach a CUDA GPU here ({exc})") from exc
    flag = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flag)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: " + "; ".join(errors[:5]))

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    config.builder_optimization_level = options.optimization_level
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if options.hardware_compatibility == "ampere+":
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    config.progress_monitor = _progress_monitor(trt)

    cache_bytes = b""
    if options.timing_cache and Path(options.timing_cache).is_file():
        cache_bytes = Path(options.timing_cache).read_bytes()
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)

    _add_profile(trt, builder, network, config, options)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}; rerun with -v "
                           "for the builder log")
    atomic_write_bytes(engine_path, bytes(serialized))
    if options.timing_cache:
        atomic_write_bytes(options.timing_cache, bytes(config.get_timing_cache().serialize()))
    return {"tensorrt": trt.__version__, "workspace_mb": options.workspace_mb,
            "optimization_level": options.optimization_level,
            "timing_cache": str(options.timing_cache) if options.timing_cache else None,
            "engine_bytes": os.path.getsize(engine_path)}


def _add_profile(trt, builder, network, config, options: TensorRTOptions) -> None:
    """One optimisation profile for an NHWC uint8 input whose H/W are dynamic (-1)."""
    tensor = network.get_input(0)
    shape = tuple(tensor.shape)
    if all(d > 0 for d in shape):
        return
    profile = builder.create_optimization_profile()
    (h0, w0), (h1, w1), (h2, w2) = options.min_hw, options.opt_hw, options.max_hw
    profile.set_shape(tensor.name, (1, h0, w0, 3), (1, h1, w1, 3), (1, h2, w2, 3))
    config.add_optimization_profile(profile)
