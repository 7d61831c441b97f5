"""The artefact options --confidence and --flip: the graph (TensorRT rules, values against PyTorch and
numpy), the manifest, every local backend's confidence, the INT8/FP16 gate's confidence error,
`pspnet-rt --confidence DIR` / `--visualize confidence`, and the calibration measures."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from artefact.manifest import CONFIDENCE_NAME, INPUT_NAME, LABELS_NAME, ArtefactError, load_manifest
from build_engine.confidence_tail import add_confidence_output
from build_engine.tensorrt_rules import check_file, check_model
from runtime.backends import load_backend, open_runner
from segdata.confidence import Reliability, confidence_error, confidence_from_logits
from tests.conftest import TINY_SIZE
from tests.test_runtime_backends import clone_artefact

H, W = TINY_SIZE


def demo_frames(n: int) -> list[np.ndarray]:
    from runtime.sources import SourceOptions, parse_source

    with parse_source("demo", SourceOptions(demo_frames=n, demo_size=TINY_SIZE)) as source:
        return [f.image for f in source.frames()]


# -- the definition and the calibration measures (numpy) ---------------------------------------
def test_confidence_is_the_largest_softmax_probability_in_levels_of_255() -> None:
    logits = np.random.default_rng(0).standard_normal((19, 7, 9)).astype(np.float32) * 4
    logits[:, 0, 0] = 0  # a tie of all 19 classes: p = 1/19
    logits[3, 0, 1] = 80  # certain: p = 1
    probs = np.exp(logits - logits.max(0)) / np.exp(logits - logits.max(0)).sum(0)
    got = confidence_from_logits(logits)
    assert got.dtype == np.uint8 and got.shape == (7, 9)
    assert np.abs(got.astype(int) - np.rint(probs.max(0) * 255)).max() <= 1  # rounded to the nearest level
    assert got[0, 0] == round(255 / 19) and got[0, 1] == 255


def test_reliability_ece_coverage_and_error() -> None:
    rel = Reliability(bins=10)
    label = np.zeros((10, 10), np.uint8)
    right, wrong = np.zeros_like(label), np.ones_like(label)
    # 100 pixels at p = 0.8 (level 204), 80 of them right: calibrated there
    pred = right.copy()
    pred.ravel()[:20] = 1
    rel.update(np.full((10, 10), 204, np.uint8), pred, label)
    # 100 pixels at p = 1.0, half right: 0.5 over-confident
    pred = np.where(np.arange(100).reshape(10, 10) < 50, right, wrong).astype(np.uint8)
    rel.update(np.full((10, 10), 255, np.uint8), pred, label)
    ignored = np.full((10, 10), 255, np.uint8)  # ignore label: not counted
    rel.update(np.zeros((10, 10), np.uint8), wrong, ignored)
    d = rel.to_dict(thresholds=(0.95,))
    assert d["pixels"] == 200 and d["accuracy"] == 0.65
    assert d["ece"] == pytest.approx(0.25) and d["mce"] == pytest.approx(0.5)
    assert d["coverage"] == [{"threshold": 0.95, "share": 0.5, "accuracy": 0.5}]
    filled = [(b["low"], b["pixels"], b["accuracy"]) for b in d["per_bin"] if b["pixels"]]
    assert filled == [(0.7, 100, 0.8), (0.9, 100, 0.5)]  # bin b holds p in (b/10, (b+1)/10]
    err = confidence_error([np.full((4, 4), 200, np.uint8)], [np.full((4, 4), 203, np.uint8)])
    assert (err["mean_abs_levels"], err["max_abs_levels"], err["mean_signed_levels"]) == (3.0, 3, 3.0)


# -- the graph -----------------------------------------------------------------------------------
def _argmax_graph(classes: int = 5, h: int = 6, w: int = 8) -> onnx.ModelProto:
    """float logits in (named like the fused graph's input, so the project's runners open it) -> ArgMax
    -> Cast(float) -> Cast(uint8) labels: the fused graph's tail."""
    nodes = [helper.make_node("ArgMax", [INPUT_NAME], ["ids"], axis=1, keepdims=0),
             helper.make_node("Cast", ["ids"], ["ids_f"], to=TensorProto.FLOAT),
             helper.make_node("Cast", ["ids_f"], [LABELS_NAME], to=TensorProto.UINT8)]
    graph = helper.make_graph(nodes, "tail", [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT,
                                                                           [1, classes, h, w])],
                              [helper.make_tensor_value_info(LABELS_NAME, TensorProto.UINT8, [1, h, w])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


def test_confidence_tail_values_and_tensorrt_rules(tmp_path: Path) -> None:
    model = add_confidence_output(_argmax_graph())
    assert [o.name for o in model.graph.output] == [LABELS_NAME, CONFIDENCE_NAME]
    assert model.graph.output[1].type.tensor_type.elem_type == TensorProto.UINT8
    assert check_model(model) == []  # uint8 only at the edge, made by a Cast from float (R3)
    onnx.save(model, str(tmp_path / "tail.onnx"))
    logits = np.random.default_rng(1).standard_normal((3, 5, 6, 8)).astype(np.float32) * 6
    with open_runner("onnxruntime", tmp_path / "tail.onnx") as run:
        for x in logits:
            out = run.infer(x, [LABELS_NAME, CONFIDENCE_NAME])
            assert np.array_equal(out[LABELS_NAME], x.argmax(0))
            assert np.abs(out[CONFIDENCE_NAME].astype(int) - confidence_from_logits(x)).max() <= 1
    with pytest.raises(ValueError, match="already has"):
        add_confidence_output(model)
    no_argmax = _argmax_graph()
    no_argmax.graph.node[0].op_type = "ArgMin"
    with pytest.raises(ValueError, match="ArgMax"):
        add_confidence_output(no_argmax)


def test_flip_averages_the_mirrored_logits() -> None:
    import torch

    from build_engine.export import FusedSegmenter
    from pspnet.build import create_model
    from pspnet.zoo import get_spec

    spec = get_spec("demo").with_size(48, 96)
    torch.manual_seed(0)
    net = create_model(spec).eval()
    image = torch.from_numpy(demo_frames(1)[0][None, :48, :96].copy())
    with torch.no_grad():
        _, plain = FusedSegmenter(net, spec).eval()(image)
        _, mirror = FusedSegmenter(net, spec).eval()(image.flip(2))
        _, flipped = FusedSegmenter(net, spec, flip=True).eval()(image)
    # an align_corners resize commutes with the mirror: averaging before it = averaging after it
    assert torch.allclose(flipped, (plain + mirror.flip(3)) / 2, atol=1e-4)
    assert not torch.allclose(flipped, plain, atol=1e-3)  # the mirror really changes the logits


# -- the artefact ----------------------------------------------------------------------------
def test_manifest_and_graph_of_a_confidence_flip_artefact(confidence_artefact: Path) -> None:
    m = load_manifest(confidence_artefact)
    assert m.confidence_name == CONFIDENCE_NAME and m.flip is True
    assert m.name.endswith("-flip-conf") and "--flip --confidence" in m.build["command"]
    for stage in ("onnx_vs_torch", "backend_vs_torch"):  # the graph's confidence vs PyTorch's logits
        agreement = m.verification[stage]
        assert agreement["pixel_agreement"] >= 0.999 and agreement["confidence"]["max_abs_levels"] <= 1
    assert m.verification["tensorrt_graph_rules"]["result"] == "pass"
    assert check_file(m.model_path) == []
    graph = onnx.load(str(m.model_path)).graph
    weights = [n.input[1] for n in graph.node if n.op_type == "Conv"]
    # --flip: the network twice (the image, its mirror), on one set of weights
    assert len(weights) == 2 * len(set(weights)) and all(weights.count(w) == 2 for w in weights)
    assert [o.name for o in graph.output] == [LABELS_NAME, CONFIDENCE_NAME]


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_backends_return_each_frames_own_confidence(confidence_artefact: Path, tmp_path: Path,
                                                    backend: str) -> None:
    """Sync and async (several in flight) give the same per-frame maps; OpenVINO runs the same ONNX."""
    manifest = (confidence_artefact if backend == "onnxruntime" else
                clone_artefact(confidence_artefact, tmp_path, backend="openvino"))
    frames = demo_frames(5)
    with open_runner("onnxruntime", load_manifest(confidence_artefact).model_path) as ref:
        want = [ref.infer(f, [LABELS_NAME, CONFIDENCE_NAME]) for f in frames]
    with load_backend(manifest, confidence=True, requests=3) as be:
        sync = []
        for f in frames:
            labels = be.infer(f)
            sync.append((labels, be.last_confidence.copy()))
        got = {}
        for i, f in enumerate(frames):
            if be.in_flight >= be.max_in_flight:
                tag, labels = be.collect()
                got[tag] = (labels, be.last_confidence)
            be.submit(f, i)
        while be.in_flight:
            tag, labels = be.collect()
            got[tag] = (labels, be.last_confidence)
    for i, w in enumerate(want):
        for labels, confidence in (sync[i], got[i]):
            assert confidence.shape == (H, W) and confidence.dtype == np.uint8
            assert np.mean(labels == w[LABELS_NAME]) >= 0.999
            assert np.abs(confidence.astype(int) - w[CONFIDENCE_NAME]).max() <= 2


def test_an_artefact_without_confidence_is_refused_with_the_rebuild(demo_artefacts: dict[str, Path],
                                                                    tmp_path: Path) -> None:
    with pytest.raises(ArtefactError, match="--confidence"):
        load_backend(demo_artefacts["onnxruntime"], confidence=True)
    # a manifest edited to claim a confidence output its model file does not have: the model contract
    claimed = clone_artefact(demo_artefacts["onnxruntime"], tmp_path, confidence_name=CONFIDENCE_NAME)
    with pytest.raises(ArtefactError, match="no such output"):
        load_backend(claimed, confidence=True)
    with load_backend(demo_artefacts["onnxruntime"]) as be:  # not asked: nothing fetched
        be.infer(demo_frames(1)[0])
        assert be.last_confidence is None


def test_gate_reports_the_confidence_error(confidence_artefact: Path, tmp_path: Path) -> None:
    """FP16 of the artefact's graph through the real gate: the report carries the confidence error."""
    from calib.options import PrecisionOptions
    from calib.precision import apply_precision
    from pspnet.zoo import get_spec

    spec = get_spec("demo").with_size(H, W)
    options = PrecisionOptions(precision="fp16", eval_images=3, max_miou_drop=100.0)
    result = apply_precision(load_manifest(confidence_artefact).model_path, tmp_path, options, spec,
                             [LABELS_NAME, CONFIDENCE_NAME], tmp_path / "cache", "onnxruntime")
    gate = result.accuracy["gate"]
    assert gate["confidence"]["frames"] == 3
    assert 0 <= gate["confidence"]["mean_abs_levels"] <= gate["confidence"]["max_abs_levels"] <= 255
    assert check_file(result.onnx_path) == []  # the FP16 graph with its tail still passes the rules


def test_int8_leaves_the_flip_and_confidence_nodes_in_float(confidence_artefact: Path,
                                                            tmp_path: Path) -> None:
    from calib.graph_parts import head_convs, unquantized_graph_options
    from calib.quantize import preprocess, quantize_int8
    from calib.sources import load_frames

    pre = preprocess(load_manifest(confidence_artefact).model_path, tmp_path / "pre.onnx")
    graph = onnx.load(str(pre))
    kept = unquantized_graph_options(graph)
    ops = {n.name: n.op_type for n in graph.graph.node}
    assert sorted(ops[k] for k in kept) == ["Add", "Add"]  # flip's average, the tail's +0.5
    heads = [conv.name for conv in head_convs(graph)]
    assert len(heads) == 2  # both branches' classifiers stay float
    frames = load_frames("synthetic:calib:2", 2, H, W).frames
    out = quantize_int8(pre, tmp_path / "int8.onnx", frames, "minmax",
                        [*heads, *kept], tmp_path / "r.calib")
    assert check_file(out) == []
    model = onnx.load(str(out))
    made_by = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.name.startswith("confidence_tail/") or node.name in kept or node.name in heads:
            assert all(made_by.get(i) is None or made_by[i].op_type != "DequantizeLinear" for i in node.input)


# -- pspnet-rt -------------------------------------------------------------------------------
def test_run_writes_confidence_pngs_and_a_heat_map(confidence_artefact: Path, tmp_path: Path) -> None:
    from runtime.cli import main

    out = tmp_path / "out"
    assert main(["--video", "demo", "--demo-frames", "4", "--engine", str(confidence_artefact),
                 "--confidence", str(out / "conf"), "--masks", str(out / "masks"),
                 "--visualize", "confidence", "--output", str(out / "heat.mp4")]) == 0
    from artefact.ownership import RECORD

    names = sorted(p.name for p in (out / "conf").iterdir())
    assert names == [RECORD] + [f"{i:06d}.png" for i in range(4)]  # no temp files; the PNGs recorded ours
    with open_runner("onnxruntime", load_manifest(confidence_artefact).model_path) as run:
        for name, frame in zip(names[1:], demo_frames(4)):
            png = cv2.imread(str(out / "conf" / name), cv2.IMREAD_UNCHANGED)
            assert png.dtype == np.uint8 and png.shape == (H, W)
            assert np.abs(png.astype(int) - run.infer(frame, [CONFIDENCE_NAME])[CONFIDENCE_NAME]).max() <= 1
    video = cv2.VideoCapture(str(out / "heat.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    video.release()


def test_run_refusals_are_one_line_exit_2(confidence_artefact: Path, demo_artefacts: dict[str, Path],
                                          tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from runtime.cli import main

    plain = str(demo_artefacts["onnxruntime"])
    cases = [
        (["--engine", plain, "--confidence", str(tmp_path / "c")], "--confidence"),  # no such output
        (["--engine", plain, "--visualize", "confidence", "--output", str(tmp_path / "o.mp4")],
         "--confidence"),
        (["--engine", str(confidence_artefact), "--confidence", str(tmp_path / "c"), "--temporal", "fixed:2"],
         "--temporal"),
        (["--engine", str(confidence_artefact), "--confidence", str(tmp_path / "m"), "--masks",
          str(tmp_path / "m")], "--confidence"),  # two outputs, one folder
    ]
    for argv, needle in cases:
        code = main(["--video", "demo", "--demo-frames", "2", *argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and needle in err[0] and "Traceback" not in err[0], (argv, err)
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_default_build_is_asked_for_the_confidence_output() -> None:
    from runtime.default_build import builder_command

    assert "--confidence" in builder_command("demo", "auto", "auto", None, confidence=True)
    assert "--confidence" not in builder_command("demo", "auto", "auto", None)


def test_heat_map_render() -> None:
    from runtime.render import Renderer

    frame = np.full((60, 100, 3), 100, np.uint8)
    confidence = np.tile(np.linspace(0, 255, 100).astype(np.uint8), (60, 1))
    r = Renderer(["a"], [[0, 0, 0]], mode="confidence", alpha=1.0, legend=False)
    heat = r.render(frame, np.zeros((60, 100), np.uint8), None, confidence)
    assert heat.shape == frame.shape and r.needs_confidence
    assert heat[30, 0].sum() < heat[30, 99].sum()  # dark = uncertain, bright = confident
    scaled = Renderer(["a"], [[0, 0, 0]], mode="confidence")
    with_scale = scaled.render(frame, frame[..., 0], None, confidence)
    assert not np.array_equal(with_scale[:20, :60], cv2.addWeighted(frame, 0.5, cv2.applyColorMap(
        confidence, cv2.COLORMAP_INFERNO), 0.5, 0)[:20, :60])  # the 0-100 % scale is drawn
    with pytest.raises(ValueError, match="confidence"):
        r.render(frame, frame[..., 0], None, None)


def test_manifest_rejects_a_confidence_name_that_is_the_labels(confidence_artefact: Path,
                                                               tmp_path: Path) -> None:
    bad = clone_artefact(confidence_artefact, tmp_path, confidence_name=LABELS_NAME)
    with pytest.raises(ArtefactError, match="confidence_name"):
        load_manifest(bad)
    old = json.loads(Path(confidence_artefact).read_text())
    for field in ("confidence_name", "flip"):  # manifests written before these fields still load
        old.pop(field)
    (tmp_path / "old.json").write_text(json.dumps(old))
    legacy = load_manifest(tmp_path / "old.json")
    assert legacy.confidence_name is None and legacy.flip is False


def test_benchmark_reports_from_a_result(tmp_path: Path) -> None:
    """benchmarks.confidence's tables and reliability diagram, and the paired ratios of
    benchmarks.pipeline_runs, from a result of known values (the runs themselves are smoke-run by
    hand: they time whole pspnet-rt processes)."""
    from benchmarks.confidence import calibration_rows, cost_rows, write_outputs
    from benchmarks.pipeline_runs import median_ratio, run_fps

    base = [{"status": "ok", "steady_fps": 10.0, "cpu_ms_per_frame": 100.0},
            {"status": "ok", "steady_fps": 5.0, "cpu_ms_per_frame": 110.0},
            {"status": "failed: x"}]
    mine = [{"status": "ok", "steady_fps": 9.0, "cpu_ms_per_frame": 105.0},
            {"status": "ok", "steady_fps": 4.75, "cpu_ms_per_frame": 110.0},
            {"status": "ok", "steady_fps": 1.0, "cpu_ms_per_frame": 1.0}]
    assert median_ratio(mine, base, run_fps) == pytest.approx(0.925)  # (0.9 + 0.95) / 2; round 3 unpaired
    assert median_ratio(mine, base, lambda r: r.get("cpu_ms_per_frame")) == pytest.approx(1.025)
    rel = Reliability()
    rel.update(np.full((4, 4), 204, np.uint8), np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8))
    variant = {"status": "ok", "median_fps": 9.0, "fps_ratio_to_baseline": 0.925, "precision_ran": "int8/f32",
               "median_cpu_ms_per_frame": 105.0, "cpu_ratio_to_baseline": 1.025, "runs": mine, "args": []}
    from devices.facts import cpu_info

    env = {"cpu": cpu_info(), "libraries": {}, "gpu": None, "load_average": None}  # what the header reads
    result = {"model": "demo", "backend": "openvino", "precision": "int8", "flip": False,
              "input_size": [96, 192], "command": "python -m benchmarks.confidence", "environment": env,
              "cost": {"frames_per_run": 150, "rounds": 3, "sinks": "video", "fps": "steady",
                       "variants": {"plain": {**variant, "fps_ratio_to_baseline": 1.0}, "conf": variant}},
              "calibration": [{"precision": "int8", "precision_ran": "int8/f32", "images": 1,
                               **rel.to_dict()}]}
    assert cost_rows(result)[1][3:8] == ["9.00", "0.925", "+7.5 %", "105", "1.025"]
    assert calibration_rows(result)[0][4:7] == ["100.00 %", "80.00 %", "20.00"]  # right, p = 0.8: 20 points
    write_outputs(result, tmp_path)
    written = json.loads((tmp_path / "confidence.json").read_text())
    assert written["calibration"][0]["ece"] == pytest.approx(0.2)
    assert "| conf |" in (tmp_path / "confidence.md").read_text()
    assert cv2.imread(str(tmp_path / "confidence.png")) is not None


def test_python_api_returns_the_confidence(confidence_artefact: Path) -> None:
    """pspnet_rt.load(..., confidence=True): each collected result carries its confidence at the
    frame's own size, resized as the labels are."""
    import pspnet_rt

    frame = cv2.resize(demo_frames(1)[0], (W * 2, H * 2))  # not the model's size
    with pspnet_rt.load(confidence_artefact, confidence=True) as engine:
        engine.submit(frame)
        result = engine.collect()
    assert result.labels.shape == result.confidence.shape == frame.shape[:2]
    assert result.confidence.dtype == np.uint8 and result.confidence.max() > 0
