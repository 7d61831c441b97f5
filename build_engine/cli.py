"""`python -m build_engine`: model -> fused ONNX -> FP32/FP16/INT8 artefact for a backend."""

from __future__ import annotations

import argparse
import shlex
import sys

import clikit
from artefact.fields import MAX_SIDE
from build_engine.api import STEPS  # torch-free at import: torch loads in the export step
from build_engine.option_rules import arg

EXAMPLES = """\
examples:
  python -m build_engine
      the shipped demo model on the best backend here (TensorRT > OpenVINO > ORT), at the fastest
      precision that passes the accuracy gate (INT8 on the demo model's own calibration frames)
  python -m build_engine --precision fp16
  python -m build_engine --precision int8 --calib-data synthetic:calib:200 --calib-method minmax
      INT8 with real calibration frames; fails if mIoU drops more than --max-miou-drop
  python -m build_engine --model pspnet101_cityscapes --weights train_epoch_200.pth \\
      --precision fp32 --backend openvino
      an hszhao/semseg checkpoint at its native 713x713
  python -m build_engine --weights pspnet50_ade20k.h5 --precision fp32
      the 2017 baselines' Keras weights (model inferred from the file)
  python -m build_engine --weights model/cityscapes_train/ --precision fp32
      the TF seed's checkpoint (model.ckpt-N prefix, any of its files, or its folder): PSPNet101
      Cityscapes at the seed's crop 720x720, BGR minus the Caffe mean
  python -m build_engine --model pspnet101_kitti_road_tf --weights snapshots/model.ckpt-3500
      the KITTI-road fork's 3-class checkpoint with its own mean (void, not road, road)
  python -m build_engine --weights my_ckpt/ --classes my_labels.json --mean 89.6,96.4,93.6
      any class count: names, colours and ignore index from a label-set file (see docs/weights.md)
  python -m build_engine --precision int8 --backend onnxruntime --stop-after quantize
      keep the INT8 Q/DQ graph (and its gate report) to look at, e.g. in Netron
  python -m build_engine --precision int8 --confidence --flip
      an artefact that also returns the per-pixel confidence, with flip at inference (2x compute)
  python -m build_engine --list-models
  python -m build_engine --precision int8 --backend openvino --triton-repo models/
      the artefact plus a Triton model repository: models/demo (backend openvino) and
      models/demo-python (our runtime inside Triton: what the CPU-only server serves)
  python -m build_engine --engine ARTEFACT.json --triton-repo models/
      a repository for an artefact built before (no build, no torch needed)

prints the path of the artefact's manifest (model file + NAME.json beside it). What was in
--output stays valid until the new artefact, complete and verified, replaces it: a failed or
interrupted build changes nothing there (and leaves no temp folder).
exit codes: 0 ok, 1 build failed (verification, accuracy gate, disk full), 2 bad input,
130 Ctrl-C, 143 SIGTERM, 129 SIGHUP
"""
UNCHANGED = "nothing was changed in the output folder"
PROG = "build_engine"


