"""`pspnet-rt` end to end on real artefacts, real OpenCV/ffmpeg I/O and real signals.

Most runs go through `main(argv)` in-process (fast); exit-code, signal, stream and no-torch
checks run `python -m runtime` as a subprocess, the way users run it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from runtime.cli import main
from tests.test_runtime_backends import clone_artefact
from tests.test_runtime_sources import write_video

ROOT = Path(__file__).resolve().parents[1]
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                  reason="needs ffmpeg/ffprobe (scripts/install-system-deps.sh)")


def run_cli(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtime", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def probe(video: Path) -> dict:
    """ffprobe's view of a video (decodes every frame, so a truncated file fails here)."""
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                          "-show_entries", "stream=codec_name,pix_fmt,width,height,nb_read_frames",
                          "-of", "json", str(video)],
                         capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)["streams"][0]


def check_masks(folder: Path, size: tuple[int, int] | None = None) -> list[str]:
    """The mask PNGs of a run's folder, each whole; nothing else but the record of what we wrote."""
    from artefact.ownership import RECORD

    names = sorted(p.name for p in folder.iterdir() if p.name != RECORD)
    assert not [n for n in names if not n.endswith(".png")], names  # no temp files left behind
    assert not names or (folder / RECORD).is_file()
    for name in names:
        mask = cv2.imread(str(folder / name), cv2.IMREAD_UNCHANGED)
        assert mask is not None and mask.dtype == np.uint8 and mask.ndim == 2, name  # whole, class ids
        if size:
            assert mask.shape == size
    return names


