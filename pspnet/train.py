"""`python -m pspnet.train`: semseg's recipe (SGD, poly lr, aux loss 0.4, scale/rotate/flip/crop),
and named recipes (`--recipe kitti-road-fork`, `--recipe kitti-road-native`: see pspnet/recipes.py).

Also transfer learning (`--init` a checkpoint with another class count: the classifier is
re-initialised, everything else loads; the class list is the data's own label set) and resume
(`--resume` continues from `last.pth`, losing at most `--save-every` iterations). A hold-out
split of one data set (`--val-split 0.2 --split-seed N`) writes OUT/split/{train,val}.txt,
which evaluation and calibration read as data sources too. Checkpoints are semseg's format.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

import clikit
from pspnet.build import create_model
from pspnet.errors import CheckpointError
from pspnet.model import PSPNet
from pspnet.recipes import RECIPES, resolve
from pspnet.transforms import Augment, pad_batch
from pspnet.weights import read_state_dict, save_checkpoint
from pspnet.zoo import ModelSpec, get_spec

log = logging.getLogger("pspnet.train")
PROG = "pspnet.train"


def normalise(images_bgr: np.ndarray, spec: ModelSpec) -> torch.Tensor:
    """NHWC uint8 BGR -> NCHW float, the same arithmetic as the fused export graph."""
    x = torch.from_numpy(images_bgr).permute(0, 3, 1, 2).float()
    if spec.channel_order.upper() == "RGB":
        x = x.flip(1)
    scale = torch.tensor([1.0 / s for s in spec.std]).view(1, 3, 1, 1)
    shift = torch.tensor([-m / s for m, s in zip(spec.mean, spec.std)]).view(1, 3, 1, 1)
    return x * scale + shift


def _load_sample(args: tuple[str, int, float]) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """One sample, upsampled (bilinear image, nearest label) when asked; a bad one returns its
    reason instead, so the whole set's problems are reported together."""
    from segdata.datasets import DatasetError, open_dataset
    from segdata.frames import FrameError

    source, index, upsample = args
    try:
        sample = open_dataset(source)[index]
    except (DatasetError, FrameError, OSError) as exc:
        return None, None, clikit.one_line(str(exc))
    image, label = sample.image, sample.label
    if label is None:
        return None, None, f"{sample.name} has no label"
    if upsample != 1.0:
        h, w = label.shape
        size = (max(1, round(w * upsample)), max(1, round(h * upsample)))
        image = cv2_resize(image, size, linear=True)
        label = cv2_resize(label, size, linear=False)
    return image, label, ""


def cv2_resize(array: np.ndarray, size_wh: tuple[int, int], linear: bool) -> np.ndarray:
    import cv2

    return cv2.resize(array, size_wh, interpolation=cv2.INTER_LINEAR if linear else cv2.INTER_NEAREST)


