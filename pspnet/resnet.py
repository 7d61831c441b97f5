"""Dilated ResNet backbones with semseg's deep stem and state_dict names.

Output stride 8: layer3 and layer4 keep their resolution and dilate their 3x3 convs (2 and 4),
as in hszhao/semseg, so released checkpoints load key for key.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def tf_same_pads(size: int, kernel: int = 3, stride: int = 2) -> tuple[int, int]:
    """TensorFlow's 'SAME' padding (before, after): output ceil(size/stride), the odd pixel after."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _same_stride2(x: Tensor, full: Tensor) -> Tensor:
    """Every 2nd row/column of a stride-1, pad-1, 3x3 result: TensorFlow's 'SAME' stride-2 grid.

    TF pads (1, 1) at odd sizes (outputs centred on pixels 0, 2, ...) and (0, 1) at even sizes
    (centred on 1, 3, ...). Taking the stride-1 result at those centres is exact, keeps the padding
    inside the Conv/MaxPool (a static Pad of traced sizes would hide the shapes from the ONNX
    exporter), and costs only the stem's first conv and pool at full resolution (~0.1 % of PSPNet).
    """
    h, w = x.shape[-2], x.shape[-1]
    if torch.jit.is_tracing():  # the static-shape exporter traces sizes as tensors; they are fixed
        h, w = int(h), int(w)
    return full[..., 1 - h % 2::2, 1 - w % 2::2]


class SameConv2d(nn.Conv2d):
    """3x3 stride-2 Conv2d on TensorFlow's 'SAME' grid (the TF seed's stem); same parameters/names."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(cin, cout, 3, stride=1, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return _same_stride2(x, super().forward(x))


class SameMaxPool2d(nn.MaxPool2d):
    """3x3 stride-2 MaxPool2d on TensorFlow's 'SAME' grid (padding ignored, as TF ignores it)."""

    def __init__(self) -> None:
        super().__init__(3, stride=1, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return _same_stride2(x, super().forward(x))


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, stride_on_1x1: bool = False) -> None:
        super().__init__()
        del stride_on_1x1  # basic blocks have no 1x1 reduce conv
        self.conv1 = _conv3x3(inplanes, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision-style bottleneck; `stride_on_1x1` gives the Caffe placement the Keras baseline uses."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, stride_on_1x1: bool = False) -> None:
        super().__init__()
        s1, s3 = (stride, 1) if stride_on_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, stride=s1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, s3, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


BLOCKS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], list[int]]] = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}


class DilatedResNet(nn.Module):
    """Backbone exposing semseg's `layer0..layer4`; `width` scales every channel count."""

    def __init__(self, depth: int = 50, width: float = 1.0, stride_on_1x1: bool = False,
                 tf_same_padding: bool = False) -> None:
        super().__init__()
        if depth not in BLOCKS:
            raise ValueError(f"ResNet depth must be one of {sorted(BLOCKS)}, got {depth}")
        block, counts = BLOCKS[depth]
        c = [max(8, round(ch * width)) for ch in (64, 128, 256, 512)]
        stem = [c[0], c[0], c[1]]
        self.layer0 = nn.Sequential(
            _conv3x3(3, stem[0], stride=2), nn.BatchNorm2d(stem[0]), nn.ReLU(inplace=True),
            _conv3x3(stem[0], stem[1]), nn.BatchNorm2d(stem[1]), nn.ReLU(inplace=True),
            _conv3x3(stem[1], stem[2]), nn.BatchNorm2d(stem[2]), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        if tf_same_padding:  # the TF seed: 'SAME' on the stride-2 conv and pool (asymmetric at even sizes)
            self.layer0[0] = SameConv2d(3, stem[0])
            self.layer0[9] = SameMaxPool2d()
        self.inplanes = stem[2]
        self.layer1 = self._make_layer(block, c[0], counts[0], 1, 1, stride_on_1x1)
        self.layer2 = self._make_layer(block, c[1], counts[1], 2, 1, stride_on_1x1)
        self.layer3 = self._make_layer(block, c[2], counts[2], 1, 2, stride_on_1x1)
        self.layer4 = self._make_layer(block, c[3], counts[3], 1, 4, stride_on_1x1)
        self.out_channels = c[3] * block.expansion
        self.aux_channels = c[2] * block.expansion
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], planes: int, count: int,
                    stride: int, dilation: int, stride_on_1x1: bool) -> nn.Sequential:
        out = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
        layers = [block(self.inplanes, planes, stride, dilation, downsample, stride_on_1x1)]
        self.inplanes = out
        layers += [block(out, planes, 1, dilation, None, stride_on_1x1) for _ in range(1, count)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.layer2(self.layer1(self.layer0(x)))
        x3 = self.layer3(x)
        return x3, self.layer4(x3)
