"""Import the Keras baseline's `.h5` weights (Vladkryvoruchko/PSPNet-Keras-tensorflow) without TensorFlow.

Those files are Keras `save_weights` HDF5 files converted from the paper author's Caffe models:
one group per layer, a `weight_names` attribute of byte strings naming datasets such as
`conv1_1_3x3_s2/conv1_1_3x3_s2/kernel:0`, kernels in HWIO. Reading them needs only h5py.

The network they belong to is our PSPNet with two Caffe conventions switched on:
`stride_on_1x1=True` (conv3_1's stride sits on the 1x1 reduce) and `caffe_ppm_order=True`
(concat [x, pool6, pool3, pool2, pool1]). The rest already matches: the baseline's 'same' padding of
the stride-2 stem conv and pool1 is a symmetric pad of 1 at its odd input sizes (473, 713), its
fixed average pools (60/30/20/10 at 473, 90/45/30/15 at 713) are our adaptive pools on those
divisible maps, every resize is bilinear with align_corners=True, and BN epsilon is 1e-5.

Loading is strict and all-or-nothing: the whole state_dict is assembled and checked before the
model is touched, so a wrong file never leaves a half-loaded model behind.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import torch

from pspnet.errors import CheckpointError
from pspnet.model import PSPNet
from pspnet.zoo import KERAS_MEAN_BGR, REGISTRY, ModelSpec
from segdata.label_sets import generic_label_set

log = logging.getLogger(__name__)

DEPTH_BY_CONV4_BLOCKS = {6: 50, 23: 101}
LABEL_SET_BY_CLASSES = {150: "ade20k", 19: "cityscapes", 21: "voc2012"}
NATIVE_SIZE = {"ade20k": (473, 473), "cityscapes": (713, 713), "voc2012": (473, 473)}
# Keras weight name (after the last '/', without ':0') -> torch parameter/buffer suffix.
CONV_WEIGHTS = {"kernel": "weight", "bias": "bias"}
BN_WEIGHTS = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
              "moving_variance": "running_var"}
SHOW = 10  # names listed per category in error messages
# which seed's file a layer dict came from: the words used for it in messages
FAMILIES = {"keras": "Keras seed's .h5 file", "tf": "TF seed's checkpoint"}

Layers = dict[str, dict[str, "np.ndarray | tuple[int, ...]"]]


# --------------------------------------------------------------------------- reading the file
def _decode(name: bytes | str) -> str:
    return name.decode("utf8") if isinstance(name, bytes | np.bytes_) else str(name)


def _short_name(weight_name: str) -> str:
    """`conv6/conv6/bias:0` -> `bias`; the layer prefix varies between Keras versions."""
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


def _weight_datasets(group: h5py.Group, layer: str) -> Iterator[tuple[str, h5py.Dataset]]:
    """The datasets of one layer group, found through `weight_names` where present.

    Old and new Keras nest the datasets differently (`LAYER/LAYER/kernel:0` or `LAYER/kernel:0`),
    but `weight_names` always holds the path relative to the layer group, so it is the robust key;
    a group without the attribute falls back to every dataset below it.
    """
    if "weight_names" in group.attrs:
        for raw in np.atleast_1d(group.attrs["weight_names"]):
            name = _decode(raw)
            if not name:
                continue
            obj = group.get(name)
            if not isinstance(obj, h5py.Dataset):
                raise CheckpointError(f"layer {layer!r} lists weight {name!r} in weight_names, but the "
                                      "file holds no such dataset (damaged or hand-edited file?)")
            yield name, obj
        return
    found: list[tuple[str, h5py.Dataset]] = []
    group.visititems(lambda n, o: found.append((n, o)) if isinstance(o, h5py.Dataset) else None)
    yield from found


def read_keras_layers(path: str | Path, data: bool = True) -> Layers:
    """{layer: {short weight name: array}} for every layer with weights (shapes if not `data`).

    Layers without weights (inputs, activations, pools) are skipped: Keras stores them as
    groups with an empty `weight_names`, and they are not "unused weights".
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise CheckpointError(f"{path} is not a readable HDF5 file ({str(exc)[:160]}); expected the "
                              "Keras baseline's save_weights .h5 (e.g. pspnet101_cityscapes.h5)") from None
    layers: Layers = {}
    try:
        with handle:
            root = handle.get("model_weights", handle)  # full model.save files nest the weights
            names = ([_decode(n) for n in np.atleast_1d(root.attrs["layer_names"])]
                     if "layer_names" in root.attrs else list(root.keys()))
            for layer in names:
                group = root.get(layer)
                if not isinstance(group, h5py.Group):
                    raise CheckpointError(f"{path}: layer_names lists {layer!r} but the file holds no "
                                          "such group (damaged or hand-edited file?)")
                weights: dict = {}
                for name, ds in _weight_datasets(group, layer):
                    short = _short_name(name)
                    if short in weights:
                        raise CheckpointError(f"{path}: layer {layer!r} holds two weights named {short!r}")
                    weights[short] = np.asarray(ds[()]) if data else tuple(ds.shape)
                if weights:
                    layers[layer] = weights
    except CheckpointError:
        raise
    except (OSError, KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path} could not be read as a Keras weights file ({str(exc)[:160]}); "
                              "the file may be truncated - download it again") from None
    if not layers:
        raise CheckpointError(f"{path} is an HDF5 file but holds no Keras layer weights (expected groups "
                              "such as conv1_1_3x3_s2 with a weight_names attribute; Keras 3 "
                              "`.weights.h5` files are not supported)")
    return layers


