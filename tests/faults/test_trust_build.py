"""Issue 21, the build side: a build deletes or replaces only what it provably wrote (by content,
never by a name), an artefact proves its files (hashes) and that its manifest describes its model,
a degenerate model never passes the build, and a build's usage errors come before any work.

Real builds of the tiny demo model (96x192), in-process; the session's artefacts (tests/conftest.py)
where a built artefact is enough."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tests.faults.helpers import call_main, last_line, one_line, rt
from tests.test_runtime_backends import clone_artefact

ROOT = Path(__file__).resolve().parents[2]
DEMO_WEIGHTS = ROOT / "pspnet" / "weights" / "demo_synthetic.pth"
BUILD = ["--precision", "fp32", "--backend", "onnxruntime", "--input-size", "96x192"]
NAME = "demo-96x192-fp32-onnxruntime"


def _state(folder: Path) -> dict[str, object]:
    """Every entry below `folder`: bytes of files, link targets, folders (to prove nothing changed)."""
    out: dict[str, object] = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        out[rel] = ("link", os.readlink(p)) if p.is_symlink() else p.read_bytes() if p.is_file() else "dir"
    return out


def _build(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    from build_engine.cli import main

    code = call_main(main, argv)
    return code, capsys.readouterr().err


# ------------------------------------------------------------------- what a build touches
@pytest.mark.fault("own-build-output", "own-build-dead-writers")
def test_a_build_leaves_every_file_it_did_not_write(demo_artefacts: dict[str, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    """Our artefact with its model file edited by hand, surrounded by the user's files named like
    ours, and a dead build's leftovers (ours, by the commit steps themselves): one rebuild adds its
    own files beside, removes only the dead build's, and leaves every other byte as it was."""
    from artefact import ownership
    from artefact.manifest import load_manifest
    from build_engine import commit

    out = tmp_path / "out"
    shutil.copytree(demo_artefacts["onnxruntime"].parent, out)  # the session's artefacts, record and all
    manifest = load_manifest(out / f"{NAME}.json")
    versioned = manifest.model_path
    data = bytearray(versioned.read_bytes())
    data[len(data) // 2] ^= 0xFF  # our model file, edited by hand: no longer ours to replace or delete
    versioned.write_bytes(bytes(data))
    (out / "server.202612061325.log").write_text("the user's log\n")
    (out / "IMG.0123456789ab.jpg").write_bytes(b"\xff\xd8 a photo")
    (out / f"{NAME}.0123456789ab.onnx").write_bytes(b"the user's model, named like ours")
    (out / f".{NAME}.build-abcdefgh").mkdir()
    (out / f".{NAME}.build-abcdefgh" / "photo.jpg").write_bytes(b"kept")
    (out / ".photos.build-12345678").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("outside --output\n")
    (out / "link-elsewhere").symlink_to(elsewhere)
    with commit.work_dir(out, NAME) as work:  # a real marker, copied into a look-alike folder
        shutil.copy(work / ownership.WORK_MARKER, out / f".{NAME}.build-abcdefgh" / ownership.WORK_MARKER)
    before = {**_state(out), **_state(elsewhere)}
    # a SIGKILLed build: its marked work folder, and a model file it noted and moved in
    dead = Path(tempfile.mkdtemp(prefix=f".{NAME}{commit.WORK_MARK}", dir=out))
    ownership.mark_work_dir(dead, "build")
    (dead / "raw.onnx").write_bytes(b"half an export")
    src = dead / "model.onnx"
    src.write_bytes(b"a model that never got its manifest")
    orphan = commit.versioned_name(NAME, "fe" * 32, ".onnx")
    commit.move_in({src: orphan}, out)

    code, err = _build([*BUILD, "--output", str(out)], capsys)
    assert code == 0, err
    after = {**_state(out), **_state(elsewhere)}
    ours = {f"{NAME}.json", ownership.RECORD}  # the manifest and the record: ours, rewritten
    assert {k: v for k, v in after.items() if k in before and k not in ours} == \
        {k: v for k, v in before.items() if k not in ours}  # byte for byte, links and all
    assert not dead.exists() and not (out / orphan).exists()  # provably ours: removed
    new = load_manifest(out / f"{NAME}.json")
    new.verify_file()
    assert new.model_file.endswith("-1.onnx") or new.model_file != versioned.name  # beside, not over
    added = sorted(set(after) - set(before))
    assert added == [new.model_file], added


@pytest.mark.fault("own-build-manifest-name")
def test_a_cache_file_that_is_not_ours_is_neither_read_nor_replaced(tmp_path: Path) -> None:
    """TensorRT's timing cache in --output (the TensorRT build itself needs a GPU, not here)."""
    from build_engine import commit

    (tmp_path / "timing.cache").write_bytes(b"the user's own timing cache")
    assert commit.own_cache_file(tmp_path, "timing.cache") is None
    assert commit.own_cache_file(tmp_path, "other.cache") == tmp_path / "other.cache"
    (tmp_path / "other.cache").write_bytes(b"what a TensorRT build wrote")
    commit.record_cache(tmp_path, "other.cache")
    assert commit.own_cache_file(tmp_path, "other.cache") == tmp_path / "other.cache"  # ours: reused
    assert (tmp_path / "timing.cache").read_bytes() == b"the user's own timing cache"


@pytest.mark.fault("own-build-manifest-name")
@pytest.mark.parametrize("kind", ["user JSON naming a photo", "garbage", "symlink to a system file",
                                  "a folder", "a FIFO", "auto: a candidate's name", "stop-after output",
                                  "the ownership record's name"])
def test_a_manifest_name_held_by_a_user_file_is_refused_up_front(tmp_path: Path, kind: str,
                                                                 capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "photo.jpg").write_bytes(b"\xff\xd8 the user's photo")
    argv = [*BUILD, "--output", str(out)]
    target = out / f"{NAME}.json"
    if kind == "user JSON naming a photo":
        target.write_text(json.dumps({"model_file": "photo.jpg", "companion_files": {"photo.jpg": "0" * 64}}))
    elif kind == "garbage":
        target.write_bytes(os.urandom(256))
    elif kind == "symlink to a system file":
        target.symlink_to("/etc/hostname")
    elif kind == "a folder":
        target.mkdir()
    elif kind == "a FIFO":  # must not hang a build that reads it to prove it is ours
        os.mkfifo(target)
    elif kind.startswith("auto"):
        argv = ["--backend", "onnxruntime", "--input-size", "96x192", "--output", str(out)]
        target = out / "demo-96x192-fp16-onnxruntime.json"
        target.write_text('{"notes": "mine"}')
    elif kind == "stop-after output":
        argv = [*argv, "--stop-after", "slim"]
        target = out / f"{NAME}.slim.onnx"
        target.write_bytes(b"the user's own graph")
    else:
        from artefact.ownership import RECORD

        target = out / RECORD
        target.write_text("the user's notes, oddly named\n")
    before = _state(out)
    t0 = time.monotonic()
    code, err = _build(argv, capsys)
    assert code == 2, err
    one_line(err, str(target), "left alone")
    assert time.monotonic() - t0 < 30  # refused before the export
    assert _state(out) == before


# ------------------------------------------------------------------ the Triton repository
@pytest.mark.fault("own-triton-repo")
def test_a_repository_folder_that_is_not_wholly_ours_is_refused(
        demo_artefacts: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from artefact import ownership
    from build_engine.triton_repo import main as repo_main

    onnx = str(demo_artefacts["onnxruntime"])
    repo = tmp_path / "models"
    write = ["--engine", onnx, "--triton-repo", str(repo), "--triton-variant", "native"]
    assert call_main(repo_main, write) == 0  # demo/: ours
    capsys.readouterr()
    ours = repo / "demo"
    cases = {
        "the user's version 2": lambda f: ((f / "2").mkdir(), (f / "2" / "model.onnx").write_bytes(b"v2")),
        "the user's notes": lambda f: (f / "NOTES.md").write_text("do not lose\n"),
        "one of our files edited": lambda f: (f / "config.pbtxt").write_text("# tuned by hand\n"),
        "a symlink to a folder": lambda f: (shutil.rmtree(f), f.symlink_to(tmp_path)),
        "a file": lambda f: (shutil.rmtree(f), f.write_text("not a folder")),
    }
    pristine = tmp_path / "pristine"
    shutil.copytree(ours, pristine, symlinks=True)
    for what, damage in cases.items():
        if ours.is_symlink() or ours.is_file():
            ours.unlink()
        if ours.exists():
            shutil.rmtree(ours)
        shutil.copytree(pristine, ours)
        damage(ours)
        before = _state(repo)
        assert call_main(repo_main, write) == 2, what
        one_line(capsys.readouterr().err, str(ours), "left alone")
        assert _state(repo) == before, what
        # the build refuses it too, before it builds anything
        t0 = time.monotonic()
        code, err = _build([*BUILD, "--output", str(tmp_path / "art"), "--triton-repo", str(repo),
                            "--triton-variant", "native"], capsys)
        assert code == 2 and time.monotonic() - t0 < 30 and not (tmp_path / "art" / f"{NAME}.json").exists()
        one_line(err, str(ours))
    # leftovers: a dead writer's staged folder (marked) and a replaced folder (wholly ours) go;
    # look-alikes that are not ours stay
    ours.unlink()
    shutil.copytree(pristine, ours)
    staged = Path(tempfile.mkdtemp(prefix=".demo.", dir=repo))
    ownership.mark_work_dir(staged, "triton model")
    replaced = repo / ".demo.old.deadbeef"
    shutil.copytree(pristine, replaced)
    lookalike = repo / ".demo.old.12345"
    lookalike.mkdir()
    (lookalike / "mine.txt").write_text("mine")
    assert call_main(repo_main, write) == 0
    assert not staged.exists() and not replaced.exists() and (lookalike / "mine.txt").read_text() == "mine"
    assert ownership.foreign_in_tree(ours) == []


# ---------------------------------------------------------------- integrity of an artefact
@pytest.mark.fault("integrity-hashes")
@pytest.mark.parametrize(("backend", "edit", "field"), [
    ("onnxruntime", {"model_sha256": ""}, "model_sha256"),
    ("onnxruntime", {"model_sha256": None}, "model_sha256"),
    ("onnxruntime", "remove model_sha256", "model_sha256"),
    ("openvino", {"companion_files": {}}, "companion_files"),
    ("openvino", "remove companion_files", "companion_files"),
    ("openvino", "companion under another name", "companion_files"),
])
def test_integrity_cannot_be_switched_off_in_the_manifest(demo_artefacts: dict[str, Path], tmp_path: Path,
                                                          backend: str, edit: object, field: str,
                                                          capsys: pytest.CaptureFixture) -> None:
    from artefact.manifest import ArtefactError, load_manifest
    from build_engine.triton_repo import main as repo_main
    from runtime.backends import load_backend

    manifest = clone_artefact(demo_artefacts[backend], tmp_path / "art")
    model = load_manifest(manifest).model_path
    data = json.loads(manifest.read_text())
    if isinstance(edit, dict):
        data.update(edit)
    elif edit.startswith("remove"):
        del data[edit.split()[1]]
    else:
        (digest,) = data["companion_files"].values()
        data["companion_files"] = {"other.bin": digest}
    manifest.write_text(json.dumps(data))
    # then the file the hash no longer guards is tampered with
    victim = model.with_suffix(".bin") if backend == "openvino" else model
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    victim.write_bytes(bytes(raw))
    code, _, err, _ = rt(["--video", "demo", "--demo-frames", "2", "--engine", str(manifest),
                          "--stats", str(tmp_path / "s.jsonl")], capsys)
    assert code == 2, err
    one_line(err, field, "rebuild with")
    assert not (tmp_path / "s.jsonl").exists()
    assert call_main(repo_main, ["--engine", str(manifest), "--triton-repo", str(tmp_path / "repo")]) == 2
    one_line(capsys.readouterr().err, field)
    with pytest.raises(ArtefactError, match=field):
        load_backend(manifest)


EDITS = ["2 classes", "20 classes", "97x192", "192x96", "8193x8193", "100000x100000", "dynamic", "logits"]


@pytest.mark.fault("integrity-contract")
@pytest.mark.parametrize(("backend", "edit"), [  # every edit on ORT; OpenVINO's compile is slower: a few
    *(("onnxruntime", e) for e in EDITS), ("openvino", "2 classes"), ("openvino", "97x192"),
    ("openvino", "dynamic")])
def test_a_manifest_must_describe_its_model(demo_artefacts: dict[str, Path], tmp_path: Path, backend: str,
                                            edit: str, capsys: pytest.CaptureFixture) -> None:
    from artefact.manifest import load_manifest

    m = load_manifest(demo_artefacts[backend])
    changes: dict[str, object] = {}
    if edit.endswith("classes"):
        n = int(edit.split()[0])
        changes = {"classes": [f"c{i}" for i in range(n)], "palette": [[i, i, i] for i in range(n)]}
        words = ("classes", "19")
    elif edit == "dynamic":
        changes, words = {"dynamic_shape": True}, ("dynamic_shape",)
    elif edit == "logits":
        changes, words = {"logits_name": "logits"}, ("logits",)
    else:
        h, w = (int(v) for v in edit.split("x"))
        changes, words = {"input_size": [h, w]}, ("input_size",)
    manifest = clone_artefact(demo_artefacts[backend], tmp_path / "art", **changes)
    stats = tmp_path / "s.jsonl"
    code, _, err, _ = rt(["--video", "demo", "--demo-frames", "2", "--engine", str(manifest), "--stats",
                             str(stats)], capsys)
    assert code == 2, err
    one_line(err, *words)
    assert not stats.exists()  # at load, before any frame
    assert m.classes  # the original is untouched


@pytest.mark.fault("integrity-contract")
@pytest.mark.parametrize("edit", [{"classes": ["a", "b"], "palette": [[0, 0, 0], [1, 1, 1]]},
                                  {"input_size": [97, 192]}])
def test_a_repository_is_written_only_for_a_manifest_that_describes_its_model(
        demo_artefacts: dict[str, Path], tmp_path: Path, edit: dict, capsys: pytest.CaptureFixture) -> None:
    from build_engine.triton_repo import main as repo_main

    manifest = clone_artefact(demo_artefacts["openvino"], tmp_path / "art", **edit)
    assert call_main(repo_main, ["--engine", str(manifest), "--triton-repo", str(tmp_path / "repo")]) == 2
    one_line(capsys.readouterr().err, "does not describe")
    assert not (tmp_path / "repo").exists() or not list((tmp_path / "repo").iterdir())


# ------------------------------------------------------------------------ degenerate models
def _checkpoint(folder: Path, kind: str) -> Path:
    import torch

    ckpt = torch.load(DEMO_WEIGHTS, weights_only=True)
    sd = ckpt["state_dict"]
    if kind == "NaN in a convolution":
        sd["module.layer0.0.weight"].view(-1)[7] = float("nan")
    elif kind == "Inf in a BatchNorm variance":
        sd["module.layer0.1.running_var"][3] = float("inf")
    elif kind == "NaN in the classifier bias":
        sd["module.cls.4.bias"][0] = float("nan")
    elif kind == "logits that overflow":
        sd["module.cls.4.weight"] = sd["module.cls.4.weight"].float().fill_(3e38)  # finite; the sums are not
    elif kind == "one class everywhere":
        sd["module.cls.4.weight"].zero_()
        sd["module.cls.4.bias"].zero_()
        sd["module.cls.4.bias"][2] = 5.0
    path = folder / f"{kind.replace(' ', '-')}.pth"
    torch.save(ckpt, path)
    return path


@pytest.mark.fault("degenerate-model")
@pytest.mark.parametrize(("kind", "words"), [
    ("NaN in a convolution", ("NaN/Inf values", "layer0.0.weight")),
    ("Inf in a BatchNorm variance", ("NaN/Inf values", "layer0.1.running_var")),
    ("NaN in the classifier bias", ("NaN/Inf values", "cls.4.bias")),
    ("one class everywhere", ("one class over every pixel", "id 2")),
])
def test_a_degenerate_model_never_passes_the_build(tmp_path: Path, kind: str, words: tuple[str, ...],
                                                   capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    code, err = _build([*BUILD, "--weights", str(_checkpoint(tmp_path, kind)), "--output", str(out)], capsys)
    assert code == 1, err
    last_line(err, "build failed", *words)
    assert not out.exists() or not [p for p in out.iterdir() if not p.name.startswith(".")]


@pytest.mark.fault("degenerate-model")
def test_logits_that_overflow_fail_verification(tmp_path: Path) -> None:
    """Finite weights, non-finite logits: the check the build's verify step runs, on the real model's
    PyTorch output (the build's wiring of that check is proven end to end by the one-class case)."""
    import torch

    from build_engine.errors import BuildError
    from build_engine.export import torch_reference
    from build_engine.verify import require_finite_weights, require_meaningful, verification_frames
    from pspnet.build import load_model
    from pspnet.zoo import get_spec

    spec = get_spec("demo").with_size(96, 192)
    net, _ = load_model(spec, _checkpoint(tmp_path, "logits that overflow"))
    require_finite_weights(net)  # every weight is finite ...
    assert torch.isfinite(net.state_dict()["cls.4.weight"]).all()
    reference = torch_reference(net, spec, verification_frames(96, 192, 2))
    with pytest.raises(BuildError, match="NaN/Inf logits on verification frame 1"):  # ... the logits are not
        require_meaningful(reference, "PyTorch", list(spec.classes))


# ------------------------------------------------------------------------- up-front refusals
@pytest.mark.fault("build-usage-upfront")
@pytest.mark.parametrize(("argv", "words"), [
    (["--input-size", "8193x8193"], ("--input-size", "8192")),
    (["--input-size", "100000x100000"], ("--input-size", "8192")),
    (["--dynamic", "--precision", "int8"], ("--dynamic", "int8")),
    (["--dynamic", "--precision", "fp16"], ("--dynamic", "fp16")),
    (["--backend", "tensorrt", "--precision", "fp32"], ("TensorRT",)),
    (["--stop-after", "export", "--triton-repo", "REPO"], ("--stop-after", "--triton-repo")),
    (["--engine", "ENGINE", "--triton-repo", "REPO", "--precision", "int8"], ("--engine", "--precision")),
    (["--triton-name", "x"], ("--triton-name", "--triton-repo")),
    (["--triton-variant", "python"], ("--triton-variant", "--triton-repo")),
    (["--precision", "fp32", "--calib-data", "synthetic:calib:4"], ("--calib-data", "fp32")),
    (["--precision", "fp32", "--max-miou-drop", "0.5"], ("--max-miou-drop", "fp32")),
    (["--precision", "fp16", "--fallback"], ("--fallback", "fp16")),
    (["--backend", "openvino", "--workspace-mb", "64"], ("--workspace-mb", "openvino")),
])
def test_build_usage_errors_come_before_any_work(demo_artefacts: dict[str, Path], tmp_path: Path,
                                                 argv: list[str], words: tuple[str, ...],
                                                 capsys: pytest.CaptureFixture) -> None:
    from devices import tensorrt_usable

    if "tensorrt" in argv and tensorrt_usable():
        pytest.skip("TensorRT and a GPU are here: a TensorRT build is no usage error")
    fill_in = {"REPO": str(tmp_path / "repo"), "ENGINE": str(demo_artefacts["onnxruntime"])}
    argv = [fill_in.get(a, a) for a in argv]
    if "--engine" not in argv:
        argv += ["--output", str(tmp_path / "out")]
        if "--input-size" not in argv:
            argv += ["--input-size", "96x192"]
    t0 = time.monotonic()
    code, err = _build(argv, capsys)
    assert code == 2, err
    one_line(err, *words)
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "out").exists() and not (tmp_path / "repo").exists()


# ----------------------------------------------------------------------- deeply nested JSON
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.fault("manifest-nesting")
def test_deeply_nested_json_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from build_engine.triton_repo import main as repo_main

    manifest = tmp_path / "deep.json"
    manifest.write_text(DEEP)
    code, _, err, _ = rt(["--video", "demo", "--engine", str(manifest)], capsys)
    assert code == 2
    one_line(err, "deep.json")
    assert call_main(repo_main, ["--engine", str(manifest), "--triton-repo", str(tmp_path / "repo")]) == 2
    one_line(capsys.readouterr().err, "deep.json")
    nested = tmp_path / "wrapped.json"
    nested.write_text('{"format": "pspnet-rt/1", "classes": ' + DEEP + "}")
    code, _, err, _ = rt(["--video", "demo", "--engine", str(nested)], capsys)
    assert code == 2
    one_line(err, "wrapped.json")
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{NAME}.json").write_text(DEEP)
    code, err = _build([*BUILD, "--output", str(out)], capsys)
    assert code == 2
    one_line(err, f"{NAME}.json", "not written by pspnet-rt")
    labels = tmp_path / "labels.json"  # a label set for --classes
    labels.write_text(DEEP)
    code, err = _build([*BUILD, "--classes", str(labels), "--output", str(tmp_path / "out2")], capsys)
    assert code == 2
    one_line(err, "labels.json", "nested too deeply")
    from calib.ranges import records_in

    cache = tmp_path / "ranges.json"
    cache.write_text(DEEP)
    assert records_in(cache) == []  # ignored with a warning: calibrated again


# -------------------------------------------------------------- messages name commands, not calls
# a plain ValueError / TypeError / AssertionError is a programming error of a Python caller in this code
# base (what a user meets has its own class: UsageError, CheckpointError, ArtefactError, BuildError ...)
PROGRAMMING_ERRORS = {"ValueError", "TypeError", "AssertionError", "NotImplementedError"}
CALL = re.compile(r"(?<![\w.-])[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*\((?!s\))")
MESSAGE_CALLS = {"raise", "fail", "warning", "error", "UsageError", "print", "write"}


def _message_texts(path: Path) -> list[tuple[int, str]]:
    """Literal text of every message: exceptions raised, fail()/log.warning()/print() arguments."""
    found: set[tuple[int, str]] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        target = node.exc if isinstance(node, ast.Raise) else node if isinstance(node, ast.Call) else None
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name not in MESSAGE_CALLS and not name.endswith("Error"):
                continue
        if target is None:
            continue
        if isinstance(target, ast.Call) and getattr(target.func, "id", "") in PROGRAMMING_ERRORS:
            continue
        for sub in ast.walk(target):
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                found.add((sub.lineno, sub.value))
    return sorted(found)


@pytest.mark.fault("fix-is-a-command")
def test_no_message_names_a_python_call_as_the_fix() -> None:
    offenders = []
    for package in ("build_engine", "artefact", "calib", "pspnet", "clikit", "devices"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, text in _message_texts(path):
                if "`" in text and "python -m" in text:
                    continue  # a command line
                if CALL.search(text) or re.search(r"\bcall [a-z_]+", text):
                    offenders.append(f"{path.relative_to(ROOT)}:{line}: {text!r}")
    assert offenders == [], "\n".join(offenders)


@pytest.mark.fault("integrity-hashes")
@pytest.mark.parametrize("damage", ["model file flipped", "config edited", "manifest copy removed"])
def test_a_repository_we_wrote_is_served_only_as_written(demo_artefacts: dict[str, Path], tmp_path: Path,
                                                         damage: str) -> None:
    from build_engine.triton_repo import RepoOptions, RepositoryError, write_repository
    from serving.triton_server import servable_models

    repo = tmp_path / "models"
    (model,) = write_repository(demo_artefacts["onnxruntime"], repo, RepoOptions(variant="native"))
    (tmp_path / "user-model").mkdir()  # a model folder that is not ours is the user's business
    shutil.copytree(tmp_path / "user-model", repo / "theirs")
    assert servable_models(repo, tmp_path)[1] == ["demo"]  # checked, then skipped: no such backend here
    if damage == "model file flipped":
        raw = bytearray((model / "1" / "model.onnx").read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        (model / "1" / "model.onnx").write_bytes(bytes(raw))
    elif damage == "config edited":
        config = model / "config.pbtxt"
        config.write_text(config.read_text().replace("dims: 96", "dims: 97"))
    else:
        (model / "pspnet-rt.json").unlink()
    with pytest.raises(RepositoryError, match="changed since pspnet-rt wrote it"):
        servable_models(repo, tmp_path)
