"""PSPNet (Zhao et al., CVPR 2017) with hszhao/semseg's module names, so its checkpoints load as-is."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pspnet.resnet import DilatedResNet

if TYPE_CHECKING:
    from pspnet.zoo import ModelSpec


def adaptive_avg_pool(x: Tensor, bins: int) -> Tensor:
    """AdaptiveAvgPool2d that exports to ONNX for any (even symbolic) feature size.

    The ONNX exporter refuses adaptive pooling when the map does not divide by the bin; the
    window bounds PyTorch uses (floor(i*n/b) .. ceil((i+1)*n/b)) are then taken as slices and
    means, row bands first, then columns, which is exact because every window is a rectangle.
    A map that divides exports as AveragePool: the slices copy the feature map (at 713x713,
    eleven float copies of bands of a 2048x90x90 map, ~250 MB that OpenVINO keeps allocated).
    """
    h, w = x.shape[-2], x.shape[-1]
    if torch.jit.is_tracing():  # the static-shape exporter traces sizes as tensors; they are fixed
        h, w = int(h), int(w)
    if isinstance(h, int) and isinstance(w, int) and h % bins == 0 and w % bins == 0:
        return F.adaptive_avg_pool2d(x, bins)
    # Only non-negative integer division: ONNX's Div truncates where Python's // floors.
    rows = [x[:, :, (i * h) // bins: ((i + 1) * h + bins - 1) // bins].mean(2, keepdim=True)
            for i in range(bins)]
    x = torch.cat(rows, 2)
    cols = [x[:, :, :, (j * w) // bins: ((j + 1) * w + bins - 1) // bins].mean(3, keepdim=True)
            for j in range(bins)]
    return torch.cat(cols, 3)


class PoolBranch(nn.Sequential):
    """One pyramid level: semseg's `Sequential(AdaptiveAvgPool2d, conv, BN, ReLU)` key layout."""

    def __init__(self, bins: int, cin: int, cout: int) -> None:
        super().__init__(nn.Identity(), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))
        self.bins = bins

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(adaptive_avg_pool(x, self.bins))


class PPM(nn.Module):
    def __init__(self, cin: int, cout: int, bins: Sequence[int], caffe_order: bool = False) -> None:
        super().__init__()
        self.features = nn.ModuleList(PoolBranch(b, cin, cout) for b in bins)
        self.caffe_order = caffe_order  # the Keras/Caffe baselines concat [x, pool6, pool3, pool2, pool1]

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        pooled = [F.interpolate(f(x), size, mode="bilinear", align_corners=True) for f in self.features]
        if self.caffe_order:
            pooled.reverse()
        return torch.cat([x, *pooled], 1)


def _head(cin: int, mid: int, classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
        nn.Dropout2d(dropout), nn.Conv2d(mid, classes, 1))


class PSPNet(nn.Module):
    """Dilated ResNet + pyramid pooling; `forward` returns stride-8 logits (no final resize).

    The caller decides where logits are resized: the training loss at label size, the fused
    export at the input size, so one module serves both without a zoom_factor switch.
    """

    def __init__(self, depth: int = 50, classes: int = 19, bins: Sequence[int] = (1, 2, 3, 6),
                 width: float = 1.0, dropout: float = 0.1, aux: bool = True,
                 stride_on_1x1: bool = False, caffe_ppm_order: bool = False,
                 tf_same_padding: bool = False) -> None:
        super().__init__()
        backbone = DilatedResNet(depth, width, stride_on_1x1, tf_same_padding)
        self.layer0, self.layer1, self.layer2 = backbone.layer0, backbone.layer1, backbone.layer2
        self.layer3, self.layer4 = backbone.layer3, backbone.layer4
        fea = backbone.out_channels
        self.ppm = PPM(fea, fea // len(bins), bins, caffe_ppm_order)
        head_mid = max(16, fea // 4)  # 512 for R50/101 as in semseg
        self.cls = _head(fea * 2, head_mid, classes, dropout)
        self.aux = _head(backbone.aux_channels, max(8, head_mid // 2), classes, dropout) if aux else None
        self.classes = classes

    def features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.layer2(self.layer1(self.layer0(x)))
        x3 = self.layer3(x)
        return x3, self.layer4(x3)

    def forward(self, x: Tensor) -> Tensor:
        return self.cls(self.ppm(self.features(x)[1]))

    def forward_with_aux(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        x3, x4 = self.features(x)
        main = self.cls(self.ppm(x4))
        return main, (self.aux(x3) if self.aux is not None else None)

    def drop_aux(self) -> PSPNet:
        """Inference never uses the auxiliary head; dropping it saves 2.4 M parameters on R50."""
        self.aux = None
        return self


def output_size(size: int) -> int:
    """Feature-map side for an input side: three stride-2 stages with semseg's padding."""
    for _ in range(3):
        size = (size - 1) // 2 + 1
    return size


def create_model(spec: ModelSpec, aux: bool = False) -> PSPNet:
    """The network a zoo entry describes (random weights; pspnet.build.load_model fills them)."""
    return PSPNet(spec.depth, spec.num_classes, spec.bins, spec.width, aux=aux,
                  stride_on_1x1=spec.stride_on_1x1, caffe_ppm_order=spec.caffe_ppm_order,
                  tf_same_padding=spec.tf_same_padding)
