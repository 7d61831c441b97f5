"""The synthetic street-scene generator: determinism, exact labels, clips, resolution independence."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from segdata.synthetic import SPLITS, StreetClip, render_scene, split_seeds

H, W = 60, 120
REQUIRED = {0: "road", 1: "sidewalk", 2: "building", 4: "fence", 5: "pole", 7: "traffic sign",
            8: "vegetation", 9: "terrain", 10: "sky", 11: "person", 13: "car"}


def test_same_seed_same_bytes_different_seeds_differ() -> None:
    a_img, a_lab = render_scene(7, H, W)
    b_img, b_lab = render_scene(7, H, W)
    assert a_img.dtype == np.uint8 and a_img.shape == (H, W, 3)
    assert a_lab.dtype == np.uint8 and a_lab.shape == (H, W)
    assert a_img.tobytes() == b_img.tobytes() and a_lab.tobytes() == b_lab.tobytes()
    c_img, c_lab = render_scene(8, H, W)
    assert a_img.tobytes() != c_img.tobytes() and a_lab.tobytes() != c_lab.tobytes()


def test_labels_valid_sky_on_top_road_at_bottom() -> None:
    top_sky = []
    for seed in range(8):
        _, lab = render_scene(seed, H, W)
        assert lab.max() <= 18, "every pixel gets a real Cityscapes trainId, no ignore"
        top = lab[:3] == 10
        assert top.any(), f"seed {seed}: no sky in the top rows"
        top_sky.append(top.mean())
        bottom = lab[-3:, W // 2 - 3: W // 2 + 3]
        assert (bottom == 0).all(), f"seed {seed}: road expected at the bottom centre"
    # Tall buildings may hide much of it in a street canyon, but on average the top is sky.
    assert np.mean(top_sky) > 0.4


def test_required_classes_appear_over_a_few_seeds() -> None:
    seen: set[int] = set()
    for seed in range(12):
        seen |= set(np.unique(render_scene(seed, 120, 240)[1]).tolist())
    missing = [name for cid, name in REQUIRED.items() if cid not in seen]
    assert not missing, f"classes never drawn: {missing}"


def test_clip_random_access_matches_iteration() -> None:
    clip = StreetClip(seed=3, height=H, width=W, frames=6)
    assert len(clip) == 6
    frames = list(clip)
    assert len(frames) == 6
    again = StreetClip(seed=3, height=H, width=W, frames=6)
    for i in (4, 1, 5):
        img, lab = again[i]
        assert img.tobytes() == frames[i][0].tobytes() and lab.tobytes() == frames[i][1].tobytes()
    assert again[-1][1].tobytes() == frames[5][1].tobytes()
    with pytest.raises(IndexError):
        again[6]
    # Frame 0 of a clip is the seed's scene, whatever the clip length.
    assert frames[0][1].tobytes() == render_scene(3, H, W)[1].tobytes()
    assert StreetClip(3, H, W, frames=2)[1][1].tobytes() == frames[1][1].tobytes()


def test_clip_moves_forward_smoothly() -> None:
    clip = StreetClip(seed=5, height=120, width=240, frames=40)
    labs = [clip[i][1] for i in (0, 1, 30)]
    # Consecutive frames are close; frames a couple of seconds apart are not.
    assert (labs[0] != labs[1]).mean() < 0.15
    assert (labs[0] != labs[1]).mean() > 0.0
    assert (labs[0] != labs[2]).mean() > (labs[0] != labs[1]).mean()


def test_same_scene_at_two_resolutions() -> None:
    for seed in (1, 4):
        _, small = render_scene(seed, 120, 240)
        _, big = render_scene(seed, 240, 480)
        down = cv2.resize(big, (240, 120), interpolation=cv2.INTER_NEAREST)
        assert (down == small).mean() > 0.95


def test_split_seeds_are_disjoint() -> None:
    sets = {s: set(split_seeds(s, 1000)) for s in SPLITS}
    names = list(sets)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not sets[a] & sets[b]
    assert split_seeds("train", 3) == [0, 1, 2]
    with pytest.raises(ValueError):
        split_seeds("holdout", 3)


def test_no_torch_import() -> None:
    # A fresh interpreter: other tests in this process may have imported torch already.
    code = ("import sys, segdata.synthetic, segdata.datasets, segdata.metrics; "
            "segdata.synthetic.render_scene(0, 16, 32); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
