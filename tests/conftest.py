"""Shared fixtures: real artefacts of a tiny PSPNet, built once per session by the real builder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

TINY_SIZE = (96, 192)


def _has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


@pytest.fixture(scope="session")
def artefact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artefacts")


@pytest.fixture(scope="session")
def demo_artefacts(artefact_dir: Path) -> dict[str, Path]:
    """backend -> manifest path of the demo model exported at 96x192, FP32 (OpenVINO and ORT)."""
    if not _has_torch():
        pytest.skip("building artefacts needs the export extra (torch)")
    from build_engine.api import build_artefact

    return {backend: build_artefact("demo", "fp32", backend, TINY_SIZE, output=artefact_dir)
            for backend in ("openvino", "onnxruntime")}


@pytest.fixture(scope="session")
def confidence_artefact(artefact_dir: Path) -> Path:
    """Manifest of the demo model at 96x192, FP32 on ONNX Runtime, built with both graph options:
    --confidence (the uint8 confidence output) and --flip (image + mirror logits averaged)."""
    if not _has_torch():
        pytest.skip("building artefacts needs the export extra (torch)")
    from build_engine.api import build_artefact

    return build_artefact("demo", "fp32", "onnxruntime", TINY_SIZE, output=artefact_dir, confidence=True,
                          flip=True, verify_frames=2)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`gpu` tests skip cleanly where TensorRT or a CUDA device is absent, `cuda` tests where no
    CUDA device answers through the bindings (checked only when such tests were collected)."""
    from devices import device_info, tensorrt_usable

    marks = {m for item in items for m in ("gpu", "cuda") if m in item.keywords}
    absent = {"gpu": "gpu" in marks and not tensorrt_usable(),
              "cuda": "cuda" in marks and device_info() is None}
    reasons = {"gpu": "needs an NVIDIA GPU with TensorRT (not present here)",
               "cuda": "needs an NVIDIA GPU and CUDA Python bindings (not present here)"}
    for item in items:
        for mark in ("gpu", "cuda"):
            if mark in item.keywords and absent[mark]:
                item.add_marker(pytest.mark.skip(reason=reasons[mark]))


@pytest.fixture(scope="session")
def tiny_data_road(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SYNTHETIC KITTI road data_road folder (10 training + 2 testing images at about 32x96)."""
    from segdata.kitti_road_synth import write_data_road

    return write_data_road(tmp_path_factory.mktemp("kitti_road"), n_train=10, n_test=2, height=32, width=96)
