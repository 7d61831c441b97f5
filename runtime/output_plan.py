"""The outputs of one run, checked together before any model work: two options must not name
the same file, and no output may overwrite an input of the same run (the --video file, the
image folder it reads, the artefact it runs), which a failed or even a good run would destroy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from runtime.errors import OutputError

FILE_OUTPUTS = (("--output", "output"), ("--stats", "stats"), ("--summary-json", "summary_json"),
                ("--bag", "bag"))
# folders of one PNG per frame, NNNNNN.png (DIR/NAME per stream when there are several)
FOLDER_OUTPUTS = (("--masks", "masks"), ("--confidence", "confidence"))


def stream_path(path: str | Path, name: str) -> Path:
    """A per-stream file beside the one asked for: out.mp4 -> out-NAME.mp4."""
    path = Path(path)
    return path.with_name(f"{path.stem}-{name}{path.suffix}")


def masks_folder(masks: str | Path, name: str, several: bool) -> Path:
    """Where a stream's mask PNGs go: --masks DIR itself for one stream, DIR/NAME for each of several."""
    return Path(masks) / name if several else Path(masks)


def _real(path: str | Path) -> str:
    return os.path.realpath(os.path.abspath(path))


def _inputs(options: Any, sources: list[Any]) -> dict[str, str]:
    """Real path -> the option it comes from, for every file or folder the run reads."""
    found: dict[str, str] = {}
    for source in sources:
        for path in getattr(source, "files", None) or []:
            found[_real(path)] = "--video"
        uri = getattr(source, "uri", "")
        if source.kind in ("video", "images") and uri and os.path.exists(uri):
            found[_real(uri)] = "--video"
    if getattr(options, "engine", None) and not str(options.engine).startswith("triton://"):
        engine = Path(options.engine)
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


def planned_outputs(options: Any, names: list[str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(option, real path) of every file the run writes, and of every PNG folder (--masks,
    --confidence): with several streams, --output X.mp4 is X-NAME.mp4 and --masks DIR is DIR/NAME
    per stream, so those are the paths that must not clash."""
    several = len(names) > 1
    files: list[tuple[str, str]] = []
    for flag, attr in FILE_OUTPUTS:
        value = getattr(options, attr, None)
        if not value:
            continue
        if several and attr == "output":
            files += [(f"{flag} (stream {name})", _real(stream_path(value, name))) for name in names]
        else:
            files.append((flag, _real(value)))
    folders: list[tuple[str, str]] = []
    for flag, attr in FOLDER_OUTPUTS:
        value = getattr(options, attr, None)
        if value:
            folders += [(flag, _real(masks_folder(value, name, several))) for name in names]
    return files, folders


def check_outputs(options: Any, streams: list[tuple[str, Any]]) -> None:
    """Raise OutputError naming the clash and the fix; cheap (no writes). `options` is the run's
    runtime.options.RunOptions; `streams` are its (name, source) pairs, one for a single-stream run."""
    files, folders = planned_outputs(options, [name for name, _ in streams])
    seen: dict[str, str] = {}
    for flag, path in files + folders:
        if path in seen and not _is_device(path):
            piped = path.startswith("/proc/")  # stdout or /dev/fd/N on a pipe or socket
            where = "one stream (a pipe or socket: their lines would interleave)" if piped else path
            raise OutputError(f"{seen[path]} and {flag} both name {where}; give each output its own path")
        seen[path] = flag
    inputs = _inputs(options, [source for _, source in streams])
    for flag, path in files:
        if path in inputs and not _is_device(path):
            raise OutputError(f"{flag} {path} is an input of this run ({inputs[path]}); writing it would "
                              "destroy it - choose another path")
        for folder_flag, folder in folders:
            if os.path.dirname(path) == folder and _is_mask_name(os.path.basename(path)):
                raise OutputError(f"{flag} {path} would be overwritten by a PNG of {folder_flag} {folder}; "
                                  "choose another name")
            if path == folder or folder.startswith(path + os.sep):
                raise OutputError(f"{flag} {path} is where {folder_flag} writes {folder}; "
                                  "choose another path")
    for folder_flag, folder in folders:
        inside = [p for p, flag in inputs.items() if flag == "--video" and folder in (p, os.path.dirname(p))]
        if inside:
            raise OutputError(f"{folder_flag} {folder} holds inputs of this run ({inputs[inside[0]]} "
                              f"{inside[0]}); its PNGs would replace or be read as input frames - choose "
                              "another folder")


def _is_mask_name(name: str) -> bool:
    stem, ext = os.path.splitext(name)
    return ext.lower() == ".png" and stem.isdigit()


def _is_device(path: str) -> bool:
    return os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path)
