"""Naming a source in any output: `redact_source`, the one redaction function of the project.

It lives in the CLI kit (clikit.redaction, standard library only) so that every layer imports it
without a circle, the training and search code included; runtime code names it from here.
"""

from clikit.redaction import MASK, redact_source, secrets_of

__all__ = ["MASK", "redact_source", "secrets_of"]
