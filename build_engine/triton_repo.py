"""A Triton Inference Server model repository for an artefact, so every camera can be a client.

    DIR/NAME/config.pbtxt          platform per backend: tensorrt_plan, onnxruntime_onnx, openvino
    DIR/NAME/1/model.{plan,onnx,xml+bin}
    DIR/NAME/pspnet-rt.json        a copy of the manifest (also carried in the config's parameters)
    DIR/NAME-python/config.pbtxt   backend "python": runs pspnet-rt's own runtime backend
    DIR/NAME-python/1/model.py     (our template, never generated from input) + the artefact itself

The manifest travels inside the config as the parameter `pspnet_rt_manifest` (compact JSON), so a
client (`pspnet-rt --engine triton://HOST:PORT/NAME`) reads classes, palette, mean/std and hashes
from the server and needs nothing else. Every config written is parsed back with Triton's own
schema (`ModelConfig` + `text_format.Parse`, which rejects unknown fields) before it lands.

The artefacts are batch 1 (a dynamic batch dimension does not survive the Resize of the fused
graph), so native models declare `max_batch_size: 0` and cannot be batched by Triton. The Python
variant can: with dynamic batching, Triton hands one `execute()` several requests and the model
feeds them to the runtime backend's async slots together.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artefact import ownership
from artefact.manifest import ArtefactError, Manifest, load_manifest

log = logging.getLogger(__name__)

MANIFEST_PARAMETER = "pspnet_rt_manifest"  # compact JSON of the artefact's manifest
ARTEFACT_PARAMETER = "pspnet_rt_artefact"  # python variant: the manifest file in 1/
HINT_PARAMETER = "pspnet_rt_hint"  # python variant: OpenVINO performance hint inside the server
REQUESTS_PARAMETER = "pspnet_rt_requests"  # python variant: runtime backend requests in flight
MANIFEST_COPY = "pspnet-rt.json"
PYTHON_SUFFIX = "-python"
TEMPLATE = Path(__file__).with_name("triton_python_model.py")
NATIVE = {  # backend -> (config key, value, file in 1/)
    "tensorrt": ("platform", "tensorrt_plan", "model.plan"),
    "onnxruntime": ("platform", "onnxruntime_onnx", "model.onnx"),
    "openvino": ("backend", "openvino", "model.xml"),
}
VARIANTS = ("auto", "native", "python", "both")
# Measured on the 2-core CPU box with the INT8 demo artefact (benchmarks/serving.py, docs/serving.md): one
# instance without dynamic batching served the most frames per second at 1, 2 and 4 streams (2
# instances, or dynamic batching, split the two cores between requests and lost 15-40 %).
DEFAULT_INSTANCES = 1
DEFAULT_MAX_BATCH = 4
INSTALL_TRITON = "pip install 'pspnet-rt[triton]'"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class RepositoryError(ArtefactError):
    """A repository that cannot be written as asked; the message says what to change."""


class RepositoryWriteError(RuntimeError):
    """Writing a model folder failed part way (disk full, folder gone): a runtime failure; the
    model folders that were there are unchanged and no staged folder is left."""


def check_repository(repo: str | Path) -> None:
    """--triton-repo can be written: checked before a build, so a long build never ends on it."""
    from artefact.files import probe_writable

    try:
        probe_writable(repo)
    except OSError as exc:
        raise RepositoryError(f"cannot write --triton-repo {repo}: {exc.strerror or exc}; "
                              "choose a writable folder") from None


@dataclass
class RepoOptions:
    """How the artefact is served; the defaults follow benchmarks/serving.py on CPU."""

    name: str | None = None  # model name in the repository (default: the manifest's model)
    variant: str = "auto"  # auto = python + native for openvino/onnxruntime, native for tensorrt
    instances: int = DEFAULT_INSTANCES
    dynamic_batching: bool = False
    max_batch_size: int = DEFAULT_MAX_BATCH  # python variant with dynamic batching only
    max_queue_delay_us: int = 500
    hint: str | None = None  # python variant's OpenVINO hint; None = latency for one instance without
    # batching (one request at a time gets every core), else throughput (the instances share the cores)
    requests: int | None = None  # python variant: runtime backend requests (default: its own)


def model_config_pb2() -> Any:
    """Triton's schema module (from tritonclient), or a one-line error naming the extra."""
    try:
        from tritonclient.grpc import model_config_pb2 as pb
    except ImportError as exc:
        raise RepositoryError(f"writing a Triton repository needs tritonclient ({INSTALL_TRITON}): "
                              f"{exc}") from None
    return pb


