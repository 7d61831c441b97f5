"""Docs that run as written (issue 26): every command in README.md and docs/*.md follows one
convention (README, "How the commands are written"), says what it needs, and is accepted by the
real parser of the command it names and by that command's checks before work; the Python examples
that need nothing run, a few cheap commands run for real; every repository path, module reference
and link exists; every table of measured figures says the date and machine it was measured on.

Why parse rather than run every command: most documented commands build artefacts or run
benchmarks for minutes, which CI cannot afford; a parse through the command's own parser and its
up-front checks catches what rots (a renamed flag or value, a moved module, a combination the
command now refuses, a file that is gone) in seconds. docs/architecture.md, "Docs and their test".
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import docs_examples as dx
from tests.docs_examples import ROOT, VENV_BIN, Block, Command

DOCS = dx.doc_files()
DOC_IDS = [str(d.relative_to(ROOT)) for d in DOCS]
# values of these options name something the reader must have (a file, a camera, a server)
INPUT_OPTIONS = {"--video", "--engine", "--weights", "--init", "--data", "--calib-data", "--eval-data",
                 "--classes", "--storage"}


def _rel(doc: Path) -> str:
    return str(doc.relative_to(ROOT))


# ------------------------------------------------------------------------------ the README
def test_the_readme_is_read_in_five_minutes() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail to docs/ (<= 250)"


def test_ci_runs_exactly_the_readmes_test_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
          if ln.strip() and not ln.startswith("#")]
    assert ci[-1].startswith("bash scripts/setup.sh &&") and "pytest" in ci[-1]
    assert ci[-1] in readme, f".ci/run's command is not the README's: {ci[-1]}"


def test_the_layout_table_lists_each_folder_once() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([\w./-]+)/` \|", text.split("## Layout", 1)[1], flags=re.M)
    assert rows and len(rows) == len(set(rows)), f"repeated: {sorted(r for r in rows if rows.count(r) > 1)}"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    folders = {p.split("/")[0] for p in tracked if "/" in p and not p.startswith(".")}
    assert set(rows) == folders, f"not listed: {sorted(folders - set(rows))}; no such folder: " \
                                 f"{sorted(set(rows) - folders)}"


# ------------------------------------------------------------------------------ blocks and the convention
def _looks_like_our_command(line: str) -> bool:
    return bool(re.match(r"^(\$ )?(\.venv/bin/|python3? -m |pspnet-rt |pytest |pip3? install|bash scripts/)",
                         line.strip()))


@pytest.mark.parametrize("doc", DOCS, ids=DOC_IDS)
def test_blocks_say_their_language_and_what_they_need(doc: Path) -> None:
    problems = []
    for block in dx.blocks(doc):
        if block.lang not in dx.LANGUAGES:
            problems.append(f"{block.where}: fence the block as one of {sorted(dx.LANGUAGES)}, "
                            f"not '{block.info}'")
        unknown = sorted(set(block.needs) - set(dx.NEEDS))
        if unknown:
            problems.append(f"{block.where}: needs={','.join(unknown)}: not one of {sorted(dx.NEEDS)}")
        if block.lang == "text" and any(_looks_like_our_command(ln) for ln in block.text.splitlines()):
            problems.append(f"{block.where}: a command in a text block: make it a bash block")
    for n, line in enumerate(dx.prose(doc).splitlines(), 1):
        if line.startswith("    ") and _looks_like_our_command(line):
            problems.append(f"{_rel(doc)}:{n}: an indented command: put it in a ```bash block")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", DOCS, ids=DOC_IDS)
def test_commands_are_written_the_one_way(doc: Path) -> None:
    """README "How the commands are written": the venv's programs by path, from the repository root."""
    problems = []
    for block in (b for b in dx.blocks(doc) if b.lang == "bash"):
        for cmd in dx.shell_commands(block):
            program = cmd.tokens[0] if cmd.tokens else ""
            if program in dx.BARE:
                problems.append(f"{cmd.where}: `{cmd.text}`: write {VENV_BIN}{program}, as every "
                                "example does")
            need = dx.FOREIGN_NEEDS.get(program)
            if need and need not in block.needs:
                problems.append(f"{cmd.where}: `{program}`: the block needs={need}")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------ every command parses
class Refused(Exception):
    """What argparse would have printed before exiting 2."""


def _refusing(parser: argparse.ArgumentParser) -> None:
    """Make the parser (and its subcommands' parsers) raise instead of printing and exiting."""
    def error(message: str) -> None:
        raise Refused(message)

    parser.error = error  # type: ignore[method-assign]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _refusing(sub)


