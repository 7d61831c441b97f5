"""python -m pspnet.search: real tiny trials, a study that survives SIGTERM and kill -9, two
workers sharing one study through a real PostgreSQL server, and bad input as one line."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="the search extra is not installed (pip install '.[search]')")

from pspnet.search.cli import main  # noqa: E402
from tests.faults.helpers import call_main  # noqa: E402


def _args(data: Path | str, out: Path, *extra: str) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--iters", "2", "--eval-every", "1", "--threads", "1",
            "--workers", "1", "--heartbeat", "1", *extra]


def _study(out: Path, url: str | None = None) -> optuna.Study:
    return optuna.load_study(study_name="pspnet-search", storage=url or f"sqlite:///{out / 'search.db'}")


def _finished(study: optuna.Study) -> list:
    return [t for t in study.get_trials() if t.state in (optuna.trial.TrialState.COMPLETE,
                                                         optuna.trial.TrialState.PRUNED)]


@pytest.fixture(scope="module")
def searched(tiny_data_road: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """One finished search of 2 tiny trials, shared: the fork's recipe on the 2-class road/not-road
    labels (black ignored), so its best.pth is a 2-class checkpoint of that recipe."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("search") / "s"
    from pspnet.zoo import get_spec

    # from the shipped demo weights, as the fork starts from Cityscapes: a random backbone paints
    # one class everywhere, which the build of best.pth rightly refuses as degenerate
    argv = _args(f"kitti-road-binary:{tiny_data_road}", out, "--trials", "2", "--recipe", "kitti-road-fork",
                 "--init", str(get_spec("demo").weights_path))
    argv[argv.index("--eval-every") + 1] = "2"  # one held-out evaluation per trial
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(argv) == 0, err.getvalue()
    return out, argv


