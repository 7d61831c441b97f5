"""Issue 21, the second sweep: the classes of issue 21 tried again, by someone else, against every
command: the Foxglove view's visitors, the one redaction function reaching every command (search
databases included), bounds on sizes a user or a source can ask for, what a backend loads after
its hash was checked, and a Triton model held to the manifest it carries."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.faults.helpers import call_main, one_line, rt

SECRET = "S3cretPW"


# ------------------------------------------------------------------- the Foxglove live view
@pytest.fixture
def foxglove_sink(request: pytest.FixtureRequest):
    pytest.importorskip("foxglove", reason="needs foxglove-sdk (pip install -e .[ros])")
    from runtime.ros.foxglove_sink import FoxgloveSink

    kwargs = getattr(request, "param", {})
    sink = FoxgloveSink("127.0.0.1", 0, ["road", "car"], [[1, 2, 3], [4, 5, 6]], **kwargs)
    sink.open()
    sink.add_stream(None, live=True, fps=None)
    try:
        yield sink
    finally:
        sink.close()


def _handshake(port: int, host: str | None = "127.0.0.1", origin: str | None = None, path: str = "/",
               extra: str = "") -> int:
    """The HTTP status a WebSocket upgrade gets (101 = let through to the SDK)."""
    head = [f"GET {path} HTTP/1.1"]
    if host is not None:
        head.append(f"Host: {host}")
    if origin is not None:
        head.append(f"Origin: {origin}")
    head += ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol: foxglove.sdk.v1"]
    if extra:
        head.append(extra)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        reply = s.recv(4096).decode("latin-1")
    return int(reply.split(" ", 2)[1])


REFUSED = {  # what a web page or a rebinding name sends -> the status
    "another site's page": ({"origin": "https://evil.example"}, 403),
    "a sandboxed frame or file (Origin: null)": ({"origin": "null"}, 403),
    "a look-alike of the app": ({"origin": "https://app.foxglove.dev.evil.example"}, 403),
    "a rebinding name": ({"host": "evil.example:8765"}, 421),
    "a name that starts like ours": ({"host": "127.0.0.1.evil.example"}, 421),
    "another address on a loopback bind": ({"host": "10.0.0.1"}, 421),
    "no Host in HTTP/1.1": ({"host": None}, 400),
    "a malformed Host": ({"host": "[::1"}, 400),
    "two Hosts": ({"extra": "Host: evil.example"}, 400),
}
ALLOWED = {
    "the Foxglove app in a browser": {"origin": "https://app.foxglove.dev"},
    "a script or the desktop app (no Origin)": {},
    "localhost": {"host": "localhost:8765"},
    "a page of this machine": {"origin": "http://127.0.0.1:8080"},
}


@pytest.mark.fault("foxglove-visitors")
def test_foxglove_answers_only_its_own_user(foxglove_sink) -> None:
    port = foxglove_sink.server.port
    for case, (kwargs, status) in REFUSED.items():
        assert _handshake(port, **kwargs) == status, case
    for case, kwargs in ALLOWED.items():
        assert _handshake(port, **kwargs) == 101, case


@pytest.mark.fault("foxglove-visitors")
@pytest.mark.parametrize("foxglove_sink", [{"token": SECRET, "allowed_hosts": ["box.local"],
                                            "allowed_origins": ["https://fox.example.com"]}], indirect=True)
def test_foxglove_token_and_named_hosts_and_origins(foxglove_sink) -> None:
    port = foxglove_sink.server.port
    assert _handshake(port) == 401
    assert _handshake(port, path="/?token=wrong") == 401
    assert _handshake(port, extra="Authorization: Bearer nope") == 401
    assert _handshake(port, path=f"/?token={SECRET}") == 101
    assert _handshake(port, extra=f"Authorization: Bearer {SECRET}") == 101
    assert _handshake(port, host="box.local", path=f"/?token={SECRET}") == 101
    assert _handshake(port, origin="https://fox.example.com", path=f"/?token={SECRET}") == 101
    assert _handshake(port, host="other.local", path=f"/?token={SECRET}") == 421  # before the token
    assert SECRET not in foxglove_sink.describe()


@pytest.mark.fault("foxglove-visitors")
def test_foxglove_viewer_gets_frames_through_the_guard_while_heads_trickle(foxglove_sink,
                                                                           monkeypatch: pytest.MonkeyPatch
                                                                           ) -> None:
    """80 sockets that send one byte now and then (more than the pending heads the guard keeps) and
    never finish a head: a real client still connects and gets decodable frames within seconds;
    the unfinished heads are cut off (the oldest when too many, all after the head timeout)."""
    import websockets

    import runtime.ros.foxglove_guard as guard

    port = foxglove_sink.server.port
    trickle = [socket.create_connection(("127.0.0.1", port)) for _ in range(80)]
    for s in trickle:
        s.sendall(b"GET / HTTP/1.1\r\nHo")
    labels = np.ones((48, 64), np.uint8)
    stop = threading.Event()

    def feed() -> None:
        i = 0
        while not stop.is_set():
            frame = type("F", (), {"index": i, "stamp_ns": i, "frame_id": "cam", "log_time_ns": i,
                                   "t_capture": time.perf_counter()})()
            foxglove_sink.write(frame, labels, None, {}, 1.0)
            i += 1
            time.sleep(0.02)

    async def view() -> bytes:
        async with websockets.connect(f"ws://127.0.0.1:{port}", subprotocols=["foxglove.sdk.v1"],
                                      max_size=1 << 24, open_timeout=5) as ws:
            channels: dict = {}
            while "/pspnet/class_map" not in channels:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
                channels.update({c["topic"]: c for c in msg.get("channels", [])})
            await ws.send(json.dumps({"op": "subscribe", "subscriptions": [
                {"id": 1, "channelId": channels["/pspnet/class_map"]["id"]}]}))
            while True:
                data = await asyncio.wait_for(ws.recv(), 5)
                if isinstance(data, bytes) and data[0] == 1:
                    return data

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        t0 = time.monotonic()
        assert asyncio.run(view())[0] == 1
        assert time.monotonic() - t0 < 8
        closed = 0
        for s in trickle:
            s.settimeout(0.05)
            try:
                closed += s.recv(1) == b""
            except TimeoutError:
                pass
            except OSError:
                closed += 1
        assert closed >= len(trickle) - guard.MAX_PENDING  # the oldest were dropped to make room
    finally:
        stop.set()
        feeder.join()
        for s in trickle:
            s.close()


@pytest.mark.fault("foxglove-visitors")
def test_a_head_that_never_ends_gets_408(foxglove_sink, monkeypatch: pytest.MonkeyPatch) -> None:
    import runtime.ros.foxglove_guard as guard

    monkeypatch.setattr(guard, "HEAD_TIMEOUT_S", 1.0)
    with socket.create_connection(("127.0.0.1", foxglove_sink.server.port), timeout=15) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        t0 = time.monotonic()
        reply = s.recv(4096).decode("latin-1")
    assert reply.startswith("HTTP/1.1 408") and time.monotonic() - t0 < guard.HEAD_TIMEOUT_S + 3


@pytest.mark.fault("foxglove-visitors")
def test_foxglove_flags_are_refused_without_foxglove(capsys: pytest.CaptureFixture) -> None:
    for extra in (["--foxglove-token", "x"], ["--foxglove-allow-origin", "https://a.example"],
                  ["--serve-allow-host", "box.local"]):
        code, _, err, _ = rt(["--video", "demo", *extra], capsys)
        assert code == 2
        one_line(err, "--foxglove")


# ------------------------------------------------------- secrets: every command, every writer
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.fault("secrets-every-command")
def test_commands_that_never_asked_for_redaction_get_it(capsys: pytest.CaptureFixture) -> None:
    """The CLI kit redacts every line of every command by default (error lines, logs, -v
    tracebacks), so a command whose author forgot is covered; a log line's `prog:` is not taken
    for a URL's scheme (the user name and the host stay readable)."""
    import logging

    import clikit
    from segdata.split import main as split_main

    code = call_main(split_main, [f"rtsp://u:{SECRET}@127.0.0.1:1/x"])
    err = capsys.readouterr().err
    assert code == 2 and SECRET not in err and "u:***@127.0.0.1" in err, err

    def body(args: object) -> int:
        logging.getLogger("x").warning("opening rtsp://admin:%s@cam/s", SECRET)
        raise RuntimeError(f"lost http://h/v.m3u8?token={SECRET}")

    parser = clikit.parser("demo-command", None)
    clikit.add_verbose(parser)
    assert clikit.run("demo-command", parser, body, ["-v"]) == 1
    err = capsys.readouterr().err
    assert SECRET not in err and "Traceback" in err, err  # -v: the traceback, redacted
    assert "demo-command: opening rtsp://admin:***@cam/s" in err, err
    assert f"token={SECRET}" not in err and "token=***" in err


