"""The 2017 baseline's Keras `.h5` weights load into our PSPNet and compute what the Keras graph computes.

The test writes its own `.h5` in the baseline's layout (h5py only, shuffled groups, byte-string
`weight_names`, HWIO kernels) from a small random PSPNet, and checks the imported model against
both that source model and an independent NHWC numpy forward of the baseline's Keras graph ('same'
padding as TensorFlow computes it, explicit zero padding + dilation, fixed AveragePooling2D
kernels, the baseline's concat order, align_corners resizes). The numpy forward reads the Keras
layers by name, so a mapping bug shared by the writer and the importer still shows up.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pspnet.errors import CheckpointError
from pspnet.keras_import import keras_spec_from_h5, load_keras_h5, model_from_keras_h5
from pspnet.model import PSPNet, output_size
from pspnet.zoo import KERAS_MEAN_BGR, REGISTRY

WIDTH = 0.125  # channels 8/16/32/64, 2048 -> 256 features: a full R50 layout in ~1 M parameters
CLASSES = 19
EPS = 1e-5  # the baseline's BatchNormalization(epsilon=1e-5)
BASELINE_POOLS = {473: {1: 60, 2: 30, 3: 20, 6: 10}, 713: {1: 90, 2: 45, 3: 30, 6: 15}}  # interp_block


# --------------------------------------------------------------------------- the baseline's layout
def seed_model(depth: int = 50, classes: int = CLASSES, seed: int = 0) -> PSPNet:
    """A random PSPNet with the Caffe conventions and non-trivial BN statistics."""
    torch.manual_seed(seed)
    model = PSPNet(depth, classes, width=WIDTH, aux=False, stride_on_1x1=True, caffe_ppm_order=True)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5 + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
        model.cls[4].bias.copy_(torch.randn(classes, generator=g))
    return model.eval()


def keras_layers_from_model(model: PSPNet) -> dict[str, dict[str, np.ndarray]]:
    """The baseline's layer names (layers_builder.py) with HWIO kernels, written out by hand."""
    sd = {k: v.numpy().astype(np.float32) for k, v in model.state_dict().items()}
    out: dict[str, dict[str, np.ndarray]] = {}

    def conv(name: str, key: str, bias: bool = False) -> None:
        out[name] = {"kernel": sd[f"{key}.weight"].transpose(2, 3, 1, 0)}  # OIHW -> HWIO
        if bias:
            out[name]["bias"] = sd[f"{key}.bias"]

    def bn(name: str, key: str) -> None:
        out[name] = {"gamma": sd[f"{key}.weight"], "beta": sd[f"{key}.bias"],
                     "moving_mean": sd[f"{key}.running_mean"], "moving_variance": sd[f"{key}.running_var"]}

    for name, i in (("conv1_1_3x3_s2", 0), ("conv1_2_3x3", 3), ("conv1_3_3x3", 6)):
        conv(name, f"layer0.{i}")
        bn(f"{name}_bn", f"layer0.{i + 1}")
    for level, stage in ((2, model.layer1), (3, model.layer2), (4, model.layer3), (5, model.layer4)):
        for i in range(len(stage)):
            ours = f"layer{level - 1}.{i}"
            for part, (c, b) in {"1x1_reduce": ("conv1", "bn1"), "3x3": ("conv2", "bn2"),
                                 "1x1_increase": ("conv3", "bn3")}.items():
                conv(f"conv{level}_{i + 1}_{part}", f"{ours}.{c}")
                bn(f"conv{level}_{i + 1}_{part}_bn", f"{ours}.{b}")
            if i == 0:
                conv(f"conv{level}_1_1x1_proj", f"{ours}.downsample.0")
                bn(f"conv{level}_1_1x1_proj_bn", f"{ours}.downsample.1")
    for k, level in enumerate((1, 2, 3, 6)):
        conv(f"conv5_3_pool{level}_conv", f"ppm.features.{k}.1")
        bn(f"conv5_3_pool{level}_conv_bn", f"ppm.features.{k}.2")
    conv("conv5_4", "cls.0")
    bn("conv5_4_bn", "cls.1")
    conv("conv6", "cls.4", bias=True)
    return out


