"""The TF seed's checkpoints (hellochick/PSPNet-tensorflow, its KITTI fork) load without TensorFlow.

Two witnesses for the format: tests/data/tf_checkpoint_small was written by TensorFlow's own
tf.train.Saver (scripts/tf_seed/make_fixture.py), so the reader is checked against bytes TF wrote;
the strictness and model tests use full seed-layout checkpoints of a small PSPNet written by our
writer. The model check uses the Keras test's independent numpy forward of the seed graph, whose
'same' padding is TensorFlow's (asymmetric at even sizes, the TF seed's 720 crop). The comparison
with the seed's own TF code at 473/720 is tests/test_tf_seed_reference.py (slow, needs TF).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pspnet.errors import CheckpointError
from pspnet.model import PSPNet
from pspnet.tf_checkpoint import TFCheckpoint, find_prefix, write_checkpoint
from pspnet.tf_import import (
    is_optimizer_state,
    load_tf_checkpoint,
    model_from_tf_checkpoint,
    tf_spec_from_checkpoint,
    tf_variables_from_model,
)
from pspnet.zoo import KERAS_MEAN_BGR, KITTI_FORK_MEAN_BGR, REGISTRY
from tests.test_keras_import import keras_forward, keras_layers_from_model, rel_err, seed_model

FIXTURE = Path(__file__).parent / "data" / "tf_checkpoint_small"
WIDTH = 0.125


def fixture_values() -> dict[str, np.ndarray]:
    spec = importlib.util.spec_from_file_location(
        "make_fixture", Path(__file__).parents[1] / "scripts" / "tf_seed" / "make_fixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.values()


# --------------------------------------------------------------------------- the format, as TF wrote it
def test_reader_reads_what_tensorflow_wrote() -> None:
    ckpt = TFCheckpoint(FIXTURE / "model.ckpt-7")
    expected = fixture_values()
    assert set(ckpt.entries) == {*expected, "conv1_1_3x3_s2/weights/Momentum"}
    for name, value in expected.items():
        got = ckpt.read(name)
        assert got.dtype == value.dtype and got.shape == value.shape, name
        assert np.array_equal(got, value), name
    assert np.all(ckpt.read("conv1_1_3x3_s2/weights/Momentum") == 0.125)


def test_prefix_files_and_folder_all_name_the_checkpoint(tmp_path: Path, caplog) -> None:
    prefix = FIXTURE / "model.ckpt-7"
    for given in (prefix, FIXTURE / "model.ckpt-7.index", FIXTURE / "model.ckpt-7.data-00000-of-00001",
                  FIXTURE / "checkpoint"):
        assert find_prefix(given) == prefix, given
    # the folder: `checkpoint` names /home/user/... (the saving machine), found by name here, said once
    with caplog.at_level("WARNING"):
        assert find_prefix(FIXTURE) == prefix
    assert any("not here" in r.getMessage() for r in caplog.records)
    # no `checkpoint` file, two checkpoints: the highest step wins (not the newest mtime), said once
    folder = tmp_path / "dl"
    folder.mkdir()
    for step in (7, 12):
        for f in FIXTURE.glob("model.ckpt-7.*"):
            shutil.copy(f, folder / f.name.replace("-7.", f"-{step}."))
    os.utime(folder / "model.ckpt-7.index")  # touched last
    (folder / "model.ckpt-12.meta").write_bytes(b"\n\x00")  # the graph file names its checkpoint too
    assert find_prefix(folder / "model.ckpt-12.meta") == folder / "model.ckpt-12"
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert find_prefix(folder) == folder / "model.ckpt-12"
    assert [r for r in caplog.records if "newest of 2" in r.getMessage()]
    assert find_prefix(tmp_path) is None  # a folder without checkpoints


@pytest.mark.parametrize("damage", ["data-byte", "data-truncated", "index-byte", "index-truncated"])
def test_damaged_files_are_refused_naming_the_file(tmp_path: Path, damage: str) -> None:
    for f in FIXTURE.glob("model.ckpt-7.*"):
        shutil.copy(f, tmp_path / f.name)
    name = "model.ckpt-7.data-00000-of-00001" if damage.startswith("data") else "model.ckpt-7.index"
    which = tmp_path / name
    raw = bytearray(which.read_bytes())
    if damage.endswith("byte"):
        raw[len(raw) // 3] ^= 0x40
    else:
        raw = raw[: len(raw) - 100]
    which.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError) as info:
        ckpt = TFCheckpoint(tmp_path / "model.ckpt-7")
        for name in ckpt.entries:
            ckpt.read(name)
    msg = str(info.value)
    assert ("crc32c" in msg or "damaged" in msg or "truncated" in msg or "table magic" in msg), msg


def test_missing_data_file_is_named(tmp_path: Path) -> None:
    shutil.copy(FIXTURE / "model.ckpt-7.index", tmp_path / "model.ckpt-7.index")
    with pytest.raises(CheckpointError, match=r"data-00000-of-00001 is missing"):
        TFCheckpoint(tmp_path / "model.ckpt-7")


def test_our_writer_round_trips(tmp_path: Path) -> None:
    values = fixture_values()
    write_checkpoint(tmp_path / "model.ckpt-3", values, block_size=256)  # several data blocks
    ckpt = TFCheckpoint(find_prefix(tmp_path))
    assert all(np.array_equal(ckpt.read(k), v) for k, v in values.items())


def test_optimizer_state_is_recognised() -> None:
    for name in ("conv1/weights/Momentum", "conv6/biases/Adam", "conv6/biases/Adam_1", "beta1_power",
                 "beta2_power_2", "global_step"):
        assert is_optimizer_state(name), name
    for name in ("conv1_1_3x3_s2_bn/beta", "conv6/biases", "conv5_4_bn/moving_variance"):
        assert not is_optimizer_state(name), name


# --------------------------------------------------------------------------- full seed-layout checkpoints
def tf_seed_model(depth: int = 50, classes: int = 19, seed: int = 0) -> PSPNet:
    src = seed_model(depth, classes, seed)
    model = PSPNet(depth, classes, width=WIDTH, aux=False, stride_on_1x1=True, caffe_ppm_order=True,
                   tf_same_padding=True)
    model.load_state_dict(src.state_dict())
    return model.eval()


def seed_variables(model: PSPNet, optimizer: str = "momentum") -> dict[str, np.ndarray]:
    """What the seed's train.py Saver writes: weights + the optimizer's slots and scalars."""
    weights = tf_variables_from_model(model)
    out = dict(weights)
    for name, value in weights.items():
        if name.endswith("/weights") or name.endswith("/biases"):
            if optimizer == "momentum":
                out[f"{name}/Momentum"] = np.zeros_like(value)
            else:
                out[f"{name}/Adam"] = np.zeros_like(value)
                out[f"{name}/Adam_1"] = np.ones_like(value)
    if optimizer == "adam":
        out.update({"beta1_power": np.float32(0.9), "beta2_power": np.float32(0.999),
                    "beta1_power_1": np.float32(0.9), "beta2_power_1": np.float32(0.999)})
    return out


@pytest.fixture(scope="module")
def source() -> PSPNet:
    return tf_seed_model()


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory: pytest.TempPathFactory, source: PSPNet) -> Path:
    folder = tmp_path_factory.mktemp("tf") / "snapshots"
    folder.mkdir()
    write_checkpoint(folder / "model.ckpt-1234", seed_variables(source))
    return folder


def test_import_reproduces_the_seed_graph_at_an_even_size(source: PSPNet, ckpt_dir: Path) -> None:
    """TF 'SAME' pads (0, 1) at even sizes: at 48x96 a symmetric pad would shift every pixel."""
    model, spec = model_from_tf_checkpoint(ckpt_dir)
    assert spec.tf_same_padding and spec.stride_on_1x1 and spec.caffe_ppm_order
    layers = keras_layers_from_model(source)
    for h, w in ((48, 96),):  # map 6x12: the seed's fixed pools divide it (odd sizes: test_keras_import)
        x = np.random.default_rng(h).integers(0, 256, (1, h, w, 3)) - np.array(KERAS_MEAN_BGR)
        with torch.no_grad():
            ours = model(torch.from_numpy(x).float().permute(0, 3, 1, 2)).permute(0, 2, 3, 1).double().numpy()
        ref = keras_forward(layers, x)
        assert ours.shape == ref.shape
        assert rel_err(ours, ref) < 1e-5, (h, w, rel_err(ours, ref))
    # the symmetric padding really differs at the even size (the convention matters)
    plain = PSPNet(50, 19, width=WIDTH, aux=False, stride_on_1x1=True, caffe_ppm_order=True)
    plain.load_state_dict(model.state_dict())
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(1, 3, 48, 96))).float()
    with torch.no_grad():
        assert (plain.eval()(x) - model(x)).abs().max() > 1e-3


def test_spec_is_read_from_the_checkpoint(ckpt_dir: Path) -> None:
    spec = tf_spec_from_checkpoint(ckpt_dir / "model.ckpt-1234.index")
    assert (spec.depth, spec.num_classes, spec.width, spec.label_set) == (50, 19, WIDTH, "cityscapes")
    assert spec.input_size == (720, 720)  # the TF seed's Cityscapes crop, not the Keras 713
    assert spec.channel_order == "BGR" and spec.mean == KERAS_MEAN_BGR and spec.std == (1.0, 1.0, 1.0)


def _header_checkpoint(folder: Path, conv4_blocks: int, classes: int, adam: bool = False) -> Path:
    """Only what spec inference reads: conv4_*_1x1_reduce kernels and conv6, full width."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"conv4_{i}_1x1_reduce/weights": np.zeros((1, 1, 1, 1), np.float32)
               for i in range(1, conv4_blocks + 1)}
    tensors["conv6/weights"] = np.zeros((1, 1, 512, classes), np.float32)
    if adam:
        tensors.update({"conv6/weights/Adam": tensors["conv6/weights"], "beta1_power": np.float32(0.9)})
    return write_checkpoint(folder / "model.ckpt-0", tensors)


