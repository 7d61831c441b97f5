"""Spec -> torch module, with weights when the spec or the user provides them."""

from __future__ import annotations

import logging
from pathlib import Path

from pspnet.model import PSPNet, create_model
from pspnet.zoo import ModelSpec

log = logging.getLogger(__name__)


def load_model(spec: ModelSpec, weights: str | Path | None = None) -> tuple[PSPNet, dict]:
    """An eval-mode model and a record of where its weights came from (for the manifest).

    With no weights given, the spec's shipped weights are used; a spec without shipped weights
    gets random ones, said loudly, because an artefact of random weights predicts noise.
    """
    from pspnet.weight_formats import identify, weights_digest
    from pspnet.weights import load_weights

    model = create_model(spec)
    path = Path(weights) if weights else spec.weights_path
    if path is not None and not path.is_file() and weights is None:
        log.warning("shipped weights %s are missing; using random weights", path)
        path = None
    if path is None:
        log.warning("model %s has no weights: using RANDOM weights (pass --weights CKPT for real "
                    "predictions)", spec.name)
        return model.eval(), {"source": "random", "path": None, "sha256": None}
    load_weights(model, path, spec)
    found = identify(path)
    return model.eval(), {"source": "file", "path": str(found.path), "format": found.kind,
                          "sha256": weights_digest(found)}
