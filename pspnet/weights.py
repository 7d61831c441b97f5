"""Weight import: semseg `.pth` checkpoints, our own, the Keras seed's `.h5` (keras_import) and the TF
seed's checkpoints (tf_import), each file sent to its loader by its content (weight_formats).

Loading is strict on purpose: semseg loads with strict=False, which hides a wrong depth or
class count behind garbage predictions. Only `aux.*` is dropped, deliberately, for inference.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from pspnet.errors import CheckpointError
from pspnet.model import PSPNet
from pspnet.weight_formats import KERAS_H5, PYTORCH, TF_CHECKPOINT, identify, refusal
from pspnet.zoo import REGISTRY, ModelSpec

PREFIXES = ("module.", "model.")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors, whether saved bare, under 'state_dict', or from DataParallel."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    found = identify(path)
    if found.kind != PYTORCH:
        raise CheckpointError(refusal(found, PYTORCH))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message suggests weights_only=False, i.e. running the pickle's code: never.
        raise CheckpointError(f"{path} is a PyTorch pickle holding Python objects besides tensors and "
                              "plain containers; it is not unpickled, because that could run code from "
                              "the file. Re-save only the model's weights (its state_dict: tensors by name) "
                              "where the file was made, and pass that file") from None
    except (zipfile.BadZipFile, RuntimeError, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in first:
            first = type(exc).__name__
        raise CheckpointError(f"{path} is a damaged or truncated PyTorch checkpoint ({first[:200]}); "
                              "copy or download it again") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} holds no state_dict (found {type(obj).__name__}); expected "
                              "{'state_dict': ...} as semseg saves, or a bare state_dict")
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        for prefix in PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        out[key] = value
    return out


def describe_state_dict(sd: Mapping[str, torch.Tensor]) -> str:
    """Depth and class count a state_dict implies, in words, for error messages."""
    depth = guess_depth(sd)
    cls = sd.get("cls.4.weight")
    classes = int(cls.shape[0]) if cls is not None else None
    return f"ResNet-{depth or '?'} with {classes if classes is not None else '?'} classes"


def guess_depth(sd: Mapping[str, torch.Tensor]) -> int | None:
    blocks = [len({k.split(".")[1] for k in sd if k.startswith(f"layer{i}.")}) for i in (1, 2, 3, 4)]
    bottleneck = any(k.endswith("conv3.weight") for k in sd if k.startswith("layer1."))
    table = {(2, 2, 2, 2, False): 18, (3, 4, 6, 3, False): 34, (3, 4, 6, 3, True): 50,
             (3, 4, 23, 3, True): 101, (3, 8, 36, 3, True): 152}
    return table.get((*blocks, bottleneck))


def likely_models(sd: Mapping[str, torch.Tensor]) -> list[str]:
    depth = guess_depth(sd)
    cls = sd.get("cls.4.weight")
    classes = int(cls.shape[0]) if cls is not None else None
    return [s.name for s in REGISTRY.values()
            if s.depth == depth and s.num_classes == classes and not s.stride_on_1x1]


def load_state_dict_strict(model: PSPNet, sd: Mapping[str, torch.Tensor], source: str,
                           spec_name: str) -> None:
    """Load every tensor or refuse, naming expected vs found and the likely right --model."""
    sd = {k: v for k, v in sd.items() if not k.startswith("aux.") or model.aux is not None}
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unused = [k for k in sd if k not in own]
    wrong = [f"{k}: expected {tuple(own[k].shape)}, found {tuple(sd[k].shape)}"
             for k in own if k in sd and own[k].shape != sd[k].shape]
    if missing or unused or wrong:
        hint = likely_models(sd)
        lines = [f"{source} does not fit --model {spec_name}: expected {describe_state_dict(own)}, "
                 f"found {describe_state_dict(sd)}."]
        if wrong:
            lines.append(f"{len(wrong)} shape mismatches, e.g. {'; '.join(wrong[:3])}.")
        if missing:
            lines.append(f"{len(missing)} missing keys, e.g. {', '.join(missing[:4])}.")
        if unused:
            lines.append(f"{len(unused)} unexpected keys, e.g. {', '.join(unused[:4])}.")
        lines.append(f"Try --model {' or '.join(hint)}." if hint else
                     "No registered model matches it; see `python -m build_engine --list-models`.")
        raise CheckpointError(" ".join(lines))
    model.load_state_dict(sd, strict=True)


def load_weights(model: PSPNet, path: str | Path, spec: ModelSpec) -> None:
    """Fill `model` from a .pth checkpoint, the Keras seed's .h5 or a TF seed checkpoint (by content)."""
    found = identify(path)
    if found.kind == KERAS_H5:
        from pspnet.keras_import import load_keras_h5

        load_keras_h5(model, found.path)
        return
    if found.kind == TF_CHECKPOINT:
        from pspnet.tf_import import load_tf_checkpoint

        if found.detail:
            raise CheckpointError(f"{path} is a TensorFlow checkpoint ({found.detail})")
        if not spec.tf_same_padding:
            raise CheckpointError(f"{path} is a TensorFlow checkpoint (the TF seed's format), but --model "
                                  f"{spec.name} is no TF seed model: leave out --model (the model is read "
                                  "from the checkpoint) or choose a *_tf entry (--list-models)")
        load_tf_checkpoint(model, found.path)
        return
    if found.kind != PYTORCH:
        raise CheckpointError(refusal(found))
    sd = read_state_dict(found.path)
    sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
    load_state_dict_strict(model, sd, str(path), spec.name)


def save_checkpoint(path: str | Path, model: PSPNet, epoch: int = 0,
                    optimizer: Mapping | None = None, half: bool = False, **extra) -> None:
    """semseg's format ({'epoch','state_dict','optimizer'}, `module.` keys) so semseg loads it too."""
    from artefact.files import atomic_path

    sd = {f"module.{k}": (v.half() if half and v.is_floating_point() else v).clone()
          for k, v in model.state_dict().items()}
    payload = {"epoch": epoch, "state_dict": sd, "optimizer": optimizer or {}, **extra}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def checkpoint_facts(path: str | Path) -> dict:
    """The plain values a PyTorch checkpoint carries beside its tensors (pspnet.train writes the
    model, label set and data it was trained on: `train.checkpoint_meta`); {} for a bare
    state_dict or a file that is not ours. Loaded with weights_only and mmap: no code runs, and
    the tensors are not read."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a zip checkpoint, or not loadable safely: read_state_dict says why later
        return {}
    if not isinstance(obj, Mapping):
        return {}
    return {k: v for k, v in obj.items() if isinstance(k, str) and _plain(v)}


def _plain(value: object) -> bool:
    if isinstance(value, str | int | float | bool) or value is None:
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False
