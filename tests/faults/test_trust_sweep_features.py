"""Issue 21, the third sweep: the features merged after the second one (confidence PNGs, RTSP out,
ROS bags in and out, label-set files, TF checkpoints, train/search outputs, the Python API) tried
by a hostile user. Each test is one class, with several instances."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.faults.helpers import call_main, one_line, rt

SECRET = "S3cretPW"


@contextlib.contextmanager
def deadline(seconds: int, what: str) -> Iterator[None]:
    """Fail (instead of hanging the suite) when `what` blocks: SIGALRM interrupts a blocked open()."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"{what} blocked for {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------- outputs named by a URL
URL_OUTPUTS = {  # (command, argv) -> an output that is a URL other than the rtsp:// --output serves
    "--output rtsps://": ("rt", ["--output", f"rtsps://u:{SECRET}@127.0.0.1:8554/seg"]),
    "--output rtmp://": ("rt", ["--output", f"rtmp://u:{SECRET}@127.0.0.1/live.flv"]),
    "--stats http://": ("rt", ["--stats", f"http://u:{SECRET}@example.com/s.jsonl"]),
    "--summary-json https:// ?token=": ("rt", ["--summary-json", f"https://example.com/s.json?token={SECRET}"]),
    "--masks udp://": ("rt", ["--masks", f"udp://u:{SECRET}@127.0.0.1:1"]),
    "--confidence srt://": ("rt", ["--confidence", f"srt://127.0.0.1:1?passphrase={SECRET}"]),
    "--bag s3://": ("rt", ["--bag", f"s3://u:{SECRET}@bucket/seg.mcap"]),
    "build --output https://": ("build", ["--model", "demo", "--output", f"https://u:{SECRET}@host/art"]),
    "train --out file://": ("train", ["--data", "synthetic:train:8@48x96", "--out", "file:///tmp/x"]),
    "search --out sftp://": ("search", ["--data", "synthetic:train:8@48x96", "--out", f"sftp://u:{SECRET}@h/x"]),
}


@pytest.mark.fault("output-is-a-url")
def test_an_output_named_by_a_url_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture) -> None:
    from build_engine.cli import main as build_main
    from pspnet.search.cli import main as search_main
    from pspnet.train import main as train_main

    monkeypatch.chdir(tmp_path)
    mains = {"build": build_main, "train": train_main, "search": search_main}
    for case, (command, argv) in URL_OUTPUTS.items():
        if command == "rt":
            code, _, err, took = rt(["--video", "demo", *argv], capsys)
        else:
            t0 = time.monotonic()
            code = call_main(mains[command], argv)
            err, took = capsys.readouterr()[1], time.monotonic() - t0
        assert code == 2, (case, err)
        line = one_line(err, "is a URL")
        assert SECRET not in line, (case, line)
        assert took < 30, (case, took)
        assert list(tmp_path.iterdir()) == [], (case, "wrote", list(tmp_path.iterdir()))
    # the Python API holds its options to the same rules
    from runtime.errors import UsageError
    from runtime.options import RunOptions

    for field in ("masks", "confidence", "stats", "bag"):
        with pytest.raises(UsageError, match="is a URL") as refused:
            RunOptions(videos=["demo"], **{field: f"http://u:{SECRET}@h/x"})
        assert SECRET not in str(refused.value)
    # a local path that only looks like one, and exists, is that path
    (tmp_path / "http:" / "x").mkdir(parents=True)
    RunOptions(videos=["demo"], masks="http://x")
    # and the rtsp:// --output is still served, not refused
    RunOptions(videos=["demo"], rtsp_out="rtsp://127.0.0.1:0/seg")


# ---------------------------------------------------------------- bags read that are not files
@pytest.mark.fault("bag-input-not-a-file")
def test_a_bag_input_that_is_not_a_file_is_refused(ov: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("rosbags", reason="needs the ros extra (pip install -e .[ros])")
    pytest.importorskip("mcap", reason="needs the ros extra (pip install -e .[ros])")
    metadata = "rosbag2_bagfile_information:\n  version: 5\n"

    def rosbag2(name: str, entry: str, make) -> str:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "metadata.yaml").write_text(metadata)
        make(folder / entry)
        return str(folder)

    cases = {
        "an MCAP that is a FIFO": (lambda: (os.mkfifo(tmp_path / "cam.mcap"), str(tmp_path / "cam.mcap"))[1],
                                   "FIFO"),
        "a FIFO with a #topic": (lambda: (os.mkfifo(tmp_path / "t.mcap"), f"{tmp_path / 't.mcap'}#/cam")[1],
                                 "FIFO"),
        "a rosbag2 folder holding a FIFO": (
            lambda: rosbag2("rb-fifo", "0.mcap", os.mkfifo) + "#/cam", "FIFO"),
        "a rosbag2 folder with a link to /dev/zero": (
            lambda: rosbag2("rb-dev", "0.mcap", lambda p: p.symlink_to("/dev/zero")), "device"),
        "a rosbag2 folder with a broken link": (
            lambda: rosbag2("rb-broken", "0.mcap", lambda p: p.symlink_to(tmp_path / "gone.mcap")),
            "cannot be read"),
        "a rosbag2 folder with a link loop": (
            lambda: rosbag2("rb-loop", "0.mcap", lambda p: p.symlink_to(p)), "cannot be read"),
    }
    for case, (make, word) in cases.items():
        uri = make()
        with deadline(60, case):
            code, _, err, took = rt(["--video", uri, "--engine", ov, "--stats", str(tmp_path / "s.jsonl")],
                                    capsys)
        assert code == 2, (case, err)
        one_line(err, word, "--video")
        assert took < 30, (case, took)
        assert not (tmp_path / "s.jsonl").exists(), case


