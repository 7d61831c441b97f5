"""`python -m build_engine`: model -> fused ONNX -> FP32/FP16/INT8 artefact for a backend."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

from clikit import ArgumentParser
from clikit import types as t
from clikit.signals import Interrupted, StopSignals

COUNT = t.integer(1, 100_000)

EXAMPLES = """\
examples:
  python -m build_engine --precision fp16
      the shipped demo model, FP16, on the best backend here (TensorRT > OpenVINO > ORT)
  python -m build_engine --precision int8 --calib-data synthetic:calib:200 --calib-method minmax
      INT8 with real calibration frames; fails if mIoU drops more than --max-miou-drop
  python -m build_engine --model pspnet101_cityscapes --weights train_epoch_200.pth \\
      --precision fp32 --backend openvino
      an hszhao/semseg checkpoint at its native 713x713
  python -m build_engine --weights pspnet50_ade20k.h5 --precision fp32
      the seeds' Keras weights (model inferred from the file)
  python -m build_engine --list-models

prints the path of the artefact's manifest (model file + NAME.json beside it). What was in
--output stays valid until the new artefact, complete and verified, replaces it: a failed or
interrupted build changes nothing there.
exit codes: 0 ok, 1 build failed (verification, accuracy gate, disk full), 2 bad input,
130 Ctrl-C, 143 SIGTERM, 129 SIGHUP
"""


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m build_engine", description=__doc__,
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="demo", type=t.text("a model zoo name"),
                   help="model zoo name (default: the shipped demo model)")
    p.add_argument("--weights", type=t.input_file("a checkpoint file"),
                   help="checkpoint: semseg .pth (module. prefixes fine) or a seed .h5")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32")
    p.add_argument("--backend", choices=("auto", "tensorrt", "openvino", "onnxruntime"),
                   default="auto", help="auto = tensorrt with a GPU, else openvino, else onnxruntime")
    p.add_argument("--input-size", type=t.size("HxW"), metavar="HxW",
                   help="export size (default: the model's native size)")
    p.add_argument("--dynamic", action="store_true", help="dynamic H/W input (exact pyramid pooling)")
    p.add_argument("--with-logits", action="store_true", help="also output float logits")
    p.add_argument("--calib-data", metavar="SRC", type=t.text("a calibration source"),
                   help="calibration frames: folder, glob, video, dataset or synthetic:calib:N "
                        "(default: a synthetic calibration clip)")
    p.add_argument("--calib-images", type=COUNT, default=200, metavar="N")
    p.add_argument("--calib-method", choices=("entropy", "minmax", "percentile"), default="percentile",
                   help="percentile (default: best agreement with FP32 on the demo model; see README), "
                        "entropy (KL, 2048 bins as TensorRT), minmax")
    p.add_argument("--eval-data", metavar="SRC", type=t.text("an evaluation source"),
                   help="held-out labelled frames for the accuracy gate (default: synthetic:val)")
    p.add_argument("--eval-images", type=COUNT, default=48, metavar="N")
    p.add_argument("--max-miou-drop", type=t.number(at_least=0, at_most=100), default=1.0, metavar="POINTS",
                   help="fail an fp16/int8 build whose mIoU drops more than this vs FP32")
    p.add_argument("--fallback", action="store_true",
                   help="INT8: keep the most sensitive blocks in float until the gate passes")
    p.add_argument("--workspace-mb", type=t.integer(1, 1 << 20), default=1024,
                   help="TensorRT builder workspace")
    p.add_argument("--output", metavar="DIR", type=t.output_dir("a folder for the artefact"),
                   help="artefact folder (default: CACHE/artefacts, where CACHE is $PSPNET_RT_CACHE "
                        "or ~/.cache/pspnet-rt)")
    p.add_argument("--force", action="store_true", help="rebuild even if a cached artefact matches")
    p.add_argument("--list-models", action="store_true", help="list the model zoo and exit")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


def list_models() -> None:
    from pspnet.zoo import REGISTRY

    for spec in REGISTRY.values():
        h, w = spec.input_size
        print(f"{spec.name:28s} R{spec.depth:<4d} {spec.num_classes:4d} classes {h}x{w:<6d} "
              f"{spec.description}")


def main(argv: list[str] | None = None) -> int:
    signals = StopSignals("build_engine").install()  # first: Ctrl-C while torch imports is handled too
    try:
        return _main(argv)
    except Interrupted as exc:
        print(f"interrupted by {exc}: nothing was changed in the output folder (a previous artefact "
              "there is intact)", file=sys.stderr)
        return exc.code
    finally:
        signals.restore()


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * args.verbose,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("torch").setLevel(logging.ERROR)
    if args.list_models:
        list_models()
        return 0
    try:
        from build_engine.api import Builder, BuildOptions
    except ImportError as exc:
        print(f"error: building needs the export extra ({exc.name} missing): "
              "pip install -e .[export]", file=sys.stderr)
        return 2
    from artefact.manifest import ArtefactError
    from build_engine.errors import BuildError, OutputDirError, SizeError
    from build_engine.tensorrt_builder import TensorRTUnavailable
    from calib.precision import GateFailed
    from calib.sources import CalibrationError
    from pspnet.errors import CheckpointError
    from segdata.frames import FrameError

    options = BuildOptions(
        model=args.model, weights=args.weights, precision=args.precision, backend=args.backend,
        input_size=args.input_size, dynamic=args.dynamic, with_logits=args.with_logits,
        output=args.output, force=args.force, calib_data=args.calib_data,
        calib_images=args.calib_images, calib_method=args.calib_method, eval_data=args.eval_data,
        eval_images=args.eval_images, max_miou_drop=args.max_miou_drop, fallback=args.fallback,
        workspace_mb=args.workspace_mb,
        command=shlex.join(["python", "-m", "build_engine", *(sys.argv[1:] if argv is None else argv)]),
    )
    usage_errors = (CheckpointError, SizeError, KeyError, FrameError, TensorRTUnavailable,
                    ArtefactError, FileNotFoundError, CalibrationError, OutputDirError)
    try:
        from segdata.datasets import DatasetError

        usage_errors = (*usage_errors, DatasetError)
    except ImportError:
        pass
    unchanged = "nothing was changed in the output folder"
    try:
        path = Builder(options).run()
    except usage_errors as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
        return 2
    except (GateFailed, BuildError) as exc:
        print(f"build failed: {' '.join(str(exc).split())}; {unchanged}", file=sys.stderr)
        return 1
    except NotImplementedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, a folder gone: the old artefact is still there
        where = f" {exc.filename}" if exc.filename else ""
        print(f"build failed: cannot write{where}: {exc.strerror or exc}; {unchanged}", file=sys.stderr)
        return 1
    except Exception as exc:
        if args.verbose:
            import traceback

            traceback.print_exc()
        print(f"build failed: {type(exc).__name__}: {' '.join(str(exc).split())}; {unchanged} "
              "(-v for the traceback)", file=sys.stderr)
        return 1
    print(path)
    return 0
