"""KITTI road data_road: layout, both label sets, bad files, the hold-out split, MaxF, the recipes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from segdata.datasets import DatasetError, open_dataset
from segdata.kitti_road import open_data_road
from segdata.road_metrics import MaxF
from segdata.split import holdout_names, open_split_list, write_split


def _gt_colours(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1]  # RGB


def test_layout_detected_and_both_label_sets(tiny_data_road: Path) -> None:
    parent = tiny_data_road.parent
    for source in (str(parent), str(tiny_data_road), f"kitti-road:{tiny_data_road}"):
        ds = open_dataset(source)
        assert ds.label_set == "kitti-road" and len(ds) == 10
    assert any("um_lane" in note for note in ds.notes)  # skipped, with a note
    sample = ds[0]
    rgb = _gt_colours(tiny_data_road / "training" / "gt_image_2" / "um_road_000000.png")
    magenta, red, black = (rgb == (255, 0, 255)).all(-1), (rgb == (255, 0, 0)).all(-1), (rgb == 0).all(-1)
    assert magenta.any() and red.any() and black.any()
    np.testing.assert_array_equal(sample.label, np.select([black, red, magenta], [0, 1, 2], 99))
    binary = open_dataset(f"kitti-road-binary:{parent}")[0]
    assert binary.name == sample.name
    np.testing.assert_array_equal(binary.label, np.select([black, red, magenta], [255, 0, 1], 99))
    test = open_dataset(str(parent), split="test")
    assert len(test) == 2 and test[0].label is None


def test_bad_files_are_named_never_mislabelled(tiny_data_road: Path, tmp_path: Path) -> None:
    root = tmp_path / "data_road"
    shutil.copytree(tiny_data_road, root)
    gt = root / "training" / "gt_image_2"
    (root / "training" / "image_2" / "uu_000099.png").write_bytes(
        (root / "training" / "image_2" / "uu_000000.png").read_bytes())
    shutil.copy(gt / "umm_road_000000.png", gt / "umm_road_000077.png")
    with pytest.raises(DatasetError) as err:
        open_dataset(str(root))
    assert "uu_000099" in str(err.value) and "umm_road_000077.png" in str(err.value)
    (root / "training" / "image_2" / "uu_000099.png").unlink()
    (gt / "umm_road_000077.png").unlink()
    for name in ("um_road_000001.png", "uu_road_000001.png"):  # a JPEG-ish shade: not a KITTI colour
        bgr = cv2.imread(str(gt / name))
        bgr[0, :5] = (250, 3, 251)
        cv2.imwrite(str(gt / name), bgr)
    ds = open_dataset(str(root))
    with pytest.raises(DatasetError, match=r"um_road_000001.png has 5 px .*\(251,3,250\)"):
        ds[ds.pairs.index(next(p for p in ds.pairs if p[0] == "um_000001"))]
    from pspnet.train import load_all

    with pytest.raises(DatasetError) as err:
        load_all(str(root), 1, "test")
    message = str(err.value)
    assert "\n" not in message and "2 of 10 samples" in message
    assert "um_road_000001.png" in message and "uu_road_000001.png" in message


def test_no_ground_truth(tiny_data_road: Path, tmp_path: Path) -> None:
    root = tmp_path / "data_road"
    shutil.copytree(tiny_data_road, root, ignore=shutil.ignore_patterns("gt_image_2"))
    with pytest.raises(DatasetError, match="has no ground truth"):
        open_dataset(f"kitti-road:{root}")
    (root / "training" / "gt_image_2").mkdir()
    shutil.copy(tiny_data_road / "training" / "gt_image_2" / "um_lane_000000.png",
                root / "training" / "gt_image_2")
    with pytest.raises(DatasetError, match="only 1 um_lane"):
        open_data_road(root, "train")


def test_holdout_split_is_deterministic_stratified_and_a_data_source(tiny_data_road: Path,
                                                                     tmp_path: Path) -> None:
    ds = open_dataset(str(tiny_data_road))
    first, again = holdout_names(ds, 0.3, 7), holdout_names(ds, 0.3, 7)
    assert first == again and len(first["val"]) == 3 and not set(first["val"]) & set(first["train"])
    assert {name.split("_")[0] for name in first["val"]} == {"um", "umm", "uu"}  # each category
    assert holdout_names(ds, 0.3, 8) != first
    for bad in (0.0, 1.0, -0.2):
        with pytest.raises(DatasetError):
            holdout_names(ds, bad, 0)
    lists = write_split(tmp_path / "split", str(tiny_data_road), ds, 0.3, 7)
    val = open_dataset(str(lists["val"]))
    assert [val[i].name for i in range(len(val))] == first["val"]
    assert isinstance(open_split_list(lists["train"]).base, type(ds))
    assert len(open_dataset(str(lists["train"]))) == 7
    from calib.sources import load_frames  # calibration reads a split list like any data set

    frames = load_frames(str(lists["train"]), 4, 32, 96)
    assert len(frames.frames) == 4 and all(lab is not None for lab in frames.labels)
    from segdata.split import main

    assert main([str(tiny_data_road), "--val-split", "0.3", "--split-seed", "7", "--out",
                 str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "val.txt").read_text() == lists["val"].read_text()


def _devkit_maxf(gts, probs, valids) -> float:
    """The KITTI road devkit's evalExp + pxEval_maximizeFMeasure, as its helper.py writes them."""
    thres = np.array(range(256)) / 255.0
    thres_inf = np.concatenate(([-np.inf], thres, [np.inf]))
    total_fn, total_fp, pos, neg = np.zeros(256), np.zeros(256), 0, 0
    for gt, prob, valid in zip(gts, probs, valids):
        fn = np.cumsum(np.histogram(prob[gt & valid], bins=thres_inf)[0])[0:256]
        fp = np.flipud(np.cumsum(np.flipud(np.histogram(prob[~gt & valid], bins=thres_inf)[0])))[1:257]
        total_fn += fn
        total_fp += fp
        pos += np.sum(gt & valid)
        neg += np.sum(~gt & valid)
    tp = pos - total_fn
    recall = tp / float(pos)
    precision = tp / (tp + total_fp + 1e-10)
    keep = ~((recall == 0) & (precision == 0))
    recall, precision = recall[keep], precision[keep]
    f = 2 * precision * recall / (precision + recall + 1e-10)
    return float(f.max())


