"""The shipped demo model: committed, small, and as accurate on held-out scenes as measured."""

from __future__ import annotations

import numpy as np
import torch

from pspnet.build import load_model
from pspnet.train import evaluate
from pspnet.zoo import DEMO_MODEL, WEIGHTS_DIR, get_spec
from segdata.datasets import open_dataset

# Issue 3's bar, on the full held-out split that docs/training.md reports (0.8517 measured): a
# smaller sample is noisier than the margin (24 scenes measure 0.848).
HELD_OUT = 100
MIOU_FLOOR = 0.85


def test_demo_weights_are_committed_and_small():
    spec = get_spec(DEMO_MODEL)
    assert spec.weights_path is not None and spec.weights_path.is_file()
    total = sum(p.stat().st_size for p in WEIGHTS_DIR.glob("*") if p.is_file())
    assert total <= 15 * 1024 * 1024


def test_demo_model_miou_on_held_out_scenes():
    """Scenes from the validation seed range, never seen in training (see segdata.synthetic)."""
    spec = get_spec(DEMO_MODEL)
    model, info = load_model(spec)
    assert info["source"] == "file"
    h, w = spec.input_size
    data = open_dataset(f"synthetic:val:{HELD_OUT}@{h}x{w}")
    images = [s.image for s in data]
    labels = [s.label for s in data]
    torch.set_num_threads(2)
    metrics = evaluate(model, spec, images, labels)
    assert metrics["miou"] >= MIOU_FLOOR, metrics
    assert np.isfinite(metrics["miou"])
