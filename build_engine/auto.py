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

This module is the policy (the candidates, in order, with why each left-out one is left out,
and the words of the choice); build_engine.api.choose walks the candidates, one Builder each,
through the Builder's public steps. Each candidate is an ordinary build (same name, same cache
key as asking for that precision), so `--precision int8` and an `auto` that chose int8 share
one artefact. The first candidate
whose build passes its gate is chosen; a failed gate writes nothing and the next one is tried,
from the same export. The choice (chosen, why, tried) is written into the chosen manifest's
`build.precision_choice` with the auto request's key, so the next identical request returns
at once, without retrying a candidate that failed.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import TYPE_CHECKING, Any, Protocol

from artefact.files import cache_key
from artefact.manifest import Manifest

if TYPE_CHECKING:
    from build_engine.compilers import Compiler
    from pspnet.zoo import ModelSpec


class Candidate(Protocol):
    """What the policy reads of a build (build_engine.api.Builder is one)."""

    options: Any  # build_engine.api.BuildOptions
    backend: str
    spec: ModelSpec
    compiler: Compiler


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


def plan(builder: Candidate) -> list[Tried | str]:
    """Every precision fastest first: a name to try, or a `Tried` that says why it is left out."""
    options, spec = builder.options, builder.spec
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
    fp16_why = builder.compiler.fp16_not_faster()
    order.append(Tried("fp16", "skipped", fp16_why) if fp16_why else "fp16")
    return [*order, "fp32"]


def request_key(order: list[Tried | str], keys: list[str]) -> str:
    """The auto request's own key: its candidates' cache keys and what it left out."""
    return cache_key({"candidates": keys, "skipped": [t.precision for t in order if isinstance(t, Tried)]})


def skipped_before(order: list[Tried | str], precision: str, tried: list[Tried]) -> list[Tried]:
    """The left-out precisions between the last one tried and `precision`, in order."""
    seen = {t.precision for t in tried}
    out = []
    for item in order:
        if item == precision:
            return out
        if isinstance(item, Tried) and item.precision not in seen:
            out.append(item)
    return out


def failed(precision: str, gate: dict[str, Any]) -> Tried:
    """A candidate that failed its gate, said on stderr: the next one is tried."""
    print(f"precision auto: {precision} failed the accuracy gate ({_gate_line(gate)}); trying the next "
          "precision", file=sys.stderr, flush=True)
    return Tried(precision, "failed the gate", _gate_line(gate), gate=gate)


def choice(b: Candidate, manifest: Manifest, tried: list[Tried], auto_key: str) -> dict[str, Any]:
    """The manifest's `build.precision_choice`."""
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


def _why(b: Candidate, manifest: Manifest, tried: list[Tried]) -> str:
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


def announce(manifest: Manifest, how: str) -> None:
    choice = manifest.build.get("precision_choice", {})
    print(f"precision auto -> {manifest.precision} ({how}): {choice.get('why', '')}", file=sys.stderr,
          flush=True)
