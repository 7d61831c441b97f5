"""TensorRT graph rules, offline: every graph we export passes; the old graphs are named R1-R3."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from build_engine.tensorrt_rules import check_file, check_model, main
from tests.conftest import TINY_SIZE

H, W = TINY_SIZE


def export_the_old_way(net, spec, path: Path, dynamic: bool) -> Path:
    """main's exporter before issue 17: uint8 Transpose before the Cast, Shape(image), and
    ArgMax(int64) cast straight to uint8. Kept here only to show the rules catch it."""
    import torch
    import torch.nn.functional as F

    from build_engine.export import MIN_SIDE, OPSET, FusedSegmenter

    class OldFusedSegmenter(FusedSegmenter):
        def forward(self, image):
            x = image.permute(0, 3, 1, 2).float()
            if self.flip_to_rgb:
                x = x.flip(1)
            x = x * self.scale + self.shift
            logits = self.net(x)
            logits = F.interpolate(logits, size=image.shape[1:3], mode="bilinear",
                                   align_corners=True)
            return logits.argmax(1).to(torch.uint8), logits

    fused = OldFusedSegmenter(net.eval(), spec).eval()
    sample = torch.randint(0, 256, (1, H, W, 3), dtype=torch.uint8)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if dynamic:
            dims = {"image": {1: torch.export.Dim("height", min=MIN_SIDE, max=8192),
                              2: torch.export.Dim("width", min=MIN_SIDE, max=8192)}}
            torch.onnx.export(fused, (sample,), dynamo=True, dynamic_shapes=dims,
                              input_names=["image"], output_names=["labels", "logits"],
                              opset_version=OPSET, optimize=True).save(str(path))
        else:
            torch.onnx.export(fused, (sample,), str(path), dynamo=False, opset_version=OPSET,
                              input_names=["image"], output_names=["labels", "logits"])
    return path


@pytest.fixture(scope="module")
def demo_net():
    from pspnet.build import load_model
    from pspnet.zoo import get_spec

    spec = get_spec("demo")
    net, _ = load_model(spec)
    return net, spec


def precision_graphs(net, spec, tmp: Path, height: int, width: int,
                     dynamic: bool = True) -> dict[str, Path]:
    """The graphs a build hands TensorRT, made by the real pipeline steps: FP32 with and without
    logits, FP16 and INT8 (both Q/DQ placements, 4 calibration frames), and dynamic H/W FP32."""
    from build_engine.export import export_fused_onnx
    from calib.fp16 import convert_fp16
    from calib.graph_parts import final_classifier
    from calib.onnx_tools import keep_outputs, slim
    from calib.precision import final_graph
    from calib.quantize import preprocess, quantize_int8
    from calib.sources import load_frames

    out: dict[str, Path] = {}
    for dyn in (False, True) if dynamic else (False,):
        raw = export_fused_onnx(net, spec, tmp / f"raw{dyn}.onnx", height, width, dynamic=dyn)
        name = "fp32-dynamic" if dyn else "fp32-with-logits"
        onnx.save(slim(keep_outputs(onnx.load(str(raw)), ["labels", "logits"])),
                  str(tmp / f"{name}.onnx"))
        out[name] = tmp / f"{name}.onnx"
    out["fp32"] = final_graph(out["fp32-with-logits"], tmp / "fp32.onnx", ["labels"])
    out["fp16"], _ = convert_fp16(out["fp32"], tmp / "fp16.onnx")
    out["fp16-with-logits"], _ = convert_fp16(out["fp32-with-logits"],
                                              tmp / "fp16-with-logits.onnx")
    pre = preprocess(out["fp32"], tmp / "pre.onnx")
    cls = final_classifier(onnx.load(str(pre)))
    frames = load_frames("synthetic:calib:4", 4, height, width).frames
    cache = tmp / "ranges.calib"
    for placement in ("tensorrt", "conv-outputs"):
        out[f"int8-{placement}"] = quantize_int8(pre, tmp / f"int8-{placement}.onnx",
                                                 frames if not cache.exists() else None,
                                                 "minmax", [cls.name], cache, placement)
    return out


@pytest.fixture(scope="module")
def graphs(tmp_path_factory, demo_net) -> dict[str, Path]:
    """Every graph the project can export for TensorRT, demo model at the CI size."""
    net, spec = demo_net
    return precision_graphs(net, spec, tmp_path_factory.mktemp("trt-graphs"), H, W)


def test_every_exported_graph_passes_the_rules(graphs):
    for name, path in graphs.items():
        assert check_file(path) == [], name


def zoo_networks() -> list[str]:
    """One zoo name per distinct network (depth, channel order, Caffe conventions, bins): what
    changes the exported graph. Class counts and the demo's width only change tensor sizes."""
    from pspnet.zoo import REGISTRY

    seen: dict[tuple, str] = {}
    for spec in REGISTRY.values():
        seen.setdefault((spec.depth, spec.channel_order.upper(), spec.stride_on_1x1,
                         spec.caffe_ppm_order, spec.bins), spec.name)
    return sorted(seen.values())


