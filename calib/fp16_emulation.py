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

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from build_engine.errors import BuildError

FP16_MAX = 65504.0
ABSMAX_PREFIX = "fp16_absmax__"
DESCRIPTION = ("onnxruntime CPU float16 emulation: float16 weights, every float16 activation "
               "rounded to float16 (overflow > 65504 checked), arithmetic inside each node in "
               "float32")


class FP16Overflow(BuildError):
    """A float16 tensor exceeded 65504 (or became NaN) on a gate frame; the message names it."""


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
                helper.make_node("ReduceMax", [f"{raw}__abs"], [absmax], keepdims=0,
                                 name=f"{node.name}/absmax"),
            ]
            watched[absmax] = f"{out} (made by {node.name}, {node.op_type})"
            graph.output.append(helper.make_tensor_value_info(absmax, TensorProto.FLOAT, []))
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
    worst: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"max_abs_activation": round(self.value, 3), "tensor": self.tensor,
                "fp16_max": FP16_MAX, "fraction_of_fp16_max": round(self.value / FP16_MAX, 5),
                "tensors_checked": self.tensors, "frames": self.frames}


class EmulatedFP16:
    """Predictor (frame -> (labels, logits)) over an FP16 ONNX with float16 rounding emulated."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        from calib.runners import cpu_threads

        model, self.watched = emulation_model(onnx.load(str(path)))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or cpu_threads()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(model.SerializeToString(), opts,
                                            providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.names = [o.name for o in self.session.get_outputs()]
        self.headroom = Headroom(tensors=len(self.watched))

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        result = dict(zip(self.names, self.session.run(None, {self.input_name: frame[None]})))
        self.headroom.frames += 1
        for name, label in self.watched.items():
            value = float(result[name])
            if not np.isfinite(value) or value > FP16_MAX:
                raise FP16Overflow(f"FP16 overflow on gate frame {self.headroom.frames}: "
                                   f"{label} reaches {value:.4g} (float16 holds at most "
                                   f"{FP16_MAX:.0f}); keep that node in float32 "
                                   "(calib/fp16.py block list) or build fp32")
            if value > self.headroom.value:
                self.headroom.value, self.headroom.tensor = value, label
        logits = result.get("logits")
        return result["labels"][0], (logits[0] if logits is not None else None)
