"""Every file the tools read, damaged every way we could think of: missing, empty, truncated,
garbage, the wrong type, hand-edited. In-process (`main(argv)`), on real artefacts, real
checkpoints, real caches."""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.faults.helpers import call_main, hidden_leftovers, needs_ffmpeg, one_line, rt
from tests.test_runtime_backends import clone_artefact
from tests.test_runtime_sources import write_video

ROOT = Path(__file__).resolve().parents[2]
DEMO_WEIGHTS = ROOT / "pspnet" / "weights" / "demo_synthetic.pth"




# ---------------------------------------------------------------- hand-edited manifests
def _wrong_value(annotation: str, current: object) -> object:
    """A value of the wrong type for a field, derived from the schema's own annotation."""
    a = annotation.split("|")[0].strip()
    if a == "str":
        return 12345
    if a == "bool":
        return "yes"
    if a == "int":
        return "7"
    if a.startswith("list"):
        return "not a list"
    if a.startswith("dict"):
        return [1, 2]
    return {"unexpected": current}


def _field_cases() -> list[tuple[str, object]]:
    from artefact.manifest import Manifest

    typed = [(f.name, _wrong_value(str(f.type), None)) for f in dataclasses.fields(Manifest)
             if f.name not in ("path", "format")]
    meaning = [("input_size", [0, 0]), ("input_size", ["a", 3]), ("input_size", [96]),
               ("palette", [[0, 0, 0]]), ("palette", [[0, 0, 999]] * 19), ("model_file", "../../etc/passwd"),
               ("model_file", ""), ("std", [1.0, 0.0, 1.0]), ("mean", [1.0]), ("model_sha256", "xyz"),
               ("backend", "cuda"), ("precision", "fp8"), ("classes", []), ("channel_order", "XYZ"),
               ("companion_files", {"../x.bin": "00"})]
    return typed + meaning


@pytest.mark.fault("seen-manifest-field")
@pytest.mark.parametrize(("field", "value"), _field_cases(),
                         ids=[f"{f}={json.dumps(v)[:20]}" for f, v in _field_cases()])
def test_hand_edited_manifest_field(demo_artefacts: dict[str, Path], tmp_path: Path, field: str,
                                    value: object, capsys: pytest.CaptureFixture) -> None:
    manifest = clone_artefact(demo_artefacts["onnxruntime"], tmp_path / "art", **{field: value})
    code, _, err, _ = rt(["--video", "demo", "--demo-frames", "2", "--engine", str(manifest)], capsys)
    assert code == 2, err
    one_line(err, f"'{field}'", "rebuild with")


@pytest.mark.fault("seen-manifest-field")
def test_missing_required_field(demo_artefacts: dict[str, Path], tmp_path: Path,
                                capsys: pytest.CaptureFixture) -> None:
    manifest = clone_artefact(demo_artefacts["onnxruntime"], tmp_path / "art")
    data = json.loads(manifest.read_text())
    del data["classes"]
    manifest.write_text(json.dumps(data))
    code, _, err, _ = rt(["--video", "demo", "--engine", str(manifest)], capsys)
    assert code == 2
    one_line(err, "classes")


# ------------------------------------------------------------------- broken manifests
MANIFEST_DAMAGE = {
    "missing": lambda p: p.unlink(),
    "empty": lambda p: p.write_text(""),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "binary garbage": lambda p: p.write_bytes(bytes(range(256)) * 4),
    "a JSON list": lambda p: p.write_text("[1, 2, 3]"),
    "another format": lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "format": "other/9"})),
    "a folder": lambda p: (p.unlink(), p.mkdir()),
}


@pytest.mark.fault("file-manifest")
@pytest.mark.parametrize("damage", list(MANIFEST_DAMAGE))
def test_broken_manifest(demo_artefacts: dict[str, Path], tmp_path: Path, damage: str,
                         capsys: pytest.CaptureFixture) -> None:
    manifest = clone_artefact(demo_artefacts["onnxruntime"], tmp_path / "art")
    MANIFEST_DAMAGE[damage](manifest)
    code, _, err, _ = rt(["--video", "demo", "--engine", str(manifest)], capsys)
    assert code == 2, err
    one_line(err, manifest.name)