# ---------------------------------------------------------------- RTSP out with credentials
def _feed(server: object, stop: threading.Event) -> None:
    """Frames at 10 fps until `stop`, so that the mount has a stream to describe to a client."""
    image = np.zeros((96, 192, 3), np.uint8)
    while not stop.is_set():
        server.offer(image)
        time.sleep(0.1)


def _probe(url: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-show_entries",
                           "stream=codec_name,width,height", "-of", "csv=p=0", url],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.fault("rtsp-out-credentials")
def test_rtsp_out_with_credentials_serves_only_them(tmp_path: Path) -> None:
    from runtime.rtsp_server import RtspServerProcess, ServerOptions
    from tests.rtsp_fixtures import need_rtsp_server

    need_rtsp_server()
    for auth in ("basic,digest", "basic", "digest"):
        options = ServerOptions(paths=("/seg",), fps=10, credentials=f"viewer:{SECRET}", auth=auth)
        with RtspServerProcess(options) as server:
            stop = threading.Event()
            feeder = threading.Thread(target=_feed, args=(server, stop), daemon=True)
            feeder.start()
            try:
                allowed = _probe(f"rtsp://viewer:{SECRET}@127.0.0.1:{server.port}/seg")
                assert allowed.stdout.strip() == "h264,192,96", (auth, allowed.stderr)
                for who in ("", "viewer:wrong@", "other:S3cretPW@"):
                    refused = _probe(f"rtsp://{who}127.0.0.1:{server.port}/seg")
                    assert refused.returncode != 0 and "h264" not in refused.stdout, (auth, who)
            finally:
                stop.set()
                feeder.join(timeout=10)


