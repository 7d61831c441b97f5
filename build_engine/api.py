"""`build_artefact`: model -> verified fused ONNX -> precision -> backend artefact + manifest.

A build is a chain of steps that take and return values, so each can be run and looked at
on its own (`python -m build_engine --stop-after STEP` keeps that step's output). The steps are
one ordered table, `STEP_TABLE`, that a build, `--stop-after` and `--precision auto` all walk:

    export    PyTorch -> fused ONNX (labels + logits)                   Exported
    slim      onnxslim clean-up                                          Slimmed
    verify    ONNX Runtime vs PyTorch on street frames                   Verified
    quantize  the precision's graph (FP32 / FP16 / INT8 Q/DQ) + its gate  PrecisionResult
    tile      the labels tail (resize + ArgMax) in row tiles if large   Tiled
    compile   the backend's model file (+ a run of it vs PyTorch)         Compiled
    manifest  NAME.json, written last and atomically: the commit point

Every step works in a hidden work folder; the artefact that was in the output folder stays
valid until the new one, complete and verified, replaces it (build_engine.commit: model files
in under hashed names, then the manifest, then the old files out), whatever stops the build.

Whole builds are cached by a key of all their inputs (weights hash, spec, size, precision,
backend, calibration settings, tool versions): a second identical build returns at once.

What differs per backend (file extension, compiler, graph rules, Q/DQ placement, the gate) is
its compiler, build_engine/compilers/, looked up once. `build(options)` is the entry point:
one precision is one `Builder`; `--precision auto` (build_engine/auto.py says which candidates,
in which order) drives a Builder per candidate through its public steps, from above it.
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from artefact.files import atomic_path, atomic_write_json, cache_key, cache_root, sha256_file
from artefact.manifest import (
    CONFIDENCE_NAME,
    LABELS_NAME,
    LOGITS_NAME,
    ArtefactError,
    Manifest,
    load_manifest,
)
from build_engine import commit, environment, option_rules
from build_engine.compilers import compiler_for
from build_engine.errors import BuildError
from build_engine.graph_facts import check_class_count
from build_engine.preflight import check_build
from build_engine.trained import TrainedFacts, trained_facts
from build_engine.verify import (
    CONFIDENCE_MAX_LEVELS,
    FP32_MIN_AGREEMENT,
    Agreement,
    compare,
    confidence_vs_logits,
    require_finite_weights,
    require_meaningful,
    verification_frames,
)
from calib.options import PrecisionOptions
from clikit import UsageError, signals_deferred
from clikit.fields import Rule, check_fields

if TYPE_CHECKING:
    import numpy as np

    from calib.precision import PrecisionResult
    from pspnet.model import PSPNet

log = logging.getLogger(__name__)
# bump when the export graph changes, so caches rebuild (5: TensorRT rules, row-tiled labels tail,
# AveragePool where the map divides; 6: tiles above 16 MB, OpenVINO's conv-outputs placement;
# 7: conv-outputs also quantizes the pyramid-pooling Concat's inputs; 8: ONNX artefacts record their
# class count in their metadata, which the runtime checks the manifest against)
CODE_VERSION = "8"
# $PSPNET_RT_CACHE moves every cache (artefacts here, demo clips in segdata.clip_cache) at once.
DEFAULT_OUTPUT = cache_root() / "artefacts"
KEPT_SUFFIXES = (".onnx", ".json", ".xml", ".bin", ".engine")  # what --stop-after may keep, any backend


@dataclass(frozen=True)
class BuildOptions(PrecisionOptions):
    """Everything a build depends on; `build_artefact`'s keywords and the CLI's flags. The
    precision, calibration and gate settings are the inherited calib.options.PrecisionOptions."""

    model: str = "demo"
    weights: str | None = None
    backend: str = "auto"
    input_size: tuple[int, int] | None = None
    with_logits: bool = False
    confidence: bool = False  # a uint8 per-pixel confidence output (max softmax probability)
    flip: bool = False  # logits of the image and its mirror averaged in the graph (2x compute)
    output: str | None = None
    force: bool = False
    workspace_mb: int = 1024
    verify_frames: int = 4
    command: str | None = None
    stop_after: str | None = None  # a step's name (STEPS): keep that step's output, write no manifest
    classes: str | None = None  # a label-set file or built-in name (segdata.label_sets.load_label_set)
    mean: tuple[float, float, float] | None = None  # in the model's channel order; None: the spec's
    std: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        # each value by its flag's own rule (build_engine/option_rules.py): a Python caller's bad
        # value is refused here, as the flag refuses it, with a UsageError naming the field
        check_fields(self, OPTION_RULES)


# -- what each step returns ---------------------------------------------------------------
@dataclass
class Exported:
    onnx: Path  # the fused graph: uint8 image -> labels, logits
    seconds: float
    net: PSPNet = field(repr=False)
    weights: dict[str, Any] = field(default_factory=dict)  # where the weights came from


@dataclass
class Slimmed:
    onnx: Path
    nodes_before: int
    nodes_after: int


@dataclass
class Verified:
    onnx: Path  # the graph that was verified (the slimmed FP32 one)
    agreement: Agreement  # ONNX Runtime vs PyTorch
    frames: list[np.ndarray] = field(repr=False)
    reference: list[tuple[np.ndarray, np.ndarray]] = field(repr=False)  # PyTorch's (labels, logits)


@dataclass
class Front:
    """What export -> slim -> verify gave: shared by every precision of one model."""

    exported: Exported
    slimmed: Slimmed
    verified: Verified


@dataclass
class Tiled:
    precision: PrecisionResult  # the precision step's result, its graph now with the tiled tail
    plan: dict[str, Any]  # build_engine.label_tiles.TilePlan: what was done and why


@dataclass
class Compiled:
    model_path: Path
    companions: dict[str, str]  # e.g. OpenVINO's .bin: sha256
    agreement: Agreement | None  # the written file run vs PyTorch (None: not runnable here)
    facts: dict[str, Any] = field(default_factory=dict)  # TensorRT version, GPU, workspace, ...
    graph_rules: dict[str, Any] = field(default_factory=dict)  # TensorRT parser rules, offline


def build_artefact(model: str = "demo", precision: str = "auto", backend: str = "auto",
                   input_size: tuple[int, int] | None = None, output: str | Path | None = None,
                   force: bool = False, **kwargs: Any) -> Path:
    """Build (or find in the cache) an artefact and return its manifest's path."""
    options = BuildOptions(model=model, precision=precision, backend=backend,
                           input_size=tuple(input_size) if input_size else None,
                           output=str(output) if output else None, force=force, **kwargs)
    return build(options)


def build(options: BuildOptions) -> Path:
    """What `python -m build_engine` does: the manifest's path (or, with stop_after, the kept
    output of that step). `--precision auto` builds the fastest candidate that passes its gate."""
    builder = Builder(options)
    if options.precision == "auto" and not options.stop_after:
        return choose(builder)
    return builder.run()


class Builder:
    """One build: `run()` chains the steps; each step is a method that takes the previous
    step's value and returns its own."""

    def __init__(self, options: BuildOptions) -> None:
        from pspnet.zoo import get_spec

        if options.precision == "auto" and options.stop_after in ("quantize", "compile"):
            raise UsageError(f"--stop-after {options.stop_after} keeps one precision's output: pass "
                             "--precision fp32, fp16 or int8 with it")
        self.found_weights = _identify_weights(options.weights) if options.weights else None
        self.trained = trained_facts(self.found_weights)
        options = _with_trained_data(options, self.trained)
        self.options = options
        if options.precision != "fp32":  # before any export: a typo here must not cost a build
            from calib.sources import check_source

            for flag, source in (("--calib-data", options.calib_data), ("--eval-data", options.eval_data)):
                if source:
                    check_source(source, flag)
        self.backend = environment.resolve_backend(options.backend)
        self.compiler = compiler_for(self.backend)  # all the build knows about the backend
        self.spec = _spec_from_weights(self.found_weights) if options.model == "demo" else None
        trained_model = self.trained.model if self.trained and options.model == "demo" else None
        self.spec = self.spec or get_spec(trained_model or options.model)
        if options.input_size:
            self.spec = self.spec.with_size(*options.input_size)
        trained_labels = self.trained.labels if self.trained else None
        self.spec, variant = _with_overrides(self.spec, options, trained_labels)
        self.height, self.width = self.spec.input_size
        check_build(options, self.backend, self.height, self.width)  # before any model work
        self.output = Path(options.output) if options.output else DEFAULT_OUTPUT
        self.variant = variant
        self.name = self.artefact_name(options.precision)
        self.manifest_path = self.output / f"{self.name}.json"

    def artefact_name(self, precision: str) -> str:
        size = "dyn" if self.options.dynamic else f"{self.height}x{self.width}"
        # INT8 artefacts of different calibration methods live side by side (to be compared).
        tag = f"int8-{self.options.calib_method}" if precision == "int8" else precision
        # the graph options get their own names, so an artefact with them and one without coexist
        o = self.options
        graph = "".join(s for s, on in (("-flip", o.flip), ("-conf", o.confidence)) if on)
        return f"{self.spec.name}{self.variant}-{size}-{tag}-{self.backend}{graph}"

    def files_to_replace(self) -> list[str]:
        """Names in the output folder this build may write over, known before it starts: its
        manifest (each candidate's, for --precision auto), or with --stop-after the kept files."""
        if self.options.stop_after:
            return [f"{self.name}.{self.options.stop_after}{suffix}" for suffix in KEPT_SUFFIXES]
        auto = self.options.precision == "auto"
        precisions = ("int8", "fp16", "fp32") if auto else (self.options.precision,)
        return [f"{self.artefact_name(p)}.json" for p in precisions]

    def with_precision(self, precision: str) -> Builder:
        """The same build at another precision (a `--precision auto` candidate)."""
        return Builder(dataclasses.replace(self.options, precision=precision))

    # -- cache ---------------------------------------------------------------------------
    def weights_file(self) -> Path | None:
        if self.found_weights is not None:
            return self.found_weights.path  # for a TF checkpoint: its prefix
        path = self.spec.weights_path
        return path if path is not None and path.is_file() else None

    def key(self) -> str:
        from pspnet.weight_formats import identify, weights_digest

        weights = self.weights_file()
        versions = environment.tool_versions()
        parts = {
            "code": CODE_VERSION,
            "spec": dataclasses.asdict(self.spec),
            "weights": weights_digest(self.found_weights or identify(weights)) if weights else "random",
            "precision": self.options.precision,
            "backend": self.backend,
            "dynamic": self.options.dynamic,
            "logits": self.options.with_logits,
            "tools": {k: versions[k] for k in ("torch", "onnx", "onnxruntime", "openvino")},
        }
        if self.options.confidence or self.options.flip:  # absent otherwise: older keys stay valid
            parts["graph_options"] = {"confidence": self.options.confidence, "flip": self.options.flip}
        if self.options.precision != "fp32":
            parts["calib"] = [self.options.calib_data, self.options.calib_images,
                              self.options.calib_method, self.options.eval_data,
                              self.options.eval_images, self.options.max_miou_drop,
                              self.options.fallback]
            if self.options.quantize_classifier:
                parts["calib"].append("quantize_classifier")
            # the resolved placement, so a change of a backend's default is never served from cache
            placement = self.options.qdq_placement or self.compiler.qdq_placement
            parts["calib"].append(f"placement={placement}")
        parts.update(self.compiler.cache_key_parts(self.options))
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
        """The manifest's path (or, with stop_after, the kept output of that step) of this one
        precision; `build(options)` is the entry point that also takes precision auto."""
        if self.options.stop_after:
            return self.run_until(self.options.stop_after)
        if self.options.precision == "auto":
            raise ValueError("precision auto chooses among builds of several precisions: "
                             "call build_engine.api.build(options)")
        key = self.key()
        hit = self.cached(key)
        if hit is not None:
            log.info("cache hit: %s", hit)
            return hit
        started = time.perf_counter()
        with self.working(len(STEP_TABLE)) as (work, step):
            hit = self.cached(key)  # built by the build we waited for
            if hit is not None:
                return hit
            manifest, compiled = self.build(work, key, step)
            return self.commit(manifest, compiled, started, step.seconds)

    def walk(self, steps: tuple[Step, ...], values: dict[str, Any], bar: StepBar) -> dict[str, Any]:
        """Run `steps` in order, each on the values of the steps it takes; `values` gains theirs."""
        for step in steps:
            args = [values[name] for name in step.takes]
            values[step.name] = bar(self.label(step), getattr(self, step.name), *args)
        return values

    def label(self, step: Step) -> str:
        """A step as the progress bar and `build.step_seconds` name it."""
        names = {"quantize": self.options.precision, "compile": f"compile {self.backend}"}
        return names.get(step.name, step.name)

    def front(self, work: Path, step: StepBar) -> Front:
        """export -> slim -> verify: what every precision of this model starts from."""
        values = self.walk(SHARED_STEPS, {"work": work}, step)
        return Front(values["export"], values["slim"], values["verify"])

    def build(self, work: Path, key: str, step: StepBar, front: Front | None = None
              ) -> tuple[Manifest, Compiled]:
        """Every step up to the manifest (not yet written; the model files still in `work`);
        `front` when another precision of the same model has run export/slim/verify already."""
        front = front or self.front(work, step)
        values = self.walk(PRECISION_STEPS, {"work": work, "export": front.exported, "slim": front.slimmed,
                                             "verify": front.verified}, step)
        return self.manifest(key, front.exported, front.slimmed, front.verified, values["tile"],
                             values["compile"]), values["compile"]

    def commit(self, manifest: Manifest, compiled: Compiled, started: float, steps: dict[str, float]) -> Path:
        """Model files in under names that carry their hash (so they never overwrite what the old
        manifest names), then the manifest (the commit point), then the old files out. Inside
        `_work`: the files move from the work folder."""
        manifest.build["seconds"] = round(time.perf_counter() - started, 2)
        manifest.build["step_seconds"] = dict(steps)
        tqdm.write(f"built {self.name} in {manifest.build['seconds']:.1f} s (" +
                   ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()) + ")", file=sys.stderr)
        folder = compiled.model_path.parent
        sources = [*(folder / n for n in compiled.companions), compiled.model_path]
        files = commit.final_names(self.output, self.name, manifest.model_sha256, sources)
        manifest.model_file = files[compiled.model_path]
        manifest.companion_files = {files[folder / n]: digest for n, digest in compiled.companions.items()}
        commit.commit_artefact(self.output, self.manifest_path, manifest, files)
        return self.manifest_path

    def run_until(self, last: str) -> Path:
        """Run the steps up to `last`, keep its output in the output folder (never the artefact's
        own names, so an artefact there is left alone; never over a file that is not ours) and
        return the kept file's path. The kept files are noted as ours, so a rerun may replace them."""
        steps = STEP_TABLE[: STEPS.index(last) + 1]
        with self.working(len(steps)) as (work, bar):
            values = self.walk(steps, {"work": work}, bar)
            path = steps[-1].keep(values[last], lambda suffix: self.output / f"{self.name}.{last}{suffix}")
        commit.record_kept(self.output, [n for n in self.files_to_replace() if (self.output / n).is_file()])
        return path

    # -- the steps -----------------------------------------------------------------------
    def export(self, work: Path) -> Exported:
        """PyTorch -> the fused ONNX graph (uint8 image in; labels and logits out). A signal waits
        for torch's import and the trace (C++ calling into Python: clikit.signals_deferred)."""
        with signals_deferred():
            from build_engine.export import check_size, export_fused_onnx
            from pspnet.build import load_model

        for note in check_size(self.height, self.width, self.spec.bins):
            log.warning(note)
        net, weights = load_model(self.spec, self.weights_file())
        require_finite_weights(net)  # before an export that would only agree with NaN
        t0 = time.perf_counter()
        with signals_deferred():
            raw = export_fused_onnx(net, self.spec, work / "raw.onnx", self.height, self.width,
                                    self.options.dynamic, self.options.confidence, self.options.flip)
        return Exported(raw, time.perf_counter() - t0, net, weights)

    def slim(self, exported: Exported, work: Path) -> Slimmed:
        """onnxslim: constant folding and dead nodes gone; every output kept."""
        import onnx

        from build_engine.export import output_names
        from calib.onnx_tools import keep_outputs, node_count, slim

        graph = onnx.load(str(exported.onnx))
        before = node_count(graph)
        graph = slim(keep_outputs(graph, output_names(self.options.confidence)))
        path = work / "fp32.onnx"
        onnx.save(graph, str(path))
        after = node_count(graph)
        tqdm.write(f"exported in {exported.seconds:.1f} s; onnxslim: {before} -> {after} nodes",
                   file=sys.stderr)
        return Slimmed(path, before, after)

    def verify(self, exported: Exported, slimmed: Slimmed) -> Verified:
        """ONNX Runtime on the slimmed graph vs the PyTorch module it came from, on street frames."""
        from build_engine.export import torch_reference
        from runtime.backends import open_runner

        frames = verification_frames(self.height, self.width, self.options.verify_frames)
        with signals_deferred():
            reference = torch_reference(exported.net, self.spec, frames, self.options.flip)
        require_meaningful(reference, "PyTorch", list(self.spec.classes))
        with open_runner("onnxruntime", slimmed.onnx) as ort_run:
            exported_predictions = [ort_run.predict(f) for f in frames]
            confidence = confidence_vs_logits(ort_run, frames, reference) if self.options.confidence else None
        require_meaningful(exported_predictions, "the exported ONNX", list(self.spec.classes))
        agreement = compare(reference, exported_predictions)
        agreement.confidence = confidence
        tqdm.write(f"ONNX Runtime vs PyTorch: {agreement.summary()}", file=sys.stderr)
        if agreement.pixel_agreement < FP32_MIN_AGREEMENT:
            raise BuildError(f"the exported ONNX disagrees with PyTorch: {agreement.summary()} "
                             f"(need >= {FP32_MIN_AGREEMENT * 100:.1f} %)")
        if agreement.confidence and agreement.confidence["max_abs_levels"] > CONFIDENCE_MAX_LEVELS:
            raise BuildError(f"the exported confidence disagrees with PyTorch's logits: "
                             f"{agreement.summary()} (need <= {CONFIDENCE_MAX_LEVELS} levels)")
        return Verified(slimmed.onnx, agreement, frames, reference)

    def quantize(self, verified: Verified, work: Path) -> PrecisionResult:
        """The graph of the asked precision (FP16 / INT8 Q/DQ, or the final FP32), through its gate."""
        from calib.precision import apply_precision

        outputs = [LABELS_NAME] + [LOGITS_NAME] * self.options.with_logits \
            + [CONFIDENCE_NAME] * self.options.confidence
        return apply_precision(verified.onnx, work, self.options, self.spec, outputs,
                               self.output / "calibration", self.compiler)

    def tile(self, precision: PrecisionResult, work: Path) -> Tiled:
        """The labels tail (resize to the input size + ArgMax) in row tiles where the full-size
        logits would be large (build_engine.label_tiles), so the peak memory holds one tile; kept
        only if the tiled tail gives the same class map as the one it replaces."""
        import onnx

        from build_engine.label_tiles import (
            TAIL_MIN_AGREEMENT,
            tail_agreement,
            tail_confidence_difference,
            tile_labels,
        )
        from build_engine.verify import CONFIDENCE_MAX_LEVELS

        whole = onnx.load(str(precision.onnx_path))
        model = onnx.load(str(precision.onnx_path))
        plan = tile_labels(model, LABELS_NAME)
        if plan.mode != "row tiles":
            return Tiled(precision, plan.to_dict())
        plan.tail_agreement = round(tail_agreement(whole, model, LABELS_NAME), 6)
        plan.confidence_max_diff = tail_confidence_difference(whole, model, LABELS_NAME)
        confidence_off = (plan.confidence_max_diff or 0) > CONFIDENCE_MAX_LEVELS
        if plan.tail_agreement < TAIL_MIN_AGREEMENT or confidence_off:
            log.warning("row-tiled labels tail kept out: %.4f %% pixels equal to the whole-image tail, "
                        "confidence within %s levels", plan.tail_agreement * 100, plan.confidence_max_diff)
            return Tiled(precision, {**plan.to_dict(), "mode": "whole image",
                                     "reason": "the tiled tail disagreed with the whole-image tail"})
        path = work / f"{precision.onnx_path.stem}.tiled.onnx"
        onnx.save(model, str(path))
        tqdm.write(f"labels tail in {plan.tiles} row tiles of <= {plan.tile_rows} rows "
                   f"({plan.tile_mb} MB of logits each, not {plan.logits_mb} MB at once)", file=sys.stderr)
        return Tiled(dataclasses.replace(precision, onnx_path=path), plan.to_dict())

    def compile(self, tiled: Tiled, verified: Verified, work: Path, target: Path | None = None) -> Compiled:
        """Write the backend's model file atomically (at `target`, default in the work folder, whence
        the commit moves it in; its compiler, build_engine/compilers/), then run it against
        PyTorch where this machine can. The graph must choose among the classes the manifest will
        list (build_engine.graph_facts; ONNX artefacts carry the count in their metadata)."""
        onnx_path = tiled.precision.onnx_path
        target = target or work / f"model{self.compiler.extension}"
        graph_rules = self.compiler.graph_rules(onnx_path)
        check_class_count(onnx_path, len(self.spec.classes))
        written = self.compiler.compile(onnx_path, target, self.options, self.output)
        agreement = self._run_compiled(target, verified)
        return Compiled(target, written.companions, agreement, written.facts, graph_rules)

    def _run_compiled(self, model_path: Path, verified: Verified) -> Agreement | None:
        """The written file on its backend vs PyTorch FP32 (None where it cannot run here)."""
        run = self.compiler.open_compiled(model_path, self.options.precision)
        if run is None:
            return None
        with run:
            agreement = compare(verified.reference, [run.predict(f) for f in verified.frames])
            if self.options.confidence:
                agreement.confidence = confidence_vs_logits(run, verified.frames, verified.reference)
        tqdm.write(f"{self.backend} {self.options.precision} vs PyTorch FP32: {agreement.summary()}",
                   file=sys.stderr)
        if self.options.precision == "fp32" and (
                agreement.pixel_agreement < FP32_MIN_AGREEMENT or (
                    agreement.confidence and agreement.confidence["max_abs_levels"] > CONFIDENCE_MAX_LEVELS)):
            raise BuildError(f"{self.backend} FP32 disagrees with PyTorch: {agreement.summary()}")
        return agreement

    def manifest(self, key: str, exported: Exported, slimmed: Slimmed, verified: Verified,
                 tiled: Tiled, compiled: Compiled) -> Manifest:
        """What the artefact is and how it was made: the contract the runtime reads."""
        precision = tiled.precision
        versions = {**environment.tool_versions(), **precision.tools, **compiled.facts}
        return Manifest(
            name=self.name, model=self.spec.name, backend=self.backend,
            precision=self.options.precision, model_file=compiled.model_path.name,
            classes=list(self.spec.classes), palette=[list(c) for c in self.spec.palette],
            label_set=self.spec.label_set, ignore_index=self.spec.ignore_index,
            input_size=[-1, -1] if self.options.dynamic else [self.height, self.width],
            mean=list(self.spec.mean), std=list(self.spec.std),
            channel_order=self.spec.channel_order,
            logits_name=LOGITS_NAME if self.options.with_logits else None,
            confidence_name=CONFIDENCE_NAME if self.options.confidence else None,
            flip=self.options.flip,
            dynamic_shape=self.options.dynamic,
            model_sha256=sha256_file(compiled.model_path),
            onnx_sha256=sha256_file(precision.onnx_path),
            companion_files=compiled.companions,
            weights=exported.weights,
            calibration=precision.calibration,
            verification={
                "onnx_vs_torch": verified.agreement.to_dict(),
                "backend_vs_torch": compiled.agreement.to_dict() if compiled.agreement else None,
                "export_seconds": round(exported.seconds, 2),
                "nodes_before_slim": slimmed.nodes_before, "nodes_after_slim": slimmed.nodes_after,
                "exporter": "dynamo" if self.options.dynamic else "torchscript",
                "tensorrt_graph_rules": compiled.graph_rules,
            },
            accuracy=precision.accuracy,
            tools=versions,
            build={"command": self.options.command or self.command_line(), "cache_key": key,
                   "precision_requested": self.options.precision,
                   "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "labels_tail": tiled.plan},
        )

    # -- plumbing ------------------------------------------------------------------------
    @contextmanager
    def working(self, steps: int) -> Iterator[tuple[Path, StepBar]]:
        """The work folder (locked, removed on every way out) and a progress bar of `steps` ticks:
        what a build, `--stop-after` and `--precision auto` run their steps in."""
        with self._work() as work, self._progress(steps) as bar:
            yield work, bar

    @contextmanager
    def _work(self) -> Iterator[Path]:
        """A work folder inside the output folder (same file system, so renames are atomic),
        removed on every way out. The output folder is checked first (OutputDirError, exit 2,
        before any export) and locked: builds into one folder take turns, and what dead builds
        left there is swept away."""
        commit.prepare_output(self.output)
        with commit.folder_lock(self.output):
            commit.sweep_stale(self.output)
            commit.check_free(self.output, self.files_to_replace())  # a user's file there: exit 2 now
            with commit.work_dir(self.output, self.name) as work:
                yield work

    @contextmanager
    def _progress(self, total: int) -> Iterator[StepBar]:
        """A step bar; `step(name, fn, *args)` shows the step, runs it and returns its value."""
        bar = StepBar(tqdm(total=total, desc=f"build {self.name}", unit="step", disable=None))
        try:
            yield bar
        finally:
            bar.bar.close()

    def command_line(self) -> str:
        o = self.options
        parts = ["python", "-m", "build_engine", "--model", self.spec.name, "--precision",
                 o.precision, "--backend", self.backend,
                 "--input-size", f"{self.height}x{self.width}"]
        if o.weights:
            parts += ["--weights", o.weights]
        if o.classes:
            parts += ["--classes", o.classes]
        for flag, value in (("--mean", o.mean), ("--std", o.std)):
            if value:
                parts += [flag, ",".join(f"{v:g}" for v in value)]
        if o.dynamic:
            parts.append("--dynamic")
        parts += [flag for flag, on in (("--flip", o.flip), ("--confidence", o.confidence)) if on]
        if o.output:
            parts += ["--output", o.output]
        return shlex.join(parts)


class StepBar:
    """The build's progress bar: one tick per step, and how long each step took."""

    def __init__(self, bar: tqdm) -> None:
        self.bar = bar
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, fn: Any, *args: Any) -> Any:
        self.bar.set_postfix_str(name)
        t0 = time.perf_counter()
        try:
            value = fn(*args)
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t0, 2)
        self.bar.update()
        return value

    def skip(self, n: int) -> None:
        """Steps that will not run (a candidate that failed its gate before compiling)."""
        self.bar.update(n)

    def finish(self) -> None:
        """The work is done early (later candidates not needed): show the bar full."""
        self.bar.total = self.bar.n
        self.bar.refresh()