# ------------------------------------------------------------------------ model files
def _flip_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


MODEL_DAMAGE = {
    "missing": lambda p: p.unlink(),
    "empty": lambda p: p.write_bytes(b""),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "one byte flipped": _flip_middle,
}


@pytest.mark.fault("file-model")
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("damage", list(MODEL_DAMAGE))
def test_damaged_model_file(demo_artefacts: dict[str, Path], tmp_path: Path, backend: str, damage: str,
                            capsys: pytest.CaptureFixture) -> None:
    from artefact.manifest import load_manifest

    manifest = clone_artefact(demo_artefacts[backend], tmp_path / "art")
    MODEL_DAMAGE[damage](load_manifest(manifest).model_path)
    code, _, err, _ = rt(["--video", "demo", "--demo-frames", "2", "--engine", str(manifest)], capsys)
    assert code == 2, err
    one_line(err, "ebuild with")  # Rebuild / rebuild


@pytest.mark.fault("file-model")
@pytest.mark.parametrize("damage", ["missing", "one byte flipped"])
def test_damaged_weights_bin(demo_artefacts: dict[str, Path], tmp_path: Path, damage: str,
                             capsys: pytest.CaptureFixture) -> None:
    from artefact.manifest import load_manifest

    manifest = clone_artefact(demo_artefacts["openvino"], tmp_path / "art")
    (companion,) = load_manifest(manifest).companion_files
    MODEL_DAMAGE[damage](manifest.parent / companion)
    code, _, err, _ = rt(["--video", "demo", "--demo-frames", "2", "--engine", str(manifest)], capsys)
    assert code == 2, err
    one_line(err, companion, "ebuild with")


# ------------------------------------------------------------------------------ videos
@pytest.mark.fault("file-video")
@pytest.mark.parametrize("kind", ["missing", "empty mp4", "text named mp4",
                                  "truncated mp4 (index at the end)", "folder without images",
                                  "one unreadable image"])
