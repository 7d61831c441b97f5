"""`python -m build_engine.shipped_ranges`: write (or --check) the INT8 calibration ranges a model ships.

A generated file (`ModelSpec.shipped_ranges_path`, e.g. pspnet/weights/demo_synthetic.ranges.json),
so that the model's first INT8 build calibrates nothing (calib/ranges.py). This command exports
the model exactly as a build does, calibrates on the model's own calibration frames, and writes
one record per method keyed by the FP32 graph's sha256, the frames and the method's settings.
Any change to the export (the exporter, onnxslim, the weights, torch) changes the sha256: the
builder then recalibrates by itself, and `--check` (run by tests/test_shipped_ranges.py) exits 1
until this command has been run again and its output committed.

examples:
  python -m build_engine.shipped_ranges                 # rewrite the demo model's file
  python -m build_engine.shipped_ranges --check         # 0: up to date, 1: stale (says why)
  python -m build_engine.shipped_ranges --methods percentile,minmax
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import clikit
from artefact.files import atomic_write_json, sha256_file

PROG = "python -m build_engine.shipped_ranges"
METHODS = ("entropy", "minmax", "percentile")


def current_key_parts(model: str, work: Path) -> tuple[Path, str, str]:
    """(the FP32 graph INT8 calibrates, its sha256, the frames' generated name) as a default
    INT8 build of `model` at its native size would compute them."""
    from artefact.manifest import LABELS_NAME
    from build_engine.api import Builder, BuildOptions
    from calib.options import PrecisionOptions
    from calib.precision import final_graph
    from calib.sources import generated_id
    from pspnet.zoo import get_spec

    spec = get_spec(model)
    if not spec.calibration:
        raise clikit.UsageError(f"model {model} ships no calibration frames (ModelSpec.calibration)")
    report = Builder(BuildOptions(model=model, precision="fp32", backend="onnxruntime", output=str(work),
                                  stop_after="verify")).run()
    verified = Path(json.loads(report.read_text())["onnx"])
    base = final_graph(verified, work / "base.onnx", [LABELS_NAME])
    h, w = spec.input_size
    frames = generated_id(spec.calibration, PrecisionOptions.calib_images, h, w, seed=0,
                          default_split="calib")
    if frames is None:
        raise clikit.UsageError(f"{spec.calibration} is not a generated source: only those can be shipped")
    return base, sha256_file(base), frames


def stale(model: str, path: Path, sha: str, frames: str, methods: list[str]) -> str | None:
    """Why the shipped file does not fit the current export (None: it does)."""
    from calib.ranges import key_for, records_in

    if not path.is_file():
        return f"{path} does not exist"
    records = records_in(path)
    for method in methods:
        key = key_for(sha, frames, method)
        if not any(key.matches(r) for r in records):
            have = sorted({r.get("onnx_sha256", "?")[:16] for r in records})
            return (f"{path} has no {method} record for the current export of {model} (FP32 graph sha256 "
                    f"{sha[:16]}, frames {frames}; the file has {', '.join(have) or 'nothing'})")
    return None


def write(model: str, base: Path, sha: str, frames: str, methods: list[str], work: Path) -> Path:
    from calib import ranges
    from calib.options import PrecisionOptions
    from calib.quantize import calibrate, preprocess
    from calib.sources import load_frames
    from pspnet.zoo import get_spec

    spec = get_spec(model)
    h, w = spec.input_size
    pre = preprocess(base, work / "pre.onnx")
    calibset = load_frames(spec.calibration, PrecisionOptions.calib_images, h, w, seed=0,
                           default_split="calib")
    records: list[dict[str, Any]] = []
    for method in methods:
        calibrate(pre, calibset.frames, method, work / f"{method}.calib")
        records.append(ranges.make_record(ranges.key_for(sha, frames, method),
                                          ranges.read_ort_cache(work / f"{method}.calib"),
                                          calibset.describe(), calibset.frame_sha1()))
    path = spec.shipped_ranges_path
    atomic_write_json(path, {"format": ranges.FORMAT, "generated_by": f"{PROG} --model {model}",
                             "note": "generated file: rerun the command above when the export changes",
                             "records": records})
    return path


def build_parser() -> argparse.ArgumentParser:
    p = clikit.parser(PROG, __doc__.split("\n\nexamples:")[0], "examples:" + __doc__.split("examples:")[1])
    p.add_argument("--model", default="demo", type=clikit.non_empty("a model zoo name"),
                   help="a zoo model with ModelSpec.calibration (default demo)")
    p.add_argument("--methods", type=clikit.csv_list(METHODS), default=["percentile"],
                   help="calibration methods to ship (default: percentile, the builder's default)")
    p.add_argument("--check", action="store_true", help="only say whether the shipped file is current")
    clikit.add_verbose(p)
    return p


def _body(args: argparse.Namespace) -> int:
    from pspnet.zoo import get_spec

    path = get_spec(args.model).shipped_ranges_path
    if path is None:
        raise clikit.UsageError(f"model {args.model} has no shipped weights to ship ranges beside")
    with tempfile.TemporaryDirectory(prefix="pspnet-ranges.") as tmp:
        base, sha, frames = current_key_parts(args.model, Path(tmp))
        why = stale(args.model, path, sha, frames, args.methods)
        if args.check:
            if why:
                return clikit.fail(PROG, f"stale: {why}; regenerate with `{PROG} --model {args.model}`",
                                   clikit.EXIT_FAIL)
            print(f"{path}: current (FP32 graph sha256 {sha[:16]}, frames {frames})")
            return clikit.EXIT_OK
        print(write(args.model, base, sha, frames, args.methods, Path(tmp)), flush=True)
    return clikit.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    return clikit.run(PROG, build_parser(), _body, argv, quiet=("torch",))


if __name__ == "__main__":
    sys.exit(main())
