"""The rooms' import rules (docs/architecture.md), checked on the source: imports go downwards,
the runtime never reaches the build side, and the build side uses only the runtime's seams."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOOR = {"artefact", "segdata", "devices", "clikit"}
# what of the runtime the build side may use: the owners of model loading, of source URIs and of
# naming a source (the one redaction of secrets in URLs)
RUNTIME_SEAMS = {"runtime.backends", "runtime.sources", "runtime.errors", "runtime.naming"}


def imports(folder: str) -> dict[str, set[str]]:
    """module file -> every module it imports (at any depth: lazy imports count too)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / folder).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def test_the_floor_imports_only_the_floor() -> None:
    project = FLOOR | {"runtime", "build_engine", "calib", "pspnet", "benchmarks"}
    for folder in FLOOR:
        for path, names in imports(folder).items():
            above = {n for n in names if n.split(".")[0] in project - FLOOR}
            assert not above, f"{path} imports {sorted(above)}"


def test_the_runtime_never_imports_the_build_side() -> None:
    build_side = ("build_engine", "calib", "pspnet", "torch", "benchmarks")
    for path, names in imports("runtime").items():
        build = {n for n in names if n.split(".")[0] in build_side}
        assert not build, f"{path} imports {sorted(build)} (ask for builds through runtime/default_build.py)"


def test_the_build_side_uses_only_the_runtime_seams() -> None:
    for folder in ("build_engine", "calib"):
        for path, names in imports(folder).items():
            inside = {n for n in names if n.split(".")[0] == "runtime" and n not in RUNTIME_SEAMS}
            assert not inside, f"{path} reaches into {sorted(inside)}; use runtime.backends' public API"
