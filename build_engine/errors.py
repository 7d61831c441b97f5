"""Build errors, importable without torch so the CLI can catch them before any heavy import."""

import os

# Set by the runtime's one door to the builder (runtime/default_build.py) for the child build it
# starts: the child's lines then speak to a pspnet-rt user, in pspnet-rt's terms (no --output there)
CALLER_ENV = "PSPNET_RT_BUILD_CALLER"


def caller() -> str | None:
    """The command that runs this build for its user ("pspnet-rt"), or None when run directly."""
    return os.environ.get(CALLER_ENV) or None


def another_output() -> str:
    """The way out when the artefact folder cannot take the build, in the user's command's terms."""
    if caller():
        return ("set PSPNET_RT_CACHE to another folder (where pspnet-rt builds its default artefacts), "
                "or pass --engine ARTEFACT.json")
    return "choose another --output"


class SizeError(ValueError):
    """An input size the model cannot be exported at; the message proposes valid ones."""


class BuildError(RuntimeError):
    """The build ran but its result is not acceptable (verification or accuracy gate)."""


class OutputDirError(ValueError):
    """--output cannot take the artefact (a file, read-only, not writable): exit 2, before any work."""
