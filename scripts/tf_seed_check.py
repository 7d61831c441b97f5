"""Our TF-checkpoint import against the TF seed's own code: pixel agreement of the fused ONNX with
the seed's inference.py, at the seed's own sizes.

What it does, end to end (nothing of the seed is committed here; it is fetched into --work):
1. a SEPARATE reference venv with tensorflow-cpu + tf-keras (never a dependency of the project)
   at --tfref (default $PSPNET_RT_TFREF or ~/.cache/pspnet-rt/tfref), made when absent;
2. the seed's code (hellochick/PSPNet-tensorflow) and its KITTI-road fork
   (watsoncm/PSPNet-tensorflow): a checkout folder, a git dir, or a URL to clone;
3. per case, in the reference venv (scripts/tf_seed/seed_side.py): the seed's network built as its
   train.py builds it, random weights, saved by its own tf.train.Saver (optimizer slots included),
   then its own inference.py main() on images at the crop size -> class ids;
4. the checkpoint folder is moved (its `checkpoint` file then names a path that no longer exists,
   as with a downloaded folder), and `build_engine` builds an FP32 ONNX Runtime artefact from the
   folder with no --model (everything read from the checkpoint), which runs on the same images;
5. pixel agreement per image and case -> --out/tf_seed_agreement.{json,md}; exit 1 below --min.

  python scripts/tf_seed_check.py                     # all cases, cloning the seeds from GitHub
  python scripts/tf_seed_check.py --seed-repo /path/to/PSPNet-tensorflow --fork-repo /path/to/fork
  python scripts/tf_seed_check.py --cases kitti       # one case
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SEED_URL = "https://github.com/hellochick/PSPNet-tensorflow"
FORK_URL = "https://github.com/watsoncm/PSPNet-tensorflow"
REFERENCE_PACKAGES = ["tensorflow-cpu==2.21.0", "tf-keras==2.21.0", "scipy", "pillow", "numpy"]
# name: (repo, seed net, classes, crop, optimizer, inference.py --dataset, seed images)
CASES = {
    "ade20k": ("seed", "PSPNet50", 150, 473, "momentum", "ade20k",
               ["input/indoor_1.jpg", "input/indoor_2.jpg"]),
    "cityscapes": ("seed", "PSPNet101", 19, 720, "momentum", "cityscapes",
                   ["input/test_720x720.png", "input/test1.png"]),
    "kitti": ("fork", "PSPNet101", 3, 720, "adam", "kitti",
              ["input/test_720x720.png", "input/test_1024x2048.png"]),
}


def default_tfref() -> Path:
    return Path(os.environ.get("PSPNET_RT_TFREF", Path.home() / ".cache" / "pspnet-rt" / "tfref"))


def reference_python(tfref: Path, setup: bool = True) -> Path:
    """The reference venv's python, with TensorFlow importable; made (pip) when `setup`."""
    python = tfref / "venv" / "bin" / "python"
    probe = [str(python), "-c", "import tensorflow, tf_keras, scipy"]
    if python.is_file() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    if not setup:
        raise SystemExit(f"no reference venv with TensorFlow at {tfref}/venv")
    tfref.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(tfref / "venv")], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *REFERENCE_PACKAGES], check=True)
    return python


