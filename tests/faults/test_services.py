"""Several streams, the live view server and the Triton paths (client, repository writer,
server tool) under the same rules as one stream: bad input is exit 2 and one line before any
model work, a failure mid-run is exit 1 with every output closed whole, a signal finalises
every stream, and a PID file is never trusted to name a process to kill. Real servers on
127.0.0.1, real signals, real tmpfs mounts (skipped where mount is refused)."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.faults.helpers import (
    Silent,
    call_main,
    fill,
    free_port,
    hidden_leftovers,
    needs_ffmpeg,
    one_line,
    rt,
    silent_server,
    spawn,
    stop,
    tmpfs,
    video_frames,
    wait_for,
)

TWO = ["--video", "a=demo", "--video", "b=demo"]


def _write_clip(path: Path, frames: int = 3) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 32))
    for i in range(frames):
        writer.write(np.full((32, 64, 3), 40 * i, np.uint8))
    writer.release()


def _per_stream(stats: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in stats.read_text().splitlines():
        name = json.loads(line)["stream"]
        counts[name] = counts.get(name, 0) + 1
    return counts


def _streams_whole(folder: Path, counts: dict[str, int], video: bool = True) -> None:
    """Each stream's outputs hold the frames its stats lines say, and they open."""
    assert set(counts) == {"a", "b"} and min(counts.values()) >= 1, counts
    for name, n in counts.items():
        masks = sorted((folder / "m" / name).glob("*.png"))
        assert len(masks) == n, (name, len(masks), n)
        assert all(cv2.imread(str(p), cv2.IMREAD_UNCHANGED) is not None for p in masks)
        if video:
            assert video_frames(folder / f"o-{name}.mp4") == n


# ------------------------------------------------------------------------- several streams
BAD_STREAMS: dict[str, Callable[[Path], tuple[list[str], str]]] = {
    "two streams named alike": lambda t: (["--video", "a=demo", "--video", "a=demo"], "named a"),
    "one source missing": lambda t: (["--video", "a=demo", "--video", f"b={t}/none.mp4"], "none.mp4"),
    "a stream's video is the stats file": lambda t: (
        [*TWO, "--output", f"{t}/o.mp4", "--stats", f"{t}/o-b.mp4"], "--stats"),
    "a stream's video is the summary": lambda t: (
        [*TWO, "--output", f"{t}/o.mp4", "--summary-json", f"{t}/o-a.mp4"], "--summary-json"),
    "a stream's mask folder is the stats file": lambda t: (
        [*TWO, "--masks", f"{t}/m", "--stats", f"{t}/m/a"], "--stats"),
    "a stream's video is another stream's input": lambda t: (
        ["--video", f"a={t}/o-b.mp4", "--video", "b=demo", "--output", f"{t}/o.mp4"], "is an input"),
}


@pytest.mark.fault("streams-bad-input")
@pytest.mark.parametrize("case", list(BAD_STREAMS))
def test_several_streams_refuse_bad_input_before_any_work(ov: str, tmp_path: Path, case: str,
                                                          capsys: pytest.CaptureFixture) -> None:
    clip = tmp_path / "o-b.mp4"
    _write_clip(clip)
    before = clip.read_bytes()
    argv, word = BAD_STREAMS[case](tmp_path)
    code, _, err, took = rt([*argv, "--engine", ov, "--max-frames", "3"], capsys)
    assert code == 2, err
    one_line(err, word)
    assert took < 20  # refused before the model is loaded
    assert clip.read_bytes() == before  # an input is never overwritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o-b.mp4"]  # nothing was written


