"""`--weights` formats are told by content, never by suffix, and no message suggests an unsafe load."""

from __future__ import annotations

import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import pytest
import torch

from pspnet.errors import CheckpointError
from pspnet.model import PSPNet
from pspnet.weight_formats import KERAS_H5, ONNX, PYTORCH, TF_CHECKPOINT, UNKNOWN, identify
from pspnet.weights import load_weights, read_state_dict
from pspnet.zoo import REGISTRY

FIXTURE = Path(__file__).parent / "data" / "tf_checkpoint_small"
DEMO = REGISTRY["demo"]


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def _demo_model() -> PSPNet:
    return PSPNet(DEMO.depth, DEMO.num_classes, width=DEMO.width, aux=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("formats")
    out = {}
    out["tf_as_pth"] = d / "weights.pth"  # a TF .index renamed .pth
    shutil.copy(FIXTURE / "model.ckpt-7.index", out["tf_as_pth"])
    out["h5_as_pth"] = d / "model.pth"
    with h5py.File(out["h5_as_pth"], "w") as f:
        f.create_dataset("x", data=[1.0])
    out["pth_as_h5"] = d / "weights.h5"
    torch.save({"state_dict": {"a": torch.zeros(1)}}, out["pth_as_h5"])
    out["html_as_pth"] = d / "page.pth"
    out["html_as_pth"].write_text("<!DOCTYPE html><html>404</html>")
    out["onnx_as_pth"] = d / "model_onnx.pth"
    torch.onnx.export(torch.nn.Conv2d(3, 1, 1), (torch.zeros(1, 3, 4, 4),), str(out["onnx_as_pth"]),
                      dynamo=False)
    out["pickle_code"] = d / "evil.pth"
    with open(out["pickle_code"], "wb") as fh:
        pickle.dump({"state_dict": Evil()}, fh, protocol=2)
    out["zip_no_pkl"] = d / "archive.pth"
    with zipfile.ZipFile(out["zip_no_pkl"], "w") as z:
        z.writestr("readme.txt", "hi")
    out["empty"] = d / "empty.pth"
    out["empty"].write_bytes(b"")
    return out


@pytest.mark.parametrize(("key", "kind"), [("tf_as_pth", TF_CHECKPOINT), ("h5_as_pth", KERAS_H5),
                                           ("pth_as_h5", PYTORCH), ("onnx_as_pth", ONNX),
                                           ("html_as_pth", UNKNOWN), ("zip_no_pkl", UNKNOWN),
                                           ("empty", UNKNOWN),
                                           ("pickle_code", PYTORCH)])
def test_identified_by_content(files: dict[str, Path], key: str, kind: str) -> None:
    assert identify(files[key]).kind == kind


def test_every_tf_checkpoint_form_is_identified() -> None:
    for given in (FIXTURE, FIXTURE / "model.ckpt-7", FIXTURE / "model.ckpt-7.index",
                  FIXTURE / "model.ckpt-7.data-00000-of-00001", FIXTURE / "checkpoint"):
        found = identify(given)
        assert found.kind == TF_CHECKPOINT and found.path == FIXTURE / "model.ckpt-7", given
        assert [p.name for p in found.files] == ["model.ckpt-7.index", "model.ckpt-7.data-00000-of-00001"]


@pytest.mark.parametrize(("key", "words"), [
    ("tf_as_pth", "TensorFlow checkpoint"), ("onnx_as_pth", "ONNX model"), ("html_as_pth", "HTML"),
    ("zip_no_pkl", "without a PyTorch data.pkl"), ("empty", "empty file"),
    ("pickle_code", "not unpickled, because that could run code")])
def test_refusals_name_what_was_found_and_never_suggest_an_unsafe_load(files: dict[str, Path], key: str,
                                                                        words: str, capsys) -> None:
    with pytest.raises(CheckpointError) as info:
        load_weights(_demo_model(), files[key], DEMO)
    msg = str(info.value)
    assert words in msg, msg
    assert "weights_only" not in msg and "trust" not in msg.lower()
    assert "this must never run" not in capsys.readouterr().out


def test_tf_checkpoint_for_a_pytorch_model_names_the_fix() -> None:
    with pytest.raises(CheckpointError, match="no TF seed model: leave out --model"):
        load_weights(_demo_model(), FIXTURE, DEMO)


def test_read_state_dict_names_a_tf_checkpoint(files: dict[str, Path]) -> None:
    """The report that started it: a .index got torch's unpickling error suggesting weights_only=False."""
    with pytest.raises(CheckpointError, match="is a TensorFlow checkpoint, not a PyTorch checkpoint"):
        read_state_dict(FIXTURE / "model.ckpt-7.index")


def test_suffix_does_not_route(files: dict[str, Path]) -> None:
    """A torch.save file named .h5 goes to the PyTorch loader (and fails there on its keys, not on HDF5)."""
    with pytest.raises(CheckpointError, match="does not fit --model demo"):
        load_weights(_demo_model(), files["pth_as_h5"], DEMO)


def test_cli_one_line_exit_2(files: dict[str, Path], tmp_path: Path) -> None:
    for key, words in (("onnx_as_pth", "ONNX model"), ("html_as_pth", "HTML")):
        run = subprocess.run([sys.executable, "-m", "build_engine", "--weights", str(files[key]),
                              "--precision", "fp32", "--backend", "onnxruntime", "--output", str(tmp_path)],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 2, run.stderr
        lines = [line for line in run.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and words in lines[0], run.stderr
    run = subprocess.run([sys.executable, "-m", "build_engine", "--weights", str(tmp_path / "model.ckpt-5"),
                          "--precision", "fp32"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "model.ckpt-5.index" in run.stderr
