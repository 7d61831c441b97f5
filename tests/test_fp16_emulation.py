"""The FP16 gate measures float16 rounding and catches overflow, and says so in the record."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from calib.fp16_emulation import EmulatedFP16, FP16Overflow
from tests.conftest import TINY_SIZE

H, W = TINY_SIZE


def scaled_image_graph(path, factor: float):
    """uint8 image -> float -> float16 -> x factor (float16 weight) -> float -> labels: the
    same boundary as the fused graphs, with one float16 node whose range we control."""
    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT, name="to_float"),
        helper.make_node("Cast", ["f"], ["h"], to=TensorProto.FLOAT16, name="to_half"),
        helper.make_node("Mul", ["h", "k"], ["scaled"], name="scale"),
        helper.make_node("Cast", ["scaled"], ["logits"], to=TensorProto.FLOAT, name="to_fp32"),
        helper.make_node("ArgMax", ["logits"], ["a"], axis=3, keepdims=0, name="argmax"),
        helper.make_node("Cast", ["a"], ["af"], to=TensorProto.FLOAT, name="ids_to_float"),
        helper.make_node("Cast", ["af"], ["labels"], to=TensorProto.UINT8, name="to_uint8"),
    ]
    k = numpy_helper.from_array(np.array(factor, np.float16), "k")
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("image", TensorProto.UINT8, [1, 2, 2, 3])],
        [helper.make_tensor_value_info("labels", TensorProto.UINT8, [1, 2, 2]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2, 2, 3])], [k])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_every_float16_value_is_rounded_like_float16(tmp_path):
    factor = 1.0009765625 + 2 ** -11  # not a float16: the weight itself rounds
    frame = np.array([[[1, 200, 255], [3, 7, 11]], [[101, 103, 107], [251, 13, 0]]], np.uint8)
    with EmulatedFP16(scaled_image_graph(tmp_path / "m.onnx", factor)) as run:
        _, logits = run(frame)
    expected = (frame.astype(np.float16) * np.float16(factor)).astype(np.float32)
    assert np.array_equal(logits, expected)  # IEEE float16 multiply, not float32
    assert not np.array_equal(logits, frame.astype(np.float32) * np.float32(factor))


def test_overflow_names_the_tensor_and_node(tmp_path):
    frame = np.full((2, 2, 3), 255, np.uint8)  # 255 x 300 = 76500 > 65504
    with EmulatedFP16(scaled_image_graph(tmp_path / "m.onnx", 300.0)) as run, \
            pytest.raises(FP16Overflow, match=r"scaled \(made by scale, Mul\).*65504"):
        run(frame)
    with EmulatedFP16(scaled_image_graph(tmp_path / "ok.onnx", 2.0)) as ok:
        ok(frame)
    assert ok.headroom.to_dict()["max_abs_activation"] == 510.0


def test_tensorrt_fp16_gate_runs_the_emulation_and_records_it(tmp_path):
    """The gate for a TensorRT FP16 artefact: emulated float16 on the real FP16 graph, and the
    manifest's gate_backend says exactly that (not "fp16")."""
    from build_engine.api import BuildOptions
    from build_engine.export import export_fused_onnx
    from calib.precision import apply_precision, final_graph
    from pspnet.build import load_model
    from pspnet.zoo import get_spec

    spec = get_spec("demo").with_size(H, W)
    net, _ = load_model(spec)
    raw = export_fused_onnx(net, spec, tmp_path / "raw.onnx", H, W)
    base = final_graph(raw, tmp_path / "fp32.onnx", ["labels"])
    options = BuildOptions(precision="fp16", backend="tensorrt", eval_images=4, max_miou_drop=100)
    result = apply_precision(base, tmp_path, options, spec, ["labels"], tmp_path / "calib",
                             "tensorrt")
    accuracy = result.accuracy
    assert "float16 emulation" in accuracy["gate_backend"]
    assert accuracy["gate_float_precision"].startswith("f16")
    headroom = accuracy["fp16_headroom"]
    assert 0 < headroom["max_abs_activation"] < 65504 and headroom["frames"] == 4
    assert headroom["tensors_checked"] > 50  # every float16 activation of the network
    assert accuracy["gate"]["pixel_agreement"] > 0.95
