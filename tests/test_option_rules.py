"""The options objects (RunOptions, BuildOptions) refuse what their command's flags refuse, by the
same rule objects: the parsers take every flag's type/choices from the rule tables (one place per
rule), and every field is walked with the values its rule must refuse, as a Python caller would
pass them (strings, numbers, tuples, None, bools)."""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest

from clikit import UsageError
from clikit.fields import Rule


def _commands() -> list[tuple[str, argparse.ArgumentParser, type, dict[str, Rule], dict[str, str]]]:
    """(name, parser, options class, rules, flag dest -> field where they differ)."""
    import build_engine.api as build_api
    import build_engine.cli as build_cli
    import runtime.cli as rt_cli
    from runtime.option_rules import RULES
    from runtime.options import RunOptions

    return [("pspnet-rt", rt_cli.build_parser(), RunOptions, RULES, {"video": "videos"}),
            ("build_engine", build_cli.build_parser(), build_api.BuildOptions, build_api.OPTION_RULES, {})]


COMMANDS = ["pspnet-rt", "build_engine"]


def _command(name: str):
    return next(c for c in _commands() if c[0] == name)


@pytest.mark.parametrize("name", COMMANDS)
def test_the_parser_takes_every_value_rule_from_the_table(name: str) -> None:
    """A flag with a type or choices uses its field's rule object; no flag keeps a private copy."""
    _, parser, options, rules, renames = _command(name)
    fields = {f.name for f in dataclasses.fields(options)}
    used = set()
    for action in parser._actions:
        field = renames.get(action.dest, action.dest)
        if field not in fields or (action.type is None and action.choices is None):
            continue
        rule = rules.get(field)
        flag = action.option_strings[0]
        assert rule is not None, (f"{flag} has its own type/choices: give field {field!r} a rule in the "
                                  f"options' rule table, and **arg({field!r}) on the flag")
        if rule.type is not None:
            assert action.type is rule.type, f"{action.option_strings[0]}: not the rule's own type object"
        else:
            assert tuple(action.choices) == tuple(rule.choices), action.option_strings[0]
        assert rule.flag in action.option_strings, (rule.flag, action.option_strings)
        used.add(field)
    unused = set(rules) - used - {"verbose", "rtsp_out"}  # -v counts; an rtsp:// --output lands in rtsp_out
    assert not unused, f"rules no flag uses: {sorted(unused)}"


def _bad_values(rule: Rule, default: Any) -> list[Any]:
    if rule.choices is not None:
        bad = ["bogus", "", rule.choices[0].upper() + "x", 3, True]
    else:
        bad = [*rule.type.bad, *rule.type.bad_values]
    if default is None:  # None is "unset" there
        bad = [v for v in bad if v is not None]
    else:
        bad.append(None)
    return bad


def _cases() -> list[tuple[str, str, Any]]:
    cases = []
    for name, _, options, rules, _ in _commands():
        for f in dataclasses.fields(options):
            default = f.default if f.default is not dataclasses.MISSING else None
            if f.name in rules:
                rule = rules[f.name]
                values = _bad_values(rule, default)
                cases += [(name, f.name, [v] if rule.each else v) for v in values]
                if rule.each:
                    cases.append((name, f.name, 3))  # a list is expected
            elif isinstance(default, bool):
                cases += [(name, f.name, v) for v in ("yes", 1, None)]
    return cases


@pytest.mark.parametrize("name, field, value", _cases(), ids=lambda v: repr(v)[:40])
def test_every_field_refuses_what_its_flag_refuses(name: str, field: str, value: Any) -> None:
    options = _command(name)[2]
    with pytest.raises(UsageError) as err:
        options(**{field: value})
    message = str(err.value)
    assert message.startswith(f"{options.__name__}.{field}"), message  # names the field (and its flag)
    assert "\n" not in message and "Traceback" not in message


@pytest.mark.parametrize("name", COMMANDS)
def test_every_field_takes_its_good_values_and_normalises_them(name: str) -> None:
    _, _, options, rules, _ = _command(name)
    for field, rule in rules.items():
        goods = list(rule.choices) if rule.choices is not None else [rule.type.good]
        for good in goods:
            value = [good] if rule.each else good
            needs = ({"serve": 8080} if field.startswith("serve_")  # --serve-token needs --serve
                     else {"foxglove": 8765} if field.startswith("foxglove_") else {})
            options(**{field: value}, **needs)  # accepted
    made = options(input_size=[96, 192], output=Path("some/where"))
    assert made.input_size == (96, 192) and made.output == "some/where"


def test_the_command_and_the_options_say_the_same(capsys: pytest.CaptureFixture) -> None:
    """One rule, one sentence: the flag's error and the field's error carry the same reason."""
    from runtime.cli import main
    from runtime.options import RunOptions
    from tests.faults.helpers import call_main

    for flag, field, text, value in [("--alpha", "alpha", "-1", -1.0), ("--max-frames", "max_frames", "0", 0),
                                     ("--input-size", "input_size", "0x5", (0, 5)),
                                     ("--fps", "fps", "nan", math.nan)]:
        assert call_main(main, ["--video", "demo", flag, text]) == 2
        cli = capsys.readouterr().err
        with pytest.raises(UsageError) as err:
            RunOptions(**{field: value})
        reason = str(err.value).split(": ", 1)[1]
        assert reason.split(", got")[0] in cli, (reason, cli)


def test_the_python_api_refuses_bad_values_before_any_work() -> None:
    """pspnet_rt's calls build their options first: a bad value fails at once, naming the field."""
    import pspnet_rt as rt

    with pytest.raises(UsageError, match=r"RunOptions\.max_frames \(--max-frames\)"):
        rt.stream("demo", max_frames=0)
    with pytest.raises(UsageError, match=r"RunOptions\.visualize"):
        rt.run(videos=["demo"], visualize="heatmap")
    with pytest.raises(UsageError, match=r"RunOptions\.temporal"):
        rt.run(rt.RunOptions(), temporal="sometimes")
    with pytest.raises(UsageError, match=r"BuildOptions\.input_size"):
        rt.build(input_size=(0, 5))
    with pytest.raises(UsageError, match=r"BuildOptions\.calib_images"):
        rt.build(precision="int8", calib_images=-3)
    with pytest.raises(UsageError, match=r"BuildOptions\.input_size"):  # the model's name first
        rt.build("demo", input_size=(0, 5))
    with pytest.raises(TypeError, match="a model name or BuildOptions first"):
        rt.build(3)


def test_a_refused_value_never_shows_a_password() -> None:
    from runtime.options import RunOptions

    for field in ("output", "rtsp_out"):
        with pytest.raises(UsageError) as err:
            RunOptions(**{field: "rtsp://admin:hunter2pw@127.0.0.1:99999/seg"})
        assert "hunter2pw" not in str(err.value) and f"RunOptions.{field}" in str(err.value)