def _shape(value: np.ndarray | tuple[int, ...]) -> tuple[int, ...]:
    return tuple(value.shape) if isinstance(value, np.ndarray) else tuple(value)


# --------------------------------------------------------------------------- spec inference
def keras_spec_from_h5(path: str | Path) -> ModelSpec:
    """The zoo spec a baseline `.h5` needs, read from its layer names and shapes (no data loaded).

    Depth comes from the number of conv4_* blocks (6 -> 50, 23 -> 101), classes from conv6's
    kernel, width from conv6's input channels (512 at full width) so small test files work too.
    """
    return spec_from_layers(read_keras_layers(path, data=False), str(path))


def spec_from_layers(layers: Layers, source: str, family: str = "keras") -> ModelSpec:
    """`keras_spec_from_h5` on layers already read; the registered `*_keras` (or, for the TF seed's
    checkpoints, `*_tf`) spec where one fits, else one built from the file with the seed's
    conventions. A class count no data set has gets a generic label set (`class 0..N-1`): give
    its names and colours with `--classes FILE`."""
    blocks = {int(m.group(1)) for layer in layers if (m := re.fullmatch(r"conv4_(\d+)_1x1_reduce", layer))}
    depth = DEPTH_BY_CONV4_BLOCKS.get(len(blocks))
    what = FAMILIES[family]
    if depth is None or blocks != set(range(1, len(blocks) + 1)):
        raise CheckpointError(f"{source}: found {len(blocks)} conv4_*_1x1_reduce layers; the "
                              f"{what}s have 6 (PSPNet50) or 23 (PSPNet101)")
    kernel = layers.get("conv6", {}).get("kernel")
    if kernel is None or len(_shape(kernel)) != 4:
        raise CheckpointError(f"{source}: no 4-d conv6 kernel, so the class count is unknown; "
                              f"is this a {what} of PSPNet?")
    _, _, mid, classes = _shape(kernel)
    width = mid / 512
    for spec in REGISTRY.values():  # a zoo entry of this family that fits: it names the label set
        same = (spec.depth, spec.num_classes, spec.width) == (depth, classes, width)
        if same and spec.name.endswith(f"_{family}") and \
                (family != "keras" or spec.label_set == LABEL_SET_BY_CLASSES.get(classes)):
            return spec
    label_set = LABEL_SET_BY_CLASSES.get(classes)
    labels = None
    if label_set is None:
        labels = generic_label_set(classes)
        label_set = labels.name
        log.warning("%s predicts %d classes, which no built-in label set has: naming them class 0..%d "
                    "(give their names and colours with --classes FILE)", source, classes, classes - 1)
    size = NATIVE_SIZE.get(label_set, (473, 473) if depth == 50 else (713, 713))
    conventions = dict(mean=KERAS_MEAN_BGR, std=(1.0, 1.0, 1.0), channel_order="BGR", stride_on_1x1=True,
                       caffe_ppm_order=True)
    if family == "tf":
        size = (720, 720) if size == (713, 713) else size  # the TF seed's crop for the 713 models
        conventions["tf_same_padding"] = True
    name = f"pspnet{depth}_{label_set.replace('-', '_')}_{family}"
    return ModelSpec(name if width == 1 else f"{name}_w{width:g}", depth, label_set, size,
                     width=width, labels=labels, **conventions,
                     description=f"PSPNet{depth} {label_set} from a {what} ({Path(source).name})")


