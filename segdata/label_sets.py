"""Label sets (class names, colours, ignore index) for any class count: the one loader.

A label set is what a class map means: builds take it from the zoo entry, the checkpoint's class
count or `--classes FILE`, write it into the manifest (`label_set`, `classes`, `palette`,
`ignore_index`), and everything downstream (legend, live view, /metrics, Triton repository,
evaluation) reads it back from there through `from_manifest`. Torch-free: the runtime imports it.

A label-set file is JSON (or YAML when PyYAML is installed):

    {"name": "my-road",
     "ignore_index": 0,
     "classes": [{"name": "void", "color": [0, 0, 0]},
                 {"name": "not road", "color": [255, 0, 0]},
                 {"name": "road", "color": "#ff00ff"}]}

Colours are R, G, B (0-255) or "#rrggbb"; `classes` may also be plain names, in which case
distinct colours are generated (the PASCAL VOC colour map). `ignore_index` (default 255) is the
label value evaluation skips; it may be a class the model predicts (void 0 above: trained, never
scored). A named built-in is registered with `register_label_set(LabelSet(...))`, and an older
or familiar name of one with `register_alias`; names resolve to the built-in's own name, so the
manifest, checkpoints and the gate's comparisons only ever see that one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segdata.labels import (
    ADE20K_CLASSES,
    ADE20K_PALETTE,
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    IGNORE_INDEX,
    KITTI_ROAD_BINARY_CLASSES,
    KITTI_ROAD_BINARY_PALETTE,
    KITTI_ROAD_CLASSES,
    KITTI_ROAD_PALETTE,
    VOC_CLASSES,
    VOC_PALETTE,
    voc_palette,
)

MAX_CLASSES = 256  # the class map is uint8
MAX_CLASS_NAME = 128  # characters: a class name is printed in summaries, legends, bags, manifests
MAX_FILE_BYTES = 1 << 20  # a label-set file: 256 classes fit in a few KB; more is not a label set
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


class LabelSetError(ValueError):
    """A label-set file or name that cannot be used (the message names the field and the fix)."""


@dataclass(frozen=True)
class LabelSet:
    """What each class id of a class map is called and drawn as, and which id evaluation skips."""

    name: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]  # R, G, B per class
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        problems = _problems(self.name, list(self.classes), [list(c) for c in self.palette],
                             self.ignore_index)
        if problems:
            raise LabelSetError(f"label set {self.name!r}: {problems[0]}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        """The file format (what `load_label_set` reads back)."""
        return {"name": self.name, "ignore_index": self.ignore_index,
                "classes": [{"name": n, "color": list(c)} for n, c in zip(self.classes, self.palette)]}


def _problems(name: str, classes: list, palette: list, ignore_index: object) -> list[str]:
    out = []
    if not isinstance(name, str) or not NAME.match(name):
        out.append(f"name {name!r} must be 1-64 letters, digits, '_', '.', '+' or '-'")
    if not 1 <= len(classes) <= MAX_CLASSES:
        out.append(f"must have 1 to {MAX_CLASSES} classes (the class map is uint8), has {len(classes)}")
    if any(not isinstance(c, str) or not c.strip() for c in classes):
        out.append("every class needs a non-empty name")
    elif any(len(c) > MAX_CLASS_NAME or not c.isprintable() for c in classes):
        bad = next(c for c in classes if len(c) > MAX_CLASS_NAME or not c.isprintable())
        shown = ascii(bad[:40]) + ("..." if len(bad) > 40 else "")
        out.append(f"class name {shown} must be printable text (no newlines or control characters) of at "
                   f"most {MAX_CLASS_NAME} characters")
    elif len(set(classes)) != len(classes):
        dup = sorted({c for c in classes if classes.count(c) > 1})
        out.append(f"class names must be unique ({', '.join(dup[:3])} repeat)")
    if len(palette) != len(classes):
        out.append(f"needs one colour per class ({len(classes)}), has {len(palette)}")
    elif any(len(c) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in c) for c in palette):
        out.append("colours must be [R, G, B] with whole numbers 0-255")
    if not isinstance(ignore_index, int) or isinstance(ignore_index, bool) or not 0 <= ignore_index <= 255:
        out.append(f"ignore_index must be a whole number 0-255, is {ignore_index!r}")
    return out


# --------------------------------------------------------------------------- registry
_REGISTRY: dict[str, LabelSet] = {}
_ALIASES: dict[str, str] = {}


def register_label_set(label_set: LabelSet) -> LabelSet:
    """Make `label_set` loadable by name (`--classes NAME`, zoo entries); names are unique."""
    if label_set.name in _ALIASES:
        raise ValueError(f"label set {label_set.name!r} is already another set's alias")
    known = _REGISTRY.get(label_set.name)
    if known is not None and known != label_set:
        raise ValueError(f"label set {label_set.name!r} is registered twice, differently")
    _REGISTRY[label_set.name] = label_set
    return label_set


def register_alias(alias: str, name: str) -> None:
    """Let `alias` load the registered set `name` (which keeps its own name everywhere)."""
    if name not in _REGISTRY:
        raise ValueError(f"cannot alias {alias!r} to {name!r}: no such label set")
    if alias in _REGISTRY or _ALIASES.get(alias, name) != name:
        raise ValueError(f"{alias!r} already names a label set")
    _ALIASES[alias] = name


def canonical_name(name: str) -> str:
    """A label set's own name for `name` (itself unless `name` is an alias)."""
    return _ALIASES.get(name, name)


def registered() -> list[str]:
    """The built-in names (aliases shown as `alias (= name)`)."""
    return sorted(_REGISTRY) + [f"{a} (= {n})" for a, n in sorted(_ALIASES.items())]


register_label_set(LabelSet("cityscapes", CITYSCAPES_CLASSES, CITYSCAPES_PALETTE))
register_label_set(LabelSet("voc2012", VOC_CLASSES, VOC_PALETTE))
register_label_set(LabelSet("ade20k", ADE20K_CLASSES, ADE20K_PALETTE))
# KITTI road (data_road ground truth: black outside the annotated area, red not road, magenta road;
# segdata.kitti_road reads it in either set). Two sets, because they are two different models:
# - "kitti-road": the KITTI fork's (watsoncm/PSPNet-tensorflow) three classes, black, red, magenta
#   -> 0, 1, 2, as its utils/generate_data.py writes them and tools.label_colors draws them. Its
#   train.py trains all three (the loss keeps labels <= num_classes - 1; its IGNORE_LABEL 0 only
#   pads crops), so void is a class the model predicts, and it is scored as one (ignore 255): a
#   3-class mIoU of what was trained. The fork's evaluate.py instead drops ground-truth 0 and
#   averages over num_classes + 1 classes; with void skipped, void's IoU is 0 wherever the model
#   predicts it inside the annotated area and undefined elsewhere, a term that moves the mean by a
#   third for a single pixel, so that protocol is not copied. Scoring inside the annotated area
#   only is the devkit's view: the next set, and the road/not-road columns (segdata.road_metrics).
#   "kitti-road-fork" (issue 23's name for the same classes and colours) is its alias.
# - "kitti-road-binary": road / not road, black is ignore (255) in training and evaluation alike,
#   as the KITTI devkit ignores it: a 2-class model.
register_label_set(LabelSet("kitti-road", KITTI_ROAD_CLASSES, KITTI_ROAD_PALETTE))
register_alias("kitti-road-fork", "kitti-road")
register_label_set(LabelSet("kitti-road-binary", KITTI_ROAD_BINARY_CLASSES, KITTI_ROAD_BINARY_PALETTE))


def generic_label_set(num_classes: int) -> LabelSet:
    """Names `class 0..N-1` and distinct colours, for a checkpoint whose classes nobody named yet."""
    palette = voc_palette(num_classes + 1)[1:]  # skip black, which reads as 'none'
    return LabelSet(f"generic-{num_classes}", tuple(f"class {i}" for i in range(num_classes)), palette)


def get_label_set(name: str) -> LabelSet:
    """A built-in (or alias, or `generic-N`) by name."""
    try:
        return _REGISTRY[canonical_name(name)]
    except KeyError:
        m = re.fullmatch(r"generic-(\d+)", name)
        if m and 1 <= int(m.group(1)) <= MAX_CLASSES:
            return generic_label_set(int(m.group(1)))
        raise LabelSetError(f"unknown label set {name!r}; built in: {', '.join(registered())}, or give "
                            "a label-set file (JSON: name, classes, ignore_index)") from None


# --------------------------------------------------------------------------- the loader
def load_label_set(source: str | Path) -> LabelSet:
    """The one loader: a registered name, or a label-set file (JSON, or YAML with PyYAML)."""
    text = str(source)
    path = Path(text).expanduser()
    if not path.exists() and "/" not in text and not text.endswith((".json", ".yaml", ".yml")):
        return get_label_set(text)
    if not path.is_file():
        raise LabelSetError(f"label-set file {path} does not exist (or is not a file); give a JSON file "
                            f"or a built-in name: {', '.join(registered())}")
    try:
        with path.open("rb") as fh:
            data_bytes = fh.read(MAX_FILE_BYTES + 1)
        if len(data_bytes) > MAX_FILE_BYTES:
            raise LabelSetError(f"label-set file {path} is larger than {MAX_FILE_BYTES >> 20} MiB; a label "
                                f"set of at most {MAX_CLASSES} classes fits in a few KB: is it the right "
                                "file?")
        raw = data_bytes.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelSetError(f"cannot read label-set file {path}: {exc}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise LabelSetError(f"{path} is YAML but PyYAML is not installed: pip install pyyaml, or "
                                "write the label set as JSON") from None
        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise LabelSetError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
        except RecursionError:
            raise LabelSetError(f"{path} is YAML nested too deeply to read") from None
    else:
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise LabelSetError(f"{path} is not valid JSON: {exc}") from None
        except RecursionError:
            raise LabelSetError(f"{path} is JSON nested too deeply to read") from None
    return label_set_from_dict(data, str(path), default_name=path.stem)


def _colour(value: object, where: str) -> tuple[int, int, int]:
    if isinstance(value, str) and re.fullmatch(r"#?[0-9a-fA-F]{6}", value):
        h = value.lstrip("#")
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
    if isinstance(value, list | tuple) and len(value) == 3 and \
            all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value):
        return int(value[0]), int(value[1]), int(value[2])
    raise LabelSetError(f"{where}: colour {value!r} must be [R, G, B] (0-255) or \"#rrggbb\"")


def label_set_from_dict(data: object, where: str, default_name: str = "custom") -> LabelSet:
    """A LabelSet from the file format's parsed object; every field checked, `where` in errors."""
    if not isinstance(data, Mapping):
        raise LabelSetError(f"{where}: expected an object with 'classes' (and optional 'name', "
                            f"'ignore_index'), found {type(data).__name__}")
    unknown = sorted(set(data) - {"name", "classes", "ignore_index", "description"})
    if unknown:
        raise LabelSetError(f"{where}: unknown field(s) {', '.join(unknown)} (expected name, classes, "
                            "ignore_index, description)")
    classes = data.get("classes")
    if not isinstance(classes, list) or not classes:
        raise LabelSetError(f"{where}: 'classes' must be a non-empty list of names or "
                            "{\"name\": ..., \"color\": [R, G, B]} objects")
    names: list[str] = []
    colours: list[tuple[int, int, int] | None] = []
    for i, item in enumerate(classes):
        if isinstance(item, str):
            names.append(item)
            colours.append(None)
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
            extra = sorted(set(item) - {"name", "color", "colour", "id"})
            if extra:
                raise LabelSetError(f"{where}: class {i} has unknown field(s) {', '.join(extra)}")
            if "id" in item and item["id"] != i:
                raise LabelSetError(f"{where}: class {i} says id {item['id']!r}; classes are listed in id "
                                    "order 0, 1, 2, ...")
            colour = item.get("color", item.get("colour"))
            names.append(item["name"])
            where_i = f"{where}: class {i} ({item['name']})"
            colours.append(None if colour is None else _colour(colour, where_i))
        else:
            raise LabelSetError(f"{where}: class {i} must be a name or an object with a 'name'")
    if len(names) > MAX_CLASSES:
        raise LabelSetError(f"{where}: {len(names)} classes; at most {MAX_CLASSES} (the class map is uint8)")
    fill = iter(c for c in voc_palette(len(names) + 1 + sum(c is None for c in colours))[1:]
                if c not in colours)
    palette = tuple(c if c is not None else next(fill) for c in colours)
    name = data.get("name", default_name)
    if isinstance(name, str) and not NAME.match(name):
        name = re.sub(r"[^A-Za-z0-9_.+-]", "-", name).strip("-")[:64] or "custom"
    ignore = data.get("ignore_index", IGNORE_INDEX)
    problems = _problems(name, names, [list(c) for c in palette], ignore)
    if problems:
        raise LabelSetError(f"{where}: {problems[0]}")
    return LabelSet(name, tuple(names), palette, ignore)


def from_manifest(manifest: Any) -> LabelSet:
    """The label set an artefact carries (its manifest's label_set, classes, palette, ignore_index)."""
    name = getattr(manifest, "label_set", "") or f"generic-{len(manifest.classes)}"
    return LabelSet(name, tuple(manifest.classes), tuple(tuple(int(v) for v in c) for c in manifest.palette),
                    int(getattr(manifest, "ignore_index", IGNORE_INDEX)))
