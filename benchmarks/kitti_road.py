"""`python -m benchmarks.kitti_road`: the KITTI fork's recipe beside the native-size recipe.

On a SYNTHETIC data set in the KITTI road data_road layout and colours (segdata/kitti_road_synth:
the project's street generator, road -> magenta, sky -> black, the rest -> red), because KITTI
itself cannot be downloaded here. The figures show the recipes run end to end and how they
compare on that data; they are not KITTI road results.

For each recipe (pspnet/recipes.py): a real `python -m pspnet.train --recipe R` from the demo
model's shipped weights (the stand-in for the fork's Cityscapes checkpoint), on the same 80/20
hold-out; then, on the held-out images at their own resolution (the fork's predictions are
made at 2x and brought back, as its upsampled inputs require), mIoU over the fork's 3 classes,
road / not-road mIoU inside the annotated area, and the KITTI devkit's MaxF (image plane);
time per epoch; and what `python -m build_engine --weights best.pth --precision int8` makes of
the checkpoint (its label set, calibration list and the accuracy gate's held-out list come from
the checkpoint itself): the gate's FP32 and INT8 mIoU, or the exit code and last line verbatim.

    python -m benchmarks.kitti_road --train 40 --size 96x320 --out results/kitti_road
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

import clikit
from benchmarks.common import (
    environment,
    fmt,
    header_block,
    markdown_table,
    prepare_out,
    run_benchmark,
    text_table,
    write_json,
    write_text,
)

PROG = "benchmarks.kitti_road"
RECIPES = ("kitti-road-fork", "kitti-road-native")
FORK_CROP_OF_HEIGHT = 713 / 750  # the fork's 713x713 crops of its 750-high (2x) images


def build_parser() -> argparse.ArgumentParser:
    p = clikit.parser(f"python -m {PROG}", __doc__, clikit.EXIT_CODES_HELP)
    p.add_argument("--train", type=clikit.int_in(5, 100000), default=40,
                   help="synthetic data_road training images (80/20 hold-out of them)")
    p.add_argument("--size", type=clikit.size_type("HxW", min_side=32), default="96x320",
                   help="nominal image size (KITTI's 375x1242 at about 1/4; categories differ slightly)")
    p.add_argument("--epochs", type=clikit.float_in(what="epochs", above=0), default=3.5,
                   help="training epochs per recipe (the fork: 3.5)")
    p.add_argument("--threads", type=clikit.int_in(0, 1024), default=0)
    p.add_argument("--skip-build", action="store_true", help="leave out the build_engine step")
    p.add_argument("--out", type=clikit.output_dir(), default="results/kitti_road")
    clikit.add_verbose(p)
    return p


def _evaluate(best: Path, val_list: Path, upsample: float) -> dict[str, Any]:
    """The checkpoint on the held-out images at their own size (probabilities resized back)."""
    import cv2
    import torch
    import torch.nn.functional as F

    from pspnet.build import create_model
    from pspnet.train import normalise
    from pspnet.weights import read_state_dict
    from pspnet.zoo import get_spec
    from segdata.datasets import open_dataset
    from segdata.road_metrics import RoadScores

    spec = replace(get_spec("demo"), label_set="kitti-road")
    model = create_model(spec)
    state = read_state_dict(best)
    model.load_state_dict({k: v.float() for k, v in state.items() if not k.startswith("aux.")})
    model.eval()
    scores = RoadScores("kitti-road", spec.num_classes)
    for sample in open_dataset(str(val_list)):
        h, w = sample.label.shape
        image = sample.image if upsample == 1 else cv2.resize(
            sample.image, (round(w * upsample), round(h * upsample)), interpolation=cv2.INTER_LINEAR)
        with torch.no_grad():
            logits = model(normalise(image[None], spec))
            probs = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=True).softmax(1)[0]
        scores.update(probs.numpy(), sample.label)
    return scores.result(spec.classes)


def _build(best: Path, size: tuple[int, int], out: Path) -> dict[str, Any]:
    """`build_engine --weights best.pth` as a user types it: the label set, the calibration list and
    the gate's held-out list all come from the checkpoint (build_engine/trained.py)."""
    h, w = size
    cmd = [sys.executable, "-m", "build_engine", "--weights", str(best), "--precision", "int8",
           "--backend", "onnxruntime", "--input-size", f"{h + (1 - h % 8) % 8}x{w + (1 - w % 8) % 8}",
           "--output", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip() and "it/s]" not in ln]
    result = {"command": "python -m build_engine " + " ".join(cmd[3:]), "exit_code": proc.returncode,
              "last_line": lines[-1] if lines else ""}
    printed = proc.stdout.strip().splitlines()
    manifest = Path(printed[-1]) if proc.returncode == 0 and printed else None
    if manifest is not None and manifest.is_file():
        data = json.loads(manifest.read_text())
        gate = data.get("accuracy", {}).get("gate", {})
        result.update(artefact=manifest.name, classes=data.get("classes"), label_set=data.get("label_set"),
                      eval_data=data.get("accuracy", {}).get("eval_data", {}).get("source"),
                      fp32_miou=gate.get("fp32_miou"), int8_miou=gate.get("miou"),
                      drop_points=gate.get("miou_drop_points"), gate_passed=gate.get("passed"))
    return result


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    from pspnet.train import main as train_main
    from pspnet.zoo import get_spec
    from segdata.kitti_road_synth import write_data_road

    out = prepare_out(args.out)
    env = environment()
    h, w = args.size
    data = write_data_road(out / "data", n_train=args.train, n_test=0, height=h, width=w)
    init = get_spec("demo").weights_path
    rows = []
    for recipe in RECIPES:
        run_dir = out / recipe
        argv = ["--recipe", recipe, "--data", str(data), "--init", str(init), "--epochs", f"{args.epochs:g}",
                "--out", str(run_dir), "--eval-every", "1000000"]
        if recipe == "kitti-road-fork":  # the fork's crop, scaled with the image
            side = round(FORK_CROP_OF_HEIGHT * 2 * h)
            argv += ["--crop", f"{side}x{side}"]
        if args.threads:
            argv += ["--threads", str(args.threads)]
        code = train_main(argv)
        if code:
            raise clikit.Reported(code)
        summary = json.loads((run_dir / "summary.json").read_text())
        upsample = 2.0 if recipe == "kitti-road-fork" else 1.0
        scores = _evaluate(run_dir / "best.pth", run_dir / "split" / "val.txt", upsample)
        size = (round(h * upsample), round(w * upsample))
        build = None if args.skip_build else _build(run_dir / "best.pth", size, out / "artefacts" / recipe)
        rows.append({"recipe": recipe, "train_command": summary["command"],
                     "iterations": summary["iterations"],
                     "epochs": summary["epochs"], "seconds_per_epoch": summary["seconds_per_epoch"],
                     "train_samples": summary["train_samples"], "val_samples": summary["val_samples"],
                     "miou_3class": scores["miou"], "road_miou": scores["road_miou"],
                     "road_iou": scores["road_iou"], "maxf": scores["maxf"],
                     "maxf_detail": scores["maxf_detail"], "per_class": scores["per_class"], "build": build})
    result = {"benchmark": "kitti_road", "synthetic": True, "command": command, "environment": env,
              "data": {"kind": "SYNTHETIC data_road (segdata.kitti_road_synth)", "train_images": args.train,
                       "size": f"{h}x{w}", "split": "80/20, seed 0"}, "results": rows}
    write_json(out / "kitti_road.json", result)
    write_text(out / "kitti_road.md", _markdown(result))
    _figure(result, out / "kitti_road.png")
    print(text_table(*_table(rows)))
    return result