def _identify_weights(weights: str) -> Any:
    """The weights' format by content (pspnet.weight_formats); CheckpointError for what no loader
    reads, naming what the file is instead."""
    from pspnet.errors import CheckpointError
    from pspnet.weight_formats import KERAS_H5, PYTORCH, TF_CHECKPOINT, UNKNOWN, identify, refusal

    found = identify(weights)
    if found.kind == UNKNOWN and found.detail == "does not exist":
        raise CheckpointError(f"weights file {weights} does not exist")
    if found.kind not in (PYTORCH, KERAS_H5, TF_CHECKPOINT):
        raise CheckpointError(refusal(found))
    if found.kind == TF_CHECKPOINT and found.detail:
        raise CheckpointError(f"{weights} is a TensorFlow checkpoint ({found.detail})")
    return found


def _spec_from_weights(found: Any) -> Any:
    """The spec a seed's file describes (without --model): read from its layer names and shapes."""
    from pspnet.weight_formats import KERAS_H5, TF_CHECKPOINT

    if found is None:
        return None
    if found.kind == KERAS_H5:
        from pspnet.keras_import import keras_spec_from_h5

        return keras_spec_from_h5(found.path)
    if found.kind == TF_CHECKPOINT:
        from pspnet.tf_import import tf_spec_from_checkpoint

        spec = tf_spec_from_checkpoint(found.path)
        tqdm.write(f"{found.path}: TensorFlow checkpoint of {spec.name} ({spec.num_classes} classes, "
                   f"{spec.channel_order} minus mean {', '.join(f'{m:g}' for m in spec.mean)}, "
                   f"{spec.input_size[0]}x{spec.input_size[1]})", file=sys.stderr)
        return spec
    return None