def test_maxf_is_the_devkits() -> None:
    rng = np.random.default_rng(3)
    gts, probs, valids = [], [], []
    score = MaxF()
    for _ in range(3):
        gt = rng.random((20, 30)) < 0.4
        prob_u8 = np.clip(gt * 120 + rng.normal(70, 60, gt.shape), 0, 255).astype(np.uint8)
        valid = rng.random(gt.shape) < 0.9
        gts.append(gt), probs.append(prob_u8 / 255.0), valids.append(valid)
        score.update(prob_u8 / 255.0, gt, valid)
    ours = score.result()
    assert ours["maxf"] == pytest.approx(_devkit_maxf(gts, probs, valids), abs=1e-9)
    assert 0.5 < ours["maxf"] < 1.0 and 0 < ours["threshold"] < 1


def _tiny_train(tmp_path: Path, data: Path | str, *extra: str) -> tuple[int, Path]:
    from pspnet.build import create_model
    from pspnet.train import main
    from pspnet.weights import read_state_dict, save_checkpoint
    from pspnet.zoo import get_spec

    init = tmp_path / "cityscapes.pth"
    if not init.is_file():
        # the shipped demo weights (trained on street scenes) stand in for a Cityscapes checkpoint:
        # a randomly initialised backbone paints one class everywhere, which the build refuses
        net = create_model(get_spec("demo"), aux=True)
        net.load_state_dict(read_state_dict(get_spec("demo").weights_path), strict=False)
        save_checkpoint(init, net)
    out = tmp_path / "run"
    code = main(["--data", str(data), "--init", str(init), "--workers", "1", "--threads", "1",
                 "--no-bf16", "--out", str(out), *extra])
    return code, out


