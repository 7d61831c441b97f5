"""TensorRT's ONNX-parser rules, checked offline: what the parser would refuse, named by node.

Nothing here needs TensorRT, CUDA or torch (onnx only), so it runs in CI and inside every
`--backend tensorrt` build before TensorRT is called: a GPU user gets one line naming the node
instead of a parser failure, and a graph this project exports is proven parseable by the rules
NVIDIA documents, not by a GPU run (none has happened here).

Each rule cites its source. "matrix" rows are onnx/onnx-tensorrt docs/operators.md; the oldest
row we rely on is the 10.1-GA branch ("TensorRT 10.0 supports operators in the inclusive range of
opset 9 to opset 20"), intersected with release 10.15 ("opset 9 to opset 24"), so a graph that
passes is inside what every TensorRT 10.x documents; TensorRT 11.x documents nothing narrower
for these operators (its parser notes add operators and one relaxation, cited where it bites).

    python -m build_engine.tensorrt_rules MODEL.onnx [MORE.onnx ...]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import TensorProto, numpy_helper

import clikit
from build_engine.errors import BuildError

RULES_ID = "pspnet-rt trt-rules/1 (onnx-tensorrt 10.1-GA..10.15 operators.md, TensorRT 11.x notes)"

# -- sources ---------------------------------------------------------------------------------
OT = "github.com/onnx/onnx-tensorrt"
SRC_MATRIX = f"{OT} docs/operators.md (10.1-GA and 10.15 support matrix)"
SRC_OPSET = f"{OT} docs/operators.md: 'TensorRT 10.0 supports ... opset 9 to opset 20' (10.15: to 24)"
SRC_IR = f"{OT} README.md (10.1-GA): 'TensorRT 10.1 supports ONNX release 1.16.0' (IR version 10)"
SRC_UINT8_IO = (f"{OT} ModelImporter.cpp: 'TensorRT does not support UINT8 types for intermediate "
                "tensors'; operators.md: 'UINT8 is only supported as network input or output'")
SRC_UINT8_CAST_IN = ("github.com/NVIDIA/TensorRT/issues/3985 (maintainer: 'All UINT8 inputs must "
                     "directly feed into a cast layer ... even just data-movement ops like reshape "
                     "/ transpose')")
SRC_UINT8_SHAPE = (f"{OT} docs/operators.md Shape row (FP32, FP16, BF16, INT32, INT64, BOOL: no "
                   "UINT8); NVIDIA/TensorRT#3985")
SRC_UINT8_CAST = ("docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/"
                  "FoundationalTypes/DataType.html (UINT8: 'conversions are only supported for "
                  "{float32, float16}'); NVIDIA/TensorRT#4278 (UInt8 network output must be "
                  "produced by an IIdentityLayer or ICastLayer)")
SRC_DOMAIN = f"{OT} ModelImporter.cpp parseNodeStaticCheck (other domains need a plugin)"
SRC_RESIZE = (f"{OT} onnxOpCheckers.cpp DEFINE_OP_CHECKER(Resize), onnxOpImporters.cpp Resize; "
              "operators.md Resize row")
SRC_ARGMAX = f"{OT} onnxOpCheckers.cpp argMinMaxCheckHelper; operators.md ArgMax row"
SRC_POOL = (f"{OT} onnxOpCheckers.cpp poolingCheckHelper / DEFINE_OP_CHECKER(MaxPool); "
            "operators.md MaxPool/AveragePool rows ('2D or 3D', 'dilations must be empty or all "
            "ones', 'Indices output tensor unsupported')")
SRC_REDUCE = (f"{OT} importerUtils.cpp reduceTensor ('Axis input must be an initializer!'); "
              "operators.md ReduceMean row")
SRC_SLICE = (f"{OT} onnxOpCheckers.cpp DEFINE_OP_CHECKER(Slice) (3-5 inputs); operators.md "
             "10.1-GA Slice row ('axes must be an initializer')")
SRC_SQUEEZE = (f"{OT} onnxOpImporters.cpp Squeeze (10.x: omitted axes need a static shape); "
               "github.com/NVIDIA/TensorRT/releases/tag/v11.5 ('Added support for Squeeze when "
               "axis input is omitted'); operators.md Squeeze/Unsqueeze rows")
SRC_CONV = f"{OT} docs/operators.md Conv row (8.x: 'Weights W must be an initializer'), 2D/3D"
SRC_CAST = f"{OT} importerUtils.cpp convertDtype, onnxOpCheckers.cpp DEFINE_OP_CHECKER(Cast)"
SRC_QDQ = (f"{OT} onnxOpImporters.cpp QuantDequantLinearHelper ('Scale coefficients must all be "
           "positive', 'zero point ... must be all zeros', 'Activations-quantization does not "
           "support per-axis quantization'); operators.md Q/DQ rows; docs.nvidia.com/"
           "deeplearning/tensorrt/latest/inference-library/work-quantized-types.html")
SRC_CONSTANT = f"{OT} docs/operators.md Constant row (no sparse_value / value_string(s))"

OPSET_RANGE = (9, 20)  # the range every TensorRT 10.x documents (10.0: 9-20, 10.15: 9-24)
MAX_IR_VERSION = 10  # ONNX 1.16, what onnx-tensorrt 10.1 builds against

F, H, B = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16
I32, I64, U8, I8, BOOL = (TensorProto.INT32, TensorProto.INT64, TensorProto.UINT8,
                          TensorProto.INT8, TensorProto.BOOL)
FLOATS = frozenset({F, H, B})
NUMERIC = FLOATS | {I32, I64}
ANY = NUMERIC | {BOOL}

# op -> (types its data input may have, input indices that are data). The operators.md rows of
# 10.1-GA (the narrower of 10.1 and 10.15 wherever they differ), for every op these graphs emit
# plus their close relatives (other export sizes and models emit AveragePool, Unsqueeze, ...).
SUPPORTED: dict[str, tuple[frozenset, tuple[int, ...]]] = {
    "Add": (NUMERIC, (0, 1)), "Sub": (NUMERIC, (0, 1)), "Mul": (NUMERIC, (0, 1)),
    "Div": (NUMERIC, (0, 1)), "Relu": (NUMERIC, (0,)), "Clip": (FLOATS, (0,)),
    "Sigmoid": (FLOATS, (0,)), "Floor": (FLOATS, (0,)), "Neg": (NUMERIC, (0,)),
    "Max": (NUMERIC, (0, 1)), "Min": (NUMERIC, (0, 1)),
    "Conv": (FLOATS, (0,)), "ConvTranspose": (FLOATS, (0,)),
    "BatchNormalization": (FLOATS, (0,)),
    "MaxPool": (FLOATS, (0,)), "AveragePool": (FLOATS, (0,)),
    "GlobalAveragePool": (FLOATS, (0,)),
    "ReduceMean": (NUMERIC, (0,)), "ReduceMax": (NUMERIC, (0,)), "ReduceSum": (NUMERIC, (0,)),
    "Resize": (FLOATS, (0,)),
    "ArgMax": (NUMERIC, (0,)), "ArgMin": (NUMERIC, (0,)),
    "Cast": (ANY | {U8}, (0,)),
    "Concat": (ANY, ()),  # every input; checked below
    "Slice": (ANY, (0,)), "Reshape": (ANY, (0,)), "Transpose": (ANY, (0,)),
    "Squeeze": (ANY, (0,)), "Unsqueeze": (ANY, (0,)), "Flatten": (ANY, (0,)),
    "Expand": (ANY, (0,)), "Gather": (ANY, (0,)), "Identity": (ANY, (0,)),
    "Shape": (ANY, (0,)), "Size": (ANY, (0,)), "Constant": (ANY, ()),
    "Pad": (NUMERIC, (0,)), "Softmax": (FLOATS, (0,)),
    "Exp": (FLOATS, (0,)),  # the confidence tail (confidence_tail.py); 10.0-EA..10.1-GA: FP32, FP16, BF16
    "MatMul": (FLOATS, (0, 1)),  # the row-tiled labels tail's row weights (label_tiles.py)
    "QuantizeLinear": (FLOATS, (0,)),
    "DequantizeLinear": (frozenset({I8, TensorProto.FLOAT8E4M3FN, TensorProto.INT4}), (0,)),
}
REDUCE_OPS = {"ReduceMean", "ReduceMax", "ReduceSum"}
RESIZE_COORDS = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric",
                 "align_corners"}
RESIZE_NEAREST = {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}
CAST_TARGETS = {F, H, B, I32, I64, U8, BOOL, I8}
FLOAT_FOR_UINT8 = {F, H}


@dataclass(frozen=True)
class Violation:
    """One thing TensorRT's parser (or builder) would refuse, and where the rule comes from."""

    rule: str
    node: str
    op: str
    message: str
    source: str

    def line(self) -> str:
        return f"{self.rule} {self.node} ({self.op}): {self.message} [source: {self.source}]"


