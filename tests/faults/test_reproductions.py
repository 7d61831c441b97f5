"""The five reproductions of issue 13, each as it was reported, on real file systems, real
encoders, real servers and real signals."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.faults.helpers import (
    artefact_state,
    call_main,
    fill,
    free_port,
    hidden_leftovers,
    last_line,
    needs_ffmpeg,
    one_line,
    spawn,
    stop,
    tmpfs,
    video_frames,
    wait_for,
)
from tests.test_runtime_backends import clone_artefact
from tests.test_runtime_sources import write_video

INT8 = ["--precision", "int8", "--backend", "onnxruntime", "--input-size", "96x192",
        "--calib-method", "minmax", "--calib-images", "4", "--eval-images", "4"]



# ------------------------------------------------------------------- 1. full disk, video
@needs_ffmpeg
@pytest.mark.fault("repro-1-full-disk-video")
def test_ffmpeg_trailer_failure_is_not_a_video(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ffmpeg exits 0 after 'Error writing trailer ... No space left': the file has no index
    and does not play. With the free-space guard off (so the encoder really hits ENOSPC), the
    check at close must refuse it, remove it and keep the file that was there."""
    from runtime import sinks
    from runtime.errors import WriteError

    monkeypatch.setattr(sinks, "MIN_FREE_BYTES", 0, raising=False)
    with tmpfs(tmp_path / "d", "2m") as d:
        (d / "o.mp4").write_bytes(b"the previous video")
        fill(d, 36 * 1024)
        video = sinks.VideoSink(d / "o.mp4", 10)
        video.open((192, 96))
        noise = np.random.default_rng(0).integers(0, 255, (20, 96, 192, 3), dtype=np.uint8)  # incompressible
        with pytest.raises(WriteError, match="not whole"):
            for frame in noise:
                video.write(frame)
            video.close()
        video.close()  # the second close is a no-op
        assert (d / "o.mp4").read_bytes() == b"the previous video"
        assert hidden_leftovers(d) == []


@needs_ffmpeg
@pytest.mark.fault("repro-1-full-disk-video")
def test_full_disk_output_is_refused_before_the_run(ov: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    from runtime.cli import main

    with tmpfs(tmp_path / "d", "2m") as d:
        fill(d, 36 * 1024)
        code = main(["--video", "demo", "--max-frames", "20", "--engine", ov, "--output", str(d / "o.mp4")])
        out, err = capsys.readouterr()
        assert code == 2
        one_line(err, "--output", "KB free")
        assert "written" not in out and not (d / "o.mp4").exists() and hidden_leftovers(d) == []


@needs_ffmpeg
@pytest.mark.fault("repro-1-full-disk-mid-run")
def test_disk_filling_up_mid_run(ov: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from runtime.cli import main

    with tmpfs(tmp_path / "d", "4m") as d:
        fill(d, 700 * 1024)
        code = main(["--video", "demo", "--demo-frames", "30", "--loop", "--max-frames", "2000",
                     "--engine", ov, "--output", str(d / "o.mp4"), "--masks", str(d / "m"),
                     "--stats", str(d / "s.jsonl")])
        out, err = capsys.readouterr()
        assert code == 1, err
        one_line(err)
        assert " processed," in out and " written," not in out  # the summary does not claim the files
        # whatever is there is whole
        if (d / "o.mp4").exists():
            assert video_frames(d / "o.mp4") > 0
        if (d / "s.jsonl").exists():
            assert all(json.loads(line) for line in (d / "s.jsonl").read_text().splitlines())
        for png in (d / "m").glob("*.png"):
            assert cv2.imread(str(png), cv2.IMREAD_UNCHANGED) is not None, png
        assert hidden_leftovers(d) == []


# --------------------------------------------------------------- 2. OpenVINO blob cache
def _masks(folder: Path) -> list[np.ndarray]:
    return [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(folder.glob("*.png"))]


def _flip(blob: Path) -> None:
    data = bytearray(blob.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 4000, 7):
        data[i] ^= 0x5A
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))


