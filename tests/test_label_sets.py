"""Label sets for any class count: the file format, the registry, the manifest round trip, and
every downstream reader (renderer legend, gate scoring) taking them from the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segdata.label_sets import (
    LabelSet,
    LabelSetError,
    from_manifest,
    generic_label_set,
    get_label_set,
    label_set_from_dict,
    load_label_set,
    register_label_set,
)
from segdata.labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE


def _write(tmp_path: Path, data: object, name: str = "labels.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_file_with_names_colours_and_ignore_index(tmp_path: Path) -> None:
    path = _write(tmp_path, {"name": "road-3", "ignore_index": 0, "classes": [
        {"name": "void", "color": [0, 0, 0]}, {"name": "not road", "color": "#FF0000"}, "road"]})
    ls = load_label_set(path)
    assert ls.classes == ("void", "not road", "road") and ls.ignore_index == 0
    assert ls.palette[:2] == ((0, 0, 0), (255, 0, 0))
    assert ls.palette[2] not in ls.palette[:2]  # a generated colour, distinct from the given ones
    assert load_label_set(_write(tmp_path, ls.to_dict(), "again.json")) == ls  # the format round-trips


def test_builtins_by_name_and_generic_counts() -> None:
    city = load_label_set("cityscapes")
    assert city.classes == CITYSCAPES_CLASSES and city.palette == CITYSCAPES_PALETTE
    assert city.ignore_index == 255
    fork = load_label_set("kitti-road-fork")  # an alias: the fork's 3 classes are one set, "kitti-road"
    assert fork.name == "kitti-road" and fork.classes == ("void", "not road", "road")
    assert fork.ignore_index == 255  # void is a class the fork's model is trained on, and scored
    assert get_label_set("generic-5") == generic_label_set(5)
    with pytest.raises(LabelSetError, match=r"unknown label set 'nope'.*cityscapes"):
        load_label_set("nope")


def test_registering_a_named_builtin() -> None:
    road2 = register_label_set(LabelSet("test-road-2", ("not road", "road"), ((0, 0, 0), (255, 0, 255))))
    assert load_label_set("test-road-2") is road2
    register_label_set(road2)  # the same twice is fine
    with pytest.raises(ValueError, match="registered twice"):
        register_label_set(LabelSet("test-road-2", ("a", "b"), ((0, 0, 0), (1, 1, 1))))


@pytest.mark.parametrize(("data", "match"), [
    ({"classes": []}, "non-empty list"),
    ({"classes": ["a", "a"]}, "unique"),
    ({"classes": [{"name": "a", "color": [0, 0, 256]}]}, "colour"),
    ({"classes": [{"name": "a", "color": "red"}]}, "colour"),
    ({"classes": ["a"], "ignore_index": 300}, "ignore_index"),
    ({"classes": ["a"], "ignore_index": True}, "ignore_index"),
    ({"classes": [f"c{i}" for i in range(257)]}, "at most 256"),
    ({"classes": ["a"], "colours": []}, "unknown field"),
    ({"classes": [{"name": "a", "id": 3}]}, "id order"),
    ({"classes": [""]}, "non-empty name"),
    ([1, 2], "expected an object"),
])
def test_bad_files_are_refused_naming_the_field(data: object, match: str) -> None:
    with pytest.raises(LabelSetError, match=match):
        label_set_from_dict(data, "labels.json")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(LabelSetError, match="not valid JSON"):
        load_label_set(_write(tmp_path, "{classes: [", "broken.json"))
    with pytest.raises(LabelSetError, match="does not exist"):
        load_label_set(tmp_path / "absent.json")


def test_yaml_when_pyyaml_is_there(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: y\nclasses:\n  - {name: a, color: [1, 2, 3]}\n  - b\n", "l.yaml")
    try:
        import yaml  # noqa: F401
    except ImportError:
        with pytest.raises(LabelSetError, match="PyYAML"):
            load_label_set(path)
        return
    assert load_label_set(path).classes == ("a", "b")


def test_manifest_carries_the_label_set_and_the_renderer_uses_it(tmp_path: Path) -> None:
    from artefact.manifest import Manifest, load_manifest
    from runtime.render import Renderer

    ls = load_label_set("kitti-road-fork")
    from artefact.files import sha256_file

    (tmp_path / "m.onnx").write_bytes(b"x")
    Manifest(name="m", model="m", backend="onnxruntime", precision="fp32", model_file="m.onnx",
             model_sha256=sha256_file(tmp_path / "m.onnx"),
             classes=list(ls.classes), palette=[list(c) for c in ls.palette], input_size=[64, 64],
             mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0], ignore_index=ls.ignore_index,
             label_set=ls.name).save(tmp_path / "m.json")
    manifest = load_manifest(tmp_path / "m.json")
    assert from_manifest(manifest) == ls
    renderer = Renderer.from_manifest(manifest)
    assert renderer.classes == list(ls.classes)
    labels = np.array([[0, 1], [2, 2]], np.uint8)
    assert renderer.colorize(labels)[1, 0].tolist() == [255, 0, 255]  # BGR of road's magenta


def test_manifest_refuses_an_ignore_index_outside_uint8(tmp_path: Path) -> None:
    from artefact.manifest import ArtefactError, manifest_from_dict

    data = {"format": "pspnet-rt/1", "name": "m", "model": "m", "backend": "onnxruntime", "precision": "fp32",
            "model_file": "m.onnx", "classes": ["a"], "palette": [[0, 0, 0]], "input_size": [64, 64],
            "mean": [0, 0, 0], "std": [1, 1, 1], "ignore_index": 256, "input_name": "image",
            "output_name": "labels"}
    with pytest.raises(ArtefactError, match="ignore_index"):
        manifest_from_dict(data, "m.json")


def test_gate_scores_with_the_models_label_set_only() -> None:
    """Frames labelled in Cityscapes ids are no ground truth for a 3-class model: the gate falls back
    to FP32 agreement; frames in the model's own label set are scored with its ignore index."""
    from calib.gate import gate
    from calib.precision import labels_for
    from calib.sources import FrameSet
    from pspnet.zoo import REGISTRY

    label = np.array([[0, 1], [2, 2]], np.uint8)
    frames = FrameSet([np.zeros((2, 2, 3), np.uint8)], [label], "x", 1, label_set="cityscapes")
    road = REGISTRY["pspnet101_kitti_road_tf"]
    assert labels_for(road, frames).labels == [None]
    own = labels_for(road, FrameSet(frames.frames, [label], "x", 1, label_set="kitti-road-fork"))  # alias
    assert own.labels == [label] and own.ignore_index == 255
    # a label set whose ignore index is a predicted class (void 0, trained but never scored)
    void_skipped = road.with_labels(LabelSet("road-void-skipped", road.classes, road.palette, ignore_index=0))
    own = labels_for(void_skipped, FrameSet(frames.frames, [label], "x", 1, label_set="road-void-skipped"))
    assert own.ignore_index == 0
    pred = np.array([[1, 1], [2, 2]], np.uint8)  # wrong only where the label is void (0): ignored
    report = gate([pred], [pred], own, list(road.classes), 1.0)
    assert report.miou == 1.0 and report.passed
