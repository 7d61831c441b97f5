"""Several --video streams sharing one in-process backend: per-stream outputs, order, names."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.cli import main
from runtime.errors import UsageError
from runtime.streams import parse_streams, stream_path


def test_stream_names_and_paths(tmp_path: Path) -> None:
    assert parse_streams(["demo", "gate=rtsp://cam/s?a=b", "x.mp4"]) == \
        [("0", "demo"), ("gate", "rtsp://cam/s?a=b"), ("2", "x.mp4")]
    assert parse_streams(["rtsp://cam/s?a=b"]) == [("0", "rtsp://cam/s?a=b")]  # '=' inside a URL
    odd = tmp_path / "a=b.mp4"
    odd.write_bytes(b"")
    assert parse_streams([str(odd)]) == [("0", str(odd))]  # an existing file is never a NAME=
    with pytest.raises(UsageError, match="named cam"):
        parse_streams(["cam=demo", "cam=demo"])
    assert stream_path("out/run.mp4", "gate") == Path("out/run-gate.mp4")


def test_three_streams_share_one_backend(demo_artefacts: dict[str, Path], tmp_path: Path) -> None:
    engine, n = str(demo_artefacts["onnxruntime"]), 10
    code = main(["--video", "demo", "--video", "side=demo", "--video", "demo", "--engine", engine,
                 "--demo-frames", str(n), "--output", str(tmp_path / "out.mp4"),
                 "--masks", str(tmp_path / "m"),
                 "--stats", str(tmp_path / "stats.jsonl"), "--summary-json", str(tmp_path / "summary.json")])
    assert code == 0
    assert main(["--video", "demo", "--engine", engine, "--demo-frames", str(n),
                 "--masks", str(tmp_path / "single"), "--stats", str(tmp_path / "single.jsonl")]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames"] == 3 * n and sorted(summary["streams"]) == ["0", "2", "side"]
    records = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    for name in ("0", "side", "2"):
        assert [r["frame"] for r in records if r["stream"] == name] == list(range(n))  # lossless, in order
        cap = cv2.VideoCapture(str(tmp_path / f"out-{name}.mp4"))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n
        cap.release()
        for k in range(n):  # the same class maps as the stream alone
            a = cv2.imread(str(tmp_path / "m" / name / f"{k:06d}.png"), cv2.IMREAD_UNCHANGED)
            b = cv2.imread(str(tmp_path / "single" / f"{k:06d}.png"), cv2.IMREAD_UNCHANGED)
            assert np.array_equal(a, b)
    single = json.loads((tmp_path / "single.jsonl").read_text().splitlines()[0])
    assert "stream" not in single and list(single)[:2] == ["frame", "n"]  # one stream: lines as before


@pytest.mark.parametrize("flag", ["--show", "--benchmark"])
def test_single_stream_flags_refuse_several_streams(demo_artefacts: dict[str, Path], flag: str,
                                                   capsys: pytest.CaptureFixture) -> None:
    code = main(["--video", "demo", "--video", "demo", "--engine", str(demo_artefacts["onnxruntime"]),
                 "--demo-frames", "2", flag])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "one stream" in err[0]