def test_search_outputs_and_continuing(searched: tuple[Path, list[str]],
                                       capsys: pytest.CaptureFixture) -> None:
    out, argv = searched
    study = _study(out)
    assert len(_finished(study)) == 2 and len(study.trials) == 2
    for name in ("best.json", "best.pth", "trials.json", "trials.md", "history.png", "importances.png",
                 "space.json", "split/train.txt", "split/val.txt"):
        assert (out / name).is_file(), name
    best = json.loads((out / "best.json").read_text())
    assert best["value"] == max(t.value for t in study.trials if t.state.name == "COMPLETE")
    assert best["command"].startswith("python -m pspnet.train ") and "--val-split" in best["command"]
    table = json.loads((out / "trials.json").read_text())
    assert table["counts"]["finished"] == 2 and len(table["trials"]) == 2
    assert all(t["steps"] for t in table["trials"])  # every trial reported to the pruner
    assert "| trial | state | held-out mIoU | lr |" in (out / "trials.md").read_text()
    from artefact.files import sha256_file
    from pspnet.weights import read_state_dict

    assert read_state_dict(out / "best.pth")["cls.4.weight"].shape[0] == 2  # road / not road
    # only the best trial keeps weights, and OUT/best.pth is exactly them
    kept = sorted((out / "trials").glob("*/best.pth"))
    assert kept == [Path(best["checkpoint"])] and kept[0].parent.name == f"{best['trial']:04d}"
    assert sha256_file(kept[0]) == sha256_file(out / "best.pth")
    assert [t["checkpoint"] is not None for t in table["trials"]].count(True) == 1
    capsys.readouterr()
    assert main(argv) == 0  # nothing left to do
    assert "continued" in capsys.readouterr().err and len(_study(out).trials) == 2
    # another setting: refused, and the study is left as it is
    assert main([*argv, "--sampler", "tpe"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists with other settings" in err[0] and "sampler" in err[0]
    fewer = list(argv)
    fewer[fewer.index("--trials") + 1] = "1"
    assert main(fewer) == 2
    assert len(_study(out).trials) == 2


def test_search_best_builds_int8_gated_on_its_holdout(searched: tuple[Path, list[str]], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    """The issue's 'done when': the search's best.pth builds into a gated INT8 artefact with one
    command, its 2 road classes from the checkpoint, the gate scored on the search's held-out list."""
    from build_engine.api import build_artefact

    out, _ = searched  # (the command line's own path is tested on the fork recipe's checkpoint)
    manifest = build_artefact(weights=str(out / "best.pth"), precision="int8", backend="onnxruntime",
                              input_size=(48, 96), output=tmp_path, verify_frames=1)
    err = capsys.readouterr().err
    assert f"--eval-data {(out / 'split' / 'val.txt').resolve()} (the checkpoint's held-out data)" in err
    data = json.loads(Path(manifest).read_text())
    assert data["precision"] == "int8" and data["label_set"] == "kitti-road-binary"
    assert data["classes"] == ["not road", "road"] and data["ignore_index"] == 255
    gate = data["accuracy"]["gate"]
    assert data["accuracy"]["eval_data"]["source"] == str((out / "split" / "val.txt").resolve())
    assert gate["passed"] and gate["fp32_miou"] is not None and set(gate["per_class"]) == {"not road", "road"}


def test_only_the_final_best_keeps_weights(tmp_path: Path) -> None:
    """search.checkpoints.settle with a real Optuna study: a trial that was best and then beaten
    loses its weights; OUT/best.pth follows the best; files not of this study are left alone; a
    best whose weights are on another machine does not leave an older best in its place."""
    from artefact.files import sha256_file
    from pspnet.search.checkpoints import record, settle

    study = optuna.create_study(direction="maximize")
    out = tmp_path / "out"
    out.mkdir()

    def finish(value: float, keep: bool) -> Path:
        trial = study.ask()
        path = tmp_path / "trials" / f"{trial.number:04d}" / "best.pth"
        path.parent.mkdir(parents=True)
        path.write_bytes(f"weights of trial {trial.number}".encode())
        if keep:
            record(trial, path)
        study.tell(trial, value)
        return path

    first = finish(0.3, keep=True)
    assert settle(study, out) is None and (out / "best.pth").read_bytes() == first.read_bytes()
    second = finish(0.5, keep=True)  # beats the first: the first's weights go
    assert settle(study, out) is None and not first.exists()
    assert sha256_file(out / "best.pth") == sha256_file(second)
    finish(0.4, keep=False)
    settle(study, out)
    assert sha256_file(out / "best.pth") == sha256_file(second) and second.exists()
    # another machine's trial becomes the best: no older best stays in OUT/best.pth
    far = finish(0.9, keep=True)
    far.unlink()
    note = settle(study, out)
    assert "trial 3" in note and not (out / "best.pth").exists() and not second.exists()
    # a best.pth that is not one of this study's checkpoints is never replaced
    (out / "best.pth").write_bytes(b"someone else's")
    far.write_bytes(b"weights of trial 3")
    assert "not a checkpoint of this study" in settle(study, out)
    assert (out / "best.pth").read_bytes() == b"someone else's"


def test_a_kill_right_after_taking_a_trial_is_recovered(tiny_data_road: Path, tmp_path: Path) -> None:
    """A worker that dies between taking a trial (WAITING -> RUNNING) and anything after it: the
    trial already has a heartbeat, so Optuna's stale-trial check queues it again."""
    from pspnet.search import storage as st
    from pspnet.search import study as sy

    storage = st.open_storage(f"sqlite:///{tmp_path / 'search.db'}", 1)
    study, _ = sy.open_study(storage, "s", {"x": 1}, 1, optuna.samplers.RandomSampler(0),
                             optuna.pruners.NopPruner())
    study_id = storage.get_study_id_from_name("s")
    cached = study._storage
    take = cached.set_trial_state_values

    class Killed(BaseException):
        pass

    def take_then_die(trial_id: int, state, values=None) -> bool:
        taken = take(trial_id, state, values)
        if state == optuna.trial.TrialState.RUNNING and taken:
            raise Killed  # the process is gone: nothing after the take runs
        return taken

    cached.set_trial_state_values = take_then_die
    with pytest.raises(Killed):
        sy.claim(study, storage, study_id, lambda n: optuna.samplers.RandomSampler(n))
    cached.set_trial_state_values = take
    assert [t.state.name for t in study.get_trials()] == ["RUNNING"]
    deadline = time.monotonic() + 30  # the grace period is 2 heartbeats (SQLite's clock: whole seconds)
    while study.get_trials()[0].state.name == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.5)
        sy.recover_stale(study)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]  # failed and queued again
    assert trials[1].system_attrs.get("failed_trial") == trials[0].number


def test_pruning_stops_a_training_early(tiny_data_road: Path, tmp_path: Path) -> None:
    from pspnet.train import build_parser, load_data, resolve_options, train

    args = build_parser().parse_args(["--data", str(tiny_data_road), "--val-split", "0.2", "--iters", "6",
                                      "--eval-every", "1", "--crop", "24x24", "--batch-size", "2",
                                      "--workers", "1", "--threads", "1", "--no-bf16",
                                      "--out", str(tmp_path)])
    resolve_options(args)
    data = load_data(args, tmp_path)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.1))
    trial = study.ask()

    def on_eval(step: int, metrics: dict) -> None:
        trial.report(metrics["miou"], step)
        if trial.should_prune():
            raise optuna.TrialPruned()

    with pytest.raises(optuna.TrialPruned):
        train(args, data=data, on_eval=on_eval)
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 1  # stopped at the first