@pytest.mark.fault("rtsp-out-credentials")
def test_the_rtsp_helpers_crash_is_one_runtime_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Our helper dying of an exception is a failure of ours (exit 1), said in one line: its last
    line, never the frames of its traceback."""
    import runtime.rtsp_server as rtsp_server
    from runtime.errors import WriteError
    from runtime.rtsp_sink import RtspSink
    from tests.rtsp_fixtures import need_rtsp_server

    need_rtsp_server()
    for raised in ("TypeError('Expected a GstRtsp.RTSPAuthMethod, but got int')",
                   "RuntimeError('no x264enc')", "KeyError('mount')"):
        helper = tmp_path / "crashing_helper.py"
        helper.write_text(f"import sys\nsys.stderr.write('starting\\n')\n"
                          f"def serve():\n    raise {raised}\nserve()\n")
        monkeypatch.setattr(rtsp_server, "HELPER", helper)
        sink = RtspSink(f"rtsp://viewer:{SECRET}@127.0.0.1:0/seg", 10.0)
        with pytest.raises(WriteError) as failed:
            sink.open()
        message = str(failed.value)
        assert "\n" not in message and "Traceback" not in message and 'File "' not in message, message
        assert raised.split("(")[0] in message and SECRET not in message, message


# ---------------------------------------------------------------- label-set files
@pytest.mark.fault("label-set-hostile")
def test_label_set_files_that_no_output_can_show_are_refused(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    from build_engine.cli import main as build_main
    from segdata.label_sets import LabelSet, LabelSetError, load_label_set

    names = [f"c{i}" for i in range(19)]

    def with_name(i: int, name: str) -> dict:
        return {"classes": [name if j == i else n for j, n in enumerate(names)]}

    cases = {
        "a newline and HTML in a name": (with_name(2, "road\n<script>alert(1)</script>"), "printable"),
        "a terminal escape in a name": (with_name(3, "\x1b[31mred\x1b[0m"), "printable"),
        "a NUL in a name": (with_name(0, "road\x00"), "printable"),
        "a 10 000-character name": (with_name(1, "x" * 10_000), "at most 128"),
        "a file over 1 MiB (padding)": ({"classes": names, "description": " " * (1 << 20)}, "larger than"),
        "a 10 MB class name": (with_name(4, "y" * 10_000_000), "larger than"),
    }
    for case, (data, word) in cases.items():
        path = tmp_path / "labels.json"
        path.write_text(json.dumps(data))
        with pytest.raises(LabelSetError, match=word):
            load_label_set(path)
        code = call_main(build_main, ["--model", "demo", "--precision", "fp32", "--backend", "onnxruntime",
                                      "--input-size", "96x192", "--classes", str(path),
                                      "--output", str(tmp_path / "art")])
        err = capsys.readouterr()[1]
        assert code == 2, (case, err)
        one_line(err, word)
        assert not (tmp_path / "art").exists(), case
    with pytest.raises(LabelSetError, match="printable"):  # the Python API's own LabelSet too
        LabelSet("x", ("road", "car\r\n"), ((0, 0, 0), (1, 1, 1)))
    # names a user may well write stay accepted: spaces, commas, accents, other scripts
    path = tmp_path / "ok.json"
    path.write_text(json.dumps({"classes": ["chest of drawers, bureau", "Straße", "道路", "car (parked)"]}))
    assert load_label_set(path).num_classes == 4


# ---------------------------------------------------------------- TF checkpoints that are not
@pytest.mark.fault("tf-checkpoint-hostile")
def test_tf_checkpoint_folders_that_would_block_or_explode_are_refused(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    from build_engine.cli import main as build_main
    from pspnet.tf_checkpoint import CheckpointError, find_prefix, read_index, write_checkpoint
    from pspnet.weight_formats import identify

    def fifo_index(folder: Path) -> None:
        os.mkfifo(folder / "model.ckpt-7.index")

    def fifo_named_by_state(folder: Path) -> None:
        os.mkfifo(folder / "model.ckpt-7.index")
        (folder / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-7"\n')

    def link_to_fifo(folder: Path) -> None:
        os.mkfifo(tmp_path / f"elsewhere-{folder.name}")
        (folder / "model.ckpt-7.index").symlink_to(tmp_path / f"elsewhere-{folder.name}")

    def billion_shards(folder: Path) -> None:
        write_checkpoint(folder / "model.ckpt-7", {"w": np.zeros((2, 2), np.float32)}, header_shards=10**9)

    def no_shards(folder: Path) -> None:
        write_checkpoint(folder / "model.ckpt-7", {"w": np.zeros((2, 2), np.float32)}, header_shards=0)

    cases = {"a FIFO named *.index": fifo_index, "a FIFO the checkpoint file names": fifo_named_by_state,
             "a link to a FIFO": link_to_fifo, "a header claiming 10^9 data files": billion_shards,
             "a header claiming 0 data files": no_shards}
    for i, (case, make) in enumerate(cases.items()):
        folder = tmp_path / f"ckpt{i}"
        folder.mkdir()
        make(folder)
        with deadline(60, case):
            found = find_prefix(folder)
            if found is not None:
                with pytest.raises(CheckpointError):
                    read_index(found.with_name(found.name + ".index"))
            identify(folder)
            t0 = time.monotonic()
            code = call_main(build_main, ["--model", "demo", "--weights", str(folder),
                                          "--output", str(tmp_path / "art")])
        err = capsys.readouterr()[1]
        assert code == 2, (case, err)
        one_line(err)
        assert time.monotonic() - t0 < 30, case
        assert not (tmp_path / "art").exists(), case


# ---------------------------------------------------------------- a refused run leaves no folders
@pytest.mark.fault("refused-run-no-folders")
def test_a_run_refused_at_its_source_leaves_no_folders_it_made(ov: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    refused = "rtsp://127.0.0.1:1/x"  # nothing listens: refused when the sources open, after the checks
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    (tmp_path / "empty").mkdir()
    cases = {
        "every kind of output, in new nested folders": (
            [refused], ["--confidence", "n/c/d", "--masks", "n/m", "--bag", "n/b/x.mcap", "--stats",
                        "n/s/s.jsonl", "--output", "n/o/o.mp4", "--summary-json", "n/j/j.json"], "n"),
        "several streams, the second refused": (["demo", f"b={refused}"],
                                                ["--confidence", "sev"], "sev"),
        "a new folder inside a user's folder": ([refused], ["--masks", "mine/sub/masks"], "mine/sub"),
        "an existing empty folder": ([refused], ["--masks", "empty"], None),
    }
    for case, (videos, outputs, gone) in cases.items():
        argv = [a for v in videos for a in ("--video", v)] + ["--engine", ov]
        argv += [str(tmp_path / o) if i % 2 else o for i, o in enumerate(outputs)]
        code, _, err, _ = rt(argv, capsys)
        assert code == 2, (case, err)
        one_line(err, "127.0.0.1:1")
        if gone is not None:
            assert not (tmp_path / gone).exists(), (case, sorted(p.name for p in tmp_path.rglob("*")))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    assert (tmp_path / "empty").is_dir()  # it was there before the run: left as it was
    # a run that streams keeps its folders and what it wrote there
    code, _, err, _ = rt(["--video", "demo", "--engine", ov, "--max-frames", "2", "--masks",
                          str(tmp_path / "kept" / "m")], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "kept" / "m").glob("*.png")) == ["000000.png", "000001.png"]