@pytest.mark.slow
@pytest.mark.parametrize("name", zoo_networks())
def test_every_zoo_network_exports_graphs_that_pass(name, tmp_path):
    """Each network of the zoo (random weights at 1/8 width: the graph's ops, not its values,
    are what the rules read), every precision; dynamic H/W too for the Caffe-convention
    ResNet-50, the network furthest from the demo's."""
    import dataclasses

    from pspnet.build import create_model
    from pspnet.zoo import get_spec

    spec = dataclasses.replace(get_spec(name), width=0.125)
    dynamic = spec.caffe_ppm_order and spec.depth == 50
    made = precision_graphs(create_model(spec).eval(), spec, tmp_path, H, W, dynamic=dynamic)
    assert ("fp32-dynamic" in made) == dynamic
    for graph, path in made.items():
        violations = check_file(path)
        assert violations == [], (name, graph, [v.line() for v in violations])


def test_uint8_sits_only_at_the_boundary_next_to_float_casts(graphs):
    for name, path in graphs.items():
        model = onnx.load(str(path))
        (first,) = [n for n in model.graph.node if "image" in n.input]
        assert first.op_type == "Cast" and first.attribute[0].i == TensorProto.FLOAT, name
        made_by = {o: n for n in model.graph.node for o in n.output}
        to_uint8 = made_by["labels"]
        before = made_by[to_uint8.input[0]]
        assert (to_uint8.op_type, before.op_type) == ("Cast", "Cast"), name
        assert made_by[before.input[0]].op_type == "ArgMax", name


@pytest.fixture(scope="module")
def old_static(tmp_path_factory, demo_net) -> Path:
    """The old exporter's static graph, raw (labels and logits)."""
    return export_the_old_way(*demo_net, tmp_path_factory.mktemp("old") / "old.onnx", False)


def test_the_old_graphs_are_named_r1_r2_r3(tmp_path, demo_net, old_static):
    from calib.onnx_tools import keep_outputs, slim

    net, spec = demo_net
    static = slim(keep_outputs(onnx.load(str(old_static)), ["labels"]))
    found = {(v.rule, v.node) for v in check_model(static)}
    assert ("R1", "/Transpose") in found and ("R3", "/Cast_1") in found
    dynamic = onnx.load(str(export_the_old_way(net, spec, tmp_path / "old_dyn.onnx", True)))
    rules = {v.rule for v in check_model(dynamic)}
    assert {"R1", "R2", "R3", "squeeze-axes"} <= rules
    r2 = [v for v in check_model(dynamic) if v.rule == "R2"]
    assert r2 and all(v.op == "Shape" and "image" in v.message for v in r2)
    assert all(v.source for v in check_model(dynamic))  # every rule cites where it comes from


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_the_new_boundary_leaves_every_label_as_it_was(graphs, old_static, backend):
    """Cast before the Transpose, shapes from the float tensor and ArgMax -> float -> uint8 are
    exact: the CPU backends give the old graph's class maps to the pixel (and its logits)."""
    from calib.sources import load_frames
    from runtime.backends import open_runner

    frames = load_frames("synthetic:val:4", 4, H, W, seed=1, default_split="val").frames
    with open_runner(backend, old_static) as old, \
            open_runner(backend, graphs["fp32-with-logits"]) as new:
        for frame in frames:
            (old_labels, old_logits), (new_labels, new_logits) = old.predict(frame), new.predict(frame)
            assert np.array_equal(old_labels, new_labels)
            np.testing.assert_allclose(new_logits, old_logits, rtol=0, atol=1e-4)


