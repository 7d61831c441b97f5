"""Issue 21, the run side, for outputs: paths that are not regular files (devices, FIFOs, this
process's own descriptors, symlinks to them), two runs writing one output, what can be refused
before the model loads, odd source names, a stdout that is closed or whose reader left. Real
devices, FIFOs, sockets, pipes and processes; every device is checked untouched afterwards."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.faults.helpers import (
    PYTHON,
    ROOT,
    call_main,
    hidden_leftovers,
    needs_ffmpeg,
    one_line,
    rt,
    spawn,
    stop,
    video_frames,
    wait_for,
)

FLAGS = {"--output": "o.mp4", "--stats": "s.jsonl", "--summary-json": "sum.json"}


def _node(path: str | Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_mode, st.st_rdev


def _first_block_device() -> str | None:
    for name in ("loop0", "sda", "vda", "nvme0n1", "xvda"):
        path = f"/dev/{name}"
        if os.path.exists(path) and stat.S_ISBLK(os.stat(path).st_mode):
            return path
    return None


REFUSED = {  # instance -> (path maker, the words the refusal names)
    "/dev/urandom": (lambda t: "/dev/urandom", "character device"),
    "/dev/loop-control": (lambda t: "/dev/loop-control", "character device"),
    "a block device": (lambda t: _first_block_device(), "block device"),
    "a symlink to /dev/urandom": (lambda t: _link(t / "rnd", "/dev/urandom"), "character device"),
    "a unix socket": (lambda t: _socket(t / "sock"), "socket"),
    "stdin": (lambda t: "/dev/stdin", "standard input"),
    "a closed descriptor": (lambda t: "/dev/fd/987", "not open"),
}


def _link(link: Path, target: str) -> str:
    link.symlink_to(target)
    return str(link)


_SOCKETS: list[socket.socket] = []


def _socket(path: Path) -> str:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    _SOCKETS.append(s)
    return str(path)


@pytest.mark.fault("out-not-a-file")
@pytest.mark.parametrize("flag", list(FLAGS))
@pytest.mark.parametrize("instance", list(REFUSED))
def test_devices_sockets_and_stdin_are_refused_untouched(ov: str, tmp_path: Path, instance: str, flag: str,
                                                        capsys: pytest.CaptureFixture) -> None:
    make, words = REFUSED[instance]
    path = make(tmp_path)
    if path is None or (not os.path.lexists(path) and "fd" not in path):
        pytest.skip(f"no {instance} on this machine")
    before = _node(path) if os.path.lexists(path) else None
    try:
        code, _, err, took = rt(["--video", "demo", "--demo-frames", "3", "--engine", ov, flag, path], capsys)
    finally:
        while _SOCKETS:
            _SOCKETS.pop().close()
    assert code == 2, err
    one_line(err, flag, words)
    assert took < 10  # before any model work
    if before is not None:
        assert _node(path) == before
    assert hidden_leftovers(tmp_path) == []


@needs_ffmpeg
@pytest.mark.fault("out-not-a-file")
def test_a_video_is_not_sent_to_a_terminal_nor_split_beside_a_device(ov: str, capsys: pytest.CaptureFixture
                                                                    ) -> None:
    main_fd, terminal = os.openpty()
    try:
        code, _, err, _ = rt(["--video", "demo", "--engine", ov, "--output", f"/dev/fd/{terminal}"], capsys)
        assert code == 2, err
        one_line(err, "is a terminal", "binary")
        code, _, err, _ = rt(["--video", "a=demo", "--video", "b=demo", "--engine", ov, "--output",
                              "/dev/null"], capsys)
        assert code == 2, err  # several streams would each write /dev/null-NAME: a new file in /dev
        one_line(err, "--output /dev/null is not a file", "several streams")
        assert not list(Path("/dev").glob("null-*"))
    finally:
        os.close(main_fd)
        os.close(terminal)


@needs_ffmpeg
@pytest.mark.fault("out-not-a-file")
def test_null_devices_and_symlinks_are_written_in_place(ov: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    """/dev/null for the video and the summary, the stats through a symlink to a regular file and
    a summary through a symlink to /dev/null: the devices stay devices, the links stay links."""
    real = tmp_path / "real.jsonl"
    real.write_text('{"an": "older run"}\n')
    (tmp_path / "stats-link.jsonl").symlink_to(real)
    (tmp_path / "null-link.json").symlink_to("/dev/null")
    null_before = _node("/dev/null")
    code, out, err, _ = rt(["--video", "demo", "--demo-frames", "3", "--engine", ov, "--output", "/dev/null",
                            "--stats", str(tmp_path / "stats-link.jsonl"),
                            "--summary-json", str(tmp_path / "null-link.json")], capsys)
    assert code == 0, err
    assert _node("/dev/null") == null_before
    assert (tmp_path / "stats-link.jsonl").is_symlink() and (tmp_path / "null-link.json").is_symlink()
    assert len([json.loads(line) for line in real.read_text().splitlines()]) == 3
    assert " written," in out
    assert hidden_leftovers(tmp_path) == []


def _drain(path: Path, into: dict[str, bytes]) -> threading.Thread:
    def read() -> None:
        with open(path, "rb") as fh:  # blocks until the writer opens the FIFO
            into[path.name] = fh.read()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


@needs_ffmpeg
@pytest.mark.fault("out-not-a-file")
def test_fifos_with_a_reader_get_every_frame(ov: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    stats, video = tmp_path / "stats.fifo", tmp_path / "video.ts"
    os.mkfifo(stats)
    os.mkfifo(video)
    got: dict[str, bytes] = {}
    readers = [_drain(stats, got), _drain(video, got)]
    code, _, err, _ = rt(["--video", "demo", "--demo-frames", "4", "--engine", ov, "--stats", str(stats),
                          "--output", str(video)], capsys)
    for reader in readers:
        reader.join(30)
    assert code == 0, err
    assert len([json.loads(line) for line in got["stats.fifo"].decode().splitlines()]) == 4
    (tmp_path / "copy.ts").write_bytes(got["video.ts"])
    assert video_frames(tmp_path / "copy.ts") == 4  # MPEG-TS: a container that needs no seeking
    assert stat.S_ISFIFO(os.lstat(stats).st_mode) and stat.S_ISFIFO(os.lstat(video).st_mode)
    assert hidden_leftovers(tmp_path) == []


@pytest.mark.fault("out-not-a-file")
def test_a_fifo_nobody_reads_is_refused_after_the_wait(ov: str, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import runtime.output_target as target

    monkeypatch.setattr(target, "READER_WAIT_S", 1.0)
    names = {"--stats": "nobody.jsonl", "--summary-json": "nobody.json", "--output": "nobody.ts"}
    for flag, name in names.items():
        fifo = tmp_path / name
        os.mkfifo(fifo)
        code, _, err, took = rt(["--video", "demo", "--demo-frames", "3", "--engine", ov, flag, str(fifo)],
                                capsys)
        assert code == 2, err
        one_line(err, flag, "FIFO", "nothing read it")
        assert took < 10
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def _rt_process(*args: str, **kwargs: object) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, "-m", "runtime", *args], cwd=ROOT, **kwargs)  # type: ignore[call-overload]


@needs_ffmpeg
@pytest.mark.fault("out-not-a-file", "stdout-closed")
def test_stdout_as_an_output_closed_or_left_by_its_reader(ov: str, tmp_path: Path) -> None:
    """Three real processes at once: (1) --stats /dev/stdout and --summary-json to a pipe given
    as /dev/fd/N; (2) stdout closed (>&-); (3) stdout a pipe whose reader is gone before the end."""
    common = ["--video", "demo", "--demo-frames", "3", "--engine", ov]
    r, w = os.pipe()
    streamed = _rt_process(*common, "--stats", "/dev/stdout", "--summary-json", f"/dev/fd/{w}",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(w,))
    os.close(w)
    closed = _rt_process(*common, "--summary-json", str(tmp_path / "closed.json"), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, preexec_fn=lambda: os.close(1))
    gone_r, gone_w = os.pipe()
    gone = _rt_process(*common, "--summary-json", str(tmp_path / "gone.json"), stdout=gone_w,
                       stderr=subprocess.PIPE)
    os.close(gone_w)
    os.close(gone_r)  # the reader left before anything was printed: every write to stdout is EPIPE
    try:
        with os.fdopen(r, "rb") as pipe:
            summary_json = pipe.read()
        out, err = streamed.communicate(timeout=120)
        errs = {"closed": closed.communicate(timeout=120)[1], "gone": gone.communicate(timeout=120)[1]}
    finally:
        for proc in (streamed, closed, gone):
            stop(proc)
    assert streamed.returncode == 0, err
    assert len([json.loads(line) for line in out.decode().splitlines()]) == 3  # the stats alone
    assert b"pspnet-rt summary" in err and b"Traceback" not in err
    assert json.loads(summary_json)["frames"] == 3
    for name, proc in (("closed", closed), ("gone", gone)):
        assert proc.returncode == 0, errs[name]
        assert b"Traceback" not in errs[name] and b"BrokenPipe" not in errs[name], errs[name]
        assert json.loads((tmp_path / f"{name}.json").read_text())["frames"] == 3


# ---------------------------------------------------------------------- concurrent writers
def _locks(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*lock"))


@needs_ffmpeg
@pytest.mark.fault("out-concurrent")
def test_two_runs_started_at_once_one_writes(ov: str, tmp_path: Path) -> None:
    args = ["--video", "demo", "--demo-frames", "6", "--engine", ov, "--output", str(tmp_path / "o.mp4"),
            "--stats", str(tmp_path / "s.jsonl")]
    procs = [spawn("runtime", *args) for _ in range(2)]
    try:
        done = [p.communicate(timeout=180) for p in procs]
    finally:
        for p in procs:
            stop(p)
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], done
    loser = done[[p.returncode for p in procs].index(2)][1]
    one_line(loser, "being written by another pspnet-rt run (PID")
    lines = (tmp_path / "s.jsonl").read_text().splitlines()
    assert len(lines) == 6 == video_frames(tmp_path / "o.mp4")
    assert hidden_leftovers(tmp_path) == []


SECOND_RUNS = {  # a second run while a two-stream run (a, b) writes o.mp4, m/, s.jsonl, sum.json
    "--output of a stream": lambda t: ["--output", str(t / "o-a.mp4")],
    "--output through a symlink": lambda t: ["--output", _link(t / "alias.mp4", str(t / "o-b.mp4"))],
    "--masks of a stream": lambda t: ["--masks", str(t / "m" / "a")],
    "--stats": lambda t: ["--stats", str(t / "s.jsonl")],
    "--summary-json": lambda t: ["--summary-json", str(t / "sum.json")],
    "a per-stream video of two streams": lambda t: ["--video", "b=demo", "--output", str(t / "o.mp4")],
}


@needs_ffmpeg
@pytest.mark.fault("out-concurrent")
def test_a_second_run_is_refused_and_a_killed_ones_leftovers_are_removed(
        ov: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    outputs = ["--output", str(tmp_path / "o.mp4"), "--masks", str(tmp_path / "m"), "--stats",
               str(tmp_path / "s.jsonl"), "--summary-json", str(tmp_path / "sum.json")]
    first = spawn("runtime", "--video", "a=demo", "--video", "b=demo", "--loop", "--demo-frames", "20",
                  "--engine", ov, *outputs)
    try:
        wait_for(lambda: len(_locks(tmp_path)) >= 6, "the first run's claims", proc=first)
        for case, extra in SECOND_RUNS.items():
            code, _, err, took = rt(["--video", "a=demo", "--demo-frames", "3", "--engine", ov,
                                     *extra(tmp_path)], capsys)
            assert code == 2, (case, err)
            one_line(err, "being written by another pspnet-rt run", f"PID {first.pid}")
            assert took < 10, case
        stats = tmp_path / "s.jsonl"
        wait_for(lambda: stats.exists() and len(stats.read_text().splitlines()) >= 4, "frames", proc=first)
        first.send_signal(signal.SIGTERM)
        _out, err = first.communicate(timeout=120)
    finally:
        stop(first)
    assert first.returncode == 143, err
    per_stream = {"a": 0, "b": 0}
    for line in (tmp_path / "s.jsonl").read_text().splitlines():
        per_stream[json.loads(line)["stream"]] += 1
    for name, n in per_stream.items():
        assert n > 0 and video_frames(tmp_path / f"o-{name}.mp4") == n
    (tmp_path / "alias.mp4").unlink()
    assert hidden_leftovers(tmp_path) == []

    # a run killed mid-write leaves its temps and locks; the next run removes exactly those
    decoy = tmp_path / ".o-a.0123456789ab.partial.mp4"  # named like ours, but no record says so
    decoy.write_bytes(b"someone else's")
    killed = spawn("runtime", "--video", "a=demo", "--video", "b=demo", "--loop", "--demo-frames", "20",
                   "--engine", ov, *outputs)
    try:
        wait_for(lambda: any(p.name.endswith(".partial.mp4") and p != decoy for p in tmp_path.iterdir())
                 and (tmp_path / "s.jsonl").exists(), "the run's temp files", proc=killed)
        killed.kill()
        killed.wait(30)
    finally:
        stop(killed)
    assert len(hidden_leftovers(tmp_path)) > 2
    code, _, err, _ = rt(["--video", "a=demo", "--video", "b=demo", "--demo-frames", "2", "--engine", ov,
                          *outputs], capsys)
    assert code == 0, err
    assert hidden_leftovers(tmp_path) == [decoy.name]
    assert decoy.read_bytes() == b"someone else's"


@pytest.mark.fault("out-concurrent")
def test_a_foreign_file_where_the_lock_goes_is_left_alone(ov: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    foreign = tmp_path / ".o.mp4.lock"
    foreign.write_text("my notes, not a lock\n")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / ".pspnet-rt.lock").symlink_to("/etc/hostname")
    for flag, path in (("--output", tmp_path / "o.mp4"), ("--masks", tmp_path / "m")):
        code, _, err, _ = rt(["--video", "demo", "--demo-frames", "3", "--engine", ov, flag, str(path)],
                             capsys)
        assert code == 2, err
        one_line(err, flag, "not ours", "left alone")
    assert foreign.read_text() == "my notes, not a lock\n"
    assert (tmp_path / "m" / ".pspnet-rt.lock").is_symlink()


@pytest.mark.fault("out-concurrent")
def test_benchmark_out_held_by_another_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from benchmarks.latency import main

    out = tmp_path / "results"
    out.mkdir()
    holder = subprocess.Popen([PYTHON, "-c", "import time; from runtime.output_target import claim_folder; "
                               f"claim_folder({str(out)!r}, '--out'); print('held', flush=True); "
                               "time.sleep(60)"],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code = call_main(main, ["--out", str(out), "--frames", "2", "--no-rss"])
        err = capsys.readouterr().err
        assert code == 2, err
        one_line(err, "--out", f"PID {holder.pid}")
    finally:
        stop(holder)
    (tmp_path / "fifo-out").mkdir()
    os.mkfifo(tmp_path / "fifo-out" / "latency.json")
    code = call_main(main, ["--out", str(tmp_path / "fifo-out"), "--frames", "2", "--no-rss"])
    err = capsys.readouterr().err
    assert code == 2, err
    one_line(err, "latency.json", "not a file")


@pytest.mark.fault("out-concurrent", "out-not-a-file")
def test_a_bag_is_claimed_like_every_output(ov: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("rosbags", reason="the ros extra: pip install 'pspnet-rt[ros]'")
    bag = tmp_path / "seg.mcap"
    holder = subprocess.Popen([PYTHON, "-c", "import time; from runtime.output_target import claim; "
                               f"claim({str(bag)!r}, '--bag'); print('held', flush=True); time.sleep(60)"],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err, _ = rt(["--video", "demo", "--demo-frames", "2", "--engine", ov, "--bag", str(bag)],
                             capsys)
        assert code == 2, err
        one_line(err, "--bag", f"PID {holder.pid}")
    finally:
        stop(holder)
    for path, words in (("/dev/null", "/dev/null"), (_link(tmp_path / "rnd.mcap", "/dev/urandom"), "device")):
        code, _, err, _ = rt(["--video", "demo", "--demo-frames", "2", "--engine", ov, "--bag", path], capsys)
        assert code == 2, err
        one_line(err, "--bag", words)
    assert _node("/dev/null")[0] & 0o170000 == stat.S_IFCHR


# ----------------------------------------------------------------------- usage up front
def _two_streams(flag: str) -> list[str]:
    return ["--video", "a=demo", "--video", "b=demo", flag]


UP_FRONT = {
    **{f"--output x{suffix}": (lambda t, s=suffix: ["--output", str(t / f"x{s}")],
                               "ffmpeg cannot write H.264")
       for suffix in (".webm", ".gif", ".ogv", ".png", ".txt")},
    **{f"{flag} with a long name": (lambda t, f=flag: [f, str(t / ("n" * 240 + ".mp4"))], "shorten the name")
       for flag in ("--output", "--stats", "--summary-json")},
    "a per-stream video with a long name": (lambda t: ["--video", "a" * 30 + "=demo", "--video", "b=demo",
                                                       "--output", str(t / ("n" * 215 + ".mp4"))],
                                            "shorten the name"),
    "a glob of text files": (lambda t: _texts(t), "matches 2 other file"),
    "--show with two streams": (lambda t: _two_streams("--show"), "--show shows one stream"),
    "--benchmark with two streams": (lambda t: _two_streams("--benchmark"),
                                     "--benchmark measures one stream"),
    "a mask name taken by a folder": (lambda t: _mask_taken(t), "000000.png there is not a file"),
}


def _texts(folder: Path) -> list[str]:
    for name in ("a.txt", "b.txt"):
        (folder / name).write_text("not an image")
    return ["--video", str(folder / "*")]


def _mask_taken(folder: Path) -> list[str]:
    (folder / "m" / "000000.png").mkdir(parents=True)
    return ["--masks", str(folder / "m")]


@needs_ffmpeg
@pytest.mark.fault("out-usage-up-front")
@pytest.mark.parametrize("case", list(UP_FRONT))
def test_usage_errors_before_the_model_loads(ov: str, tmp_path: Path, case: str,
                                             capsys: pytest.CaptureFixture) -> None:
    make, words = UP_FRONT[case]
    extra = make(tmp_path)
    video = [] if "--video" in extra else ["--video", "demo"]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, _, err, took = rt([*video, "--demo-frames", "3", "--engine", ov, *extra], capsys)
    assert code == 2, err
    one_line(err, words)
    assert took < 10  # before any model work
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


@pytest.mark.fault("out-usage-up-front")
def test_benchmark_on_a_live_stream_is_refused_up_front(ov: str, capsys: pytest.CaptureFixture) -> None:
    import socket as sk

    with sk.socket(sk.AF_INET, sk.SOCK_DGRAM) as s:  # a live stream that opens (udp, no sender needed)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err, _ = rt(["--video", f"udp://127.0.0.1:{port}", "--timeout", "1", "--engine", ov,
                          "--benchmark"], capsys)
    assert code == 2, err
    one_line(err, "--benchmark needs a file")


# ------------------------------------------------------------------------- odd source names
def _image(path: Path, value: int) -> None:
    cv2.imwrite(str(path), np.full((24, 32, 3), value, np.uint8))


@pytest.mark.fault("source-odd-names")
def test_names_with_glob_characters_are_the_files_that_exist(tmp_path: Path) -> None:
    from runtime.sources import SourceOptions, parse_source
    from tests.test_runtime_sources import write_video

    _image(tmp_path / "frame[1].png", 200)
    _image(tmp_path / "frame1.png", 10)  # what the glob frame[1].png would match instead
    write_video(tmp_path / "clip?.mp4", frames=5)
    write_video(tmp_path / "clipX.mp4", frames=2)
    (tmp_path / "shots[1]").mkdir()
    (tmp_path / "shots1").mkdir()
    for i in range(3):
        _image(tmp_path / "shots[1]" / f"{i}.png", 50)
    _image(tmp_path / "shots1" / "0.png", 60)

    def frames(uri: str) -> list[np.ndarray]:
        with parse_source(uri, SourceOptions()) as src:
            return [f.image for f in src.frames()]

    one = frames(str(tmp_path / "frame[1].png"))
    assert len(one) == 1 and int(one[0].mean()) == 200
    assert len(frames(str(tmp_path / "clip?.mp4"))) == 5
    shots = frames(str(tmp_path / "shots[1]" / "*.png"))
    assert len(shots) == 3 and all(int(f.mean()) == 50 for f in shots)


@pytest.mark.fault("source-odd-names")
def test_an_odd_name_runs_end_to_end(ov: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _image(tmp_path / "frame[1].png", 200)
    _image(tmp_path / "frame1.png", 10)
    code, _out, err, _ = rt(["--video", str(tmp_path / "frame[1].png"), "--engine", ov, "--stats",
                            str(tmp_path / "s.jsonl")], capsys)
    assert code == 0, err
    assert len((tmp_path / "s.jsonl").read_text().splitlines()) == 1


# ------------------------------------------------------------- the Triton server tool's files
@pytest.mark.fault("triton-server-outputs")
def test_server_tool_refuses_outputs_it_must_not_write(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from serving.triton_server import main

    repo = tmp_path / "repo"
    repo.mkdir()
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    bystander = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(60)"])
    busy = tmp_path / "busy.pid"
    busy.write_text(f"{bystander.pid}\n")
    try:
        cases = {"--pid-file /dev/null": (["--pid-file", "/dev/null"], "/dev/null"),
                 "--pid-file a FIFO": (["--pid-file", str(fifo)], "FIFO"),
                 "--pid-file of notes": (["--pid-file", str(notes)], "not ours"),
                 "--pid-file of a live process": (["--pid-file", str(busy)], "not a tritonserver"),
                 "--log a FIFO": (["--log", str(fifo)], "FIFO")}
        for case, (extra, words) in cases.items():
            code = call_main(main, ["start", str(repo), "--timeout", "5", *extra])
            err = capsys.readouterr().err
            assert code == 2, (case, err)
            one_line(err, words)
        assert bystander.poll() is None  # never signalled
    finally:
        stop(bystander)
    assert notes.read_text() == "my notes\n" and busy.read_text() == f"{bystander.pid}\n"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
