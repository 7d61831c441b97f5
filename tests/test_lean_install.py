"""Lean installs: the base carries no inference library; a missing backend is one line naming its extra."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def without(modules: list[str], code: str) -> subprocess.CompletedProcess:
    """Run `code` in a child where `modules` cannot be imported, as on a box without that extra."""
    block = "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
    return subprocess.run([sys.executable, "-c", f"import sys\n{block}{code}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def one_line(result: subprocess.CompletedProcess, *needles: str) -> None:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip() and not ln.startswith("build ")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_base_install_has_no_inference_library() -> None:
    tree = ast.parse((ROOT / "setup.py").read_text())
    lists = {t.id: [ast.literal_eval(e) for e in node.value.elts if isinstance(e, ast.Constant)]
             for node in tree.body if isinstance(node, ast.Assign) and isinstance(node.value, ast.List)
             for t in node.targets if isinstance(t, ast.Name)}
    base = " ".join(lists["RUNTIME"])
    assert "numpy" in base and "opencv" in base
    for heavy in ("openvino", "onnxruntime", "tensorrt", "torch"):
        assert heavy not in base, f"{heavy} is in the base install"


def test_runtime_names_the_missing_extra(demo_artefacts: dict[str, Path]) -> None:
    engine = str(demo_artefacts["openvino"])
    code = ("from runtime.cli import main\n"
            f"sys.exit(main(['--video', 'demo', '--demo-frames', '2', '--engine', {engine!r}]))\n")
    result = without(["openvino"], code)
    assert result.returncode == 2
    one_line(result, "pspnet-rt: the openvino backend needs pip install 'pspnet-rt[openvino]'")


def test_builder_names_the_missing_extra(tmp_path: Path) -> None:
    code = ("from build_engine.cli import main\n"
            f"sys.exit(main(['--backend', 'openvino', '--output', {str(tmp_path)!r}]))\n")
    result = without(["openvino"], code)
    assert result.returncode == 2
    one_line(result, "the openvino backend needs pip install 'pspnet-rt[openvino]'")
    code = ("from build_engine.cli import main\n"
            f"sys.exit(main(['--output', {str(tmp_path)!r}]))\n")
    result = without(["openvino", "onnxruntime", "tensorrt"], code)
    assert result.returncode == 2
    one_line(result, "no inference backend is installed", "pspnet-rt[openvino]", "pspnet-rt[onnxruntime]")
    assert not list(tmp_path.iterdir())


def test_auto_backend_picks_among_what_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    from build_engine.environment import resolve_backend

    assert resolve_backend("auto") == "openvino"  # both installed here, no GPU
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert resolve_backend("auto") == "onnxruntime"
