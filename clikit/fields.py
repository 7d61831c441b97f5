"""Options objects held to their command's flag rules.

An options dataclass (runtime.options.RunOptions, build_engine.api.BuildOptions) is what a
command's flags become and what a Python caller fills in directly. Both paths must refuse the
same values with the same words, so each field's rule is ONE object in a table, `{field: Rule}`:
the command's parser takes its `type=` / `choices=` from that table, and the options check the
values a Python caller gave with it (`check_fields`, from `__post_init__`). Nothing is written
twice; tests/test_option_rules.py proves the parsers use the tables and walks every field with
the values its rule must refuse.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clikit import UsageError
from clikit.types import OptionType, _shown


@dataclass(frozen=True)
class Rule:
    """What one field accepts: an OptionType (argparse `type=`), or a set of `choices`."""

    flag: str  # the command's flag, named in the error so a reader finds its --help
    type: OptionType | None = None
    choices: tuple[str, ...] | None = None
    each: bool = False  # a list field (a repeatable flag): every item obeys the rule

    def check(self, value: Any) -> Any:
        """The value (normalised by the type), or ValueError saying what is expected."""
        if self.each:
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
                raise ValueError(f"expected a list, got {_shown(value)}")
            return [self._one(v) for v in value]
        return self._one(value)

    def _one(self, value: Any) -> Any:
        if self.choices is not None:
            if not isinstance(value, str) or value not in self.choices:
                raise ValueError(f"expected one of {', '.join(self.choices)}, got {_shown(value)}")
            return value
        if self.type is None:
            return value
        try:
            return self.type.check(value)
        except argparse.ArgumentTypeError as exc:
            raise ValueError(str(exc)) from None


def check_fields(options: Any, rules: Mapping[str, Rule], scrub: Callable[[str], str] = str) -> None:
    """Check every ruled field of the dataclass `options` (frozen or not) and store the
    normalised value (e.g. [96, 192] -> (96, 192), a Path -> str). A field whose default is None
    may be None (unset); a bool field takes only True or False. Raises UsageError naming the
    class, the field and its flag, its text passed through `scrub` (a command's redaction: a
    URL's password must not reach a Python caller's traceback either)."""
    owner = type(options).__name__
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        default = (f.default if f.default is not dataclasses.MISSING
                   else f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        if value is None and default is None:
            continue
        rule = rules.get(f.name)
        try:
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"expected True or False, got {_shown(value)}")
                continue
            if rule is None:
                continue
            if value is None:
                raise ValueError("expected a value, got None")
            checked = rule.check(value)
        except ValueError as exc:
            flag = f" ({rule.flag})" if rule is not None else ""
            raise UsageError(scrub(f"{owner}.{f.name}{flag}: {exc}")) from None
        if checked is not value:
            object.__setattr__(options, f.name, _same_shape(checked, value))


def _same_shape(checked: Any, given: Any) -> Any:
    """A list rule's result keeps the caller's tuple a tuple (mean=(1, 2, 3) stays a tuple)."""
    if isinstance(checked, list) and isinstance(given, tuple):
        return tuple(checked)
    return checked
