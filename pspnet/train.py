"""`python -m pspnet.train`: semseg's recipe (SGD, poly lr, aux loss 0.4, scale/rotate/flip/crop).

Also transfer learning (`--init` a checkpoint with another class count: the classifier is
re-initialised, everything else loads) and resume (`--resume` continues from `last.pth`,
losing at most `--save-every` iterations). Checkpoints are semseg's format.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

import clikit
from pspnet.build import create_model
from pspnet.errors import CheckpointError
from pspnet.model import PSPNet
from pspnet.transforms import Augment
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


def _load_sample(args: tuple[str, int]) -> tuple[np.ndarray, np.ndarray]:
    from segdata.datasets import open_dataset

    source, index = args
    sample = open_dataset(source)[index]
    return sample.image, sample.label


def load_all(source: str, workers: int, desc: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Decode/render a whole (small) set into memory once; epochs then cost no I/O."""
    from segdata.datasets import open_dataset

    n = len(open_dataset(source))
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        pairs = list(tqdm(pool.map(_load_sample, [(source, i) for i in range(n)], chunksize=16),
                          total=n, desc=desc, unit="img"))
    return [p[0] for p in pairs], [p[1] for p in pairs]


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
    from segdata.metrics import ConfusionMatrix

    model.eval()
    cm = ConfusionMatrix(spec.num_classes)
    for i in range(0, len(images), batch):
        x = normalise(np.stack(images[i:i + batch]), spec)
        logits = F.interpolate(model(x), size=x.shape[-2:], mode="bilinear", align_corners=True)
        for pred, target in zip(logits.argmax(1).to(torch.uint8).numpy(), labels[i:i + batch]):
            cm.update(pred, target)
    model.train()
    return cm.to_dict(list(spec.classes))


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


def build_parser() -> argparse.ArgumentParser:
    p = clikit.parser(f"python -m {PROG}", __doc__,
                      "example (the shipped demo model):\n  python -m pspnet.train --model demo --iters 3000 "
                      "--out runs/demo --export-weights pspnet/weights/demo_synthetic.pth\n"
                      "Ctrl-C / SIGTERM: the iteration in progress finishes and OUT/last.pth is saved "
                      "(continue with --resume)\n" + clikit.EXIT_CODES_HELP)
    p.add_argument("--model", default="demo", type=clikit.non_empty("a model zoo name"),
                   help="zoo name; its class count is the target")
    p.add_argument("--data", default="synthetic:train:2000@240x480", type=clikit.non_empty("a data source"),
                   help="training set")
    p.add_argument("--val", default="synthetic:val:100@240x480", type=clikit.non_empty("a data source"),
                   help="held-out set")
    p.add_argument("--init", type=clikit.input_file("a checkpoint file"),
                   help="checkpoint to start from (transfer learning)")
    p.add_argument("--iters", type=clikit.positive_int, default=3000)
    p.add_argument("--batch-size", type=clikit.int_in(1, 4096), default=8)
    p.add_argument("--crop", type=clikit.hw_size, default="240x240", metavar="HxW", help="training crop HxW")
    p.add_argument("--scale", default="0.5,2.0", type=clikit.csv_numbers(greater_than=0, count=2),
                   help="random scale range")
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    p.add_argument("--lr", type=clikit.float_in(what="a learning rate", above=0), default=0.01)
    p.add_argument("--momentum", type=clikit.float_in(0, 0.999, "a momentum"), default=0.9)
    p.add_argument("--weight-decay", type=clikit.float_in(0, what="a weight decay"), default=1e-4)
    p.add_argument("--aux-weight", type=clikit.float_in(0, what="a loss weight"), default=0.4)
    p.add_argument("--class-weights", choices=("none", "sqrt-median"), default="none",
                   help="sqrt-median: weight = sqrt(median frequency / class frequency), so thin "
                        "and rare classes count in the loss as they count in mIoU")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 autocast on CPUs that have it (master weights stay fp32)")
    p.add_argument("--threads", type=clikit.int_in(0, 1024), default=0, help="torch threads (0: its default)")
    p.add_argument("--workers", type=clikit.int_in(1, 256), default=2,
                   help="processes that render/decode the data")
    p.add_argument("--eval-every", type=clikit.positive_int, default=500)
    p.add_argument("--save-every", type=clikit.positive_int, default=100)
    p.add_argument("--out", default="runs/train", type=clikit.output_dir())
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pth")
    p.add_argument("--seed", type=clikit.int_in(0, 2**32 - 1), default=0)
    p.add_argument("--export-weights", type=clikit.output_file("a weights file to write"),
                   help="write the best weights (fp16) here when done")
    clikit.add_verbose(p)
    return p


def main(argv: list[str] | None = None) -> int:
    signals = clikit.Signals(PROG, finishing="finishing this iteration and saving the checkpoint")
    return clikit.run(PROG, build_parser(), lambda args: train(args, signals), argv, signals=signals,
                      usage=(CheckpointError, KeyError, ValueError))


