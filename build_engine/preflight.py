"""A build's usage errors that can be known before the model loads, refused up front (exit 2).

Each of these used to surface only after the export (minutes on a large model) or not at all: a
huge --input-size tried to allocate tens of GB and ended in exit 1; --dynamic with fp16/int8 failed
after the export; --backend tensorrt on a machine without TensorRT or a GPU failed after verification.
`check_build` runs when a Builder is made (the Python API and both commands get it);
`check_command` holds the command-line combinations that do nothing or cannot work.
"""

from __future__ import annotations

import argparse
from typing import Protocol

from artefact.fields import MAX_SIDE
from clikit import UsageError


class BuildChoices(Protocol):
    """What `check_build` reads of a build's options (build_engine.api.BuildOptions has them);
    a protocol, so this module needs nothing from the builder it guards."""

    precision: str
    dynamic: bool
    stop_after: str | None

TRITON_OPTIONS = ("triton_name", "triton_variant", "triton_instances", "triton_dynamic_batching",
                  "triton_max_batch")
# what only a build uses: meaningless with --engine (which serves an artefact built before)
CALIBRATION = ("calib_data", "calib_images", "calib_method", "fallback")  # INT8 only
GATE = ("eval_data", "eval_images", "max_miou_drop")  # the accuracy gate of fp16 and int8
BUILD_OPTIONS = ("model", "weights", "precision", "backend", "input_size", "dynamic", "with_logits",
                 "calib_data", "calib_images", "calib_method", "eval_data", "eval_images", "max_miou_drop",
                 "fallback", "workspace_mb", "output", "force", "stop_after")


def check_build(options: BuildChoices, backend: str, height: int, width: int) -> None:
    """UsageError (or TensorRTUnavailable) for a build that cannot work, before any model work."""
    if max(height, width) > MAX_SIDE:
        raise UsageError(f"input size {height}x{width}: each side must be at most {MAX_SIDE} pixels; "
                         "pass a smaller --input-size")
    if options.dynamic and options.precision in ("fp16", "int8"):
        raise UsageError(f"--dynamic builds fp32 only: {options.precision} needs a fixed --input-size "
                         "(calibration and the accuracy gate run at one size); drop --dynamic or pass "
                         "--precision fp32")
    if backend == "tensorrt" and options.stop_after in (None, "compile"):
        from devices import tensorrt_usable

        if not tensorrt_usable():
            from build_engine.tensorrt_builder import INSTALL_HINT, TensorRTUnavailable, import_tensorrt

            import_tensorrt()  # TensorRTUnavailable with the install hint where it is not installed
            raise TensorRTUnavailable(f"TensorRT is installed but no CUDA GPU answers here, so no engine can "
                                      f"be built; build on the machine that will run it ({INSTALL_HINT})")


def check_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """`python -m build_engine` combinations that would be ignored or fail after the work."""
    given = _changed(args, parser, TRITON_OPTIONS)
    if given and not args.triton_repo:
        raise UsageError(f"{given[0]} only applies with --triton-repo DIR")
    if args.stop_after and args.triton_repo:
        raise UsageError("--stop-after keeps one step's output and writes no artefact, so there is nothing "
                         "to serve: drop --triton-repo or --stop-after")
    unused = {"fp32": CALIBRATION + GATE, "fp16": CALIBRATION}.get(args.precision, ())
    given = _changed(args, parser, unused)
    if given:
        raise UsageError(f"{given[0]} does nothing for --precision {args.precision} (it sets INT8 "
                         "calibration or the accuracy gate of fp16/int8): drop it, or pass --precision int8 "
                         "or auto")
    if args.backend in ("openvino", "onnxruntime") and _changed(args, parser, ("workspace_mb",)):
        raise UsageError(f"--workspace-mb sizes TensorRT's builder workspace; it does nothing for --backend "
                         f"{args.backend}: drop it")
    if args.engine:
        build_only = _changed(args, parser, BUILD_OPTIONS)
        if build_only:
            raise UsageError(f"--engine serves an artefact built before; {build_only[0]} only applies to a "
                             "build (drop it, or drop --engine to build)")


def _changed(args: argparse.Namespace, parser: argparse.ArgumentParser, dests: tuple[str, ...]) -> list[str]:
    """The options among `dests` given a value other than their default, as the user spells them."""
    return [f"--{d.replace('_', '-')}" for d in dests if getattr(args, d) != parser.get_default(d)]
