"""`build_artefact`: model -> verified fused ONNX -> precision -> backend artefact + manifest.

Every step is cached by a key of all its inputs (weights hash, spec, size, precision, backend,
calibration settings, tool versions): a second identical build returns at once.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from artefact.files import cache_key, sha256_file
from artefact.manifest import ArtefactError, Manifest, load_manifest
from build_engine import commit, environment
from build_engine.errors import BuildError
from build_engine.verify import FP32_MIN_AGREEMENT, Agreement, compare, verification_frames

log = logging.getLogger(__name__)
CODE_VERSION = "2"  # bump when the export graph changes, so caches rebuild
# $PSPNET_RT_CACHE moves every cache (artefacts here, demo clips in segdata.clip_cache) at once.
DEFAULT_OUTPUT = Path(os.environ.get("PSPNET_RT_CACHE", Path.home() / ".cache" / "pspnet-rt")) / "artefacts"
EXTENSIONS = {"onnxruntime": ".onnx", "openvino": ".xml", "tensorrt": ".engine"}


@dataclass
class BuildOptions:
    model: str = "demo"
    weights: str | None = None
    precision: str = "fp32"
    backend: str = "auto"
    input_size: tuple[int, int] | None = None
    dynamic: bool = False
    with_logits: bool = False
    output: str | None = None
    force: bool = False
    calib_data: str | None = None
    calib_images: int = 200
    calib_method: str = "percentile"
    eval_data: str | None = None
    eval_images: int = 48
    max_miou_drop: float = 1.0
    fallback: bool = False
    workspace_mb: int = 1024
    verify_frames: int = 4
    command: str | None = None
    backend_resolved: str = ""
    extra: dict = field(default_factory=dict)


def build_artefact(model: str = "demo", precision: str = "fp32", backend: str = "auto",
                   input_size: tuple[int, int] | None = None, output: str | Path | None = None,
                   force: bool = False, **kwargs) -> Path:
    """Build (or find in the cache) an artefact and return its manifest's path."""
    options = BuildOptions(model=model, precision=precision, backend=backend,
                           input_size=tuple(input_size) if input_size else None,
                           output=str(output) if output else None, force=force, **kwargs)
    return Builder(options).run()


