"""How a run ends: every output closed (and so verified) before the summary vouches for it, the
summary JSON written, and what failed said in one line (runtime.run, for one stream or several).

A sink closed after a failure is told so (`close(failed=True)`): it still finishes its file
whole, but never over one that was there before the run (runtime.sinks).
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterable
from typing import Any


def stage_errors(errors: list[tuple[str, BaseException]], verbose: int = 0) -> list[str]:
    """One line per pipeline stage that failed (its traceback too with -v)."""
    from runtime.errors import WriteError

    lines = []
    for stage, exc in errors:
        if isinstance(exc, WriteError):
            lines.append(str(exc))
            continue
        lines.append(f"{stage} failed: {type(exc).__name__}: {' '.join(str(exc).split())}")
        if verbose:
            traceback.print_exception(exc)
    return lines


def close_outputs(sinks: Iterable[Any], opened: list[Any], errors: list[str]) -> None:
    """Close each sink (as a failed run's when `errors` already holds a failure); one that is not
    whole adds its line to `errors`."""
    from runtime.errors import WriteError

    failed = bool(errors)
    for sink in sinks:
        if sink in opened:
            opened.remove(sink)
        try:
            _close(sink, failed)
        except WriteError as exc:
            errors.append(str(exc))


def close_all(things: Iterable[Any], prog: str) -> None:
    """What is still open when a run did not get to its end (sources, backends, servers, sinks):
    closed in turn; a failure to close is said, never raised over the run's own result."""
    for thing in things:
        try:
            _close(thing, failed=True)
        except Exception as exc:
            print(f"{prog}: while closing {type(thing).__name__}: {exc}", file=sys.stderr)


def write_summary(path: str, data: dict[str, Any], errors: list[str]) -> None:
    """--summary-json, atomically; a failure to write it is one more error line."""
    from artefact.files import atomic_write_json

    try:
        atomic_write_json(path, {**data, "errors": list(errors)})
    except OSError as exc:
        errors.append(f"cannot write --summary-json {path}: {exc.strerror or exc}")


def _close(thing: Any, failed: bool) -> None:
    from runtime.sinks import Sink

    if isinstance(thing, Sink):
        thing.close(failed=failed)
    else:
        thing.close()
