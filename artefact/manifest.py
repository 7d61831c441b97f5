"""The manifest schema (`NAME.json` beside the model file) and its compatibility checks."""

from __future__ import annotations

import json
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from artefact.fields import semantic_problems, type_problem
from artefact.files import atomic_write_json, parse_json_text, sha256_file

MANIFEST_FORMAT = "pspnet-rt/1"
# The fused graph's tensor names: the exporter writes them, every runner and backend reads them.
INPUT_NAME = "image"  # uint8 BGR NHWC 1xHxWx3
LABELS_NAME = "labels"  # uint8 class ids 1xHxW
LOGITS_NAME = "logits"  # float32 1xCxHxW, optional (--with-logits)
CONFIDENCE_NAME = "confidence"  # uint8 1xHxW max softmax probability (255 = 1.0), optional (--confidence)
# ONNX metadata_props key: how many classes the graph's ArgMax chooses from, written by the build
# from the graph itself, read by the runtime without the onnx package (runtime.backends.contract)
CLASSES_METADATA = "pspnet_rt.classes"
BACKENDS = ("tensorrt", "openvino", "onnxruntime")
PRECISIONS = ("fp32", "fp16", "int8")


class ArtefactError(RuntimeError):
    """An artefact that cannot be used as it is; the message says how to rebuild it."""


@dataclass
class Manifest:
    """What an artefact is. The runtime needs nothing else to run it.

    `model_file` is relative to the manifest's folder, so artefact folders can be moved.
    The fused contract: input `input_name` uint8 NHWC BGR 1xHxWx3, output `output_name` uint8
    class ids 1xHxW (plus float logits when `logits_name` is set, and the uint8 per-pixel
    confidence, max softmax probability x 255, when `confidence_name` is set). `flip`: the graph
    averages the logits of the image and of its mirror (2x the network's work).
    """

    name: str
    model: str
    backend: str
    precision: str
    model_file: str
    classes: list[str]
    palette: list[list[int]]
    input_size: list[int]  # [H, W]; -1 where dynamic
    mean: list[float]
    std: list[float]
    channel_order: str = "RGB"  # what the network expects; the graph converts from BGR
    input_name: str = INPUT_NAME
    input_layout: str = "NHWC"
    input_dtype: str = "uint8"
    input_channels: str = "BGR"
    output_name: str = LABELS_NAME
    logits_name: str | None = None
    confidence_name: str | None = None
    flip: bool = False
    dynamic_shape: bool = False
    ignore_index: int = 255  # the label value evaluation skips (segdata.label_sets)
    label_set: str = ""  # the label set's name (classes, palette, ignore_index are its content)
    model_sha256: str = ""
    onnx_sha256: str = ""
    companion_files: dict[str, str] = field(default_factory=dict)  # e.g. OpenVINO's .bin: sha256
    weights: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    verification: dict[str, Any] = field(default_factory=dict)
    accuracy: dict[str, Any] = field(default_factory=dict)
    tools: dict[str, Any] = field(default_factory=dict)
    build: dict[str, Any] = field(default_factory=dict)
    format: str = MANIFEST_FORMAT

    path: Path | None = field(default=None, repr=False, compare=False)

    @property
    def model_path(self) -> Path:
        base = self.path.parent if self.path else Path(".")
        return base / self.model_file

    @property
    def height(self) -> int:
        return self.input_size[0]

    @property
    def width(self) -> int:
        return self.input_size[1]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("path")
        return data

    def save(self, path: str | Path) -> None:
        """Written atomically, every string redacted: a data source or command line with a password in
        it (--calib-data rtsp://u:PW@...) never reaches the manifest, Triton's copy of it included."""
        from clikit.redaction import redact_values

        atomic_write_json(path, redact_values(self.to_dict()))
        self.path = Path(path)

    def verify_file(self) -> None:
        """Refuse a model file that is missing or differs from the one the manifest describes."""
        self._check_files(keep=False)

    def read_verified(self) -> dict[str, bytes]:
        """file name -> bytes of the model file and every companion file, each read once and checked
        against its sha256 (ArtefactError otherwise, as verify_file). A backend that loads these very
        bytes runs what was checked: a file swapped between a check and a second read never runs."""
        return self._check_files(keep=True)

    def _check_files(self, keep: bool) -> dict[str, bytes]:
        import hashlib

        files = {self.model_file: self.model_sha256, **self.companion_files}
        kept: dict[str, bytes] = {}
        for name, digest in files.items():
            path = self.model_path.parent / name
            if not path.is_file():
                raise ArtefactError(f"{path} is missing; rebuild with {self.rebuild_hint()}")
            if not digest:
                raise ArtefactError(f"{path} does not match the sha256 in {self.path}; the file was changed "
                                    f"after the build. Rebuild with {self.rebuild_hint()}")
            if keep:
                try:
                    data = path.read_bytes()
                except OSError as exc:
                    raise ArtefactError(f"cannot read {path}: {exc.strerror or exc}") from None
                same = hashlib.sha256(data).hexdigest() == digest
            else:
                data, same = b"", sha256_file(path) == digest
            if not same:
                what = "the file was changed after the build" if name == self.model_file else \
                    "it changed since the build"
                raise ArtefactError(f"{path} does not match the sha256 in {self.path}; {what}. Rebuild with "
                                    f"{self.rebuild_hint()}")
            if keep:
                kept[name] = data
        return kept

    def rebuild_hint(self) -> str:
        cmd = self.build.get("command")
        if cmd:
            return f"`{cmd} --force`"
        return (f"`python -m build_engine --model {self.model} --precision {self.precision} "
                f"--backend {self.backend} --force`")


