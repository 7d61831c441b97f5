"""Named training recipes: presets of `python -m pspnet.train` options (explicit options win).

kitti-road-fork is the KITTI fork of hellochick/PSPNet-tensorflow (watsoncm), from its train.py
and utils/generate_data.py: transfer learning from a Cityscapes checkpoint onto KITTI road's
three colour classes, an 80/20 hold-out, images and ground truth upsampled 2x (bilinear /
nearest) because PSPNet expects larger inputs, Adam (instead of semseg's momentum SGD) at a
base learning rate of 5e-5 with the pyramid-pooling and classifier layers at 10x (weights) and
20x (biases), the poly schedule (power 0.9), L2 weight decay 1e-4 on convolution weights only,
batch 2, 713x713 crops, batch-norm statistics and affine parameters not trained (its defaults:
no --update-mean-var, no --train-beta-gamma), no random scale or mirror (off by default there),
no auxiliary loss (its PSPNet101 has no auxiliary head), 3.5 epochs.
Differences, said plainly: the fork normalised with its own KITTI mean (BGR 89.6, 96.4, 93.6)
and no std; here the model keeps its checkpoint's own normalisation (a network must see the
statistics it was trained with). Its frozen batch norm still used batch statistics in the
forward pass; here frozen means the running statistics (batch 2 gives no usable statistics).

kitti-road-native is the recipe the fork planned next ("net surgery ... to allow direct input
of smaller images"): the same, at the images' own size (no upsampling) and on whole images of
any H/W (crop `full`: each batch padded to its largest image), which PSPNet's adaptive pyramid
pooling accepts as it is.
"""

from __future__ import annotations

from typing import Any

RECIPES: dict[str, dict[str, Any]] = {
    "kitti-road-fork": {
        "optimizer": "adam", "lr": 5e-5, "head_lr": (10.0, 20.0), "weight_decay": 1e-4,
        "decay": "weights", "batch_size": 2, "crop": (713, 713), "upsample": 2.0,
        "augment": 0.0, "aux_weight": 0.0, "freeze_bn": True, "epochs": 3.5, "val_split": 0.2,
    },
    "kitti-road-native": {
        "optimizer": "adam", "lr": 5e-5, "head_lr": (10.0, 20.0), "weight_decay": 1e-4,
        "decay": "weights", "batch_size": 2, "crop": "full", "upsample": 1.0,
        "augment": 0.0, "aux_weight": 0.0, "freeze_bn": True, "epochs": 3.5, "val_split": 0.2,
    },
}

# what every option is when neither the command line nor a recipe sets it (semseg's recipe)
BASE: dict[str, Any] = {
    "optimizer": "sgd", "lr": 0.01, "head_lr": (1.0, 1.0), "weight_decay": 1e-4, "decay": "all",
    "batch_size": 8, "crop": (240, 240), "upsample": 1.0, "augment": 1.0, "aux_weight": 0.4,
    "freeze_bn": False, "epochs": None, "val_split": None,
}


def resolve(args: Any) -> list[str]:
    """Fill every option left unset (None) from the recipe, then from BASE; return what the
    recipe set, for the log."""
    recipe = RECIPES.get(getattr(args, "recipe", None) or "", {})
    taken = []
    for key, base in BASE.items():
        if getattr(args, key, None) is None:
            if key in recipe:
                setattr(args, key, recipe[key])
                taken.append(key)
            else:
                setattr(args, key, base)
    return taken
