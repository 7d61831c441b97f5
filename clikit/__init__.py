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
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any, NoReturn

from clikit import types
from clikit.redaction import redact_source
from clikit.types import (  # noqa: F401 (the kit's path, text and list types, for every command)
    OptionType,
    csv_numbers,
    input_file,
    input_path,
    json_object,
    non_empty,
    option_type,
    output_dir,
    output_file,
)

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
# Each is a clikit.types.OptionType: it refuses what it must (nan, 0 where a rate is meant, an
# empty path ...) before any work, and says what it accepts, so the fault suite
# (tests/faults) walks every option of every command with the values it must refuse.
def size_type(order: str = "HxW", min_side: int = 1, max_side: int | None = None) -> OptionType:
    """argparse type for '480x960' (or '480×960'): a pair of ints in `order`, each >= min_side
    (and <= max_side where given)."""
    return types.size(order, min_side, max_side)


hw_size = size_type("HxW")


def int_at_least(low: int) -> OptionType:
    """argparse type for a whole number >= low."""
    return types.integer(minimum=low)


def int_in(low: int, high: int) -> OptionType:
    """argparse type for a whole number within [low, high]."""
    return types.integer(low, high)


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def float_in(low: float | None = None, high: float | None = None, what: str = "a number",
             above: float | None = None) -> OptionType:
    """argparse type for a finite float within [low, high]; `above` is an open lower bound
    (a rate or a timeout: 0 is not one)."""
    return types.number(greater_than=above, at_least=low, at_most=high, what=what)


def csv_list(choices: Sequence[str]) -> OptionType:
    """argparse type for 'a,b' where every item is one of `choices`."""
    return types.csv_choices(choices)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line (`prog: error: argument --x: why (see prog --help)`)
    and exit 2, not a usage block the message hides in."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {_scrub(one_line(message))} (see {self.prog} --help)\n")


def parser(prog: str, doc: str | None, examples: str = "") -> argparse.ArgumentParser:
    """An ArgumentParser with the house layout: description, examples and exit codes below."""
    return ArgumentParser(prog=prog, description=doc, epilog=examples or None,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def add_verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0, help="-v progress, -vv debug")


# -------------------------------------------------------------------------------- output

# What every line the kit prints goes through (error lines, log records, tracebacks with -v):
# the one redaction function by default, so no command can print a password from a URL it was
# given (a source, a Triton server, a study database) by forgetting to ask for it.
_scrub: Callable[[str], str] = redact_source


def fail(prog: str, message: str, code: int) -> int:
    """Print `prog: message` on stderr and return `code` (so `return fail(...)` ends a main)."""
    print(f"{prog}: {_scrub(message)}", file=sys.stderr, flush=True)
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
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ScrubbingFormatter(fmt))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for name in quiet:
        logging.getLogger(name).setLevel(logging.ERROR if verbose < 2 else logging.NOTSET)


