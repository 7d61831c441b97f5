"""What a search leaves behind: trials.json / trials.md, best.json, history.png, importances.png.

Rewritten (atomically) after every finished trial, so a search stopped at any point has
results that match the study as it stands.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from artefact.files import atomic_path, atomic_write_json
from pspnet.search.checkpoints import CHECKPOINT, best_trial
from pspnet.search.space import SPACE
from pspnet.search.study import ERROR, INTERRUPTED


def trial_record(t: FrozenTrial, best: FrozenTrial | None = None) -> dict[str, Any]:
    """One row of trials.json; only the best trial has weights (`checkpoint`), the others' are gone."""
    retry_of = t.system_attrs.get("failed_trial")
    is_best = best is not None and t.number == best.number
    duration = (t.datetime_complete - t.datetime_start).total_seconds() \
        if t.datetime_complete and t.datetime_start else None
    return {"number": t.number, "state": t.state.name.lower(), "value": t.value,
            "params": t.params, "steps": {str(k): v for k, v in sorted(t.intermediate_values.items())},
            "seconds": round(duration, 1) if duration is not None else None,
            "retry_of": retry_of, "interrupted": t.user_attrs.get(INTERRUPTED),
            "error": t.user_attrs.get(ERROR), "worker": t.user_attrs.get("worker"),
            "command": t.user_attrs.get("command"),
            "checkpoint": t.user_attrs.get(CHECKPOINT) if is_best else None}


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown(records: list[dict], settings: dict, counts: dict, best: FrozenTrial | None) -> str:
    names = [p.name for p in SPACE]
    lines = [f"# Hyper-parameter search `{settings.get('study', '')}`", "",
             f"- data: `{settings.get('data')}`, hold-out {settings.get('val_split')} "
             f"(seed {settings.get('split_seed')}); model `{settings.get('model')}`"
             f"{', from `' + str(settings.get('init')) + '`' if settings.get('init') else ''}"
             f"{', recipe `' + settings['recipe'] + '`' if settings.get('recipe') else ''}",
             f"- each trial: {settings.get('iters')} iterations, held-out mIoU every "
             f"{settings.get('eval_every')} (pruner: {settings.get('pruner')}); sampler "
             f"{settings.get('sampler')} (seed {settings.get('seed')})",
             f"- trials: {counts.get('finished', 0)} of {settings.get('trials')} finished "
             f"({counts.get('complete', 0)} complete, {counts.get('pruned', 0)} pruned, "
             f"{counts.get('failed', 0)} failed), {counts.get('requeued', 0)} interrupted and run again, "
             f"{counts.get('running', 0)} running, {counts.get('waiting', 0)} waiting",
             (f"- best: trial {best.number}, held-out mIoU {best.value:.4f}" if best else "- best: none yet"),
             "", "| trial | state | held-out mIoU | " + " | ".join(names) + " | s | worker |",
             "|" + "---|" * (len(names) + 5)]
    for r in records:
        state = r["state"] + (f" ({r['interrupted']}, run again)" if r["interrupted"] else "") \
            + (f" (retry of {r['retry_of']})" if r["retry_of"] is not None else "")
        cells = [str(r["number"]), state, _fmt(r["value"]), *[_fmt(r["params"].get(n)) for n in names],
                 _fmt(r["seconds"]), r["worker"] or ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plots(study: optuna.Study, out: Path) -> list[str]:
    """history.png and importances.png through Optuna's matplotlib plots; notes for what could
    not be drawn yet (importances need two complete trials that differ)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    notes = []
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the matplotlib plots are 'experimental' in Optuna
        for name, draw, need in (("history.png", ovm.plot_optimization_history, 1),
                                 ("importances.png", ovm.plot_param_importances, 2)):
            if len(complete) < need:
                notes.append(f"{name}: needs {need} complete trial(s)")
                continue
            try:
                ax = draw(study)
            except (ValueError, RuntimeError) as exc:
                notes.append(f"{name}: {exc}")
                continue
            fig = ax.figure if hasattr(ax, "figure") else plt.gcf()
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            with atomic_path(out / name) as tmp:
                fig.savefig(tmp, dpi=100, format="png")
            plt.close(fig)
    return notes


def write_reports(study: optuna.Study, out: Path, settings: dict, counts: dict,
                  draw: bool = True) -> FrozenTrial | None:
    """The tables (and with `draw` the plots, which take seconds: a search draws them as a worker
    finishes, the tables after every trial)."""
    best = best_trial(study)
    records = [trial_record(t, best) for t in study.get_trials(deepcopy=False)]
    atomic_write_json(out / "trials.json", {"study": settings.get("study"), "settings": settings,
                                            "counts": counts, "trials": records})
    with atomic_path(out / "trials.md") as tmp:
        Path(tmp).write_text(markdown(records, settings, counts, best), encoding="utf-8")
    if best is not None:
        atomic_write_json(out / "best.json", {"trial": best.number, "value": best.value,
                                              "metric": settings.get("metric"), "params": best.params,
                                              "command": best.user_attrs.get("command"),
                                              "checkpoint": best.user_attrs.get(CHECKPOINT),
                                              "worker": best.user_attrs.get("worker")})
    if draw:
        notes = plots(study, out)
        (out / "plots.txt").write_text("\n".join(notes) + ("\n" if notes else ""), encoding="utf-8")
    return best


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