@pytest.fixture(scope="module")
def fork_run(tiny_data_road: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """One tiny `pspnet.train --recipe kitti-road-fork` run on the 3 classes, shared by the tests
    of the recipe and of building its checkpoint: (run folder, init checkpoint, its stderr)."""
    import contextlib
    import io

    tmp = tmp_path_factory.mktemp("fork_run")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code, out = _tiny_train(tmp, tiny_data_road, "--recipe", "kitti-road-fork", "--crop", "24x24",
                                "--iters", "2")
    assert code == 0, err.getvalue()
    return out, tmp / "cityscapes.pth", err.getvalue()


def test_fork_recipe(fork_run: tuple[Path, Path, str]) -> None:
    import torch

    from pspnet.weights import checkpoint_facts, read_state_dict

    out, init_path, err = fork_run
    assert "recipe kitti-road-fork: optimizer=adam, lr=5e-05, head_lr=(10.0, 20.0)" in err
    assert "upsample=2.0" in err and "um_lane" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["label_set"] == "kitti-road" and summary["classes"] == ["void", "not road", "road"]
    assert summary["train_samples"] == 8 and summary["val_samples"] == 2  # the fork's 80/20
    assert summary["seconds_per_epoch"] > 0 and summary["split"] == {"val_split": 0.2, "split_seed": 0}
    assert (out / "split" / "val.txt").read_text().count("\n") == 6 + 2
    sd = read_state_dict(out / "best.pth")
    assert sd["cls.4.weight"].shape[0] == 3
    # the checkpoint carries what a build needs: the model, the whole label set, its data
    facts = checkpoint_facts(out / "best.pth")
    assert facts["zoo_model"] == "demo" and facts["labels"]["name"] == "kitti-road"
    assert facts["labels"]["ignore_index"] == 255 and len(facts["labels"]["classes"]) == 3
    assert facts["data"] == {"train": str((out / "split" / "train.txt").resolve()),
                             "val": str((out / "split" / "val.txt").resolve())}
    init = read_state_dict(init_path)
    # batch norm frozen: statistics exactly as loaded; the trained convs moved
    torch.testing.assert_close(sd["layer1.0.bn1.running_mean"], init["layer1.0.bn1.running_mean"])
    assert not torch.equal(sd["layer1.0.conv1.weight"], init["layer1.0.conv1.weight"])
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert {"miou", "road_miou", "maxf"} <= set(history[-1])


def test_one_kitti_road_label_set_per_name() -> None:
    """The fork's 3 classes exist once (issue 23's 'kitti-road-fork' is its alias); the gate and
    the data agree on the name whichever is used; the zoo's TF fork entry uses the same set."""
    from pspnet.zoo import REGISTRY
    from segdata.label_sets import canonical_name, load_label_set

    three = load_label_set("kitti-road")
    assert load_label_set("kitti-road-fork") is three and canonical_name("kitti-road-fork") == "kitti-road"
    assert three.classes == ("void", "not road", "road") and three.ignore_index == 255
    assert three.palette == ((0, 0, 0), (255, 0, 0), (255, 0, 255))  # the ground truth's own colours
    binary = load_label_set("kitti-road-binary")
    assert binary.classes == ("not road", "road") and binary.palette == three.palette[1:]
    assert REGISTRY["pspnet101_kitti_road_tf"].label_set_info is three
    assert all(spec.label_set == spec.label_set_info.name for spec in REGISTRY.values())


def test_fork_checkpoint_builds_int8_with_its_labels_and_holdout(fork_run: tuple[Path, Path, str],
                                                                 tiny_data_road: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    """`build_engine --weights best.pth` alone: the checkpoint's 3 classes, INT8 calibrated on its
    training list and gated against the labels of its held-out list; pspnet-rt runs it with a
    legend of the road classes."""
    from artefact.manifest import load_manifest
    from build_engine.cli import main as build_main
    from runtime.render import Renderer
    from tests.faults.helpers import call_main, rt

    out, _, _ = fork_run
    best = out / "best.pth"
    code = call_main(build_main, ["--weights", str(best), "--precision", "int8", "--backend", "onnxruntime",
                                  "--input-size", "48x96", "--output", str(tmp_path / "art")])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    manifest_path = Path(stdout.strip().splitlines()[-1])
    assert manifest_path.name == "demo-kitti-road-48x96-int8-percentile-onnxruntime.json"
    data = json.loads(manifest_path.read_text())
    assert data["precision"] == "int8" and data["label_set"] == "kitti-road" and data["ignore_index"] == 255
    assert data["classes"] == ["void", "not road", "road"] and data["palette"][2] == [255, 0, 255]
    val, train = (str((out / "split" / f"{p}.txt").resolve()) for p in ("val", "train"))
    assert f"--eval-data {val} (the checkpoint's held-out data)" in err
    gate = data["accuracy"]["gate"]
    assert data["accuracy"]["eval_data"]["source"] == val and data["accuracy"]["eval_data"]["images"] == 2
    assert gate["passed"] and gate["fp32_miou"] is not None  # scored against the labels, not FP32
    assert set(gate["per_class"]) == {"void", "not road", "road"}
    assert train in json.dumps(data["calibration"])
    # the same label set by name (the alias included) names the same artefact; a wrong count is refused
    assert call_main(build_main, ["--weights", str(best), "--classes", "kitti-road-binary",
                                  "--precision", "fp32", "--output", str(tmp_path / "art")]) == 2
    assert "names 2 classes but the weights of demo predict 3" in capsys.readouterr().err
    from build_engine.api import Builder, BuildOptions

    alias = Builder(BuildOptions(weights=str(best), classes="kitti-road-fork", precision="int8",
                                 backend="onnxruntime", input_size=(48, 96), output=str(tmp_path / "art")))
    assert alias.manifest_path == manifest_path
    # data given on the command line wins; a checkpoint whose lists did not travel with it says so
    given = Builder(BuildOptions(weights=str(best), precision="int8", eval_data="synthetic:val"))
    assert given.options.eval_data == "synthetic:val" and given.options.calib_data == train
    import torch

    moved = torch.load(best, weights_only=True)
    moved["data"] = {"train": str(tmp_path / "gone" / "train.txt"), "val": str(tmp_path / "gone" / "val.txt")}
    torch.save(moved, tmp_path / "moved.pth")
    capsys.readouterr()
    elsewhere = Builder(BuildOptions(weights=str(tmp_path / "moved.pth"), precision="int8"))
    assert elsewhere.options.eval_data is None and elsewhere.spec.label_set == "kitti-road"
    gone = tmp_path / "gone" / "val.txt"
    assert f"the checkpoint's held-out data {gone} is not here" in capsys.readouterr().err

    images = tiny_data_road / "training" / "image_2"
    code, _, err, _ = rt(["--video", str(images), "--engine", str(manifest_path), "--max-frames", "2",
                          "--masks", str(tmp_path / "masks"),
                          "--stats", str(tmp_path / "stats.jsonl")], capsys)
    assert code == 0, err
    masks = sorted((tmp_path / "masks").glob("*.png"))
    assert len(masks) == 2 and all(cv2.imread(str(m), cv2.IMREAD_UNCHANGED).max() <= 2 for m in masks)
    renderer = Renderer.from_manifest(load_manifest(manifest_path))
    assert renderer.classes == ["void", "not road", "road"]
    legend = renderer._draw_legend((1, 2), 0, 12)  # a row per class: its colour swatch, its name
    assert legend[2 + 6, 6].tolist() == [0, 0, 255] and legend[2 + 12 + 6, 6].tolist() == [255, 0, 255]


def test_param_groups_follow_the_fork() -> None:
    from pspnet.build import create_model
    from pspnet.train import frozen_modules, param_groups
    from pspnet.zoo import get_spec

    model = create_model(get_spec("demo"), aux=True)
    frozen = frozen_modules(model, freeze_bn=True, freeze_stages=0)
    groups = param_groups(model, frozen, (10.0, 20.0), 1e-4, "weights")
    by_id = {id(p): g for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert by_id[id(named["cls.4.weight"])]["mult"] == 10 and by_id[id(named["cls.4.bias"])]["mult"] == 20
    assert by_id[id(named["ppm.features.0.1.weight"])]["mult"] == 10
    assert by_id[id(named["layer4.1.conv2.weight"])]["mult"] == 1
    assert by_id[id(named["cls.4.bias"])]["weight_decay"] == 0
    assert by_id[id(named["cls.0.weight"])]["weight_decay"] == 1e-4
    assert id(named["layer1.0.bn1.weight"]) not in by_id  # frozen batch norm is not trained


def test_native_recipe_trains_whole_images_of_several_sizes(tiny_data_road: Path, tmp_path: Path) -> None:
    ds = open_dataset(str(tiny_data_road))
    sizes = {ds[i].image.shape[:2] for i in range(len(ds))}
    assert len(sizes) == 3  # um, umm, uu differ as KITTI's sizes do
    code, out = _tiny_train(tmp_path, tiny_data_road, "--recipe", "kitti-road-native", "--iters", "2",
                            "--batch-size", "3")
    assert code == 0
    assert json.loads((out / "summary.json").read_text())["recipe"] == "kitti-road-native"
