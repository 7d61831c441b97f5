"""What a checkpoint written by `python -m pspnet.train` tells a build, so `--weights best.pth`
needs nothing else: the zoo model it was trained as, its label set (a 3-class KITTI road model
is not the demo's 19 Cityscapes classes), and its own data, whose training list calibrates INT8
and whose held-out list is the accuracy gate's ground truth. Every fact is a default: --model,
--classes, --calib-data and --eval-data given on the command line win. Checkpoints from anywhere
else (semseg, a bare state_dict) carry none of this and build as before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segdata.label_sets import LabelSet, LabelSetError, get_label_set, label_set_from_dict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainedFacts:
    model: str | None
    labels: LabelSet | None
    calib_data: str | None  # the training part (a split list or a data source)
    eval_data: str | None  # the held-out part
    recipe: str | None


def trained_facts(found: Any) -> TrainedFacts | None:
    """The facts of a pspnet.train checkpoint (`found`: pspnet.weight_formats' answer), or None."""
    from pspnet.weight_formats import PYTORCH

    if found is None or found.kind != PYTORCH:
        return None
    from pspnet.weights import checkpoint_facts

    facts = checkpoint_facts(found.path)
    if "label_set" not in facts and "labels" not in facts:
        return None
    data = facts.get("data") if isinstance(facts.get("data"), dict) else {}
    return TrainedFacts(model=_str(facts.get("zoo_model")),
                        labels=_labels(facts, str(found.path)),
                        calib_data=_str(data.get("train")), eval_data=_str(data.get("val")),
                        recipe=_str(facts.get("recipe")))


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _labels(facts: dict, where: str) -> LabelSet | None:
    """The whole label set when the checkpoint has it; else (checkpoints from before it did) the
    built-in of its name when the class count agrees."""
    if isinstance(facts.get("labels"), dict):
        try:
            return label_set_from_dict(facts["labels"], f"{where} (its label set)")
        except LabelSetError as exc:
            log.warning("ignoring the label set recorded in the checkpoint: %s", exc)
    name, classes = facts.get("label_set"), facts.get("classes")
    if isinstance(name, str):
        try:
            known = get_label_set(name)
        except LabelSetError:
            return None
        if not isinstance(classes, list) or len(classes) == known.num_classes:
            return known
    return None


def present(source: str | None) -> bool:
    """Whether a recorded data source is on this machine (a checkpoint may travel without it)."""
    if not source:
        return False
    if source.startswith("synthetic"):
        return True
    layout, sep, rest = source.partition(":")
    return Path(rest if sep and "/" not in layout else source).exists()
