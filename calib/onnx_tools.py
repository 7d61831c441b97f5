"""Small ONNX graph edits: clean-up with onnxslim, dropping the logits output, counting nodes,
one initializer for identical weights."""

from __future__ import annotations

import logging

import onnx

log = logging.getLogger(__name__)


def node_count(model: onnx.ModelProto) -> int:
    return len(model.graph.node)


def keep_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """Drop graph outputs not in `names`; onnxslim then removes the nodes only they needed."""
    kept = [o for o in model.graph.output if o.name in names]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    return model


def slim(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxslim: constant folding, dead-node removal, shape inference; identity if unavailable.
    Weights shared by several nodes stay shared (onnxslim gives each its own copy)."""
    try:
        import onnxslim
    except ImportError:  # pragma: no cover - onnxslim is part of the export extra
        log.warning("onnxslim is not installed; the graph is left as exported")
        return model
    slimmed = onnxslim.slim(model)
    share_weights(slimmed)
    return slimmed


def share_weights(model: onnx.ModelProto, min_bytes: int = 1024) -> int:
    """Point the nodes at one initializer for each set of identical weights of at least
    `min_bytes` (in place); returns how many copies went. A --flip graph runs the network twice
    and would otherwise carry every weight twice (the exporter folds each Conv's batch norm
    separately, onnxslim copies shared initializers). A graph without such copies (every plain
    export) is left untouched, byte for byte."""
    import hashlib

    from onnx import numpy_helper

    graph = model.graph
    first: dict[tuple, str] = {}
    rename: dict[str, str] = {}
    for init in graph.initializer:
        values = numpy_helper.to_array(init)
        if values.nbytes < min_bytes:
            continue
        key = (init.data_type, tuple(init.dims), hashlib.sha256(values.tobytes()).hexdigest())
        if key in first:
            rename[init.name] = first[key]
        else:
            first[key] = init.name
    if not rename:
        return 0
    for node in graph.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
    kept = [i for i in graph.initializer if i.name not in rename]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return len(rename)
