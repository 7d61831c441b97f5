"""Does the manifest describe the model file it sits beside? Checked when an artefact is opened,
before any frame, on every backend.

The hashes (Manifest.verify_file) prove the model file is the one the manifest names; they say
nothing of the manifest's other fields, which anyone can edit. A 2-class manifest on a 19-class
model would colour ids up to 18 with a 2-colour palette and exit 0; a wrong input size would fail
at the first frame with a raw backend message, and a huge one would try to allocate gigabytes. So
each backend reads what its model file itself says (`ModelFacts`: the input's shape, the outputs,
and how many classes the graph's ArgMax chooses from) and `check_contract` holds the manifest to it.

Where the class count comes from: an OpenVINO IR says it in its graph (the TopK that ArgMax became);
an ONNX file in its metadata (`CLASSES_METADATA`, written by the build from its graph, so no `onnx`
package is needed at run time) or a logits output; a TensorRT engine only through a logits output
(where it has none, the runtime's labels check stands in: labels_2d refuses an id >= the classes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from artefact.manifest import ArtefactError, Manifest


@dataclass
class ModelFacts:
    """What a model file says about itself."""

    input_shape: list[int | None]  # NHWC; None where a dimension is dynamic
    outputs: dict[str, list[int | None]] = field(default_factory=dict)
    classes: int | None = None  # how many classes the ArgMax chooses from; None: the file does not say
    can_tell_classes: bool = True  # False where the format cannot record it (TensorRT without logits)


def check_contract(manifest: Manifest, facts: ModelFacts) -> None:
    """ArtefactError (exit 2) naming the first field the model file contradicts, and the rebuild."""
    problem = contract_problem(manifest, facts)
    if problem:
        raise ArtefactError(f"{manifest.path}: {problem}, so the manifest does not describe "
                            f"{manifest.model_path.name}; rebuild with {manifest.rebuild_hint()}")


def contract_problem(manifest: Manifest, facts: ModelFacts) -> str | None:
    shape = facts.input_shape
    if len(shape) != 4 or shape[3] not in (3, None) or shape[0] not in (1, None):
        return f"the model's input {manifest.input_name!r} is {_dims(shape)}, not 1xHxWx3 (uint8 BGR)"
    dynamic = shape[1] is None or shape[2] is None
    if dynamic != manifest.dynamic_shape:
        return (f"dynamic_shape is {str(manifest.dynamic_shape).lower()} but the model's input is "
                f"{_dims(shape)} ({'dynamic' if dynamic else 'fixed'})")
    if not dynamic and [shape[1], shape[2]] != list(manifest.input_size):
        return (f"input_size is {_hw(manifest.input_size)} but the model takes "
                f"{shape[1]}x{shape[2]}")
    if manifest.output_name not in facts.outputs:
        have = ", ".join(facts.outputs) or "none"
        return f"the model has no output {manifest.output_name!r} (it has {have})"
    labels = facts.outputs[manifest.output_name]
    if len(labels) not in (2, 3) or (not dynamic and [d for d in labels[-2:]] != [shape[1], shape[2]]):
        return f"the model's class map {manifest.output_name!r} is {_dims(labels)}, not 1x{_hw(shape[1:3])}"
    logits = facts.outputs.get(manifest.logits_name or "")
    if manifest.logits_name and logits is None:
        return f"logits_name is {manifest.logits_name!r} but the model has no such output"
    if manifest.confidence_name and manifest.confidence_name not in facts.outputs:
        return f"confidence_name is {manifest.confidence_name!r} but the model has no such output"
    classes = facts.classes
    if classes is None and logits is not None and len(logits) == 4:
        classes = logits[1]
    if classes is None:
        if not facts.can_tell_classes:
            return None
        return "the model file does not record how many classes it outputs (built before pspnet-rt checked)"
    if classes != len(manifest.classes):
        return f"classes lists {len(manifest.classes)} classes but the model chooses among {classes}"
    return None


def _dims(shape: list[int | None]) -> str:
    return "x".join("?" if d is None else str(d) for d in shape) or "a scalar"


def _hw(size: list[int] | list[int | None]) -> str:
    return "x".join("?" if d is None or d < 0 else str(d) for d in size)


def read_facts(manifest: Manifest) -> ModelFacts | None:
    """The model file's facts read without running it, where this machine can (OpenVINO, ONNX
    Runtime installed); None where it cannot (a TensorRT engine needs its GPU to be read)."""
    import importlib

    module = {"openvino": "runtime.backends.openvino_backend",
              "onnxruntime": "runtime.backends.onnxruntime_backend"}.get(manifest.backend)
    if module is None:
        return None
    from runtime.errors import BackendUnavailable

    try:
        return importlib.import_module(module).model_facts(manifest.model_path, manifest.input_name)
    except BackendUnavailable:
        return None
