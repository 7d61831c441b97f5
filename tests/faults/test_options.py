"""Every option of every command, walked with bad values, in-process: each must end the command
with exit 2 and one line naming the option, before any work (these calls return in
milliseconds; a value that slipped through would start real work and blow the timeout)."""

from __future__ import annotations

import importlib

import pytest

from tests.faults.cases import command_modules, option_argv, option_cases, parser_of, unclassified
from tests.faults.helpers import call_main

CASES = option_cases()


@pytest.mark.fault("options-walk")
def test_every_command_is_found() -> None:
    found = set(command_modules())
    assert {"runtime.cli", "build_engine.cli", "benchmarks.latency", "benchmarks.accuracy",
            "benchmarks.scaling", "benchmarks.calibration", "pspnet.train"} <= found
    assert len(CASES) > 100  # every option of them


@pytest.mark.fault("options-walk")
@pytest.mark.parametrize("module", command_modules())
def test_every_option_declares_what_it_accepts(module: str) -> None:
    """An option whose value nobody checks (a bare str/int/float type) is how `--fps 0` and
    `--timeout 0` got through: each needs choices or a clikit.types type."""
    assert unclassified(parser_of(module)) == [], (
        f"{module}: give these options a clikit.types type (or choices) so bad values are refused "
        "before any work and the fault suite can walk them")


@pytest.mark.fault("options-walk")
@pytest.mark.parametrize("module", command_modules())
def test_good_values_pass(module: str) -> None:
    """The walk's base argv (good values for what is required) parses: the bad values alone fail."""
    from tests.faults.cases import base_argv

    parser = parser_of(module)
    parser.parse_args(base_argv(parser))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=pytest.mark.fault(c.id)) for c in CASES])
def test_bad_values_exit_2_with_one_line(case, capsys: pytest.CaptureFixture) -> None:
    main = importlib.import_module(case.module).main
    for value in case.values:
        argv = option_argv(case, value)
        code = call_main(main, argv)
        err = capsys.readouterr().err
        lines = [line for line in err.strip().splitlines() if line.strip()]
        assert code == 2, f"{argv}: exit {code}\n{err}"
        assert len(lines) == 1 and "Traceback" not in err, f"{argv}: not one line:\n{err}"
        assert case.flag in lines[0], f"{argv}: the error does not name {case.flag}: {lines[0]}"
        assert "--help" in lines[0]  # where the fix is spelled out


@pytest.mark.timeout(60)  # before the fix, --timeout 0 on a silent stream never returned
@pytest.mark.fault("repro-4-timeout-0")
@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_timeout_zero_is_refused(value: str, capsys: pytest.CaptureFixture) -> None:
    from runtime.cli import main

    assert call_main(main, ["--video", "udp://127.0.0.1:9", f"--timeout={value}"]) == 2
    assert "--timeout" in capsys.readouterr().err


@pytest.mark.fault("seen-accepted-values")
@pytest.mark.parametrize(("module", "argv"), [
    ("runtime.cli", ["--video", "demo", "--fps=0"]),
    ("runtime.cli", ["--video", "demo", "--reconnect=-1"]),
    ("build_engine.cli", ["--max-miou-drop=-1"]),
])
def test_values_issue_13_saw_accepted(module: str, argv: list[str], capsys: pytest.CaptureFixture) -> None:
    assert call_main(importlib.import_module(module).main, argv) == 2
    assert argv[-1].split("=")[0] in capsys.readouterr().err
