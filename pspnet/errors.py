"""Errors a user can cause and fix; the CLIs print them as one line and exit 2."""


class CheckpointError(ValueError):
    """A weights file that does not fit the model (the message names expected vs found)."""