def _with_trained_data(options: BuildOptions, trained: TrainedFacts | None) -> BuildOptions:
    """A pspnet.train checkpoint's own training / held-out lists as --calib-data / --eval-data,
    where none was given and they are on this machine (said on stderr either way)."""
    from build_engine.trained import present

    if trained is None or options.precision == "fp32":
        return options
    chosen = {}
    for flag, field_name, source in (("--calib-data", "calib_data", trained.calib_data),
                                     ("--eval-data", "eval_data", trained.eval_data)):
        if getattr(options, field_name) or not source:
            continue
        part = "training" if field_name == "calib_data" else "held-out"
        if present(source):
            chosen[field_name] = source
            tqdm.write(f"{flag} {source} (the checkpoint's {part} data)", file=sys.stderr)
        else:
            tqdm.write(f"note: the checkpoint's {part} data {source} is not here; give {flag}",
                       file=sys.stderr)
    return dataclasses.replace(options, **chosen) if chosen else options


def _with_overrides(spec: Any, options: BuildOptions, trained_labels: Any = None) -> tuple[Any, str]:
    """`--classes` (else the label set a pspnet.train checkpoint carries), `--mean`, `--std` applied
    to the spec, and the artefact-name suffix they add (so an artefact with another label set or
    normalisation never replaces the plain one)."""
    from artefact.files import cache_key
    from pspnet.errors import CheckpointError
    from segdata.label_sets import load_label_set

    variant = ""
    own = spec.label_set_info
    if trained_labels is not None and trained_labels != own:
        spec = spec.with_labels(trained_labels)  # the classes the weights were trained on
    if options.classes:
        labels = load_label_set(options.classes)
        if labels.num_classes != spec.num_classes and (spec.weights or options.weights):
            raise CheckpointError(f"--classes {options.classes} names {labels.num_classes} classes but the "
                                  f"weights of {spec.name} predict {spec.num_classes}; give a label set "
                                  f"of {spec.num_classes} classes")
        if labels != spec.label_set_info:
            spec = spec.with_labels(labels)
    if spec.label_set_info != own:
        variant += f"-{spec.label_set_info.name}"
    if options.mean or options.std:
        spec = dataclasses.replace(spec, mean=tuple(options.mean or spec.mean),
                                   std=tuple(options.std or spec.std))
        variant += f"-norm{cache_key({'mean': spec.mean, 'std': spec.std})[:6]}"
    return spec, variant


