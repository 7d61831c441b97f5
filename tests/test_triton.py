"""Serving through a real Triton Inference Server (nvidia-pytriton's tritonserver) on 127.0.0.1.

The server runs the Python-backend variant of the tiny demo artefact, i.e. pspnet-rt's own
OpenVINO backend inside Triton; the client is pspnet-rt's `--engine triton://` backend. Servers are
started per session (or per test when a test kills one) and stopped by PID.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from artefact import ownership
from artefact.manifest import load_manifest
from tests.conftest import TINY_SIZE
from tests.faults.helpers import stop

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("tritonclient.grpc", reason="needs tritonclient (pip install -e .[test] or .[triton])")

from artefact.ownership import RECORD  # noqa: E402 - the record of what a run wrote into a folder
from build_engine.triton_repo import (  # noqa: E402 - after the importorskip
    MANIFEST_PARAMETER,
    RepoOptions,
    RepositoryError,
    build_config,
    config_text,
    validate_config,
    write_repository,
)
from serving.triton_server import ServerError, TritonServer, free_port, install  # noqa: E402

MODEL = "demo-python"


def run_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtime", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def demo_frames(n: int) -> list[np.ndarray]:
    from runtime.sources import SourceOptions, parse_source

    with parse_source("demo", SourceOptions(demo_frames=n, demo_size=TINY_SIZE)) as source:
        return [f.image for f in source.frames()]


@pytest.fixture(scope="session")
def triton_install() -> object:
    try:
        return install()
    except ServerError as exc:
        pytest.skip(f"the Triton server wheel could not be installed here: {exc}")


@pytest.fixture(scope="session")
def triton_repo(demo_artefacts: dict[str, Path], confidence_artefact: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Path:
    """demo (native openvino, not loadable on the CPU Triton), demo-python (2 instances), demo-conf
    (python, an artefact built with --confidence --flip), and misfit: a python model whose declared
    input is not the artefact's size."""
    repo = tmp_path_factory.mktemp("triton") / "models"
    write_repository(demo_artefacts["openvino"], repo)
    write_repository(demo_artefacts["onnxruntime"], repo, RepoOptions(name="demo-ort", variant="python",
                                                                      instances=1))
    write_repository(confidence_artefact, repo, RepoOptions(name="demo-conf", variant="python", instances=1))
    misfit = write_repository(demo_artefacts["openvino"], repo,
                              RepoOptions(name="misfit", variant="python", instances=1))[0]
    config = validate_config((misfit / "config.pbtxt").read_text())
    config.input[0].dims[:] = [1, 64, 64, 3]
    (misfit / "config.pbtxt").write_text(config_text(config))
    # edited by hand, it is no longer the folder we wrote (the server tool would refuse to serve it
    # as ours): without our ownership record it is the user's own model, served as it is
    (misfit / ownership.RECORD).unlink()
    return repo


@pytest.fixture(scope="session")
def triton_server(triton_install: object, triton_repo: Path) -> TritonServer:
    server = TritonServer(triton_repo, log_file=triton_repo.parent / "server.log").start(timeout=120)
    yield server
    assert server.stop() == 0  # SIGTERM: a clean exit


def test_repository_configs_follow_triton_schema(demo_artefacts: dict[str, Path], triton_repo: Path) -> None:
    manifest = load_manifest(demo_artefacts["openvino"])
    h, w = TINY_SIZE
    native = validate_config((triton_repo / "demo" / "config.pbtxt").read_text())
    assert native.backend == "openvino" and native.max_batch_size == 0
    assert [(t.name, list(t.dims)) for t in native.input] == [("image", [1, h, w, 3])]
    assert [(t.name, list(t.dims)) for t in native.output] == [("labels", [1, h, w])]
    assert json.loads(native.parameters[MANIFEST_PARAMETER].string_value) == manifest.to_dict()
    assert sorted(p.name for p in (triton_repo / "demo" / "1").iterdir()) == ["model.bin", "model.xml"]
    python = validate_config((triton_repo / MODEL / "config.pbtxt").read_text())
    assert python.backend == "python" and python.instance_group[0].count == 1  # the measured default
    model_py = (triton_repo / MODEL / "1" / "model.py").read_bytes()
    assert model_py == (ROOT / "build_engine" / "triton_python_model.py").read_bytes()  # ours, as shipped
    assert json.loads((triton_repo / MODEL / "pspnet-rt.json").read_text()) == manifest.to_dict()
    with pytest.raises(RepositoryError, match="schema"):
        validate_config('name: "x"\nmax_batch_sizes: 0\n')  # a misspelt field is refused