class _Graph:
    """Types, producers, consumers and constants of one ONNX graph, for the rules below."""

    def __init__(self, model: onnx.ModelProto) -> None:
        # Types from inference where it works; else from what the file itself declares.
        with contextlib.suppress(Exception):
            model = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        graph = model.graph
        self.model = model
        self.nodes = list(graph.node)
        self.inputs = {i.name for i in graph.input}
        self.outputs = {o.name for o in graph.output}
        self.initializers = {i.name: i for i in graph.initializer}
        self.types: dict[str, int] = {i.name: i.data_type for i in graph.initializer}
        for value in [*graph.input, *graph.output, *graph.value_info]:
            if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type:
                self.types.setdefault(value.name, value.type.tensor_type.elem_type)
        self.producer = {out: n for n in self.nodes for out in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.nodes:
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(node)
        self.constant_outputs = {n.output[0]: n for n in self.nodes if n.op_type == "Constant"}

    def is_constant(self, name: str) -> bool:
        """An initializer or a Constant node's output: what the parser imports as weights."""
        return name in self.initializers or name in self.constant_outputs

    def constant(self, name: str):
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.constant_outputs.get(name)
        if node is not None:
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
        return None

    def rank(self, name: str) -> int | None:
        if name in self.initializers:
            return len(self.initializers[name].dims)
        for value in [*self.model.graph.input, *self.model.graph.value_info,
                      *self.model.graph.output]:
            if value.name == name and value.type.tensor_type.HasField("shape"):
                return len(value.type.tensor_type.shape.dim)
        return None


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _type_name(dtype: int | None) -> str:
    return TensorProto.DataType.Name(dtype) if dtype else "unknown"


def check_model(model: onnx.ModelProto) -> list[Violation]:
    """Every rule violation in `model`, in graph order; an empty list means the rules pass."""
    g = _Graph(model)
    found: list[Violation] = []
    found += _model_rules(g)
    found += _uint8_rules(g)
    for node in g.nodes:
        found += _node_rules(g, node)
    return found


def check_file(path: str | Path) -> list[Violation]:
    return check_model(onnx.load(str(path)))


# -- model level -----------------------------------------------------------------------------
def _model_rules(g: _Graph) -> Iterable[Violation]:
    opset = next((o.version for o in g.model.opset_import if o.domain in ("", "ai.onnx")), None)
    lo, hi = OPSET_RANGE
    if opset is None or not lo <= opset <= hi:
        yield Violation("opset", "(model)", "-", f"default-domain opset {opset} is outside "
                        f"{lo}-{hi}, the range every TensorRT 10.x parser documents", SRC_OPSET)
    if g.model.ir_version > MAX_IR_VERSION:
        yield Violation("ir-version", "(model)", "-", f"IR version {g.model.ir_version} is newer "
                        f"than {MAX_IR_VERSION} (ONNX 1.16), what the TensorRT 10.1 parser reads",
                        SRC_IR)


# -- UINT8 at the network boundary (R1-R3) ------------------------------------------------------
def _uint8_rules(g: _Graph) -> Iterable[Violation]:
    for name in sorted(g.inputs):
        if g.types.get(name) != U8 or name in g.initializers:
            continue
        for node in g.consumers.get(name, []):
            if node.op_type in ("Shape", "Size"):
                yield Violation("R2", node.name, node.op_type, f"reads the UINT8 input {name!r}; "
                                "take the shape from its float Cast instead", SRC_UINT8_SHAPE)
            elif node.op_type != "Cast" or _attrs(node).get("to") not in FLOAT_FOR_UINT8:
                yield Violation("R1", node.name, node.op_type, f"reads the UINT8 input {name!r}; "
                                "a UINT8 input may feed only a Cast to FLOAT/FLOAT16",
                                SRC_UINT8_CAST_IN)
    for node in g.nodes:
        for out in node.output:
            if out and g.types.get(out) == U8 and out not in g.outputs:
                yield Violation("R1", node.name, node.op_type, f"makes the UINT8 intermediate "
                                f"tensor {out!r}; UINT8 is allowed only at network inputs and "
                                "outputs", SRC_UINT8_IO)
    for name in sorted(g.outputs):
        if g.types.get(name) != U8:
            continue
        node = g.producer.get(name)
        if node is None or node.op_type != "Cast":  # a Cast's source type: the Cast rule
            yield Violation("R3", node.name if node is not None else name,
                            node.op_type if node is not None else "-",
                            f"makes the UINT8 output {name!r}; UINT8 outputs must come from a "
                            "Cast of FLOAT/FLOAT16", SRC_UINT8_CAST)


# -- per node --------------------------------------------------------------------------------
def _node_rules(g: _Graph, node: onnx.NodeProto) -> list[Violation]:
    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        return [Violation("domain", node.name, op, f"op of domain {node.domain!r} needs a "
                          "TensorRT plugin", SRC_DOMAIN)]
    if op not in SUPPORTED:
        return [Violation("op-not-covered", node.name, op, "no offline rule covers this op; add "
                          "its operators.md row to build_engine/tensorrt_rules.py before trusting "
                          "this graph on TensorRT", SRC_MATRIX)]
    found = list(_dtype_rule(g, node))
    check = _ATTRIBUTE_RULES.get(op)
    if op in REDUCE_OPS:
        check = _reduce
    if check is not None:
        found += list(check(g, node, _attrs(node)))
    return found


def _dtype_rule(g: _Graph, node: onnx.NodeProto) -> Iterable[Violation]:
    allowed, indices = SUPPORTED[node.op_type]
    if node.op_type == "Concat":
        indices = tuple(range(len(node.input)))
    for i in indices:
        if i >= len(node.input) or not node.input[i]:
            continue
        dtype = g.types.get(node.input[i])
        if dtype is None or dtype in allowed:
            continue
        if dtype == U8:
            continue  # reported once, as R1/R2, by the UINT8 rules
        yield Violation("dtype", node.name, node.op_type, f"input {i} is "
                        f"{_type_name(dtype)}; the matrix allows "
                        f"{', '.join(sorted(_type_name(t) for t in allowed))}", SRC_MATRIX)


def _resize(g: _Graph, node: onnx.NodeProto, a: dict) -> Iterable[Violation]:
    mode = _text(a.get("mode", "nearest"))
    coord = _text(a.get("coordinate_transformation_mode", "half_pixel"))
    nearest = _text(a.get("nearest_mode", "round_prefer_floor"))
    if mode not in ("nearest", "linear", "cubic"):
        yield Violation("resize-mode", node.name, "Resize", f"mode {mode!r}", SRC_RESIZE)
    if coord not in RESIZE_COORDS:
        yield Violation("resize-coordinates", node.name, "Resize", f"coordinate_transformation_"
                        f"mode {coord!r} is not one of {sorted(RESIZE_COORDS)}", SRC_RESIZE)
    if nearest not in RESIZE_NEAREST or (coord == "tf_half_pixel_for_nn"
                                         and nearest != "round_prefer_floor"):
        yield Violation("resize-nearest-mode", node.name, "Resize", f"nearest_mode {nearest!r} "
                        f"with {coord!r}", SRC_RESIZE)
    if a.get("antialias", 0):
        yield Violation("resize-antialias", node.name, "Resize", "antialias is not supported",
                        SRC_RESIZE)
    if _text(a.get("keep_aspect_ratio_policy", "stretch")) != "stretch":
        yield Violation("resize-aspect", node.name, "Resize", "only keep_aspect_ratio_policy "
                        "'stretch' is supported", SRC_RESIZE)
    axes = list(a.get("axes", []))
    if len(set(axes)) != len(axes):
        yield Violation("resize-axes", node.name, "Resize", f"axes {axes} repeat", SRC_RESIZE)
    if len(node.input) > 1 and node.input[1] and coord != "tf_crop_and_resize":
        roi = g.constant(node.input[1])
        if roi is None or roi.size:
            yield Violation("resize-roi", node.name, "Resize", "a roi input is only meaningful "
                            "for tf_crop_and_resize, which TensorRT does not support", SRC_RESIZE)
    if len(node.input) > 2 and node.input[2]:
        scales_type = g.types.get(node.input[2])
        if scales_type not in (None, F):
            yield Violation("resize-scales", node.name, "Resize", f"scales are "
                            f"{_type_name(scales_type)}; ONNX and TensorRT take FLOAT scales",
                            SRC_RESIZE)
        if axes and axes != list(range(len(axes))) and not g.is_constant(node.input[2]):
            yield Violation("resize-axes", node.name, "Resize", "tensor scales need axes to be "
                            "an iota vector", SRC_RESIZE)


def _argmax(g: _Graph, node: onnx.NodeProto, a: dict) -> Iterable[Violation]:
    opset = next((o.version for o in g.model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if a.get("select_last_index", 0) and opset < 12:
        yield Violation("argmax-select-last", node.name, node.op_type, "select_last_index needs "
                        "opset >= 12", SRC_ARGMAX)
    if a.get("keepdims", 1) not in (0, 1) or a.get("select_last_index", 0) not in (0, 1):
        yield Violation("argmax-attributes", node.name, node.op_type, "keepdims and "
                        "select_last_index must be 0 or 1", SRC_ARGMAX)


def _pool(g: _Graph, node: onnx.NodeProto, a: dict) -> Iterable[Violation]:
    kernel = list(a.get("kernel_shape", []))
    if len(kernel) not in (2, 3):
        yield Violation("pool-rank", node.name, node.op_type, f"kernel_shape {kernel}: only 2D "
                        "or 3D pooling", SRC_POOL)
    if any(d != 1 for d in a.get("dilations", [])):
        yield Violation("pool-dilations", node.name, node.op_type, f"dilations "
                        f"{list(a['dilations'])} must be empty or all ones", SRC_POOL)
    if node.op_type == "MaxPool" and len([o for o in node.output if o]) > 1:
        yield Violation("pool-indices", node.name, node.op_type, "the Indices output is not "
                        "supported", SRC_POOL)
    if _text(a.get("auto_pad", "NOTSET")) not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        yield Violation("pool-auto-pad", node.name, node.op_type, f"auto_pad {a['auto_pad']!r}",
                        SRC_POOL)


def _reduce(g: _Graph, node: onnx.NodeProto, a: dict) -> Iterable[Violation]:
    if len(node.input) > 1 and node.input[1] and not g.is_constant(node.input[1]):
        yield Violation("reduce-axes", node.name, node.op_type, f"axes {node.input[1]!r} are "
                        "computed at run time; TensorRT needs them as an initializer", SRC_REDUCE)


def _slice(g: _Graph, node: onnx.NodeProto, a: dict) -> Iterable[Violation]:
    if not 3 <= len(node.input) <= 5:
        yield Violation("slice-inputs", node.name, "Slice", f"{len(node.input)} inputs; opset "
                        ">= 10 Slice takes 3-5", SRC_SLICE)
    if len(node.input) > 3 and node.input[3] and not g.is_constant(node.input[3]):
        yield Violation("slice-axes", node.name, "Slice", "axes must be an initializer",
                        SRC_SLICE)


def _squeeze(g: _Graph, node: onnx.NodeProto, a: dict) -> Iterable[Violation]:
    if len(node.input) < 2 or not node.input[1]:
        if "axes" not in a:  # opset >= 13 takes axes as an input
            yield Violation("squeeze-axes", node.name, node.op_type, "axes are omitted; give "
                            "them as a constant input (10.x infers them only from static shapes; "
                            "11.x notes add omitted axes only in 11.5)", SRC_SQUEEZE)
    elif not g.is_constant(node.input[1]):
        yield Violation("squeeze-axes", node.name, node.op_type, "axes must be a constant",
                        SRC_SQUEEZE)


def _conv(g: _Graph, node: onnx.NodeProto, a: dict) -> Iterable[Violation]:
    weight = node.input[1] if len(node.input) > 1 else ""
    rank = g.rank(weight)
    if rank is not None and rank not in (4, 5):
        yield Violation("conv-rank", node.name, node.op_type, f"weight rank {rank}: only 2D or "
                        "3D convolutions", SRC_CONV)
    producer = g.producer.get(weight)
    quantized_const = (producer is not None and producer.op_type == "DequantizeLinear"
                       and g.is_constant(producer.input[0]))
    if not (g.is_constant(weight) or quantized_const):
        yield Violation("conv-weights", node.name, node.op_type, "weights must be an initializer "
                        "(or DequantizeLinear of one)", SRC_CONV)


def _cast(g: _Graph, node: onnx.NodeProto, a: dict) -> Iterable[Violation]:
    to = a.get("to")
    if to not in CAST_TARGETS:
        yield Violation("cast-type", node.name, "Cast", f"cast to {_type_name(to)} has no "
                        "TensorRT type", SRC_CAST)
    source = g.types.get(node.input[0])
    if to == U8 and source not in (None, *FLOAT_FOR_UINT8):
        yield Violation("R3", node.name, "Cast", f"casts {_type_name(source)} to UINT8; only "
                        "FLOAT/FLOAT16 convert to UINT8 (e.g. ArgMax -> Cast(float) -> "
                        "Cast(uint8))", SRC_UINT8_CAST)
    if source == U8 and to not in FLOAT_FOR_UINT8:
        yield Violation("R3", node.name, "Cast", f"casts UINT8 to {_type_name(to)}; UINT8 "
                        "converts only to FLOAT/FLOAT16", SRC_UINT8_CAST)


def _qdq(g: _Graph, node: onnx.NodeProto, a: dict) -> Iterable[Violation]:
    op = node.op_type
    if len(node.input) < 2:
        yield Violation("qdq-scale", node.name, op, "a scale input is required", SRC_QDQ)
        return
    scale = g.constant(node.input[1])
    if scale is None:
        yield Violation("qdq-scale", node.name, op, "the scale must be an initializer",
                        SRC_QDQ)
        return
    if g.types.get(node.input[1]) not in FLOATS:
        yield Violation("qdq-scale", node.name, op, f"scale type "
                        f"{_type_name(g.types.get(node.input[1]))} is not a float type", SRC_QDQ)
    if scale.size == 0 or not (scale > 0).all():
        yield Violation("qdq-scale", node.name, op, "scale coefficients must all be positive",
                        SRC_QDQ)
    if len(node.input) > 2 and node.input[2]:
        zero = g.constant(node.input[2])
        zero_type = g.types.get(node.input[2])
        if zero is None:
            yield Violation("qdq-zero-point", node.name, op, "the zero point must be an "
                            "initializer", SRC_QDQ)
        elif zero_type != I8 or zero.size != scale.size or (zero != 0).any():
            yield Violation("qdq-zero-point", node.name, op, f"zero point must be INT8 zeros of "
                            f"the scale's size (is {_type_name(zero_type)}, {zero.size} values, "
                            f"non-zero: {int((zero != 0).sum())}); TensorRT is symmetric only",
                            SRC_QDQ)
    if scale.size > 1:
        data = node.input[0]
        quantizer = g.producer.get(data)
        weight = g.is_constant(data) or (quantizer is not None and quantizer.op_type ==
                                         "QuantizeLinear" and g.is_constant(quantizer.input[0]))
        if not weight:
            yield Violation("qdq-per-axis", node.name, op, "per-axis scales on an activation; "
                            "TensorRT quantizes activations per tensor", SRC_QDQ)
        const = g.constant(data if g.is_constant(data) or quantizer is None
                           else quantizer.input[0])
        if const is not None:
            axis = a.get("axis", 1)
            axis = axis + const.ndim if axis < 0 else axis
            if scale.ndim != 1 or not 0 <= axis < const.ndim or const.shape[axis] != scale.size:
                yield Violation("qdq-per-axis", node.name, op, f"{scale.size} scales do not "
                                f"match axis {a.get('axis', 1)} of a {list(const.shape)} "
                                "weight", SRC_QDQ)


def _constant(g: _Graph, node: onnx.NodeProto, a: dict) -> Iterable[Violation]:
    bad = {"sparse_value", "value_string", "value_strings"} & set(a)
    if bad:
        yield Violation("constant-attribute", node.name, "Constant", f"{sorted(bad)} "
                        "unsupported", SRC_CONSTANT)


_ATTRIBUTE_RULES = {
    "Resize": _resize, "ArgMax": _argmax, "ArgMin": _argmax, "MaxPool": _pool,
    "AveragePool": _pool, "Slice": _slice, "Squeeze": _squeeze, "Unsqueeze": _squeeze,
    "Conv": _conv, "ConvTranspose": _conv, "Cast": _cast, "QuantizeLinear": _qdq,
    "DequantizeLinear": _qdq, "Constant": _constant,
}


# -- results ---------------------------------------------------------------------------------
class GraphRulesError(BuildError):
    """The graph breaks a TensorRT parser rule; raised before TensorRT is called."""


def require_pass(path: str | Path) -> dict:
    """The manifest record for a graph that passes; GraphRulesError (one line) otherwise."""
    violations = check_file(path)
    if violations:
        raise GraphRulesError(
            f"TensorRT's ONNX parser would refuse {Path(path).name}: {len(violations)} rule "
            f"violation(s), first {violations[0].line()} (list them all: `python -m "
            "build_engine.tensorrt_rules` on the ONNX that `--stop-after quantize` keeps)")
    return record(violations)


def record(violations: list[Violation], limit: int = 20) -> dict:
    """The manifest's `tensorrt_graph_rules` entry: what was checked, how, and with what result."""
    return {"result": "pass" if not violations else "fail", "checked": "offline",
            "rules": RULES_ID, "ran_on_gpu": False, "violations": len(violations),
            "first": [v.line() for v in violations[:limit]]}


def summary(path: str | Path, violations: list[Violation]) -> str:
    if not violations:
        return f"{path}: TensorRT graph rules: pass (checked offline, {RULES_ID})"
    return f"{path}: TensorRT graph rules: {len(violations)} violation(s)"


PROG = "python -m build_engine.tensorrt_rules"
EXAMPLES = """\
examples:
  python -m build_engine.tensorrt_rules model.onnx
  python -m build_engine --backend tensorrt --precision int8 --stop-after quantize
  python -m build_engine.tensorrt_rules ~/.cache/pspnet-rt/artefacts/*.quantize.onnx

prints one line per violation (rule, node, op, why, source) and a pass/fail summary.
exit codes: 0 every graph passes, 1 a rule is violated, 2 a file is missing or not ONNX
"""


def build_parser() -> argparse.ArgumentParser:
    p = clikit.parser(PROG, "Check ONNX graphs against TensorRT's documented ONNX-parser rules, "
                            "offline (no GPU, no TensorRT).", EXAMPLES)
    p.add_argument("models", nargs="+", metavar="MODEL.onnx", type=clikit.input_file("an ONNX model"))
    clikit.add_verbose(p)
    return p


def _check_all(args: argparse.Namespace) -> int:
    status = clikit.EXIT_OK
    for path in args.models:
        try:
            violations = check_file(path)
        except FileNotFoundError:
            raise clikit.UsageError(f"{path} does not exist; pass an .onnx file") from None
        except Exception as exc:  # protobuf's DecodeError and kin: not an ONNX model
            raise clikit.UsageError(f"{path} is not an ONNX model ({type(exc).__name__}); pass "
                                    "an .onnx file") from None
        for violation in violations:
            print(f"{path}: {violation.line()}")
        print(summary(path, violations), file=sys.stderr if violations else sys.stdout)
        status = max(status, clikit.EXIT_FAIL if violations else clikit.EXIT_OK)
    return status


def main(argv: list[str] | None = None) -> int:
    return clikit.run(PROG, build_parser(), _check_all, argv)


if __name__ == "__main__":
    sys.exit(main())
