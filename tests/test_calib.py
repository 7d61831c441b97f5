"""INT8/FP16: calibration sources, the Q/DQ scheme TensorRT accepts, cache, gate, failures."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from build_engine.tensorrt_rules import check_file
from calib.graph_parts import final_classifier, preprocessing_nodes
from calib.qdq_placement import describe, residual_adds
from calib.quantize import preprocess, quantize_int8
from calib.sources import CalibrationError, load_frames
from segdata.datasets import even_sample
from tests.conftest import TINY_SIZE

H, W = TINY_SIZE


def test_even_sample_spreads_over_the_source():
    idx = even_sample(1000, 10, seed=3)
    assert len(idx) == 10 and len(set(idx)) == 10
    assert all(i * 100 <= v < (i + 1) * 100 for i, v in enumerate(idx))
    assert even_sample(1000, 10, seed=3) == idx and even_sample(5, 10) == [0, 1, 2, 3, 4]


def test_odd_images_are_converted_and_broken_ones_skipped(tmp_path, caplog):
    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / "a_gray.png"), rng.integers(0, 255, (50, 70), np.uint8))
    cv2.imwrite(str(tmp_path / "b_rgba.png"), rng.integers(0, 255, (64, 64, 4), np.uint8))
    cv2.imwrite(str(tmp_path / "c_16bit.png"), rng.integers(0, 65535, (40, 90, 3), np.uint16))
    cv2.imwrite(str(tmp_path / "d_big.jpg"), rng.integers(0, 255, (300, 500, 3), np.uint8))
    (tmp_path / "e_broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (tmp_path / "notes.txt").write_text("ignored")
    with caplog.at_level(logging.WARNING):
        frames = load_frames(str(tmp_path), 10, H, W)
    assert len(frames.frames) == 4 and frames.available == 5
    assert all(f.shape == (H, W, 3) and f.dtype == np.uint8 for f in frames.frames)
    assert any("e_broken.png" in s for s in frames.skipped)
    assert "only 4 usable images" in caplog.text


def test_empty_and_missing_sources_are_clear(tmp_path):
    with pytest.raises(CalibrationError, match="holds no images"):
        load_frames(str(tmp_path), 5, H, W)
    with pytest.raises(CalibrationError, match="does not exist"):
        load_frames(str(tmp_path / "nope"), 5, H, W)
    (tmp_path / "x.png").write_bytes(b"garbage")
    with pytest.raises(CalibrationError, match="no usable image"):
        load_frames(str(tmp_path / "*.png"), 5, H, W)


def test_video_file_source(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for i in range(20):
        writer.write(np.full((120, 160, 3), i * 10, np.uint8))
    writer.release()
    frames = load_frames(str(path), 5, H, W)
    assert len(frames.frames) == 5 and frames.available == 20
    means = [f.mean() for f in frames.frames]
    assert means == sorted(means)  # evenly spread, in order


def test_frame_sources_come_through_the_runtime_parser(tmp_path):
    """One URI parser, one image-extension list: what pspnet-rt --video takes, calibration takes."""
    from segdata.frames import IMAGE_SUFFIXES

    assert {".pnm", ".jp2"} <= IMAGE_SUFFIXES  # once missing from calibration's own list
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"f{i}.pnm"), np.full((40, 60, 3), 50 * i, np.uint8))
    assert len(load_frames(str(tmp_path), 3, H, W).frames) == 3
    demo = load_frames("demo", 3, H, W)
    assert len(demo.frames) == 3 and demo.frames[0].shape == (H, W, 3) and demo.labels == [None] * 3
    with pytest.raises(CalibrationError, match=r"cam97.*cannot open camera"):
        load_frames("cam97", 3, H, W)


def test_synthetic_labelled_source():
    frames = load_frames("synthetic:calib:6", 3, H, W)
    assert len(frames.frames) == 3 and all(lb is not None and lb.shape == (H, W)
                                           for lb in frames.labels)


@pytest.fixture(scope="module")
def fp32_onnx(tmp_path_factory):
    from build_engine.export import export_fused_onnx
    from calib.precision import final_graph
    from pspnet.build import load_model
    from pspnet.zoo import get_spec

    tmp = tmp_path_factory.mktemp("q")
    spec = get_spec("demo")
    net, _ = load_model(spec)
    raw = export_fused_onnx(net, spec, tmp / "raw.onnx", H, W)
    return final_graph(raw, tmp / "fp32.onnx", ["labels"])


def test_int8_qdq_scheme_is_what_tensorrt_accepts(tmp_path, fp32_onnx):
    pre = preprocess(fp32_onnx, tmp_path / "pre.onnx")
    cls = final_classifier(onnx.load(str(pre)))
    frames = load_frames("synthetic:calib:8", 8, H, W).frames
    cache = tmp_path / "ranges.calib"
    out = quantize_int8(pre, tmp_path / "int8.onnx", frames, "minmax", [cls.name], cache)
    model = onnx.load(str(out))
    assert check_file(out) == []  # zero points, scales, axes: TensorRT's Q/DQ rules
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    qs = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert qs, "no Q/DQ nodes were inserted"
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:  # a weight
            scale = inits[node.input[1]]
            if scale.size > 1:
                assert dict((a.name, a.i) for a in node.attribute).get("axis", 1) == 0
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    by_output = {o: n for n in model.graph.node for o in n.output}
    final = next(n for n in convs if n.name == cls.name)
    assert by_output[final.input[0]].op_type != "DequantizeLinear"  # classifier stays float
    pre_region = set(preprocessing_nodes(model))
    # Only the first Conv's own input is quantized; normalisation itself runs in float.
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node if n.name in pre_region) == 1
    # The cache alone (no frames) gives the same model.
    again = quantize_int8(pre, tmp_path / "int8b.onnx", None, "minmax", [cls.name], cache)
    assert again.read_bytes() == out.read_bytes()


def test_tensorrt_placement_quantizes_conv_and_residual_inputs_not_conv_outputs(tmp_path,
                                                                             fp32_onnx):
    """NVIDIA's placement: Q/DQ on Conv inputs and on each residual Add's shortcut input; the
    main-branch Conv output stays float so Conv+Add+ReLU fuse. ORT's default differs."""
    pre = preprocess(fp32_onnx, tmp_path / "pre.onnx")
    graph = onnx.load(str(pre))
    cls = final_classifier(graph)
    residual = residual_adds(graph)
    assert len(residual) == 8  # two BasicBlocks in each of the four ResNet stages
    made_by = {o: n for n in graph.graph.node for o in n.output}
    by_name = {n.name: n for n in graph.graph.node}
    shortcut_convs = sum(made_by[by_name[a].input[r]].op_type == "Conv"
                         for a, (_, r) in residual.items())
    frames = load_frames("synthetic:calib:4", 4, H, W).frames
    cache = tmp_path / "ranges.calib"
    trt = quantize_int8(pre, tmp_path / "trt.onnx", frames, "minmax", [cls.name], cache)
    ort = quantize_int8(pre, tmp_path / "ort.onnx", None, "minmax", [cls.name], cache,
                        "conv-outputs")
    convs = sum(n.op_type == "Conv" for n in graph.graph.node)
    facts = describe(onnx.load(str(trt)))
    assert (facts["conv_inputs_quantized"], facts["conv_outputs_quantized"],
            facts["residual_add_inputs_quantized"]) == (convs - 1, shortcut_convs, 8)
    assert describe(onnx.load(str(ort)))["conv_outputs_quantized"] == convs - 1
    # conv-outputs also quantizes what enters the pyramid-pooling Concat (the backbone's map and
    # the four upsampled branches), so OpenVINO holds none of it in float; TensorRT's does not
    ppm_concat = [n for n in graph.graph.node if n.op_type == "Concat" and "ppm" in n.name]
    assert len(ppm_concat) == 1 and len(ppm_concat[0].input) == 5
    assert describe(onnx.load(str(ort)))["concat_inputs_quantized"] == 5
    assert describe(onnx.load(str(trt)))["concat_inputs_quantized"] == 0
    model = onnx.load(str(trt))
    made_by = {o: n for n in model.graph.node for o in n.output}
    for add, (fused, shortcut) in residual.items():
        node = next(n for n in model.graph.node if n.name == add)
        assert made_by[node.input[fused]].op_type == "Conv"  # fused into the Conv, float
        assert made_by[node.input[shortcut]].op_type == "DequantizeLinear"
    assert check_file(trt) == [] and check_file(ort) == []