def test_configs_for_every_platform(demo_artefacts: dict[str, Path]) -> None:
    """ONNX Runtime and TensorRT repositories (the TensorRT one is written, not served, here)."""
    manifest = load_manifest(demo_artefacts["onnxruntime"])
    onnx = build_config(manifest, "m", "native", RepoOptions())
    assert onnx.platform == "onnxruntime_onnx" and onnx.default_model_filename == "model.onnx"
    trt = dataclasses.replace(manifest, backend="tensorrt", logits_name="logits")
    engine = build_config(trt, "m", "native", RepoOptions(instances=1))
    assert engine.platform == "tensorrt_plan" and engine.default_model_filename == "model.plan"
    assert engine.instance_group[0].kind == engine.instance_group[0].KIND_GPU
    assert [t.name for t in engine.output] == ["labels", "logits"]
    assert list(engine.output[1].dims) == [1, 19, *TINY_SIZE]
    batched = build_config(manifest, "m", "python", RepoOptions(dynamic_batching=True, max_batch_size=4))
    assert batched.max_batch_size == 4 and list(batched.input[0].dims) == [*TINY_SIZE, 3]
    assert batched.dynamic_batching.max_queue_delay_microseconds > 0
    for config in (onnx, engine, batched):
        assert validate_config(config_text(config)) == config
    dyn = dataclasses.replace(manifest, dynamic_shape=True, input_size=[-1, -1])
    dynamic = build_config(dyn, "m", "native", RepoOptions())
    assert list(dynamic.input[0].dims) == [1, -1, -1, 3]


