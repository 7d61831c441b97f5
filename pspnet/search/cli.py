"""`python -m pspnet.search`: hyper-parameter search over pspnet.train with Optuna.

Random search by default (Optuna's RandomSampler), as the KITTI fork planned; TPE with
--sampler tpe. Each trial is a real short training (--iters) on the training part of a
hold-out split of --data, scored by held-out mIoU every --eval-every iterations; the median
pruner stops trials that trail the others. The space is declared in pspnet/search/space.py
(--show-space prints it). The study lives in OUT/search.db (SQLite) unless --storage names a
database: `--storage postgresql://user:pw@host/db` lets several processes or machines work on
one study, each running this same command. Running the command again continues the study
(nothing is overwritten); a search stopped by Ctrl-C, SIGTERM or a kill loses at most the
trial that was running, which runs again with the same parameters.

Outputs in OUT: best.json (parameters, score, the training command) and best.pth (the best
trial's checkpoint: `python -m build_engine --weights OUT/best.pth` builds it with its label set,
calibrated and gated on this split), trials.json and trials.md (every trial, after each one),
history.png and importances.png (drawn as a worker finishes), split/{train,val}.txt,
trials/NNNN/ (each trial's training record; only the best trial keeps its weights).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path

import clikit

PROG = "python -m pspnet.search"
log = logging.getLogger("pspnet.search")


def build_parser() -> argparse.ArgumentParser:
    from pspnet.recipes import RECIPES
    from segdata.split import add_split_options

    p = clikit.parser(PROG, __doc__,
                      "examples:\n"
                      "  python -m pspnet.search --data kitti-road:/data/data_road --init cityscapes.pth "
                      "--recipe kitti-road-native --trials 40 --out runs/search\n"
                      "  python -m pspnet.search ... --storage postgresql://me:secret@db.lan/optuna   "
                      "(on each machine)\n" + clikit.EXIT_CODES_HELP)
    p.add_argument("--data", required=True, type=clikit.non_empty("a data source"),
                   help="the data set to split: a folder (kitti-road data_road, cityscapes ...), "
                        "layout:/path or synthetic:...")
    add_split_options(p, default=0.2)
    p.add_argument("--model", default="demo", type=clikit.non_empty("a model zoo name"))
    p.add_argument("--init", type=clikit.input_file("a checkpoint file"),
                   help="checkpoint every trial starts from (transfer learning)")
    p.add_argument("--recipe", choices=tuple(RECIPES),
                   help="pspnet.train recipe for everything the space does not vary (e.g. upsampling)")
    p.add_argument("--upsample", type=clikit.float_in(what="a scale factor", above=0, high=8),
                   help="resize images by this factor first (default: the recipe's, else 1)")
    p.add_argument("--trials", type=clikit.int_in(1, 100000), default=20,
                   help="trials the study finishes in all (continuing a study: the same or more)")
    p.add_argument("--timeout", type=clikit.float_in(what="seconds", above=0),
                   help="start no new trial after this many seconds (the running one finishes)")
    p.add_argument("--iters", type=clikit.positive_int, default=300, help="training iterations per trial")
    p.add_argument("--eval-every", type=clikit.positive_int, default=50,
                   help="held-out evaluation (and pruning decision) every N iterations")
    p.add_argument("--sampler", choices=("random", "tpe"), default="random")
    p.add_argument("--pruner", choices=("median", "none"), default="median")
    p.add_argument("--seed", type=clikit.int_in(0, 2**31 - 1), default=0,
                   help="sampler seed: trial k's parameters depend only on it and k (random search)")
    p.add_argument("--storage", type=clikit.non_empty("a database URL"),
                   help="database URL (default: sqlite:///OUT/search.db); postgresql://... to share "
                        "the study between processes or machines")
    p.add_argument("--study-name", default="pspnet-search", type=clikit.non_empty("a study name"))
    p.add_argument("--heartbeat", type=clikit.int_in(1, 3600), default=10,
                   help="seconds between a worker's heartbeats; a worker silent for twice this long is "
                        "presumed dead and its trial runs again")
    p.add_argument("--threads", type=clikit.int_in(0, 1024), default=0, help="torch threads (0: its default)")
    p.add_argument("--workers", type=clikit.int_in(1, 256), default=2, help="processes that decode the data")
    p.add_argument("--out", default="runs/search", type=clikit.output_dir())
    p.add_argument("--show-space", action="store_true", help="print the declared search space and exit")
    clikit.add_verbose(p)
    return p


def main(argv: list[str] | None = None) -> int:
    from pspnet.errors import CheckpointError
    from pspnet.search.storage import StorageError
    from pspnet.search.study import StudyMismatch
    from segdata.datasets import DatasetError

    signals = clikit.Signals(PROG, finishing="putting the running trial back into the queue")
    return clikit.run(PROG, build_parser(), lambda a: search(a, signals), argv, signals=signals,
                      usage=(StorageError, StudyMismatch, DatasetError, CheckpointError, KeyError),
                      quiet=("optuna",))


def _settings(args: argparse.Namespace, recipe_upsample: float) -> dict:
    from artefact.files import sha256_file
    from pspnet.search.space import describe
    from segdata.split import absolute_source

    return {"data": absolute_source(args.data), "val_split": args.val_split, "split_seed": args.split_seed,
            "model": args.model, "init": str(Path(args.init).resolve()) if args.init else None,
            "init_sha256": sha256_file(args.init) if args.init else None, "recipe": args.recipe,
            "upsample": recipe_upsample, "iters": args.iters, "eval_every": args.eval_every,
            "space": describe(), "metric": "held-out mIoU", "direction": "maximize",
            "sampler": args.sampler, "seed": args.seed, "pruner": args.pruner}


def _sampler(kind: str, seed: int):
    import optuna

    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def search(args: argparse.Namespace, signals: clikit.Signals) -> int:
    import optuna

    from pspnet.search import report
    from pspnet.search import storage as st
    from pspnet.search import study as sy
    from pspnet.search.space import describe

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING if args.verbose < 2 else optuna.logging.DEBUG)
    if args.show_space:
        print(report.dumps(describe()))
        return 0
    import torch

    from artefact.files import atomic_write_json
    from pspnet.train import build_parser as train_parser
    from pspnet.train import load_data, resolve_options

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    # the data, split once into OUT/split/, in memory for every trial of this worker
    base = ["--model", args.model, "--data", args.data, "--val-split", f"{args.val_split!r}",
            "--split-seed", str(args.split_seed), "--workers", str(args.workers), "--iters", str(args.iters),
            "--eval-every", str(args.eval_every), "--save-every", str(args.iters), "--no-keep-last"]
    if args.recipe:
        base += ["--recipe", args.recipe]
    if args.upsample is not None:
        base += ["--upsample", f"{args.upsample!r}"]
    if args.init:
        base += ["--init", str(Path(args.init).resolve())]
    if args.threads:
        base += ["--threads", str(args.threads)]
    probe = train_parser().parse_args([*base, "--out", str(out)])
    resolve_options(probe)
    url = st.storage_url(args.storage, out)
    settings = _settings(args, probe.upsample)
    from segdata.datasets import open_dataset

    open_dataset(args.data, split="train")  # a wrong folder fails before any database is touched
    storage = st.open_storage(url, args.heartbeat)
    try:
        study, created = sy.open_study(storage, args.study_name, settings, args.trials,
                                       _sampler(args.sampler, args.seed), _pruner(args.pruner))
    except Exception as exc:
        if st._is_db_error(exc):
            raise st.StorageError(st.describe_error(exc, url)) from None
        raise
    where = st.redact(url)
    print(f"study {args.study_name!r} in {where}: {'created' if created else 'continued'}, "
          f"{args.trials} trials", file=sys.stderr)
    atomic_write_json(out / "space.json", describe())
    data = load_data(probe, out)
    for note in data.notes:
        print(f"note: {note}", file=sys.stderr)
    smallest = min(im.shape[:2] for im in data.images)
    study_id = storage.get_study_id_from_name(args.study_name)
    shown = {**settings, "study": args.study_name, "trials": args.trials, "storage": where}
    t0 = time.monotonic()
    ran = 0
    while True:
        sy.recover_stale(study)
        if args.timeout is not None and time.monotonic() - t0 > args.timeout:
            print(f"--timeout {args.timeout:g} s reached: no new trial started", file=sys.stderr)
            break
        claimed = sy.claim(study, storage, study_id,
                           lambda number: _sampler(args.sampler, _trial_seed(args.seed, number)))
        if claimed is None:
            counts = sy.tally(study)
            if counts["running"] == 0:
                break
            time.sleep(min(2.0, args.heartbeat / 2))  # others' trials: wait, and take over if they die
            continue
        ran += 1
        code = _run_trial(*claimed, study, storage, base, out, data, smallest, signals)
        report.write_reports(study, out, shown, sy.tally(study), draw=False)
        if code:
            return code
    counts = sy.tally(study)
    _settle(study, out)
    plots_missing = not (out / "history.png").is_file()
    best = report.write_reports(study, out, shown, counts, draw=ran > 0 or plots_missing)
    print(f"{counts['finished']} of {args.trials} trials finished ({counts['complete']} complete, "
          f"{counts['pruned']} pruned, {counts['failed']} failed; {ran} run by this worker); "
          + (f"best: trial {best.number}, held-out mIoU {best.value:.4f}" if best else "no complete trial"),
          file=sys.stderr)
    print(out / "best.json" if best else out / "trials.md")
    return 0 if counts["finished"] >= args.trials or args.timeout is not None else clikit.EXIT_FAIL


def _pruner(kind: str):
    import optuna

    if kind == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)


def _trial_seed(seed: int, number: int) -> int:
    return (seed * 1_000_003 + number) % (2**31)


def _settle(study, out: Path) -> None:
    """OUT/best.pth: the best trial's weights, and no superseded best's left (search.checkpoints)."""
    from pspnet.search.checkpoints import settle

    note = settle(study, out)
    if note:
        print(f"note: {note}", file=sys.stderr)


def _run_trial(trial, trial_id: int, study, storage, base: list[str], out: Path, data,
               smallest: tuple[int, int], signals: clikit.Signals) -> int:
    """One trial: a real short pspnet.train on the in-memory split, reporting held-out mIoU to
    the pruner; returns a signal's exit code when one stopped it (the trial is queued again)."""
    import optuna

    from pspnet.search import report
    from pspnet.search import study as sy
    from pspnet.search.checkpoints import record as record_checkpoint
    from pspnet.search.space import SPACE, suggest, to_argv
    from pspnet.train import build_parser as train_parser
    from pspnet.train import train

    folder = out / "trials" / f"{trial.number:04d}"
    try:
        with sy.heartbeat(storage, trial_id):
            values = suggest(trial, SPACE)
            argv = [*base, *to_argv(values, smallest, SPACE), "--out", str(folder)]
            trial.set_user_attr("worker", sy.worker_id())
            trial.set_user_attr("command", "python -m pspnet.train " + " ".join(argv))
            targs = train_parser().parse_args(argv)
            targs.argv = argv
            targs.bar_desc = f"trial {trial.number}"
            targs.bar_leave = False

            def on_eval(step: int, metrics: dict) -> None:
                value = metrics["miou"] if metrics["miou"] is not None else 0.0
                trial.report(value, step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"held-out mIoU {value:.4f} at iteration {step}")

            try:
                code = train(targs, signals, data=data, on_eval=on_eval)
            except optuna.TrialPruned as exc:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                _drop_checkpoints(folder)
                print(f"trial {trial.number}: pruned ({exc})", file=sys.stderr)
                return 0
            except (FloatingPointError, RuntimeError, ValueError) as exc:
                trial.set_user_attr(sy.ERROR, clikit.one_line(str(exc))[:300])
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                _drop_checkpoints(folder)
                print(f"trial {trial.number}: failed ({clikit.one_line(str(exc))[:200]})", file=sys.stderr)
                return 0
            if code:
                raise clikit.Interrupted(code, signals.name or "signal")
            summary = _read_json(folder / "summary.json")
            value = max(0.0, summary.get("best_miou") or 0.0)
            trial.set_user_attr("seconds_per_epoch", summary.get("seconds_per_epoch"))
            before = report.best_trial(study)
            keep = (before is None or value > before.value) and (folder / "best.pth").is_file()
            if keep:  # the best so far keeps its weights (until beaten); the others only their records
                record_checkpoint(trial, folder / "best.pth")
            _drop_checkpoints(folder, keep_best=keep)
            study.tell(trial, value)
    except KeyboardInterrupt as exc:
        sy.requeue(study, storage, trial, getattr(exc, "name", None) or signals.name or "SIGINT")
        _drop_checkpoints(folder)  # it runs again from its start, in a folder of its own
        print(f"trial {trial.number}: interrupted; it is back in the queue and runs again when the search "
              "continues", file=sys.stderr)
        raise
    _settle(study, out)
    best = report.best_trial(study)
    print(f"trial {trial.number}: held-out mIoU {value:.4f}"
          + (f" (best so far: trial {best.number}, {best.value:.4f})" if best else ""), file=sys.stderr)
    return 0


def _drop_checkpoints(folder: Path, keep_best: bool = False) -> None:
    """A finished trial that is not the best keeps its record (history, summary), not its weights:
    the folder is this trial's own (made for it by this worker moments ago)."""
    for name in ("last.pth",) if keep_best else ("best.pth", "last.pth"):
        (folder / name).unlink(missing_ok=True)


def _read_json(path: Path) -> dict:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
