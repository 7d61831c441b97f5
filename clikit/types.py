"""Option types that know their domain (the kit re-exports them: clikit.hw_size, clikit.text ...).

Each is an argparse `type` callable that refuses what it must (nan, 0 where a rate is meant,
an empty path, a folder where a file is written ...) with a message naming what it expects, so
argparse turns it into one line and exit 2 before any long work starts. Each also carries
`domain` (a few words), `good` (a value it accepts) and `bad` (values it must refuse): the
fault-injection suite walks every option of every command with those, so an option added
later is walked without anyone writing a test for it.

The same objects check a value given in Python (`OptionType.check`: 0.5, (240, 480), a Path),
so an options object built by a Python caller (RunOptions, BuildOptions) is held to exactly the
rules of the command's flags, from one place (clikit.fields).
"""

from __future__ import annotations

import argparse
import json
import math
import numbers
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

Parse = Callable[[str], Any]


class OptionType:
    """A parse function plus what it accepts; calling it parses (argparse's `type`).

    `check(value)` applies the same rule to a value given in Python: a string goes through
    `parse`, a path-like through `parse` as its path, anything else through the type's own
    `typed` check (numbers, sizes, lists: the same bounds `parse` uses) or is refused. `bad_values`
    are typed values it must refuse (walked by the options tests, as `bad` by the fault suite)."""

    def __init__(self, parse: Parse, domain: str, good: str, bad: Sequence[str],
                 typed: Callable[[Any], Any] | None = None, bad_values: Sequence[Any] = ()) -> None:
        self.parse = parse
        self.domain = domain
        self.good = good
        self.bad = tuple(bad)
        self.typed = typed
        self.bad_values = tuple(bad_values)
        self.__name__ = domain  # argparse names the type by it when parse raises ValueError

    def __call__(self, text: str) -> Any:
        return self.parse(text)

    def check(self, value: Any) -> Any:
        """The value, normalised (an int, a float, a tuple, a path as str), or ArgumentTypeError."""
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if isinstance(value, str):
            return self.parse(value)
        if self.typed is not None:
            return self.typed(value)
        raise _refuse(f"expected {self.domain}, got {_shown(value)}")

    def __repr__(self) -> str:
        return f"OptionType({self.domain!r})"


def option_type(domain: str, good: str, bad: Sequence[str], typed: Callable[[Any], Any] | None = None,
                bad_values: Sequence[Any] = ()) -> Callable[[Parse], OptionType]:
    """Decorator for a command's own parse function: declare its domain and examples (and how a
    Python value that is not a string is checked, where one is meant)."""
    return lambda parse: OptionType(parse, domain, good, bad, typed, bad_values)


def _shown(value: Any) -> str:
    """A value in an error line: its repr, with its type where the repr hides it."""
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return text if isinstance(value, (int, float, str, type(None))) else f"{text} ({type(value).__name__})"


