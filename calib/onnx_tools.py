"""Small ONNX graph edits: clean-up with onnxslim, dropping the logits output, counting nodes."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import onnx

log = logging.getLogger(__name__)


def node_count(model: onnx.ModelProto) -> int:
    return len(model.graph.node)


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    return dict(Counter(n.op_type for n in model.graph.node).most_common())


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


def save(model: onnx.ModelProto, path: str | Path) -> None:
    from artefact.files import atomic_path

    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))


def io_summary(model: onnx.ModelProto) -> dict[str, list]:
    """Names, element types and shapes of the graph's inputs and outputs, for the manifest."""

    def describe(values) -> list:
        out = []
        for v in values:
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim]
            out.append({"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name,
                        "shape": dims})
        return out

    return {"inputs": describe(model.graph.input), "outputs": describe(model.graph.output)}
