"""Where things sit in the fused graph: pre-processing, the final classifier, network blocks."""

from __future__ import annotations

import re

import onnx

_BLOCK = re.compile(r"(layer[1-4]\.\d+|layer0|ppm\.features\.\d+|ppm|cls|aux)")


def producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in model.graph.node for out in node.output}


def final_classifier(model: onnx.ModelProto) -> onnx.NodeProto | None:
    """The Conv whose output the logit Resize/ArgMax consume (semseg's `cls.4`)."""
    made_by = producers(model)
    for node in model.graph.node:
        if node.op_type != "ArgMax":
            continue
        current = made_by.get(node.input[0])
        while current is not None and current.op_type != "Conv":
            current = made_by.get(current.input[0]) if current.input else None
        return current
    return None


def head_convs(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Every Conv whose output reaches the labels' ArgMax through no other Conv: the final
    classifier, and with --flip the mirrored branch's classifier too (INT8 keeps both in float)."""
    made_by = producers(model)
    argmax = next((n for n in model.graph.node if n.op_type == "ArgMax"), None)
    found: list[onnx.NodeProto] = []
    stack, seen = ([argmax.input[0]] if argmax is not None else []), set()
    while stack:
        node = made_by.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type == "Conv":
            found.append(node)
        else:
            stack.extend(node.input)
    return found


def preprocessing_nodes(model: onnx.ModelProto) -> list[str]:
    """Every node between the uint8 input and the first Conv (layout, BGR->RGB, normalise)."""
    made_by = producers(model)
    first_conv = next(n for n in model.graph.node if n.op_type == "Conv")
    names, stack = [], [first_conv.input[0]]
    while stack:
        node = made_by.get(stack.pop())
        if node is None or node.name in names:
            continue
        names.append(node.name)
        stack.extend(node.input)
    return names


def postprocessing_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes after the final classifier: logit Resize, ArgMax, Cast (kept in float32)."""
    cls = final_classifier(model)
    return [] if cls is None else _downstream(model, cls)


def unquantized_graph_options(model: onnx.ModelProto) -> list[str]:
    """Nodes the artefact options add that INT8 must leave in float (and that a placement would
    otherwise quantize): anything between the final classifier(s) and the outputs (--flip's
    average, the confidence tail). Nothing in a plain graph."""
    from calib.qdq_placement import ANY_QUANTIZED_OP

    after = {name for conv in head_convs(model) for name in _downstream(model, conv)}
    return [n.name for n in model.graph.node if n.name in after and n.op_type in ANY_QUANTIZED_OP]


def _downstream(model: onnx.ModelProto, start: onnx.NodeProto) -> list[str]:
    """Names of every node fed, directly or not, by `start`'s outputs (in the order reached)."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    out, stack = [], list(start.output)
    while stack:
        for node in consumers.get(stack.pop(), []):
            if node.name not in out:
                out.append(node.name)
                stack.extend(node.output)
    return out


def block_of(node_name: str) -> str | None:
    """semseg module path of a node (e.g. 'layer2.1', 'ppm.features.3', 'cls') from its name."""
    found = _BLOCK.findall(node_name.replace("/", " "))
    return found[-1] if found else None


def quantized_blocks(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Names of the nodes INT8 may quantize (any placement's op types: keeping a block in float
    must exclude all of them, or a graph with every block kept is still not FP32), grouped by
    network block, in graph order."""
    from calib.qdq_placement import ANY_QUANTIZED_OP

    blocks: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.op_type in ANY_QUANTIZED_OP:
            blocks.setdefault(block_of(node.name) or node.name, []).append(node.name)
    return blocks