def seed_code(source: str, dest: Path) -> Path:
    """The seed's files in `dest`: from a checkout folder, a git dir (archive of HEAD), or a URL."""
    if (dest / "model.py").is_file():
        return dest
    src = Path(source).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    if (src / "model.py").is_file():
        shutil.copytree(src, dest, dirs_exist_ok=True)
    elif src.is_dir():  # a git dir (bare mirror or .git)
        archive = subprocess.run(["git", "--git-dir", str(src), "archive", "HEAD"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    else:
        shutil.rmtree(dest)
        subprocess.run(["git", "clone", "--depth", "1", "-q", source, str(dest)], check=True)
    return dest


def case_images(code: Path, images: list[str], crop: int, work: Path) -> list[Path]:
    """The seed's own sample images at the crop size (PNG): the size its inference.py pads to, so
    neither side pads and both see the same pixels."""
    out = []
    for rel in images:
        image = cv2.imread(str(code / rel))
        if image is None:
            raise SystemExit(f"cannot read the seed's image {code / rel}")
        path = work / f"{Path(rel).stem}_{crop}.png"
        cv2.imwrite(str(path), cv2.resize(image, (crop, crop), interpolation=cv2.INTER_AREA))
        out.append(path)
    return out


def run_case(name: str, python: Path, codes: dict[str, Path], work: Path) -> dict:
    from build_engine.api import build_artefact
    from runtime.backends import artefact_runner

    repo, net, classes, crop, optimizer, dataset, images = CASES[name]
    code = codes[repo]
    side = [str(python), str(ROOT / "scripts" / "tf_seed" / "seed_side.py")]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    saved = work / "saved" / name
    moved = work / "downloaded" / name
    t0 = time.perf_counter()
    pngs = case_images(code, images, crop, work)
    outs = {png: work / f"{name}-{png.stem}.seed.npy" for png in pngs}
    cached = all(o.is_file() and Path(str(o).replace(".npy", ".logits.npy")).is_file() for o in outs.values())
    if not (cached and (moved / "checkpoint").is_file()):  # a run cut short: this case from scratch
        shutil.rmtree(moved, ignore_errors=True)
        shutil.rmtree(saved, ignore_errors=True)
        for o in outs.values():
            o.unlink(missing_ok=True)
        subprocess.run([*side, "save", str(code), str(saved), "--net", net, "--classes", str(classes),
                        "--size", str(crop), "--optimizer", optimizer, "--step", "1234"], check=True, env=env,
                       stdout=subprocess.DEVNULL)
    seed_ids = {}
    for png, out in outs.items():
        if not out.is_file():
            subprocess.run([*side, "infer", str(code), str(saved), str(png), str(out), "--dataset", dataset,
                            "--classes", str(classes)], check=True, env=env, stdout=subprocess.DEVNULL)
        seed_ids[png] = (np.load(out), np.load(str(out).replace(".npy", ".logits.npy")))
    if saved.exists():  # as downloaded: `checkpoint` now names a path that does not exist
        moved.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(moved, ignore_errors=True)
        saved.rename(moved)
    tf_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    manifest_path = build_artefact("demo", "fp32", "onnxruntime", output=work / "artefacts",
                                   weights=str(moved), verify_frames=1, with_logits=True)
    manifest = json.loads(Path(manifest_path).read_text())
    build_seconds = time.perf_counter() - t0
    per_image = {}
    with artefact_runner(manifest_path) as runner:
        for png, (ids, seed_logits) in seed_ids.items():
            labels, logits = runner.predict(cv2.imread(str(png)))
            logits = logits.transpose(1, 2, 0)  # CHW -> the seed's HWC
            top2 = np.sort(seed_logits, -1)[..., -2:]
            per_image[png.name] = {
                "agreement": float((labels == ids).mean()), "pixels": int(ids.size),
                "logits_max_abs_diff": float(np.abs(logits - seed_logits).max()),
                "logits_rel_err": float(np.abs(logits - seed_logits).max() / np.abs(seed_logits).max()),
                "seed_near_ties": float(((top2[..., 1] - top2[..., 0]) < 1e-4).mean()),
                "seed_classes_present": len(np.unique(ids)),
                "top_class_share": float(np.bincount(ids.ravel()).max() / ids.size)}
    equal = sum(v["agreement"] * v["pixels"] for v in per_image.values())
    total = sum(v["pixels"] for v in per_image.values())
    return {"case": name, "seed_repo": repo, "net": net, "classes": classes, "crop": crop,
            "optimizer_slots": optimizer, "model": manifest["model"], "input_size": manifest["input_size"],
            "mean": manifest["mean"], "std": manifest["std"], "channel_order": manifest["channel_order"],
            "label_set": manifest.get("label_set"), "agreement": equal / total,
            "logits_rel_err": max(v["logits_rel_err"] for v in per_image.values()), "images": per_image,
            "seed_seconds": round(tf_seconds, 1), "build_seconds": round(build_seconds, 1)}


def markdown(results: list[dict], minimum: float) -> str:
    rows = ["| case | seed code | model (from the checkpoint) | size | label set | mean (BGR) | images | "
            "classes in the seed's maps | max logit error (rel.) | pixel agreement |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        mean = ", ".join(f"{m:g}" for m in r["mean"])
        rows.append(f"| {r['case']} | {r['seed_repo']} {r['net']} ({r['optimizer_slots']} slots) | "
                    f"{r['model']} | {r['crop']}x{r['crop']} | {r['label_set']} | {mean} | "
                    f"{len(r['images'])} | "
                    f"{', '.join(str(v['seed_classes_present']) for v in r['images'].values())} | "
                    f"{r['logits_rel_err']:.1e} | {r['agreement'] * 100:.3f} % |")
    return ("# TF seed checkpoints: our fused ONNX vs the seed's own inference.py\n\n"
            f"Produced by `python scripts/tf_seed_check.py`; random weights saved by the seed's own Saver, "
            f"images at the crop size, FP32 ONNX Runtime. Required: >= {minimum * 100:.1f} %.\n\n"
            + "\n".join(rows) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed-repo", default=SEED_URL,
                   help="hellochick/PSPNet-tensorflow: folder, git dir or URL")
    p.add_argument("--fork-repo", default=FORK_URL, help="watsoncm/PSPNet-tensorflow: folder, git dir or URL")
    p.add_argument("--tfref", type=Path, default=default_tfref(), help="reference venv home (made if absent)")
    p.add_argument("--work", type=Path, help="work folder (default: TFREF/work)")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated: {', '.join(CASES)}")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "tf_seed", help="folder for the JSON/MD")
    p.add_argument("--min", type=float, default=0.999, help="required pixel agreement (0.999)")
    p.add_argument("--no-setup", action="store_true", help="fail instead of making the reference venv")
    args = p.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    python = reference_python(args.tfref, setup=not args.no_setup)
    work = args.work or args.tfref / "work"
    work.mkdir(parents=True, exist_ok=True)
    needed = {CASES[c][0] for c in cases}
    codes = {repo: seed_code(args.seed_repo if repo == "seed" else args.fork_repo, work / "code" / repo)
             for repo in sorted(needed)}
    results = []
    for case in cases:
        result = run_case(case, python, codes, work)
        print(f"{case}: {result['agreement'] * 100:.3f} % pixel agreement ({result['model']}, "
              f"{result['crop']}x{result['crop']}, {len(result['images'])} images)", flush=True)
        results.append(result)
    args.out.mkdir(parents=True, exist_ok=True)
    version = subprocess.run([str(python), "-c", "import tensorflow as t; print(t.__version__)"],
                             capture_output=True, text=True).stdout.strip()
    report = {"min_agreement": args.min, "tensorflow": version, "results": results}
    (args.out / "tf_seed_agreement.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "tf_seed_agreement.md").write_text(markdown(results, args.min))
    return 0 if all(r["agreement"] >= args.min for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