def build_parser() -> argparse.ArgumentParser:
    p = clikit.parser("python -m build_engine", __doc__, EXAMPLES)
    p.add_argument("--model", default="demo", **arg("model"),
                   help="model zoo name (default: the shipped demo model)")
    p.add_argument("--weights", **arg("weights"),
                   help="checkpoint: semseg/our .pth, the Keras seed's .h5, or a TF seed checkpoint "
                        "(model.ckpt-N, any of its files, or its folder); the format is read from the "
                        "content (docs/weights.md)")
    p.add_argument("--classes", metavar="FILE|NAME", **arg("classes"),
                   help="label set: a JSON (or YAML) file with names, colours and ignore_index, or a "
                        "built-in name (cityscapes, ade20k, voc2012, kitti-road, kitti-road-binary, ...); "
                        "default: the model's, or the one a pspnet.train checkpoint carries")
    p.add_argument("--mean", metavar="A,B,C", **arg("mean"),
                   help="per-channel mean the weights were trained with, in the model's channel order "
                        "(the manifest's channel_order: BGR for the seeds' weights); default: the model's")
    p.add_argument("--std", metavar="A,B,C", **arg("std"),
                   help="per-channel std, same order (1,1,1 for the seeds' weights); default: the model's")
    p.add_argument("--precision", **arg("precision"), default="auto",
                   help="auto (default): the fastest precision that passes the accuracy gate on this "
                        "backend (int8, else fp16/bf16, else fp32); int8 only with calibration frames "
                        "(the demo model ships its own, else --calib-data). The manifest says why")
    p.add_argument("--backend", **arg("backend"),
                   default="auto", help="auto = tensorrt with a GPU, else openvino, else onnxruntime")
    p.add_argument("--input-size", **arg("input_size"), metavar="HxW",
                   help=f"export size (default: the model's native size; at most {MAX_SIDE} a side)")
    p.add_argument("--dynamic", action="store_true", help="dynamic H/W input (exact pyramid pooling)")
    p.add_argument("--with-logits", action="store_true", help="also output float logits")
    p.add_argument("--confidence", action="store_true",
                   help="also output the per-pixel confidence: the largest softmax probability of the "
                        "resized logits as uint8 (255 = 1.0), computed in the graph (pspnet-rt "
                        "--confidence DIR, --visualize confidence); recorded in the manifest")
    p.add_argument("--flip", action="store_true",
                   help="flip at inference: the graph averages the logits of the image and of its "
                        "mirror (the TF seed's --flipped-eval); twice the network's work, usually a "
                        "small mIoU gain (docs/benchmarks.md); recorded in the manifest")
    p.add_argument("--calib-data", metavar="SRC", **arg("calib_data"),
                   help="calibration frames: folder, glob, video, dataset or synthetic:calib:N "
                        "(default: a synthetic calibration clip)")
    p.add_argument("--calib-images", **arg("calib_images"), default=200, metavar="N")
    p.add_argument("--calib-method", **arg("calib_method"), default="percentile",
                   help="percentile (default: best agreement with FP32 on the demo model; see "
                        "docs/measurements.md), entropy (KL, 2048 bins as TensorRT), minmax")
    p.add_argument("--eval-data", metavar="SRC", **arg("eval_data"),
                   help="held-out labelled frames for the accuracy gate (default: synthetic:val)")
    p.add_argument("--eval-images", **arg("eval_images"), default=48, metavar="N")
    p.add_argument("--max-miou-drop", **arg("max_miou_drop"), default=1.0,
                   metavar="POINTS",
                   help="fail an fp16/int8 build whose mIoU drops more than this vs FP32")
    p.add_argument("--fallback", action="store_true",
                   help="INT8: keep the most sensitive blocks in float until the gate passes")
    p.add_argument("--workspace-mb", **arg("workspace_mb"), default=1024,
                   help="TensorRT builder workspace")
    p.add_argument("--output", metavar="DIR", **arg("output"),
                   help="artefact folder (default: CACHE/artefacts, where CACHE is $PSPNET_RT_CACHE "
                        "or ~/.cache/pspnet-rt)")
    p.add_argument("--force", action="store_true", help="rebuild even if a cached artefact matches")
    p.add_argument("--stop-after", choices=STEPS, metavar="STEP",
                   help=f"run the build up to STEP ({', '.join(STEPS)}), keep that step's output in "
                        "--output as NAME.STEP.* (ONNX, JSON report or model file), print its path; no "
                        "manifest is written and the cache is not used")
    p.add_argument("--list-models", action="store_true", help="list the model zoo and exit")
    clikit.add_verbose(p)
    p.add_argument("--engine", metavar="ARTEFACT.json", type=clikit.input_file("an artefact manifest"),
                   help="with --triton-repo: an existing artefact to serve instead of building one")
    from build_engine.triton_repo import add_arguments

    add_arguments(p)
    return p


def list_models() -> None:
    from pspnet.zoo import REGISTRY

    for spec in REGISTRY.values():
        h, w = spec.input_size
        print(f"{spec.name:28s} R{spec.depth:<4d} {spec.num_classes:4d} classes {h}x{w:<6d} "
              f"{spec.description}")


def main(argv: list[str] | None = None) -> int:
    from runtime.naming import redact_source

    # recorded in the manifest (and served by Triton): a --calib-data URL's password stays out of it
    given = sys.argv[1:] if argv is None else argv
    command = redact_source(shlex.join(["python", "-m", "build_engine", *given]))
    parser = build_parser()
    from build_engine.errors import caller

    if caller():  # pspnet-rt's default build: its lines speak for pspnet-rt (runtime/default_build.py)
        parser.prog = caller()
    return clikit.run(caller() or PROG, parser, lambda args: _build(args, command, parser), argv,
                      quiet=("torch",),
                      scrub=redact_source,
                      interrupted=f"interrupted: {UNCHANGED} (a previous artefact there is intact)")