def load_all(source: str, workers: int, desc: str, upsample: float = 1.0
             ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Decode/render a whole (small) set into memory once; epochs then cost no I/O. Every
    sample that cannot be used is named in one DatasetError (never skipped silently)."""
    from segdata.datasets import DatasetError, open_dataset

    dataset = open_dataset(source)
    n = len(dataset)
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        triples = list(tqdm(pool.map(_load_sample, [(source, i, upsample) for i in range(n)], chunksize=16),
                            total=n, desc=desc, unit="img"))
    bad = [why for _, _, why in triples if why]
    if bad:
        raise DatasetError(f"{len(bad)} of {n} samples of {dataset.description} cannot be used: "
                           + "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else ""))
    return [t[0] for t in triples], [t[1] for t in triples]


@dataclass
class TrainData:
    """The training and held-out sets in memory, with what they are (shared by search trials)."""

    images: list[np.ndarray]
    labels: list[np.ndarray]
    val_images: list[np.ndarray]
    val_labels: list[np.ndarray]
    label_set: str
    sources: dict[str, str]
    notes: tuple[str, ...] = ()
    split: dict = field(default_factory=dict)


def prepare_split(args: argparse.Namespace, out: Path) -> dict:
    """With --val-split: OUT/split/{train,val}.txt from --data (reused on --resume when they
    were made from the same data, fraction and seed); the sources to train and evaluate on."""
    from segdata.datasets import DatasetError
    from segdata.split import absolute_source, read_split_list, split_dataset

    if args.val_split is None:
        return {"train": args.data, "val": args.val}
    folder = out / "split"
    lists = {part: folder / f"{part}.txt" for part in ("train", "val")}
    if args.resume and all(p.is_file() for p in lists.values()):
        header, _ = read_split_list(lists["val"])
        want = {"source": absolute_source(args.data), "val-split": f"{args.val_split:g}",
                "split-seed": str(args.split_seed)}
        if any(header.get(k) != v for k, v in want.items()):
            raise DatasetError(f"{lists['val']} was made from {header.get('source')} with --val-split "
                               f"{header.get('val-split')} --split-seed {header.get('split-seed')}; "
                               "resume with those, or train into a new --out")
    else:
        lists = split_dataset(args.data, folder, args.val_split, args.split_seed)
    return {"train": str(lists["train"]), "val": str(lists["val"]),
            "val_split": args.val_split, "split_seed": args.split_seed}


def load_data(args: argparse.Namespace, out: Path) -> TrainData:
    from segdata.datasets import DatasetError, open_dataset

    sources = prepare_split(args, out)
    train_set, val_set = open_dataset(sources["train"]), open_dataset(sources["val"])
    if train_set.label_set != val_set.label_set:
        raise DatasetError(f"the training set is labelled {train_set.label_set} but the held-out set "
                           f"{val_set.label_set}; they must share one label set")
    images, labels = load_all(sources["train"], args.workers, "training set", args.upsample)
    val_images, val_labels = load_all(sources["val"], args.workers, "held-out set", args.upsample)
    notes = tuple(dict.fromkeys((*train_set.notes, *val_set.notes)))
    return TrainData(images, labels, val_images, val_labels, train_set.label_set,
                     {"train": sources["train"], "val": sources["val"]}, notes,
                     {k: v for k, v in sources.items() if k not in ("train", "val")})


def checkpoint_meta(args: argparse.Namespace, spec: ModelSpec, data: TrainData) -> dict:
    """What a checkpoint says about itself besides its tensors (plain values: weights_only loads
    them): the zoo model, the whole label set, and the data it was trained and held out on, so
    `python -m build_engine --weights best.pth` builds, calibrates and gates it without being told
    (build_engine.checkpoint_facts reads it back)."""
    from segdata.split import absolute_source

    return {"zoo_model": args.model, "label_set": spec.label_set, "classes": list(spec.classes),
            "labels": spec.label_set_info.to_dict(), "recipe": args.recipe,
            "data": {part: absolute_source(src) for part, src in data.sources.items() if src}}


def init_from(model: PSPNet, path: str) -> list[str]:
    """Transfer learning: load every tensor whose name and shape fit; return those left fresh."""
    sd = read_state_dict(path)
    own = model.state_dict()
    fits = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()
            if k in own and own[k].shape == v.shape}
    if len(fits) < len(own) // 2:
        raise CheckpointError(f"{path} shares only {len(fits)} of {len(own)} tensors with the "
                              "model; is it the right depth and width?")
    model.load_state_dict(fits, strict=False)
    return sorted(k for k in own if k not in fits)


@torch.no_grad()
def evaluate(model: PSPNet, spec: ModelSpec, images: list[np.ndarray], labels: list[np.ndarray],
             batch: int = 8) -> dict:
    """Held-out mIoU (semseg's confusion matrix); on KITTI road label sets also road/not-road
    mIoU and the devkit's MaxF. Images of different sizes are batched by size."""
    from segdata.metrics import ConfusionMatrix
    from segdata.road_metrics import RoadScores

    was_training = model.training
    model.eval()
    road = RoadScores(spec.label_set, spec.num_classes) if spec.label_set.startswith("kitti-road") else None
    cm = ConfusionMatrix(spec.num_classes)
    i = 0
    while i < len(images):
        j = i + 1
        while j < len(images) and j - i < batch and images[j].shape == images[i].shape:
            j += 1
        x = normalise(np.stack(images[i:j]), spec)
        logits = F.interpolate(model(x), size=x.shape[-2:], mode="bilinear", align_corners=True)
        probs = logits.softmax(1).numpy() if road is not None else None
        for k, (pred, target) in enumerate(zip(logits.argmax(1).to(torch.uint8).numpy(), labels[i:j])):
            cm.update(pred, target)
            if road is not None:
                road.update(probs[k], target)
        i = j
    model.train(was_training)
    out = cm.to_dict(list(spec.classes))
    if road is not None:
        r = road.result(spec.classes)
        out.update(road_miou=r["road_miou"], maxf=r["maxf"])
    return out


def class_weights(labels: list[np.ndarray], num_classes: int, cap: float = 5.0) -> torch.Tensor:
    """sqrt of median-frequency balancing (Eigen & Fergus), capped: absent classes get 0."""
    counts = np.zeros(num_classes, np.float64)
    for label in labels:
        counts += np.bincount(label.ravel(), minlength=256)[:num_classes]
    present = counts > 0
    freq = counts / counts.sum()
    weights = np.zeros(num_classes)
    weights[present] = np.sqrt(np.median(freq[present]) / freq[present])
    return torch.tensor(np.minimum(weights, cap), dtype=torch.float32)


def poly_lr(base: float, it: int, total: int, power: float = 0.9) -> float:
    return base * (1 - it / total) ** power


def cpu_has_bf16() -> bool:
    """BF16 instructions in this CPU (without them autocast emulates bf16: slower than fp32)."""
    from devices.facts import cpu_info

    flags = cpu_info()["flags"]
    return bool(flags.get("avx512_bf16") or flags.get("amx_bf16"))


def head_or_backbone(name: str) -> str:
    """PSPNet's parameter families: the pyramid pooling and the classifiers are the 'head' that
    semseg (and the fork) train at 10x the backbone's learning rate."""
    return "head" if name.split(".", 1)[0] in ("ppm", "cls", "aux") else "backbone"


def frozen_modules(model: PSPNet, freeze_bn: bool, freeze_stages: int) -> list[nn.Module]:
    """Modules that keep their weights and statistics: the first `freeze_stages` backbone
    stages (layer0 = the stem .. layer4) and, with freeze_bn, every batch norm."""
    mods: list[nn.Module] = [getattr(model, f"layer{i}") for i in range(min(freeze_stages, 5))]
    if freeze_bn:
        mods += [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    return mods


def set_train_mode(model: PSPNet, frozen: list[nn.Module]) -> None:
    model.train()
    for m in frozen:
        m.eval()  # running statistics stay as loaded


def param_groups(model: PSPNet, frozen: list[nn.Module], head_lr: tuple[float, float],
                 weight_decay: float, decay: str) -> list[dict]:
    """Optimizer groups: backbone at 1x, head conv weights (and batch norm) at head_lr[0], head
    conv biases at head_lr[1]; decay 'weights' puts weight decay on conv weights only (the
    fork's L2 loss), 'all' on everything (semseg)."""
    for m in frozen:
        for p in m.parameters():
            p.requires_grad_(False)
    groups: dict[tuple[float, float], list[torch.Tensor]] = {}
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            head = head_or_backbone(f"{mod_name}.{p_name}") == "head"
            is_conv = isinstance(module, (nn.Conv2d, nn.Linear))
            mult = (head_lr[1] if is_conv and p_name == "bias" else head_lr[0]) if head else 1.0
            wd = weight_decay if decay == "all" or (is_conv and p_name == "weight") else 0.0
            groups.setdefault((mult, wd), []).append(p)
    return [{"params": ps, "mult": mult, "weight_decay": wd} for (mult, wd), ps in sorted(groups.items())]


def make_optimizer(args: argparse.Namespace, groups: list[dict]) -> torch.optim.Optimizer:
    if args.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=args.lr, momentum=args.momentum)
    if args.optimizer == "adam":
        return torch.optim.Adam(groups, lr=args.lr)
    return torch.optim.AdamW(groups, lr=args.lr)


@clikit.option_type("HxW or 'full'", "240x240", ["", "0x0", "abc", "fullx", "-1x5"])
def crop_size(text: str) -> tuple[int, int] | str:
    """A training crop, or 'full': whole images at their own size (batches padded)."""
    if text.strip().lower() == "full":
        return "full"
    return clikit.hw_size(text)


def build_parser() -> argparse.ArgumentParser:
    recipes = ", ".join(RECIPES)
    p = clikit.parser(f"python -m {PROG}", __doc__,
                      "examples:\n"
                      "  python -m pspnet.train --model demo --iters 3000 --out runs/demo "
                      "--export-weights pspnet/weights/demo_synthetic.pth\n"
                      "  python -m pspnet.train --recipe kitti-road-fork --data kitti-road:/data/data_road "
                      "--init cityscapes.pth --out runs/fork\n"
                      "  python -m pspnet.train --recipe kitti-road-native --data /data/data_road "
                      "--init cityscapes.pth --out runs/native\n"
                      "Options a recipe sets take its value unless given on the command line.\n"
                      "Ctrl-C / SIGTERM: the iteration in progress finishes and OUT/last.pth is saved "
                      "(continue with --resume)\n" + clikit.EXIT_CODES_HELP)
    p.add_argument("--recipe", choices=tuple(RECIPES),
                   help=f"a named preset ({recipes}); see pspnet/recipes.py for what each sets and why")
    p.add_argument("--model", default="demo", type=clikit.non_empty("a model zoo name"),
                   help="zoo name (depth, width, normalisation); the classes are the data's label set")
    p.add_argument("--data", default="synthetic:train:2000@240x480", type=clikit.non_empty("a data source"),
                   help="training set: a folder (layout auto-detected: cityscapes, kitti, kitti-road "
                        "(data_road), ade20k, voc), layout:/path, synthetic:..., or a split list")
    p.add_argument("--val", type=clikit.non_empty("a data source"),
                   help="held-out set (default synthetic:val:100@240x480; with --val-split: the "
                        "held-out part of --data)")
    from segdata.split import add_split_options

    add_split_options(p)
    p.add_argument("--init", type=clikit.input_file("a checkpoint file"),
                   help="checkpoint to start from (transfer learning)")
    p.add_argument("--iters", type=clikit.positive_int, help="iterations (default 3000)")
    p.add_argument("--epochs", type=clikit.float_in(what="a number of epochs", above=0),
                   help="train this many passes over the training set instead of --iters (the fork: 3.5)")
    p.add_argument("--batch-size", type=clikit.int_in(1, 4096), help="default 8")
    p.add_argument("--crop", type=crop_size, metavar="HxW|full",
                   help="training crop HxW, or full: whole images at their own size (default 240x240)")
    p.add_argument("--upsample", type=clikit.float_in(what="a scale factor", above=0, high=8),
                   help="resize training and held-out images by this factor first (the fork: 2)")
    p.add_argument("--scale", default="0.5,2.0", type=clikit.csv_numbers(greater_than=0, count=2),
                   help="random scale range")
    p.add_argument("--augment", type=clikit.float_in(0, 1, "an augmentation strength"),
                   help="strength of scale/rotate/blur/flip: 1 semseg's (default), 0 crop only")
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), help="default sgd")
    p.add_argument("--lr", type=clikit.float_in(what="a learning rate", above=0), help="default 0.01")
    p.add_argument("--head-lr", type=clikit.csv_numbers(greater_than=0, count=2), metavar="W,B",
                   help="learning-rate multipliers of the head (pyramid pooling, classifiers): "
                        "weights, biases (default 1,1; the fork: 10,20)")
    p.add_argument("--momentum", type=clikit.float_in(0, 0.999, "a momentum"), default=0.9)
    p.add_argument("--weight-decay", type=clikit.float_in(0, what="a weight decay"), help="default 1e-4")
    p.add_argument("--decay", choices=("all", "weights"),
                   help="what weight decay applies to: all parameters (semseg, default) or conv "
                        "weights only (the fork's L2 loss)")
    p.add_argument("--aux-weight", type=clikit.float_in(0, what="a loss weight"), help="default 0.4")
    p.add_argument("--freeze-bn", action=argparse.BooleanOptionalAction, default=None,
                   help="keep batch-norm statistics and parameters as loaded (small batches)")
    p.add_argument("--freeze-stages", type=clikit.int_in(0, 5), default=0,
                   help="keep the first N backbone stages as loaded (1 = the stem .. 5 = all)")
    p.add_argument("--class-weights", choices=("none", "sqrt-median"), default="none",
                   help="sqrt-median: weight = sqrt(median frequency / class frequency), so thin "
                        "and rare classes count in the loss as they count in mIoU")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast (master weights stay fp32); default: on where the CPU has "
                        "BF16 instructions (AVX512-BF16, AMX), off elsewhere, where it is emulated "
                        "and several times slower")
    p.add_argument("--threads", type=clikit.int_in(0, 1024), default=0, help="torch threads (0: its default)")
    p.add_argument("--workers", type=clikit.int_in(1, 256), default=2,
                   help="processes that render/decode the data")
    p.add_argument("--eval-every", type=clikit.positive_int, default=500)
    p.add_argument("--save-every", type=clikit.positive_int, default=100)
    p.add_argument("--out", default="runs/train", type=clikit.output_dir())
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pth")
    p.add_argument("--keep-last", action=argparse.BooleanOptionalAction, default=True,
                   help="keep OUT/last.pth (what --resume needs); --no-keep-last for throw-away runs "
                        "such as search trials, so only best.pth is written")
    p.add_argument("--seed", type=clikit.int_in(0, 2**32 - 1), default=0)
    p.add_argument("--export-weights", type=clikit.output_file("a weights file to write"),
                   help="write the best weights (fp16) here when done")
    clikit.add_verbose(p)
    return p


