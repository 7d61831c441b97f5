"""How a run ends: every output closed (and so verified) before the summary vouches for it, the
summary JSON written, and what failed said in one line (runtime.run, for one stream or several).

A sink closed after a failure is told so (`close(failed=True)`): it still finishes its file
whole, but never over one that was there before the run (runtime.sinks).
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterable
from typing import Any

from runtime.naming import redact_source


def stage_errors(errors: list[tuple[str, BaseException]], verbose: int = 0) -> list[str]:
    """One line per pipeline stage that failed (its traceback too with -v)."""
    from runtime.errors import WriteError

    lines = []
    for stage, exc in errors:
        if isinstance(exc, WriteError):
            lines.append(redact_source(str(exc)))
            continue
        lines.append(redact_source(f"{stage} failed: {type(exc).__name__}: {' '.join(str(exc).split())}"))
        if verbose:
            print(redact_source("".join(traceback.format_exception(exc))), file=sys.stderr, end="")
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
    """--summary-json: a file atomically, a stream (/dev/stdout, a FIFO) in place; a failure to
    write it is one more error line. Written before the summary is printed, so a stdout that
    its reader closed (`| head`) cannot lose it."""
    import json

    from runtime.errors import UsageError, WriteError
    from runtime.output_target import write_whole

    text = json.dumps({**data, "errors": [redact_source(e) for e in errors]}, indent=2) + "\n"
    try:
        write_whole(path, text.encode(), "--summary-json")
    except OSError as exc:
        errors.append(f"cannot write --summary-json {path}: {exc.strerror or exc}")
    except (WriteError, UsageError) as exc:
        errors.append(str(exc))


def show_summary(text: str) -> None:
    """The human summary on stdout (on stderr when an output streams to stdout). A stdout its
    reader closed (`pspnet-rt ... | head -3`) loses the summary's text, nothing else: no
    BrokenPipeError, and the run's exit code stands."""
    from runtime.output_target import summary_file

    out = summary_file()
    try:
        print(text, file=out, flush=True)
    except (BrokenPipeError, ValueError, OSError):
        # Python would report the same broken pipe again when it flushes stdout at exit
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, out.fileno())
            os.close(devnull)


def _close(thing: Any, failed: bool) -> None:
    from runtime.sinks import Sink

    if isinstance(thing, Sink):
        thing.close(failed=failed)
    else:
        thing.close()