def validate_config(text: str) -> Any:
    """Parse config.pbtxt text with Triton's schema; unknown fields and bad values fail."""
    from google.protobuf import text_format

    pb = model_config_pb2()
    try:
        return text_format.Parse(text, pb.ModelConfig())
    except text_format.ParseError as exc:
        raise RepositoryError(f"config.pbtxt does not fit Triton's schema: {exc}") from None


def manifest_parameter(manifest: Manifest) -> str:
    return json.dumps(manifest.to_dict(), separators=(",", ":"), sort_keys=True)


def _tensor_dims(manifest: Manifest, batched: bool) -> tuple[list[int], list[int], list[int]]:
    """(image, labels, logits) dims; without Triton batching the leading 1 is part of the shape."""
    h, w = (-1, -1) if manifest.dynamic_shape else manifest.input_size
    lead = [] if batched else [1]
    return [*lead, h, w, 3], [*lead, h, w], [*lead, len(manifest.classes), h, w]


def build_config(manifest: Manifest, name: str, variant: str, options: RepoOptions) -> Any:
    """The ModelConfig message of one model (native or python) for this artefact."""
    pb = model_config_pb2()
    python = variant == "python"
    batched = python and options.dynamic_batching
    config = pb.ModelConfig(name=name, max_batch_size=options.max_batch_size if batched else 0)
    if python:
        config.backend = "python"
    else:
        key, value, filename = NATIVE[manifest.backend]
        setattr(config, key, value)
        config.default_model_filename = filename
    image, labels, logits = _tensor_dims(manifest, batched)
    config.input.add(name=manifest.input_name, data_type=pb.TYPE_UINT8, dims=image)
    config.output.add(name=manifest.output_name, data_type=pb.TYPE_UINT8, dims=labels)
    if manifest.logits_name and not python:  # the runtime backends return class maps only
        config.output.add(name=manifest.logits_name, data_type=pb.TYPE_FP32, dims=logits)
    if manifest.confidence_name:  # uint8 like the labels, same dims (both variants serve it)
        config.output.add(name=manifest.confidence_name, data_type=pb.TYPE_UINT8, dims=labels)
    gpu = manifest.backend == "tensorrt" and not python
    kind = pb.ModelInstanceGroup.KIND_GPU if gpu else pb.ModelInstanceGroup.KIND_CPU
    config.instance_group.add(kind=kind, count=options.instances)
    if batched:
        config.dynamic_batching.max_queue_delay_microseconds = options.max_queue_delay_us
    config.parameters[MANIFEST_PARAMETER].string_value = manifest_parameter(manifest)
    if python:
        config.parameters[ARTEFACT_PARAMETER].string_value = Path(manifest.path).name
        config.parameters[HINT_PARAMETER].string_value = options.hint or (
            "latency" if options.instances == 1 and not options.dynamic_batching else "throughput")
        if options.requests:
            config.parameters[REQUESTS_PARAMETER].string_value = str(options.requests)
    return config


def config_text(config: Any) -> str:
    """config.pbtxt text, checked by parsing it back with the schema (round trip must be exact)."""
    from google.protobuf import text_format

    text = text_format.MessageToString(config)
    if validate_config(text) != config:
        raise RepositoryError(f"config.pbtxt of {config.name} did not survive a parse round trip")
    return text


def variants_for(backend: str, variant: str) -> list[str]:
    """The models written for an artefact of `backend` (native, python)."""
    if variant not in VARIANTS:
        raise RepositoryError(f"unknown Triton variant {variant!r}; choose {', '.join(VARIANTS)}")
    if variant in ("python", "both") and backend == "tensorrt":
        raise RepositoryError("the python variant runs OpenVINO or ONNX Runtime artefacts inside the "
                              "server; serve a TensorRT engine natively (--triton-variant native)")
    if variant == "auto":
        return ["native"] if backend == "tensorrt" else ["native", "python"]
    return ["native", "python"] if variant == "both" else [variant]


