"""`--precision auto`: the fastest precision that passes the accuracy gate, for this backend and model.

Candidates, fastest first (the order the latency tables measure, results/latency.md):

    tensorrt     int8, fp16, fp32
    openvino     int8, fp16 (runs f16 or bf16; left out where the device has neither: it would
                 run f32, no faster than fp32), fp32
    onnxruntime  int8, fp32; fp16 only with a GPU execution provider (the CPU provider has no
                 fast FP16 kernels: it is slower than FP32 there)

INT8 is tried only with calibration frames of the model's own domain: `--calib-data`, or the
frames a model ships (`ModelSpec.calibration`, e.g. the demo model's synthetic scenes, with its
shipped weights); otherwise it is left out and the one-line reason says so.

Each candidate is an ordinary build (same name, same cache key as asking for that precision),
so `--precision int8` and an `auto` that chose int8 share one artefact. The first candidate
whose build passes its gate is chosen; a failed gate writes nothing and the next one is tried,
from the same export. The choice (chosen, why, tried) is written into the chosen manifest's
`build.precision_choice` with the auto request's key, so the next identical request returns
at once, without retrying a candidate that failed.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from artefact.files import cache_key
from artefact.manifest import Manifest, load_manifest

if TYPE_CHECKING:
    from build_engine.api import Builder

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Tried:
    """One candidate and what became of it."""

    precision: str
    result: str  # passed | failed the gate | skipped
    why: str = ""
    cached: bool = False
    gate: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"precision": self.precision, "result": self.result}
        if self.why:
            out["why"] = self.why
        if self.cached:
            out["cached"] = True
        if self.gate:
            out.update({k: self.gate.get(k) for k in ("miou_drop_points", "pixel_agreement", "images",
                                                       "limit_points")})
        return out


def plan(builder: Builder) -> list[Tried | str]:
    """Every precision fastest first: a name to try, or a `Tried` that says why it is left out."""
    options, backend, spec = builder.options, builder.backend, builder.spec
    if options.dynamic:
        fixed = "fp16/int8 need a fixed --input-size (calibration and the gate run at one size)"
        return [Tried("int8", "skipped", fixed), Tried("fp16", "skipped", fixed), "fp32"]
    order: list[Tried | str] = []
    if options.calib_data or (spec.calibration and not options.weights):
        order.append("int8")
    else:
        whose = "these weights ship" if options.weights else f"model {spec.name} ships"
        order.append(Tried("int8", "skipped", f"no calibration frames: {whose} none and no --calib-data "
                           "was given"))
    fp16_why = _fp16_not_faster(backend)
    order.append(Tried("fp16", "skipped", fp16_why) if fp16_why else "fp16")
    return [*order, "fp32"]


def _fp16_not_faster(backend: str) -> str | None:
    """Why FP16 would be no faster than FP32 on this backend here; None where it is."""
    if backend == "openvino":
        from devices import openvino_capabilities

        caps = {c.upper() for c in openvino_capabilities() or []}
        if not caps & {"FP16", "BF16"}:
            return "this CPU has neither FP16 nor BF16 units: OpenVINO would run fp16 as f32"
    elif backend == "onnxruntime":
        import onnxruntime as ort

        if not {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers()):
            return "ONNX Runtime's CPU provider has no fast FP16 kernels (fp16 runs slower than fp32)"
    return None


def choose(builder: Builder) -> Path:
    """Build (or find) the fastest artefact that passes its gate; its manifest's path."""
    from build_engine.api import STEPS, Builder
    from calib.precision import GateFailed

    started = time.perf_counter()
    order = plan(builder)
    candidates = [p for p in order if isinstance(p, str)]
    builders = [Builder(dataclasses.replace(builder.options, precision=p)) for p in candidates]
    keys = [b.key() for b in builders]
    left_out = [t.precision for t in order if isinstance(t, Tried)]
    auto_key = cache_key({"candidates": keys, "skipped": left_out})
    for b, key in zip(builders, keys):  # an earlier identical request decided already
        hit = b.cached(key)
        manifest = load_manifest(hit) if hit is not None else None
        if manifest is not None and manifest.build.get("precision_choice", {}).get("auto_key") == auto_key:
            _announce(manifest, "decided earlier, cached")
            return manifest.path
    tried: list[Tried] = []
    front = None
    steps_per_candidate = len(STEPS) - 3  # quantize, tile, compile
    with builder._work() as work, builder._progress(3 + steps_per_candidate * len(builders)) as step:
        for b, key in zip(builders, keys):
            tried += _skipped_before(order, b.options.precision, tried)
            hit = b.cached(key)
            if hit is not None:  # built before by an explicit --precision: it passed its gate then
                manifest = load_manifest(hit)
                tried.append(Tried(b.options.precision, "passed", cached=True,
                                   gate=manifest.accuracy.get("gate")))
                manifest.build["precision_choice"] = _choice(b, manifest, tried, auto_key)
                manifest.save(hit)  # the model file is untouched; the manifest learns why it was chosen
                _announce(manifest, "cached artefact")
                return hit
            front = front or b.front(work, step)
            try:
                manifest, compiled = b.build(work, key, step, front)
            except GateFailed as exc:
                tried.append(Tried(b.options.precision, "failed the gate", _gate_line(exc.report.to_dict()),
                                   gate=exc.report.to_dict()))
                print(f"precision auto: {b.options.precision} failed the accuracy gate "
                      f"({_gate_line(exc.report.to_dict())}); trying the next precision", file=sys.stderr,
                      flush=True)
                step.skip(steps_per_candidate - 1)
                continue
            tried.append(Tried(b.options.precision, "passed", gate=manifest.accuracy.get("gate")))
            manifest.build["precision_requested"] = "auto"
            manifest.build["precision_choice"] = _choice(b, manifest, tried, auto_key)
            step.finish()
            path = b.commit(manifest, compiled, started, step.seconds)
            _announce(manifest, "built")
            return path
    raise AssertionError("fp32 has no gate, so some candidate always passes")  # pragma: no cover


