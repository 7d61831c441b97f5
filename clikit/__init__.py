"""The one CLI kit every command uses: argument types, exit codes, logging, signals, `fail()`.

Why one kit: `python -m build_engine`, `pspnet-rt`, `python -m benchmarks.*` and
`python -m pspnet.train` must read the same way to a user (HxW sizes, one error line that
names the thing and the fix, the same exit codes) and to a script (0 ok, 1 runtime failure,
2 usage, 130 SIGINT, 143 SIGTERM, 129 SIGHUP). Torch-free and dependency-free, so the lean
runtime imports it.

    def main(argv=None) -> int:
        return clikit.run("python -m benchmarks.latency", build_parser(), body, argv,
                          usage=(BenchmarkError,))
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
EXIT_SIGHUP, EXIT_SIGINT, EXIT_SIGTERM = 129, 130, 143
SIGNAL_EXIT = {signal.SIGINT: EXIT_SIGINT, signal.SIGTERM: EXIT_SIGTERM}
if hasattr(signal, "SIGHUP"):  # POSIX
    SIGNAL_EXIT[signal.SIGHUP] = EXIT_SIGHUP
EXIT_CODES_HELP = ("exit codes: 0 ok, 1 runtime failure, 2 bad input, 130 Ctrl-C, 143 SIGTERM, "
                   "129 SIGHUP")


class UsageError(ValueError):
    """Bad input from the user: exit code 2 and one line that names the thing and the fix."""


class Reported(Exception):
    """A failure already reported on stderr (by a child command, say): exit `code`, print nothing."""

    def __init__(self, code: int = EXIT_FAIL) -> None:
        super().__init__(f"exit {code}")
        self.code = code


class Interrupted(KeyboardInterrupt):
    """A signal stopped the command; `code` is its exit code (130, 143 or 129)."""

    def __init__(self, code: int = EXIT_SIGINT, name: str = "SIGINT") -> None:
        super().__init__(name)
        self.code = code
        self.name = name


# ------------------------------------------------------------------------- argument types
def size_type(order: str = "HxW", min_side: int = 1) -> Callable[[str], tuple[int, int]]:
    """argparse type for '480x960' (or '480×960'): a pair of ints in `order`, each >= min_side."""

    def parse(text: str) -> tuple[int, int]:
        try:
            a, b = (int(v) for v in text.lower().replace("×", "x").split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {order} such as 480x960, got {text!r}") from None
        if a < min_side or b < min_side:
            what = "positive" if min_side == 1 else f"at least {min_side} pixels"
            raise argparse.ArgumentTypeError(f"{text}: both sides must be {what}")
        return a, b

    return parse


hw_size = size_type("HxW")


def int_at_least(low: int) -> Callable[[str], int]:
    """argparse type for a whole number >= low."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            wanted = "a positive number" if low == 1 else f"{low} or more"
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {value}")
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def float_in(low: float | None = None, high: float | None = None,
             what: str = "a number") -> Callable[[str], float]:
    """argparse type for a float within [low, high] (either bound may be open)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"within {low}..{high}" if low is not None and high is not None else \
                f">= {low}" if low is not None else f"<= {high}"
            raise argparse.ArgumentTypeError(f"expected {what} {bounds}, got {text}")
        return value

    return parse


def csv_list(choices: Sequence[str]) -> Callable[[str], list[str]]:
    """argparse type for 'a,b' where every item is one of `choices`."""

    def parse(text: str) -> list[str]:
        items = [t.strip().lower() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(choices)} (comma-separated)")
        return items

    return parse


def parser(prog: str, doc: str | None, examples: str = "") -> argparse.ArgumentParser:
    """An ArgumentParser with the house layout: description, examples and exit codes below."""
    return argparse.ArgumentParser(prog=prog, description=doc, epilog=examples or None,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0, help="-v progress, -vv debug")


# -------------------------------------------------------------------------------- output
def fail(prog: str, message: str, code: int) -> int:
    """Print `prog: message` on stderr and return `code` (so `return fail(...)` ends a main)."""
    print(f"{prog}: {message}", file=sys.stderr, flush=True)
    return code


def one_line(text: str) -> str:
    """A library's multi-line error text folded into one line."""
    return " ".join(str(text).split())


