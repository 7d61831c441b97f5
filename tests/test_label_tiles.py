"""Row-tiled resize + ArgMax: the same class map as the whole-image graph, on real runtimes."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from build_engine.label_tiles import find_tail, plan_rows, row_weights, tile_labels
from build_engine.tensorrt_rules import check_model


def tail_graph(classes: int, h: int, w: int, height: int, width: int, logits_output: bool = False,
               dynamic: bool = False) -> onnx.ModelProto:
    """The fused graph's tail: low-res logits -> Resize (align_corners) -> ArgMax -> Cast -> Cast."""
    nodes = [helper.make_node("Resize", ["x", "", "", "sizes"], ["logits"], mode="linear",
                              coordinate_transformation_mode="align_corners"),
             helper.make_node("ArgMax", ["logits"], ["am"], axis=1, keepdims=0),
             helper.make_node("Cast", ["am"], ["amf"], to=TensorProto.FLOAT),
             helper.make_node("Cast", ["amf"], ["labels"], to=TensorProto.UINT8)]
    x_shape = [1, classes, "h" if dynamic else h, "w" if dynamic else w]
    out_shape = ["H", "W"] if dynamic else [height, width]
    outputs = [helper.make_tensor_value_info("labels", TensorProto.UINT8, [1, *out_shape])]
    if logits_output:
        outputs.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes, *out_shape]))
    sizes = numpy_helper.from_array(np.array([1, classes, height, width], np.int64), "sizes")
    graph = helper.make_graph(nodes, "tail", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              outputs, [sizes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["labels"], {"x": x})[0]


def _openvino(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(model.SerializeToString(), b""), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled(x)[compiled.output("labels")]


@pytest.mark.parametrize("classes,h,w,height,width,aligned", [
    (19, 12, 14, 89, 105, True),  # (89-1) = 8 x (12-1): tiles are plain Resizes of source rows
    (15, 30, 60, 240, 480, False),  # the demo model's shape: (240-1) / (30-1) is not whole
    (6, 9, 7, 50, 33, False)])
def test_tiled_labels_equal_the_whole_image_graph(classes: int, h: int, w: int, height: int, width: int,
                                                  aligned: bool) -> None:
    whole = tail_graph(classes, h, w, height, width)
    tiled = copy.deepcopy(whole)
    plan = tile_labels(tiled, "labels", tile_above_mb=0, tile_mb=classes * width * 4 * 9 / 2**20)
    onnx.checker.check_model(tiled, full_check=True)
    assert plan.mode == "row tiles" and plan.tiles > 2 and plan.aligned is aligned
    assert plan.tile_rows <= 9 + (8 if aligned else 0)
    assert not any(n.op_type == "Resize" and n.output[0] == "logits" for n in tiled.graph.node)
    assert [o.name for o in tiled.graph.output] == ["labels"]
    assert check_model(whole) == [] and check_model(tiled) == [], "TensorRT's parser rules"
    x = np.random.default_rng(0).standard_normal((1, classes, h, w)).astype(np.float32)
    for run in (_ort, _openvino):
        a, b = run(whole, x), run(tiled, x)
        assert a.shape == b.shape == (1, height, width) and a.dtype == b.dtype == np.uint8
        assert (a == b).mean() >= 0.9999, run.__name__


def test_the_policy_keeps_small_logits_outputs_and_dynamic_graphs_whole() -> None:
    small = tail_graph(15, 30, 60, 240, 480)  # 6.6 MB of logits: under the 8 MB threshold
    plan = tile_labels(small, "labels")
    assert plan.mode == "whole image" and plan.logits_mb == 6.6 and "threshold" in plan.reason
    assert [n.op_type for n in small.graph.node] == ["Resize", "ArgMax", "Cast", "Cast"]
    big = tile_labels(tail_graph(150, 60, 60, 473, 473), "labels")
    assert big.mode == "row tiles" and big.logits_mb == 128.0 and big.tile_mb <= 4.0 and big.aligned
    assert "logits" in tile_labels(tail_graph(150, 60, 60, 473, 473, logits_output=True), "labels").reason
    assert "dynamic" in tile_labels(tail_graph(150, 60, 60, 473, 473, dynamic=True), "labels").reason
    assert isinstance(find_tail(tail_graph(5, 4, 4, 9, 9), "nope"), str)


def test_row_plans_cover_every_row_once() -> None:
    for h, height, rows in ((90, 713, 77), (60, 473, 14), (30, 240, 10), (9, 50, 2), (9, 51, 2)):
        ranges, _ = plan_rows(h, height, rows)
        assert ranges[0][0] == 0 and ranges[-1][1] == height
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
        assert all(b - a >= 2 for a, b in ranges)
    r0, r1, weights = row_weights(30, 240, 100, 110)
    assert weights.shape == (10, r1 - r0) and np.allclose(weights.sum(1), 1.0)


def test_tail_agreement_runs_both_tails_on_the_same_logits() -> None:
    from build_engine.label_tiles import tail_agreement

    whole = tail_graph(19, 12, 14, 89, 105)
    tiled = copy.deepcopy(whole)
    tile_labels(tiled, "labels", tile_above_mb=0, tile_mb=0.05)
    assert tail_agreement(whole, tiled, "labels") == 1.0
    wrong = copy.deepcopy(whole)
    next(n for n in wrong.graph.node if n.op_type == "ArgMax").op_type = "ArgMin"
    assert tail_agreement(whole, wrong, "labels") < 0.5


def test_a_build_tiles_its_labels_tail_and_keeps_the_answer(tmp_path, monkeypatch, demo_artefacts) -> None:
    """The builder's tile step on the real demo export (OpenVINO FP32 at 96x192: rows not aligned,
    so the MatMul path), with the threshold lowered so a tiny graph qualifies: the same labels as
    the session's whole-image build."""
    from artefact.manifest import load_manifest
    from build_engine import label_tiles
    from build_engine.api import build_artefact
    from runtime.backends import load_backend
    from segdata.synthetic import render_scene
    from tests.conftest import TINY_SIZE

    whole = load_manifest(demo_artefacts["openvino"])
    monkeypatch.setattr(label_tiles, "TILE_ABOVE_MB", 0.0)
    monkeypatch.setattr(label_tiles, "TILE_MB", 0.1)
    tiled = load_manifest(build_artefact("demo", "fp32", "openvino", TINY_SIZE, output=tmp_path))
    assert whole.build["labels_tail"]["mode"] == "whole image"
    plan = tiled.build["labels_tail"]
    assert plan["mode"] == "row tiles" and plan["tiles"] > 2 and plan["aligned"] is False
    assert plan["tail_agreement"] >= label_tiles.TAIL_MIN_AGREEMENT and plan["policy"]["tile_mb"] == 0.1
    rules = tiled.verification["tensorrt_graph_rules"]
    assert rules["result"] == "pass", rules  # the tiled tail (MatMul row weights) parses on TensorRT
    frames = [render_scene(seed, *TINY_SIZE)[0] for seed in (1, 2, 3)]
    a, b = load_backend(whole), load_backend(tiled)
    try:
        agree = np.mean([(a.infer(f) == b.infer(f)).mean() for f in frames])
    finally:
        a.close()
        b.close()
    assert agree >= 0.9999


@pytest.mark.parametrize("classes,h,w,height,width", [(19, 12, 14, 89, 105), (6, 9, 7, 50, 33)])
def test_the_confidence_tail_is_tiled_with_the_labels(classes: int, h: int, w: int, height: int,
                                                      width: int) -> None:
    """A graph with the confidence output: its class-wide part runs per tile, the full-size logits
    are never whole, and labels and confidence equal the whole-image graph's (ORT and OpenVINO)."""
    from build_engine.confidence_tail import add_confidence_output
    from build_engine.label_tiles import tail_agreement, tail_confidence_difference

    whole = add_confidence_output(tail_graph(classes, h, w, height, width))
    tiled = copy.deepcopy(whole)
    plan = tile_labels(tiled, "labels", tile_above_mb=0, tile_mb=classes * width * 4 * 9 / 2**20)
    assert plan.mode == "row tiles" and plan.tiles > 2
    assert check_model(tiled) == []
    names = {n.name for n in tiled.graph.node}
    assert "confidence_tail/Exp" not in names and "confidence_tail/Div" in names  # per tile, then one map
    assert not [n for n in tiled.graph.node if "logits" in n.input]  # nothing reads whole-size logits
    assert tail_agreement(whole, tiled, "labels") == 1.0
    assert tail_confidence_difference(whole, tiled, "labels") <= 1
    x = np.random.default_rng(3).standard_normal((1, classes, h, w)).astype(np.float32) * 3
    import openvino as ov

    core = ov.Core()
    runs = []
    for model in (whole, tiled):
        compiled = core.compile_model(core.read_model(model.SerializeToString(), b""), "CPU",
                                      {"INFERENCE_PRECISION_HINT": "f32"})
        runs.append(compiled(x)[compiled.output("confidence")])
    assert np.abs(runs[0].astype(int) - runs[1]).max() <= 1