DAMAGE = {
    "bytes flipped": _flip,
    "truncated": lambda b: (b.chmod(0o644), b.write_bytes(b.read_bytes()[: b.stat().st_size // 2])),
    "emptied": lambda b: (b.chmod(0o644), b.write_bytes(b"")),
    "replaced by a folder": lambda b: (b.unlink(), b.mkdir(), (b / "x").write_text("x")),
    "sidecar garbage": lambda b: (_flip(b), (b.parent / "pspnet-rt-blobs.json").write_text("{not json")),
}


@pytest.mark.fault("repro-2-ov-cache")
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_blob_cache_is_not_trusted(demo_artefacts: dict[str, Path], tmp_path: Path, damage: str,
                                           capsys: pytest.CaptureFixture) -> None:
    from runtime.cli import main

    manifest = clone_artefact(demo_artefacts["openvino"], tmp_path / "art")
    run = ["--video", "demo", "--demo-frames", "4", "--engine", str(manifest)]
    assert main([*run, "--masks", str(tmp_path / "clean")]) == 0
    blobs = [p for p in (tmp_path / "art" / "ov_cache").iterdir() if p.suffix == ".blob"]
    assert len(blobs) == 1
    DAMAGE[damage](blobs[0])
    capsys.readouterr()
    assert main([*run, "-v", "--masks", str(tmp_path / "after")]) == 0  # -v: the info lines too
    clean, after = _masks(tmp_path / "clean"), _masks(tmp_path / "after")
    assert len(clean) == len(after) == 4
    agree = [float((a == b).mean()) for a, b in zip(clean, after)]
    assert agree == [1.0] * 4, f"pixels equal to a clean run's: {agree}"  # not 22-28 % of them
    assert f"dropped compiled-model cache file {blobs[0]}" in capsys.readouterr().err  # said what it dropped
    blob = blobs[0]
    assert blob.is_file() and blob.stat().st_size > 1000  # rebuilt, and recorded again
    record = json.loads((tmp_path / "art" / "ov_cache" / "pspnet-rt-blobs.json").read_text())
    from artefact.files import sha256_file

    assert record[blob.name]["sha256"] == sha256_file(blob)


# ------------------------------------------------------- 3. a failed rebuild destroys nothing
@pytest.fixture(scope="module")
def good_int8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real INT8 artefact (its gate passes at --max-miou-drop 100): the thing a rebuild must not lose."""
    from build_engine.cli import main

    folder = tmp_path_factory.mktemp("good-int8")
    assert call_main(main, [*INT8, "--max-miou-drop", "100", "--output", str(folder)]) == 0
    return folder


def _copy(folder: Path, dest: Path) -> Path:
    shutil.copytree(folder, dest)
    return dest


def _artefact_ok(folder: Path) -> None:
    from artefact.manifest import load_manifest

    manifests = list(folder.glob("*.json"))
    assert len(manifests) == 1, f"the artefact's manifest is gone: {sorted(p.name for p in folder.iterdir())}"
    load_manifest(manifests[0]).verify_file()


@pytest.mark.fault("repro-3-failed-rebuild", "repro-3-crash-between-renames")
def test_failed_rebuild_keeps_the_good_artefact(good_int8: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    """--max-miou-drop 0 makes the gate fail. Planted first, by the commit steps themselves: what a
    SIGKILLed build leaves (its marked work folder) and what a build killed between moving its model
    in and committing its manifest leaves (a versioned model file it noted, that no manifest names):
    the old manifest still verifies against its own files, and the next build (this one) removes
    both - they are provably ours."""
    import tempfile

    from artefact import ownership
    from artefact.manifest import load_manifest
    from build_engine import commit
    from build_engine.cli import main

    folder = _copy(good_int8, tmp_path / "out")
    before = artefact_state(folder)
    (manifest_path,) = folder.glob("*.json")
    name = manifest_path.stem
    # a SIGKILLed build's work folder: made and marked as commit.work_dir does, never cleaned up
    stale = Path(tempfile.mkdtemp(prefix=f".{name}{commit.WORK_MARK}", dir=folder))
    ownership.mark_work_dir(stale, "build")
    (stale / "raw.onnx").write_bytes(b"x" * 1000)
    model = load_manifest(manifest_path).model_path
    new_model = folder / "new.onnx"
    new_model.write_bytes(b"a new model that never got its manifest")
    orphan_name = commit.versioned_name(name, "0123456789ab" * 6, model.suffix)
    commit.move_in({new_model: orphan_name}, folder)  # noted, moved in; then the build died
    orphan = folder / orphan_name
    _artefact_ok(folder)  # the crash left a valid artefact: the old manifest, its own files

    code = call_main(main, [*INT8, "--max-miou-drop", "0", "--output", str(folder)])
    err = capsys.readouterr().err
    assert code == 1
    _artefact_ok(folder)
    assert not stale.exists() and not orphan.exists()
    assert artefact_state(folder) == before  # byte for byte
    assert hidden_leftovers(folder) == []
    last_line(err, "accuracy gate failed", "nothing was changed")


@pytest.mark.fault("repro-3-interrupted-rebuild")
def test_interrupted_rebuild_keeps_the_good_artefact(good_int8: Path, tmp_path: Path) -> None:
    folder = _copy(good_int8, tmp_path / "out")
    before = artefact_state(folder)
    proc = spawn("build_engine", *INT8, "--max-miou-drop", "100", "--force", "--output", str(folder))
    try:
        wait_for(lambda: any(p.is_dir() and p.name.startswith(".") for p in folder.iterdir()),
                 "the build's work folder", proc=proc)
        time.sleep(0.5)  # inside the export
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        stop(proc)
    assert proc.returncode == 130, err
    _artefact_ok(folder)
    assert artefact_state(folder) == before
    assert hidden_leftovers(folder) == []
    last_line(err, "interrupted by SIGINT", "nothing was changed")


# ------------------------------------------------------------ 4. a stream that never comes
@pytest.mark.fault("repro-4-signal-during-open")
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_ends_a_blocked_open(ov: str, sig: int, code: int) -> None:
    port = free_port()
    proc = spawn("runtime", "--video", f"udp://127.0.0.1:{port}", "--timeout", "60", "--engine", ov)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        wait_for(lambda: _udp_bound(port), "FFmpeg listening on the port", proc=proc)
        time.sleep(0.5)  # blocked inside OpenCV's open now
        t0 = time.monotonic()
        proc.send_signal(sig)
        proc.wait(timeout=30)
        took = time.monotonic() - t0
    finally:
        stop(proc)
    reader.join(timeout=10)
    assert proc.returncode == code, "".join(lines)
    assert took < 3.0, f"took {took:.1f} s to stop"
    last_line("".join(lines), f"interrupted by {signal.Signals(sig).name}")


def _udp_bound(port: int) -> bool:
    """Something (FFmpeg, opening the stream) has bound this UDP port on this machine."""
    suffix = f":{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        if any(row.split()[1].endswith(suffix) for row in rows if len(row.split()) > 1):
            return True
    return False


# ------------------------------------------------------------------ 5. an mp4 over HTTP
class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """python's own http.server (no byte ranges, like the report) on 127.0.0.1, over a folder."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.fault("repro-5-http-mp4")
@pytest.mark.parametrize(("extra", "expected"), [([], 25), (["--max-frames", "20"], 20)])
def test_mp4_over_http_is_read_like_a_file(ov: str, web: tuple[str, Path], tmp_path: Path,
                                           extra: list[str], expected: int) -> None:
    from runtime.cli import main

    url, www = web
    write_video(www / "clip.mp4", frames=25, size=(96, 48))
    stats, summary = tmp_path / "s.jsonl", tmp_path / "sum.json"
    assert main(["--video", f"{url}/clip.mp4", "--engine", ov, "--stats", str(stats),
                 "--summary-json", str(summary), *extra]) == 0
    frames = [json.loads(line)["frame"] for line in stats.read_text().splitlines()]
    assert frames == list(range(expected))  # every frame, once, in order
    result = json.loads(summary.read_text())
    assert result["reconnects"] == 0 and result["dropped"] == {}
    assert result["source"].startswith("remote video")


MJPEG_TYPE = "multipart/x-mixed-replace; boundary=frame"


class _Camera(http.server.BaseHTTPRequestHandler):
    """An MJPEG camera: one endless multipart response."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", MJPEG_TYPE)
        self.end_headers()
        i = 0
        try:
            while i < 2000:
                _, jpg = cv2.imencode(".jpg", np.full((96, 192, 3), (i * 7) % 255, np.uint8))
                head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                self.wfile.write(head + jpg.tobytes() + b"\r\n")
                i += 1
                time.sleep(0.04)
        except OSError:
            pass

    do_HEAD = do_GET  # a camera that answers HEAD with its stream, as some do


@pytest.mark.fault("repro-5-http-live")
def test_mjpeg_over_http_stays_live(ov: str, tmp_path: Path) -> None:
    from runtime.cli import main
    from runtime.sources import SourceOptions, parse_source

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Camera)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/cam.mjpg"
        with parse_source(url, SourceOptions(timeout=5)) as source:
            assert source.live and source.kind == "stream"
        summary = tmp_path / "sum.json"
        assert main(["--video", url, "--engine", ov, "--max-frames", "5", "--timeout", "5",
                     "--summary-json", str(summary)]) == 0
        assert json.loads(summary.read_text())["source"].startswith("stream")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.fault("repro-5-http-live")
def test_hls_playlists(web: tuple[str, Path]) -> None:
    """What the server says decides (the segments themselves are not needed to tell)."""
    from runtime.http_probe import FILE, LIVE, probe

    url, www = web
    (www / "live.m3u8").write_text("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nseg1.ts\n")
    (www / "vod.m3u8").write_text("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nseg1.ts\n#EXT-X-ENDLIST\n")
    assert probe(f"{url}/live.m3u8", 5, "live").kind == LIVE
    assert probe(f"{url}/vod.m3u8", 5, "vod").kind == FILE
