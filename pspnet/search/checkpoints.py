"""Which trial weights a search keeps: the best trial's, and nothing else.

A trial that finishes as the best so far keeps its `trials/NNNN/best.pth` (path and sha256 stored
with the trial); every other trial keeps only its record. When a later trial beats it, the older
best's weights are removed, so after every finished trial OUT/best.pth is a copy of the best
trial's weights and no superseded best is left beside it. Workers may run on other machines: a
file is removed or replaced only when its content is the one a trial of this study recorded
(proof by content, not by name); the best trial's weights may then live on the worker that ran
it, and OUT/best.pth here is not left holding an older best.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from artefact.files import atomic_path, sha256_file

CHECKPOINT = "checkpoint"  # trial user attribute: where its weights are (absolute path)
CHECKPOINT_SHA = "checkpoint_sha256"  # trial user attribute: their content


def record(trial: optuna.Trial, path: Path) -> None:
    """Keep `path` as this trial's weights (called while the trial runs)."""
    trial.set_user_attr(CHECKPOINT, str(path.resolve()))
    trial.set_user_attr(CHECKPOINT_SHA, sha256_file(path))


def _is_trials(path: Path, trial: FrozenTrial) -> bool:
    """`path` holds exactly the weights `trial` recorded."""
    want = trial.user_attrs.get(CHECKPOINT_SHA)
    try:
        return bool(want) and path.is_file() and sha256_file(path) == want
    except OSError:  # removed a moment ago by another worker
        return False


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    return max(done, key=lambda t: (t.value, -t.number)) if done else None


def settle(study: optuna.Study, out: Path) -> str | None:
    """OUT/best.pth := the best trial's weights; superseded bests' weights removed. Returns a note
    when the best trial's weights are not on this machine (or something here is not ours)."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = best_trial(study)
    for t in trials:
        if (best is not None and t.number == best.number) or CHECKPOINT not in t.user_attrs:
            continue
        path = Path(t.user_attrs[CHECKPOINT])
        if _is_trials(path, t):
            path.unlink(missing_ok=True)
    if best is None or CHECKPOINT_SHA not in best.user_attrs:
        return None
    target = out / "best.pth"
    want = best.user_attrs[CHECKPOINT_SHA]
    have = sha256_file(target) if target.is_file() else None
    if have == want:
        return None
    ours = {t.user_attrs.get(CHECKPOINT_SHA) for t in trials} - {None}
    if have is not None and have not in ours:
        return f"{target} is not a checkpoint of this study; it is left as it is (best: trial {best.number})"
    source = Path(best.user_attrs[CHECKPOINT])
    if _is_trials(source, best):
        try:
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
            return None
        except FileNotFoundError:  # another worker's newer view removed it: its settle copies the best
            return None
    if have is not None:
        target.unlink(missing_ok=True)  # an older best of this study: never left in the best's place
    return (f"the best trial's weights (trial {best.number}) are on {best.user_attrs.get('worker', '?')} "
            f"at {source}")