def _whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _refuse(message: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(message)


# ---------------------------------------------------------------------------------- numbers
def _bounds_text(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None and not lo_open and not hi_open:
        return f"within {lo:g}..{hi:g}"
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi:g}")
    return " and ".join(parts)


def integer(minimum: int | None = None, maximum: int | None = None) -> OptionType:
    """A whole number within [minimum, maximum]."""
    bounds = _bounds_text(minimum, maximum, False, False)
    domain = f"a whole number {bounds}".strip()

    def typed(value: Any) -> int:
        if not _whole(value):
            raise _refuse(f"expected {domain}, got {_shown(value)}")
        value = int(value)
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise _refuse(f"expected {domain}, got {value}")
        return value

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise _refuse(f"expected {domain}, got {text!r}") from None
        return typed(value)

    bad = ["", "abc", "1.5", "1e3"]
    if minimum is not None:
        bad.append(str(minimum - 1))
        if minimum > 0:
            bad.append("-1")
    if maximum is not None:
        bad.append(str(maximum + 1))
    good = str(minimum if minimum is not None else (maximum if maximum is not None else 0))
    bad_values = [1.5, True, None, [1]]
    if minimum is not None:
        bad_values.append(minimum - 1)
    if maximum is not None:
        bad_values.append(maximum + 1)
    return OptionType(parse, domain, good, bad, typed, bad_values)


def number(greater_than: float | None = None, at_least: float | None = None,
           at_most: float | None = None, below: float | None = None, what: str = "a number") -> OptionType:
    """A finite real number within the bounds (nan and inf are never a setting)."""
    lo = greater_than if greater_than is not None else at_least
    hi = below if below is not None else at_most
    domain = f"{what} {_bounds_text(lo, hi, greater_than is not None, below is not None)}".strip()

    def typed(value: Any) -> float:
        if not _real(value) or not math.isfinite(value):
            raise _refuse(f"expected {domain}, got {_shown(value)}")
        value = float(value)
        if ((greater_than is not None and value <= greater_than)
                or (at_least is not None and value < at_least)
                or (at_most is not None and value > at_most)
                or (below is not None and value >= below)):
            raise _refuse(f"expected {domain}, got {value:g}")
        return value

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise _refuse(f"expected {domain}, got {text!r}") from None
        if not math.isfinite(value):
            raise _refuse(f"expected {domain}, got {text!r}")
        return typed(value)

    bad = ["", "abc", "nan", "inf", "-inf"]
    if greater_than is not None:
        bad += [f"{greater_than:g}", f"{greater_than - 1:g}"]
    if at_least is not None:
        bad.append(f"{at_least - 1:g}")
    if at_most is not None:
        bad.append(f"{at_most + 1:g}")
    if below is not None:
        bad.append(f"{below:g}")
    if lo is not None and hi is not None:
        good = f"{(lo + hi) / 2:g}"
    elif lo is not None:
        good = f"{lo + 1:g}"
    else:
        good = f"{(hi if hi is not None else 1) - 1:g}"
    bad_values = [math.nan, math.inf, True, None, [1.0]]
    if greater_than is not None:
        bad_values += [greater_than, greater_than - 1]
    if at_least is not None:
        bad_values.append(at_least - 1)
    if at_most is not None:
        bad_values.append(at_most + 1)
    if below is not None:
        bad_values.append(below)
    return OptionType(parse, domain, good, bad, typed, bad_values)


positive_int = integer(minimum=1)
non_negative_int = integer(minimum=0)
positive_float = number(greater_than=0)
non_negative_float = number(at_least=0)
fraction = number(at_least=0, at_most=1)


def size(order: str = "HxW", min_side: int = 1, max_side: int | None = None) -> OptionType:
    """Two positive whole numbers such as 480x960 (`order` names them: HxW or WxH), each at most
    `max_side` where given (a size that could never be built is refused before any work)."""
    domain = f"{order} such as 480x960 (each side >= {min_side}" + (f", <= {max_side})" if max_side else ")")

    def typed(value: Any) -> tuple[int, int]:
        if (isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)) or len(value) != 2
                or not all(_whole(v) for v in value)):
            raise _refuse(f"expected {domain} or a pair of whole numbers, got {_shown(value)}")
        a, b = int(value[0]), int(value[1])
        text = f"{a}x{b}"
        if a < min_side or b < min_side:
            what = "positive" if min_side == 1 else f"at least {min_side} pixels"
            raise _refuse(f"{text}: both sides must be {what} ({order} such as 480x960)")
        if max_side and max(a, b) > max_side:
            raise _refuse(f"{text}: each side must be at most {max_side} pixels ({order} such as 480x960)")
        return a, b

    def parse(text: str) -> tuple[int, int]:
        try:
            a, b = (int(v) for v in text.strip().lower().replace("×", "x").split("x"))
        except ValueError:
            raise _refuse(f"expected {domain}, got {text!r}") from None
        return typed((a, b))

    too_big = [f"{max_side + 1}x{max_side + 1}", "100000x100000"] if max_side else []
    bad_values = [(0, 0), (-1, 5), (240,), (240, 480, 3), (1.5, 2), 480, None, (True, 480)]
    if max_side:
        bad_values.append((max_side + 1, 8))
    return OptionType(parse, domain, "240x480", ["", "abc", "480", "0x0", "-1x5", "240x", "1.5x2", *too_big],
                      typed, bad_values)