def dry_run(module: str, argv: list[str]) -> tuple[argparse.Namespace | None, str | None]:
    """Parse `argv` with the command's own parser, then make the checks the command makes before any
    work: (the arguments, None), or (None, why it was refused). --help counts as accepted."""
    parser = importlib.import_module(module).build_parser()
    _refusing(parser)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            args = parser.parse_args(argv)
    except Refused as exc:
        return None, str(exc)
    except SystemExit as exc:  # --help
        return None, None if exc.code == 0 else f"exit {exc.code}"
    try:
        if module == "runtime.cli":
            from runtime.cli import run_options
            from runtime.run import _check_options

            _check_options(run_options(args))
        elif module == "build_engine.cli" and not args.list_models:
            from build_engine.preflight import check_command

            check_command(args, parser)
    except ValueError as exc:  # clikit.UsageError and runtime.errors.UsageError are ValueErrors
        return None, str(exc)
    return args, None


def _needs_of_value(option: str, value: str, cmd: Command) -> str | None:
    """Why the value of an input option needs something the reader brings, or None when it is here:
    the demo, a name (zoo model, label set), a repository file, what an earlier command made."""
    if option == "--video" and re.match(r"^[A-Za-z_][\w-]*=", value):
        value = value.split("=", 1)[1]  # NAME=SRC
    if cmd.is_made_here(value) or value == "demo" or value.startswith("synthetic:"):
        return None
    if "://" in value:
        served = value.startswith("triton://127.0.0.1") and any("triton-server.sh" in m for m in cmd.made)
        return None if served else f"{value} is a server or a live stream"
    if re.fullmatch(r"cam\d+|/dev/video\d+", value):
        return f"{value} is a camera"
    if "/" not in value and "." not in value and ":" not in value:
        return None
    path = Path(os.path.expanduser(value))
    if (ROOT / path).exists():
        return None
    return f"{value} is not in the repository and nothing before it makes it"


def command_problems(cmd: Command) -> list[str]:
    """What is wrong with one documented command, as a reader would meet it."""
    tokens = cmd.tokens
    script = dx.script_of(tokens)
    if script and not (ROOT / script).is_file():
        return [f"{cmd.where}: `{cmd.text}`: no {script} in the repository"]
    if tokens[:3] == [VENV_BIN + "python", "-m", "pytest"]:
        return [f"{cmd.where}: `{cmd.text}`: no {w}" for w in tokens[3:]
                if w.startswith("tests/") and not (ROOT / w.split("::")[0]).exists()]
    if len(tokens) > 2 and tokens[0] == VENV_BIN + "python" and tokens[1] == "-m" and \
            tokens[2] != "pip" and dx.module_path(tokens[2]) is None:
        return [f"{cmd.where}: `{cmd.text}`: no module {tokens[2]} in the repository"]
    ours = cmd.ours()
    if ours is None:
        return []
    args, refusal = dry_run(*ours)
    if refusal:
        missing = re.search(r"(\S+) does not exist", refusal)
        if missing and (cmd.block.needs or cmd.is_made_here(missing.group(1))):
            return []  # a file the block says the reader brings, or one an earlier step makes
        return [f"{cmd.where}: `{cmd.text}`: refused: {refusal}"]
    if args is None or cmd.block.needs:
        return []
    argv = ours[1]
    problems = []
    for option, value in itertools.pairwise(argv):
        why = _needs_of_value(option, value, cmd) if option in INPUT_OPTIONS else None
        if why:
            problems.append(f"{cmd.where}: `{cmd.text}`: {why}: say what the block needs "
                            f"(```bash needs=...: {', '.join(dx.NEEDS)})")
    return problems