@pytest.mark.parametrize(("blocks", "classes", "name"), [(6, 150, "pspnet50_ade20k_tf"),
                                                          (23, 19, "pspnet101_cityscapes_tf"),
                                                          (23, 3, "pspnet101_kitti_road_tf")])
def test_seed_headers_pick_the_zoo_entry(tmp_path: Path, blocks: int, classes: int, name: str) -> None:
    spec = tf_spec_from_checkpoint(_header_checkpoint(tmp_path / "c", blocks, classes, adam=True))
    assert spec is REGISTRY[name]
    assert spec.input_size == ((473, 473) if blocks == 6 else (720, 720))
    if classes == 3:
        assert spec.mean == KITTI_FORK_MEAN_BGR and spec.classes == ("void", "not road", "road")
        assert spec.label_set == "kitti-road" and spec.ignore_index == 255  # void: trained and scored


def test_any_class_count_gets_a_generic_label_set(tmp_path: Path) -> None:
    spec = tf_spec_from_checkpoint(_header_checkpoint(tmp_path / "c", 6, 7))
    assert spec.num_classes == 7 and spec.label_set == "generic-7" and spec.classes[6] == "class 6"
    assert len(set(spec.palette)) == 7


def _variant(tmp_path: Path, source: PSPNet, edit) -> Path:
    tensors = seed_variables(source, "adam")
    edit(tensors)
    folder = tmp_path / "v"
    folder.mkdir(exist_ok=True)
    return write_checkpoint(folder / "model.ckpt-9", tensors)