def model_names(name: str, variants: list[str]) -> list[tuple[str, str]]:
    """(variant, model folder name): NAME, and NAME-python beside a native one."""
    return [(v, name + (PYTHON_SUFFIX if v == "python" and len(variants) > 1 else "")) for v in variants]


def check_options(name: str, backend: str, options: RepoOptions) -> list[tuple[str, str]]:
    """Everything about the repository options that can be known from the model name and backend
    alone (so `python -m build_engine --triton-repo` refuses them before a build): the variants'
    (variant, folder name) pairs, or RepositoryError."""
    if not _NAME.match(name):
        raise RepositoryError(f"Triton model name {name!r} must be letters, digits, '_', '.', '-'")
    if options.instances < 1 or options.max_batch_size < 1:
        raise RepositoryError("--triton-instances and --triton-max-batch must be at least 1")
    variants = variants_for(backend, options.variant)
    if options.dynamic_batching and variants == ["native"]:
        raise RepositoryError(f"a {backend} artefact is batch 1, so Triton cannot batch it natively; "
                              "drop --triton-dynamic-batching or use --triton-variant python")
    return model_names(name, variants)


def check_model_folder(folder: Path) -> None:
    """RepositoryError (exit 2) unless `folder` is free or a model folder wholly ours (every file in
    it written by pspnet-rt and unchanged): we never replace a user's versions, notes or files."""
    if not os.path.lexists(folder):
        return
    if folder.is_symlink() or not folder.is_dir():
        raise RepositoryError(f"{folder} exists and is not a model folder pspnet-rt wrote (a file or a "
                              "link); it is left alone: move it away or pass --triton-name NAME")
    foreign = ownership.foreign_in_tree(folder)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise RepositoryError(f"{folder} holds what pspnet-rt did not write or what changed since ({shown}); "
                              "it is left alone: move those away or pass --triton-name NAME")


def check_target(repo: str | Path, name: str, backend: str, options: RepoOptions) -> None:
    """Before a build: the repository takes files, and the model folders we would replace are ours."""
    pairs = check_options(name, backend, options)
    check_repository(repo)
    model_config_pb2()  # tritonclient installed
    for _, model_name in pairs:
        check_model_folder(Path(repo) / model_name)


def _artefact_files(manifest: Manifest) -> list[Path]:
    return [manifest.model_path, *(manifest.model_path.parent / c for c in manifest.companion_files)]


def _stage_native(manifest: Manifest, folder: Path) -> None:
    version = folder / "1"
    version.mkdir(parents=True)
    _, _, filename = NATIVE[manifest.backend]
    shutil.copyfile(manifest.model_path, version / filename)
    for companion in manifest.companion_files:  # OpenVINO: NAME.bin -> model.bin beside model.xml
        shutil.copyfile(manifest.model_path.parent / companion,
                        version / (Path(filename).stem + Path(companion).suffix))


def _stage_python(manifest: Manifest, folder: Path) -> None:
    version = folder / "1"
    version.mkdir(parents=True)
    shutil.copyfile(TEMPLATE, version / "model.py")
    for path in _artefact_files(manifest):
        shutil.copyfile(path, version / path.name)
    shutil.copyfile(manifest.path, version / Path(manifest.path).name)


def _replace_dir(staged: Path, target: Path) -> None:
    """Swap a finished model folder in; the old one (checked to be wholly ours) goes only once the
    new one is in place, and only if it is still wholly ours."""
    old = None
    if os.path.lexists(target):
        check_model_folder(target)
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        os.rename(target, old)  # over the empty folder mkdtemp made: a name no one else holds
    try:
        os.rename(staged, target)
    except OSError:
        if old is not None:
            os.rename(old, target)
        raise
    if old is not None and not ownership.remove_tree_if_ours(old):
        log.warning("%s was replaced; what it held that pspnet-rt did not write is kept in %s", target, old)


