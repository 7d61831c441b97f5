"""PyTorch PSPNet -> ONNX with pre- and post-processing fused into the graph.

The graph takes the camera's own bytes (uint8 BGR NHWC) and returns a uint8 class map, so
every backend shares one contract and the runtime copies bytes in and bytes out: a 19-class
float32 logit map is 76x the bytes of the uint8 map.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from artefact.manifest import CONFIDENCE_NAME, INPUT_NAME, LABELS_NAME, LOGITS_NAME
from build_engine.errors import SizeError
from pspnet.model import PSPNet, output_size
from pspnet.zoo import ModelSpec

log = logging.getLogger(__name__)
OPSET = 18
MIN_SIDE = 33  # three stride-2 stages must leave at least a 5x5 map for the 3x3 head


class FusedSegmenter(nn.Module):
    """uint8 BGR NHWC -> (uint8 class map, float logits at input size).

    `flip` (an artefact option; off, the graph is byte for byte what it was) runs the network on
    the image and on its mirror and averages their logits: the TF seed's --flipped-eval, 2x the
    network's work. The confidence output is added to the exported ONNX instead
    (build_engine.confidence_tail), so the rest of the graph keeps its exact bytes.
    """

    def __init__(self, net: PSPNet, spec: ModelSpec, flip: bool = False) -> None:
        super().__init__()
        self.net = net
        self.flip = flip
        self.flip_to_rgb = spec.channel_order.upper() == "RGB"
        self.register_buffer("scale", torch.tensor([1.0 / s for s in spec.std]).view(1, 3, 1, 1))
        self.register_buffer("shift", torch.tensor([-m / s for m, s in zip(spec.mean, spec.std)])
                             .view(1, 3, 1, 1))

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        # TensorRT accepts UINT8 only as a network input feeding a Cast to float, or as an output
        # made by a Cast from float (see build_engine/tensorrt_rules.py, R1-R3): so the bytes
        # become float before any layout op, every shape is read from the float tensor, and the
        # int64 ArgMax reaches uint8 through float (exact: class ids are small integers).
        x = image.float().permute(0, 3, 1, 2)
        if self.flip_to_rgb:
            x = x.flip(1)
        x = x * self.scale + self.shift  # (x - mean) / std as one Mul and one Add
        if self.flip:
            logits = flip_averaged_logits(self.net, x)
        else:
            logits = self.net(x)
        logits = F.interpolate(logits, size=x.shape[2:4], mode="bilinear", align_corners=True)
        return logits.argmax(1).float().to(torch.uint8), logits


def flip_averaged_logits(net: nn.Module, x: Tensor) -> Tensor:
    """The network's logits averaged with those of the mirrored image, mirrored back.

    Two calls of the network (two branches of nodes in the graph; their weights are one set of
    initializers, see _share_identical_initializers), not one batch of two: OpenVINO's CPU plugin
    computes the INT8 Q/DQ graph of a batch of two wrongly (measured on the demo model at 96x192:
    78 % of pixels equal to FP32 against 97 % for two branches and for the plain graph; ONNX
    Runtime 99 % either way). The average is taken on the low-resolution logits, before the
    resize: an align_corners resize commutes with a horizontal mirror, so this equals averaging
    the resized logits, and the resize and ArgMax run once (the TF seed adds conv6's two
    outputs, then resizes).
    """
    return (net(x) + net(x.flip(3)).flip(3)) * 0.5


def check_size(height: int, width: int, bins: tuple[int, ...]) -> list[str]:
    """Notes on how the pyramid pools at this size; raises SizeError for unusable sizes."""
    if height < MIN_SIDE or width < MIN_SIDE:
        raise SizeError(f"input {height}x{width} is too small: both sides must be >= {MIN_SIDE}")
    fh, fw = output_size(height), output_size(width)
    uneven = [b for b in bins if fh % b or fw % b]
    if not uneven:
        return []
    step = 8 * _lcm(bins)
    near = sorted({(max(step, round(height / step) * step), max(step, round(width / step) * step))})
    return [f"feature map {fh}x{fw} is not divisible by pyramid bins {uneven}: the pooling is "
            f"exported exactly as slices + means (slower than AveragePool; sizes like "
            f"{near[0][0]}x{near[0][1]} pool natively)"]


def _lcm(values: tuple[int, ...]) -> int:
    from math import lcm

    return lcm(*values)


def output_names(confidence: bool = False) -> list[str]:
    """The fused graph's outputs, in order."""
    return [LABELS_NAME, LOGITS_NAME] + ([CONFIDENCE_NAME] if confidence else [])