def _manifest_beside(model: Path) -> Path:
    """NAME.json for a model file NAME.xml, or for a versioned one NAME.<sha12>[-N].xml."""
    plain = model.with_suffix(".json")
    versioned = re.match(r"^(?P<name>.+)\.[0-9a-f]{12}(-[0-9]+)?$", model.stem)
    if not plain.is_file() and versioned:
        return model.with_name(f"{versioned['name']}.json")
    return plain


def _rebuild_hint(data: dict[str, Any]) -> str:
    build = data.get("build")
    command = build.get("command") if isinstance(build, dict) else None
    if isinstance(command, str) and command:
        return f"`{command} --force`"
    return "`python -m build_engine ... --force` (the command that built it)"


def load_manifest(path: str | Path) -> Manifest:
    """Read a manifest (or the manifest beside a model file) with a clear error when it is not
    one; every field is checked (artefact.fields), so a hand-edited or damaged manifest is
    refused naming the field, not used until something breaks."""
    path = Path(path)
    if path.suffix != ".json":
        path = _manifest_beside(path)
    if not path.is_file():
        raise ArtefactError(f"no manifest at {path}: an artefact is a model file plus NAME.json "
                            "written by `python -m build_engine`")
    try:
        data = parse_json_text(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        why = " ".join(str(exc).split())
        raise ArtefactError(f"{path} is not a readable JSON manifest ({why})") from None
    manifest = manifest_from_dict(data, str(path))
    manifest.path = path
    return manifest


def manifest_from_dict(data: object, where: str) -> Manifest:
    """A manifest from its JSON object (a file's, or one a Triton model carries); `where` names
    its origin in errors. Every field is checked against the schema's types and meaning."""
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise ArtefactError(f"{where} is not a {MANIFEST_FORMAT} manifest "
                            f"(format={data.get('format') if isinstance(data, dict) else None!r})")
    declared = {f.name: f for f in fields(Manifest) if f.name != "path"}
    missing = [n for n, f in declared.items() if n not in data
               and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise ArtefactError(f"{where} lacks required field(s) {', '.join(missing)}; rebuild with "
                            f"{_rebuild_hint(data)}")
    problems = [(n, p) for n, f in declared.items() if n in data
                for p in [type_problem(data[n], str(f.type))] if p]
    if not problems:
        problems = semantic_problems(data, BACKENDS, PRECISIONS)
    if problems:
        name, problem = problems[0]
        shown = json.dumps(data.get(name))
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise ArtefactError(f"{where}: field {name!r} {problem} (it is {shown}); the manifest was edited or "
                            f"damaged - rebuild with {_rebuild_hint(data)}")
    return Manifest(**{k: v for k, v in data.items() if k in declared})