def test_repository_ships_only_graphs_that_pass_the_tensorrt_rules(demo_artefacts: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    """The ONNX a repository serves (native and python variant) passes TensorRT's parser rules, and
    a tensorrt_plan is written only for an engine whose manifest records a passing check."""
    import shutil

    from artefact.files import sha256_file
    from build_engine.tensorrt_rules import check_file

    folders = write_repository(demo_artefacts["onnxruntime"], tmp_path / "repo", RepoOptions(variant="both"))
    served = [p for folder in folders for p in (folder / "1").glob("*.onnx")]
    assert len(served) == 2 and all(check_file(p) == [] for p in served)
    # No TensorRT here to build a plan: the writer copies the engine's bytes unread, so the ONNX
    # artefact's file stands in for one under a TensorRT manifest.
    manifest = load_manifest(demo_artefacts["onnxruntime"])
    engine = tmp_path / "demo.engine"
    shutil.copyfile(manifest.model_path, engine)
    trt = dataclasses.replace(manifest, backend="tensorrt", model_file=engine.name,
                              model_sha256=sha256_file(engine), companion_files={})
    assert trt.verification["tensorrt_graph_rules"]["result"] == "pass"
    trt.save(tmp_path / "checked.json")
    (plan_model,) = write_repository(tmp_path / "checked.json", tmp_path / "plans")
    assert (plan_model / "1" / "model.plan").read_bytes() == engine.read_bytes()
    for rules in ({}, {**trt.verification["tensorrt_graph_rules"], "result": "fail"}):
        dataclasses.replace(trt, verification={**trt.verification, "tensorrt_graph_rules": rules}
                            ).save(tmp_path / "unchecked.json")
        with pytest.raises(RepositoryError, match="graph-rules check"):
            write_repository(tmp_path / "unchecked.json", tmp_path / "plans", RepoOptions(name="other"))
    assert not (tmp_path / "plans" / "other").exists()


def test_repository_cli_for_an_existing_artefact(demo_artefacts: dict[str, Path], tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "build_engine", "--engine", str(demo_artefacts["onnxruntime"]),
           "--triton-repo", str(tmp_path / "repo"), "--triton-variant", "native", "--triton-dynamic-batching"]
    bad = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "batch 1" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    good = subprocess.run(cmd[:-1], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert good.returncode == 0, good.stderr
    assert (tmp_path / "repo" / "demo" / "1" / "model.onnx").is_file()


def test_served_class_maps_are_bit_identical_to_in_process(demo_artefacts: dict[str, Path],
                                                            triton_server: TritonServer) -> None:
    from runtime.backends import connect_backend, load_backend

    frames = demo_frames(20)
    with load_backend(demo_artefacts["openvino"], hint="latency") as local, \
            connect_backend(triton_server.engine(MODEL), timeout=30) as remote:
        # classes, palette, hashes: all from the server
        assert remote.manifest.to_dict() == local.manifest.to_dict()
        expected = [local.infer(f) for f in frames]
        assert all(np.array_equal(remote.infer(f), e) for f, e in zip(frames, expected))
        got = []  # the async path the pipeline uses, every slot busy
        for i, f in enumerate(frames):
            if remote.in_flight >= remote.max_in_flight:
                got.append(remote.collect())
            remote.submit(f, i)
        while remote.in_flight:
            got.append(remote.collect())
    assert [tag for tag, _ in got] == list(range(20))
    assert all(np.array_equal(labels, e) for (_, labels), e in zip(got, expected))


def test_onnxruntime_artefact_served_by_the_python_variant(demo_artefacts: dict[str, Path],
                                                          triton_server: TritonServer) -> None:
    from runtime.backends import connect_backend, load_backend

    frames = demo_frames(4)
    with load_backend(demo_artefacts["onnxruntime"]) as local, \
            connect_backend(triton_server.engine("demo-ort"), timeout=30) as remote:
        assert remote.manifest.backend == "onnxruntime"
        assert all(np.array_equal(remote.infer(f), local.infer(f)) for f in frames)


def test_confidence_is_served_as_a_second_output(confidence_artefact: Path, triton_server: TritonServer,
                                                 tmp_path: Path) -> None:
    """An artefact built with --confidence: both Triton configs declare the uint8 output, the client
    gets each frame's map (async, every slot busy) equal to in-process, and pspnet-rt --confidence
    writes them through the server."""
    from runtime.backends import connect_backend, load_backend
    from runtime.cli import main

    manifest = load_manifest(confidence_artefact)
    for variant in ("native", "python"):
        config = build_config(manifest, "m", variant, RepoOptions())
        names_types = [(t.name, t.data_type) for t in config.output]
        assert names_types[-1] == ("confidence", config.output[0].data_type)  # uint8, like the labels
    frames = demo_frames(6)
    with load_backend(confidence_artefact, confidence=True) as local, \
            connect_backend(triton_server.engine("demo-conf"), timeout=30, confidence=True) as remote:
        expected = []
        for f in frames:
            labels = local.infer(f)
            expected.append((labels, local.last_confidence))
        got = {}
        for i, f in enumerate(frames):
            if remote.in_flight >= remote.max_in_flight:
                tag, labels = remote.collect()
                got[tag] = (labels, remote.last_confidence)
            remote.submit(f, i)
        while remote.in_flight:
            tag, labels = remote.collect()
            got[tag] = (labels, remote.last_confidence)
    for i, (labels, confidence) in enumerate(expected):
        assert np.array_equal(got[i][0], labels) and np.array_equal(got[i][1], confidence)
    with connect_backend(triton_server.engine("demo-conf"), timeout=30) as labels_only:  # not asked for
        assert np.array_equal(labels_only.infer(frames[0]), expected[0][0])
        assert labels_only.last_confidence is None
    assert main(["--video", "demo", "--demo-frames", "3", "--engine", triton_server.engine("demo-conf"),
                 "--confidence", str(tmp_path / "c")]) == 0
    assert sorted(p.name for p in (tmp_path / "c").iterdir() if p.name != RECORD) == [
        f"{i:06d}.png" for i in range(3)]
    plain = run_cli("--video", "demo", "--demo-frames", "2", "--engine", triton_server.engine("demo-ort"),
                    "--confidence", str(tmp_path / "none"), timeout=120)
    assert plain.returncode == 2 and "--confidence" in plain.stderr  # a model built without it


def test_four_concurrent_streams_through_one_server(triton_server: TritonServer,
                                                   demo_artefacts: dict[str, Path], tmp_path: Path) -> None:
    n = 12
    result = run_cli(*(a for i in range(4) for a in ("--video", f"cam{i}=demo")), "--demo-frames", str(n),
                     "--engine", triton_server.engine(MODEL), "--masks", str(tmp_path / "masks"),
                     "--stats", str(tmp_path / "stats.jsonl"),
                     "--summary-json", str(tmp_path / "summary.json"))
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames"] == 4 * n and summary["dropped"] == {}
    assert sorted(summary["streams"]) == ["cam0", "cam1", "cam2", "cam3"]
    lines = [json.loads(line) for line in (tmp_path / "stats.jsonl").read_text().splitlines()]
    for i in range(4):
        mine = [r["frame"] for r in lines if r["stream"] == f"cam{i}"]
        assert mine == list(range(n))  # every frame, in order, per stream
        names = sorted(p.name for p in (tmp_path / "masks" / f"cam{i}").iterdir() if p.name != RECORD)
        assert names == [f"{k:06d}.png" for k in range(n)]
    local = run_cli("--video", "demo", "--demo-frames", str(n), "--engine", str(demo_artefacts["openvino"]),
                    "--masks", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr
    for k in range(n):  # the same masks as in-process, for every stream
        ref = cv2.imread(str(tmp_path / "local" / f"{k:06d}.png"), cv2.IMREAD_UNCHANGED)
        for i in range(4):
            got = cv2.imread(str(tmp_path / "masks" / f"cam{i}" / f"{k:06d}.png"), cv2.IMREAD_UNCHANGED)
            assert np.array_equal(got, ref)


def test_server_killed_mid_run_exits_1_with_a_playable_video(triton_install: object, triton_repo: Path,
                                                             tmp_path: Path) -> None:
    stats, video = tmp_path / "stats.jsonl", tmp_path / "out.mp4"
    server = TritonServer(triton_repo, models=[MODEL], log_file=tmp_path / "server.log")
    with server.start(timeout=120):
        proc = subprocess.Popen([sys.executable, "-m", "runtime", "--video", "demo", "--loop", "--engine",
                                 server.engine(MODEL), "--output", str(video), "--stats", str(stats),
                                 "--reconnect", "1", "--timeout", "5"],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                if stats.is_file() and len(stats.read_text().splitlines()) >= 8:
                    break
                time.sleep(0.1)
            assert proc.poll() is None, proc.communicate()[1]
            server.kill()
            t_kill = time.monotonic()
            _, err = proc.communicate(timeout=60)
        finally:
            stop(proc)
    assert proc.returncode == 1, err
    assert time.monotonic() - t_kill < 30  # reconnect budget: one attempt after 0.5 s
    errors = [line for line in err.splitlines() if not line.startswith("pspnet-rt: triton:")]  # warnings
    assert len(errors) == 1 and "Triton server" in errors[0] and "lost" in errors[0], err
    assert "Traceback" not in err
    written = len(stats.read_text().splitlines())
    cap = cv2.VideoCapture(str(video))  # finalised: it opens and every written frame decodes
    decoded = 0
    while cap.read()[0]:
        decoded += 1
    cap.release()
    assert decoded == written >= 8


def test_server_restarted_mid_run_the_client_reconnects(triton_install: object, triton_repo: Path,
                                                        tmp_path: Path) -> None:
    """A server that comes back within the reconnect budget: every frame is written, exit 0."""
    n, stats, summary = 40, tmp_path / "stats.jsonl", tmp_path / "summary.json"
    ports = {"grpc_port": free_port(), "http_port": free_port(), "metrics_port": free_port()}
    first = TritonServer(triton_repo, models=["demo-ort"], log_file=tmp_path / "a.log", **ports).start(120)
    proc = subprocess.Popen([sys.executable, "-m", "runtime", "--video", "demo", "--demo-frames", str(n),
                             "--engine", first.engine("demo-ort"), "--stats", str(stats), "--requests", "1",
                             "--reconnect", "6", "--summary-json", str(summary)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = TritonServer(triton_repo, models=["demo-ort"], log_file=tmp_path / "b.log", **ports)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if stats.is_file() and len(stats.read_text().splitlines()) >= 5:
                break
            time.sleep(0.05)
        first.kill()
        second.start(120)
        _, err = proc.communicate(timeout=120)
    finally:
        stop(proc)
        first.stop()
        second.stop()
    assert proc.returncode == 0, err
    assert [json.loads(line)["frame"] for line in stats.read_text().splitlines()] == list(range(n))
    assert json.loads(summary.read_text())["backend"]["reconnects"] >= 1
    assert "answers again" in err


def test_unreachable_server_exits_2_within_the_timeout() -> None:
    port = free_port()  # nothing listens there
    t0 = time.monotonic()
    result = run_cli("--video", "demo", "--engine", f"triton://127.0.0.1:{port}/{MODEL}", "--timeout", "2")
    elapsed = time.monotonic() - t0
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "no Triton server answers" in result.stderr and "within 2 s" in result.stderr
    assert elapsed < 2 + 10  # the timeout, plus starting Python and importing OpenCV on a busy box


def test_unknown_model_and_inputs_that_do_not_fit_exit_2(triton_server: TritonServer) -> None:
    unknown = run_cli("--video", "demo", "--engine", triton_server.engine("nope"), "--timeout", "10")
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1
    assert "no ready model 'nope'" in unknown.stderr and MODEL in unknown.stderr
    misfit = run_cli("--video", "demo", "--engine", triton_server.engine("misfit"), "--timeout", "10")
    assert misfit.returncode == 2 and misfit.stderr.count("\n") == 1
    assert "does not fit" in misfit.stderr and "[1, 96, 192, 3]" in misfit.stderr


def test_bad_engine_urls_are_usage_errors() -> None:
    from runtime.backends.triton_backend import parse_url
    from runtime.errors import UsageError

    assert str(parse_url("triton://127.0.0.1:8001/demo-python")) == "triton://127.0.0.1:8001/demo-python"
    assert parse_url("triton://host/m/2").port == 8001 and parse_url("triton://host/m/2").version == "2"
    for bad in ("triton://127.0.0.1:8001", "triton://:8001/m", "triton://h:x/m", "triton://h:1/a/b/c"):
        with pytest.raises(UsageError):
            parse_url(bad)


def test_server_helper_refuses_a_repository_it_cannot_serve(triton_install: object, tmp_path: Path,
                                                           demo_artefacts: dict[str, Path]) -> None:
    write_repository(demo_artefacts["onnxruntime"], tmp_path / "repo", RepoOptions(variant="native"))
    with pytest.raises(ServerError, match="no model this server can load"):
        TritonServer(tmp_path / "repo").start()


def test_python_api_engine_and_stream_on_a_triton_server(demo_artefacts: dict[str, Path],
                                                          triton_server: TritonServer) -> None:
    """`pspnet_rt.load("triton://...")`: one frame, the async pair and a stream, as in-process."""
    import pspnet_rt as rt

    frames = demo_frames(3)
    with rt.load(demo_artefacts["openvino"]) as local, \
            rt.load(triton_server.engine(MODEL), timeout=30) as remote:
        expected = [local(f) for f in frames]
        assert all(np.array_equal(remote(f), e) for f, e in zip(frames, expected))
        for i, f in enumerate(frames):
            remote.submit(f[:80, :150].copy(), i)  # any frame size: resized there and back
            assert remote.collect().labels.shape == (80, 150)
        streamed = list(rt.stream("demo", remote, max_frames=3, demo_frames=3))
        assert [r.index for r in streamed] == [0, 1, 2]
        assert all(np.array_equal(r.labels, local(r.frame)) for r in streamed)
