"""A study of exactly N trials that any number of workers share, and that survives kills.

How (Optuna's own mechanisms throughout):
- The process that creates the study queues N trials (WAITING) and only then records the
  study's settings; Optuna's unique study name makes exactly one process the creator. Others
  wait for the settings, and refuse a study made with different ones (never overwritten).
- A worker takes a queued trial by moving it WAITING -> RUNNING, which the storage does under
  a row lock and refuses if another worker got there first (the same step Study.ask uses to pop
  a queued trial, without ask's fallback of creating a new one, which would overshoot N).
- While its trial runs, the worker records Optuna heartbeats, the first one before the take
  (see `claim`), so a trial is never RUNNING without one. A worker killed outright stops
  beating; after the grace period any worker's `fail_stale_trials` marks that trial failed and
  Optuna's RetryHeartbeatStaleTrialCallback queues it again with the same parameters.
- A worker stopped by a signal does the same at once: the trial goes back into the queue (same
  parameters) and is marked failed ("interrupted").
So a study always ends with N finished trials (complete, pruned, or failed by an error of their
own); a killed run loses at most the trial it was running, which runs again from its start.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState

SETTINGS_KEY = "pspnet_search"  # study user attribute: the settings that define the study
REQUESTED_KEY = "pspnet_search_trials"  # study user attribute: N, the trials to finish
INTERRUPTED = "interrupted"  # trial user attribute: why a failed trial was run again
ERROR = "error"  # trial user attribute: a trial that failed by itself (counts as finished)
IDENTITY = ("data", "val_split", "split_seed", "model", "init", "init_sha256", "recipe", "upsample",
            "iters", "eval_every", "space", "metric", "direction", "sampler", "seed", "pruner")


class StudyMismatch(ValueError):
    """The named study exists with other settings (exit 2; nothing is changed)."""


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def open_study(storage: RDBStorage, name: str, settings: dict[str, Any], trials: int,
               sampler: optuna.samplers.BaseSampler, pruner: optuna.pruners.BasePruner,
               wait_s: float = 60.0) -> tuple[optuna.Study, bool]:
    """(study, created). A new study gets its N queued trials, then its settings; an existing one
    must have the same settings, and may be asked for more trials (never fewer)."""
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize",
                                    sampler=sampler, pruner=pruner)
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner)
        created = False
    if created:
        for _ in range(trials):
            study.enqueue_trial({}, skip_if_exists=False)
        study.set_user_attr(REQUESTED_KEY, trials)
        study.set_user_attr(SETTINGS_KEY, settings)  # last: its presence says the queue is ready
        return study, True
    stored = _wait_for_settings(study, name, wait_s)
    changed = [k for k in IDENTITY if stored.get(k) != settings.get(k)]
    if changed:
        shown = "; ".join(f"{k}: {_short(stored.get(k))} (now {_short(settings.get(k))})"
                          for k in changed[:3])
        raise StudyMismatch(f"study {name!r} already exists with other settings ({shown}); it is left "
                            "as it is: continue it with its own settings, or give another --study-name")
    requested = int(study.user_attrs.get(REQUESTED_KEY, 0))
    if trials < requested:
        raise StudyMismatch(f"study {name!r} was asked for {requested} trials; --trials {trials} cannot "
                            f"shrink it (give --trials {requested} or more to continue it)")
    if trials > requested:
        for _ in range(trials - requested):
            study.enqueue_trial({}, skip_if_exists=False)
        study.set_user_attr(REQUESTED_KEY, trials)
    return study, False


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _wait_for_settings(study: optuna.Study, name: str, wait_s: float) -> dict:
    """Another worker created the study a moment ago and may still be queueing its trials."""
    deadline = time.monotonic() + wait_s
    while True:
        settings = study.user_attrs.get(SETTINGS_KEY)
        if settings is not None:
            return settings
        if time.monotonic() > deadline:
            raise StudyMismatch(f"study {name!r} exists but was not made by pspnet.search (no settings "
                                f"after {wait_s:.0f} s); give another --study-name")
        time.sleep(0.5)


def claim(study: optuna.Study, storage: RDBStorage, study_id: int,
          sampler_for: Callable[[int], optuna.samplers.BaseSampler]) -> tuple[optuna.Trial, int] | None:
    """Take one queued trial (WAITING -> RUNNING, refused by the storage if another worker took
    it first): (trial, trial id), or None when the queue is empty. Never creates a trial.
    `sampler_for(number)` gives the sampler that draws this trial's parameters, so a trial's
    draw depends on its number and the seed, not on which worker took it."""
    # through the study's own storage object: Optuna wraps an RDBStorage in a cache that must
    # see every trial this process touches (the raw storage would bypass it)
    storage = study._storage
    for frozen in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, frozen.number)
        # Beat BEFORE taking it: Optuna presumes a RUNNING trial dead only once its last heartbeat
        # is older than the grace period, and never presumes one with no heartbeat at all, so a
        # kill between the take and a first beat would leave the trial running for ever. With
        # the beat first there is no such moment. Beating a WAITING trial is harmless (only
        # RUNNING trials are checked), and the fresh beat also stands in for any stale one an
        # earlier claimer, killed before its take, left on this queued trial.
        storage.record_heartbeat(trial_id)
        try:
            if not storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        storage.record_heartbeat(trial_id)  # the take's own beat: the grace period starts now
        study.sampler = sampler_for(frozen.number)
        # optuna.Trial is what Study.ask returns for a popped trial; built here the same way
        return optuna.trial.Trial(study, trial_id), trial_id
    return None


@contextmanager
def heartbeat(storage: RDBStorage, trial_id: int) -> Iterator[None]:
    """Record Optuna heartbeats for a running trial from a daemon thread."""
    stop = threading.Event()
    interval = storage.get_heartbeat_interval() or 10

    def beat() -> None:
        while not stop.wait(interval):
            with contextlib.suppress(Exception):  # a database hiccup: the next beat tries again
                storage.record_heartbeat(trial_id)

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval + 1)


def requeue(study: optuna.Study, storage: RDBStorage, trial: optuna.Trial, reason: str) -> None:
    """A trial this worker cannot finish (a signal): queued again with the same parameters (as
    Optuna's stale-trial callback does), then marked failed with the reason."""
    storage = study._storage  # the study's cached view (see claim)
    study_id = storage.get_study_id_from_name(study.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
    RetryHeartbeatStaleTrialCallback()(study, storage.get_trial(trial_id))
    storage.set_trial_user_attr(trial_id, INTERRUPTED, reason)
    storage.set_trial_state_values(trial_id, state=TrialState.FAIL)


def recover_stale(study: optuna.Study) -> None:
    """Trials of workers that stopped beating: failed and queued again (Optuna's mechanism)."""
    fail_stale_trials(study)


def tally(study: optuna.Study) -> dict[str, int]:
    """finished (complete + pruned + failed by an error of their own), requeued (failed because a
    worker stopped; each queued again), running, waiting."""
    out = {"complete": 0, "pruned": 0, "failed": 0, "requeued": 0, "running": 0, "waiting": 0}
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.COMPLETE:
            out["complete"] += 1
        elif t.state == TrialState.PRUNED:
            out["pruned"] += 1
        elif t.state == TrialState.FAIL:
            out["failed" if ERROR in t.user_attrs else "requeued"] += 1
        elif t.state == TrialState.RUNNING:
            out["running"] += 1
        elif t.state == TrialState.WAITING:
            out["waiting"] += 1
    out["finished"] = out["complete"] + out["pruned"] + out["failed"]
    return out