def test_fp16_graph_keeps_uint8_io_and_runs(tmp_path, fp32_onnx):
    from calib.fp16 import convert_fp16
    from runtime.backends import open_runner

    path, kept = convert_fp16(fp32_onnx, tmp_path / "fp16.onnx")
    model = onnx.load(str(path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    assert kept  # pre/post-processing stayed float32
    frame = load_frames("synthetic:val:1", 1, H, W).frames[0]
    with open_runner("onnxruntime", path, "fp16") as fp16, open_runner("onnxruntime", fp32_onnx) as fp32:
        labels, _ = fp16.predict(frame)
        ref, _ = fp32.predict(frame)
    assert (labels == ref).mean() > 0.95


def run_build(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "build_engine", "--input-size", f"{H}x{W}",
                           *args], capture_output=True, text=True, timeout=600)


def test_int8_build_writes_gated_manifest(tmp_path):
    from artefact.manifest import load_manifest

    result = run_build("--precision", "int8", "--backend", "onnxruntime", "--output", str(tmp_path),
                       "--calib-images", "8", "--eval-images", "6", "--calib-method", "minmax",
                       "--max-miou-drop", "100")
    assert result.returncode == 0, result.stderr
    m = load_manifest(result.stdout.strip())
    assert m.precision == "int8" and m.calibration["images"] == 8
    assert m.calibration["method"] == "minmax" and m.calibration["excluded_nodes"]
    gate = m.accuracy["gate"]
    assert gate["images"] == 6 and 0 <= gate["pixel_agreement"] <= 1
    assert "road" in gate["per_class"]


def test_failed_gate_exits_1_and_writes_nothing(tmp_path):
    # min/max INT8 on 4 frames loses ~1 mIoU point on these 4 held-out frames: more than 0 allows
    result = run_build("--precision", "int8", "--backend", "onnxruntime", "--output", str(tmp_path),
                       "--calib-images", "4", "--eval-images", "4", "--calib-method", "minmax",
                       "--max-miou-drop", "0")
    assert result.returncode == 1
    assert "accuracy gate failed" in result.stderr and "mIoU" in result.stderr
    assert not list(tmp_path.glob("*.json")) and not list(tmp_path.glob("*.onnx"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_calibration_overlapping_eval_is_refused(tmp_path):
    result = run_build("--precision", "int8", "--backend", "onnxruntime", "--output", str(tmp_path),
                       "--calib-data", "synthetic:val:4", "--eval-data", "synthetic:val:4",
                       "--calib-images", "4", "--eval-images", "4")
    assert result.returncode == 2 and "held-out" in result.stderr


def test_interrupted_build_leaves_no_artefact(tmp_path, monkeypatch):
    from build_engine import api

    def interrupted(self, *args):
        raise KeyboardInterrupt

    monkeypatch.setattr(api.Builder, "compile", interrupted)
    with pytest.raises(KeyboardInterrupt):
        api.build_artefact("demo", "fp32", "onnxruntime", TINY_SIZE, output=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_fallback_keeps_sensitive_blocks_in_float_until_the_gate_passes(tmp_path):
    """Unlabelled eval frames and a 0-point limit: INT8 must agree with FP32 on every pixel.

    Plain INT8 does not, so the fallback has to rank blocks and keep them in float; on ONNX
    Runtime a graph with every block kept in float computes exactly FP32, so the loop always ends.
    """
    from artefact.manifest import load_manifest
    from segdata.synthetic import render_scene

    frames = tmp_path / "eval"
    frames.mkdir()
    for seed in (40_000_001, 40_000_002, 40_000_003):
        cv2.imwrite(str(frames / f"{seed}.png"), render_scene(seed, H, W)[0])
    result = run_build("--precision", "int8", "--backend", "onnxruntime", "--output",
                       str(tmp_path / "out"), "--calib-images", "8", "--eval-data", str(frames),
                       "--eval-images", "3", "--calib-method", "minmax", "--max-miou-drop", "0",
                       "--fallback")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "sensitivity" in result.stderr and "fallback: kept" in result.stderr
    manifest = load_manifest(result.stdout.strip())
    kept = manifest.calibration["kept_float_blocks"]
    assert kept and set(kept) <= {b for b in kept if isinstance(b, str)}
    assert manifest.accuracy["gate"]["passed"] and manifest.accuracy["gate"]["pixel_agreement"] == 1.0


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_chunked_calibration_gives_the_all_at_once_ranges(tmp_path, fp32_onnx, method, monkeypatch):
    """Memory bounded by the chunk, ranges unchanged: the bins are fixed from the whole set first."""
    import json

    from calib import quantize
    from calib.quantize import calibrate

    # entropy's KL search over 2048 bins takes minutes here; the binning code is the same at 256
    monkeypatch.setitem(quantize.CALIBRATOR_OPTIONS, "entropy",
                        {**quantize.CALIBRATOR_OPTIONS["entropy"], "num_bins": 256})

    pre = preprocess(fp32_onnx, tmp_path / "pre.onnx")
    frames = load_frames("synthetic:calib:7", 7, H, W).frames
    calibrate(pre, frames, method, tmp_path / "all.calib", chunk=len(frames))
    calibrate(pre, frames, method, tmp_path / "chunked.calib", chunk=2)
    whole, chunked = (json.loads((tmp_path / f"{n}.calib").read_text())["data"] for n in ("all", "chunked"))
    assert whole.keys() == chunked.keys() and whole == chunked


def test_ranges_records_are_found_by_key_and_refused_when_the_graph_changed(tmp_path):
    from calib import ranges

    key = ranges.key_for("ab" * 32, "synthetic:calib:8@96x192/n8/seed0/generator-v2", "percentile")
    record = ranges.make_record(key, {"CLS": "TensorsData", "data": {"t1": {}, "t2": {}}},
                                {"source": "synthetic:calib:8@96x192", "fingerprint": "f"}, ["00" * 20])
    assert ranges.find(key, tmp_path, None) is None
    ranges.save_local(tmp_path, key, record)
    found, where = ranges.find(key, tmp_path, None)
    assert found == record and where.startswith("cached")
    other = ranges.key_for("cd" * 32, key.frames, "percentile")  # another FP32 graph
    assert ranges.find(other, tmp_path, None) is None
    assert ranges.usable(record, {"t1", "t2", "x"}) and not ranges.usable(record, {"t1"})
