"""The PyTorch PSPNet matches hszhao/semseg: parameter counts, key names, output stride."""

from __future__ import annotations

import pytest
import torch

from pspnet.model import PSPNet, adaptive_avg_pool, output_size


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("depth", "classes", "without_aux", "with_aux", "keys"), [
    (50, 150, 46_782_550, 49_180_908, 370),
    (50, 19, 46_715_347, 49_080_038, 370),
    (101, 19, 65_707_475, 68_072_166, 676),
    (101, 150, 65_774_678, 68_173_036, 676),
])
def test_parameter_and_key_counts_equal_semseg(depth, classes, without_aux, with_aux, keys):
    model = PSPNet(depth, classes)
    assert n_params(model) == with_aux
    assert len(model.state_dict()) == keys
    assert n_params(model.drop_aux()) == without_aux


def test_state_dict_uses_semseg_names():
    keys = set(PSPNet(50, 19).state_dict())
    for key in ("layer0.0.weight", "layer0.1.running_mean", "layer0.3.weight", "layer0.4.weight",
                "layer0.6.weight", "layer0.7.num_batches_tracked", "layer1.0.downsample.0.weight",
                "layer3.5.conv2.weight", "layer4.2.bn3.bias", "ppm.features.3.1.weight",
                "ppm.features.0.2.running_var", "cls.0.weight", "cls.1.weight", "cls.4.bias",
                "aux.0.weight", "aux.4.bias"):
        assert key in keys, key


def test_output_stride_8_and_dilations():
    model = PSPNet(50, 19)
    assert model.layer3[0].conv2.dilation == (2, 2) and model.layer3[0].conv2.stride == (1, 1)
    assert model.layer4[1].conv2.dilation == (4, 4)
    assert model.layer3[0].downsample[0].stride == (1, 1)
    small = PSPNet(18, 5, width=0.25).eval()
    with torch.no_grad():
        out = small(torch.zeros(1, 3, 97, 129))
    assert out.shape == (1, 5, output_size(97), output_size(129)) == (1, 5, 13, 17)


@pytest.mark.parametrize("size", [(12, 24), (13, 25), (7, 11)])
@pytest.mark.parametrize("bins", [1, 2, 3, 6])
def test_exact_pooling_equals_adaptive_pooling(size, bins):
    x = torch.randn(2, 3, *size)
    ours = adaptive_avg_pool(x, bins)
    torch.testing.assert_close(ours, torch.nn.functional.adaptive_avg_pool2d(x, bins))


def test_caffe_options_change_the_network():
    assert PSPNet(50, 19, stride_on_1x1=True).layer2[0].conv1.stride == (2, 2)
    assert PSPNet(50, 19).layer2[0].conv2.stride == (2, 2)