def write_seed_h5(path: Path, layers: dict[str, dict[str, np.ndarray]], seed: int = 0,
                  root: str = "", weight_names: bool = True) -> Path:
    """A Keras 2 `save_weights` file: shuffled groups, byte-string names, weightless layers too.

    `root="model_weights"` gives the layout of a full `model.save`; `weight_names=False` the
    attribute-less groups some converters write.
    """
    names = [*layers, "input_1", "activation_1", "max_pooling2d_1", "average_pooling2d_1", "dropout_1"]
    random.Random(seed).shuffle(names)
    with h5py.File(path, "w") as handle:
        f = handle.create_group(root) if root else handle
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.1.5"
        for name in names:
            group = f.create_group(name)
            weights = layers.get(name, {})
            full = [f"{name}/{w}:0" for w in weights]
            if weight_names:
                group.attrs["weight_names"] = np.array([n.encode() for n in full], dtype="S") if full \
                    else np.array([], dtype="S1")
            for wname, value in zip(full, weights.values()):
                group.create_dataset(wname, data=value)
    return path


# --------------------------------------------------------------------------- Keras graph in numpy
def tf_same_pads(n: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding: output ceil(n/s), the odd pixel (if any) padded after."""
    total = max((math.ceil(n / s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _pad_same(x: np.ndarray, k: int, s: int, value: float = 0.0) -> np.ndarray:
    (t, b), (lft, r) = tf_same_pads(x.shape[1], k, s), tf_same_pads(x.shape[2], k, s)
    return np.pad(x, ((0, 0), (t, b), (lft, r), (0, 0)), constant_values=value)


def np_conv(x: np.ndarray, kernel: np.ndarray, stride: int = 1, dilation: int = 1) -> np.ndarray:
    """Valid cross-correlation, NHWC input, HWIO kernel (TensorFlow's conv2d)."""
    kh, kw, _, cout = kernel.shape
    oh = (x.shape[1] - (kh - 1) * dilation - 1) // stride + 1
    ow = (x.shape[2] - (kw - 1) * dilation - 1) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, cout))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i * dilation: i * dilation + (oh - 1) * stride + 1: stride,
                      j * dilation: j * dilation + (ow - 1) * stride + 1: stride]
            out += np.tensordot(patch, kernel[i, j], axes=([3], [0]))  # one BLAS gemm
    return out