def _build(args: argparse.Namespace, command: str, parser: argparse.ArgumentParser) -> int:
    from runtime.sources import quiet_native_logs

    quiet_native_logs(args.verbose, [args.calib_data, args.eval_data])  # one error line, no OpenCV chatter
    if args.list_models:
        list_models()
        return clikit.EXIT_OK
    from build_engine.preflight import check_command

    check_command(args, parser)  # combinations that would be ignored or fail after the work
    if args.triton_repo:  # before a build, which may take minutes
        from build_engine.triton_repo import RepositoryError, check_repository

        try:
            check_repository(args.triton_repo)
        except RepositoryError as exc:
            raise clikit.UsageError(str(exc)) from None
    if args.engine:
        if not args.triton_repo:
            raise clikit.UsageError("--engine ARTEFACT.json only goes with --triton-repo DIR")
        _write_triton_repo(args, args.engine)
        print(args.triton_repo, flush=True)
        return clikit.EXIT_OK
    try:
        return _run_build(args, command)
    except ImportError as exc:  # torch, onnx, ...: the export extra is not installed
        raise clikit.UsageError(f"building needs the export extra ({exc.name} missing): "
                                "pip install 'pspnet-rt[export]'") from None


def _run_build(args: argparse.Namespace, command: str) -> int:
    from artefact.manifest import ArtefactError
    from build_engine.api import BuildOptions, build
    from build_engine.errors import BuildError, OutputDirError, SizeError
    from build_engine.tensorrt_builder import TensorRTUnavailable
    from calib.fp16_emulation import FP16Overflow
    from calib.precision import GateFailed
    from calib.sources import CalibrationError
    from pspnet.errors import CheckpointError
    from segdata.datasets import DatasetError
    from segdata.frames import FrameError
    from segdata.label_sets import LabelSetError

    options = BuildOptions(
        model=args.model, weights=args.weights, precision=args.precision, backend=args.backend,
        input_size=args.input_size, dynamic=args.dynamic, with_logits=args.with_logits,
        confidence=args.confidence, flip=args.flip,
        output=args.output, force=args.force, calib_data=args.calib_data,
        calib_images=args.calib_images, calib_method=args.calib_method, eval_data=args.eval_data,
        eval_images=args.eval_images, max_miou_drop=args.max_miou_drop, fallback=args.fallback,
        workspace_mb=args.workspace_mb, command=command, stop_after=args.stop_after,
        classes=args.classes, mean=args.mean, std=tuple(args.std) if args.std else None)
    usage_errors = (CheckpointError, SizeError, KeyError, FrameError, TensorRTUnavailable, ArtefactError,
                    FileNotFoundError, CalibrationError, DatasetError, NotImplementedError, OutputDirError,
                    clikit.UsageError, LabelSetError)  # e.g. a backend whose extra is not installed
    try:
        if args.triton_repo:  # the repository's model folders, before a build that may take minutes
            from build_engine.api import Builder
            from build_engine.triton_repo import check_target, options_from_args

            builder = Builder(options)
            check_target(args.triton_repo, args.triton_name or builder.spec.name, builder.backend,
                         options_from_args(args))
        path = build(options)
    except usage_errors as exc:
        raise clikit.UsageError(clikit.message_of(exc)) from None
    except (GateFailed, FP16Overflow, BuildError) as exc:
        return clikit.fail(PROG, f"build failed: {clikit.one_line(str(exc))}; {UNCHANGED}", clikit.EXIT_FAIL)
    except OSError as exc:  # disk full, a folder gone: the previous artefact is still there
        where = f" {exc.filename}" if exc.filename else ""
        return clikit.fail(PROG, f"build failed: cannot write{where}: {exc.strerror or exc}; {UNCHANGED}",
                           clikit.EXIT_FAIL)
    except Exception as exc:  # e.g. the exporter's RuntimeError on a full disk: one line, and what it kept
        if args.verbose:
            import traceback

            traceback.print_exc()
        why = clikit.one_line(clikit.message_of(exc))
        return clikit.fail(PROG, f"build failed: {type(exc).__name__}: {why}; {UNCHANGED}", clikit.EXIT_FAIL)
    if args.triton_repo:
        _write_triton_repo(args, path)
    print(path, flush=True)
    return clikit.EXIT_OK


def _write_triton_repo(args: argparse.Namespace, manifest: object) -> None:
    from artefact.manifest import ArtefactError
    from build_engine.triton_repo import RepositoryWriteError, options_from_args, report, write_repository

    try:
        report(write_repository(manifest, args.triton_repo, options_from_args(args)))
    except ArtefactError as exc:
        raise clikit.UsageError(str(exc)) from None
    except RepositoryWriteError as exc:
        raise clikit.Reported(clikit.fail(PROG, str(exc), clikit.EXIT_FAIL)) from None