def train(args: argparse.Namespace, signals: clikit.Signals | None = None) -> int:
    signals = signals or clikit.Signals(PROG)
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = get_spec(args.model)
    crop = tuple(args.crop)
    augment = Augment(crop=crop, scale=tuple(args.scale),
                      mean_bgr=tuple(spec.mean[::-1]) if spec.channel_order == "RGB" else spec.mean)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    model = create_model(spec, aux=True).train()
    params = model.parameters()
    opt = (torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
           if args.optimizer == "sgd" else
           torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay))
    start, best = 0, -1.0
    last = out / "last.pth"
    if args.resume and last.is_file():
        ckpt = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict({k.removeprefix("module."): v for k, v in ckpt["state_dict"].items()})
        opt.load_state_dict(ckpt["optimizer"])
        start, best = int(ckpt["iteration"]), float(ckpt.get("best_miou", -1.0))
        print(f"resumed from {last} at iteration {start}", file=sys.stderr)
    elif args.init:
        fresh = init_from(model, args.init)
        print(f"initialised from {args.init}; fresh: {', '.join(fresh) or 'none'}", file=sys.stderr)

    images, labels = load_all(args.data, args.workers, "training set")
    val_images, val_labels = load_all(args.val, args.workers, "held-out set")
    bf16 = args.bf16 and torch.backends.mkldnn.is_available()
    weight = class_weights(labels, spec.num_classes) if args.class_weights != "none" else None
    if weight is not None:
        print("class weights: " + ", ".join(f"{c} {w:.2f}" for c, w in zip(spec.classes, weight)
                                            if w > 0), file=sys.stderr)
    history_path = out / "history.jsonl"

    signals.graceful = True  # a signal ends the run after the iteration in progress
    bar = tqdm(range(start, args.iters), initial=start, total=args.iters, desc="train", unit="it")
    t0, it = time.perf_counter(), start
    recent: list[float] = []
    try:
        for it in bar:
            rng = np.random.default_rng([args.seed, it])  # per-iteration: resume is reproducible
            idx = rng.integers(0, len(images), args.batch_size)
            batch = [augment(images[i], labels[i], rng) for i in idx]
            x = normalise(np.stack([b[0] for b in batch]), spec)
            y = torch.from_numpy(np.stack([b[1] for b in batch])).long()
            lr = poly_lr(args.lr, it, args.iters)
            for group in opt.param_groups:
                group["lr"] = lr
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                main_out, aux_out = model.forward_with_aux(x)
            size = y.shape[-2:]
            main_out = F.interpolate(main_out.float(), size, mode="bilinear", align_corners=True)
            aux_out = F.interpolate(aux_out.float(), size, mode="bilinear", align_corners=True)
            loss_main = F.cross_entropy(main_out, y, weight=weight, ignore_index=255)
            loss = loss_main + args.aux_weight * F.cross_entropy(aux_out, y, weight=weight,
                                                                 ignore_index=255)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            recent.append(loss_main.item())
            bar.set_postfix(loss=f"{recent[-1]:.3f}", lr=f"{lr:.4f}")
            done = it + 1
            if done % args.eval_every == 0 or done == args.iters:
                metrics = evaluate(model, spec, val_images, val_labels)
                record = {"iteration": done, "train_loss": float(np.mean(recent)),
                          "miou": metrics["miou"], "seconds": round(time.perf_counter() - t0, 1)}
                recent.clear()
                with history_path.open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
                tqdm.write(f"iter {done}: held-out mIoU {metrics['miou']:.4f}")
                if metrics["miou"] > best:
                    best = metrics["miou"]
                    save_checkpoint(out / "best.pth", model, epoch=done, miou=best)
            if done % args.save_every == 0 or done == args.iters:
                save_checkpoint(last, model, epoch=done, optimizer=opt.state_dict(), iteration=done,
                                best_miou=best)
            if signals.stop.is_set():
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        save_checkpoint(last, model, epoch=it, optimizer=opt.state_dict(), iteration=it,
                        best_miou=best)
        print(f"\ninterrupted: state saved to {last}; continue with --resume", file=sys.stderr)
        return signals.code or clikit.EXIT_SIGINT
    finally:
        signals.graceful = False
        bar.close()
    seconds = time.perf_counter() - t0
    print(f"done: {args.iters - start} iterations in {seconds / 60:.1f} min, best held-out mIoU "
          f"{best:.4f}", file=sys.stderr)
    if args.export_weights:
        best_model = create_model(spec, aux=False)
        sd = read_state_dict(out / "best.pth")
        best_model.load_state_dict({k: v for k, v in sd.items() if not k.startswith("aux.")})
        save_checkpoint(args.export_weights, best_model, epoch=args.iters, half=True, miou=best,
                        command=shlex.join(["python", "-m", "pspnet.train", *sys.argv[1:]]),
                        train_minutes=round(seconds / 60, 1))
        print(f"weights written to {args.export_weights}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
