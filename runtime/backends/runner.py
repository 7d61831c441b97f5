"""One model file on one backend, blocking: a frame in, the graph's named outputs out.

Polygraphy's shape: each backend module has a *loader* (`load_session`, `compile_model`: a
function that opens a model file with the project's settings) and a *runner* with one
interface, `activate()` / `infer()` / `deactivate()` (or `with`). Builds run bare model files
through runners before any manifest exists (verification against PyTorch, the accuracy
gate, the sensitivity ranking), benchmarks read extra outputs such as `logits` through them,
and the streaming backends (`load_backend`) open their models with the same loaders, so a
setting such as ORT's non-spinning threads or OpenVINO's precision hint lives in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from artefact.manifest import INPUT_NAME, LABELS_NAME, LOGITS_NAME

if TYPE_CHECKING:
    from runtime.backends.contract import ModelFacts

Prediction = tuple[np.ndarray, np.ndarray | None]  # (labels HxW, logits CxHxW or None)


class Runner:
    """Blocking inference on one model file. Subclasses set `backend` and implement `_open`,
    `_close`, `_run` and `output_names`; the rest is shared."""

    backend = "runner"
    OPTIONS: tuple[str, ...] = ()

    def __init__(self, path: str | Path, precision: str = "fp32", *, input_name: str = INPUT_NAME,
                 labels_name: str = LABELS_NAME, logits_name: str = LOGITS_NAME) -> None:
        self.path = Path(path)
        self.precision = precision
        self.input_name = input_name
        self.labels_name = labels_name
        self.logits_name = logits_name
        self.precision_ran = precision  # what really runs; backends refine it on activate()
        self.device = "CPU"
        self.active = False

    # -- lifetime ---------------------------------------------------------------------------
    def activate(self) -> Runner:
        """Open the model (idempotent); raises ArtefactError / BackendUnavailable with the reason."""
        if not self.active:
            self._open()
            self.active = True
        return self

    def deactivate(self) -> None:
        if self.active:
            self._close()
            self.active = False

    def __enter__(self) -> Runner:
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    # -- inference --------------------------------------------------------------------------
    def infer(self, frame: np.ndarray, outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """uint8 BGR HxWx3 frame -> {output name: array without the batch axis}."""
        if not self.active:
            self.activate()
        names = outputs or self.output_names
        values = self._run(np.ascontiguousarray(frame[None]), names)
        return {name: value[0] for name, value in zip(names, values)}

    def predict(self, frame: np.ndarray) -> Prediction:
        """(labels, logits or None): what verification, gates and evaluations compare."""
        names = [self.labels_name] + ([self.logits_name] if self.logits_name in self.output_names else [])
        out = self.infer(frame, names)
        return out[self.labels_name], out.get(self.logits_name)

    def __call__(self, frame: np.ndarray) -> Prediction:
        return self.predict(frame)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "path": str(self.path), "precision": self.precision,
                "precision_ran": self.precision_ran, "device": self.device}

    # -- for subclasses ---------------------------------------------------------------------
    @property
    def output_names(self) -> list[str]:
        raise NotImplementedError

    def facts(self) -> ModelFacts:
        """What the open model file says about itself (input shape, outputs, class count), for
        runtime.backends.contract to hold the manifest to."""
        raise NotImplementedError

    def _open(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def _run(self, batch: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
        raise NotImplementedError

    def _check_names(self, inputs: list[str], outputs: list[str]) -> None:
        from artefact.manifest import ArtefactError

        if self.input_name not in inputs or self.labels_name not in outputs:
            raise ArtefactError(f"{self.path} has inputs {inputs} and outputs {outputs}, not "
                                f"{self.input_name!r} -> {self.labels_name!r}")
