"""Rendering: the three modes, alpha, neutral ignore colour, and a legend of present classes."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.render import NEUTRAL_BGR, Renderer, present_classes
from segdata.labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE


@pytest.fixture
def scene() -> tuple[np.ndarray, np.ndarray]:
    frame = np.full((60, 100, 3), 200, np.uint8)
    labels = np.zeros((60, 100), np.uint8)  # road
    labels[:, 50:] = 13  # car
    labels[:5, :] = 255  # ignore
    return frame, labels


def test_present_classes_most_frequent_first(scene: tuple) -> None:
    _, labels = scene
    labels = labels.copy()
    labels[40:, :50] = 10  # some sky
    assert present_classes(labels, 19) == [13, 0, 10]  # 255 (ignore) is never a class


def test_modes_and_colours(scene: tuple) -> None:
    frame, labels = scene
    mask = Renderer(CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, mode="mask", legend=False).render(frame, labels)
    assert mask.shape == frame.shape
    assert tuple(mask[30, 10]) == tuple(CITYSCAPES_PALETTE[0][::-1])  # palette is RGB, images BGR
    assert tuple(mask[30, 90]) == tuple(CITYSCAPES_PALETTE[13][::-1])
    assert tuple(mask[2, 10]) == NEUTRAL_BGR  # ignore drawn neutral grey
    sbs = Renderer(CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, mode="side-by-side", legend=False)
    sbs = sbs.render(frame, labels)
    assert sbs.shape == (60, 200, 3)
    assert np.array_equal(sbs[:, :100], frame) and np.array_equal(sbs[:, 100:], mask)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_overlay_alpha(scene: tuple, alpha: float) -> None:
    frame, labels = scene
    r = Renderer(CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, alpha=alpha, legend=False)
    out = r.render(frame, labels).astype(int)
    expected = (1 - alpha) * 200 + alpha * np.array(CITYSCAPES_PALETTE[13][::-1])
    assert np.abs(out[30, 90] - expected).max() <= 1


def test_legend_lists_only_present_classes(scene: tuple) -> None:
    frame, labels = scene
    r = Renderer(CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, mode="mask")
    out = r.render(frame, labels)
    plain = Renderer(CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, mode="mask", legend=False).render(frame, labels)
    changed = np.argwhere((out != plain).any(2))
    assert changed.size and changed[:, 0].max() < 40 and changed[:, 1].min() >= 4  # top-left box
    legend = r._legend((0, 13), 0, 12)  # cached per class set
    assert legend is r._legend((0, 13), 0, 12)
    assert legend.shape[0] == 2 * 12 + 4  # one row per present class, none for ignore


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="--visualize"):
        Renderer(CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, mode="heatmap")
    with pytest.raises(ValueError, match="--alpha"):
        Renderer(CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, alpha=1.5)