def check_published(repo: str | Path, models: list[str] | None = None) -> None:
    """RepositoryError (exit 2) if a model folder we wrote (it holds our ownership record) has a file
    missing or changed since: a server must not serve what no hash vouches for. Checked before a
    server starts; model folders that are not ours are the user's business."""
    repo = Path(repo)
    for folder in sorted(p for p in repo.iterdir() if (p / ownership.RECORD).is_file()):
        if models is not None and folder.name not in models:
            continue
        changed = ownership.changed_in_tree(folder)
        if changed:
            raise RepositoryError(f"{folder / changed[0]} is missing or changed since pspnet-rt wrote it "
                                  f"(its sha256 does not match {folder / ownership.RECORD}); write the model "
                                  "again with `python -m build_engine --engine ARTEFACT.json --triton-repo "
                                  f"{repo}`")


def sweep_repository(repo: Path) -> None:
    """Under the repository's lock: remove what a writer that died left, where it is provably ours:
    staged folders (marked as ours) and replaced model folders (wholly ours). Nothing else."""
    for path in repo.iterdir():
        if not path.name.startswith("."):
            continue
        if ownership.remove_work_dir(path) or (".old." in path.name and ownership.remove_tree_if_ours(path)):
            log.info("removed %s, left by a repository writer that did not finish", path)
        elif ".old." in path.name and path.is_dir() and not path.is_symlink():
            with contextlib.suppress(OSError):
                path.rmdir()  # only if empty: a writer died between naming it and moving into it


def _write_model(manifest: Manifest, repo: Path, model_name: str, variant: str, text: str) -> Path:
    """Stage the model folder (marked as ours while it fills), list its files in its ownership
    record, swap it in."""
    staged = Path(tempfile.mkdtemp(prefix=f".{model_name}.", dir=repo))
    try:
        ownership.mark_work_dir(staged, "triton model")
        (_stage_python if variant == "python" else _stage_native)(manifest, staged)
        (staged / "config.pbtxt").write_text(text)
        (staged / MANIFEST_COPY).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
        ownership.unmark_work_dir(staged)
        ownership.record_tree(staged, "triton model")
        os.chmod(staged, 0o755)
        _replace_dir(staged, repo / model_name)
    finally:
        shutil.rmtree(staged, ignore_errors=True)  # gone already unless something failed
    return repo / model_name


def _require_rules_pass(manifest: Manifest) -> None:
    """A `tensorrt_plan` model must come from a graph that passed TensorRT's parser rules
    (build_engine/tensorrt_rules.py, recorded by every TensorRT build): an engine built before the
    check, or by hand, says nothing about the graph it came from."""
    if manifest.backend != "tensorrt":
        return
    rules = manifest.verification.get("tensorrt_graph_rules") or {}
    if rules.get("result") != "pass":
        raise RepositoryError(f"{Path(manifest.path).name} does not record a passing TensorRT "
                              "graph-rules check (verification.tensorrt_graph_rules); rebuild it "
                              "with `python -m build_engine --backend tensorrt`")


def write_repository(manifest_path: str | Path, repo: str | Path,
                     options: RepoOptions | None = None) -> list[Path]:
    """Write (or replace) the artefact's models in repository `repo`; returns their folders."""
    options = options or RepoOptions()
    manifest = load_manifest(manifest_path)
    manifest.verify_file()  # never publish a file whose hash does not match its manifest
    pairs = check_options(options.name or manifest.model, manifest.backend, options)
    _require_rules_pass(manifest)
    _require_agreement(manifest)
    repo = Path(repo)
    check_repository(repo)
    written = []
    with ownership.folder_lock(repo, waiting=f"another writer is updating {repo}; waiting for it"):
        sweep_repository(repo)
        for _, model_name in pairs:  # all refused before any is written
            check_model_folder(repo / model_name)
        for variant, model_name in pairs:
            text = config_text(build_config(manifest, model_name, variant, options))
            try:
                written.append(_write_model(manifest, repo, model_name, variant, text))
            except OSError as exc:
                raise RepositoryWriteError(f"cannot write Triton model {model_name} into {repo}: "
                                           f"{exc.strerror or exc}; the models there are unchanged") from None
            if options.dynamic_batching and variant == "native":
                log.warning("%s: native model written without dynamic batching (the artefact is batch 1)",
                            model_name)
    return written


