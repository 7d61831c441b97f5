"""`Artefact`: a built artefact as Python code sees it (what `pspnet_rt.build` returns): its
manifest, its files and the figures its build measured, read from the manifest alone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artefact.manifest import Manifest, load_manifest


@dataclass(frozen=True)
class Artefact:
    """A model file plus its manifest; `pspnet_rt.load(artefact)` opens it."""

    manifest: Manifest

    @classmethod
    def open(cls, path: str | Path) -> Artefact:
        """The artefact whose manifest (or model file) is at `path`; refuses one that is not."""
        return cls(load_manifest(path))

    @property
    def manifest_path(self) -> Path:
        return self.manifest.path

    @property
    def model_path(self) -> Path:
        return self.manifest.model_path

    @property
    def files(self) -> list[Path]:
        """Every file of the artefact: manifest, model file, companions (OpenVINO's .bin)."""
        folder = self.model_path.parent
        companions = [folder / name for name in self.manifest.companion_files]
        return [self.manifest_path, self.model_path, *companions]

    @property
    def backend(self) -> str:
        return self.manifest.backend

    @property
    def precision(self) -> str:
        return self.manifest.precision

    @property
    def classes(self) -> list[str]:
        return list(self.manifest.classes)

    @property
    def gate(self) -> dict[str, Any] | None:
        """The accuracy gate's figures (mIoU drop, pixel agreement with FP32, frames); None for FP32."""
        return self.manifest.accuracy.get("gate")

    @property
    def precision_choice(self) -> dict[str, Any] | None:
        """For `precision="auto"`: what was chosen and why (`chosen`, `why`, `tried`)."""
        return self.manifest.build.get("precision_choice")

    def __fspath__(self) -> str:
        return str(self.manifest_path)

    def __str__(self) -> str:
        return str(self.manifest_path)