class _ScrubbingFormatter(logging.Formatter):
    """A log line (its traceback included) as the command's scrub function leaves it: the message
    and the traceback are scrubbed, not the `prog:` prefix (which would read as a URL's scheme)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        saved = record.message
        record.message = _scrub(record.message)
        try:
            return super().formatMessage(record)
        finally:
            record.message = saved

    def formatException(self, ei: Any) -> str:
        return _scrub(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _scrub(super().formatStack(stack_info))


# ------------------------------------------------------------------------------- signals
class Signals:
    """SIGINT -> 130, SIGTERM -> 143, SIGHUP -> 129, handled the same way by every command (a
    service manager's stop or hang-up must not lose an output).

    By default the first signal raises `Interrupted` in the main thread, so `finally` blocks and
    atomic writes clean up (nothing half-written stays). While `graceful` is set (a run whose
    outputs must be finalised, e.g. the runtime's pipeline and its closing) the first signal only
    sets `stop` and prints what happens next. A second signal never cuts that clean-up short: it
    is acknowledged. A third aborts at once, after the `on_abort` hooks removed this run's temp
    files (what existed before the run is never touched). Once the clean-up is done, repeats
    are ignored until the process exits with the first signal's code.
    """

    def __init__(self, prog: str,
                 finishing: str = "finishing the frames in flight and closing outputs") -> None:
        self.prog = prog
        self.finishing = finishing  # what a graceful stop does, said when it starts
        self.stop = threading.Event()
        self.code: int | None = None
        self.name = ""
        self.graceful = False
        self.count = 0
        self._old: dict[int, Any] = {}
        self._abort_hooks: list[Callable[[], None]] = []
        self.deferring = 0  # > 0 inside signals_deferred(): a signal is noted, raised at its end
        self.pending = False

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
        global _ACTIVE
        _ACTIVE = self

    def restore(self) -> None:
        global _ACTIVE
        if _ACTIVE is self:
            _ACTIVE = None
        if self.code is not None:
            # the command is stopping on a signal and its clean-up is done. A repeat that lands
            # from here to the exit must not meet the default action (killed: -N, not 128+N).
            # Python's own finalisation puts SIG_DFL back over any Python handler, but leaves
            # SIG_IGN alone, so ignoring is the one state that lasts until the process is gone.
            for sig in self._old:
                signal.signal(sig, signal.SIG_IGN)
            return
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def on_abort(self, hook: Callable[[], None]) -> None:
        """Run `hook` (remove a temp file, kill an encoder) if a third signal aborts the command."""
        self._abort_hooks.append(hook)

    def _say(self, text: str) -> None:
        _say(f"{self.prog}: {text}")

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        code, name = SIGNAL_EXIT[signum], signal.Signals(signum).name
        self.count += 1
        if self.count == 1:
            self.code, self.name = code, name
            self.stop.set()
            if self.deferring:  # native code may be calling back into Python: raise at the block's end
                self.pending = True
                return
            if not self.graceful:
                raise Interrupted(code, name)
            self._say(f"{name}: {self.finishing} (a third signal aborts)")
        elif self.count == 2:
            self._say(f"{name} again: already stopping, outputs are being closed (once more to abort)")
        else:
            self._say(f"{name}: aborting; this run's temp files are removed, its outputs not finished")
            for hook in self._abort_hooks:
                with contextlib.suppress(Exception):
                    hook()
            os._exit(self.code or code)


_ACTIVE: Signals | None = None  # the running command's handlers (main thread only)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """A block where a signal is noted, not raised, until the block ends.

    Why: the handlers raise Interrupted wherever Python happens to be, and inside code that a
    C++ extension called back into (importing torch, tracing an export) pybind11 turns that
    exception into std::terminate: the process aborts and no clean-up runs (a build's work folder
    stayed behind). Around such calls the stop waits for the block's end, then raises as usual.
    Without a command's handlers (library use, other threads) it changes nothing."""
    active = _ACTIVE
    if active is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    active.deferring += 1
    try:
        yield
    finally:
        active.deferring -= 1
    if not active.deferring and active.pending and not active.graceful:
        active.pending = False
        raise Interrupted(active.code or EXIT_SIGINT, active.name or "SIGINT")


def _say(line: str) -> None:
    """A line on stderr from a signal handler: after SIGHUP the terminal may be gone, and a
    failed write there must not turn a clean stop into a crash."""
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ the runner
def run(prog: str, arg_parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace], int],
        argv: Sequence[str] | None = None, *, usage: tuple[type[BaseException], ...] = (),
        failure: tuple[type[BaseException], ...] = (), quiet: Sequence[str] = (),
        signals: Signals | None = None, interrupted: str = "interrupted",
        scrub: Callable[[str], str] | None = None) -> int:
    """Parse, set up logging and signals, run `body(args)`, and map what it raises to one line
    and an exit code: `usage` (and UsageError) -> 2, `failure` -> 1, a signal -> its code, any
    other exception -> 1 (the traceback with -v). argparse itself exits 2 on bad flags.
    `scrub` rewrites every line the kit prints; the default is the project's redaction of URL
    secrets (clikit.redaction.redact_source)."""
    global _scrub
    _scrub = scrub or redact_source
    args = arg_parser.parse_args(argv)
    verbose = getattr(args, "verbose", 0) or 0
    setup_logging(verbose, prog, quiet)
    signals = signals or Signals(prog)
    with signals:
        try:
            return body(args)
        except KeyboardInterrupt as exc:
            code = exc.code if isinstance(exc, Interrupted) else signals.code or EXIT_SIGINT
            name = exc.name if isinstance(exc, Interrupted) else signals.name or "SIGINT"
            return fail(prog, interrupted.replace("interrupted", f"interrupted by {name}", 1), code)
        except Reported as exc:
            return exc.code
        except (UsageError, *usage) as exc:
            return fail(prog, message_of(exc), EXIT_USAGE)
        except failure as exc:
            return fail(prog, message_of(exc), EXIT_FAIL)
        except Exception as exc:  # a runtime failure: one line, the traceback with -v
            if verbose:
                print(_scrub(traceback.format_exc()), file=sys.stderr, end="", flush=True)
            return fail(prog, f"{type(exc).__name__}: {one_line(message_of(exc))}", EXIT_FAIL)
