"""The small kit every command's CLI shares: exit codes, a parser whose errors are one line,
option types that say what they accept (so bad values are refused before any work starts, and
the fault suite can walk every option), and the stop signals of a service manager.

Torch-free and stdlib-only: the runtime imports it on an edge box.
"""

from clikit.exits import EXIT_FAIL, EXIT_OK, EXIT_USAGE, signal_exit_code  # noqa: F401
from clikit.parser import ArgumentParser  # noqa: F401
