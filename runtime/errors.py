"""The runtime's error kinds, each mapped to one exit code and one clear line by the CLI."""

from __future__ import annotations

from clikit import UsageError  # bad input from the user: exit code 2, no traceback

__all__ = ["BackendUnavailable", "OutputError", "SourceDamaged", "SourceError", "SourceMissing", "UsageError",
           "WriteError"]


class SourceError(UsageError):
    """A source that cannot be opened; the message names it and says how to fix it."""


class SourceMissing(SourceError):
    """A file, folder or glob source that does not exist."""


class OutputError(UsageError):
    """An output that cannot be written (folder not writable, not a folder, disk full)."""


class BackendUnavailable(UsageError):
    """The backend's library (TensorRT, CUDA bindings, OpenVINO, ...) is not installed here."""


class WriteError(RuntimeError):
    """An output failed mid-run (disk full, device gone): exit code 1, what was written stays."""


class SourceDamaged(RuntimeError):
    """A recording that cannot be read at all (e.g. a bag whose index is gone): exit code 1."""
