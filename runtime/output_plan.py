"""The outputs of one run, checked together before any model work: two options must not name
the same file, and no output may overwrite an input of the same run (the --video file, the
image folder it reads, the artefact it runs), which a failed or even a good run would destroy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from runtime.errors import OutputError

FILE_OUTPUTS = (("--output", "output"), ("--stats", "stats"), ("--summary-json", "summary_json"))


def _real(path: str | Path) -> str:
    return os.path.realpath(os.path.abspath(path))


def _inputs(args: Any, source: Any) -> dict[str, str]:
    """Real path -> the option it comes from, for every file or folder the run reads."""
    found: dict[str, str] = {}
    for path in getattr(source, "files", None) or []:
        found[_real(path)] = "--video"
    uri = getattr(source, "uri", "")
    if source.kind in ("video", "images") and uri and os.path.exists(uri):
        found[_real(uri)] = "--video"
    if getattr(args, "engine", None):
        engine = Path(args.engine)
        candidates = sorted(engine.glob("*")) if engine.is_dir() else [engine, *_artefact_files(engine)]
        for path in candidates:
            if path.is_file():
                found[_real(path)] = "--engine"
    return found


def _artefact_files(given: Path) -> list[Path]:
    """The manifest and the files it names, for --engine given as either of them."""
    from artefact.manifest import ArtefactError, load_manifest

    try:
        manifest = load_manifest(given)
    except ArtefactError:  # refused later, with its own message
        return []
    return [manifest.path, manifest.model_path,
            *(manifest.model_path.parent / name for name in manifest.companion_files)]


def check_outputs(args: Any, source: Any) -> None:
    """Raise OutputError naming the clash and the fix; cheap (no writes)."""
    outputs: list[tuple[str, str]] = [(flag, _real(getattr(args, attr))) for flag, attr in FILE_OUTPUTS
                                      if getattr(args, attr, None)]
    masks = _real(args.masks) if getattr(args, "masks", None) else None
    seen: dict[str, str] = {}
    for flag, path in outputs + ([("--masks", masks)] if masks else []):
        if path in seen and not _is_device(path):
            raise OutputError(f"{seen[path]} and {flag} both name {path}; give each output its own path")
        seen[path] = flag
    inputs = _inputs(args, source)
    for flag, path in outputs:
        if path in inputs and not _is_device(path):
            raise OutputError(f"{flag} {path} is an input of this run ({inputs[path]}); writing it would "
                              "destroy it - choose another path")
        if masks and os.path.dirname(path) == masks and _is_mask_name(os.path.basename(path)):
            raise OutputError(f"{flag} {path} would be overwritten by a mask of --masks {masks}; "
                              "choose another name")
    if masks:
        inside = [p for p, flag in inputs.items() if flag == "--video" and masks in (p, os.path.dirname(p))]
        if inside:
            raise OutputError(f"--masks {masks} holds inputs of this run ({inputs[inside[0]]} {inside[0]}); "
                              "its masks would replace or be read as input frames - choose another folder")


def _is_mask_name(name: str) -> bool:
    stem, ext = os.path.splitext(name)
    return ext.lower() == ".png" and stem.isdigit()


def _is_device(path: str) -> bool:
    return os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path)
