"""What a `--weights` path holds, told by its content (never by its suffix alone).

A wrong suffix is common (a `.index` passed where a `.pth` was expected, a `.pth` that is really an
HTML error page), and the message a loader gives for a file it cannot parse is misleading when the
file is something else entirely: torch's unpickler even suggests `weights_only=False`, an unsafe
action for a file that is not a pickle at all. So the format is identified from the bytes first,
and each loader only sees files of its own format. Torch-free (reads bytes only).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

TF_CHECKPOINT = "TensorFlow checkpoint"
KERAS_H5 = "Keras .h5 (HDF5)"
PYTORCH = "PyTorch checkpoint"
ONNX = "ONNX model"
MANIFEST = "pspnet-rt artefact manifest"
UNKNOWN = "something else"

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
TABLE_MAGIC = (0xDB4775248B80FB57).to_bytes(8, "little")
PICKLE_PROTOCOLS = {bytes([0x80, p]) for p in range(2, 6)}


@dataclass(frozen=True)
class WeightsFile:
    """A weights location resolved: its format, the path a loader takes (for TF: the prefix), and
    the files whose bytes are the weights (hashed for the build cache)."""

    kind: str
    path: Path
    files: tuple[Path, ...]
    detail: str = ""  # e.g. what an unknown file looks like

    def describe(self) -> str:
        return f"{self.kind}{f' ({self.detail})' if self.detail else ''}"


def _head(path: Path, n: int = 512) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def _tail(path: Path, n: int = 8) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - n))
        return fh.read(n)


def _zip_kind(path: Path) -> tuple[str, str]:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        return UNKNOWN, f"a damaged zip archive: {exc}"
    if any(n.endswith("data.pkl") for n in names):
        return PYTORCH, "torch.save zip archive"
    if "config.json" in names and any(n.endswith(".weights.h5") or n == "model.weights.h5" for n in names):
        return UNKNOWN, "a Keras 3 .keras archive (not the seeds' format)"
    return UNKNOWN, f"a zip archive of {len(names)} files without a PyTorch data.pkl"


def _looks_like_onnx(head: bytes) -> bool:
    """ModelProto starts with ir_version (field 1, varint) and names its producer/opset early."""
    return head[:1] == b"\x08" and (b"pytorch" in head or b"onnx" in head or b"ai.onnx" in head
                                    or b"\x3a" in head[:64])


def _text_kind(head: bytes) -> str | None:
    text = head.lstrip()[:200].lower()
    if text.startswith(b"{") and b"pspnet-rt/" in head:
        return MANIFEST
    if text.startswith((b"<!doctype html", b"<html", b"<?xml")):
        return "an HTML/XML page (a failed download?)"
    if text.startswith(b"model_checkpoint_path"):
        return "a TensorFlow `checkpoint` state file"
    if text.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the file itself (git lfs pull)"
    return None


def identify(path: str | Path) -> WeightsFile:
    """The format of the weights at `path` (a file, a TF checkpoint prefix, or a folder)."""
    from pspnet.tf_checkpoint import checkpoint_files, find_prefix

    path = Path(path)
    if path.is_dir() or not path.exists() or path.name == "checkpoint" or \
            path.name.endswith(".meta") or ".data-" in path.name:
        prefix = find_prefix(path)
        if prefix is not None and _tail(prefix.with_name(prefix.name + ".index")) == TABLE_MAGIC:
            return WeightsFile(TF_CHECKPOINT, prefix, tuple(_existing(checkpoint_files, prefix)))
        if path.is_dir():
            return WeightsFile(UNKNOWN, path, (), "a folder without a TensorFlow checkpoint "
                                                  "(no checkpoint file, no *.index)")
        if not path.exists():
            return WeightsFile(UNKNOWN, path, (), "does not exist")
        if ".data-" in path.name or path.name.endswith(".meta"):
            return WeightsFile(UNKNOWN, path, (path,), "a TensorFlow checkpoint file without its .index "
                                                       "beside it (copy every model.ckpt-N.* file)")
    if not path.is_file():
        return WeightsFile(UNKNOWN, path, (), "not a regular file")
    head = _head(path)
    if not head:
        return WeightsFile(UNKNOWN, path, (path,), "an empty file")
    if _tail(path) == TABLE_MAGIC:  # a .index (any name): the table's magic ends the file
        prefix = find_prefix(path)
        if prefix is None:
            return WeightsFile(TF_CHECKPOINT, path, (path,), "its index file, renamed: give the prefix "
                               "model.ckpt-N or the folder, with the .index and .data-* files named as saved")
        return WeightsFile(TF_CHECKPOINT, prefix, tuple(_existing(checkpoint_files, prefix)))
    if head.startswith(HDF5_MAGIC):
        return WeightsFile(KERAS_H5, path, (path,))
    if head.startswith(b"PK\x03\x04"):
        kind, detail = _zip_kind(path)
        return WeightsFile(kind, path, (path,), detail if kind == UNKNOWN else "")
    if head[:2] in PICKLE_PROTOCOLS:
        return WeightsFile(PYTORCH, path, (path,), "legacy pickle format")
    if _looks_like_onnx(head):
        return WeightsFile(ONNX, path, (path,))
    text = _text_kind(head)
    if text == MANIFEST:
        return WeightsFile(MANIFEST, path, (path,))
    return WeightsFile(UNKNOWN, path, (path,), text or f"starts with bytes {head[:8].hex(' ')}")


def _existing(files_of, prefix: Path) -> list[Path]:
    from pspnet.errors import CheckpointError

    try:
        return [p for p in files_of(prefix) if p.is_file()]
    except CheckpointError:
        return [prefix.with_name(prefix.name + ".index")]


SUPPORTED = ("a PyTorch checkpoint (.pth: hszhao/semseg's or ours), the Keras seed's .h5, or a TensorFlow "
             "seed checkpoint (model.ckpt-N, any of its files, or its folder)")


def refusal(found: WeightsFile, expected: str | None = None) -> str:
    """The one-line message for weights we cannot load (or not as `expected`), naming what was found."""
    if expected and found.kind in (TF_CHECKPOINT, KERAS_H5, PYTORCH):
        return (f"{found.path} is a {found.kind}, not a {expected}; give it to `python -m build_engine "
                "--weights`, which reads each format by its content (docs/weights.md)")
    if found.kind == ONNX:
        return (f"{found.path} is an ONNX model, not a checkpoint: --weights takes {SUPPORTED}. An ONNX file "
                "is already an export; build from the checkpoint it came from")
    if found.kind == MANIFEST:
        return (f"{found.path} is a pspnet-rt artefact manifest, not weights: run it with "
                f"`pspnet-rt --engine {found.path}`, or give --weights {SUPPORTED}")
    return f"{found.path} is {found.describe()}, not weights we can read: --weights takes {SUPPORTED}"


def weights_digest(found: WeightsFile) -> str:
    """sha256 of the weights' bytes: the file's own for one file (as before), else of the files'
    sha256s in order (a TF checkpoint's .index and data shards)."""
    import hashlib

    from artefact.files import sha256_file

    digests = [sha256_file(p) for p in found.files]
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256("".join(digests).encode()).hexdigest()
