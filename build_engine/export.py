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

from artefact.manifest import INPUT_NAME, LABELS_NAME, LOGITS_NAME
from build_engine.errors import SizeError
from pspnet.model import PSPNet, output_size
from pspnet.zoo import ModelSpec

log = logging.getLogger(__name__)
OPSET = 18
MIN_SIDE = 33  # three stride-2 stages must leave at least a 5x5 map for the 3x3 head


class FusedSegmenter(nn.Module):
    """uint8 BGR NHWC -> (uint8 class map, float logits at input size)."""

    def __init__(self, net: PSPNet, spec: ModelSpec) -> None:
        super().__init__()
        self.net = net
        self.flip_to_rgb = spec.channel_order.upper() == "RGB"
        self.register_buffer("scale", torch.tensor([1.0 / s for s in spec.std]).view(1, 3, 1, 1))
        self.register_buffer("shift", torch.tensor([-m / s for m, s in zip(spec.mean, spec.std)])
                             .view(1, 3, 1, 1))

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        x = image.permute(0, 3, 1, 2).float()
        if self.flip_to_rgb:
            x = x.flip(1)
        x = x * self.scale + self.shift  # (x - mean) / std as one Mul and one Add
        logits = self.net(x)
        logits = F.interpolate(logits, size=image.shape[1:3], mode="bilinear", align_corners=True)
        return logits.argmax(1).to(torch.uint8), logits


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


def export_fused_onnx(net: PSPNet, spec: ModelSpec, path: str | Path, height: int, width: int,
                      dynamic: bool = False) -> Path:
    """Write the fused graph (outputs `labels` and `logits`) to `path`.

    Static shapes go through the TorchScript exporter (fast, and what TensorRT's parser has
    seen most); dynamic H/W needs the dynamo exporter, because the pyramid pooling's window
    bounds must stay symbolic.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fused = FusedSegmenter(net.eval(), spec).eval()
    sample = torch.randint(0, 256, (1, height, width, 3), dtype=torch.uint8)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if dynamic:
            dims = {INPUT_NAME: {1: torch.export.Dim("height", min=MIN_SIDE, max=8192),
                              2: torch.export.Dim("width", min=MIN_SIDE, max=8192)}}
            with contextlib.redirect_stdout(io.StringIO()):
                program = torch.onnx.export(fused, (sample,), dynamo=True, dynamic_shapes=dims,
                                            input_names=[INPUT_NAME],
                                            output_names=[LABELS_NAME, LOGITS_NAME],
                                            opset_version=OPSET, optimize=True)
            program.save(str(path))
        else:
            torch.onnx.export(fused, (sample,), str(path), dynamo=False, opset_version=OPSET,
                              input_names=[INPUT_NAME], output_names=[LABELS_NAME, LOGITS_NAME],
                              do_constant_folding=True)
    return path


def torch_reference(net: PSPNet, spec: ModelSpec, frames: list) -> list[tuple]:
    """(labels, logits) numpy pairs from the very module that was exported."""
    fused = FusedSegmenter(net.eval(), spec).eval()
    out = []
    with torch.no_grad():
        for frame in frames:
            labels, logits = fused(torch.from_numpy(frame[None]))
            out.append((labels.numpy()[0], logits.numpy()[0]))
    return out
