"""Small ONNX graph edits: clean-up with onnxslim, dropping the logits output, counting nodes."""

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
    """onnxslim: constant folding, dead-node removal, shape inference; identity if unavailable."""
    try:
        import onnxslim
    except ImportError:  # pragma: no cover - onnxslim is part of the export extra
        log.warning("onnxslim is not installed; the graph is left as exported")
        return model
    return onnxslim.slim(model)