def main(argv: list[str] | None = None) -> int:
    signals = clikit.Signals(PROG, finishing="finishing this iteration and saving the checkpoint")
    from segdata.datasets import DatasetError

    return clikit.run(PROG, build_parser(), lambda args: train(args, signals), argv, signals=signals,
                      usage=(CheckpointError, KeyError, ValueError, DatasetError))


def resolve_options(args: argparse.Namespace) -> list[str]:
    """Recipe and defaults into args; refuse combinations that contradict each other."""
    if args.val is not None and args.val_split is not None:
        raise clikit.UsageError("give --val (a separate held-out set) or --val-split (hold out part "
                                "of --data), not both")
    if args.iters is not None and args.epochs is not None:
        raise clikit.UsageError("give --iters or --epochs, not both")
    explicit_val, explicit_iters = args.val is not None, args.iters is not None
    taken = resolve(args)
    if explicit_val:
        args.val_split = None  # a recipe's hold-out gives way to an explicit --val
    if explicit_iters:
        args.epochs = None  # and its epochs to an explicit --iters
        taken = [k for k in taken if k != "epochs"]
    if args.val is None and args.val_split is None:
        args.val = "synthetic:val:100@240x480"
    if args.epochs is None and args.iters is None:
        args.iters = 3000
    return taken


