"""Every field of a manifest checked against its declared type and meaning before anything uses
it, so a hand-edited or damaged manifest is refused with the field's name (exit 2 in the CLIs)
instead of failing later with a bare ValueError or, worse, running with a wrong palette size.

The types come from the Manifest dataclass's own annotations, so a field added later is checked
without a line here; the semantic rules below (sizes, hashes, file names) are per field.
"""

from __future__ import annotations

import math
import re
from typing import Any

HEX64 = re.compile(r"^[0-9a-f]{64}$")
MAX_SIDE = 8192  # the largest input side an artefact may declare (the exporter's dynamic bound too)


def type_problem(value: Any, annotation: str) -> str | None:
    """None if `value` (parsed JSON) fits `annotation` (a dataclass annotation string)."""
    options = _union(annotation)
    if len(options) > 1:
        if any(type_problem(value, o) is None for o in options):
            return None
        return f"must be {' or '.join(options)}"
    a = annotation.strip()
    if a == "None":
        return None if value is None else "must be null"
    if a == "Any":
        return None
    if a == "str":
        return None if isinstance(value, str) else "must be a string"
    if a == "bool":
        return None if isinstance(value, bool) else "must be true or false"
    if a == "int":
        return None if isinstance(value, int) and not isinstance(value, bool) else "must be a whole number"
    if a == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else "must be a finite number"
    if a.startswith("list[") and a.endswith("]"):
        if not isinstance(value, list):
            return f"must be a list ({a})"
        inner = a[5:-1]
        for i, item in enumerate(value):
            problem = type_problem(item, inner)
            if problem:
                return f"item {i} {problem}"
        return None
    if a.startswith("dict[") and a.endswith("]"):
        if not isinstance(value, dict):
            return f"must be an object ({a})"
        inner = a[5:-1].split(",", 1)[1].strip()
        for key, item in value.items():
            problem = type_problem(item, inner)
            if problem:
                return f"entry {key!r} {problem}"
        return None
    return None  # an annotation this checker does not know: the semantic rules still apply


def _union(annotation: str) -> list[str]:
    """'dict[str, Any] | None' -> ['dict[str, Any]', 'None'] (splits at the top level only)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(annotation):
        depth += (ch == "[") - (ch == "]")
        if ch == "|" and depth == 0:
            parts.append(annotation[start:i].strip())
            start = i + 1
    parts.append(annotation[start:].strip())
    return parts


def _plain_file_name(value: str) -> bool:
    return bool(value) and value not in (".", "..") and "/" not in value and "\\" not in value \
        and "\0" not in value


def semantic_problems(data: dict[str, Any], backends: tuple[str, ...], precisions: tuple[str, ...]
                      ) -> list[tuple[str, str]]:
    """(field, problem) for values of the right type that still cannot be right."""
    found: list[tuple[str, str]] = []

    def bad(name: str, problem: str) -> None:
        found.append((name, problem))

    for name in ("name", "model", "model_file", "input_name", "output_name"):
        if not data.get(name):
            bad(name, "must not be empty")
    for name in ("logits_name", "confidence_name"):  # optional outputs: absent, or a name of their own
        value = data.get(name)
        if value is not None and (not value or value in (data.get("input_name"), data.get("output_name"))):
            bad(name, "must be null or a tensor name other than the input's and the labels'")
    if data.get("backend") not in backends:
        bad("backend", f"must be one of {', '.join(backends)}")
    if data.get("precision") not in precisions:
        bad("precision", f"must be one of {', '.join(precisions)}")
    if not _plain_file_name(data.get("model_file", "")):
        bad("model_file", "must be a file name beside the manifest (no folders, no ..)")
    classes = data.get("classes") or []
    if not 1 <= len(classes) <= 256:
        bad("classes", "must list 1 to 256 class names (the class map is uint8)")
    palette = data.get("palette") or []
    if len(palette) != len(classes):
        bad("palette", f"must have one colour per class ({len(classes)}), has {len(palette)}")
    elif any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in palette):
        bad("palette", "colours must be [R, G, B] triples of 0..255")
    ignore = data.get("ignore_index", 255)
    if isinstance(ignore, int) and not 0 <= ignore <= 255:
        bad("ignore_index", "must be 0..255 (a label value of the uint8 class map)")
    size = data.get("input_size") or []
    if len(size) != 2 or not (all(v > 0 for v in size) or size == [-1, -1]):
        bad("input_size", "must be [H, W] with H, W > 0 (or [-1, -1] for a dynamic artefact)")
    elif max(size) > MAX_SIDE:
        bad("input_size", f"must be at most {MAX_SIDE} pixels a side (what the exporter builds)")
    for name in ("mean", "std"):
        if len(data.get(name) or []) != 3:
            bad(name, "must hold 3 numbers, one per channel")
    if any(v <= 0 for v in data.get("std") or []):
        bad("std", "must be > 0 (the input is divided by it)")
    if data.get("channel_order") not in ("RGB", "BGR"):
        bad("channel_order", "must be RGB or BGR")
    # integrity cannot be switched off by blanking a hash: the model file's is required, and every
    # file the backend reads beside it must be listed with its own
    if not HEX64.match(data.get("model_sha256") or ""):
        bad("model_sha256", "must be the model file's sha256 (64 lowercase hex digits); an artefact without "
            "it cannot be checked and is not run")
    if data.get("onnx_sha256") and not HEX64.match(data["onnx_sha256"]):
        bad("onnx_sha256", "must be a sha256 (64 lowercase hex digits)")
    companions = data.get("companion_files") or {}
    for file_name, digest in companions.items():
        if not _plain_file_name(file_name) or not HEX64.match(digest) or file_name == data.get("model_file"):
            bad("companion_files", f"entry {file_name!r} must map a file beside the manifest to its sha256")
    for needed in companions_read(data.get("backend", ""), data.get("model_file", "")):
        if needed not in companions:
            bad("companion_files", f"must list {needed} with its sha256 ({data.get('backend')} reads it "
                "beside the model file)")
    return found


def companions_read(backend: str, model_file: str) -> list[str]:
    """Files a backend reads beside the model file on its own: OpenVINO's weights (NAME.bin)."""
    if backend == "openvino" and model_file.endswith(".xml"):
        return [model_file[:-4] + ".bin"]
    return []
