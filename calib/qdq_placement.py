"""Where Q/DQ pairs go: NVIDIA's placement for TensorRT, and ONNX Runtime's Conv-output default.

NVIDIA's explicit-quantization guidance (TensorRT developer guide, "Q/DQ Layer-Placement
Recommendations", docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/
work-quantized-types.html): quantize the inputs of weighted ops (Conv), do not quantize their
outputs by default, and quantize the residual input of an Add so Conv+Add(+ReLU) fuse into one
INT8 kernel. Which Add input is the residual follows NVIDIA ModelOpt's own rule
(modelopt/onnx/quantization/graph_utils.py `build_non_residual_input_map`): an input made by a
Conv is the one TensorRT fuses; when both are, the one on the longer path back to their common
ancestor is (the main branch), and the other (the shortcut or downsample) is the residual.

"conv-outputs" is what ORT's quantize_static does by default (Q/DQ on every Conv output as
well), which ORT's CPU provider needs to turn Q/DQ groups into QLinearConv, plus the inputs of
Concat: the backbone's last map goes straight into the pyramid-pooling Concat, and unquantized
there OpenVINO holds it, and the last block's residual, in f32 (two 63 MB maps at 713x713).
"""

from __future__ import annotations

from collections import deque

import onnx

# The op types each placement hands to ORT's quantizer. conv-outputs: Conv, and the pyramid
# pooling's Concat, whose float inputs (the backbone's last map, 2048 channels) OpenVINO would
# otherwise hold in f32 (63 MB at 713x713). tensorrt: Conv and the residual Adds.
QUANTIZED_OPS = {"tensorrt": ("Conv", "Add"), "conv-outputs": ("Conv", "Concat")}
PLACEMENTS = tuple(QUANTIZED_OPS)
# Every op type some placement quantizes: keeping a block in float must exclude all of them.
ANY_QUANTIZED_OP = tuple(sorted({op for ops in QUANTIZED_OPS.values() for op in ops}))
# Which placement each target backend uses by default is its compiler's `qdq_placement`
# (build_engine/compilers/), chosen by the interleaved comparison in docs/tensorrt.md.


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: n for n in model.graph.node for out in n.output}


def _distances(start: onnx.NodeProto, made_by: dict[str, onnx.NodeProto]) -> dict[str, int]:
    """Node name -> hops from `start` back through its producers (start itself at 0)."""
    seen, queue = {start.name: 0}, deque([start])
    while queue:
        node = queue.popleft()
        for name in node.input:
            parent = made_by.get(name)
            if parent is not None and parent.name not in seen:
                seen[parent.name] = seen[node.name] + 1
                queue.append(parent)
    return seen


def residual_adds(model: onnx.ModelProto) -> dict[str, tuple[int, int]]:
    """Add node name -> (index of the input TensorRT fuses into the Conv, index of the residual).

    Adds with a constant or graph-input operand (normalisation, index arithmetic) are not
    residual and are left out.
    """
    made_by = _producers(model)
    found: dict[str, tuple[int, int]] = {}
    for node in model.graph.node:
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        a, b = (made_by.get(name) for name in node.input)
        if a is None or b is None:
            continue
        conv_a, conv_b = a.op_type == "Conv", b.op_type == "Conv"
        if not (conv_a or conv_b):
            continue
        if conv_a != conv_b:
            conv, other = (a, b) if conv_a else (b, a)
            if conv.name not in _distances(other, made_by):  # else the Add reads the Conv twice
                found[node.name] = (0, 1) if conv_a else (1, 0)
            continue
        da, db = _distances(a, made_by), _distances(b, made_by)
        common = set(da) & set(db)
        if not common:
            continue
        lca = min(common, key=lambda n: da[n] + db[n])
        found[node.name] = (0, 1) if da[lca] >= db[lca] else (1, 0)
    return found


def adds_to_exclude(model: onnx.ModelProto) -> list[str]:
    """Add nodes that are not residual connections: they get no Q/DQ at all."""
    residual = residual_adds(model)
    return [n.name for n in model.graph.node if n.op_type == "Add" and n.name not in residual]


def unquantize_fused_inputs(model: onnx.ModelProto, residual: dict[str, tuple[int, int]]
                            ) -> int:
    """Take the Q/DQ pair off each residual Add's fused (main-branch) input, in place.

    ORT quantizes both Add inputs; TensorRT wants the main branch in float so the Conv's
    epilogue absorbs the Add. The pair goes away entirely when nothing else reads it.
    Returns how many inputs were unquantized.
    """
    graph = model.graph
    made_by = _producers(model)
    changed = 0
    for node in graph.node:
        if node.name not in residual:
            continue
        fused = residual[node.name][0]
        dq = made_by.get(node.input[fused])
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        q = made_by.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            continue
        node.input[fused] = q.input[0]
        changed += 1
    _drop_unread(graph)
    return changed


def _drop_unread(graph: onnx.GraphProto) -> None:
    """Remove Q/DQ nodes whose outputs nothing reads any more (and their unread constants)."""
    while True:
        read = {name for n in graph.node for name in n.input} | {o.name for o in graph.output}
        dead = [i for i, n in enumerate(graph.node)
                if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.output[0] not in read]
        if not dead:
            break
        for i in reversed(dead):
            del graph.node[i]
    read = {name for n in graph.node for name in n.input}
    kept = [init for init in graph.initializer if init.name in read]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def describe(model: onnx.ModelProto) -> dict:
    """Counts that show where the Q/DQ pairs sit (for the manifest and the tests).

    Under the "tensorrt" placement the only quantized Conv outputs are downsample Convs whose
    output is a residual Add's quantized input, which is what NVIDIA asks for.
    """
    made_by = _producers(model)
    quantized = {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    conv_outputs = sum(n.output[0] in quantized for n in convs)
    conv_inputs = sum(n.input[0] in made_by and made_by[n.input[0]].op_type == "DequantizeLinear"
                      for n in convs)
    residual = sum(
        [made_by[i].op_type if i in made_by else "" for i in n.input].count("DequantizeLinear")
        == 1 for n in model.graph.node if n.op_type == "Add")
    concat_inputs = [name for n in model.graph.node if n.op_type == "Concat" for name in n.input]
    return {"quantize_linear": sum(n.op_type == "QuantizeLinear" for n in model.graph.node),
            "concat_inputs_quantized": sum(name in made_by and made_by[name].op_type == "DequantizeLinear"
                                           for name in concat_inputs),
            "conv_inputs_quantized": conv_inputs, "conv_outputs_quantized": conv_outputs,
            "residual_add_inputs_quantized": residual}