@torch.enable_grad()  # whatever the caller's mode (a search's process runs many of these)
def train(args: argparse.Namespace, signals: clikit.Signals | None = None, data: TrainData | None = None,
          on_eval: Callable[[int, dict], None] | None = None) -> int:
    """One training run. `data` (already in memory) and `on_eval` (called with the iteration and
    the held-out metrics after each evaluation; may raise to stop, e.g. a pruned search trial)
    are for callers such as pspnet.search."""
    signals = signals or clikit.Signals(PROG)
    taken = resolve_options(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = get_spec(args.model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.recipe:
        chosen = ", ".join(f"{k}={getattr(args, k)}" for k in taken)
        print(f"recipe {args.recipe}: {chosen}", file=sys.stderr)
        if not args.init and not args.resume:
            print(f"note: recipe {args.recipe} transfer-learns from a checkpoint (--init); without one "
                  "the model starts from random weights", file=sys.stderr)
    if data is None:
        data = load_data(args, out)
        for note in data.notes:
            print(f"note: {note}", file=sys.stderr)
    if data.label_set != spec.label_set:
        own = spec
        spec = replace(spec, label_set=data.label_set)
        print(f"classes: the data's {spec.label_set} ({spec.num_classes}: {', '.join(spec.classes[:5])}"
              f"{' ...' if spec.num_classes > 5 else ''}) in place of {args.model}'s {own.label_set} "
              f"({own.num_classes})", file=sys.stderr)
    n_train = len(data.images)
    iters = args.iters if args.epochs is None else max(1, math.ceil(args.epochs * n_train / args.batch_size))
    crop = None if args.crop == "full" else tuple(args.crop)
    mean_bgr = tuple(spec.mean[::-1]) if spec.channel_order == "RGB" else spec.mean
    augment = Augment(crop=crop, scale=tuple(args.scale), mean_bgr=mean_bgr, strength=args.augment)
    torch.manual_seed(args.seed)
    model = create_model(spec, aux=True).train()
    start, best = 0, -1.0
    last = out / "last.pth"
    resumed = None
    if args.resume and last.is_file():
        resumed = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict({k.removeprefix("module."): v for k, v in resumed["state_dict"].items()})
        start, best = int(resumed["iteration"]), float(resumed.get("best_miou", -1.0))
        print(f"resumed from {last} at iteration {start}", file=sys.stderr)
    elif args.init:
        fresh = init_from(model, args.init)
        print(f"initialised from {args.init}; fresh: {', '.join(fresh) or 'none'}", file=sys.stderr)
    frozen = frozen_modules(model, args.freeze_bn, args.freeze_stages)
    groups = param_groups(model, frozen, tuple(args.head_lr), args.weight_decay, args.decay)
    opt = make_optimizer(args, groups)
    if resumed is not None:
        opt.load_state_dict(resumed["optimizer"])
    set_train_mode(model, frozen)

    bf16 = (cpu_has_bf16() if args.bf16 is None else args.bf16) and torch.backends.mkldnn.is_available()
    weight = class_weights(data.labels, spec.num_classes) if args.class_weights != "none" else None
    if weight is not None:
        print("class weights: " + ", ".join(f"{c} {w:.2f}" for c, w in zip(spec.classes, weight)
                                            if w > 0), file=sys.stderr)
    history_path = out / "history.jsonl"
    meta = checkpoint_meta(args, spec, data)

    signals.graceful = True  # a signal ends the run after the iteration in progress
    bar = tqdm(range(start, iters), initial=start, total=iters, desc=getattr(args, "bar_desc", "train"),
               unit="it", leave=getattr(args, "bar_leave", True))
    t0, it = time.perf_counter(), start
    train_seconds = 0.0
    recent: list[float] = []
    try:
        for it in bar:
            t_it = time.perf_counter()
            rng = np.random.default_rng([args.seed, it])  # per-iteration: resume is reproducible
            idx = rng.integers(0, n_train, args.batch_size)
            batch = [augment(data.images[i], data.labels[i], rng) for i in idx]
            if crop is None:
                xb, yb = pad_batch([b[0] for b in batch], [b[1] for b in batch], mean_bgr)
            else:
                xb, yb = np.stack([b[0] for b in batch]), np.stack([b[1] for b in batch])
            x = normalise(xb, spec)
            y = torch.from_numpy(yb).long()
            for group in opt.param_groups:
                group["lr"] = poly_lr(args.lr * group["mult"], it, iters)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                main_out, aux_out = model.forward_with_aux(x)
            size = y.shape[-2:]
            main_out = F.interpolate(main_out.float(), size, mode="bilinear", align_corners=True)
            loss_main = F.cross_entropy(main_out, y, weight=weight, ignore_index=255)
            loss = loss_main
            if args.aux_weight > 0:
                aux_out = F.interpolate(aux_out.float(), size, mode="bilinear", align_corners=True)
                loss = loss + args.aux_weight * F.cross_entropy(aux_out, y, weight=weight, ignore_index=255)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            train_seconds += time.perf_counter() - t_it
            recent.append(loss_main.item())
            if not math.isfinite(recent[-1]):
                raise FloatingPointError(f"the training loss is {recent[-1]} at iteration {it + 1}; "
                                         "lower --lr")
            bar.set_postfix(loss=f"{recent[-1]:.3f}", lr=f"{poly_lr(args.lr, it, iters):.2g}")
            done = it + 1
            if done % args.eval_every == 0 or done == iters:
                metrics = evaluate(model, spec, data.val_images, data.val_labels)
                set_train_mode(model, frozen)
                record = {"iteration": done, "epoch": round(done * args.batch_size / n_train, 3),
                          "train_loss": float(np.mean(recent)), "miou": metrics["miou"],
                          "seconds": round(time.perf_counter() - t0, 1),
                          "train_seconds": round(train_seconds, 2)}
                for key in ("road_miou", "maxf"):
                    if key in metrics:
                        record[key] = metrics[key]
                recent.clear()
                with history_path.open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
                tqdm.write(f"iter {done}: held-out mIoU {metrics['miou']:.4f}")
                if metrics["miou"] is not None and metrics["miou"] > best:
                    best = metrics["miou"]
                    save_checkpoint(out / "best.pth", model, epoch=done, miou=best, **meta)
                if on_eval is not None:
                    on_eval(done, metrics)
            if args.keep_last and (done % args.save_every == 0 or done == iters):
                save_checkpoint(last, model, epoch=done, optimizer=opt.state_dict(), iteration=done,
                                best_miou=best, **meta)
            if signals.stop.is_set():
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        if args.keep_last:
            save_checkpoint(last, model, epoch=it, optimizer=opt.state_dict(), iteration=it,
                            best_miou=best, **meta)
            print(f"\ninterrupted: state saved to {last}; continue with --resume", file=sys.stderr)
        return signals.code or clikit.EXIT_SIGINT
    finally:
        signals.graceful = False
        bar.close()
    seconds = time.perf_counter() - t0
    epochs_done = (iters - start) * args.batch_size / n_train
    summary = {"recipe": args.recipe, "model": args.model, **meta, "iterations": iters,
               "batch_size": args.batch_size, "train_samples": n_train,
               "val_samples": len(data.val_images), "epochs": round(iters * args.batch_size / n_train, 3),
               "train_seconds": round(train_seconds, 2),
               "seconds_per_epoch": round(train_seconds / epochs_done, 2) if epochs_done else None,
               "best_miou": best, "sources": data.sources, "split": data.split,
               "command": shlex.join(["python", "-m", "pspnet.train", *getattr(args, "argv", sys.argv[1:])])}
    from artefact.files import atomic_write_json

    atomic_write_json(out / "summary.json", summary)
    print(f"done: {iters - start} iterations in {seconds / 60:.1f} min, best held-out mIoU "
          f"{best:.4f}", file=sys.stderr)
    if args.export_weights:
        best_model = create_model(spec, aux=False)
        sd = read_state_dict(out / "best.pth")
        best_model.load_state_dict({k: v for k, v in sd.items() if not k.startswith("aux.")})
        save_checkpoint(args.export_weights, best_model, epoch=iters, half=True, miou=best,
                        command=summary["command"], train_minutes=round(seconds / 60, 1), **meta)
        print(f"weights written to {args.export_weights}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
