"""The declared search space: which pspnet.train options a trial varies, and over what.

One table, so the space is reviewed in one place, written beside the results (space.json) and
part of a study's identity (a study is never continued with another space). Each entry maps
one Optuna distribution to one pspnet.train option, so every trial is an ordinary training
command that can be rerun by hand (its argv is stored with the trial).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution


@dataclass(frozen=True)
class Param:
    name: str
    flag: str  # the pspnet.train option it sets
    kind: str  # float | int | choice
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()
    why: str = ""

    def distribution(self) -> BaseDistribution:
        if self.kind == "float":
            return FloatDistribution(self.low, self.high, log=self.log)
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high))
        return CategoricalDistribution(self.choices)


SPACE: tuple[Param, ...] = (
    Param("lr", "--lr", "float", 1e-5, 1e-2, log=True, why="base learning rate (poly schedule)"),
    Param("weight_decay", "--weight-decay", "float", 1e-6, 1e-3, log=True, why="L2 weight decay"),
    Param("optimizer", "--optimizer", "choice", choices=("sgd", "adam", "adamw"),
          why="semseg's momentum SGD, the fork's Adam, or AdamW"),
    Param("batch_size", "--batch-size", "choice", choices=(2, 4, 8), why="images per step"),
    Param("crop", "--crop", "choice", choices=(0.5, 0.75, 1.0),
          why="training crop as a fraction of the (smallest) training image; 1.0 = whole images"),
    Param("freeze_stages", "--freeze-stages", "int", 0, 4,
          why="backbone stages kept as loaded (0 none, 1 the stem, ... 4 up to layer3)"),
    Param("aux_weight", "--aux-weight", "float", 0.0, 0.8, why="weight of the auxiliary loss"),
    Param("augment", "--augment", "float", 0.0, 1.0,
          why="augmentation strength (scale/rotate/blur/flip): 0 crop only, 1 semseg's"),
)


def describe(space: tuple[Param, ...] = SPACE) -> list[dict[str, Any]]:
    """JSON-ready description (space.json, the study's identity, --show-space)."""
    out = []
    for p in space:
        d = {k: v for k, v in asdict(p).items() if v not in (None, (), "", False) or k == "name"}
        if "choices" in d:
            d["choices"] = list(d["choices"])
        out.append(d)
    return out


def suggest(trial: optuna.Trial, space: tuple[Param, ...] = SPACE) -> dict[str, Any]:
    """The trial's values (a retried trial gets its earlier values back from Optuna)."""
    values: dict[str, Any] = {}
    for p in space:
        if p.kind == "float":
            values[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log)
        elif p.kind == "int":
            values[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high))
        else:
            values[p.name] = trial.suggest_categorical(p.name, list(p.choices))
    return values


def to_argv(values: dict[str, Any], image_hw: tuple[int, int], space: tuple[Param, ...] = SPACE
            ) -> list[str]:
    """pspnet.train options for these values; `image_hw` is the smallest training image (after
    upsampling), which the crop fraction refers to."""
    argv: list[str] = []
    for p in space:
        value = values[p.name]
        if p.name == "crop":
            if float(value) >= 1.0:
                value = "full"
            else:
                value = f"{max(8, round(image_hw[0] * value))}x{max(8, round(image_hw[1] * value))}"
        argv += [p.flag, f"{value:.6g}" if isinstance(value, float) else str(value)]
    return argv