def _require_agreement(manifest: Manifest) -> None:
    """Publish only a manifest that describes its model file (input size, dynamic shape, class count:
    the server's config and every client take them from it). Read where this machine can."""
    from runtime.backends import check_model_agrees

    if not check_model_agrees(manifest):
        log.warning("%s: the model file could not be read here (%s), so the manifest's input size and "
                    "classes were not checked against it", manifest.path, manifest.backend)


def _model_name(text: str) -> str:
    """--triton-name: a name Triton takes as a folder of the repository (no path, no spaces)."""
    if not _NAME.match(text):
        raise argparse.ArgumentTypeError(f"{text!r}: a Triton model name is letters, digits, '_', '.', '-'")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The --triton-* options, shared by `python -m build_engine` and this module's CLI."""
    import clikit

    g = parser.add_argument_group("Triton model repository")
    g.add_argument("--triton-repo", metavar="DIR",
                   type=clikit.output_dir("a folder for the model repository"),
                   help="also write a Triton model repository for the artefact to DIR")
    name = clikit.option_type("a Triton model name", good="demo", bad=("", "../x", "a b", "-x"))(_model_name)
    g.add_argument("--triton-name", metavar="NAME", type=name,
                   help="model name in the repository (default: the model)")
    g.add_argument("--triton-variant", choices=VARIANTS, default="auto",
                   help="native (platform of the backend), python (our runtime inside Triton, what the "
                        "CPU-only Triton of nvidia-pytriton serves) or both; auto = both for OpenVINO/ORT "
                        "artefacts (the python one named NAME-python), native for TensorRT")
    g.add_argument("--triton-instances", type=clikit.int_in(1, 256), default=DEFAULT_INSTANCES, metavar="N",
                   help=f"instance_group count (default {DEFAULT_INSTANCES}: the fastest in "
                        "benchmarks.serving on the 2-core CPU box; more where the server has more "
                        "cores or GPUs)")
    g.add_argument("--triton-dynamic-batching", action="store_true",
                   help="python variant: let Triton group requests (slower than without on the 2-core "
                        "CPU box, see docs/serving.md)")
    g.add_argument("--triton-max-batch", type=clikit.int_in(1, 1024), default=DEFAULT_MAX_BATCH, metavar="B",
                   help="max_batch_size of the python variant with dynamic batching")


def options_from_args(args: argparse.Namespace) -> RepoOptions:
    return RepoOptions(name=args.triton_name, variant=args.triton_variant, instances=args.triton_instances,
                       dynamic_batching=args.triton_dynamic_batching, max_batch_size=args.triton_max_batch)


def report(folders: list[Path]) -> None:
    for folder in folders:
        print(f"triton model {folder.name}: {folder}", file=sys.stderr)


EXAMPLES = """\
examples:
  python -m build_engine.triton_repo --engine ~/.cache/pspnet-rt/artefacts/demo-240x480-fp32-openvino.json \\
      --triton-repo models/
      models/demo (backend openvino) and models/demo-python (CPU Triton) for an existing artefact
  python -m build_engine --precision int8 --backend openvino --triton-repo models/
      build (or find in the cache) the artefact, then write its repository

exit codes: 0 ok, 2 bad input (artefact, options, tritonclient missing)
"""


PROG = "python -m build_engine.triton_repo"


def build_parser() -> argparse.ArgumentParser:
    import clikit

    parser = clikit.parser(PROG, "Write a Triton model repository for an existing artefact.", EXAMPLES)
    parser.add_argument("--engine", required=True, metavar="ARTEFACT.json",
                        type=clikit.input_file("an artefact manifest"), help="the artefact's manifest")
    add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    import clikit

    def body(args: argparse.Namespace) -> int:
        if not args.triton_repo:
            raise clikit.UsageError("--triton-repo DIR is required")
        report(write_repository(args.engine, args.triton_repo, options_from_args(args)))
        print(Path(args.triton_repo))
        return clikit.EXIT_OK

    return clikit.run(PROG, build_parser(), body, argv, usage=(ArtefactError,),
                      failure=(RepositoryWriteError,))


if __name__ == "__main__":
    raise SystemExit(main())
