"""What each of `python -m build_engine`'s options accepts: one rule per BuildOptions field.

The command's parser (build_engine/cli.py) takes every flag's `type=` / `choices=` from RULES
(`**arg("calib_images")`), and BuildOptions checks a Python caller's values (pspnet_rt.build,
build_engine.api.build) with the same objects (clikit.fields.check_fields). --stop-after's choices
are the build's own step names (build_engine.api.STEPS), added there. Torch-free.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Any

import clikit
from artefact.fields import MAX_SIDE
from clikit.fields import Rule


@clikit.option_type("a checkpoint file, a TF checkpoint prefix or its folder", __file__,
                    ["", "/", "/nonexistent/pspnet-rt-fault"], bad_values=(3,))
def weights_location(value: str) -> str:
    """An existing file or folder, or a TF checkpoint prefix (`model.ckpt-N`, whose files exist)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("expected a checkpoint, got an empty path")
    if not os.path.exists(value) and not os.path.isfile(value + ".index"):
        raise argparse.ArgumentTypeError(f"{value} does not exist (nor {value}.index); expected a checkpoint "
                                         "file, a TF checkpoint prefix model.ckpt-N, or its folder")
    if os.path.isdir(value) and not any(name == "checkpoint" or name.endswith(".index")
                                        for name in os.listdir(value)):
        raise argparse.ArgumentTypeError(f"{value} is a folder without a TensorFlow checkpoint (no "
                                         "`checkpoint` file, no *.index); expected a checkpoint file or a "
                                         "TF checkpoint folder")
    return value


def three_numbers(what: str, positive: bool = False) -> clikit.OptionType:
    """`A,B,C` (or three numbers from Python): finite, > 0 where `positive`, one per channel (any
    sign: a mean)."""

    def typed(numbers: Any) -> tuple[float, float, float]:
        if (isinstance(numbers, (str, bytes)) or not isinstance(numbers, (tuple, list)) or len(numbers) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                           for v in numbers)):
            raise argparse.ArgumentTypeError(f"{what} must be three finite numbers A,B,C, got {numbers!r}")
        if positive and min(numbers) <= 0:
            raise argparse.ArgumentTypeError(f"{what} must be > 0 (the input is divided by it), "
                                             f"got {numbers!r}")
        return tuple(float(v) for v in numbers)  # type: ignore[return-value]

    def parse(value: str) -> tuple[float, float, float]:
        try:
            numbers = tuple(float(v) for v in value.replace(" ", "").split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be three numbers A,B,C, got {value!r}") from None
        return typed(numbers)

    bad = ["", "1,2", "a,b,c", "1,2,nan"] + (["1,0,1"] if positive else [])
    bad_values = [(1.0, 2.0), (1.0, 2.0, math.nan), ("a", "b", "c"), 1.0]
    bad_values += [(1.0, 0.0, 1.0)] if positive else []
    return clikit.OptionType(parse, what, "1,1,1", bad, typed, bad_values)


COUNT = clikit.int_in(1, 100_000)

RULES: dict[str, Rule] = {
    "model": Rule("--model", clikit.non_empty("a model zoo name")),
    "weights": Rule("--weights", weights_location),
    "classes": Rule("--classes", clikit.non_empty("a label-set file or name")),
    "mean": Rule("--mean", three_numbers("the input mean", positive=False)),
    "std": Rule("--std", clikit.csv_numbers(greater_than=0.0, count=3)),
    "precision": Rule("--precision", choices=("auto", "fp32", "fp16", "int8")),
    "backend": Rule("--backend", choices=("auto", "tensorrt", "openvino", "onnxruntime")),
    "input_size": Rule("--input-size", clikit.size_type("HxW", max_side=MAX_SIDE)),
    "calib_data": Rule("--calib-data", clikit.non_empty("a calibration source")),
    "calib_images": Rule("--calib-images", COUNT),
    "calib_method": Rule("--calib-method", choices=("entropy", "minmax", "percentile")),
    "eval_data": Rule("--eval-data", clikit.non_empty("an evaluation source")),
    "eval_images": Rule("--eval-images", COUNT),
    "max_miou_drop": Rule("--max-miou-drop", clikit.float_in(0, 100, "mIoU points")),
    "workspace_mb": Rule("--workspace-mb", clikit.int_in(1, 1 << 20)),
    "output": Rule("--output", clikit.output_dir("a folder for the artefact")),
}


def arg(field: str) -> dict[str, Any]:
    """The add_argument keywords of a field's rule: `type=` or `choices=`."""
    rule = RULES[field]
    return {"choices": rule.choices} if rule.choices is not None else {"type": rule.type}
