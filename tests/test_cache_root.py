"""$PSPNET_RT_CACHE has one reader (artefact.files.cache_root): set, unset and empty."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = ("from build_engine.api import DEFAULT_OUTPUT; from segdata.clip_cache import cache_dir; "
         "from serving.triton_server import CACHE; print(DEFAULT_OUTPUT, cache_dir(), CACHE, sep='|')")


def _paths(value: str | None) -> list[Path]:
    env = {k: v for k, v in os.environ.items() if k != "PSPNET_RT_CACHE"}
    if value is not None:
        env["PSPNET_RT_CACHE"] = value
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                         check=True, cwd="/", timeout=120).stdout.strip()
    return [Path(p) for p in out.split("|")]


def test_the_variable_moves_every_cache(tmp_path):
    assert _paths(str(tmp_path)) == [tmp_path / "artefacts", tmp_path / "clips", tmp_path]


def test_unset_or_empty_means_the_home_cache_never_the_current_folder():
    home = Path.home() / ".cache" / "pspnet-rt"
    expected = [home / "artefacts", home / "clips", home]
    assert _paths(None) == expected
    assert _paths("") == expected