# --------------------------------------------------------------------------- name mapping
def keras_layer_map(model: PSPNet) -> dict[str, tuple[str, str]]:
    """Keras layer name -> (our module prefix, 'conv' | 'bn'), derived from the model's structure.

    Derived rather than tabulated so depth, width and bins come from the model itself; any
    disagreement with the file then shows up as missing/unused layers, not silent garbage.
    """
    out: dict[str, tuple[str, str]] = {}

    def add(keras: str, ours: str, bn: str) -> None:
        out[keras] = (ours, "conv")
        out[keras + "_bn"] = (bn, "bn")

    for keras, idx in (("conv1_1_3x3_s2", 0), ("conv1_2_3x3", 3), ("conv1_3_3x3", 6)):
        add(keras, f"layer0.{idx}", f"layer0.{idx + 1}")
    for level in (2, 3, 4, 5):
        stage = f"layer{level - 1}"
        for i, block in enumerate(getattr(model, stage)):
            pre, ours = f"conv{level}_{i + 1}", f"{stage}.{i}"
            if not hasattr(block, "conv3"):
                raise ValueError("the Keras baseline's networks are bottleneck ResNets (depth 50/101); "
                                 "this model has basic blocks")
            add(f"{pre}_1x1_reduce", f"{ours}.conv1", f"{ours}.bn1")
            add(f"{pre}_3x3", f"{ours}.conv2", f"{ours}.bn2")
            add(f"{pre}_1x1_increase", f"{ours}.conv3", f"{ours}.bn3")
            if block.downsample is not None:
                add(f"{pre}_1x1_proj", f"{ours}.downsample.0", f"{ours}.downsample.1")
    for k, branch in enumerate(model.ppm.features):
        add(f"conv5_3_pool{branch.bins}_conv", f"ppm.features.{k}.1", f"ppm.features.{k}.2")
    add("conv5_4", "cls.0", "cls.1")
    out["conv6"] = ("cls.4", "conv")
    return out


def _check_conventions(model: PSPNet) -> None:
    """Refuse a model built without the Caffe conventions: the weights would load and mislead."""
    wrong = []
    if model.layer2[0].conv1.stride != (2, 2):
        wrong.append("stride_on_1x1=True")
    if not model.ppm.caffe_order:
        wrong.append("caffe_ppm_order=True")
    if wrong:
        layout = {"stride_on_1x1=True": "the stride on the 1x1 convolution",
                  "caffe_ppm_order=True": "the Caffe pyramid-pooling order"}
        raise CheckpointError("the Keras baseline's weights need the Caffe layout (" +
                              ", ".join(layout[w] for w in wrong) + "), which this model lacks; pass a "
                              "*_keras model (python -m build_engine --list-models) or leave --model out, "
                              "so the model is read from the .h5 file")


def _listing(names: list[str]) -> str:
    more = f" ... and {len(names) - SHOW} more" if len(names) > SHOW else ""
    return ", ".join(names[:SHOW]) + more


def _describe_file(layers: Layers, source: str, family: str = "keras") -> str:
    """What the file itself implies, and the --model that fits it, for error messages."""
    try:
        spec = spec_from_layers(layers, source, family)
    except CheckpointError as exc:
        return f"the file is no complete baseline PSPNet ({str(exc).split(': ', 1)[-1]})"
    what = f"the file holds PSPNet{spec.depth} with {spec.num_classes} classes ({spec.label_set})"
    if REGISTRY.get(spec.name) is spec:
        return f"{what}: use --model {spec.name}, or just --weights without --model"
    if spec.width == 1:
        return f"{what}: pass just --weights without --model (the model is read from the file)"
    builder = "keras_spec_from_h5(path)" if family == "keras" else "tf_spec_from_checkpoint(path)"
    return f"{what} at width {spec.width:g}: build it with {builder}"


