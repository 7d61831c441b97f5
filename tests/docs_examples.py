"""The project's docs as a test reads them: the fenced blocks of README.md and docs/*.md, what each
block says it needs, the shell commands in it (continuations joined, `&&` `|` `;` split, `$(...)`
read as commands of their own), which of them are ours, links, repository paths, dotted module
references and the figures. tests/test_docs.py holds all of it to the rules in the README's
"How the commands are written".

Why a reader of our own and not a Markdown library: the rules are about fences, info strings and
shell words, which a few lines read exactly; a Markdown AST would add a dependency and still need
the shell splitting below.
"""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ".venv/bin/"

# what a block may say it needs (```bash needs=gpu,data): the words a reader sees, and all a test
# needs to know that the block cannot run on a fresh clone by itself
NEEDS = {
    "gpu": "an NVIDIA GPU with TensorRT",
    "camera": "a camera or a live stream (cam0, rtsp://, udp://, http://)",
    "data": "your own data: frames, a video, a data set, a bag or an ONNX file",
    "weights": "your own weights (a checkpoint, a .pth or a .h5)",
    "server": "a server of your own (Triton, PostgreSQL, a Prometheus to scrape)",
    "docker": "Docker with NVIDIA's container toolkit",
    "kubernetes": "a Kubernetes cluster with KServe",
    "display": "a display (a window opens)",
}
# fenced block languages: bash is run or parsed, python run or linted, json/yaml parsed, text shown
LANGUAGES = {"bash", "python", "json", "yaml", "text"}
# commands that are not ours: the test does not parse them, but those that only work with something
# the reader must bring make the block say so
FOREIGN_NEEDS = {"docker": "docker", "kubectl": "kubernetes"}
# the bare names the convention replaces (README: every command is written as run from the
# repository root after the setup command, with the venv's own programs)
BARE = {"python", "python3", "pspnet-rt", "pytest", "pip", "pip3", "ruff"}
SHELL_OPERATORS = {"&&", "||", "|", ";", "&"}
REDIRECTS = {">", ">>", "<", "2>", "&>"}
SUBSTITUTION = "made-by-a-command"  # what a $(...) word reads as


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int  # of the opening fence, 1-based
    lang: str
    needs: tuple[str, ...]
    text: str
    info: str = ""

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


@dataclass
class Command:
    """One simple command of a shell block: `tokens` after environment assignments, `made` the
    words of the commands before it in the same block (what they may have written)."""

    block: Block
    text: str
    tokens: list[str]
    made: set[str] = field(default_factory=set)
    nested: bool = False  # came from a $(...) substitution

    @property
    def where(self) -> str:
        return self.block.where

    def ours(self) -> tuple[str, list[str]] | None:
        """(module, argv) for a command of this project whose arguments a parser can check."""
        t = self.tokens
        if not t:
            return None
        if t[0] == VENV_BIN + "pspnet-rt":
            return "runtime.cli", t[1:]
        if t[0] == VENV_BIN + "python" and len(t) > 2 and t[1] == "-m":
            return command_module(t[2]), t[3:]
        script = script_of(t)
        if script:
            module = script_module(script)
            return (module, t[2:] if t[0] == "bash" else t[1:]) if module else None
        return None

    def is_made_here(self, value: str) -> bool:
        """`value` is a path an earlier command of the block wrote (or a substitution's output)."""
        if SUBSTITUTION in value:
            return True
        value = value.rstrip("/")
        made = {m.rstrip("/") for m in self.made}
        return any(value == m or value.startswith(m + "/") for m in made if m and m != ".")


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with its info string read as `LANG [needs=a,b]`."""
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info, start = m["fence"], m["info"].strip(), i
        body: list[str] = []
        i += 1
        while i < len(lines) and not (lines[i].strip().startswith(fence) and not lines[i].strip()[len(fence):]
                                      .strip()):
            body.append(lines[i])
            i += 1
        words = info.split()
        lang = words[0] if words else ""
        needs: list[str] = []
        for word in words[1:]:
            if word.startswith("needs="):
                needs += [n for n in word[len("needs="):].split(",") if n]
        found.append(Block(path, start + 1, lang, tuple(needs), "\n".join(body) + "\n", info))
        i += 1
    return found


def all_blocks() -> list[Block]:
    return [b for doc in doc_files() for b in blocks(doc)]


def prose(path: Path) -> str:
    """The file with its fenced blocks blanked out (line numbers kept)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    spans = [(b.line - 1, b.line + b.text.count("\n")) for b in blocks(path)]
    for start, end in spans:
        for k in range(start, min(end + 1, len(lines))):
            lines[k] = ""
    return "\n".join(lines)