def csv_choices(choices: Sequence[str]) -> OptionType:
    """A comma-separated list drawn from `choices`."""
    domain = f"comma-separated {', '.join(choices)}"

    def typed(value: Any) -> list[str]:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise _refuse(f"expected {domain}, got {_shown(value)}")
        return parse(",".join(value))

    def parse(text: str) -> list[str]:
        items = [t.strip().lower() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if bad or not items:
            raise _refuse(f"{text!r}: choose from {', '.join(choices)} (comma-separated)")
        return items

    return OptionType(parse, domain, choices[0], ["", ",", "bogus", f"{choices[0]},bogus"], typed,
                      [[], ["bogus"], 3, None])


def csv_numbers(greater_than: float = 0.0, count: int | None = None) -> OptionType:
    """A comma-separated list of finite numbers > `greater_than` (exactly `count` of them if set)."""
    one = number(greater_than=greater_than)
    many = f"{count} " if count else ""
    domain = f"{many}comma-separated numbers > {greater_than:g}"

    def typed(value: Any) -> list[float]:
        if not isinstance(value, (list, tuple)) or not value or (count is not None and len(value) != count):
            raise _refuse(f"expected {domain}, got {_shown(value)}")
        try:
            return [one.check(v) for v in value]
        except argparse.ArgumentTypeError:
            raise _refuse(f"expected {domain}, got {_shown(value)}") from None

    def parse(text: str) -> list[float]:
        items = [t for t in text.split(",") if t.strip()]
        if not items or (count is not None and len(items) != count):
            raise _refuse(f"expected {domain}, got {text!r}")
        try:
            return [one(t) for t in items]
        except argparse.ArgumentTypeError:
            raise _refuse(f"expected {domain}, got {text!r}") from None

    good = ",".join(["1.5"] * (count or 2))
    n = count or 2
    bad_values = [[], [greater_than] * n, [math.nan] * n, 1.0, None, *([[1.0] * (n + 1)] if count else [])]
    bad = ["", ",", "abc", "0,1", "nan,1", "1,inf", "-1,2"]
    return OptionType(parse, domain, good, bad, typed, bad_values)


# ------------------------------------------------------------------------------------ paths
def non_empty(what: str) -> OptionType:
    """A non-empty string (a name, a URI, a device): checked by the command that uses it."""

    def parse(value: str) -> str:
        if not value.strip():
            raise _refuse(f"expected {what}, got an empty string")
        return value

    return OptionType(parse, what, "demo", ["", "  "], bad_values=[3, None, b"x"])


def input_file(what: str = "a file") -> OptionType:
    """An existing regular file (or something that reads like one, such as /dev/stdin)."""

    def parse(value: str) -> str:
        if not value.strip():
            raise _refuse(f"expected {what}, got an empty path")
        if os.path.isdir(value):
            raise _refuse(f"{value} is a folder; expected {what}")
        if not os.path.exists(value):
            raise _refuse(f"{value} does not exist; expected {what}")
        return value

    return OptionType(parse, what, __file__, ["", "/", "/nonexistent/pspnet-rt-fault"], bad_values=[3, None])


def input_path(what: str = "a file or folder") -> OptionType:
    """An existing file or folder."""

    def parse(value: str) -> str:
        if not value.strip():
            raise _refuse(f"expected {what}, got an empty path")
        if not os.path.exists(value):
            raise _refuse(f"{value} does not exist; expected {what}")
        return value

    return OptionType(parse, what, __file__, ["", "/nonexistent/pspnet-rt-fault"], bad_values=[3, None])


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def _refuse_url(value: str, what: str) -> None:
    """An output named by a URL (http://, udp://, rtsps:// ...) that does not exist as a path: it
    would be written as local folders named `http:/u:PW@host/...` (the password kept on disk) while
    the user expects a stream; refused, the URL redacted."""
    if _URL.match(value) and not os.path.lexists(value):
        from clikit.redaction import redact_source

        scheme = value.split(":", 1)[0]
        raise _refuse(f"{redact_source(value)} is a URL ({scheme}://); expected {what} on this machine, "
                      f"not a network address (write ./{scheme}:... for a local path that starts so)")


def output_file(what: str = "a file to write") -> OptionType:
    """A file to write: not empty, not an existing folder, not under an existing file, not a URL.
    Whether it can really be written is checked when the command opens it (before long work)."""

    def parse(value: str) -> str:
        if not value.strip():
            raise _refuse(f"expected {what}, got an empty path")
        _refuse_url(value, what)
        if os.path.isdir(value):
            raise _refuse(f"{value} is a folder; expected {what}, e.g. {os.path.join(value, 'out')}")
        _check_parents(value, what)
        return value

    return OptionType(parse, what, "out.file", ["", "/", "/dev/null/x"], bad_values=[3, None])


def output_dir(what: str = "a folder to write into") -> OptionType:
    """A folder to write into (created if missing): not empty, not an existing file, not a URL."""

    def parse(value: str) -> str:
        if not value.strip():
            raise _refuse(f"expected {what}, got an empty path")
        _refuse_url(value, what)
        if os.path.exists(value) and not os.path.isdir(value):
            raise _refuse(f"{value} is a file; expected {what}")
        _check_parents(value, what)
        return value

    return OptionType(parse, what, "out", ["", "/dev/null", "/dev/null/x"], bad_values=[3, None])


def _check_parents(value: str, what: str) -> None:
    parent = os.path.dirname(os.path.abspath(value))
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise _refuse(f"{value}: {parent} is a file, not a folder; expected {what}")


def json_object(what: str = "a JSON object") -> OptionType:
    def parse(value: str) -> dict:
        try:
            data = json.loads(value)
        except ValueError as exc:
            raise _refuse(f"expected {what}: {exc}") from None
        if not isinstance(data, dict):
            raise _refuse(f"expected {what}, got {type(data).__name__}")
        return data

    def typed(value: Any) -> dict:
        if not isinstance(value, dict):
            raise _refuse(f"expected {what}, got {_shown(value)}")
        return value

    return OptionType(parse, what, "{}", ["", "{", "[1]"], typed, [[1], 3, None])
