"""FP16 arithmetic on a CPU that has none: the FP16 graph, every float16 tensor rounded.

ONNX Runtime's CPU provider has no float16 Conv kernels on x86: given an FP16 graph, its
optimiser wraps the float16 nodes in Casts and computes them in float32, so an accuracy gate run
that way measures (nearly) FP32, not what TensorRT's FP16 engine computes. This module rewrites
the FP16 graph into a float32 graph that rounds to float16 wherever the FP16 graph stores
float16: every float16 weight (exactly representable, so upcast unchanged) and every float16
activation (a Cast to float16 and back after the node that makes it). The arithmetic inside
each node stays float32, as TensorRT's FP16 tactics mostly accumulate; the rounding of every
stored value, where FP16 loses its accuracy, is real.

Overflow is caught, not inferred from a bad mask: the largest |value| of every float16 tensor
before rounding is an extra output, and a value above 65504 (float16's largest) or a NaN names
the tensor and the node that made it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from runtime.backends import Runner, open_runner

FP16_MAX = 65504.0
ABSMAX_PREFIX = "fp16_absmax__"
DESCRIPTION = ("onnxruntime CPU float16 emulation: float16 weights, every float16 activation "
               "rounded to float16 (overflow > 65504 checked), arithmetic inside each node in "
               "float32")


class FP16Overflow(RuntimeError):
    """A float16 tensor exceeded 65504 (or became NaN) on a gate frame; the message names it.

    The build CLI reports it like a failed gate: exit 1, one line."""


def emulation_model(fp16: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, str]]:
    """The float32 twin of `fp16` that rounds like it; returns it and {absmax output: node}."""
    inferred = onnx.shape_inference.infer_shapes(fp16, strict_mode=False)
    types = {v.name: v.type.tensor_type.elem_type for v in
             [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    model = onnx.ModelProto()
    model.CopyFrom(fp16)
    graph = model.graph
    for value in [*graph.input, *graph.output]:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT16:
            raise ValueError(f"{value.name}: float16 graph inputs/outputs are not emulated "
                             "(the FP16 graphs here keep float32 I/O)")
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT16:
            init.CopyFrom(numpy_helper.from_array(
                numpy_helper.to_array(init).astype(np.float32), init.name))
    nodes: list[onnx.NodeProto] = []
    watched: dict[str, str] = {}
    for node in graph.node:
        _to_float32(node)
        nodes.append(node)
        for i, out in enumerate(node.output):
            if not out or types.get(out) != TensorProto.FLOAT16:
                continue
            raw = f"{out}__fp32"
            node.output[i] = raw
            absmax = f"{ABSMAX_PREFIX}{len(watched)}"
            nodes += [
                helper.make_node("Cast", [raw], [f"{out}__fp16"], to=TensorProto.FLOAT16,
                                 name=f"{node.name}/round_to_fp16"),
                helper.make_node("Cast", [f"{out}__fp16"], [out], to=TensorProto.FLOAT,
                                 name=f"{node.name}/back_to_fp32"),
                helper.make_node("Abs", [raw], [f"{raw}__abs"], name=f"{node.name}/abs"),
                helper.make_node("ReduceMax", [f"{raw}__abs"], [absmax], keepdims=1,
                                 name=f"{node.name}/absmax"),  # 1x1..: runners drop a batch axis
            ]
            watched[absmax] = f"{out} (made by {node.name}, {node.op_type})"
            graph.output.append(helper.make_tensor_value_info(absmax, TensorProto.FLOAT, None))
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    return model, watched


def _to_float32(node: onnx.NodeProto) -> None:
    """Casts to float16 become casts to float32 (the rounding is added after them)."""
    for attr in node.attribute:
        if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT16:
            attr.i = TensorProto.FLOAT
        elif attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT16:
            attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t)
                                                    .astype(np.float32), attr.t.name))
        elif node.op_type in ("CastLike", "EyeLike", "RandomNormal", "RandomUniform") \
                and attr.name == "dtype" and attr.i == TensorProto.FLOAT16:
            raise ValueError(f"{node.name}: {node.op_type} with a float16 dtype is not emulated")


@dataclass
class Headroom:
    """The largest float16 activation seen so far, against float16's limit."""

    value: float = 0.0
    tensor: str = ""
    frames: int = 0
    tensors: int = 0

    def to_dict(self) -> dict:
        return {"max_abs_activation": round(self.value, 3), "tensor": self.tensor,
                "fp16_max": FP16_MAX, "fraction_of_fp16_max": round(self.value / FP16_MAX, 5),
                "tensors_checked": self.tensors, "frames": self.frames}


class EmulatedFP16(Runner):
    """A Runner over an FP16 ONNX that computes it with float16 rounding emulated.

    The emulating graph is written beside the FP16 file and run by the project's ONNX Runtime
    runner (CPU); every inference also reads the per-tensor |max| outputs and raises
    FP16Overflow on the first tensor past float16's range.
    """

    backend = "onnxruntime-fp16-emulation"

    def __init__(self, path: str | Path, precision: str = "fp16", **names: str) -> None:
        super().__init__(path, precision, **names)
        self.precision_ran = "f16 (emulated rounding)"
        self.headroom = Headroom()
        self.watched: dict[str, str] = {}
        self._inner: Runner | None = None
        self._names = names

    def _open(self) -> None:
        model, self.watched = emulation_model(onnx.load(str(self.path)))
        emulating = self.path.with_name(f"{self.path.stem}.fp16-emulation.onnx")
        onnx.save(model, str(emulating))
        self._inner = open_runner("onnxruntime", emulating, "fp32", **self._names)
        self.headroom.tensors = len(self.watched)

    def _close(self) -> None:
        if self._inner is not None:
            self._inner.deactivate()
            self._inner = None

    @property
    def output_names(self) -> list[str]:
        inner = self._inner.output_names if self._inner is not None else []
        return [n for n in inner if not n.startswith(ABSMAX_PREFIX)]

    def infer(self, frame: np.ndarray, outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        if not self.active:
            self.activate()
        names = list(outputs or self.output_names)
        result = self._inner.infer(frame, names + list(self.watched))
        self.headroom.frames += 1
        for name, label in self.watched.items():
            value = float(np.max(result[name]))
            if not np.isfinite(value) or value > FP16_MAX:
                raise FP16Overflow(f"FP16 overflow on gate frame {self.headroom.frames}: "
                                   f"{label} reaches {value:.4g} (float16 holds at most "
                                   f"{FP16_MAX:.0f}); keep that node in float32 "
                                   "(calib/fp16.py block list) or build fp32")
            if value > self.headroom.value:
                self.headroom.value, self.headroom.tensor = value, label
        return {name: result[name] for name in names}
