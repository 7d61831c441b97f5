"""The CLI kit every command shares: argument types, exit codes, one-line errors, signals."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import clikit
from tests.faults.helpers import stop

ROOT = Path(__file__).resolve().parents[1]


def test_size_and_number_types() -> None:
    assert clikit.hw_size("480x960") == (480, 960) and clikit.hw_size("480×960") == (480, 960)
    with pytest.raises(argparse.ArgumentTypeError, match="expected HxW such as"):
        clikit.hw_size("abc")
    with pytest.raises(argparse.ArgumentTypeError, match="positive"):
        clikit.hw_size("0x10")
    with pytest.raises(argparse.ArgumentTypeError, match="at least 33 pixels"):
        clikit.size_type("HxW", min_side=33)("32x64")
    assert clikit.size_type("WxH")("640x480") == (640, 480)
    assert clikit.positive_int("3") == 3 and clikit.non_negative_int("0") == 0
    for bad, parse in (("0", clikit.positive_int), ("-1", clikit.non_negative_int),
                       ("x", clikit.positive_int)):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(bad)
    assert clikit.float_in(0, 1)("0.5") == 0.5
    with pytest.raises(argparse.ArgumentTypeError, match=r"within 0\.\.1"):
        clikit.float_in(0, 1)("1.5")
    assert clikit.csv_list(("a", "b"))("b, a") == ["b", "a"]
    with pytest.raises(argparse.ArgumentTypeError, match="choose from a, b"):
        clikit.csv_list(("a", "b"))("c")


def _run(body, *, usage=(), failure=()) -> int:
    p = clikit.parser("t", "a test command")
    clikit.add_verbose(p)
    return clikit.run("t", p, body, [], usage=usage, failure=failure)


def test_run_maps_what_the_body_raises_to_one_line_and_a_code(capsys: pytest.CaptureFixture) -> None:
    def raising(exc: BaseException):
        def body(args: argparse.Namespace) -> int:
            raise exc
        return body

    assert _run(lambda args: 0) == 0
    assert _run(raising(clikit.UsageError("bad --thing; use --other"))) == 2
    assert capsys.readouterr().err == "t: bad --thing; use --other\n"
    assert _run(raising(KeyError("unknown model 'x'")), usage=(KeyError,)) == 2
    assert capsys.readouterr().err == "t: unknown model 'x'\n"  # no KeyError quotes
    assert _run(raising(TimeoutError("disk gone")), failure=(TimeoutError,)) == 1
    assert capsys.readouterr().err == "t: disk gone\n"
    assert _run(raising(RuntimeError("multi\n   line"))) == 1
    assert capsys.readouterr().err == "t: RuntimeError: multi line\n"  # folded, no traceback
    assert _run(raising(clikit.Reported(2))) == 2
    assert capsys.readouterr().err == ""  # a child already said it
    assert _run(raising(clikit.Interrupted(143, "SIGTERM"))) == 143


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_signals_give_their_exit_codes_and_run_cleanups(tmp_path: Path, sig: int, code: int) -> None:
    """A signal raises in the main thread, so `finally` blocks run (atomic writes clean up)."""
    marker = tmp_path / "cleaned"
    script = ("import os, signal, sys, time\n"
              "import clikit\n"
              "def body(args):\n"
              "    try:\n"
              f"        os.kill(os.getpid(), {int(sig)})\n"
              "        time.sleep(30)\n"
              "    finally:\n"
              f"        open({str(marker)!r}, 'w').close()\n"
              "    return 0\n"
              "sys.exit(clikit.run('t', clikit.parser('t', None), body, []))\n")
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == code, r.stderr
    assert r.stderr.strip() == f"t: interrupted by {signal.Signals(sig).name}" and marker.is_file()


def test_a_stream_of_signals_still_ends_with_the_first_ones_code() -> None:
    """A service manager that repeats SIGTERM until the process is gone must see 143, never a
    kill by the signal (-15): Python's finalisation restores SIG_DFL over Python handlers, so a
    repeat that lands during the interpreter's shutdown used to kill it (flaky in CI)."""
    script = ("import sys, time\n"
              "import numpy\n"  # a longer interpreter shutdown, like the real commands'
              "import clikit\n"
              "def body(args):\n"
              "    print('ready', flush=True)\n"
              "    time.sleep(30)\n"
              "    return 0\n"
              "sys.exit(clikit.run('t', clikit.parser('t', None), body, []))\n")
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            for _ in range(20_000):  # until it is gone; bounded (~10 s)
                if proc.poll() is not None:
                    break
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                time.sleep(0.0005)
            _, err = proc.communicate(timeout=30)
        finally:
            stop(proc)
        assert proc.returncode == 143, err
        assert err.splitlines()[0] == "t: interrupted by SIGTERM"


def test_a_deferred_signal_waits_for_the_blocks_end_then_stops_the_command(tmp_path: Path) -> None:
    """Inside clikit.signals_deferred() (torch's import, an export's trace: C++ calling back into
    Python, where an exception aborts the process) a signal is noted; the block finishes, its
    clean-up runs, and the command stops with the signal's code."""
    script = ("import os, signal, sys, pathlib\n"
              "import clikit\n"
              f"out = pathlib.Path({str(tmp_path)!r})\n"
              "def body(args):\n"
              "    try:\n"
              "        with clikit.signals_deferred():\n"
              "            os.kill(os.getpid(), signal.SIGTERM)\n"
              "            os.kill(os.getpid(), signal.SIGTERM)\n"
              "            (out / 'block-finished').touch()\n"
              "        (out / 'after-the-block').touch()\n"
              "    finally:\n"
              "        (out / 'cleaned-up').touch()\n"
              "    return 0\n"
              "sys.exit(clikit.run('t', clikit.parser('t', None), body, []))\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 143, proc.stderr
    assert proc.stderr.splitlines()[-1] == "t: interrupted by SIGTERM"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["block-finished", "cleaned-up"]


def test_signals_deferred_changes_nothing_without_a_commands_handlers() -> None:
    with clikit.signals_deferred():
        value = 1
    assert value == 1


# Programs that run under the system's python3 (GStreamer's PyGObject lives there, not in our
# virtualenv): they cannot import clikit, so they keep their own small parser.
SYSTEM_PYTHON_PROGRAMS = {"runtime/rtsp_helper.py"}


def test_every_command_uses_the_kit() -> None:
    """No command keeps its own parser set-up, size parser or logging set-up."""
    sources = [p for p in ROOT.glob("*/*.py") if p.parts[-2] in
               ("build_engine", "runtime", "benchmarks", "pspnet", "calib", "segdata", "artefact", "devices")
               and p.relative_to(ROOT).as_posix() not in SYSTEM_PYTHON_PROGRAMS]
    assert all((ROOT / name).is_file() for name in SYSTEM_PYTHON_PROGRAMS)
    for path in sources:
        text = path.read_text()
        assert "logging.basicConfig" not in text and "argparse.ArgumentParser(" not in text, path
        assert not re.search(r"def (parse_size|_size)\(", text), path