@pytest.mark.fault("secrets-every-command")
def test_a_calibration_url_is_opened_before_the_export(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    """--calib-data / --eval-data URLs whose server refuses: exit 2 in about a second, before any
    export (it used to fail after the export and the FP32 reference), the password hidden, the
    --output folder not created."""
    from build_engine.cli import main

    for flag in ("--calib-data", "--eval-data"):
        t0 = time.monotonic()
        code = call_main(main, ["--precision", "int8", "--backend", "onnxruntime", flag,
                                f"http://u:{SECRET}@127.0.0.1:{_free_port()}/x.mp4",
                                "--output", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code == 2, err
        one_line(err, flag, "u:***@127.0.0.1")
        assert SECRET not in err and time.monotonic() - t0 < 20
        assert not (tmp_path / "out").exists()


@pytest.mark.fault("secrets-every-command")
def test_the_search_names_its_database_through_the_one_function(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("optuna", reason="needs the search extra")
    from clikit.redaction import redact_source
    from pspnet.search import storage

    url = f"postgresql://pspnet:{SECRET}@127.0.0.1:{_free_port()}/optuna?sslpassword={SECRET}"
    assert SECRET not in redact_source(url) and "pspnet:***@" in redact_source(url)
    # a driver that quotes the password alone, percent-encoded in the URL or not
    encoded = url.replace(SECRET, SECRET + "%40x", 1)
    quoted = storage.scrub(f'FATAL: password "{SECRET}@x" rejected for {encoded}', encoded)
    assert SECRET not in quoted, quoted
    with pytest.raises(storage.StorageError) as refused:
        storage.open_storage(url, 30)
    assert SECRET not in str(refused.value) and "127.0.0.1" in str(refused.value)


@pytest.mark.fault("secrets-every-command")
def test_result_writers_redact_every_string(tmp_path: Path, demo_artefacts: dict[str, Path]) -> None:
    """What writes machine-readable results passes every string through the one function: a
    benchmark's JSON and Markdown, a manifest (and so Triton's copy of it)."""
    from artefact.manifest import load_manifest
    from benchmarks.common import write_json, write_text

    url = f"http://u:{SECRET}@h/clip.mp4?token={SECRET}"
    write_json(tmp_path / "r.json", {"config": {"video": url}, "runs": [{"source": url}], url: 1})
    write_text(tmp_path / "r.md", f"| video | {url} |\n")
    manifest = load_manifest(demo_artefacts["onnxruntime"])
    manifest.build = {**manifest.build, "command": f"python -m build_engine --calib-data {url}"}
    manifest.calibration = {"source": url}
    manifest.save(tmp_path / "m.json")
    for name in ("r.json", "r.md", "m.json"):
        text = (tmp_path / name).read_text()
        assert SECRET not in text and "u:***@h" in text, name
    assert json.loads((tmp_path / "r.json").read_text())["config"]["video"] == \
        "http://u:***@h/clip.mp4?token=***"


# --------------------------------------------------------------------- sizes a user may ask
@pytest.mark.fault("size-bounds")
def test_a_dynamic_artefact_refuses_a_frame_past_the_bound(demo_artefacts: dict[str, Path]) -> None:
    """A dynamic-shape artefact runs each frame at its own size: one past MAX_SIDE a side would
    allocate tens of GB, so it is refused (exit 2 before a run, exit 1 with one line mid-run)."""
    from artefact.fields import MAX_SIDE
    from artefact.manifest import load_manifest
    from runtime.backends.base import Backend
    from runtime.errors import FrameTooLarge

    manifest = load_manifest(demo_artefacts["onnxruntime"])
    manifest.dynamic_shape, manifest.input_size = True, [-1, -1]
    backend = Backend(manifest)
    assert backend.input_hw((MAX_SIDE, 64)) == (MAX_SIDE, 64)
    for hw in ((MAX_SIDE + 1, 64), (64, 100_000), (30_000, 30_000)):
        with pytest.raises(FrameTooLarge, match="larger than the dynamic-shape artefact"):
            backend.input_hw(hw)
    manifest.dynamic_shape, manifest.input_size = False, [96, 192]
    assert Backend(manifest).input_hw((30_000, 30_000)) == (96, 192)  # fixed size: resized, fine


@pytest.mark.fault("size-bounds")
def test_pspnet_rt_bounds_input_size_and_speaks_its_own_terms(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    """--input-size past MAX_SIDE: exit 2 at parse time (the default build used to take it and die
    in the builder's wording). The default build refused by its cache folder: one line in
    pspnet-rt's terms (PSPNET_RT_CACHE, --engine), never `--output` or `python -m build_engine`."""
    import os
    import subprocess
    import sys

    for size in ("8193x8193", "100000x100000", "8193x1"):
        code, _, err, took = rt(["--video", "demo", "--input-size", size], capsys)
        assert code == 2 and took < 5
        one_line(err, "--input-size", "8192")
    for case in ("a user's file at the record's name", "the artefact folder is a file"):
        cache = tmp_path / case.replace(" ", "-").replace("'", "")
        cache.mkdir()
        if case.startswith("a user's"):
            (cache / "artefacts").mkdir()
            (cache / "artefacts" / ".pspnet-rt-owned").write_text("a user's notes, not our record")
        else:
            (cache / "artefacts").write_text("a user's notes, not our record")
        env = {**os.environ, "PSPNET_RT_CACHE": str(cache)}
        done = subprocess.run([sys.executable, "-m", "runtime", "--video", "demo", "--precision", "fp32",
                               "--backend", "onnxruntime", "--input-size", "96x192"], capture_output=True,
                              text=True, env=env, timeout=240)
        lines = [ln for ln in done.stderr.splitlines()
                 if ln.strip() and not ln.startswith("pspnet-rt: no --engine")]
        assert done.returncode == 2, done.stderr
        assert len(lines) == 1 and lines[0].startswith("pspnet-rt: "), done.stderr
        assert "--output" not in lines[0] and "build_engine" not in lines[0], lines[0]
        if case.startswith("the artefact"):
            assert "PSPNET_RT_CACHE" in lines[0] and "--engine" in lines[0], lines[0]
        user = cache / "artefacts" / (".pspnet-rt-owned" if case.startswith("a user's") else "")
        assert user.read_text() == "a user's notes, not our record"


# ----------------------------------------------------------- what is loaded is what was checked
@pytest.mark.fault("integrity-load-what-was-checked")
@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_a_model_swapped_after_its_check_is_never_loaded(demo_artefacts: dict[str, Path], tmp_path: Path,
                                                         backend: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The model file (and OpenVINO's .bin) replaced by other bytes right after their hashes were
    checked: the backend runs the bytes that were checked (they are what it loads), both as a
    streaming backend and as a runner (artefact_runner)."""
    from artefact.manifest import Manifest, load_manifest
    from runtime.backends import artefact_runner, load_backend
    from tests.test_runtime_backends import clone_artefact

    path = clone_artefact(demo_artefacts[backend], tmp_path / "art")
    manifest = load_manifest(path)
    frame = np.random.default_rng(0).integers(0, 255, (96, 192, 3), np.uint8)
    with load_backend(manifest, cache=False) as b:
        clean = b.infer(frame)
    original = Manifest.read_verified
    swapped: list[str] = []

    def read_then_swap(self: Manifest) -> dict[str, bytes]:
        files = original(self)
        for name in files:
            target = self.model_path.parent / name
            target.write_bytes(b"\0" * 64 + target.read_bytes()[64:][::-1])  # other bytes, same size
            swapped.append(name)
        return files

    monkeypatch.setattr(Manifest, "read_verified", read_then_swap)
    with load_backend(load_manifest(path), cache=False) as b:
        assert (b.infer(frame) == clean).all()
    assert swapped and hashlib.sha256((manifest.model_path).read_bytes()).hexdigest() != manifest.model_sha256
    monkeypatch.setattr(Manifest, "read_verified", original)
    with pytest.raises(Exception, match="sha256"):  # the swapped file itself is refused, of course
        load_backend(load_manifest(path))
    monkeypatch.setattr(Manifest, "read_verified", read_then_swap)
    runner_path = clone_artefact(demo_artefacts[backend], tmp_path / "art2")
    runner = artefact_runner(runner_path)
    try:
        assert (runner.predict(frame)[0] == clean).all()
    finally:
        runner.deactivate()


# ------------------------------------------------- a Triton model held to the manifest it carries
def _misfit(repo: Path, artefact: Path, name: str, edit) -> None:
    from artefact import ownership
    from build_engine.triton_repo import (
        MANIFEST_PARAMETER,
        RepoOptions,
        config_text,
        validate_config,
        write_repository,
    )

    folder = write_repository(artefact, repo, RepoOptions(name=name, variant="python", instances=1))[0]
    config = validate_config((folder / "config.pbtxt").read_text())
    manifest = json.loads(config.parameters[MANIFEST_PARAMETER].string_value)
    edit(config, manifest)
    config.parameters[MANIFEST_PARAMETER].string_value = json.dumps(manifest)
    (folder / "config.pbtxt").write_text(config_text(config))
    (folder / ownership.RECORD).unlink()  # edited by hand: the user's own model now, served as it is


@pytest.fixture(scope="module")
def misfit_server(demo_artefacts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("tritonclient.grpc", reason="needs tritonclient (pip install -e .[triton])")
    from build_engine.triton_repo import RepoOptions, write_repository
    from serving.triton_server import ServerError, TritonServer

    repo = tmp_path_factory.mktemp("triton-misfits") / "models"
    artefact = demo_artefacts["openvino"]
    write_repository(artefact, repo, RepoOptions(name="fits", variant="python", instances=1))
    _misfit(repo, artefact, "labels-shape",
            lambda c, m: c.output[0].dims.__setitem__(slice(None), [1, 48, 96]))
    _misfit(repo, artefact, "logits-name", lambda c, m: m.__setitem__("logits_name", "logits"))

    def twenty_classes(config, manifest: dict) -> None:  # a logits output that says 20 classes, not 19
        from build_engine.triton_repo import model_config_pb2

        config.output.add(name="logits", data_type=model_config_pb2().TYPE_FP32, dims=[1, 20, 96, 192])
        manifest["logits_name"] = "logits"

    _misfit(repo, artefact, "logits-classes", twenty_classes)
    server = TritonServer(repo, log_file=repo.parent / "server.log")
    try:
        server.start(timeout=120)
    except ServerError as exc:
        pytest.skip(f"no Triton server here: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.timeout(300)
@pytest.mark.fault("triton-contract")
def test_a_served_model_is_held_to_the_manifest_it_carries(misfit_server, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    """The manifest a Triton model carries must describe the model the server runs (its metadata):
    the same contract as an artefact opened locally, at connect time, before any frame."""
    words = {"labels-shape": ("'labels'", "1x48x96"), "logits-name": ("logits_name",),
             "logits-classes": ("19 classes", "among 20")}
    for model, expect in words.items():
        code, _, err, _ = rt(["--video", "demo", "--engine", misfit_server.engine(model), "--timeout", "10",
                              "--output", str(tmp_path / f"{model}.mp4")], capsys)
        assert code == 2, (model, err)
        one_line(err, model, *expect)
        assert not (tmp_path / f"{model}.mp4").exists()
    code, _, err, _ = rt(["--video", "demo", "--demo-frames", "3", "--engine", misfit_server.engine("fits"),
                          "--timeout", "10"], capsys)
    assert code == 0, err


# ------------------------------------------- folder outputs: only what we wrote is replaced
@pytest.mark.fault("own-folder-outputs")
def test_masks_replace_only_masks_this_tool_wrote(ov: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    import os

    masks = tmp_path / "m"
    masks.mkdir()
    (masks / "000000.png").write_bytes(b"a user's photo")
    (masks / "notes.txt").write_text("notes")
    os.symlink(tmp_path / "elsewhere.png", masks / "000001.png")
    run = ["--video", "demo", "--demo-frames", "3", "--engine", ov, "--masks", str(masks)]
    code, _, err, took = rt(run, capsys)
    assert code == 2 and took < 15, err
    one_line(err, "--masks", "000000.png", "did not write")
    assert (masks / "000000.png").read_bytes() == b"a user's photo" and os.path.islink(masks / "000001.png")
    (masks / "000000.png").unlink()
    (masks / "000001.png").unlink()
    assert rt(run, capsys)[0] == 0
    assert rt(run, capsys)[0] == 0  # our own masks: replaced
    (masks / "000002.png").write_bytes(b"edited by hand")  # ours no longer
    code, _, err, _ = rt(run, capsys)
    assert code == 2 and (masks / "000002.png").read_bytes() == b"edited by hand"
    assert (masks / "notes.txt").read_text() == "notes"


@pytest.mark.fault("own-folder-outputs")
def test_split_lists_and_training_outputs_are_never_a_users(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    from pspnet.train import main as train_main
    from segdata.split import main as split_main

    out = tmp_path / "split"
    out.mkdir()
    (out / "val.txt").write_text("my curated list\n")
    assert call_main(split_main, ["synthetic:train:12", "--out", str(out)]) == 2
    one_line(capsys.readouterr().err, "val.txt", "did not write")
    assert (out / "val.txt").read_text() == "my curated list\n" and not (out / "train.txt").exists()
    (out / "val.txt").unlink()
    assert call_main(split_main, ["synthetic:train:12", "--out", str(out)]) == 0
    assert call_main(split_main, ["synthetic:train:12", "--out", str(out), "--val-split", "0.5"]) == 0  # ours
    capsys.readouterr()
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "best.pth").write_bytes(b"weights I trained elsewhere")
    t0 = time.monotonic()
    assert call_main(train_main, ["--iters", "1", "--out", str(runs)]) == 2
    one_line(capsys.readouterr().err, "best.pth", "--out")
    assert (runs / "best.pth").read_bytes() == b"weights I trained elsewhere" and time.monotonic() - t0 < 30


@pytest.mark.fault("out-not-a-file-everywhere")
def test_whole_file_writes_never_replace_what_is_not_a_file(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    """The one whole-file writer (artefact.files.atomic_path: manifests, reports, checkpoints,
    records) never renames over a device, a FIFO, a socket or a folder, through a link or not; a
    link to a file stays a link. pspnet.train --export-weights is refused up front."""
    import os
    import stat

    from artefact.files import NotARegularFile, atomic_write_bytes
    from pspnet.train import main as train_main

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    targets = [fifo, tmp_path / "sock", tmp_path]
    if os.geteuid() == 0:  # a character device of our own (the same kind as /dev/null)
        os.mknod(tmp_path / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        targets.append(tmp_path / "null")
    for target in list(targets):
        os.symlink(target, tmp_path / f"link-to-{target.name}")
        targets.append(tmp_path / f"link-to-{target.name}")
    for target in targets:
        before = os.lstat(target)
        with pytest.raises(NotARegularFile):
            atomic_write_bytes(target, b"x")
        after = os.lstat(target)
        assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode), target
    (tmp_path / "real").write_text("old")
    os.symlink(tmp_path / "real", tmp_path / "link")
    atomic_write_bytes(tmp_path / "link", b"new")
    assert os.path.islink(tmp_path / "link") and (tmp_path / "real").read_text() == "new"
    sock.close()
    for target in (fifo, tmp_path / "link-to-fifo", "/dev/null"):
        assert call_main(train_main, ["--iters", "1", "--out", str(tmp_path / "o"), "--export-weights",
                                      str(target)]) == 2
        one_line(capsys.readouterr().err, "--export-weights", "not a regular file")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.fault("concurrent-folder-writers")
def test_two_trainings_into_one_out_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A second pspnet.train into the --out another is writing: exit 2 at once, naming it."""
    import subprocess
    import sys

    from pspnet.train import main as train_main

    out = tmp_path / "runs"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], "
                               "os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); "
                               "time.sleep(60)", str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        assert call_main(train_main, ["--iters", "1", "--out", str(out)]) == 2
        one_line(capsys.readouterr().err, "another pspnet.train", str(out))
        assert time.monotonic() - t0 < 30 and list(out.iterdir()) == []
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.fault("usage-late-sweep")
def test_a_bad_init_checkpoint_is_refused_before_the_data_loads(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    """pspnet.train --init read only after the data set was loaded: a FIFO (which used to look like a
    hang while 2000 images were made), a text file, a JSON file: exit 2 in seconds, one line."""
    import os

    from pspnet.train import main as train_main

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "notes.txt").write_text("not weights")
    (tmp_path / "w.json").write_text("{}")
    for bad in (fifo, tmp_path / "notes.txt", tmp_path / "w.json"):
        t0 = time.monotonic()
        assert call_main(train_main, ["--init", str(bad), "--iters", "1", "--out", str(tmp_path / "o")]) == 2
        one_line(capsys.readouterr().err, "--init", str(bad))
        assert time.monotonic() - t0 < 15
