"""The one door from the runtime to the builder: `pspnet-rt` without --engine asks here.

The build runs in a child process, `python -m build_engine --model M --precision P --backend B
[--input-size HxW]`, whose contract is the builder's public CLI: the manifest's path as the
last line on stdout, progress and warnings on stderr (passed straight to ours, so progress
bars show), and the house exit codes (0 ok, 1 build failed, 2 bad input, 130/143/129 signal).
Why a process and not an import: the runtime never imports torch or build_engine, so the
edge install stays lean and a run's memory is the runtime's own, not torch's left behind.

Signals that reach the runtime while the child builds are forwarded to it (the child runs in
its own session, so a terminal's Ctrl-C reaches it once, through us) and the build cleans up
before we return the signal's exit code. Builds are cached by the builder: the second run
returns the same path at once.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from clikit import EXIT_FAIL, EXIT_OK, EXIT_USAGE, SIGNAL_EXIT, Interrupted, Reported, UsageError

log = logging.getLogger(__name__)

EXPORT_MODULES = ("build_engine", "torch", "onnx")  # what a build needs beyond the runtime


class NoBuilder(UsageError):
    """The export extra is not installed here, so no default artefact can be built."""

    def __init__(self, missing: str) -> None:
        super().__init__(f"building the default artefact needs the export extra "
                         f"(`pip install 'pspnet-rt[export]'`: {missing}); or pass --engine ARTEFACT.json")


class BuildFailed(RuntimeError):
    """The builder died without saying why (killed, or no manifest path): exit code 1."""


def builder_command(model: str, precision: str, backend: str, input_size: tuple[int, int] | None,
                    verbose: int = 0, confidence: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "build_engine", "--model", model, "--precision", precision,
           "--backend", backend]
    if input_size:
        cmd += ["--input-size", f"{input_size[0]}x{input_size[1]}"]
    if confidence:  # the run reads the confidence output (pspnet-rt --confidence / --visualize confidence)
        cmd.append("--confidence")
    return cmd + ["-v"] * min(verbose, 2)


def require_builder() -> None:
    """Raise NoBuilder where the export extra is missing (asked without importing it)."""
    missing = [m for m in EXPORT_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise NoBuilder(", ".join(missing))


def build_default(model: str, precision: str, backend: str, input_size: tuple[int, int] | None = None,
                  verbose: int = 0, confidence: bool = False) -> Path:
    """Build (or find in the builder's cache) the artefact and return its manifest's path.

    Raises NoBuilder (no export extra), Reported(2 or 1) when the builder refused the request
    or failed and said so, BuildFailed when it died silently, Interrupted on a signal (the
    build leaves nothing behind).
    """
    require_builder()
    cmd = builder_command(model, precision, backend, input_size, verbose, confidence)
    log.info("building: %s", " ".join(cmd[1:]))
    # the child's error lines then name pspnet-rt and its ways out, not the builder's flags
    env = {**os.environ, "PSPNET_RT_BUILD_CALLER": "pspnet-rt"}  # build_engine.errors.CALLER_ENV
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            start_new_session=True, env=env)
    with _Forwarding(proc) as forwarding:
        out, _ = proc.communicate()
    code = proc.returncode
    if code == EXIT_OK:
        lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
        if not lines:
            raise BuildFailed("the builder exited 0 without printing a manifest path")
        return Path(lines[-1])
    if forwarding.code is not None:  # we passed a signal on: the run ends with its code
        raise Interrupted(forwarding.code, forwarding.name or "signal")
    if code < 0:  # a signal we did not send (SIGKILL, the OOM killer): nothing was reported
        raise BuildFailed(f"the builder was killed by {signal.Signals(-code).name}")
    if code in SIGNAL_EXIT.values():
        raise Interrupted(code, "signal")
    # 1 or 2: the builder has printed its one line (the thing and the fix) on our stderr
    raise Reported(code if code in (EXIT_FAIL, EXIT_USAGE) else EXIT_FAIL)


class _Forwarding:
    """While the child builds: our SIGINT/SIGTERM/SIGHUP handlers pass the signal on to it."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.code: int | None = None
        self.name: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Forwarding:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNAL_EXIT:
                self._old[sig] = signal.signal(sig, self._forward)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        if self.proc.poll() is None:  # we are leaving early (an exception): do not orphan the build
            self.proc.terminate()
            self.proc.wait()

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        if self.code is None:
            self.code, self.name = SIGNAL_EXIT[signum], signal.Signals(signum).name
            print(f"pspnet-rt: {self.name}: stopping the build", file=sys.stderr, flush=True)
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
