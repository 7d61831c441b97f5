"""The signals a terminal or a service manager sends to stop a command: INT (Ctrl-C), TERM
(systemd, docker, kill) and HUP (a closed terminal, a supervisor's hang-up). All three end the
command the same way, with exit code 128+N, and none of them may lose an output or leave a
temp file behind.

While a command starts up or builds, the first signal raises `Interrupted` in the main thread,
so the work unwinds through its `finally` blocks (temp folders removed, nothing half-renamed).
While a pipeline runs (`graceful()`), the first signal only sets `stop`: the frames in flight
finish and every output is closed whole. A repeated signal never interrupts the clean-up that
the first one started - it is acknowledged; a third one aborts at once, after the abort hooks
have removed the temp files (outputs that existed before the run are never touched).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from clikit.exits import signal_exit_code

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived while the command could simply unwind."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.code = signal_exit_code(signum)
        super().__init__(signal.Signals(signum).name)


class StopSignals:
    def __init__(self, prog: str) -> None:
        self.prog = prog
        self.stop = threading.Event()
        self.signum: int | None = None
        self.count = 0
        self._graceful = False
        self._old: dict[int, Any] = {}
        self._abort_hooks: list[Callable[[], None]] = []

    @property
    def code(self) -> int | None:
        return signal_exit_code(self.signum) if self.signum is not None else None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def install(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def __enter__(self) -> StopSignals:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def on_abort(self, hook: Callable[[], None]) -> None:
        """Run `hook` (e.g. remove a temp file) if a third signal aborts the command."""
        self._abort_hooks.append(hook)

    @contextlib.contextmanager
    def graceful(self, message: str = "finishing the frames in flight and closing outputs") -> Iterator[None]:
        """Within the block a first signal sets `stop` instead of raising."""
        self._graceful, self._graceful_message = True, message
        try:
            yield
        finally:
            self._graceful = False

    def check(self) -> None:
        """Raise Interrupted if a signal arrived (for code that polls rather than being interrupted)."""
        if self.signum is not None:
            raise Interrupted(self.signum)

    def _say(self, text: str) -> None:
        print(f"{self.prog}: {text}", file=sys.stderr, flush=True)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.count += 1
        name = signal.Signals(signum).name
        if self.count == 1:
            self.signum = signum
            self.stop.set()
            if not self._graceful:
                raise Interrupted(signum)
            self._say(f"{name}: {self._graceful_message} (a third signal aborts)")
            return
        if self.count == 2:
            self._say(f"{name} again: already stopping, outputs are being closed (once more to abort)")
            return
        self._say(f"{name}: aborting; removing temp files, outputs of this run are not finished")
        for hook in self._abort_hooks:
            with contextlib.suppress(Exception):
                hook()
        os._exit(self.code or signal_exit_code(signum))


def stoppable(prog: str, message: str = "interrupted") -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Decorate a command's main(): INT, TERM and HUP unwind it (its `finally` blocks run) and
    end it with one line and 128+N, from the very first line of main on."""

    def wrap(main: Callable[..., int]) -> Callable[..., int]:
        def run(*args: Any, **kwargs: Any) -> int:
            with StopSignals(prog):
                try:
                    return main(*args, **kwargs)
                except Interrupted as exc:
                    print(f"{prog}: {message} by {exc}", file=sys.stderr, flush=True)
                    return exc.code

        run.__doc__, run.__name__, run.__wrapped__ = main.__doc__, main.__name__, main  # type: ignore[attr-defined]
        return run

    return wrap