def test_cli_exit_codes_and_one_line_per_violation(tmp_path, graphs, old_static, capsys):
    assert main([str(graphs["fp32"]), str(graphs["int8-tensorrt"])]) == 0
    assert "TensorRT graph rules: pass (checked offline" in capsys.readouterr().out
    old = old_static
    assert main([str(old)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(check_file(old)) and all(" R" in line for line in lines)
    with pytest.raises(SystemExit) as refused:  # refused by the parser (clikit.input_file), one line
        main([str(tmp_path / "missing.onnx")])
    assert refused.value.code == 2 and "missing.onnx does not exist" in capsys.readouterr().err
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all \x00\xff")
    result = subprocess.run([sys.executable, "-m", "build_engine.tensorrt_rules",
                             str(tmp_path / "junk.onnx")], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_rules_module_needs_no_torch():
    code = ("import sys, build_engine.tensorrt_rules; "
            "sys.exit(1 if any(m == 'torch' or m.startswith('torch.') for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def _model(nodes, inputs, outputs, inits=(), opset=18):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _fx(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


@pytest.mark.parametrize(("rule", "build"), [
    ("qdq-zero-point", lambda: _qdq(zero=np.array(3, np.int8))),
    ("qdq-zero-point", lambda: _qdq(zero=np.array(0, np.uint8))),
    ("qdq-scale", lambda: _qdq(scale=np.array(-0.1, np.float32))),
    ("qdq-per-axis", lambda: _qdq(scale=np.full(4, 0.1, np.float32),
                                  zero=np.zeros(4, np.int8))),
    ("resize-antialias", lambda: _resize(antialias=1)),
    ("resize-coordinates", lambda: _resize(coordinate_transformation_mode="tf_crop_and_resize")),
    ("reduce-axes", lambda: _model(
        [helper.make_node("Shape", ["x"], ["s"], start=0, end=1),
         helper.make_node("ReduceMean", ["x", "s"], ["y"])],
        [_fx("x", [1, 4, 8, 8])], [_fx("y", [1, 1, 8, 8])])),
    ("squeeze-axes", lambda: _model([helper.make_node("Squeeze", ["x"], ["y"])],
                                    [_fx("x", [1, 4])], [_fx("y", [4])])),
    ("pool-dilations", lambda: _model(
        [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2])],
        [_fx("x", [1, 4, 8, 8])], [_fx("y", [1, 4, 6, 6])])),
    ("op-not-covered", lambda: _model([helper.make_node("Hardmax", ["x"], ["y"])],
                                      [_fx("x", [1, 4])], [_fx("y", [1, 4])])),
    ("opset", lambda: _model([helper.make_node("Relu", ["x"], ["y"])], [_fx("x", [1])],
                             [_fx("y", [1])], opset=21)),
    ("R3", lambda: _model([helper.make_node("ArgMax", ["x"], ["a"], axis=1, keepdims=0),
                           helper.make_node("Cast", ["a"], ["y"], to=TensorProto.UINT8)],
                          [_fx("x", [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.UINT8, [1])])),
])
def test_each_rule_fires_on_a_graph_that_breaks_it(rule, build):
    model = build()
    onnx.checker.check_model(model)  # a valid ONNX graph: only TensorRT would refuse it
    assert rule in {v.rule for v in check_model(model)}


def _qdq(scale=None, zero=None):
    scale = np.array(0.1, np.float32) if scale is None else scale
    zero = np.array(0, np.int8) if zero is None else zero
    inits = [numpy_helper.from_array(scale, "s"), numpy_helper.from_array(zero, "z")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=1),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1)]
    return _model(nodes, [_fx("x", [1, 4, 8, 8])], [_fx("y", [1, 4, 8, 8])], inits)


def _resize(**attrs):
    sizes = numpy_helper.from_array(np.array([1, 4, 16, 16], np.int64), "sizes")
    roi = numpy_helper.from_array(np.array([0, 0, 0, 0, 1, 1, 1, 1], np.float32), "roi")
    uses_roi = attrs.get("coordinate_transformation_mode") == "tf_crop_and_resize"
    node = helper.make_node("Resize", ["x", "roi" if uses_roi else "", "", "sizes"], ["y"],
                            mode="linear", **attrs)
    return _model([node], [_fx("x", [1, 4, 8, 8])], [_fx("y", [1, 4, 16, 16])], [sizes, roi])


def test_tensorrt_build_names_the_refused_node_before_tensorrt_is_called(tmp_path, monkeypatch,
                                                                          capsys):
    """A `--backend tensorrt` build of a graph made the old way stops at the rules: exit 1, one
    line naming the node, and TensorRT (absent here) is never reached."""
    import build_engine.export as export
    import build_engine.tensorrt_builder as trt_builder
    from build_engine.cli import main as build_main

    real_export = export.export_fused_onnx

    def old_export(net, spec, path, height, width, dynamic=False, *options, **named):
        return export_the_old_way(net, spec, Path(path), dynamic) if not dynamic else \
            real_export(net, spec, path, height, width, dynamic, *options, **named)

    def tensorrt_must_not_be_reached():
        raise AssertionError("TensorRT was called before the graph rules")

    monkeypatch.setattr(export, "export_fused_onnx", old_export)
    monkeypatch.setattr(trt_builder, "import_tensorrt", tensorrt_must_not_be_reached)
    # as on a GPU machine: without one the build is refused up front (build_engine.preflight)
    monkeypatch.setattr("devices.tensorrt_usable", lambda: True)
    code = build_main(["--backend", "tensorrt", "--input-size", f"{H}x{W}", "--output",
                       str(tmp_path)])
    err = capsys.readouterr().err
    failure = [line for line in err.splitlines() if "build failed:" in line]
    assert code == 1 and len(failure) == 1
    assert "/Transpose (Transpose)" in failure[0] and "R1" in failure[0]
    assert not list(tmp_path.glob("*.json"))


def test_manifests_record_the_rules_result(demo_artefacts):
    from artefact.manifest import load_manifest

    for path in demo_artefacts.values():
        rules = load_manifest(path).verification["tensorrt_graph_rules"]
        assert rules["result"] == "pass" and rules["checked"] == "offline"
        assert rules["ran_on_gpu"] is False and rules["violations"] == 0 and rules["rules"]
