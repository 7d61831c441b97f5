"""Our TF-checkpoint import against the TF seed's own network and inference code (slow; needs TF).

Runs scripts/tf_seed_check.py: the seed's model.py/inference.py under tf.compat.v1 in a separate
reference venv, random weights saved by its own Saver, our fused ONNX built from that checkpoint
folder, pixel agreement >= 99.9 % at the seed's sizes (PSPNet50-ADE20K 473, PSPNet101-Cityscapes
720, the KITTI fork's 3-class PSPNet101 720). TensorFlow is never a dependency of the project:
without the reference venv (make it with `python scripts/tf_seed_check.py`, which installs it) or
without the seeds' code (no network here: point PSPNET_RT_TF_SEED / PSPNET_RT_TF_FORK at a
checkout or git dir), the test skips and says why.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).parents[1] / "scripts" / "tf_seed_check.py"


def _script():
    spec = importlib.util.spec_from_file_location("tf_seed_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_fused_onnx_agrees_with_the_tf_seeds_own_inference(tmp_path: Path) -> None:
    check = _script()
    tfref = check.default_tfref()
    python = tfref / "venv" / "bin" / "python"
    if not python.is_file() or subprocess.run([str(python), "-c", "import tensorflow, tf_keras"],
                                              capture_output=True).returncode != 0:
        pytest.skip(f"no reference venv with TensorFlow at {tfref}/venv (set PSPNET_RT_TFREF, or make it "
                    f"with `python {SCRIPT.relative_to(SCRIPT.parents[1])}`)")
    work = tfref / "work"
    sources = {}
    for repo, env in (("seed", "PSPNET_RT_TF_SEED"), ("fork", "PSPNET_RT_TF_FORK")):
        given = os.environ.get(env)
        if given:
            sources[repo] = given
        elif (work / "code" / repo / "model.py").is_file():
            sources[repo] = str(work / "code" / repo)
        else:
            pytest.skip(f"the {repo}'s code is not here: set {env} to a checkout or git dir of "
                        f"{check.SEED_URL if repo == 'seed' else check.FORK_URL}")
    rc = check.main(["--no-setup", "--tfref", str(tfref), "--seed-repo", sources["seed"],
                     "--fork-repo", sources["fork"], "--out", str(tmp_path)])
    report = json.loads((tmp_path / "tf_seed_agreement.json").read_text())
    got = {r["case"]: r["agreement"] for r in report["results"]}
    assert set(got) == {"ade20k", "cityscapes", "kitti"}
    assert rc == 0 and all(a >= 0.999 for a in got.values()), got
    sizes = {r["case"]: (r["model"], r["input_size"]) for r in report["results"]}
    assert sizes == {"ade20k": ("pspnet50_ade20k_tf", [473, 473]),
                     "cityscapes": ("pspnet101_cityscapes_tf", [720, 720]),
                     "kitti": ("pspnet101_kitti_road_tf", [720, 720])}
