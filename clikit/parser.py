"""argparse with one-line errors: a bad option prints `prog: error: argument --x: why (see
prog --help)` and exits 2, not a usage block the message hides in."""

from __future__ import annotations

import argparse
from typing import NoReturn

from clikit.exits import EXIT_USAGE


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        message = " ".join(message.split())
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