def export_fused_onnx(net: PSPNet, spec: ModelSpec, path: str | Path, height: int, width: int,
                      dynamic: bool = False, confidence: bool = False, flip: bool = False) -> Path:
    """Write the fused graph (outputs `labels`, `logits` and, asked for, `confidence`) to `path`.

    Static shapes go through the TorchScript exporter (fast, and what TensorRT's parser has
    seen most); dynamic H/W needs the dynamo exporter, because the pyramid pooling's window
    bounds must stay symbolic.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fused = FusedSegmenter(net.eval(), spec, flip).eval()
    names = output_names()
    sample = torch.randint(0, 256, (1, height, width, 3), dtype=torch.uint8)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if dynamic:
            dims = {INPUT_NAME: {1: torch.export.Dim("height", min=MIN_SIDE, max=8192),
                              2: torch.export.Dim("width", min=MIN_SIDE, max=8192)}}
            with contextlib.redirect_stdout(io.StringIO()):
                program = torch.onnx.export(fused, (sample,), dynamo=True, dynamic_shapes=dims,
                                            input_names=[INPUT_NAME], output_names=names,
                                            opset_version=OPSET, optimize=True)
            program.save(str(path))
            _tensorrt_friendly_dynamic_graph(path)
        else:
            torch.onnx.export(fused, (sample,), str(path), dynamo=False, opset_version=OPSET,
                              input_names=[INPUT_NAME], output_names=names,
                              do_constant_folding=True)
    if flip:
        _share_identical_initializers(path)
    if confidence:
        from build_engine.confidence_tail import add_confidence_file

        add_confidence_file(path)
    return path


def _share_identical_initializers(path: Path) -> None:
    """The --flip graph's two branches on one set of weights (calib.onnx_tools.share_weights)."""
    import onnx

    from calib.onnx_tools import share_weights

    model = onnx.load(str(path))
    if share_weights(model):
        onnx.save(model, str(path))


def _tensorrt_friendly_dynamic_graph(path: Path) -> None:
    """Two edits the dynamo exporter's graph needs before TensorRT's parser takes it.

    It reads symbolic H/W from the graph input itself, so `Shape(image)` appears however the
    module is written, and TensorRT lets nothing but a Cast read UINT8 (R2): those Shapes read
    the input's float Cast instead (same shape). And it squeezes those sizes without an axes
    input, which TensorRT 10 accepts only for static shapes and 11.x only from 11.5: the axes
    are written out (the dims of size 1, from shape inference). Exact edits, no new arithmetic.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    uint8_inputs = {i.name for i in graph.input
                    if i.type.tensor_type.elem_type == onnx.TensorProto.UINT8}
    nodes = list(graph.node)
    first = [i for i, n in enumerate(nodes) if n.op_type == "Cast" and n.input[0] in uint8_inputs
             and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in n.attribute)]
    to_float = {nodes[i].input[0]: nodes[i].output[0] for i in first}
    for node in nodes:
        if node.op_type == "Shape" and node.input[0] in to_float:
            node.input[0] = to_float[node.input[0]]
    # The Casts read only graph inputs: first in the node list keeps the graph topologically sorted.
    ordered = [nodes[i] for i in first] + [n for i, n in enumerate(nodes) if i not in first]
    del graph.node[:]
    graph.node.extend(ordered)

    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else None
                       for d in v.type.tensor_type.shape.dim]
              for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    for node in graph.node:
        dims = shapes.get(node.input[0]) if node.op_type == "Squeeze" else None
        if dims is None or len(node.input) > 1 or None in dims:
            continue
        axes = numpy_helper.from_array(np.array([i for i, d in enumerate(dims) if d == 1],
                                                np.int64), f"{node.name}_axes")
        graph.initializer.append(axes)
        node.input.append(axes.name)
    onnx.save(model, str(path))


def torch_reference(net: PSPNet, spec: ModelSpec, frames: list, flip: bool = False) -> list[tuple]:
    """(labels, logits) numpy pairs from the very module that was exported (with `flip`, the
    flip-averaged one: what a --flip graph must match)."""
    fused = FusedSegmenter(net.eval(), spec, flip).eval()
    out = []
    with torch.no_grad():
        for frame in frames:
            labels, logits = fused(torch.from_numpy(frame[None]))
            out.append((labels.numpy()[0], logits.numpy()[0]))
    return out