def message_of(exc: BaseException) -> str:
    """What an exception says, without KeyError's quotes."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc)


def setup_logging(verbose: int, prog: str, quiet: Sequence[str] = ()) -> None:
    """Quiet by default (warnings), -v info, -vv debug with thread and logger names.

    `quiet` loggers stay at ERROR unless -vv (e.g. a library's chatter the result files
    already state once).
    """
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    fmt = f"{prog}: %(message)s" if level > logging.DEBUG else \
        "%(asctime)s %(threadName)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr, force=True)
    for name in quiet:
        logging.getLogger(name).setLevel(logging.ERROR if verbose < 2 else logging.NOTSET)


# ------------------------------------------------------------------------------- signals
class Signals:
    """SIGINT -> 130, SIGTERM -> 143, SIGHUP -> 129, handled the same way by every command.

    By default a signal raises `Interrupted` in the main thread, so `finally` blocks and
    atomic writes clean up (nothing half-written stays). While `graceful` is set (a run whose
    outputs must be finalised, e.g. the runtime's pipeline) the first signal only sets `stop`
    and prints what happens next; a second one exits at once.
    """

    def __init__(self, prog: str,
                 finishing: str = "finishing the frames in flight and closing outputs") -> None:
        self.prog = prog
        self.finishing = finishing  # what a graceful stop does, said when it starts
        self.stop = threading.Event()
        self.code: int | None = None
        self.graceful = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Signals:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in SIGNAL_EXIT:
            self._old[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        code, name = SIGNAL_EXIT[signum], signal.Signals(signum).name
        if self.code is not None:
            _say(f"{self.prog}: {name} again: exiting without finishing outputs")
            os._exit(code)
        self.code = code
        self.stop.set()
        if not self.graceful:
            raise Interrupted(code, name)
        _say(f"{self.prog}: {name}: {self.finishing} (again to abort)")


def _say(line: str) -> None:
    """A line on stderr from a signal handler: after SIGHUP the terminal may be gone, and a
    failed write there must not turn a clean stop into a crash."""
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ the runner
def run(prog: str, arg_parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace], int],
        argv: Sequence[str] | None = None, *, usage: tuple[type[BaseException], ...] = (),
        failure: tuple[type[BaseException], ...] = (), quiet: Sequence[str] = (),
        signals: Signals | None = None, interrupted: str = "interrupted") -> int:
    """Parse, set up logging and signals, run `body(args)`, and map what it raises to one line
    and an exit code: `usage` (and UsageError) -> 2, `failure` -> 1, a signal -> its code, any
    other exception -> 1 (the traceback with -v). argparse itself exits 2 on bad flags."""
    args = arg_parser.parse_args(argv)
    verbose = getattr(args, "verbose", 0) or 0
    setup_logging(verbose, prog, quiet)
    signals = signals or Signals(prog)
    with signals:
        try:
            return body(args)
        except KeyboardInterrupt as exc:
            code = exc.code if isinstance(exc, Interrupted) else signals.code or EXIT_SIGINT
            return fail(prog, interrupted, code)
        except Reported as exc:
            return exc.code
        except (UsageError, *usage) as exc:
            return fail(prog, message_of(exc), EXIT_USAGE)
        except failure as exc:
            return fail(prog, message_of(exc), EXIT_FAIL)
        except Exception as exc:  # a runtime failure: one line, the traceback with -v
            if verbose:
                traceback.print_exc()
            return fail(prog, f"{type(exc).__name__}: {one_line(message_of(exc))}", EXIT_FAIL)