# ------------------------------------------------------------------------------ shell commands
def _strip_comment(line: str) -> str:
    """Cut a shell comment: '#' at the start of a word, outside quotes (not drive.mcap#/topic)."""
    quote = ""
    for k, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (k == 0 or line[k - 1].isspace()):
            return line[:k]
    return line


def logical_lines(text: str) -> list[str]:
    """Backslash continuations joined, comments cut, blank lines dropped."""
    out: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = _strip_comment(raw)
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            out.append(line)
    if pending.strip():
        out.append(pending.strip())
    return out


def _words(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    lexer.commenters = ""
    return list(lexer)


def _simple_commands(words: list[str]) -> Iterator[list[str]]:
    current: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        if word in SHELL_OPERATORS:
            if current:
                yield current
            current = []
        elif word in REDIRECTS:
            if current and current[-1].isdigit():
                current.pop()
            skip = True
        else:
            current.append(word)
    if current:
        yield current


SUBST = re.compile(r"\$\(([^()]*)\)")


def shell_commands(block: Block) -> list[Command]:
    """The simple commands of a bash block in order; a `$(...)` is a command of its own, and the
    word holding it reads as SUBSTITUTION."""
    commands: list[Command] = []
    made: set[str] = set()
    for line in logical_lines(block.text):
        for inner in SUBST.findall(line):
            for words in _simple_commands(_words(inner)):
                commands.append(Command(block, inner, _skip_assignments(words), set(made), nested=True))
        for words in _simple_commands(_words(SUBST.sub(SUBSTITUTION, line))):
            tokens = _skip_assignments(words)
            commands.append(Command(block, " ".join(words), tokens, set(made)))
            made |= set(tokens)
    return commands


def _skip_assignments(words: list[str]) -> list[str]:
    k = 0
    while k < len(words) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[k]):
        k += 1
    return words[k:]


def script_of(tokens: list[str]) -> str | None:
    """The repository script a command runs (`bash scripts/x.sh`, `scripts/x.sh`, `.venv/bin/python
    scripts/x.py`), or None."""
    if tokens[0] in ("bash", "sh", VENV_BIN + "python") and len(tokens) > 1 and not tokens[1].startswith("-"):
        return tokens[1]
    if "/" in tokens[0] and not tokens[0].startswith(VENV_BIN) and tokens[0].endswith((".sh", ".py")):
        return tokens[0]
    return None


def script_module(script: str) -> str | None:
    """The module a wrapper script hands its arguments to (`exec "$PY" -m serving.triton_server "$@"`)."""
    path = ROOT / script
    if not path.is_file():
        return None
    m = re.search(r'-m\s+([\w.]+)\s+"\$@"', path.read_text(encoding="utf-8"))
    return m.group(1) if m else None


def command_module(module: str) -> str:
    """The module whose build_parser() parses `python -m MODULE`'s arguments (a package's
    __main__ hands over to one: `from build_engine.cli import main`)."""
    path = module_path(module)
    if path is not None and path.name == "__init__.py":
        main = path.parent / "__main__.py"
        if main.is_file():
            m = re.search(r"^from ([\w.]+) import main", main.read_text(encoding="utf-8"), re.M)
            if m:
                return m.group(1)
    return module


# ------------------------------------------------------------------------------ modules and paths
PACKAGES = {p.parent.name for p in ROOT.glob("*/__init__.py")}


def module_path(module: str) -> Path | None:
    """The file of a project module (`runtime.naming` -> runtime/naming.py), or None."""
    parts = module.split(".")
    if parts[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*parts)
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def defined_names(path: Path) -> set[str]:
    """Top-level names a module defines or imports (what `module.NAME` may refer to)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Name):
                        names.add(sub.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.If, ast.Try)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.FunctionDef, ast.ClassDef)):
                    names.add(sub.name)
                elif isinstance(sub, (ast.Import, ast.ImportFrom)):
                    names |= {(a.asname or a.name).split(".")[0] for a in sub.names}
                elif isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                    names.add(sub.id)
    return names


def dotted_reference_problem(ref: str) -> str | None:
    """Why `pkg.module.NAME` does not resolve in this repository, or None when it does."""
    parts = ref.split(".")
    for k in range(len(parts), 0, -1):
        path = module_path(".".join(parts[:k]))
        if path is None:
            continue
        if k == len(parts):
            return None
        if parts[k] in defined_names(path) or module_path(".".join(parts[: k + 1])):
            return None
        return f"{'.'.join(parts[:k])} has no {parts[k]}"
    return f"no module {ref}"


def top_level_entries() -> set[str]:
    """The repository's top-level folders (a path starting with one of them is a repository path)."""
    return {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")
            and p.name not in ("build", "dist", "artefacts", "runs", "gpu-check")
            and not p.name.endswith(".egg-info") and p.name != "__pycache__"} | {".ci"}


