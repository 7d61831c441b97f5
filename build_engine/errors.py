"""Build errors, importable without torch so the CLI can catch them before any heavy import."""


class SizeError(ValueError):
    """An input size the model cannot be exported at; the message proposes valid ones."""


class BuildError(RuntimeError):
    """The build ran but its result is not acceptable (verification or accuracy gate)."""


class OutputDirError(ValueError):
    """--output cannot take the artefact (a file, read-only, not writable): exit 2, before any work."""
