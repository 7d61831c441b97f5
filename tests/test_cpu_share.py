"""OpenCV's thread pool during a run: one thread while inference shares the CPU, the caller's
setting back afterwards, a user's OPENCV_FOR_THREADS_NUM left alone (runtime/cpu_share.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import pytest

import pspnet_rt as rt
from runtime.cpu_share import ENV, inference_on_host_cpu


@pytest.fixture
def opencv_threads() -> int:
    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    yield 2
    cv2.setNumThreads(before)


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_a_cpu_run_uses_one_opencv_thread_and_gives_the_setting_back(
        demo_artefacts: dict[str, Path], backend: str, opencv_threads: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    seen = []
    stream = rt.stream("demo", demo_artefacts[backend], max_frames=4, demo_frames=4)
    for _ in stream:
        seen.append(cv2.getNumThreads())
    assert seen == [1, 1, 1, 1] and stream.summary.ok
    assert cv2.getNumThreads() == opencv_threads


def test_a_users_opencv_setting_wins(demo_artefacts: dict[str, Path], opencv_threads: int,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "2")
    seen = [cv2.getNumThreads() for _ in rt.stream("demo", demo_artefacts["onnxruntime"], max_frames=3,
                                                   demo_frames=3)]
    assert seen == [opencv_threads] * 3


def test_only_inference_on_this_machines_cpu_counts(demo_artefacts: dict[str, Path]) -> None:
    with rt.load(demo_artefacts["openvino"]) as engine:
        assert inference_on_host_cpu(engine.backend)
    # no GPU or Triton server here: their backends' device strings, as runtime.backends sets them
    tensorrt = SimpleNamespace(name="tensorrt", device="NVIDIA H100 (cuda:0, cuda-python)")
    assert not inference_on_host_cpu(tensorrt)
    assert not inference_on_host_cpu(SimpleNamespace(name="onnxruntime", device="GPU (CUDA EP)"))
    assert not inference_on_host_cpu(SimpleNamespace(name="triton", device="127.0.0.1:8001"))


def test_runs_at_once_give_the_setting_back_when_the_last_ends(demo_artefacts: dict[str, Path],
                                                               opencv_threads: int,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    first = rt.stream("demo", demo_artefacts["onnxruntime"], max_frames=6, demo_frames=6)
    second = rt.stream("demo", demo_artefacts["openvino"], max_frames=3, demo_frames=3)
    it = iter(first)
    next(it)
    assert [cv2.getNumThreads() for _ in second] == [1, 1, 1]  # the second ends while the first runs
    assert second.summary.ok and cv2.getNumThreads() == 1
    assert [cv2.getNumThreads() for _ in it] == [1] * 5
    assert cv2.getNumThreads() == opencv_threads