def read_stats(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def ov(demo_artefacts: dict[str, Path]) -> str:
    return str(demo_artefacts["openvino"])


@needs_ffmpeg
def test_demo_to_video_masks_stats(ov: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    code = main(["--video", "demo", "--demo-frames", "6", "--engine", ov, "--output", str(out / "demo.mp4"),
                 "--masks", str(out / "masks"), "--stats", str(out / "stats.jsonl"),
                 "--summary-json", str(out / "summary.json")])
    assert code == 0
    video = probe(out / "demo.mp4")
    assert (video["codec_name"], video["pix_fmt"]) == ("h264", "yuv420p")  # plays in browsers
    assert (int(video["width"]), int(video["height"]), int(video["nb_read_frames"])) == (192, 96, 6)
    data = (out / "demo.mp4").read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # +faststart
    assert check_masks(out / "masks", (96, 192)) == [f"{i:06d}.png" for i in range(6)]
    stats = read_stats(out / "stats.jsonl")
    assert [s["frame"] for s in stats] == list(range(6))
    for key in ("capture_ms", "pre_ms", "inference_ms", "post_ms", "render_ms", "write_ms", "e2e_ms"):
        assert all(s[key] >= 0 for s in stats), key
    assert all(set(s["classes"]) <= set(range(19)) for s in stats)
    summary = capsys.readouterr().out
    for words in ("6 written, 0 dropped", "FPS", "precision f32 (manifest fp32)", "inference", "p99",
                  "end-to-end", "baseline TF PSPNet ~0.6 s/frame", "peak RSS"):
        assert words in summary
    result = json.loads((out / "summary.json").read_text())
    assert result["frames"] == 6 and result["backend"]["precision_ran"] == "f32"


def test_video_file_is_lossless_and_in_order(ov: str, tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.mp4", frames=15, size=(80, 40))
    code = main(["--video", str(clip), "--engine", ov, "--masks", str(tmp_path / "m"),
                 "--stats", str(tmp_path / "s.jsonl")])
    assert code == 0
    assert check_masks(tmp_path / "m", (40, 80)) == [f"{i:06d}.png" for i in range(15)]  # frame's own size
    assert [s["frame"] for s in read_stats(tmp_path / "s.jsonl")] == list(range(15))


def test_image_folder_with_a_corrupt_file(ov: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(5):
        cv2.imwrite(str(folder / f"img{i}.jpg"), np.full((50, 70, 3), 40 * i, np.uint8))
    (folder / "img2.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    code = main(["--video", str(folder), "--engine", ov, "--masks", str(tmp_path / "m"),
                 "--stats", str(tmp_path / "s.jsonl")])
    assert code == 0
    assert check_masks(tmp_path / "m", (50, 70)) == ["000000.png", "000001.png", "000003.png", "000004.png"]
    assert [s["name"] for s in read_stats(tmp_path / "s.jsonl")] == ["img0.jpg", "img1.jpg", "img3.jpg",
                                                                      "img4.jpg"]
    assert "4 written, 1 dropped (1 unreadable image)" in capsys.readouterr().out


@needs_ffmpeg
@pytest.mark.parametrize("mode, width", [("side-by-side", 384), ("mask", 192), ("overlay", 192)])
def test_render_modes(ov: str, tmp_path: Path, mode: str, width: int) -> None:
    video = tmp_path / f"{mode}.mp4"
    assert main(["--video", "demo", "--demo-frames", "2", "--engine", ov, "--output", str(video),
                 "--visualize", mode, "--alpha", "0.7"]) == 0
    info = probe(video)
    assert (int(info["width"]), int(info["nb_read_frames"])) == (width, 2)


def one_line_error(result: subprocess.CompletedProcess, *words: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one clear line, no traceback
    assert lines[0].startswith("pspnet-rt: ")
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unopenable_sources_exit_2_with_one_line(ov: str, tmp_path: Path) -> None:
    r = run_cli("--video", str(tmp_path / "nope.mp4"), "--engine", ov)
    assert r.returncode == 2
    one_line_error(r, "no such file or folder", "nope.mp4", "camN")
    r = run_cli("--video", "cam97", "--engine", ov)
    assert r.returncode == 2
    one_line_error(r, "cannot open camera cam97", "/dev/video97 does not exist")
    port = free_udp_port()
    r = run_cli("--video", f"udp://127.0.0.1:{port}", "--engine", ov, "--timeout", "1")
    assert r.returncode == 2
    assert f"pspnet-rt: cannot open stream udp://127.0.0.1:{port}: no video within 1 s" in r.stderr
    assert "Traceback" not in r.stderr


def test_manifest_mismatch_is_refused_with_rebuild_hint(demo_artefacts: dict[str, Path],
                                                        tmp_path: Path) -> None:
    r = run_cli("--video", "demo", "--engine", str(demo_artefacts["openvino"]), "--backend", "onnxruntime")
    assert r.returncode == 2
    one_line_error(r, "built for openvino, not onnxruntime", "python -m build_engine")
    tampered = clone_artefact(demo_artefacts["onnxruntime"], tmp_path / "sha")
    from artefact.manifest import load_manifest

    model = load_manifest(tampered).model_path
    model.write_bytes(model.read_bytes()[:-1] + b"!")
    r = run_cli("--video", "demo", "--engine", str(tampered))
    assert r.returncode == 2
    one_line_error(r, "does not match the sha256", "--force")
    engine = clone_artefact(demo_artefacts["onnxruntime"], tmp_path / "trt", backend="tensorrt",
                            **{"tools.tensorrt": "10.16.0.72"})
    r = run_cli("--video", "demo", "--engine", str(engine))
    assert r.returncode == 2
    one_line_error(r, "tensorrt")


def test_unwritable_outputs_exit_2(ov: str, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    r = run_cli("--video", "demo", "--engine", ov, "--masks", str(blocker / "masks"))
    assert r.returncode == 2  # refused while parsing, before anything is loaded
    one_line_error(r, "--masks", "is a file, not a folder")
    r = run_cli("--video", "demo", "--engine", ov, "--output", str(blocker / "o.mp4"))
    assert r.returncode == 2
    one_line_error(r, "--output", "is a file, not a folder")
    if os.geteuid() != 0:  # root writes through permission bits
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        r = run_cli("--video", "demo", "--engine", ov, "--masks", str(locked))
        assert r.returncode == 2


@needs_ffmpeg
def test_disk_full_mid_run_keeps_what_was_written(ov: str, tmp_path: Path) -> None:
    """/dev/full answers every write with ENOSPC: the run stops with exit 1, and the video and
    masks written up to then are complete and consistent."""
    r = run_cli("--video", "demo", "--demo-frames", "20", "--engine", ov, "--output", str(tmp_path / "o.mp4"),
                "--masks", str(tmp_path / "m"), "--stats", "/dev/full")
    assert r.returncode == 1
    assert "cannot write stats /dev/full: No space left on device" in r.stderr
    assert "Traceback" not in r.stderr
    written = len(check_masks(tmp_path / "m"))
    assert written >= 1
    assert int(probe(tmp_path / "o.mp4")["nb_read_frames"]) == written


@needs_ffmpeg
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_finalises_outputs(ov: str, tmp_path: Path, sig: int, code: int) -> None:
    stats = tmp_path / "s.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "runtime", "--video", "demo", "--loop", "--demo-frames",
                             "30", "--engine", ov, "--output", str(tmp_path / "o.mp4"),
                             "--masks", str(tmp_path / "m"), "--stats", str(stats)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if stats.exists() and len(stats.read_text().splitlines()) >= 5:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert "pspnet-rt summary" in out and "Traceback" not in err
    lines = read_stats(stats)  # every line whole JSON
    masks = check_masks(tmp_path / "m", (96, 192))
    assert len(masks) == len(lines) >= 5
    assert int(probe(tmp_path / "o.mp4")["nb_read_frames"]) == len(lines)  # closed, playable, complete
    assert not list(tmp_path.glob(".*partial*"))


def wait_for(condition: Any, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@needs_ffmpeg
def test_udp_stream_reconnects_then_fails_cleanly(ov: str, tmp_path: Path) -> None:
    """A local ffmpeg streams H.264/MPEG-TS to udp://127.0.0.1; it is stopped mid-run, and started
    again once pspnet-rt reports the reconnect; stopped for good, pspnet-rt gives up after its
    last attempt and exits 1 (the stream it was asked to keep alive is lost) with one error line
    and whole, consistent outputs. Paced by pspnet-rt's own output, so a slow machine only makes
    it slower."""
    port = free_udp_port()
    send = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
            "testsrc=size=192x96:rate=10", "-t", "300", "-c:v", "libx264", "-preset", "ultrafast", "-tune",
            "zerolatency", "-g", "5", "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"]
    stats = tmp_path / "s.jsonl"
    env = {**os.environ, "OPENCV_FFMPEG_CAPTURE_OPTIONS": "analyzeduration;500000"}  # quicker probing
    sender = subprocess.Popen(send, stdin=subprocess.DEVNULL)
    proc = subprocess.Popen([sys.executable, "-m", "runtime", "--video", f"udp://127.0.0.1:{port}",
                             "--engine", ov, "--timeout", "4", "--reconnect", "3", "--reconnect-delay", "0.2",
                             "--output", str(tmp_path / "o.mp4"), "--masks", str(tmp_path / "m"),
                             "--stats", str(stats), "--summary-json", str(tmp_path / "sum.json")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    err_lines: list[str] = []
    reader = threading.Thread(target=lambda: err_lines.extend(proc.stderr), daemon=True)
    reader.start()

    def frames() -> int:
        return len(stats.read_text().splitlines()) if stats.exists() else 0

    try:
        wait_for(lambda: frames() >= 2, "frames from the first stream")
        sender.terminate()  # the stream dies
        sender.wait(timeout=30)
        wait_for(lambda: any("reconnecting (1/3)" in line for line in err_lines), "the reconnect")
        sender = subprocess.Popen(send, stdin=subprocess.DEVNULL)  # ... and comes back
        # Three attempts with backoff leave the sender time to start; wait for a real re-open.
        wait_for(lambda: any(line.rstrip().endswith("reconnected") for line in err_lines),
                 "a successful reconnect")
        first = frames()
        wait_for(lambda: frames() > first + 1, "frames after the reconnect")
        sender.terminate()  # gone for good
        sender.wait(timeout=30)
        proc.wait(timeout=240)
        reader.join(timeout=10)
    finally:
        for p in (proc, sender):
            if p.poll() is None:
                p.kill()
    err = "".join(err_lines)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert "was lost: 3 reconnect attempt(s) failed" in err.strip().splitlines()[-1]
    summary = json.loads((tmp_path / "sum.json").read_text())
    assert summary["reconnects"] >= 1, err
    assert summary["end_reason"] == "stream lost; 3 reconnect attempt(s) failed"
    lines = read_stats(stats)
    assert [s["frame"] for s in lines] == sorted(s["frame"] for s in lines)
    assert len(check_masks(tmp_path / "m")) == len(lines)
    assert int(probe(tmp_path / "o.mp4")["nb_read_frames"]) == len(lines)


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_runtime_never_imports_torch(demo_artefacts: dict[str, Path], tmp_path: Path, backend: str) -> None:
    script = (
        "import sys\n"
        "import runtime, runtime.cli\n"
        "from runtime.cli import main\n"
        f"code = main(['--video', 'demo', '--demo-frames', '3',\n"
        f"             '--engine', {str(demo_artefacts[backend])!r},\n"
        f"             '--masks', {str(tmp_path / 'm')!r}])\n"
        "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "print('TORCH', loaded)\n"
        "sys.exit(code)\n")
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "TORCH []" in r.stdout
    assert len(check_masks(tmp_path / "m")) == 3


def test_no_engine_and_no_builder_says_what_to_install(tmp_path: Path) -> None:
    script = ("import sys\n"
              "sys.modules['torch'] = None  # as on an edge box without the export extra\n"
              "from runtime.cli import main\nsys.exit(main(['--video', 'demo']))\n")
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    one_line_error(r, "export extra", "pip install 'pspnet-rt[export]'", "--engine")


def test_no_engine_builds_the_default_once_in_a_child_process(tmp_path: Path) -> None:
    """The runtime's one door to the builder: `python -m build_engine` in a child, the manifest
    path on its stdout; the runtime itself never imports torch, and the second run is a cache hit."""
    script = ("import sys, time\n"
              "from runtime.cli import main\n"
              "t0 = time.perf_counter()\n"
              "code = main(['--video', 'demo', '--demo-frames', '2', '--input-size', '96x192',\n"
              "             '--precision', 'fp32', '--backend', 'onnxruntime', '--masks', sys.argv[1]])\n"
              "print('TORCH', sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
              "print('SECONDS', time.perf_counter() - t0)\n"
              "sys.exit(code)\n")
    env = {**os.environ, "PSPNET_RT_CACHE": str(tmp_path / "cache")}
    runs = [subprocess.run([sys.executable, "-c", script, str(tmp_path / f"m{i}")], cwd=ROOT,
                           capture_output=True, text=True, timeout=600, env=env) for i in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
        assert "TORCH []" in r.stdout and "no --engine: building" in r.stderr
    assert len(check_masks(tmp_path / "m0", (96, 192))) == len(check_masks(tmp_path / "m1")) == 2
    manifests = list((tmp_path / "cache" / "artefacts").glob("*.json"))
    assert [m.name for m in manifests] == ["demo-96x192-fp32-onnxruntime.json"]
    cold, warm = (float(r.stdout.split("SECONDS")[1]) for r in runs)
    assert warm < cold  # the second run found the build in the cache


def test_sigterm_during_the_default_build_is_forwarded_and_leaves_nothing(tmp_path: Path) -> None:
    artefacts = tmp_path / "cache" / "artefacts"
    proc = subprocess.Popen([sys.executable, "-m", "runtime", "--video", "demo", "--input-size", "96x192",
                             "--backend", "onnxruntime"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PSPNET_RT_CACHE": str(tmp_path / "cache")})
    try:
        # the builder's work folder (.NAME.*) exists while it builds: stop it then
        wait_for(lambda: artefacts.is_dir() and any(p.name.startswith(".") for p in artefacts.iterdir()),
                 "the build to start")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert "SIGTERM: stopping the build" in err and "Traceback" not in err
    assert list(artefacts.iterdir()) == []  # no manifest, no model file, no work folder


def test_show_without_display_carries_on(ov: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    r = subprocess.run([sys.executable, "-m", "runtime", "--video", "demo", "--demo-frames", "2",
                        "--engine", ov, "--show", "--masks", str(tmp_path / "m")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0
    assert "--show: no display here" in r.stderr
    assert len(check_masks(tmp_path / "m")) == 2


def test_engine_folder_picks_the_backend(demo_artefacts: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    for artefact in demo_artefacts.values():  # a folder of exactly these two artefacts
        clone_artefact(artefact, tmp_path / "arts")
    folder = str(tmp_path / "arts")
    assert main(["--video", "demo", "--demo-frames", "2", "--engine", folder, "--backend", "onnxruntime",
                 "--masks", str(tmp_path / "m")]) == 0
    assert "backend     onnxruntime on CPU" in capsys.readouterr().out
    assert main(["--video", "demo", "--engine", folder]) == 2  # two manifests there: say which
    assert "pass the .json you mean" in capsys.readouterr().err


def test_help_has_examples() -> None:
    r = run_cli("--help")
    assert r.returncode == 0
    assert "examples:" in r.stdout and "--video demo" in r.stdout and "exit codes" in r.stdout


def test_benchmark_reports_bare_inference(ov: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["--video", "demo", "--demo-frames", "4", "--engine", ov, "--benchmark"]) == 0
    out = capsys.readouterr().out
    assert "bare inference before, 4 preloaded frames" in out and "bare inference after" in out
    assert "x bare inference" in out and "CPU per frame" in out


def test_video_falls_back_to_opencv_without_ffmpeg(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from runtime.sinks import VideoSink

    sink = VideoSink(tmp_path / "o.mp4", 10, ffmpeg=None)  # as on a box without ffmpeg
    sink.open((64, 48))
    for i in range(5):
        sink.write(np.full((48, 64, 3), 40 * i, np.uint8))
    sink.close()
    assert "ffmpeg not found" in caplog.text and "install-system-deps.sh" in caplog.text
    cap = cv2.VideoCapture(str(tmp_path / "o.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5 and cap.read()[0]
    cap.release()
    assert [p.name for p in tmp_path.iterdir()] == ["o.mp4"]  # the hidden partial file was renamed
