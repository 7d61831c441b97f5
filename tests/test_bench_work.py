"""Work per frame (GMAC) that the scaling benchmark divides by latency."""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.work import gmac_per_frame, gmac_per_second
from pspnet.build import create_model
from pspnet.zoo import get_spec


def _conv_macs_by_hooks(model: str, height: int, width: int) -> float:
    """An independent count: every Conv2d's output elements x (in/groups x kh x kw), on real tensors."""
    net = create_model(get_spec(model)).eval()
    total = 0

    def hook(module: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += output.numel() * (module.in_channels // module.groups) * kh * kw

    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(hook)
    with torch.no_grad():
        net(torch.zeros(1, 3, height, width))
    return total / 1e9


def test_gmac_matches_a_count_of_every_convolution():
    counted = gmac_per_frame("demo", 120, 240)
    assert abs(counted - _conv_macs_by_hooks("demo", 120, 240)) / counted < 0.01


def test_gmac_grows_with_pixels_and_depth():
    small, big = gmac_per_frame("demo", 120, 240), gmac_per_frame("demo", 240, 480)
    assert 3.5 < big / small < 4.5
    r18, r50 = gmac_per_frame("pspnet18_cityscapes", 97, 97), gmac_per_frame("pspnet50_cityscapes", 97, 97)
    assert r50 > 2 * r18


def test_gmac_per_second():
    assert gmac_per_second(6.0, 30.0) == 200.0
    assert gmac_per_second(6.0, None) is None