def keras_state_dict(model: PSPNet, layers: Layers, source: str, family: str = "keras"
                     ) -> dict[str, torch.Tensor]:
    """A complete state_dict for `model` from Keras layers, or CheckpointError naming every misfit."""
    own = model.state_dict()
    mapping = keras_layer_map(model)
    sd: dict[str, torch.Tensor] = {}
    missing_layers = [k for k in mapping if k not in layers]
    unused_layers = sorted(k for k in layers if k not in mapping)
    missing_weights: list[str] = []
    unused_weights: list[str] = []
    wrong: list[str] = []
    for layer, (prefix, kind) in mapping.items():
        if layer not in layers:
            continue
        table = CONV_WEIGHTS if kind == "conv" else BN_WEIGHTS
        weights = layers[layer]
        for short, value in weights.items():
            key = f"{prefix}.{table[short]}" if short in table else None
            if key is None or key not in own:
                unused_weights.append(f"{layer}/{short}")
                continue
            target = own[key]
            found = _shape(value)
            if kind == "conv" and short == "kernel":
                expected = tuple(target.permute(2, 3, 1, 0).shape)  # OIHW -> HWIO
                what = f"{layer}/kernel: expected {expected} (HWIO, for {key} {tuple(target.shape)})"
            else:
                expected = tuple(target.shape)
                what = f"{layer}/{short}: expected {expected} (for {key})"
            if found != expected:
                wrong.append(f"{what}, found {found}")
                continue
            array = np.asarray(value, dtype=np.float32)
            if not np.isfinite(array).all():
                wrong.append(f"{layer}/{short}: holds NaN or Inf values (damaged file?)")
                continue
            if kind == "conv" and short == "kernel":
                array = array.transpose(3, 2, 0, 1)
            sd[key] = torch.from_numpy(np.ascontiguousarray(array)).to(target.dtype)
        for short, suffix in table.items():
            if f"{prefix}.{suffix}" in own and short not in weights:
                missing_weights.append(f"{layer}/{short}")
    # PyTorch's own precedent for state_dicts without the counter (BatchNorm version < 2) is 0;
    # it is read only with momentum=None, where 0 means "no batches seen by this model".
    for key, value in own.items():
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.zeros_like(value)
    mapped = {prefix for prefix, _ in mapping.values()}
    unfilled = [k for k in own if k not in sd and k.rsplit(".", 1)[0] not in mapped]
    if missing_layers or unused_layers or missing_weights or unused_weights or wrong or unfilled:
        lines = [f"{source} does not fit this model; {_describe_file(layers, source, family)}."]
        if missing_layers:
            lines.append(f"missing layers ({len(missing_layers)}): {_listing(missing_layers)}")
        if unused_layers:
            lines.append(f"unused layers ({len(unused_layers)}): {_listing(unused_layers)}")
        if missing_weights:
            lines.append(f"missing weights ({len(missing_weights)}): {_listing(missing_weights)}")
        if unused_weights:
            lines.append(f"unused weights ({len(unused_weights)}): {_listing(unused_weights)}")
        if wrong:
            lines.append(f"shape mismatches ({len(wrong)}): {'; '.join(wrong[:SHOW])}"
                         + (f" ... and {len(wrong) - SHOW} more" if len(wrong) > SHOW else ""))
        if unfilled:
            aux = any(k.startswith("aux.") for k in unfilled)
            hint = " (the auxiliary head: the baselines ship none; build the model without it)" if aux else ""
            lines.append(f"model tensors with no counterpart in the file ({len(unfilled)}){hint}: "
                         f"{_listing(unfilled)}")
        raise CheckpointError("\n  ".join(lines))
    return sd


def load_keras_h5(model: PSPNet, path: str | Path) -> None:
    """Fill `model` from a baseline `.h5`, strictly: every tensor filled, every file weight used."""
    _check_conventions(model)
    layers = read_keras_layers(path)
    sd = keras_state_dict(model, layers, str(path))
    model.load_state_dict(sd, strict=True)


def model_from_keras_h5(path: str | Path) -> tuple[PSPNet, ModelSpec]:
    """The eval-mode model a baseline `.h5` describes, loaded, and its spec (for `--weights FILE.h5`)."""
    spec = keras_spec_from_h5(path)
    model = PSPNet(spec.depth, spec.num_classes, spec.bins, spec.width, aux=False,
                   stride_on_1x1=spec.stride_on_1x1, caffe_ppm_order=spec.caffe_ppm_order)
    load_keras_h5(model, path)
    return model.eval(), spec


__all__ = ["CheckpointError", "keras_layer_map", "keras_spec_from_h5", "load_keras_h5",
           "model_from_keras_h5", "read_keras_layers", "spec_from_layers"]