def _skipped_before(order: list[Tried | str], precision: str, tried: list[Tried]) -> list[Tried]:
    """The left-out precisions between the last one tried and `precision`, in order."""
    seen = {t.precision for t in tried}
    out = []
    for item in order:
        if item == precision:
            return out
        if isinstance(item, Tried) and item.precision not in seen:
            out.append(item)
    return out


def _choice(b: Builder, manifest: Manifest, tried: list[Tried], auto_key: str) -> dict[str, Any]:
    return {"requested": "auto", "chosen": b.options.precision, "why": _why(b, manifest, tried),
            "tried": [t.to_dict() for t in tried], "auto_key": auto_key}


def _gate_line(gate: dict[str, Any] | None) -> str:
    if not gate:
        return "no gate"
    if gate.get("miou_drop_points") is not None:
        sign = "<=" if gate.get("passed") else ">"
        drop = f"mIoU drop {gate['miou_drop_points']:.2f} {sign} {gate['limit_points']} points"
    else:
        drop = f"mIoU vs FP32 {gate['miou_vs_fp32'] * 100:.2f}"
    return f"{drop} on {gate['images']} held-out frames, {gate['pixel_agreement'] * 100:.2f} % pixels as FP32"


def _why(b: Builder, manifest: Manifest, tried: list[Tried]) -> str:
    """One line: why each faster precision was not chosen, then what was and that it passed."""
    precision = b.options.precision
    earlier = [f"{t.precision} {t.result} ({t.why})" for t in tried[:-1]]
    ran = manifest.accuracy.get("gate_float_precision")
    if precision == "fp32":
        chosen = "fp32 chosen: the reference precision, no gate"
    else:
        label = precision + (f" (runs {ran})" if precision == "fp16" and ran and ran != "f16" else "")
        fastest = "the fastest left" if earlier else "the fastest"
        chosen = f"{label} chosen, {fastest} on {b.backend}: passed the gate, " \
                 f"{_gate_line(manifest.accuracy.get('gate'))}"
        if manifest.calibration:
            chosen += f"; calibrated on {manifest.calibration.get('source')}"
    return "; ".join([*earlier, chosen])


def _announce(manifest: Manifest, how: str) -> None:
    choice = manifest.build.get("precision_choice", {})
    print(f"precision auto -> {manifest.precision} ({how}): {choice.get('why', '')}", file=sys.stderr,
          flush=True)