class Builder:
    """One build; its steps are methods so each can be run and inspected on its own."""

    def __init__(self, options: BuildOptions) -> None:
        from pspnet.zoo import get_spec

        self.options = options
        if options.weights and not Path(options.weights).is_file():
            from pspnet.errors import CheckpointError

            raise CheckpointError(f"weights file {options.weights} does not exist")
        if options.precision != "fp32":  # before any export: a typo here must not cost a build
            from calib.sources import check_source

            for flag, source in (("--calib-data", options.calib_data), ("--eval-data", options.eval_data)):
                if source:
                    check_source(source, flag)
        self.backend = environment.resolve_backend(options.backend)
        if options.weights and Path(options.weights).suffix.lower() in (".h5", ".hdf5") \
                and options.model == "demo":
            from pspnet.keras_import import keras_spec_from_h5

            self.spec = keras_spec_from_h5(options.weights)
        else:
            self.spec = get_spec(options.model)
        if options.input_size:
            self.spec = self.spec.with_size(*options.input_size)
        self.height, self.width = self.spec.input_size
        self.output = Path(options.output) if options.output else DEFAULT_OUTPUT
        size = "dyn" if options.dynamic else f"{self.height}x{self.width}"
        # INT8 artefacts of different calibration methods live side by side (to be compared).
        tag = f"int8-{options.calib_method}" if options.precision == "int8" else options.precision
        self.name = f"{self.spec.name}-{size}-{tag}-{self.backend}"
        self.manifest_path = self.output / f"{self.name}.json"

    # -- cache ---------------------------------------------------------------------------
    def weights_file(self) -> Path | None:
        if self.options.weights:
            return Path(self.options.weights)
        path = self.spec.weights_path
        return path if path is not None and path.is_file() else None

    def key(self) -> str:
        weights = self.weights_file()
        versions = environment.tool_versions()
        parts = {
            "code": CODE_VERSION,
            "spec": dataclasses.asdict(self.spec),
            "weights": sha256_file(weights) if weights else "random",
            "precision": self.options.precision,
            "backend": self.backend,
            "dynamic": self.options.dynamic,
            "logits": self.options.with_logits,
            "tools": {k: versions[k] for k in ("torch", "onnx", "onnxruntime", "openvino")},
        }
        if self.options.precision != "fp32":
            parts["calib"] = [self.options.calib_data, self.options.calib_images,
                              self.options.calib_method, self.options.eval_data,
                              self.options.eval_images, self.options.max_miou_drop,
                              self.options.fallback]
        if self.backend == "tensorrt":
            parts["trt"] = self.options.workspace_mb
        return cache_key(parts)

    def cached(self, key: str) -> Path | None:
        if self.options.force or not self.manifest_path.is_file():
            return None
        try:
            manifest = load_manifest(self.manifest_path)
            manifest.verify_file()
        except ArtefactError as exc:
            log.info("cached artefact unusable, rebuilding: %s", exc)
            return None
        return self.manifest_path if manifest.build.get("cache_key") == key else None

    # -- the build -----------------------------------------------------------------------
    def run(self) -> Path:
        """Build unless cached; the artefact that was there stays valid until the new one,
        complete and verified, replaces it (build_engine.commit), whatever interrupts the build."""
        key = self.key()
        hit = self.cached(key)
        if hit is not None:
            log.info("cache hit: %s", hit)
            return hit
        started = time.perf_counter()
        commit.prepare_output(self.output)
        with commit.folder_lock(self.output):
            hit = self.cached(key)  # built by the build we waited for
            if hit is not None:
                return hit
            commit.sweep_stale(self.output)
            with commit.work_dir(self.output, self.name) as work:
                manifest, files = self._build(work, key)
                manifest.build["seconds"] = round(time.perf_counter() - started, 2)
                self._commit(manifest, files)
        return self.manifest_path

    def _commit(self, manifest: Manifest, files: dict[Path, str]) -> None:
        """Versioned model files in, then the manifest (the commit point), then the old files out."""
        old = commit.manifest_files(self.manifest_path) or set()
        commit.move_in(files, self.output)
        manifest.save(self.manifest_path)
        commit.remove_superseded(self.output, old, keep=set(files.values()))

    def _build(self, work: Path, key: str) -> tuple[Manifest, dict[Path, str]]:
        """The whole build inside `work`; returns the manifest and {work file: final name}."""
        import onnx

        from build_engine.export import check_size, export_fused_onnx, torch_reference
        from calib.onnx_tools import keep_outputs, node_count, slim
        from pspnet.build import load_model

        for note in check_size(self.height, self.width, self.spec.bins):
            log.warning(note)
        steps = tqdm(total=5, desc=f"build {self.name}", unit="step", disable=None)
        net, weights_info = load_model(self.spec, self.weights_file())

        steps.set_postfix_str("export")
        t0 = time.perf_counter()
        raw = export_fused_onnx(net, self.spec, work / "raw.onnx", self.height, self.width,
                                self.options.dynamic)
        export_s = time.perf_counter() - t0
        steps.update()

        steps.set_postfix_str("slim")
        graph = onnx.load(str(raw))
        before = node_count(graph)
        outputs = ["labels", "logits"]
        graph = slim(keep_outputs(graph, outputs))
        fp32_onnx = work / "fp32.onnx"
        onnx.save(graph, str(fp32_onnx))
        after = node_count(graph)
        tqdm.write(f"exported in {export_s:.1f} s; onnxslim: {before} -> {after} nodes", file=sys.stderr)
        steps.update()

        steps.set_postfix_str("verify")
        frames = verification_frames(self.height, self.width, self.options.verify_frames)
        reference = torch_reference(net, self.spec, frames)
        from calib.runners import onnxruntime_predictor

        ort_run = onnxruntime_predictor(fp32_onnx)
        onnx_agreement = compare(reference, [ort_run(f) for f in frames])
        tqdm.write(f"ONNX Runtime vs PyTorch: {onnx_agreement.summary()}", file=sys.stderr)
        if onnx_agreement.pixel_agreement < FP32_MIN_AGREEMENT:
            raise BuildError(f"the exported ONNX disagrees with PyTorch: {onnx_agreement.summary()} "
                             f"(need >= {FP32_MIN_AGREEMENT * 100:.1f} %)")
        steps.update()

        steps.set_postfix_str(self.options.precision)
        from calib.precision import PrecisionResult, apply_precision

        final_outputs = outputs if self.options.with_logits else ["labels"]
        self.options.backend_resolved = self.backend
        precision: PrecisionResult = apply_precision(fp32_onnx, work, self.options, self.spec,
                                                     final_outputs, self.output / "calibration")
        steps.update()

        steps.set_postfix_str(f"compile {self.backend}")
        model = work / f"model{EXTENSIONS[self.backend]}"
        companions = self._compile(precision.onnx_path, model)
        backend_agreement = self._verify_backend(model, frames, reference)
        steps.update()
        steps.close()
        if backend_agreement is not None:
            tqdm.write(f"{self.backend} {self.options.precision} vs PyTorch FP32: "
                       f"{backend_agreement.summary()}", file=sys.stderr)
            if self.options.precision == "fp32" and \
                    backend_agreement.pixel_agreement < FP32_MIN_AGREEMENT:
                raise BuildError(f"{self.backend} FP32 disagrees with PyTorch: "
                                 f"{backend_agreement.summary()}")

        versions = environment.tool_versions()
        versions.update(precision.tools)
        if self.backend == "tensorrt":
            versions.update(self._trt_facts)
        # final names carry the model's hash: they never overwrite what the old manifest names
        model_sha = sha256_file(model)
        files = {model.parent / n: commit.versioned_name(self.name, model_sha, Path(n).suffix)
                 for n in companions}
        files[model] = commit.versioned_name(self.name, model_sha, model.suffix)
        manifest = Manifest(
            name=self.name, model=self.spec.name, backend=self.backend,
            precision=self.options.precision, model_file=files[model],
            classes=list(self.spec.classes), palette=[list(c) for c in self.spec.palette],
            input_size=[-1, -1] if self.options.dynamic else [self.height, self.width],
            mean=list(self.spec.mean), std=list(self.spec.std),
            channel_order=self.spec.channel_order,
            logits_name="logits" if self.options.with_logits else None,
            dynamic_shape=self.options.dynamic,
            model_sha256=model_sha,
            onnx_sha256=sha256_file(precision.onnx_path),
            companion_files={files[model.parent / n]: digest for n, digest in companions.items()},
            weights=weights_info,
            calibration=precision.calibration,
            verification={
                "onnx_vs_torch": onnx_agreement.to_dict(),
                "backend_vs_torch": backend_agreement.to_dict() if backend_agreement else None,
                "export_seconds": round(export_s, 2),
                "nodes_before_slim": before, "nodes_after_slim": after,
                "exporter": "dynamo" if self.options.dynamic else "torchscript",
            },
            accuracy=precision.accuracy,
            tools=versions,
            build={"command": self.options.command or self.command_line(), "cache_key": key,
                   "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        )
        return manifest, files

    def _compile(self, onnx_path: Path, model: Path) -> dict[str, str]:
        """Write the backend's model file to `model` (in the work folder); return its companion
        files (beside it) as {name: sha256}."""
        self._trt_facts: dict = {}
        if self.backend == "onnxruntime":
            shutil.copyfile(onnx_path, model)
            return {}
        if self.backend == "openvino":
            from build_engine.openvino_compile import onnx_to_ir

            _, bin_path = onnx_to_ir(onnx_path, model)
            return {bin_path.name: sha256_file(bin_path)}
        from build_engine.tensorrt_builder import TensorRTOptions, build_engine
        from runtime.cuda import device_info

        options = TensorRTOptions(workspace_mb=self.options.workspace_mb,
                                  timing_cache=self.output / "timing.cache")
        facts = build_engine(onnx_path, model, options)
        facts["gpu"] = device_info()
        self._trt_facts = facts
        return {}

    def _verify_backend(self, model: Path, frames: list, reference: list) -> Agreement | None:
        """Run the new artefact where this machine can (not TensorRT without a GPU)."""
        if self.backend == "tensorrt":
            return None  # verified by the gpu-marked tests and the runtime's first frames
        from calib.runners import predictor_for

        run = predictor_for(self.backend, model, self.options.precision)
        return compare(reference, [run(f) for f in frames])

    def command_line(self) -> str:
        o = self.options
        parts = ["python", "-m", "build_engine", "--model", self.spec.name, "--precision",
                 o.precision, "--backend", self.backend,
                 "--input-size", f"{self.height}x{self.width}"]
        if o.weights:
            parts += ["--weights", o.weights]
        if o.dynamic:
            parts.append("--dynamic")
        if o.output:
            parts += ["--output", o.output]
        return shlex.join(parts)
