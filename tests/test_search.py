"""python -m pspnet.search: real tiny trials, a study that survives SIGTERM and kill -9, two
workers sharing one study through a real PostgreSQL server, and bad input as one line."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="the search extra is not installed (pip install '.[search]')")

from pspnet.search.cli import main  # noqa: E402
from tests.faults.helpers import call_main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--iters", "2", "--eval-every", "1", "--threads", "1",
            "--workers", "1", "--heartbeat", "1", *extra]


def _study(out: Path, url: str | None = None) -> optuna.Study:
    return optuna.load_study(study_name="pspnet-search", storage=url or f"sqlite:///{out / 'search.db'}")


def _finished(study: optuna.Study) -> list:
    return [t for t in study.get_trials() if t.state in (optuna.trial.TrialState.COMPLETE,
                                                         optuna.trial.TrialState.PRUNED)]


def test_search_outputs_and_continuing(tiny_data_road: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "s"
    assert main(_args(tiny_data_road, out, "--trials", "2")) == 0
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
    from pspnet.weights import read_state_dict

    assert read_state_dict(out / "best.pth")["cls.4.weight"].shape[0] == 3  # the data's 3 classes
    capsys.readouterr()
    assert main(_args(tiny_data_road, out, "--trials", "2")) == 0  # nothing left to do
    assert "continued" in capsys.readouterr().err and len(_study(out).trials) == 2
    # another setting: refused, and the study is left as it is
    assert main(_args(tiny_data_road, out, "--trials", "2", "--sampler", "tpe")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists with other settings" in err[0] and "sampler" in err[0]
    assert main(_args(tiny_data_road, out, "--trials", "1")) == 2
    assert len(_study(out).trials) == 2


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


def _spawn(argv: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "pspnet.search", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=log.open("wb"))


def _wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the search ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.timeout(300)
def test_sigterm_and_kill_then_resume_lose_and_repeat_nothing(tiny_data_road: Path, tmp_path: Path) -> None:
    out = tmp_path / "s"
    argv = _args(tiny_data_road, out, "--trials", "2", "--pruner", "none")
    argv[argv.index("--iters") + 1] = "6"
    argv[argv.index("--eval-every") + 1] = "3"
    proc = _spawn(argv, tmp_path / "1.log")  # SIGTERM while trial 0 runs
    _wait_for(lambda: (out / "trials" / "0000").is_dir(), proc, "trial 0 started")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143, (tmp_path / "1.log").read_text()
    study = _study(out)
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert [t.user_attrs.get("interrupted") for t in failed] == ["SIGTERM"]
    assert not [t for t in study.trials if t.state.name == "RUNNING"]
    requeued = [t for t in study.trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(requeued) == 1 and requeued[0].params == failed[0].params  # the same trial, again

    proc = _spawn(argv, tmp_path / "2.log")  # kill -9 while a trial runs: no chance to clean up
    _wait_for(lambda: any(t.state.name == "RUNNING" for t in _study(out).trials), proc, "a trial running")
    proc.kill()
    proc.wait(timeout=30)
    running = [t for t in _study(out).trials if t.state.name == "RUNNING"]
    assert len(running) == 1  # left behind by the killed worker; its heartbeat has stopped

    proc = _spawn(argv, tmp_path / "3.log")  # resume: takes the dead worker's trial over
    assert proc.wait(timeout=240) == 0, (tmp_path / "3.log").read_text()
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
def test_two_workers_share_one_study_on_postgresql(tiny_data_road: Path, tmp_path: Path) -> None:
    from tests.postgres import PASSWORD, postgres_server

    with postgres_server() as url:
        procs = [_spawn(_args(tiny_data_road, tmp_path / f"w{i}", "--trials", "2", "--storage", url),
                        tmp_path / f"w{i}.log") for i in range(2)]
        codes = [p.wait(timeout=240) for p in procs]
        logs = [(tmp_path / f"w{i}.log").read_text() for i in range(2)]
        assert codes == [0, 0], logs
        study = _study(tmp_path, url.replace("postgresql://", "postgresql+psycopg://"))
        assert len(_finished(study)) == 2 and len(study.trials) == 2  # exactly N, none extra
        workers = {t.user_attrs["worker"] for t in study.trials}
        for i in range(2):
            text = logs[i] + (tmp_path / f"w{i}" / "trials.json").read_text() + \
                (tmp_path / f"w{i}" / "trials.md").read_text()
            assert PASSWORD not in text  # the database password never reaches an output
            assert "***" in logs[i]
    assert len(workers) >= 1


@pytest.mark.parametrize("case", ["no-ground-truth", "split-0", "split-1", "unreachable-db", "bad-url",
                                  "locked-sqlite"])
def test_bad_input_is_one_line_exit_2(case: str, tiny_data_road: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    import shutil

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