@pytest.mark.parametrize("doc", DOCS, ids=DOC_IDS)
def test_every_command_is_accepted_by_its_parser(doc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each of our commands as written: its parser and its checks before work accept it (files the
    block says the reader brings aside), so a renamed flag or value, a moved module or a combination
    the command now refuses fails here."""
    monkeypatch.chdir(ROOT)  # every command is written as run from the repository root
    monkeypatch.delenv("PSPNET_RT_SERVE_TOKEN", raising=False)
    problems = [p for block in dx.blocks(doc) if block.lang == "bash"
                for cmd in dx.shell_commands(block) for p in command_problems(cmd)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("text", "refused"), [
    (".venv/bin/pspnet-rt --video demo --no-such-flag", "unrecognized arguments"),
    (".venv/bin/pspnet-rt --video demo --visualize sideways", "invalid choice"),
    (".venv/bin/pspnet-rt --video demo --temporal sometimes", "temporal"),
    (".venv/bin/python -m build_engine --precision fp32 --calib-method entropy", "does nothing"),
    (".venv/bin/python -m build_engine --weights nowhere.pth", "does not exist"),
    (".venv/bin/python -m benchmarks.latency --frames 0", "--frames"),
    (".venv/bin/python -m no_such.module", "no module"),
    ("bash scripts/no-such-script.sh", "no scripts/no-such-script.sh"),
    (".venv/bin/pspnet-rt --video cam0 --show", "is a camera"),
    (".venv/bin/pspnet-rt --video drive.mp4", "not in the repository"),
    (".venv/bin/pspnet-rt --video demo --engine triton://gpu-box:8001/demo", "is a server"),
])
def test_the_parse_check_refuses_what_it_must(text: str, refused: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The dry run is the real parser and the real checks: these are refused, each with its reason."""
    monkeypatch.chdir(ROOT)
    [cmd] = dx.shell_commands(Block(ROOT / "README.md", 1, "bash", (), text + "\n"))
    problems = command_problems(cmd)
    assert any(refused in p for p in problems), problems


def test_the_shell_reading_keeps_what_a_shell_keeps() -> None:
    block = Block(ROOT / "README.md", 1, "bash", (), """\
A=1 .venv/bin/pspnet-rt --video drive.mcap#/camera \\
    --masks m/   # a comment
.venv/bin/python -m build_engine --triton-repo models/ && scripts/triton-server.sh start models/ | cat
x --engine "$(.venv/bin/python -m build_engine --precision int8)" 2>/dev/null
""")
    cmds = dx.shell_commands(block)
    assert [c.tokens for c in cmds] == [
        [".venv/bin/pspnet-rt", "--video", "drive.mcap#/camera", "--masks", "m/"],
        [".venv/bin/python", "-m", "build_engine", "--triton-repo", "models/"],
        ["scripts/triton-server.sh", "start", "models/"], ["cat"],
        [".venv/bin/python", "-m", "build_engine", "--precision", "int8"],
        ["x", "--engine", dx.SUBSTITUTION]]
    assert cmds[2].is_made_here("models") and not cmds[1].is_made_here("models")
    assert cmds[2].ours() == ("serving.triton_server", ["start", "models/"])


# ------------------------------------------------------------------------------ paths, modules, links
@pytest.mark.parametrize("doc", DOCS, ids=DOC_IDS)
def test_repository_paths_and_links_exist(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    problems = [f"{_rel(doc)}:{n}: {path} is not in the repository"
                for n, path in dx.repository_paths(text) if not (ROOT / path).exists()]
    for n, target in dx.links(doc):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        where = (doc.parent / file).resolve() if file else doc
        if not where.is_relative_to(ROOT):
            problems.append(f"{_rel(doc)}:{n}: {target} is outside the repository")
        elif not where.exists():
            problems.append(f"{_rel(doc)}:{n}: {target} does not exist")
        elif anchor and where.suffix == ".md" and anchor not in dx.anchors(where):
            problems.append(f"{_rel(doc)}:{n}: {target}: no heading #{anchor} there")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", DOCS, ids=DOC_IDS)
def test_module_references_resolve(doc: Path) -> None:
    """`runtime.naming.redact_source`, `python -m benchmarks.latency`: the module and the name exist."""
    packages = "|".join(sorted(dx.PACKAGES))
    problems = []
    for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        refs = re.findall(rf"`(?:[^`]*?-m )?((?:{packages})(?:\.[A-Za-z_]\w*)+)[`(]", line)
        refs += re.findall(rf"-m ((?:{packages})(?:\.\w+)*)", line)
        problems += [f"{_rel(doc)}:{n}: {ref}: {why}" for ref in refs
                     if (why := dx.dotted_reference_problem(ref))]
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------ figures
@pytest.mark.parametrize("doc", DOCS, ids=DOC_IDS)
def test_every_figure_says_when_and_where_it_was_measured(doc: Path) -> None:
    """A table of measured figures (or a results/ plot) sits in a section that gives the date
    (YYYY-MM-DD) and the machine; machines are named beside their figures, never in a heading
    (a heading cannot speak for every figure under it)."""
    problems = []
    for section in dx.sections(doc):
        if re.search(r"EPYC|Xeon|Zen \d|AVX|VNNI|\d vCPU", section.heading):
            problems.append(f"{_rel(doc)}:{section.line}: a machine in a heading "
                            f"({section.heading.strip()}): say it beside each figure instead")
        figures = dx.figure_tables(section) + dx.result_plots(section)
        lacks = [what for what, rx in (("a date", dx.DATE), ("a machine", dx.MACHINE))
                 if not rx.search(section.text)]
        if figures and lacks:
            problems.append(f"{_rel(doc)}:{section.line} ({section.heading.strip() or 'top'}): figures "
                            f"{figures[0][:60]!r} without {' and '.join(lacks)}")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------ python, json, yaml
def _python_blocks() -> list[Block]:
    return [b for b in dx.all_blocks() if b.lang == "python"]


def _runnable_python() -> list[Block]:
    """The Python examples that need nothing (the first of docs/python-api.md: test_python_api.py)."""
    api_first = next(b for b in dx.blocks(ROOT / "docs" / "python-api.md") if b.lang == "python")
    return [b for b in _python_blocks() if not b.needs and b.where != api_first.where]


@pytest.mark.parametrize("block", _python_blocks(), ids=lambda b: b.where)
def test_python_examples_name_only_what_exists(block: Block) -> None:
    """Every Python example compiles, defines every name it uses (ruff's pyflakes rules) and imports
    names the project has; those that need nothing also run (test_python_examples_run)."""
    compile(block.text, block.where, "exec")
    for module, names in re.findall(r"^from ([\w.]+) import ([\w, ]+)$", block.text, flags=re.M):
        path = dx.module_path(module)
        missing = {n.strip() for n in names.split(",")} - dx.defined_names(path) if path else set()
        assert not missing, f"{block.where}: {module} has no {sorted(missing)}"
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.skip("ruff is not installed in this venv")
    r = subprocess.run([str(ruff), "check", "--no-cache", "--isolated", "--select", "F", "--ignore",
                        "F401,F841", "--stdin-filename", "example.py", "-"],
                       input=block.text, capture_output=True, text=True)
    assert r.returncode == 0, f"{block.where}:\n{r.stdout}"


@pytest.mark.parametrize("block", _runnable_python(), ids=lambda b: b.where)
def test_python_examples_run(block: Block, demo_artefacts: dict[str, Path], artefact_dir: Path,
                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run verbatim in a fresh folder whose artefacts/ is the session's (the examples build the
    demo model at the tests' size, so their build is the one the fixture made)."""
    (tmp_path / "artefacts").symlink_to(artefact_dir, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(block.text, block.where, "exec"), {"__name__": "__main__"})


@pytest.mark.parametrize("block", [b for b in dx.all_blocks() if b.lang in ("json", "yaml")],
                         ids=lambda b: b.where)
def test_data_examples_parse(block: Block, tmp_path: Path) -> None:
    if block.lang == "yaml":
        yaml = pytest.importorskip("yaml")
        assert yaml.safe_load(block.text)
        return
    data = json.loads(block.text)
    if "classes" in data:  # a label-set file: the one loader reads it
        from segdata.label_sets import load_label_set

        (tmp_path / "labels.json").write_text(block.text)
        assert len(load_label_set(str(tmp_path / "labels.json")).classes) == len(data["classes"])


# ------------------------------------------------------------------------------ a few run for real
# (doc, the command exactly as written there, what its output shows): cheap ones, each for a kind
# (the run command, the build command, a script). The Python examples run above.
RUN_AS_WRITTEN = [
    ("README.md", ".venv/bin/pspnet-rt --help", "--video"),
    ("README.md", ".venv/bin/python -m build_engine --list-models", "pspnet101_cityscapes"),
    ("docs/install.md", "bash scripts/gpu-check.sh", "gpu-check"),
]


@pytest.mark.parametrize(("doc", "command", "shows"), RUN_AS_WRITTEN, ids=[c for _, c, _ in RUN_AS_WRITTEN])
def test_representative_commands_run_as_written(doc: str, command: str, shows: str, tmp_path: Path) -> None:
    written = [c.text for b in dx.blocks(ROOT / doc) if b.lang == "bash" for c in dx.shell_commands(b)]
    assert command in written, f"{doc} no longer shows `{command}`: update RUN_AS_WRITTEN"
    for name in (".venv", "scripts"):  # a repository root that is a fresh folder: outputs land there
        target = Path(sys.executable).parent.parent if name == ".venv" else ROOT / name
        (tmp_path / name).symlink_to(target, target_is_directory=True)
    r = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"`{command}`: exit {r.returncode}\n{r.stderr[-2000:]}"
    assert shows in r.stdout + r.stderr
