"""Import the TensorFlow seed's checkpoints (hellochick/PSPNet-tensorflow and its KITTI fork).

Their variables carry the Keras seed's layer names (both come from the same Caffe prototxt):
`<layer>/weights` (HWIO), `conv6/biases` (the only bias), `<layer>_bn/{gamma,beta,moving_mean,
moving_variance}`. So a checkpoint is read into the Keras importer's layer dict (`weights` ->
`kernel`, `biases` -> `bias`) and loaded by the same strict, all-or-nothing code, with one more
convention: TensorFlow's 'SAME' padding of the stride-2 stem conv and pool1 (`tf_same_padding`),
which at the seed's even crop (720) pads only after, not symmetrically.

Optimizer state saved beside the weights (`<var>/Momentum` from the seed's train.py, `<var>/Adam`,
`<var>/Adam_1`, `beta1_power*`, `beta2_power*` from the fork's, `global_step`) is skipped by name,
and only the weights are read (each checked against its crc32c).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from pspnet.errors import CheckpointError
from pspnet.keras_import import Layers, keras_state_dict, spec_from_layers
from pspnet.model import PSPNet, create_model
from pspnet.tf_checkpoint import TFCheckpoint, find_prefix
from pspnet.zoo import ModelSpec

# tf.train optimizers' slot names (the last name component) and their non-slot scalars.
SLOT = re.compile(r"^(Momentum|Adam|Adam_\d+|RMSProp|RMSProp_\d+|Adagrad|AdagradDA|Ftrl|Ftrl_\d+|"
                  r"ProximalAdagrad|ExponentialMovingAverage)$")
OPTIMIZER_SCALAR = re.compile(r"^(beta[12]_power(_\d+)?|global_step|learning_rate)$")
TF_TO_KERAS = {"weights": "kernel", "biases": "bias"}


def is_optimizer_state(name: str) -> bool:
    parts = name.split("/")
    return bool(SLOT.match(parts[-1]) or (OPTIMIZER_SCALAR.match(parts[-1]) and len(parts) == 1))


def open_checkpoint(path: str | Path) -> TFCheckpoint:
    """The checkpoint `path` names (prefix, any of its files, or its folder)."""
    prefix = find_prefix(path)
    if prefix is None:
        raise CheckpointError(f"{path}: no TensorFlow checkpoint here (expected model.ckpt-N, one of its "
                              "model.ckpt-N.index/.data-*/.meta files, or the folder holding them)")
    return TFCheckpoint(prefix)


def tf_layers(ckpt: TFCheckpoint, data: bool = True) -> Layers:
    """{layer: {kernel|bias|gamma|...: array}} of the checkpoint's weights (shapes if not `data`)."""
    layers: Layers = {}
    for name, entry in sorted(ckpt.entries.items()):
        if is_optimizer_state(name):
            continue
        layer, _, short = name.rpartition("/")
        layer = layer or name
        short = TF_TO_KERAS.get(short, short)
        if short in layers.setdefault(layer, {}):
            raise CheckpointError(f"{ckpt.prefix}: layer {layer!r} holds two weights named {short!r}")
        layers[layer][short] = ckpt.read(name) if data else entry.shape
    if not layers:
        raise CheckpointError(f"{ckpt.prefix} is a TensorFlow checkpoint but holds only optimizer state, "
                              "no weights")
    return layers


def tf_spec_from_checkpoint(path: str | Path) -> ModelSpec:
    """The zoo spec a TF seed checkpoint needs, from its variable names and shapes (no data read)."""
    ckpt = open_checkpoint(path)
    return spec_from_layers(tf_layers(ckpt, data=False), str(ckpt.prefix), "tf")


def _check_conventions(model: PSPNet) -> None:
    wrong = []
    if model.layer2[0].conv1.stride != (2, 2):
        wrong.append("stride_on_1x1=True")
    if not model.ppm.caffe_order:
        wrong.append("caffe_ppm_order=True")
    if type(model.layer0[0]).__name__ != "SameConv2d":
        wrong.append("tf_same_padding=True")
    if wrong:
        layout = {"stride_on_1x1=True": "the stride on the 1x1 convolution",
                  "caffe_ppm_order=True": "the Caffe pyramid-pooling order",
                  "tf_same_padding=True": "TensorFlow's 'same' padding"}
        needed = ", ".join(layout[w] for w in wrong)
        raise CheckpointError(f"the TF seed's weights need its layout ({needed}), which this model lacks; "
                              "pass a *_tf model (python -m build_engine --list-models) or leave --model "
                              "out, so the model is read from the checkpoint")


def load_tf_checkpoint(model: PSPNet, path: str | Path) -> None:
    """Fill `model` from a TF seed checkpoint, strictly: every tensor filled, every weight used."""
    _check_conventions(model)
    ckpt = open_checkpoint(path)
    layers = tf_layers(ckpt)
    sd = keras_state_dict(model, layers, str(ckpt.prefix), "tf")
    model.load_state_dict(sd, strict=True)


def model_from_tf_checkpoint(path: str | Path) -> tuple[PSPNet, ModelSpec]:
    """The eval-mode model a TF seed checkpoint describes, loaded, and its spec."""
    spec = tf_spec_from_checkpoint(path)
    model = create_model(spec)
    load_tf_checkpoint(model, path)
    return model.eval(), spec


def tf_variables_from_model(model: PSPNet) -> dict[str, np.ndarray]:
    """The seed's variable names and layouts for a model's weights (writing test fixtures)."""
    from pspnet.keras_import import keras_layer_map

    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    out: dict[str, np.ndarray] = {}
    back = {"weight": "weights", "bias": "biases"}
    bn = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
    for layer, (prefix, kind) in keras_layer_map(model).items():
        for suffix, short in (back if kind == "conv" else bn).items():
            key = f"{prefix}.{suffix}"
            if key not in sd:
                continue
            value = sd[key]
            out[f"{layer}/{short}"] = value.transpose(2, 3, 1, 0) if short == "weights" else value
    return out


__all__ = ["is_optimizer_state", "load_tf_checkpoint", "model_from_tf_checkpoint", "open_checkpoint",
           "tf_layers", "tf_spec_from_checkpoint", "tf_variables_from_model"]