def _keep(src: Path, dst: Path) -> Path:
    """Copy a step's file out of the work folder, atomically."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return dst


# -- the steps, in order --------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One build step: the Builder method of the same name, the earlier values it takes ("work"
    is the work folder), and what `--stop-after` keeps of its value (given a path maker)."""

    name: str
    takes: tuple[str, ...]
    keep: Callable[[Any, Callable[[str], Path]], Path]
    shared: bool = False  # the same for every precision of one model: auto runs it once


def _keep_onnx(value: Any, kept: Callable[[str], Path]) -> Path:
    return _keep(value.onnx, kept(".onnx"))


def _keep_verified(value: Verified, kept: Callable[[str], Path]) -> Path:
    report = {"onnx": str(_keep(value.onnx, kept(".onnx"))), "onnx_vs_torch": value.agreement.to_dict()}
    atomic_write_json(kept(".json"), report)
    return kept(".json")


def _keep_quantized(value: PrecisionResult, kept: Callable[[str], Path]) -> Path:
    atomic_write_json(kept(".json"), {"calibration": value.calibration, "accuracy": value.accuracy})
    return _keep(value.onnx_path, kept(".onnx"))


def _keep_tiled(value: Tiled, kept: Callable[[str], Path]) -> Path:
    atomic_write_json(kept(".json"), value.plan)
    return _keep(value.precision.onnx_path, kept(".onnx"))