def test_bad_video_source(ov: str, tmp_path: Path, kind: str, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "in.mp4"
    if kind == "empty mp4":
        path.write_bytes(b"")
    elif kind == "text named mp4":
        path.write_text("this is not a video\n" * 100)
    elif kind.startswith("truncated"):
        write_video(path, frames=20)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "folder without images":
        path = tmp_path / "notes"
        path.mkdir()
        (path / "readme.txt").write_text("no images here")
    elif kind == "one unreadable image":
        path = tmp_path / "frame.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    code, _, err, _ = rt(["--video", str(path), "--engine", ov, "--masks", str(tmp_path / "m")], capsys)
    assert code == 2, err
    one_line(err, str(path))
    assert not (tmp_path / "m").exists() or not list((tmp_path / "m").iterdir())


@needs_ffmpeg
@pytest.mark.fault("file-video")
def test_truncated_video_with_index_in_front(ov: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A faststart mp4 cut in half still opens: its frames are processed, and the summary says
    the file ended early (a local file is what it is; exit 0, the outputs are whole)."""
    from runtime.sinks import VideoSink

    sink = VideoSink(tmp_path / "full.mp4", 10)
    sink.open((96, 48))
    rng = np.random.default_rng(1)
    for _ in range(40):
        sink.write(rng.integers(0, 255, (48, 96, 3), dtype=np.uint8))
    sink.close()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes((tmp_path / "full.mp4").read_bytes()[: (tmp_path / "full.mp4").stat().st_size // 2])
    stats = tmp_path / "s.jsonl"
    code, out, err, _ = rt(["--video", str(cut), "--engine", ov, "--stats", str(stats)], capsys)
    assert code == 0, err
    frames = [json.loads(line)["frame"] for line in stats.read_text().splitlines()]
    assert 0 < len(frames) < 40 and frames == sorted(frames)
    assert "ended after" in out


# ---------------------------------------------------------------------------- weights
def _weights(kind: str, folder: Path) -> Path:
    path = folder / ("w.h5" if kind == "garbage named .h5" else "w.pth")
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(DEMO_WEIGHTS.read_bytes()[: DEMO_WEIGHTS.stat().st_size // 2])
    elif kind in ("garbage", "garbage named .h5"):
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "a JSON file":
        path.write_text(json.dumps({"state_dict": {"a": 1}}))
    elif kind == "a pickle that runs code":
        path.write_bytes(pickle.dumps(_Exploit()))
    elif kind == "a folder":
        path.mkdir()
    return path


class _Exploit:
    def __reduce__(self) -> tuple:
        return (shutil.rmtree, ("/nonexistent-pspnet-rt-exploit",))


@pytest.mark.fault("file-weights")
@pytest.mark.parametrize("kind", ["empty", "truncated", "garbage", "garbage named .h5", "a JSON file",
                                  "a pickle that runs code", "a folder"])
def test_bad_weights(tmp_path: Path, kind: str, capsys: pytest.CaptureFixture) -> None:
    from build_engine.cli import main

    weights = _weights(kind, tmp_path)
    out = tmp_path / "out"
    code = call_main(main, ["--weights", str(weights), "--backend", "onnxruntime", "--input-size", "96x192",
                            "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    one_line(err, str(weights))
    assert not out.exists() or (not list(out.iterdir()) and hidden_leftovers(out) == [])


# ----------------------------------------------------------------- calibration sources
@pytest.mark.fault("file-calib-data")
@pytest.mark.parametrize(("flag", "kind"), [("--calib-data", "missing"), ("--calib-data", "no images"),
                                            ("--eval-data", "missing")])
def test_bad_calibration_source(tmp_path: Path, flag: str, kind: str, capsys: pytest.CaptureFixture) -> None:
    import time

    from build_engine.cli import main

    source = tmp_path / "frames"
    if kind == "no images":
        source.mkdir()
        (source / "notes.txt").write_text("x")
    t0 = time.monotonic()
    code = call_main(main, ["--precision", "int8", "--backend", "onnxruntime", "--input-size", "96x192",
                            flag, str(source), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2, err
    one_line(err, flag)
    assert time.monotonic() - t0 < 20  # refused before the export, not after it
    assert not (tmp_path / "out").exists()


# -------------------------------------------------------------------------- caches
@pytest.mark.fault("file-calib-cache")
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty JSON object"])
def test_damaged_calibration_cache(demo_artefacts: dict[str, Path], tmp_path: Path, damage: str,
                                   caplog: pytest.LogCaptureFixture) -> None:
    import onnx

    from artefact.manifest import load_manifest
    from calib.graph_parts import final_classifier
    from calib.quantize import preprocess, quantize_int8
    from calib.sources import load_frames

    fp32 = load_manifest(demo_artefacts["onnxruntime"]).model_path  # the FP32 graph, labels only
    pre = preprocess(fp32, tmp_path / "pre.onnx")
    exclude = [final_classifier(onnx.load(str(pre))).name]
    frames = load_frames("synthetic:calib:4", 4, 96, 192).frames
    cache = tmp_path / "ranges.calib"
    good = quantize_int8(pre, tmp_path / "a.onnx", frames, "minmax", exclude, cache).read_bytes()
    text = cache.read_text()
    cache.write_text({"truncated": text[: len(text) // 2], "garbage": "\0\1\2 not json",
                      "empty JSON object": "{}"}[damage])
    with caplog.at_level(logging.WARNING, logger="calib.quantize"):
        again = quantize_int8(pre, tmp_path / "b.onnx", frames, "minmax", exclude, cache)
    assert "calibrating again" in caplog.text
    assert again.read_bytes() == good  # the same ranges, recomputed
    assert json.loads(cache.read_text())


@pytest.mark.fault("file-clip-cache")
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_demo_clip_cache(tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    from segdata.clip_cache import CachedClip

    clip = CachedClip(3, 48, 96, 4, folder=tmp_path, progress=False)
    first = np.asarray(clip.images).copy()
    del clip
    images = next(tmp_path.glob("*-images.npy"))
    data = images.read_bytes()
    images.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x93NUMPY garbage" * 50)
    with caplog.at_level(logging.WARNING, logger="segdata.clip_cache"):
        again = CachedClip(3, 48, 96, 4, folder=tmp_path, progress=False)
    assert "rendering it again" in caplog.text
    assert np.array_equal(np.asarray(again.images), first)
