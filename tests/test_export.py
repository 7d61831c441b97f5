"""Fused export: uint8 NHWC in, uint8 class map out, equal to PyTorch on ORT and OpenVINO."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from artefact.manifest import INPUT_NAME, LABELS_NAME, LOGITS_NAME
from build_engine.errors import SizeError
from build_engine.export import check_size, export_fused_onnx, torch_reference
from build_engine.verify import compare, verification_frames
from pspnet.build import create_model
from pspnet.zoo import get_spec
from runtime.backends import open_runner


@pytest.fixture(scope="module")
def demo_net():
    spec = get_spec("demo")
    return create_model(spec).eval(), spec


def test_fused_graph_contract(tmp_path, demo_net):
    net, spec = demo_net
    path = export_fused_onnx(net, spec, tmp_path / "m.onnx", 96, 192)
    graph = onnx.load(str(path)).graph
    (inp,) = graph.input
    # the tensor names are the manifest's contract (artefact.manifest owns them)
    assert inp.name == INPUT_NAME and [o.name for o in graph.output] == [LABELS_NAME, LOGITS_NAME]
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [1, 96, 192, 3]
    labels = next(o for o in graph.output if o.name == LABELS_NAME)
    assert labels.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_value for d in labels.type.tensor_type.shape.dim] == [1, 96, 192]
    ops = {n.op_type for n in graph.node}
    assert {"ArgMax", "Resize"} <= ops and "Softmax" not in ops


@pytest.mark.parametrize("size", [(96, 192), (100, 200)])
def test_round_trip_matches_pytorch_on_ort_and_openvino(tmp_path, demo_net, size):
    net, spec = demo_net
    path = export_fused_onnx(net, spec, tmp_path / "m.onnx", *size)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    if check_size(*size, spec.bins):  # the map does not divide by the bins: slices + means
        assert "ReduceMean" in ops and "AveragePool" not in ops
    else:  # it divides: AveragePool, no float slice copies of the feature map
        assert "AveragePool" in ops and "ReduceMean" not in ops
    frames = verification_frames(*size, count=2)
    reference = torch_reference(net, spec, frames)
    for backend in ("onnxruntime", "openvino"):
        with open_runner(backend, path, "fp32") as runner:
            agreement = compare(reference, [runner.predict(f) for f in frames])
        assert agreement.pixel_agreement >= 0.999
        assert agreement.max_abs_logit_diff < 1e-3


def test_dynamic_height_width_export_is_exact(tmp_path, demo_net):
    net, spec = demo_net
    path = export_fused_onnx(net, spec, tmp_path / "dyn.onnx", 96, 192, dynamic=True)
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert dims[1].dim_param and dims[2].dim_param  # symbolic H and W
    with open_runner("onnxruntime", path) as run:
        for h, w in [(96, 192), (120, 160), (75, 130)]:  # 75x130 does not divide by the bins
            frames = verification_frames(h, w, count=1)
            agreement = compare(torch_reference(net, spec, frames), [run.predict(f) for f in frames])
            assert agreement.pixel_agreement >= 0.999, (h, w, agreement)


def test_size_checks():
    assert check_size(480, 960, (1, 2, 3, 6)) == []
    notes = check_size(100, 200, (1, 2, 3, 6))
    assert notes and "slices" in notes[0] and "x" in notes[0]
    with pytest.raises(SizeError, match="too small"):
        check_size(16, 200, (1, 2, 3, 6))


def test_bgr_input_is_converted_for_rgb_networks(tmp_path, demo_net):
    """A frame and its channel-swapped copy must give different predictions unless flipped back."""
    net, spec = demo_net
    frames = verification_frames(96, 192, count=1)
    (ref,) = torch_reference(net, spec, frames)
    (swapped,) = torch_reference(net, spec, [np.ascontiguousarray(frames[0][..., ::-1])])
    assert not np.array_equal(ref[1], swapped[1])
