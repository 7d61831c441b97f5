"""No import circles among the project's modules (tests aside): every import counts, lazy ones
inside functions and `if TYPE_CHECKING:` ones too, since each ties two files together as
much as a top-level one does. A circle is reported with the imports that close it."""

from __future__ import annotations

import ast
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = {"tests", ".venv", "build", "dist", "results", ".git"}


def project_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every .py outside the tests (packages by their __init__)."""
    found = {}
    for folder, dirs, files in os.walk(ROOT):
        here = Path(folder)
        dirs[:] = [d for d in dirs if not (here == ROOT and (d in SKIP or d.startswith(".")))
                   and d != "__pycache__"]
        for file in files:
            if not file.endswith(".py"):
                continue
            parts = (here / file).relative_to(ROOT).parts
            names = list(parts[:-1]) + ([] if file == "__init__.py" else [Path(file).stem])
            if names:
                found[".".join(names)] = here / file
    return found


def imported(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `module` imports: `import a.b` -> a.b; `from a import b` -> a.b when b
    is a module, else a; relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in modules else base)
    return {name for name in out if name in modules and name != module}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            part = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                part.append(top)
                if top == node:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_finder_sees_a_circle(tmp_path: Path) -> None:
    """The check itself: a two-module circle through a lazy import is found, a chain is not."""
    graph = {"a": {"b"}, "b": {"c"}, "c": set()}
    assert cycles(graph) == []
    graph["c"] = {"a"}
    assert cycles(graph) == [["a", "b", "c"]]
    (tmp_path / "x.py").write_text("def f():\n    from pkg import y\n")
    modules = {"pkg.x": tmp_path / "x.py", "pkg.y": tmp_path / "y.py", "pkg": tmp_path / "__init__.py"}
    assert imported("pkg.x", modules["pkg.x"], modules) == {"pkg.y"}


def test_no_import_cycles() -> None:
    modules = project_modules()
    assert {"runtime.cli", "runtime.run", "build_engine.api", "calib.precision"} <= set(modules)
    graph = {name: imported(name, path, modules) for name, path in modules.items()}
    found = cycles(graph)
    lines = []
    for part in found:
        ties = [f"{a} -> {b}" for a in part for b in sorted(graph[a]) if b in part]
        lines.append(f"{', '.join(part)}: {'; '.join(ties)}")
    assert not found, "import circles:\n" + "\n".join(lines)