def _fresh(classes: int = 19) -> PSPNet:
    return PSPNet(50, classes, width=WIDTH, aux=False, stride_on_1x1=True, caffe_ppm_order=True,
                  tf_same_padding=True)


def test_missing_extra_wrong_shape_and_nan_are_all_named(tmp_path: Path, source: PSPNet) -> None:
    def edit(t: dict) -> None:
        del t["conv4_3_3x3_bn/gamma"]
        t["conv7/weights"] = np.zeros((1, 1, 64, 19), np.float32)
        t["conv6/weights"] = np.zeros((1, 1, 64, 21), np.float32)
        t["conv5_4/weights"] = t["conv5_4/weights"].copy()
        t["conv5_4/weights"][0, 0, 0, 0] = np.nan

    model = _fresh()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        load_tf_checkpoint(model, _variant(tmp_path, source, edit))
    msg = str(info.value)
    assert "missing weights (1): conv4_3_3x3_bn/gamma" in msg
    assert "unused layers (1): conv7" in msg
    assert "conv6/kernel: expected (1, 1, 64, 19)" in msg and "found (1, 1, 64, 21)" in msg
    assert "conv5_4/kernel: holds NaN" in msg
    assert "Adam" not in msg and "beta1_power" not in msg  # optimizer state is skipped, not "unused"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # all or nothing


