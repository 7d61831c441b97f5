"""Training: the loss goes down, checkpoints are semseg's format, resume and transfer work."""

from __future__ import annotations

import json

import torch

from pspnet.build import create_model
from pspnet.model import PSPNet
from pspnet.train import init_from, main
from pspnet.weights import read_state_dict
from pspnet.zoo import get_spec

TINY = ["--model", "demo", "--data", "synthetic:train:2@64x128", "--val", "synthetic:val:2@64x128",
        "--crop", "64x64", "--batch-size", "2", "--workers", "1", "--threads", "1",
        "--scale", "1.0,1.0"]


def test_short_training_lowers_the_loss_and_writes_semseg_checkpoints(tmp_path):
    out = tmp_path / "run"
    assert main([*TINY, "--iters", "24", "--eval-every", "8", "--save-every", "8", "--lr", "0.003",
                 "--optimizer", "adamw", "--out", str(out),
                 "--export-weights", str(tmp_path / "w.pth")]) == 0
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["iteration"] for h in history] == [8, 16, 24]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    ckpt = torch.load(out / "last.pth", weights_only=True)
    assert {"epoch", "state_dict", "optimizer"} <= set(ckpt)
    assert all(k.startswith("module.") for k in ckpt["state_dict"])
    exported = read_state_dict(tmp_path / "w.pth")
    assert exported["cls.4.weight"].dtype == torch.float16 and not any(k.startswith("aux.")
                                                                       for k in exported)


def test_resume_continues_where_it_stopped(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TINY, "--iters", "4", "--save-every", "2", "--eval-every", "100",
                 "--out", str(out)]) == 0
    assert main([*TINY, "--iters", "6", "--save-every", "2", "--eval-every", "100",
                 "--out", str(out), "--resume"]) == 0
    assert "at iteration 4" in capsys.readouterr().err
    assert torch.load(out / "last.pth", weights_only=True)["iteration"] == 6


def test_transfer_into_another_class_count(tmp_path):
    source = create_model(get_spec("demo"), aux=True)
    path = tmp_path / "cityscapes.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    target = PSPNet(18, 2, width=0.5)  # e.g. KITTI road / not road
    fresh = init_from(target, str(path))
    assert fresh == ["aux.4.bias", "aux.4.weight", "cls.4.bias", "cls.4.weight"]
    torch.testing.assert_close(target.state_dict()["layer4.1.conv2.weight"],
                               source.state_dict()["layer4.1.conv2.weight"])