def np_bn(x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    return (x - w["moving_mean"]) / np.sqrt(w["moving_variance"] + EPS) * w["gamma"] + w["beta"]


def np_resize_align_corners(x: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """Bilinear resize with align_corners=True (the baseline's Interp layer), NHWC."""
    def axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.arange(n_out) * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo

    lo, hi, f = axis_weights(x.shape[1], oh)
    x = x[:, lo] * (1 - f)[None, :, None, None] + x[:, hi] * f[None, :, None, None]
    lo, hi, f = axis_weights(x.shape[2], ow)
    return x[:, :, lo] * (1 - f)[None, None, :, None] + x[:, :, hi] * f[None, None, :, None]


def np_avg_pool(x: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """AveragePooling2D(kernel, strides=kernel), 'valid'."""
    n, h, w, c = x.shape
    oh, ow = h // kh, w // kw
    return x[:, :oh * kh, :ow * kw].reshape(n, oh, kh, ow, kw, c).mean((2, 4))


def np_ppm(res: np.ndarray, layers: dict, pools: dict[int, tuple[int, int]]) -> np.ndarray:
    """interp_block x4, concatenated [res, pool6, pool3, pool2, pool1] as the baseline does."""
    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    branch = {}
    for level, (kh, kw) in pools.items():
        p = np_avg_pool(res, kh, kw)
        p = relu(np_bn(np_conv(p, layers[f"conv5_3_pool{level}_conv"]["kernel"]),
                       layers[f"conv5_3_pool{level}_conv_bn"]))
        branch[level] = np_resize_align_corners(p, res.shape[1], res.shape[2])
    return np.concatenate([res, branch[6], branch[3], branch[2], branch[1]], -1)


def keras_forward(layers: dict, x: np.ndarray, pools: dict[int, tuple[int, int]] | None = None) -> np.ndarray:
    """The baseline's graph (layers_builder.py) up to conv6, NHWC float64: stride-8 logits."""
    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    x = x.astype(np.float64)
    for name, stride in (("conv1_1_3x3_s2", 2), ("conv1_2_3x3", 1), ("conv1_3_3x3", 1)):
        x = np_conv(_pad_same(x, 3, stride), layers[name]["kernel"], stride)
        x = relu(np_bn(x, layers[f"{name}_bn"]))
    x = _pad_same(x, 3, 2, -np.inf)  # MaxPooling2D((3, 3), padding='same', strides=(2, 2))
    oh, ow = (x.shape[1] - 3) // 2 + 1, (x.shape[2] - 3) // 2 + 1
    x = np.max([x[:, i: i + 2 * oh - 1: 2, j: j + 2 * ow - 1: 2] for i in range(3) for j in range(3)], 0)
    for level, pad, stride in ((2, 1, 1), (3, 1, 2), (4, 2, 1), (5, 4, 1)):
        count = sum(1 for n in layers if n.startswith(f"conv{level}_") and n.endswith("_1x1_reduce"))
        for i in range(1, count + 1):
            pre, s = f"conv{level}_{i}", stride if i == 1 else 1
            x = relu(x)  # residual_short/residual_empty start with Activation('relu')
            a = np_conv(x, layers[f"{pre}_1x1_reduce"]["kernel"], s)
            a = relu(np_bn(a, layers[f"{pre}_1x1_reduce_bn"]))
            a = np.pad(a, ((0, 0), (pad, pad), (pad, pad), (0, 0)))  # ZeroPadding2D(pad)
            a = relu(np_bn(np_conv(a, layers[f"{pre}_3x3"]["kernel"], 1, pad), layers[f"{pre}_3x3_bn"]))
            a = np_bn(np_conv(a, layers[f"{pre}_1x1_increase"]["kernel"]), layers[f"{pre}_1x1_increase_bn"])
            b = np_bn(np_conv(x, layers[f"{pre}_1x1_proj"]["kernel"], s), layers[f"{pre}_1x1_proj_bn"]) \
                if i == 1 else x
            x = a + b
    x = relu(x)
    if pools is None:  # the baseline's kernel_strides_map generalised: kernel = feature side / level
        pools = {b: (x.shape[1] // b, x.shape[2] // b) for b in (1, 2, 3, 6)}
    x = np_ppm(x, layers, pools)
    x = relu(np_bn(np_conv(_pad_same(x, 3, 1), layers["conv5_4"]["kernel"]), layers["conv5_4_bn"]))
    return np_conv(x, layers["conv6"]["kernel"]) + layers["conv6"]["bias"]  # Dropout: identity


def keras_input(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A BGR uint8 image minus the baseline's BGR mean: what both graphs are fed."""
    img = np.random.default_rng(seed).integers(0, 256, (1, h, w, 3)).astype(np.float64)
    return img - np.array(KERAS_MEAN_BGR)


def torch_logits(model: PSPNet, x_nhwc: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = model(torch.from_numpy(x_nhwc).float().permute(0, 3, 1, 2).contiguous())
    return out.permute(0, 2, 3, 1).double().numpy()


def rel_err(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(a - ref).max() / max(1.0, np.abs(ref).max()))


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def source() -> PSPNet:
    return seed_model()


@pytest.fixture(scope="module")
def layers(source: PSPNet) -> dict[str, dict[str, np.ndarray]]:
    return keras_layers_from_model(source)


@pytest.fixture(scope="module")
def h5_path(tmp_path_factory: pytest.TempPathFactory, layers: dict) -> Path:
    return write_seed_h5(tmp_path_factory.mktemp("keras") / "pspnet50_small.h5", layers)


@pytest.fixture(scope="module")
def imported(h5_path: Path) -> PSPNet:
    model = PSPNet(50, CLASSES, width=WIDTH, aux=False, stride_on_1x1=True, caffe_ppm_order=True)
    load_keras_h5(model, h5_path)
    return model.eval()


def _write_variant(tmp_path: Path, layers: dict, edit) -> Path:
    copy = {k: dict(v) for k, v in layers.items()}
    edit(copy)
    return write_seed_h5(tmp_path / "variant.h5", copy, seed=1)


# --------------------------------------------------------------------------- equivalence
def test_import_reproduces_source_and_keras_graph(source: PSPNet, imported: PSPNet, layers: dict) -> None:
    """89x137 is odd (symmetric 'same' pads) and gives a 12x18 map that the fixed pools divide."""
    x = keras_input(89, 137)
    ours, src = torch_logits(imported, x), torch_logits(source, x)
    assert ours.shape == (1, 12, 18, CLASSES)
    assert np.abs(ours - src).max() <= 1e-6  # same tensors, same ops
    ref = keras_forward(layers, x)
    assert rel_err(ours, ref) < 1e-5, rel_err(ours, ref)
    assert (ours.argmax(-1) == ref.argmax(-1)).mean() > 0.99


def test_import_at_seed_size_473_with_the_seed_pool_kernels(imported: PSPNet, layers: dict) -> None:
    """The baseline's own 473 path: 473->237->119->60, AveragePooling2D 60/30/20/10, 8x resize."""
    x = keras_input(473, 473, seed=3)
    ours = torch_logits(imported, x)
    ref = keras_forward(layers, x, {b: (k, k) for b, k in BASELINE_POOLS[473].items()})
    assert ours.shape == ref.shape == (1, 60, 60, CLASSES)
    assert rel_err(ours, ref) < 1e-5, rel_err(ours, ref)
    # the baseline's head: Interp to the input size (align_corners) then softmax/argmax
    up_ref = np_resize_align_corners(ref, 473, 473)
    up = torch.nn.functional.interpolate(torch.from_numpy(ours).permute(0, 3, 1, 2), (473, 473),
                                         mode="bilinear", align_corners=True).permute(0, 2, 3, 1).numpy()
    assert rel_err(up, up_ref) < 1e-5
    assert (up.argmax(-1) == up_ref.argmax(-1)).mean() > 0.99


@pytest.mark.parametrize("size", [473, 713])
def test_ppm_equals_the_seed_fixed_pools(imported: PSPNet, layers: dict, size: int) -> None:
    """Our adaptive pools + caffe concat order == the baseline's fixed AvgPool kernels at 473 and 713."""
    side = output_size(size)
    assert side == math.ceil(size / 8) == BASELINE_POOLS[size][1]  # the baseline's feature_map_size
    assert all(side // b == k for b, k in BASELINE_POOLS[size].items())
    feat = np.maximum(np.random.default_rng(size).normal(size=(1, side, side, 256)), 0)
    with torch.no_grad():
        ours = imported.ppm(torch.from_numpy(feat).float().permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    ref = np_ppm(feat, layers, {b: (k, k) for b, k in BASELINE_POOLS[size].items()})
    assert rel_err(ours, ref) < 1e-5


@pytest.mark.parametrize("size", [473, 713])
def test_keras_same_padding_is_our_symmetric_pad_at_seed_sizes(size: int) -> None:
    """Stem conv and pool1 ('same', stride 2) pad 1 on each side at 473/713; the reduce is 'valid'."""
    n = size
    for _ in range(2):
        assert tf_same_pads(n, 3, 2) == (1, 1)
        n = math.ceil(n / 2)
    assert (n - 1) // 2 + 1 == output_size(size)  # conv3_1's 1x1 stride-2 reduce/proj, no padding
    assert tf_same_pads(output_size(size), 3, 1) == (1, 1)  # conv5_4
    assert torch.nn.BatchNorm2d(4).eps == EPS


# --------------------------------------------------------------------------- spec inference
def test_spec_from_small_file(h5_path: Path) -> None:
    spec = keras_spec_from_h5(h5_path)
    assert (spec.depth, spec.num_classes, spec.width, spec.label_set) == (50, 19, WIDTH, "cityscapes")
    assert spec.channel_order == "BGR" and spec.mean == KERAS_MEAN_BGR and spec.std == (1.0, 1.0, 1.0)
    assert spec.stride_on_1x1 and spec.caffe_ppm_order and spec.input_size == (713, 713)
    model, spec2 = model_from_keras_h5(h5_path)
    assert spec2 == spec and not model.training


def _header_file(path: Path, conv4_blocks: int, classes: int) -> Path:
    """Only what spec inference reads: conv4_*_1x1_reduce kernels and conv6 (shapes, no data)."""
    with h5py.File(path, "w") as f:
        names = [f"conv4_{i}_1x1_reduce" for i in range(1, conv4_blocks + 1)] + ["conv6"]
        f.attrs["layer_names"] = np.array([n.encode() for n in reversed(names)])
        for name in names:
            shape = (1, 1, 512, classes) if name == "conv6" else (1, 1, 1024, 256)
            f.create_group(name).attrs["weight_names"] = np.array([f"{name}/kernel:0".encode()])
            f.create_dataset(f"{name}/{name}/kernel:0", shape=shape, dtype="f4")
    return path


@pytest.mark.parametrize(("blocks", "classes", "name"), [(6, 150, "pspnet50_ade20k_keras"),
                                                          (23, 19, "pspnet101_cityscapes_keras"),
                                                          (23, 21, "pspnet101_voc2012_keras")])
def test_spec_from_seed_headers(tmp_path: Path, blocks: int, classes: int, name: str) -> None:
    spec = keras_spec_from_h5(_header_file(tmp_path / "h.h5", blocks, classes))
    assert spec is REGISTRY[name]
    assert spec.depth == (101 if blocks == 23 else 50) and spec.num_classes == classes
    assert spec.input_size == ((713, 713) if classes == 19 else (473, 473))
    assert spec.channel_order == "BGR" and spec.std == (1.0, 1.0, 1.0)
    assert spec.stride_on_1x1 and spec.caffe_ppm_order


def test_spec_refuses_unknown_depth_but_takes_any_class_count(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="7 conv4"):
        keras_spec_from_h5(_header_file(tmp_path / "a.h5", 7, 19))
    spec = keras_spec_from_h5(_header_file(tmp_path / "b.h5", 6, 3))  # a transfer-learned 3-class model
    assert spec.num_classes == 3 and spec.label_set == "generic-3" and spec.name == "pspnet50_generic_3_keras"
    assert spec.channel_order == "BGR" and spec.stride_on_1x1 and not spec.tf_same_padding


# --------------------------------------------------------------------------- strictness
def _fresh() -> PSPNet:
    return PSPNet(50, CLASSES, width=WIDTH, aux=False, stride_on_1x1=True, caffe_ppm_order=True)


def test_missing_layer_is_named(tmp_path: Path, layers: dict) -> None:
    path = _write_variant(tmp_path, layers, lambda d: d.pop("conv4_3_3x3_bn"))
    with pytest.raises(CheckpointError, match=r"missing layers \(1\): conv4_3_3x3_bn"):
        load_keras_h5(_fresh(), path)


def test_extra_layer_and_extra_weight_are_named(tmp_path: Path, layers: dict) -> None:
    def edit(d: dict) -> None:
        d["conv7"] = {"kernel": np.zeros((1, 1, 64, 19), np.float32)}
        d["conv5_4"]["bias"] = np.zeros(64, np.float32)

    path = _write_variant(tmp_path, layers, edit)
    with pytest.raises(CheckpointError) as info:
        load_keras_h5(_fresh(), path)
    assert "unused layers (1): conv7" in str(info.value)
    assert "unused weights (1): conv5_4/bias" in str(info.value)


def test_missing_weight_and_wrong_shape_are_named(tmp_path: Path, layers: dict) -> None:
    def edit(d: dict) -> None:
        del d["conv2_1_1x1_proj_bn"]["moving_variance"]
        d["conv6"] = {"kernel": np.zeros((1, 1, 64, 21), np.float32), "bias": np.zeros(21, np.float32)}

    path = _write_variant(tmp_path, layers, edit)
    with pytest.raises(CheckpointError) as info:
        load_keras_h5(_fresh(), path)
    msg = str(info.value)
    assert "missing weights (1): conv2_1_1x1_proj_bn/moving_variance" in msg
    assert "conv6/kernel: expected (1, 1, 64, 19)" in msg and "found (1, 1, 64, 21)" in msg
    assert "conv6/bias: expected (19,)" in msg and "found (21,)" in msg


def test_failed_load_leaves_model_untouched(tmp_path: Path, layers: dict) -> None:
    path = _write_variant(tmp_path, layers, lambda d: d.pop("conv6"))
    model = _fresh()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match="conv6"):
        load_keras_h5(model, path)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_depth_mismatch_lists_first_names_and_counts(h5_path: Path) -> None:
    model = PSPNet(101, CLASSES, width=WIDTH, aux=False, stride_on_1x1=True, caffe_ppm_order=True)
    with pytest.raises(CheckpointError) as info:
        load_keras_h5(model, h5_path)
    msg = str(info.value)
    assert "missing layers (102): conv4_7_1x1_reduce" in msg and "... and 92 more" in msg
    assert "the file holds PSPNet50 with 19 classes (cityscapes) at width 0.125" in msg


def test_mismatch_names_the_zoo_entry_that_fits(tmp_path: Path) -> None:
    path = _header_file(tmp_path / "ade.h5", 6, 150)  # a full-width pspnet50_ade20k.h5 header
    with pytest.raises(CheckpointError, match="use --model pspnet50_ade20k_keras"):
        load_keras_h5(_fresh(), path)


def test_model_without_caffe_conventions_or_with_aux_is_refused(h5_path: Path) -> None:
    with pytest.raises(CheckpointError, match="the stride on the 1x1 convolution, the Caffe pyramid-pooling "
                                              "order"):
        load_keras_h5(PSPNet(50, CLASSES, width=WIDTH, aux=False), h5_path)
    aux = PSPNet(50, CLASSES, width=WIDTH, aux=True, stride_on_1x1=True, caffe_ppm_order=True)
    with pytest.raises(CheckpointError, match=r"auxiliary head.*aux\.0\.weight"):
        load_keras_h5(aux, h5_path)


def test_not_hdf5_truncated_and_missing_files(tmp_path: Path, h5_path: Path) -> None:
    text = tmp_path / "weights.h5"
    text.write_text("<html>404 Not Found</html>")
    with pytest.raises(CheckpointError, match="not a readable HDF5 file"):
        load_keras_h5(_fresh(), text)
    cut = tmp_path / "cut.h5"
    data = h5_path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=str(cut.name)):
        load_keras_h5(_fresh(), cut)
    with pytest.raises(CheckpointError, match="does not exist"):
        keras_spec_from_h5(tmp_path / "absent.h5")
    empty = tmp_path / "empty.h5"
    h5py.File(empty, "w").close()
    with pytest.raises(CheckpointError, match="holds no Keras layer weights"):
        keras_spec_from_h5(empty)


@pytest.mark.parametrize(("root", "weight_names"), [("model_weights", True), ("", False)])
def test_full_model_files_and_files_without_weight_names(tmp_path: Path, layers: dict, source: PSPNet,
                                                         root: str, weight_names: bool) -> None:
    path = write_seed_h5(tmp_path / "m.h5", layers, root=root, weight_names=weight_names)
    model = _fresh()
    load_keras_h5(model, path)
    own, src = model.state_dict(), source.state_dict()
    assert all(torch.equal(own[k], src[k]) for k in own if not k.endswith("num_batches_tracked"))


def test_num_batches_tracked_follows_pytorch_precedent(imported: PSPNet) -> None:
    counters = [v for k, v in imported.state_dict().items() if k.endswith("num_batches_tracked")]
    assert counters and all(int(c) == 0 for c in counters)


# --------------------------------------------------------------------------- end to end
def test_h5_imported_model_exports_to_fused_onnx(tmp_path: Path, h5_path: Path) -> None:
    """`.h5` -> spec + model -> fused ONNX (uint8 BGR in) whose labels match PyTorch's."""
    export = pytest.importorskip("build_engine.export")
    ort = pytest.importorskip("onnxruntime")
    model, spec = model_from_keras_h5(h5_path)
    h, w = 89, 137
    onnx_path = export.export_fused_onnx(model, spec, tmp_path / "keras.onnx", h, w)
    frame = np.random.default_rng(5).integers(0, 256, (h, w, 3), dtype=np.uint8)
    labels_pt, logits_pt = export.torch_reference(model, spec, [frame])[0]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    labels, logits = session.run(None, {session.get_inputs()[0].name: frame[None]})
    assert np.abs(logits[0] - logits_pt).max() <= 1e-4 * max(1.0, np.abs(logits_pt).max())
    assert (labels[0] == labels_pt).mean() > 0.999
    # and the fused graph's normalisation is the baseline's: BGR minus the BGR mean, no std, no flip
    ref = np_resize_align_corners(keras_forward(keras_layers_from_model(model),
                                                frame[None].astype(np.float64) - np.array(KERAS_MEAN_BGR)),
                                  h, w)
    assert rel_err(logits[0].transpose(1, 2, 0), ref[0]) < 1e-4


def test_build_engine_infers_the_model_from_the_h5(tmp_path: Path, h5_path: Path) -> None:
    """`python -m build_engine --weights FILE.h5` (no --model): spec and conventions from the file."""
    api = pytest.importorskip("build_engine.api")
    manifest = api.build_artefact("demo", "fp32", "onnxruntime", (89, 137), output=tmp_path,
                                  weights=str(h5_path))
    data = json.loads(Path(manifest).read_text())
    assert data["model"] == "pspnet50_cityscapes_keras_w0.125"
    assert data["channel_order"] == "BGR" and data["mean"] == list(KERAS_MEAN_BGR)
    assert data["std"] == [1.0, 1.0, 1.0] and data["input_size"] == [89, 137]
