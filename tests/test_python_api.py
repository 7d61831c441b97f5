"""The Python API (`import pspnet_rt`): the docs example runs as written, and each promise of
docs/python-api.md holds on real artefacts, real sources and real outputs."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import pspnet_rt as rt
from tests.conftest import TINY_SIZE

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "python-api.md"


def docs_example() -> str:
    """The first ```python block of docs/python-api.md, exactly as a reader copies it."""
    blocks = re.findall(r"^```python\n(.*?)^```$", DOC.read_text(), flags=re.S | re.M)
    assert blocks, f"no python example in {DOC}"
    return blocks[0]


def test_the_docs_example_runs_as_written(demo_artefacts: dict[str, Path], artefact_dir: Path,
                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run verbatim in a fresh folder whose artefacts/ is the session's (so the build is the
    cached one the fixture made with the same options): every line does what it says."""
    code = docs_example()
    assert 8 <= len([ln for ln in code.splitlines() if ln.strip()]) <= 14  # a short tour
    (tmp_path / "artefacts").symlink_to(artefact_dir, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOC), "exec"), {"__name__": "__main__"})
    lines = out.getvalue().splitlines()
    assert [int(ln.split()[0]) for ln in lines[:8]] == list(range(8))  # one line per streamed frame
    assert lines[-1].startswith("8 frames") and lines[-1].endswith("every output whole: True")
    from artefact.ownership import RECORD

    masks = sorted(p.name for p in (tmp_path / "masks").iterdir())
    assert masks == [RECORD] + [f"{i:06d}.png" for i in range(8)]  # the PNGs, recorded as ours
    labels = cv2.imread(str(tmp_path / "labels.png"), cv2.IMREAD_UNCHANGED)
    last = cv2.imread(str(tmp_path / "masks" / "000007.png"), cv2.IMREAD_UNCHANGED)
    assert labels.shape == TINY_SIZE and np.array_equal(labels, last)  # engine(frame) == the pipeline's
    cap = cv2.VideoCapture(str(tmp_path / "demo.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 8
    cap.release()


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_engine_segments_any_size_sync_and_async(demo_artefacts: dict[str, Path], backend: str) -> None:
    frames = [np.random.default_rng(i).integers(0, 255, (h, w, 3), np.uint8)
              for i, (h, w) in enumerate([(96, 192), (120, 160), (61, 333)])]
    with rt.load(rt.Artefact.open(demo_artefacts[backend])) as engine:
        assert engine.describe()["backend"] == backend and engine.classes == list(engine.manifest.classes)
        alone = [engine(f) for f in frames]
        assert [a.shape for a in alone] == [f.shape[:2] for f in frames] and alone[0].dtype == np.uint8
        done = []
        for i, frame in enumerate(frames):
            if engine.in_flight >= engine.max_in_flight:
                done.append(engine.collect())
            engine.submit(frame, i)
        while engine.in_flight:
            done.append(engine.collect())
        assert [d.tag for d in done] == [0, 1, 2]  # submission order
        for d in done:
            assert np.array_equal(d.labels, alone[d.tag]) and d.timings["inference"] > 0
        with pytest.raises(ValueError, match="uint8 HxWx3"):
            engine(frames[0].astype(np.float32))


def test_stream_temporal_marks_key_and_propagated_frames(demo_artefacts: dict[str, Path]) -> None:
    with rt.load(demo_artefacts["onnxruntime"]) as engine:
        results = rt.stream("demo", engine, temporal="fixed:3", max_frames=7, demo_frames=7)
        seen = list(results)
        assert [r.key for r in seen] == [True, False, False, True, False, False, True]
        assert [r.propagated for r in seen[:3]] == [False, True, True] and seen[1].fields["reason"]
        assert all(r.labels.shape == r.frame.shape[:2] for r in seen)
        assert results.summary.ok and results.summary.frames == 7
        assert engine(seen[0].frame).shape == TINY_SIZE  # the stream left the engine open and idle


def test_leaving_a_stream_early_closes_its_outputs_whole(demo_artefacts: dict[str, Path],
                                                         tmp_path: Path) -> None:
    video = tmp_path / "early.mp4"
    stream = rt.stream("demo", demo_artefacts["openvino"], output=str(video))  # a 300-frame clip
    for r in stream:
        if r.index == 2:
            break
    assert stream.summary is not None and 3 <= stream.summary.frames < 300
    assert stream.summary.exit_signal is None and not stream.summary.errors
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == stream.summary.frames  # whole, every frame written
    cap.release()


def test_run_returns_the_summary_and_refuses_bad_input(demo_artefacts: dict[str, Path],
                                                       tmp_path: Path) -> None:
    from runtime.errors import UsageError

    engine = str(demo_artefacts["onnxruntime"])
    summary = rt.run(rt.RunOptions(videos=["a=demo", "b=demo"], demo_frames=3), engine=engine,
                     stats=str(tmp_path / "s.jsonl"))
    assert summary.ok and summary.frames == 6 and sorted(summary.streams) == ["a", "b"]
    assert summary.table.startswith("pspnet-rt summary (2 streams") and summary.data["frames"] == 6
    with pytest.raises(UsageError, match="--serve-token needs --serve"):
        rt.RunOptions(serve_token="x")
    with pytest.raises(UsageError, match=r"does not exist|no such|not found"):
        rt.run(videos=[str(tmp_path / "missing.mp4")], engine=engine)


def test_the_package_surface() -> None:
    """One import path: every public name exists and says what it is; importing loads no torch."""
    for name in rt.__all__:
        obj = getattr(rt, name)
        assert name == "__version__" or (obj.__doc__ or "").strip(), f"pspnet_rt.{name} has no docstring"
    code = "import sys, pspnet_rt; assert 'torch' not in sys.modules and 'build_engine' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
