"""semseg checkpoints load strictly; misfits get one clear message naming the likely --model."""

from __future__ import annotations

import pytest
import torch

from pspnet.build import create_model, load_model
from pspnet.errors import CheckpointError
from pspnet.model import PSPNet
from pspnet.weights import load_weights, read_state_dict, save_checkpoint
from pspnet.zoo import get_spec


def semseg_checkpoint(path, model: PSPNet) -> None:
    """Exactly what semseg's train.py saves from a DataParallel model."""
    sd = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"epoch": 3, "state_dict": sd, "optimizer": {"state": {}, "param_groups": []}}, path)


def test_semseg_checkpoint_with_aux_and_module_prefix_loads(tmp_path):
    spec = get_spec("demo")
    source = create_model(spec, aux=True)
    for p in source.parameters():
        torch.nn.init.normal_(p, std=0.02)
    path = tmp_path / "train_epoch_3.pth"
    semseg_checkpoint(path, source)
    model, info = load_model(spec, path)
    assert info["source"] == "file" and len(info["sha256"]) == 64
    assert model.aux is None  # dropped on purpose for inference
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, source.state_dict()[key])


def test_bare_state_dict_and_our_fp16_checkpoint_load(tmp_path):
    spec = get_spec("demo")
    source = create_model(spec)
    torch.save(source.state_dict(), tmp_path / "bare.pth")
    save_checkpoint(tmp_path / "half.pth", source, half=True)
    for name in ("bare.pth", "half.pth"):
        model = create_model(spec)
        load_weights(model, tmp_path / name, spec)
        w = model.state_dict()["cls.4.weight"]
        assert w.dtype == torch.float32
        torch.testing.assert_close(w, source.state_dict()["cls.4.weight"], atol=1e-3, rtol=1e-3)


def test_other_class_count_names_the_right_model(tmp_path):
    path = tmp_path / "ade.pth"
    semseg_checkpoint(path, PSPNet(50, 150))
    model = create_model(get_spec("pspnet50_cityscapes"))
    with pytest.raises(CheckpointError) as err:
        load_weights(model, path, get_spec("pspnet50_cityscapes"))
    message = str(err.value)
    assert "150 classes" in message and "19 classes" in message
    assert "pspnet50_ade20k" in message


def test_other_depth_is_refused(tmp_path):
    path = tmp_path / "r101.pth"
    semseg_checkpoint(path, PSPNet(101, 19))
    with pytest.raises(CheckpointError, match=r"ResNet-101"):
        load_weights(create_model(get_spec("pspnet50_cityscapes")), path,
                     get_spec("pspnet50_cityscapes"))


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04truncated"])
def test_garbage_files_are_refused(tmp_path, content):
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"is something else .*, not weights we can read"):
        read_state_dict(path)


def test_truncated_real_checkpoint_is_refused(tmp_path):
    path = tmp_path / "cut.pth"
    torch.save({"state_dict": create_model(get_spec("demo")).state_dict()}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError):
        read_state_dict(path)


def test_pickled_code_is_never_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pwned')",))

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": Evil()}, path)
    with pytest.raises(CheckpointError):
        read_state_dict(path)
