"""The evaluation protocol as a seam: any predictor plugs in as a Model, one pass scores them all."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segdata.evaluation import Model, Protocol, agreement, confusion, evaluate
from segdata.frames import labels_to_size, to_model_input
from segdata.metrics import ConfusionMatrix

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class _Sample:
    image: np.ndarray
    label: np.ndarray | None


def _samples() -> list[_Sample]:
    rng = np.random.default_rng(3)
    out = []
    for i in range(4):
        image = np.repeat(np.repeat(rng.integers(0, 255, (6, 8, 3), np.uint8), 10, 0), 10, 1)
        label = (image[..., 0] > 128).astype(np.uint8)
        label[:5] = 255  # ignored pixels
        out.append(_Sample(image, label if i != 2 else None))  # one unlabelled sample
    return out


def test_evaluate_scores_every_model_on_the_same_samples() -> None:
    exact = Model("exact", labels=lambda x: (x[..., 0] > 128).astype(np.uint8))
    zeros = Model("zeros", labels=lambda x: np.zeros(x.shape[:2], np.uint8))
    protocol = Protocol("whole", (30, 40), (0.0, 0.0, 0.0))
    samples = _samples()
    result = evaluate([exact, zeros], samples, protocol, num_classes=2, reference="exact")
    assert (result.images, result.unlabelled, result.names) == (3, 1, ["exact", "zeros"])
    # the same numbers by hand: resize in, predict, nearest back, one matrix over the set
    cm, preds, refs = ConfusionMatrix(2), [], []
    for s in samples:
        if s.label is not None:
            ref = labels_to_size(exact.labels(to_model_input(s.image, 30, 40)), *s.label.shape)
            cm.update(ref, s.label)
            refs.append(ref)
            preds.append(np.zeros_like(ref))
    assert result.scores["exact"].cm.miou() == cm.miou() > 0.9
    assert np.array_equal(result.scores["zeros"].cm.matrix,
                          confusion(preds, [s.label for s in samples if s.label is not None], 2).matrix)
    assert result.scores["zeros"].agreement == agreement(preds, refs) < 1
    assert result.scores["exact"].agreement is None  # the reference is not compared with itself


def test_the_protocol_imports_without_torch() -> None:
    code = ("import sys, segdata.evaluation\n"
            "print(any(m == 'torch' or m.startswith('torch.') for m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr
