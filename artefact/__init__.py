"""Artefacts: a model file plus the JSON manifest that says what it is and how it was made.

Torch-free: the builder writes manifests, the runtime reads them and nothing else to know
what it runs.
"""

from artefact.manifest import (  # noqa: F401
    CONFIDENCE_NAME,
    INPUT_NAME,
    LABELS_NAME,
    LOGITS_NAME,
    MANIFEST_FORMAT,
    ArtefactError,
    Manifest,
    load_manifest,
)
