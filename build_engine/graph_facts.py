"""What the final graph itself says, recorded where the runtime can read it without the onnx package.

The runtime holds a manifest to the model file it describes (runtime.backends.contract). For the
class count an ONNX Runtime session shows nothing but the graph's inputs and outputs (a labels-only
graph has no logits to count), so the build counts the classes the graph's ArgMax chooses from,
checks that the manifest will list as many, and writes the count into the ONNX file's metadata
(`CLASSES_METADATA`), which the model's sha256 then covers like every other byte.
"""

from __future__ import annotations

from pathlib import Path

from artefact.manifest import CLASSES_METADATA
from build_engine.errors import BuildError


def graph_class_count(path: str | Path) -> int | None:
    """How many classes the graph's ArgMax nodes choose from: the output channels of the classifier
    Conv they read (dynamic graphs too), checked against shape inference where that knows the axis;
    None if the graph does not say, or says two things."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    counts = _argmax_axis_sizes(onnx.shape_inference.infer_shapes(model))
    channels = _classifier_channels(model)
    if channels is not None:
        counts.add(channels)
    return counts.pop() if len(counts) == 1 else None


def _classifier_channels(model: object) -> int | None:
    """Output channels of the Conv the ArgMax reads (its weight's first dimension, through a
    DequantizeLinear or Cast where the weight is quantized or converted)."""
    from calib.graph_parts import final_classifier, producers

    conv = final_classifier(model)
    if conv is None or len(conv.input) < 2:
        return None
    weights = {i.name: list(i.dims) for i in model.graph.initializer}
    made_by = producers(model)
    name, seen = conv.input[1], set()
    while name not in weights and name in made_by and name not in seen:
        seen.add(name)
        node = made_by[name]
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            return int(value.dims[0]) if value is not None and value.dims else None
        name = node.input[0] if node.input else ""
    dims = weights.get(name)
    return int(dims[0]) if dims else None


def _argmax_axis_sizes(model: object) -> set[int]:
    shapes = {v.name: v.type.tensor_type.shape for v in [*model.graph.value_info, *model.graph.input,
                                                         *model.graph.output]}
    counts = set()
    for node in model.graph.node:
        if node.op_type != "ArgMax" or node.input[0] not in shapes:
            continue
        dims = shapes[node.input[0]].dim
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0) % max(len(dims), 1)
        if dims and dims[axis].HasField("dim_value"):
            counts.add(dims[axis].dim_value)
    return counts


def check_class_count(path: str | Path, classes: int | None) -> int:
    """The graph's class count, which must be the manifest's `classes` where given (BuildError)."""
    count = graph_class_count(path)
    if count is None:
        raise BuildError(f"cannot tell how many classes {Path(path).name} chooses from (no ArgMax over a "
                         "known class axis); the fused graph ends in one")
    if classes is not None and count != classes:
        raise BuildError(f"the graph chooses among {count} classes but the model spec lists {classes}")
    return count


def copy_with_class_record(src: str | Path, dst: str | Path, count: int) -> None:
    """Copy the ONNX file `src` to `dst` with its class count (check_class_count's) in the metadata."""
    import onnx

    model = onnx.load(str(src), load_external_data=False)
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != CLASSES_METADATA]
    del model.metadata_props[:]
    for key, value in [*kept, (CLASSES_METADATA, str(count))]:
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(dst))