def is_placeholder(path: str) -> bool:
    """NAME_backend.py, DIR/x, RUN/split, <model>, a glob, '...': a pattern, not a path."""
    if any(c in path for c in "*<>{}[]$") or "..." in path:
        return True
    return any(re.fullmatch(r"[A-Z][A-Z0-9_]*", seg.split(".")[0]) or re.match(r"^[A-Z]{2,}_", seg)
               or re.search(r"_[A-Z]{2,}(\.|$)", seg) for seg in path.split("/") if seg)


def repository_paths(text: str) -> Iterator[tuple[int, str]]:
    """(line, path) for every word that starts with a top-level folder of the repository."""
    tops = "|".join(re.escape(t) for t in sorted(top_level_entries(), key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w./~:@-])((?:{tops})/[\w.*{{}}<>/@+-]*)")
    for n, line in enumerate(text.splitlines(), 1):
        for m in pattern.finditer(line):
            path = m.group(1).rstrip(".,:;)")
            if not is_placeholder(path):
                yield n, path


# ------------------------------------------------------------------------------ links
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def links(path: Path) -> Iterator[tuple[int, str]]:
    for n, line in enumerate(prose(path).splitlines(), 1):
        for m in LINK.finditer(line):
            yield n, m.group(1)


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in prose(path).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


# ------------------------------------------------------------------------------ figures
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")
MACHINE = re.compile(r"AMD EPYC|Intel (Core|Xeon)|Xeon|Apple M\d|Jetson \w+|Graviton|"
                     r"NVIDIA (T4|[AHL]\d+|RTX|GeForce|Jetson)|Tesla \w+")
MEASURED_HEADER = re.compile(r"\b(ms|FPS|MB|GB|mIoU|GMAC|GMAC/s|RSS|speed-up|install|agreement|drop|s/epoch|"
                             r"seconds|frames)\b|%|\bx eager\b|×", re.I)


@dataclass(frozen=True)
class Section:
    doc: Path
    line: int
    heading: str
    text: str


def sections(path: Path) -> list[Section]:
    """The file cut at its headings (fenced blocks stay inside their section)."""
    out: list[Section] = []
    text = prose(path).splitlines()
    raw = path.read_text(encoding="utf-8").splitlines()
    start, heading = 0, ""
    for n, line in enumerate([*text, "# end"]):
        if re.match(r"^#{1,6}\s", line):
            if n > start or heading:
                out.append(Section(path, start + 1, heading, "\n".join(raw[start:n])))
            start, heading = n, line
    return out


MEASURED_CELL = re.compile(r"\d\.\d+\s?(ms|FPS|MB|GB|GMAC/s|%)|\bx\d\.\d+|\d+ / \d+ ms|\d+ MB\b")


def figure_tables(section: Section) -> list[str]:
    """The header rows of the section's tables that hold measured figures: a column named for one
    (ms, FPS, mIoU, ...), or rows most of which hold a measured-looking number (`347 / 472 ms`,
    `x1.15`, `99.95 %`; limits and settings are rarely written with decimals)."""
    lines = section.text.splitlines()
    found = []
    for k in range(len(lines) - 1):
        header, rule = lines[k].strip(), lines[k + 1].strip()
        if not (header.startswith("|") and re.fullmatch(r"\|(\s*:?-{3,}:?\s*\|)+", rule)):
            continue
        body = []
        for line in lines[k + 2:]:
            if not line.strip().startswith("|"):
                break
            body.append(line)
        measured = sum(bool(MEASURED_CELL.search(row)) for row in body)
        if MEASURED_HEADER.search(header) or (body and measured * 2 >= len(body)):
            found.append(header)
    return found


def result_plots(section: Section) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(((?:\.\./)?results/[^)]+)\)", section.text)