def _keep_compiled(value: Compiled, kept: Callable[[str], Path]) -> Path:
    """The model file and its companions (OpenVINO's .bin), named as the kept model file."""
    for name in value.companions:
        _keep(value.model_path.parent / name, kept(Path(name).suffix))
    return _keep(value.model_path, kept(value.model_path.suffix))


STEP_TABLE: tuple[Step, ...] = (
    Step("export", ("work",), _keep_onnx, shared=True),
    Step("slim", ("export", "work"), _keep_onnx, shared=True),
    Step("verify", ("export", "slim"), _keep_verified, shared=True),
    Step("quantize", ("verify", "work"), _keep_quantized),
    Step("tile", ("quantize", "work"), _keep_tiled),
    Step("compile", ("tile", "verify", "work"), _keep_compiled),
)
STEPS = tuple(step.name for step in STEP_TABLE)  # --stop-after's choices
OPTION_RULES = {**option_rules.RULES, "stop_after": Rule("--stop-after", choices=STEPS)}
SHARED_STEPS = tuple(step for step in STEP_TABLE if step.shared)
PRECISION_STEPS = tuple(step for step in STEP_TABLE if not step.shared)


# -- --precision auto: one Builder per candidate, from above ---------------------------------
def choose(builder: Builder) -> Path:
    """Build (or find) the fastest artefact that passes its gate; its manifest's path. The
    candidates and the words are build_engine.auto's; export, slim and verify run once."""
    from build_engine import auto
    from calib.precision import GateFailed

    started = time.perf_counter()
    order = auto.plan(builder)
    candidates = [p for p in order if isinstance(p, str)]
    builders = [builder.with_precision(p) for p in candidates]
    keys = [b.key() for b in builders]
    auto_key = auto.request_key(order, keys)
    for b, key in zip(builders, keys):  # an earlier identical request decided already
        hit = b.cached(key)
        manifest = load_manifest(hit) if hit is not None else None
        if manifest is not None and manifest.build.get("precision_choice", {}).get("auto_key") == auto_key:
            auto.announce(manifest, "decided earlier, cached")
            return manifest.path
    tried: list[auto.Tried] = []
    front = None
    with builder.working(len(SHARED_STEPS) + len(PRECISION_STEPS) * len(builders)) as (work, step):
        for b, key in zip(builders, keys):
            tried += auto.skipped_before(order, b.options.precision, tried)
            hit = b.cached(key)
            if hit is not None:  # built before by an explicit --precision: it passed its gate then
                manifest = load_manifest(hit)
                tried.append(auto.Tried(b.options.precision, "passed", cached=True,
                                        gate=manifest.accuracy.get("gate")))
                manifest.build["precision_choice"] = auto.choice(b, manifest, tried, auto_key)
                manifest.save(hit)  # the model file is untouched; the manifest learns why it was chosen
                auto.announce(manifest, "cached artefact")
                return hit
            front = front or b.front(work, step)
            try:
                manifest, compiled = b.build(work, key, step, front)
            except GateFailed as exc:
                tried.append(auto.failed(b.options.precision, exc.report.to_dict()))
                step.skip(len(PRECISION_STEPS) - 1)
                continue
            tried.append(auto.Tried(b.options.precision, "passed", gate=manifest.accuracy.get("gate")))
            manifest.build["precision_requested"] = "auto"
            manifest.build["precision_choice"] = auto.choice(b, manifest, tried, auto_key)
            step.finish()
            path = b.commit(manifest, compiled, started, step.seconds)
            auto.announce(manifest, "built")
            return path
    raise AssertionError("fp32 has no gate, so some candidate always passes")  # pragma: no cover
