"""Every loader against a tiny fixture written in its exact on-disk layout."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from segdata.datasets import DatasetError, Sample, open_dataset, voc_colors_to_ids
from segdata.labels import VOC_PALETTE

H, W = 6, 8


def _image(value: int) -> np.ndarray:
    """A flat image whose value identifies it, so pairing mistakes show."""
    return np.full((H, W, 3), value, np.uint8)


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def _labelids() -> np.ndarray:
    lab = np.zeros((H, W), np.uint8)  # 0 = unlabeled -> 255
    lab[0] = 7  # road -> 0
    lab[1] = 26  # car -> 13
    lab[2] = 23  # sky -> 10
    lab[3] = 33  # bicycle -> 18
    return lab


def _expected_trainids() -> np.ndarray:
    out = np.full((H, W), 255, np.uint8)
    out[0], out[1], out[2], out[3] = 0, 13, 10, 18
    return out


def _cityscapes(root: Path, split: str = "val", train_ids: bool = False) -> None:
    for i, (city, stem) in enumerate([("aachen", "aachen_000000_000019"), ("bonn", "bonn_000001_000019")]):
        _write(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", _image(10 + i))
        lab = _labelids()
        lab[5, 0] = i  # marks which label belongs to which image (-> 255 either way)
        if train_ids:
            _write(root / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png", _expected_trainids())
        _write(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", lab)
        _write(root / "gtFine" / split / city / f"{stem}_gtFine_color.png", _image(0))


def test_cityscapes_labelids_are_mapped(tmp_path: Path) -> None:
    _cityscapes(tmp_path)
    ds = open_dataset(str(tmp_path))
    assert len(ds) == 2 and ds.label_set == "cityscapes"
    samples = list(ds)
    assert [s.name for s in samples] == ["aachen_000000_000019", "bonn_000001_000019"]
    assert isinstance(samples[0], Sample)
    assert samples[0].image.dtype == np.uint8 and samples[0].image.shape == (H, W, 3)
    assert samples[0].image[0, 0, 0] == 10 and samples[1].image[0, 0, 0] == 11
    np.testing.assert_array_equal(samples[0].label, _expected_trainids())


def test_cityscapes_trainids_used_as_is_and_prefix(tmp_path: Path) -> None:
    _cityscapes(tmp_path, split="train", train_ids=True)
    ds = open_dataset(f"cityscapes:{tmp_path}", split="train", limit=1)
    assert len(ds) == 1
    np.testing.assert_array_equal(ds[0].label, _expected_trainids())
    assert ds[-1].name == ds[0].name
    with pytest.raises(IndexError):
        ds[1]


def test_kitti(tmp_path: Path) -> None:
    for i, name in enumerate(["000000_10", "000001_10"]):
        _write(tmp_path / "training" / "image_2" / f"{name}.png", _image(50 + i))
        _write(tmp_path / "training" / "semantic" / f"{name}.png", _labelids())
    ds = open_dataset(str(tmp_path))
    assert [s.name for s in ds] == ["000000_10", "000001_10"]
    assert ds[1].image[0, 0, 0] == 51
    np.testing.assert_array_equal(ds[0].label, _expected_trainids())


def test_kitti_label_without_image_is_reported(tmp_path: Path) -> None:
    _write(tmp_path / "training" / "image_2" / "000000_10.png", _image(1))
    _write(tmp_path / "training" / "semantic" / "000000_10.png", _labelids())
    _write(tmp_path / "training" / "semantic" / "000009_10.png", _labelids())
    with pytest.raises(DatasetError, match=r"label\(s\) without an image.*000009_10"):
        open_dataset(f"kitti:{tmp_path}")


def test_ade20k_ids_shift_and_zero_is_ignore(tmp_path: Path) -> None:
    root = tmp_path / "ADEChallengeData2016"
    lab = np.zeros((H, W), np.uint8)
    lab[0] = 1  # wall -> 0
    lab[1] = 150  # flag -> 149
    for sub, stem in [("training", "ADE_train_00000001"), ("validation", "ADE_val_00000001")]:
        img = np.zeros((H, W, 3), np.uint8)
        img[:, :, 2] = 200  # JPEG-safe flat colour
        _write(root / "images" / sub / f"{stem}.jpg", img)
        _write(root / "annotations" / sub / f"{stem}.png", lab)
    ds = open_dataset(str(tmp_path), split="val")
    assert ds.label_set == "ade20k" and len(ds) == 1 and ds[0].name == "ADE_val_00000001"
    label = ds[0].label
    assert (label[0] == 0).all() and (label[1] == 149).all() and (label[2:] == 255).all()
    assert abs(int(ds[0].image[0, 0, 2]) - 200) < 8
    assert open_dataset(f"ade20k:{root}", split="train")[0].name == "ADE_train_00000001"


def _voc_label_image() -> tuple[np.ndarray, np.ndarray]:
    ids = np.zeros((H, W), np.uint8)
    ids[0] = 15  # person
    ids[1] = 7  # car
    ids[2] = 20  # tvmonitor
    ids[3, :2] = 255  # border
    lut = np.zeros((256, 3), np.uint8)
    lut[: len(VOC_PALETTE)] = np.array(VOC_PALETTE)[:, ::-1]
    lut[255] = (192, 224, 224)  # (224,224,192) as BGR
    return ids, lut[ids]


def test_voc_palette_colours_and_split_list(tmp_path: Path) -> None:
    root = tmp_path / "VOCdevkit" / "VOC2012"
    ids, color = _voc_label_image()
    for i, name in enumerate(["2007_000032", "2007_000033", "2007_000039"]):
        _write(root / "JPEGImages" / f"{name}.jpg", _image(40 * (i + 1)))
        if i < 2:
            _write(root / "SegmentationClass" / f"{name}.png", color)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000033\n")
    ds = open_dataset(str(tmp_path))
    assert ds.label_set == "voc2012" and [s.name for s in ds] == ["2007_000033"]
    np.testing.assert_array_equal(ds[0].label, ids)
    # No list for 'train': every labelled image, unlabelled JPEGs are normal in VOC.
    assert [s.name for s in open_dataset(f"voc:{root}", split="train")] == ["2007_000032", "2007_000033"]


def test_voc_missing_label_in_list_is_reported(tmp_path: Path) -> None:
    _, color = _voc_label_image()
    _write(tmp_path / "JPEGImages" / "a.jpg", _image(1))
    _write(tmp_path / "JPEGImages" / "b.jpg", _image(1))
    _write(tmp_path / "SegmentationClass" / "a.png", color)
    (tmp_path / "ImageSets" / "Segmentation").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Segmentation" / "val.txt").write_text("a\nb\n")
    with pytest.raises(DatasetError, match=r"image\(s\) without a label SegmentationClass/<name>.png.*'b'"):
        open_dataset(str(tmp_path))


def test_voc_unknown_colour_is_ignore() -> None:
    bgr = np.array([[[0, 0, 128], [1, 2, 3], [0, 0, 0]]], np.uint8)  # aeroplane (128,0,0), junk, background
    np.testing.assert_array_equal(voc_colors_to_ids(bgr), [[1, 255, 0]])


def test_unknown_folder_names_the_layouts(tmp_path: Path) -> None:
    (tmp_path / "stuff").mkdir()
    layouts = r"leftImg8bit.*training/image_2.*ADEChallengeData2016.*JPEGImages"
    with pytest.raises(DatasetError, match=layouts):
        open_dataset(str(tmp_path))
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(str(tmp_path / "nowhere"))


def test_partial_cityscapes_names_expected_files(tmp_path: Path) -> None:
    _write(tmp_path / "leftImg8bit" / "val" / "aachen" / "aachen_0_0_leftImg8bit.png", _image(1))
    with pytest.raises(DatasetError, match=r"gtFine/val.*_gtFine_labelIds\.png"):
        open_dataset(str(tmp_path))
    (tmp_path / "gtFine" / "val" / "aachen").mkdir(parents=True)
    expected = r"without a label gtFine/val/<city>/<name>_gtFine_labelIds\.png.*aachen_0_0"
    with pytest.raises(DatasetError, match=expected):
        open_dataset(str(tmp_path))
    with pytest.raises(DatasetError, match=r"leftImg8bit/train"):
        open_dataset(str(tmp_path), split="train")


def test_label_size_mismatch_is_reported(tmp_path: Path) -> None:
    _write(tmp_path / "training" / "image_2" / "x.png", _image(1))
    _write(tmp_path / "training" / "semantic" / "x.png", np.zeros((H + 1, W), np.uint8))
    with pytest.raises(DatasetError, match=r"semantic/x\.png"):
        open_dataset(str(tmp_path))[0]


def test_synthetic_source_spec() -> None:
    ds = open_dataset("synthetic:test:3@32x64")
    assert len(ds) == 3 and ds.label_set == "cityscapes"
    s = ds[0]
    assert s.image.shape == (32, 64, 3) and s.label.shape == (32, 64)
    assert s.name == "synthetic_test_30000000"
    assert len(open_dataset("synthetic@32x64", split="calib", limit=2)) == 2
    assert open_dataset("synthetic:2@32x64", split="train")[1].name == "synthetic_train_1"
    with pytest.raises(DatasetError):
        open_dataset("synthetic:nosuchsplit:2")
    with pytest.raises(DatasetError):
        open_dataset("synthetic:val:2@huge")