def test_mismatch_names_the_model_that_fits(tmp_path: Path) -> None:
    path = _header_checkpoint(tmp_path / "k", 23, 3)
    with pytest.raises(CheckpointError, match="use --model pspnet101_kitti_road_tf"):
        load_tf_checkpoint(_fresh(), path)


def test_model_without_tf_padding_is_refused(ckpt_dir: Path) -> None:
    plain = PSPNet(50, 19, width=WIDTH, aux=False, stride_on_1x1=True, caffe_ppm_order=True)
    with pytest.raises(CheckpointError, match="TensorFlow's 'same' padding"):
        load_tf_checkpoint(plain, ckpt_dir)


# --------------------------------------------------------------------------- end to end
def test_build_engine_from_a_downloaded_folder_with_a_label_file(tmp_path: Path) -> None:
    """The KITTI fork's case at a tiny width: a 3-class checkpoint folder whose `checkpoint` names
    the saving machine's path, built with --classes FILE --mean: manifest carries both; the
    artefact runs and its labels use the 3 classes."""
    api = pytest.importorskip("build_engine.api")
    from runtime.backends import artefact_runner
    from segdata.label_sets import from_manifest, load_label_set

    model = tf_seed_model(classes=3, seed=4)
    folder = tmp_path / "downloaded"
    folder.mkdir()
    write_checkpoint(folder / "model.ckpt-3500", seed_variables(model, "adam"))
    (folder / "checkpoint").write_text('model_checkpoint_path: "/home/user/kitti/model.ckpt-3500"\n')
    labels_file = tmp_path / "road.json"
    labels_file.write_text(json.dumps({"name": "my-road", "ignore_index": 0, "classes": [
        {"name": "void", "color": [0, 0, 0]}, {"name": "not road", "color": "#ff0000"},
        {"name": "road", "color": [255, 0, 255]}]}))
    manifest_path = api.build_artefact("demo", "fp32", "onnxruntime", (96, 128), output=tmp_path / "out",
                                       weights=str(folder), classes=str(labels_file),
                                       mean=KITTI_FORK_MEAN_BGR, verify_frames=1)
    data = json.loads(Path(manifest_path).read_text())
    assert data["classes"] == ["void", "not road", "road"] and data["ignore_index"] == 0
    assert data["label_set"] == "my-road" and data["palette"][1] == [255, 0, 0]
    assert data["mean"] == list(KITTI_FORK_MEAN_BGR) and data["std"] == [1.0, 1.0, 1.0]
    assert data["channel_order"] == "BGR" and data["weights"]["format"] == "TensorFlow checkpoint"
    assert Path(manifest_path).name.startswith("pspnet50_generic_3_tf_w0.125-my-road-")
    from artefact.manifest import load_manifest

    assert from_manifest(load_manifest(manifest_path)) == load_label_set(labels_file)
    frame = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    with artefact_runner(manifest_path) as runner:
        labels, _ = runner.predict(frame)
    assert labels.shape == (96, 128) and labels.max() <= 2
    # the same weights through PyTorch with the fork's normalisation: same classes
    x = (frame[None].astype(np.float32) - np.array(KITTI_FORK_MEAN_BGR, np.float32))
    with torch.no_grad():
        logits = model(torch.from_numpy(x).permute(0, 3, 1, 2))
        ref = torch.nn.functional.interpolate(logits, (96, 128), mode="bilinear", align_corners=True)
    assert (ref.argmax(1)[0].numpy() == labels).mean() > 0.999
    # and the runtime runs it end to end: masks hold class ids 0..2, the video has the legend
    import subprocess
    import sys

    import cv2

    run = subprocess.run([sys.executable, "-m", "runtime", "--video", "demo", "--engine", str(manifest_path),
                          "--max-frames", "2", "--masks", str(tmp_path / "masks"), "--visualize",
                          "side-by-side", "--output", str(tmp_path / "out.mp4"), "--stats",
                          str(tmp_path / "stats.jsonl")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    masks = sorted((tmp_path / "masks").glob("*.png"))
    assert len(masks) == 2 and cv2.imread(str(masks[0]), cv2.IMREAD_UNCHANGED).max() <= 2
    records = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    present = [r["classes"] for r in records if "classes" in r]
    assert present and all(set(ids) <= {0, 1, 2} for ids in present)
