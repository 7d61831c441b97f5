"""The fused graph's optional `confidence` output, added to the exported ONNX as a small tail.

Per pixel, the largest softmax probability of the full-size logits the labels' ArgMax reads, as
uint8 with 255 = 1.0 (segdata.confidence defines it in numpy; the build checks one against the
other). Written as ONNX nodes after the export rather than traced from PyTorch so the rest of
the graph keeps its exact bytes (its INT8 calibration ranges, keyed by the graph's sha256,
still apply) and the ops are the ones chosen here:

    logits (1xCxHxW, float) ─► ReduceMax(C) ─► Sub ─► Exp ─► ReduceSum(C) = s  (s >= 1)
    confidence = Cast<uint8>(Floor(255 / s + 0.5))

max_c softmax(l)_c = 1 / sum_c exp(l_c - max l): no CxHxW probability tensor beyond the
exponentials, an exponent never above 0 (no overflow in any float type), a sum never below 1.
Rounded to the nearest level in float so every backend's float -> uint8 Cast is exact, and the
bytes come from a float Cast as TensorRT requires of a UINT8 output (tensorrt_rules R3).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from artefact.manifest import CONFIDENCE_NAME, LABELS_NAME
from segdata.confidence import LEVELS

PREFIX = "confidence_tail"


def full_size_logits(model: onnx.ModelProto, labels_name: str = LABELS_NAME) -> str:
    """The tensor the labels' ArgMax reads (through the Casts that make the uint8 labels)."""
    producer = {out: n for n in model.graph.node for out in n.output}
    node = producer.get(labels_name)
    while node is not None and node.op_type == "Cast":
        node = producer.get(node.input[0])
    if node is None or node.op_type != "ArgMax":
        raise ValueError(f"the {labels_name!r} output is not made by an ArgMax (+ Casts): no logits to "
                         "take the confidence of")
    return node.input[0]


def opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def reduce_max(model: onnx.ModelProto, data: str, axes: str, output: str, name: str) -> onnx.NodeProto:
    """ReduceMax over the classes, keepdims: axes as an input from opset 18 (the export's), an
    attribute before (ReduceSum takes the input from opset 13 on)."""
    if opset(model) >= 18:
        return helper.make_node("ReduceMax", [data, axes], [output], name=name, keepdims=1)
    return helper.make_node("ReduceMax", [data], [output], name=name, keepdims=1, axes=[1])


def add_confidence_output(model: onnx.ModelProto, labels_name: str = LABELS_NAME,
                          name: str = CONFIDENCE_NAME) -> onnx.ModelProto:
    """Append the tail and a uint8 1xHxW output `name` (in place; returns the model)."""
    graph = model.graph
    if any(o.name == name for o in graph.output):
        raise ValueError(f"the graph already has an output {name!r}")
    logits = full_size_logits(model, labels_name)
    labels = next(o for o in graph.output if o.name == labels_name)

    def const(suffix: str, value: np.ndarray) -> str:
        tensor = numpy_helper.from_array(value, f"{PREFIX}/{suffix}")
        graph.initializer.append(tensor)
        return tensor.name

    def t(suffix: str) -> str:
        return f"{PREFIX}/{suffix}"

    axes = const("axes", np.array([1], np.int64))
    graph.node.extend([
        reduce_max(model, logits, axes, t("max"), t("ReduceMax")),
        helper.make_node("Sub", [logits, t("max")], [t("shifted")], name=t("Sub")),
        helper.make_node("Exp", [t("shifted")], [t("exp")], name=t("Exp")),
        helper.make_node("ReduceSum", [t("exp"), axes], [t("sum")], name=t("ReduceSum"), keepdims=0),
        helper.make_node("Div", [const("levels", np.array(LEVELS, np.float32)), t("sum")], [t("scaled")],
                         name=t("Div")),
        helper.make_node("Add", [t("scaled"), const("half", np.array(0.5, np.float32))], [t("plus_half")],
                         name=t("Add")),
        helper.make_node("Floor", [t("plus_half")], [t("rounded")], name=t("Floor")),
        helper.make_node("Cast", [t("rounded")], [name], name=t("Cast"), to=TensorProto.UINT8),
    ])
    output = onnx.ValueInfoProto()
    output.CopyFrom(labels)  # same uint8 1xHxW type and (possibly symbolic) shape as the labels
    output.name = name
    graph.output.append(output)
    return model


def reduction_of(model: onnx.ModelProto, logits: str) -> dict[str, onnx.NodeProto] | None:
    """The tail's nodes that read the full-size logits: {"max", "sub", "exp", "sum"} (ReduceMax,
    Sub, Exp, ReduceSum: the only ones whose cost grows with the class count), or None when the
    graph has no confidence tail on `logits`. The row-tiled labels tail (label_tiles) computes
    them per tile too."""
    by_name = {n.name: n for n in model.graph.node}
    parts = {"max": by_name.get(f"{PREFIX}/ReduceMax"), "sub": by_name.get(f"{PREFIX}/Sub"),
             "exp": by_name.get(f"{PREFIX}/Exp"), "sum": by_name.get(f"{PREFIX}/ReduceSum")}
    if any(n is None for n in parts.values()):
        return None
    if not parts["max"].input[0] == parts["sub"].input[0] == logits:
        return None
    return parts  # type: ignore[return-value]


def add_confidence_file(path: str | Path) -> Path:
    """add_confidence_output on an ONNX file, rewritten in place (the export's work folder)."""
    model = onnx.load(str(path))
    onnx.save(add_confidence_output(model), str(path))
    return Path(path)
