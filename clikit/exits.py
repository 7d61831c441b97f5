"""Exit codes shared by every command: 0 ok, 1 runtime failure, 2 bad input, 128+N on signal N."""

from __future__ import annotations

import signal

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def signal_exit_code(signum: int) -> int:
    """The shell's convention: SIGINT -> 130, SIGTERM -> 143, SIGHUP -> 129."""
    return 128 + int(signal.Signals(signum))