def _worker(argv: list[str], log: Path) -> multiprocessing.Process:
    """Another worker process, forked from this one: the search's own main() in a separate process
    (it can be killed outright), without a fresh interpreter importing torch again (~20 s here)."""
    def run() -> None:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 2)
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115 (lives as long as the process)
        os._exit(call_main(main, argv))

    log.touch()
    proc = multiprocessing.get_context("fork").Process(target=run)
    proc.start()
    proc.log = log
    return proc


def _wait_for(predicate, proc: multiprocessing.Process, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.is_alive(), f"the search ended before {what}: {Path(proc.log).read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.timeout(300)
def test_sigterm_and_kill_then_resume_lose_and_repeat_nothing(tiny_data_road: Path, tmp_path: Path) -> None:
    out = tmp_path / "s"
    argv = _args(tiny_data_road, out, "--trials", "2", "--pruner", "none")
    argv[argv.index("--iters") + 1] = "4"
    argv[argv.index("--eval-every") + 1] = "2"
    # SIGTERM while trial 0 runs, after its first evaluation, to a search in a process of its own
    # (a real signal to a real command; in pytest's own long-lived process, full of other
    # libraries' threads, a signal was not a fair test of ours)
    root = Path(__file__).resolve().parents[1]
    with open(tmp_path / "1.log", "wb") as log:
        proc1 = subprocess.Popen([sys.executable, "-m", "pspnet.search", *argv], cwd=root, stderr=log,
                                 stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 240
            while not (out / "trials" / "0000" / "history.jsonl").is_file():
                assert proc1.poll() is None, (tmp_path / "1.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "trial 0 never evaluated"
                time.sleep(0.02)
            proc1.send_signal(signal.SIGTERM)
            assert proc1.wait(timeout=120) == 143, (tmp_path / "1.log").read_text()[-3000:]
        finally:
            if proc1.poll() is None:
                proc1.kill()
                proc1.wait()
    study = _study(out)
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert [t.user_attrs.get("interrupted") for t in failed] == ["SIGTERM"]
    assert not list((out / "trials" / "0000").glob("*.pth"))  # it runs again from its start: no weights kept
    assert not [t for t in study.trials if t.state.name == "RUNNING"]
    requeued = [t for t in study.trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(requeued) == 1 and requeued[0].params == failed[0].params  # the same trial, again

    proc = _worker(argv, tmp_path / "2.log")  # kill -9 while a trial runs: no chance to clean up
    _wait_for(lambda: any(t.state.name == "RUNNING" for t in _study(out).trials), proc, "a trial running")
    proc.kill()
    proc.join(timeout=30)
    assert proc.exitcode == -signal.SIGKILL
    running = [t for t in _study(out).trials if t.state.name == "RUNNING"]
    assert len(running) == 1  # left behind by the killed worker; its heartbeat has stopped

    assert call_main(main, argv) == 0  # resume (here): takes the dead worker's trial over
    study = _study(out)
    finished = _finished(study)
    assert len(finished) == 2
    # every queued slot finished exactly once: no slot lost, none run twice
    killed = next(t for t in study.trials if t.number == running[0].number)
    assert killed.state.name == "FAIL"
    retried = {t.system_attrs.get("failed_trial") for t in study.trials} - {None}
    assert retried == {failed[0].number, killed.number}
    assert sorted(t.number for t in study.trials if t.state.name == "FAIL") == sorted(retried)
    assert len({json.dumps(t.params, sort_keys=True) for t in finished}) == 2
    assert not [t for t in study.trials if t.state.name in ("RUNNING", "WAITING")]


@pytest.mark.timeout(300)
def test_two_workers_share_one_study_on_postgresql(tiny_data_road: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    """Two worker processes, this one and a started one, on one study on a real PostgreSQL
    server: each takes trials, together they finish exactly N. The first is held (SIGSTOP) inside
    its first trial until the second took one, so both take trials however load orders them."""
    from tests.postgres import PASSWORD, postgres_server

    with postgres_server() as url:
        argv = [*_args(tiny_data_road, tmp_path / "w1", "--trials", "3", "--storage", url)]
        argv[argv.index("--iters") + 1] = "4"
        argv[argv.index("--eval-every") + 1] = "4"
        argv[argv.index("--heartbeat") + 1] = "60"  # held, the first worker is not presumed dead
        other = list(argv)
        other[other.index("--out") + 1] = str(tmp_path / "w0")
        proc = _worker(other, tmp_path / "w0.log")
        done = threading.Event()
        try:
            driver = url.replace("postgresql://", "postgresql+psycopg://")
            log = tmp_path / "w0.log"
            _wait_for(lambda: "study 'pspnet-search'" in log.read_text(), proc, "the study made")
            watch = optuna.storages.RDBStorage(driver)  # one connection pool for the polling

            def taken() -> int:
                trials = optuna.load_study(study_name="pspnet-search", storage=watch).trials
                return sum(t.state.name != "WAITING" for t in trials)

            _wait_for(lambda: taken() >= 1, proc, "the other worker's first trial")
            os.kill(proc.pid, signal.SIGSTOP)

            def release_once_joined() -> None:  # this worker took a trial too: let the first go on
                deadline = time.monotonic() + 100
                while not done.is_set() and taken() < 2 and time.monotonic() < deadline:
                    time.sleep(0.1)
                os.kill(proc.pid, signal.SIGCONT)

            releaser = threading.Thread(target=release_once_joined, daemon=True)
            releaser.start()
            assert call_main(main, argv) == 0  # the second worker joins while the first one runs
            releaser.join(timeout=10)
            proc.join(timeout=120)
            assert proc.exitcode == 0, (tmp_path / "w0.log").read_text()
        finally:
            done.set()
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
                proc.join(timeout=10)
        err = capsys.readouterr().err
        study = _study(tmp_path, driver)
        assert len(_finished(study)) == 3 and len(study.trials) == 3  # exactly N, none extra
        workers = {t.user_attrs["worker"] for t in study.trials}
        assert len(workers) == 2  # both took trials
        texts = [err, (tmp_path / "w0.log").read_text()]
        for name in ("w0", "w1"):
            texts += [(tmp_path / name / table).read_text() for table in ("trials.json", "trials.md")]
        assert not [t for t in texts if PASSWORD in t]  # the database password never reaches an output
        assert "***" in err


@pytest.mark.parametrize("case", ["no-ground-truth", "split-0", "split-1", "unreachable-db", "bad-url",
                                  "locked-sqlite"])
def test_bad_input_is_one_line_exit_2(case: str, tiny_data_road: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from pspnet.search import storage

    monkeypatch.setattr(storage, "SQLITE_TIMEOUT_S", 0.5)  # how long a locked file is waited for

    out = tmp_path / "s"
    data, extra = tiny_data_road, []
    if case == "no-ground-truth":
        data = tmp_path / "data_road"
        shutil.copytree(tiny_data_road, data, ignore=shutil.ignore_patterns("gt_image_2"))
    elif case.startswith("split-"):
        extra = ["--val-split", case[-1]]
    elif case == "unreachable-db":
        extra = ["--storage", "postgresql://someone:hunter2pw@127.0.0.1:1/optuna"]
    elif case == "bad-url":
        extra = ["--storage", "nosuchdb://someone:hunter2pw@127.0.0.1/x"]
    lock = None
    if case == "locked-sqlite":
        out.mkdir()
        lock = sqlite3.connect(out / "search.db", timeout=0)
        lock.execute("BEGIN EXCLUSIVE")
    try:
        code = call_main(main, _args(data, out, "--trials", "2", *extra))
    finally:
        if lock is not None:
            lock.close()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("study ")]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "hunter2pw" not in err
    expect = {"no-ground-truth": "no ground truth", "split-0": "--val-split", "split-1": "--val-split",
              "unreachable-db": "127.0.0.1:1", "bad-url": "nosuchdb", "locked-sqlite": "locked"}[case]
    assert expect in lines[0]
    if case == "no-ground-truth":
        assert not (out / "search.db").exists()  # no study made for data that cannot train