@needs_ffmpeg
@pytest.mark.fault("streams-signal")
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_signal_finalises_every_stream(ov: str, tmp_path: Path, sig: int, code: int) -> None:
    stats = tmp_path / "s.jsonl"
    proc = spawn("runtime", *TWO, "--loop", "--demo-frames", "30", "--engine", ov, "--output",
                 str(tmp_path / "o.mp4"), "--masks", str(tmp_path / "m"), "--stats", str(stats))
    try:
        wait_for(lambda: stats.exists() and len(stats.read_text().splitlines()) >= 8, "frames", proc=proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        stop(proc)
    assert proc.returncode == code, err
    assert "Traceback" not in err and " written," in out
    _streams_whole(tmp_path, _per_stream(stats))
    assert hidden_leftovers(tmp_path) == []


@needs_ffmpeg
@pytest.mark.fault("streams-full-disk")
def test_disk_filling_up_under_several_streams(ov: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    with tmpfs(tmp_path / "d", "4m") as d:
        fill(d, 500 * 1024)
        code, out, err, _ = rt([*TWO, "--loop", "--demo-frames", "30", "--max-frames", "4000", "--engine", ov,
                                "--output", str(tmp_path / "o.mp4"), "--masks", str(d / "m"),
                                "--stats", str(tmp_path / "s.jsonl")], capsys)
        assert code == 1, err
        one_line(err, "cannot write mask", "No space left")
        assert " processed," in out and " written," not in out  # the summary does not claim the files
        for png in (d / "m").rglob("*.png"):  # what is there is whole
            assert cv2.imread(str(png), cv2.IMREAD_UNCHANGED) is not None, png
        assert hidden_leftovers(d) == []
    counts = _per_stream(tmp_path / "s.jsonl")  # the outputs off the full disk are whole too
    for name, n in counts.items():  # the frame whose mask failed may be in the video (written first)
        assert n <= video_frames(tmp_path / f"o-{name}.mp4") <= n + 1
    assert hidden_leftovers(tmp_path) == []


# ------------------------------------------------------------------------------ live view
@pytest.fixture
def serve_extra() -> None:
    pytest.importorskip("prometheus_client", reason="the serve extra (prometheus_client) is not installed")


@pytest.mark.fault("serve-port-taken")
@pytest.mark.parametrize("videos", [["--video", "demo"], TWO], ids=["one stream", "two streams"])
def test_serve_on_a_port_in_use(serve_extra: None, ov: str, tmp_path: Path, videos: list[str],
                                capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, _, err, _ = rt([*videos, "--engine", ov, "--serve", str(port), "--output",
                              str(tmp_path / "o.mp4"), "--max-frames", "3"], capsys)
    assert code == 2, err
    one_line(err, str(port))
    assert list(tmp_path.iterdir()) == []


def _stalled_viewer(port: int) -> socket.socket:
    """A browser that asked for the MJPEG stream, read its first bytes, then stopped reading."""
    viewer = socket.create_connection(("127.0.0.1", port), timeout=10)
    viewer.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert viewer.recv(256).startswith(b"HTTP/1.")
    return viewer


@needs_ffmpeg
@pytest.mark.fault("serve-signal")
def test_term_with_a_stalled_viewer(serve_extra: None, ov: str, tmp_path: Path) -> None:
    stats, port = tmp_path / "s.jsonl", free_port()
    proc = spawn("runtime", "--video", "demo", "--loop", "--demo-frames", "30", "--engine", ov, "--serve",
                 str(port), "--output", str(tmp_path / "o.mp4"), "--stats", str(stats))
    viewer = None
    try:
        wait_for(lambda: stats.exists() and len(stats.read_text().splitlines()) >= 5, "frames", proc=proc)
        viewer = _stalled_viewer(port)
        time.sleep(1.0)  # frames pile up towards the viewer that does not read
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        stop(proc)
        if viewer is not None:
            viewer.close()
    assert proc.returncode == 143, err
    assert took < 20, f"the shutdown waited {took:.1f} s on a viewer"
    assert "Traceback" not in err and " written," in out
    assert video_frames(tmp_path / "o.mp4") == len(stats.read_text().splitlines())
    with pytest.raises(OSError):  # the port is let go
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert hidden_leftovers(tmp_path) == []


def _reset(conn: socket.socket) -> None:
    """Close with an RST, as a browser tab that is killed does."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


@needs_ffmpeg
@pytest.mark.fault("serve-viewers-reset")
def test_viewers_that_reset_mid_response(serve_extra: None, ov: str, tmp_path: Path) -> None:
    stats, port, n = tmp_path / "s.jsonl", free_port(), 60
    proc = spawn("runtime", "--video", "demo", "--demo-frames", str(n), "--engine", ov, "--serve", str(port),
                 "--output", str(tmp_path / "o.mp4"), "--stats", str(stats))
    try:
        wait_for(lambda: stats.exists() and len(stats.read_text().splitlines()) >= 3, "frames", proc=proc)
        for path in ["/stream.mjpg", "/events", "/", "/snapshot.jpg", "/metrics", "/stats"] * 3:
            conn = socket.create_connection(("127.0.0.1", port), timeout=10)
            conn.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            assert conn.recv(64).startswith(b"HTTP/1."), path
            _reset(conn)
        for _ in range(3):  # a request cut in the middle of its first line
            conn = socket.create_connection(("127.0.0.1", port), timeout=10)
            conn.sendall(b"GET /stream.mj")
            _reset(conn)
        out, err = proc.communicate(timeout=120)
    finally:
        stop(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and " written," in out
    assert len(stats.read_text().splitlines()) == n == video_frames(tmp_path / "o.mp4")


# ------------------------------------------------------------------------- Triton client
@pytest.fixture
def triton_client() -> None:
    pytest.importorskip("tritonclient.grpc", reason="needs tritonclient (pip install -e .[triton])")


@pytest.fixture
def silent() -> Iterator[Silent]:
    """A Triton that accepts connections and never answers."""
    with silent_server() as server:
        yield server


@pytest.mark.fault("triton-unreachable")
@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_triton_server_that_refuses_or_never_answers(triton_client: None, silent: Silent, kind: str,
                                                     tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    port = free_port() if kind == "refused" else silent.port
    code, _, err, took = rt(["--video", "demo", "--engine", f"triton://127.0.0.1:{port}/demo-python",
                             "--timeout", "2", "--output", str(tmp_path / "o.mp4")], capsys)
    assert code == 2, err
    one_line(err, "Triton", f"127.0.0.1:{port}", "--timeout")
    assert took < 15
    assert list(tmp_path.iterdir()) == []


@pytest.mark.fault("triton-signal-connect")
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_signal_while_connecting_to_a_hung_server(triton_client: None, silent: Silent, tmp_path: Path,
                                                  sig: int, code: int) -> None:
    proc = spawn("runtime", *TWO, "--engine", f"triton://127.0.0.1:{silent.port}/demo-python",
                 "--timeout", "60", "--output", str(tmp_path / "o.mp4"))
    try:
        wait_for(lambda: bool(silent.held), "the client's connection", timeout=60, proc=proc)
        time.sleep(0.5)  # blocked in the connect, well inside its 60 s
        t0 = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        stop(proc)
    assert proc.returncode == code, err
    assert took < 5, f"{took:.1f} s to honour {signal.Signals(sig).name}"
    one_line(err, f"interrupted by {signal.Signals(sig).name}", "no output was written")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def triton_repo(demo_artefacts: dict[str, Path], tmp_path: Path) -> Path:
    from build_engine.triton_repo import RepoOptions, write_repository

    repo = tmp_path / "models"
    write_repository(demo_artefacts["openvino"], repo, RepoOptions(name="demo-python", variant="python",
                                                                   instances=1))
    return repo


@needs_ffmpeg
@pytest.mark.timeout(300)
@pytest.mark.fault("triton-server-dies")
@pytest.mark.parametrize("how", ["killed", "hung"])
def test_triton_server_lost_under_several_streams(triton_client: None, triton_repo: Path, tmp_path: Path,
                                                  how: str) -> None:
    """killed: SIGKILL (connections refused); hung: SIGSTOP (connections accepted, never answered),
    which only the client's own deadlines (--timeout) can end."""
    from serving.triton_server import ServerError, TritonServer

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    stats = out_dir / "s.jsonl"
    server = TritonServer(triton_repo, models=["demo-python"], log_file=tmp_path / "server.log")
    try:
        server.start(timeout=120)
    except ServerError as exc:
        pytest.skip(f"no Triton server here: {exc}")
    try:
        proc = spawn("runtime", *TWO, "--loop", "--engine", server.engine("demo-python"), "--output",
                     str(out_dir / "o.mp4"), "--masks", str(out_dir / "m"), "--stats", str(stats),
                     "--reconnect", "1", "--timeout", "2")
        try:
            wait_for(lambda: stats.exists() and len(stats.read_text().splitlines()) >= 8, "frames", proc=proc)
            if how == "killed":
                server.kill()
            else:
                os.killpg(server.pid, signal.SIGSTOP)  # the server and its model stubs
            t_lost = time.monotonic()
            _, err = proc.communicate(timeout=90)
            took = time.monotonic() - t_lost
        finally:
            stop(proc)
    finally:
        if how == "hung" and server.proc is not None and server.proc.poll() is None:
            os.killpg(server.pid, signal.SIGCONT)
        server.stop()
    assert proc.returncode == 1, err
    assert took < 30, f"{took:.1f} s after the server was lost (--timeout 2, --reconnect 1)"
    errors = [line for line in err.splitlines() if line.strip() and not line.startswith("pspnet-rt: triton:")]
    assert len(errors) == 1 and "lost" in errors[0], err  # the reconnect warnings, then one error
    assert "Traceback" not in err
    _streams_whole(out_dir, _per_stream(stats))
    assert hidden_leftovers(out_dir) == []


# --------------------------------------------------------------- Triton repository writer
@pytest.mark.fault("triton-repo-output")
def test_read_only_repository_is_refused_before_any_build(ov: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    from build_engine.cli import main as build_main
    from build_engine.triton_repo import main as repo_main

    with tmpfs(tmp_path / "ro", "1m", read_only=True) as ro:
        assert call_main(repo_main, ["--engine", ov, "--triton-repo", str(ro / "models")]) == 2
        one_line(capsys.readouterr().err, "--triton-repo", "writable")
        t0 = time.monotonic()
        assert call_main(build_main, ["--backend", "onnxruntime", "--input-size", "96x192", "--output",
                                      str(tmp_path / "art"), "--triton-repo", str(ro / "models")]) == 2
        one_line(capsys.readouterr().err, "--triton-repo", "writable")
        assert time.monotonic() - t0 < 10 and not (tmp_path / "art").exists()  # before the export


@pytest.mark.fault("triton-repo-output")
def test_full_disk_keeps_the_repository_that_was_there(ov: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    from build_engine.triton_repo import main as repo_main

    argv = ["--engine", ov, "--triton-variant", "python", "--triton-name", "demo-python"]
    with tmpfs(tmp_path / "d", "48m") as d:
        repo = d / "models"
        assert call_main(repo_main, [*argv, "--triton-repo", str(repo)]) == 0
        capsys.readouterr()
        before = {p.relative_to(repo): p.read_bytes() for p in sorted(repo.rglob("*")) if p.is_file()}
        fill(d, 2 << 20)
        assert call_main(repo_main, [*argv, "--triton-repo", str(repo)]) == 1
        one_line(capsys.readouterr().err, "demo-python", "unchanged")
        after = {p.relative_to(repo): p.read_bytes() for p in sorted(repo.rglob("*")) if p.is_file()}
        assert after == before
        assert hidden_leftovers(repo) == []


# ------------------------------------------------------------------- Triton server tool
@pytest.fixture
def bystander() -> Iterator[subprocess.Popen]:
    """A process that is not a tritonserver, whose PID a stale PID file may name."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    stop(proc)


@pytest.mark.fault("triton-server-pid-file")
def test_stop_never_signals_what_a_pid_file_does_not_prove(tmp_path: Path, bystander: subprocess.Popen,
                                                           capsys: pytest.CaptureFixture) -> None:
    from serving.triton_server import main

    repo = tmp_path / "models"
    repo.mkdir()
    pid_file = tmp_path / "tritonserver.pid"
    for text, words in (("garbage\n", ("does not hold a tritonserver PID",)), ("", ("does not hold",)),
                        ("1\n", ("does not hold",)),
                        (f"{bystander.pid}\n", (str(bystander.pid), "not a tritonserver"))):
        pid_file.write_text(text)
        assert call_main(main, ["stop", str(repo)]) == 2, text
        one_line(capsys.readouterr().err, str(pid_file), *words)
        assert pid_file.read_text() == text  # left for the user to look at
    time.sleep(0.2)
    assert bystander.poll() is None  # never signalled
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    pid_file.write_text(f"{gone.pid}\n")
    assert call_main(main, ["stop", str(repo)]) == 0
    assert "was not running" in capsys.readouterr().out and not pid_file.exists()


@pytest.mark.timeout(240)
@pytest.mark.fault("triton-server-run-signal")
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_to_a_foreground_server_stops_it(triton_repo: Path, tmp_path: Path, sig: int,
                                                code: int) -> None:
    from serving.triton_server import ServerError, install

    try:
        install()
    except ServerError as exc:
        pytest.skip(f"the Triton server wheel could not be installed here: {exc}")
    proc = spawn("serving.triton_server", "run", str(triton_repo), "--grpc-port", str(free_port()),
                 "--http-port", str(free_port()), "--metrics-port", str(free_port()),
                 "--log", str(tmp_path / "server.log"))
    try:
        info = json.loads(proc.stdout.readline())  # printed once the server is ready
        t0 = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        stop(proc)
    assert proc.returncode == code, err  # not 0: a signal is not a success
    one_line(err, f"interrupted by {signal.Signals(sig).name}")
    assert took < 30
    with pytest.raises(ProcessLookupError):  # the server went with it
        os.kill(info["pid"], 0)


@pytest.mark.fault("triton-server-pid-file")
def test_start_refuses_ports_that_clash(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from serving.triton_server import main

    (tmp_path / "models").mkdir()
    argv = ["start", str(tmp_path / "models"), "--grpc-port", "8000", "--http-port", "8000"]
    assert call_main(main, argv) == 2
    one_line(capsys.readouterr().err, "--grpc-port 8000", "--http-port 8000", "its own port")