def _table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["recipe", "3-class mIoU", "road/not-road mIoU", "road MaxF", "s/epoch", "iterations",
              "build_engine --weights best.pth (INT8 + gate)"]
    body = []
    for r in rows:
        b = r["build"]
        if b is None:
            built = "not run"
        elif b["exit_code"] == 0 and b.get("int8_miou") is not None:
            built = (f"ok, {len(b['classes'])} classes ({b['label_set']}); gate on the held-out list: "
                     f"mIoU FP32 {100 * b['fp32_miou']:.2f} -> INT8 {100 * b['int8_miou']:.2f} "
                     f"(drop {b['drop_points']:.2f} points, {'passed' if b['gate_passed'] else 'failed'})")
        else:
            built = ("ok: " if b["exit_code"] == 0 else f"exit {b['exit_code']}: ") + b["last_line"][:160]
        pct = [fmt(100 * r[k] if r[k] is not None else None, ".2f")
               for k in ("miou_3class", "road_miou", "maxf")]
        body.append([r["recipe"], *pct,
                     fmt(r["seconds_per_epoch"], ".1f"), str(r["iterations"]), built.replace("|", "/")])
    return header, body


def _markdown(result: dict) -> str:
    header, body = _table(result["results"])
    d = result["data"]
    return (header_block("KITTI road recipes on a SYNTHETIC data_road set", result["environment"],
                         result["command"])
            + f"\n**Synthetic data**: {d['train_images']} images in the KITTI road data_road layout and "
            f"colours made by the project's street generator at about {d['size']} (not KITTI; its "
            f"figures say nothing about KITTI road accuracy), hold-out {d['split']}. Both recipes start "
            "from the demo model's shipped weights (trained on the same generator's Cityscapes labels) "
            "in place of the fork's Cityscapes checkpoint. Metrics on the held-out images at their own "
            "size, in percent; MaxF is the KITTI devkit's, in the image plane; s/epoch counts training "
            "steps only. The build column is `build_engine --weights best.pth --precision int8` with no "
            "data flags: its label set, calibration list and held-out list come from the checkpoint; its "
            "gate scores FP32 and INT8 on the held-out images at the artefact's one input size (the "
            "fused resize), so its FP32 mIoU differs a little from the first column's.\n\n"
            + markdown_table(header, body, "lrrrrrl") + "\n")


def _figure(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["results"]
    names = ["3-class mIoU", "road/not-road mIoU", "road MaxF"]
    keys = ["miou_3class", "road_miou", "maxf"]
    x = np.arange(len(names))
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [3, 1]})
    for i, r in enumerate(rows):
        ax.bar(x + i * 0.38, [100 * (r[k] or 0) for k in keys], 0.38, label=r["recipe"])
        ax2.bar(i, r["seconds_per_epoch"] or 0, 0.6, label=r["recipe"])
    ax.set_xticks(x + 0.19, names)
    ax.set_ylabel("% on held-out (SYNTHETIC data_road)")
    ax.legend(loc="lower right")
    ax2.set_xticks(range(len(rows)), [r["recipe"].replace("kitti-road-", "") for r in rows])
    ax2.set_ylabel("training seconds per epoch")
    fig.suptitle("KITTI fork recipe vs native size, synthetic KITTI-road-layout data")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    return run_benchmark(PROG, build_parser(), run, lambda result: None, argv)


if __name__ == "__main__":
    raise SystemExit(main())
