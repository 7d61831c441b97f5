"""The graph's last step, resize + ArgMax, in row tiles: the same class map, a fraction of the memory.

Why: the fused graph resizes the low-resolution logits (C x h x w) to the input size and takes
the ArgMax over classes. The full-size float logits exist only to be reduced to one byte per
pixel, yet they are the largest tensor a small board holds: 35 MB for 19 classes at 713x713,
134 MB for 150 classes at 473x473. Done in row tiles, each tile's logits live only until its
ArgMax, so the peak holds one tile (a few MB).

Per tile of output rows [y0, y1), the source rows it reads are sliced from the low-resolution
logits, resized, and reduced:

- aligned sizes, (H-1) divisible by (h-1) (PSPNet's 713 and 473 are 8k+1): a tile whose edges
  fall on source rows is a plain align_corners Resize of those rows; the coordinates, hence the
  interpolation weights, are the very ones of the whole-image Resize.
- other sizes: the row interpolation is a small constant matrix (T x rows, the bilinear
  weights) applied with MatMul, then a Resize that interpolates the width only.

The ArgMax outputs (int64, 1 x rows x W) are concatenated and flow into the graph's existing
tail (Cast to float, Cast to uint8), so precision handling (FP16's float32 post-processing,
INT8's float head) and the I/O types are unchanged. A `confidence` output (build_engine.
confidence_tail) reads the same full-size logits: its class-wide part (max, shift, exp, sum over
classes) runs per tile as well and the 1 x rows x W sums are concatenated into the tail's own
sum, so the confidence does not bring the full-size logits back. Graphs with a `logits` output or
dynamic sizes keep the whole-image path (the logits are materialised anyway, or the tile count
would depend on the size).
"""

from __future__ import annotations

import itertools
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TILE_ABOVE_MB = 16.0  # tile only when the full-size logits would exceed this (the demo's 8.8 MB stay whole)
TILE_MB = 4.0  # aim for tiles of at most this many MB of float logits
TAIL_MIN_AGREEMENT = 0.9999  # the tiled tail must give these pixels as the whole-image one does


@dataclass
class TilePlan:
    """What the rewrite did (or why not): recorded in the manifest."""

    mode: str  # "row tiles" | "whole image"
    reason: str
    logits_mb: float | None = None  # the full-size float logits the whole-image path holds
    tiles: int = 1
    tile_rows: int | None = None  # output rows of the largest tile
    tile_mb: float | None = None
    aligned: bool | None = None  # tile edges on source rows (plain Resize) or MatMul rows
    tail_agreement: float | None = None  # tiled vs whole-image tail, same random logits (ORT)
    confidence_max_diff: int | None = None  # the same for the confidence output, in uint8 levels
    policy: dict[str, float] = field(default_factory=lambda: {"tile_above_mb": TILE_ABOVE_MB,
                                                              "tile_mb": TILE_MB})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _static_shape(model: Any, name: str) -> list[int] | None:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        if v.name == name:
            dims = [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
            return None if not dims or None in dims else dims
    return None


def find_tail(model: Any, labels_name: str) -> tuple[Any, Any] | str:
    """(Resize, ArgMax) feeding the labels output, or why the graph has no such tail."""
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    node = producer.get(labels_name)
    while node is not None and node.op_type == "Cast":
        node = producer.get(node.input[0])
    if node is None or node.op_type != "ArgMax":
        return "the labels output is not an ArgMax (+ Casts)"
    argmax = node
    settings = (("axis", 0), ("keepdims", 1), ("select_last_index", 0))
    if [_attr(argmax, k, d) for k, d in settings] != [1, 0, 0]:
        return "the ArgMax is not over classes (axis 1, keepdims 0)"
    resize = producer.get(argmax.input[0])
    if resize is None or resize.op_type != "Resize":
        return "the ArgMax does not read a Resize"
    if _attr(resize, "mode", b"nearest") != b"linear" or \
            _attr(resize, "coordinate_transformation_mode", b"half_pixel") != b"align_corners":
        return "the Resize is not bilinear with align_corners"
    outputs = {o.name for o in graph.output}
    readers = {n.name for n in consumers.get(resize.output[0], []) if n is not argmax}
    if readers:
        from build_engine.confidence_tail import reduction_of

        confidence = reduction_of(model, resize.output[0])
        if confidence is None or readers != {confidence["max"].name, confidence["sub"].name}:
            return "the full-size logits are read by more than the ArgMax (and the confidence tail)"
    if resize.output[0] in outputs:
        return "the full-size logits are a graph output (with_logits): they are materialised anyway"
    return resize, argmax


def plan_rows(h: int, height: int, rows_per_tile: int) -> tuple[list[tuple[int, int]], bool]:
    """Output row ranges [y0, y1) covering `height` rows, and whether their edges fall on source
    rows (then each tile is a plain align_corners Resize of source rows)."""
    if height > 1 and h > 1 and (height - 1) % (h - 1) == 0:
        step = (height - 1) // (h - 1)  # output rows per source row
        per = max(1, rows_per_tile // step)  # source rows per tile
        edges = [*range(0, h - 1, per), h - 1]
        ranges = [(a * step, b * step) for a, b in itertools.pairwise(edges)]
        ranges[-1] = (ranges[-1][0], height)  # the last tile keeps the last row
        return ranges, True
    rows = max(2, rows_per_tile)
    edges = [*range(0, height, rows), height]
    if edges[-1] - edges[-2] < 2 and len(edges) > 2:  # no 1-row tile (align_corners needs 2)
        edges.pop(-2)
    return list(itertools.pairwise(edges)), False


def row_weights(h: int, height: int, y0: int, y1: int) -> tuple[int, int, np.ndarray]:
    """(first source row, last source row + 1, T x rows bilinear weights) for output rows
    [y0, y1) of an align_corners resize from h to height rows."""
    scale = (h - 1) / (height - 1) if height > 1 else 0.0
    pos = np.arange(y0, y1, dtype=np.float64) * scale
    low = np.minimum(np.floor(pos).astype(np.int64), h - 1)
    frac = pos - low
    r0, r1 = int(low.min()), int(min(h - 1, low.max() + 1)) + 1
    w = np.zeros((y1 - y0, r1 - r0), np.float64)
    w[np.arange(y1 - y0), low - r0] += 1.0 - frac
    nxt = np.minimum(low + 1, h - 1) - r0
    w[np.arange(y1 - y0), nxt] += frac
    return r0, r1, w.astype(np.float32)


def tile_labels(model: Any, labels_name: str, tile_above_mb: float | None = None,
                tile_mb: float | None = None) -> TilePlan:
    """Rewrite `model` (an onnx.ModelProto, in place) so the resize + ArgMax runs in row tiles,
    when the full-size logits would exceed `tile_above_mb` (default TILE_ABOVE_MB). Returns
    what it did and why."""
    from onnx import helper, numpy_helper

    tile_above_mb = TILE_ABOVE_MB if tile_above_mb is None else tile_above_mb
    tile_mb = TILE_MB if tile_mb is None else tile_mb
    policy = {"tile_above_mb": tile_above_mb, "tile_mb": tile_mb}

    tail = find_tail(model, labels_name)
    if isinstance(tail, str):
        return TilePlan("whole image", tail)
    resize, argmax = tail
    low = _static_shape(model, resize.input[0])
    full = _static_shape(model, argmax.output[0])
    if low is None or full is None or len(low) != 4:
        return TilePlan("whole image", "dynamic sizes: the tile count would depend on the input size",
                        policy=policy)
    _, classes, h, _ = low
    _, height, width = full
    row_bytes = classes * width * 4
    logits_mb = round(row_bytes * height / 2**20, 1)
    if row_bytes * height <= tile_above_mb * 2**20:
        return TilePlan("whole image", f"the full-size logits ({logits_mb} MB) fit the {tile_above_mb:g} MB "
                                       "threshold", logits_mb, policy=policy)
    ranges, aligned = plan_rows(h, height, max(1, int(tile_mb * 2**20 // row_bytes)))
    if len(ranges) < 2:
        return TilePlan("whole image", "one tile would cover the whole image", logits_mb, policy=policy)

    graph = model.graph
    nodes, inits = [], []
    x = resize.input[0]
    from build_engine.confidence_tail import reduce_max, reduction_of

    confidence = reduction_of(model, resize.output[0])  # its class-wide part runs per tile too
    sums = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    axis2 = const("tiles/axis2", np.array([2], np.int64))
    parts = []
    for k, (y0, y1) in enumerate(ranges):
        p = f"tiles/{k}"
        if aligned:  # source rows a..b make output rows a*step..b*step, the next tile starts at b*step
            step = (height - 1) // (h - 1)
            a, b = y0 // step, (h - 1 if y1 == height else y1 // step)
            r0, r1, rows_out = a, b + 1, (b - a) * step + 1
            nodes.append(helper.make_node("Slice", [x, const(f"{p}/start", np.array([r0], np.int64)),
                                                    const(f"{p}/end", np.array([r1], np.int64)), axis2],
                                          [f"{p}/rows"], name=f"{p}/Slice"))
            src = f"{p}/rows"
        else:
            r0, r1, weights = row_weights(h, height, y0, y1)
            rows_out = y1 - y0
            nodes += [helper.make_node("Slice", [x, const(f"{p}/start", np.array([r0], np.int64)),
                                                 const(f"{p}/end", np.array([r1], np.int64)), axis2],
                                       [f"{p}/rows"], name=f"{p}/Slice"),
                      helper.make_node("MatMul", [const(f"{p}/row_weights", weights), f"{p}/rows"],
                                       [f"{p}/rows_resized"], name=f"{p}/MatMul")]
            src = f"{p}/rows_resized"
        sizes = const(f"{p}/sizes", np.array([1, classes, rows_out, width], np.int64))
        nodes += [helper.make_node("Resize", [src, "", "", sizes], [f"{p}/logits"], name=f"{p}/Resize",
                                   mode="linear", coordinate_transformation_mode="align_corners"),
                  helper.make_node("ArgMax", [f"{p}/logits"], [f"{p}/argmax"], name=f"{p}/ArgMax",
                                   axis=1, keepdims=0)]
        part = f"{p}/argmax"
        if confidence is not None:  # max, shift, exp and sum over classes of this tile's logits
            axis_c = const(f"{p}/class_axis", np.array([1], np.int64))
            tile_logits = f"{p}/logits"
            nodes += [
                reduce_max(model, tile_logits, axis_c, f"{p}/cmax", f"{p}/ReduceMax"),
                helper.make_node("Sub", [tile_logits, f"{p}/cmax"], [f"{p}/cshift"], name=f"{p}/Sub"),
                helper.make_node("Exp", [f"{p}/cshift"], [f"{p}/cexp"], name=f"{p}/Exp"),
                helper.make_node("ReduceSum", [f"{p}/cexp", axis_c], [f"{p}/csum"], name=f"{p}/ReduceSum",
                                 keepdims=0)]
        tile_sum = f"{p}/csum"
        if rows_out != y1 - y0:  # an aligned tile also made the next tile's first row: drop it
            keep = [const(f"{p}/keep0", np.array([0], np.int64)),
                    const(f"{p}/keep1", np.array([y1 - y0], np.int64)),
                    const(f"{p}/axis1", np.array([1], np.int64))]
            nodes.append(helper.make_node("Slice", [part, *keep], [f"{p}/labels"], name=f"{p}/Keep"))
            part = f"{p}/labels"
            if confidence is not None:
                nodes.append(helper.make_node("Slice", [tile_sum, *keep], [f"{p}/csum_kept"],
                                              name=f"{p}/KeepSum"))
                tile_sum = f"{p}/csum_kept"
        parts.append(part)
        sums.append(tile_sum)
    nodes.append(helper.make_node("Concat", parts, [argmax.output[0]], name="tiles/Concat", axis=1))
    replaced = [resize, argmax]
    if confidence is not None:  # the tail's sum, now made of the tiles' sums; its Div etc. stay
        nodes.append(helper.make_node("Concat", sums, [confidence["sum"].output[0]], name="tiles/ConcatSum",
                                      axis=1))
        replaced += list(confidence.values())

    old = list(graph.node)
    at = old.index(resize)
    kept = [n for n in old if all(n is not r for r in replaced)]
    del graph.node[:]
    graph.node.extend(kept[:at] + nodes + kept[at:])
    graph.initializer.extend(inits)
    _drop_unused_initializers(graph)
    largest = max(b - a for a, b in ranges)
    return TilePlan("row tiles", f"the full-size logits ({logits_mb} MB) exceed the {tile_above_mb:g} MB "
                                 "threshold", logits_mb, len(ranges), largest,
                    round(row_bytes * largest / 2**20, 2), aligned, policy=policy)


def _drop_unused_initializers(graph: Any) -> None:
    used = {i for n in graph.node for i in n.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def tail_agreement(whole: Any, tiled: Any, labels_name: str, samples: int = 2, seed: int = 0) -> float:
    """Pixels equal between the two graphs' tails (low-resolution logits -> labels) on ONNX Runtime,
    fed random logits: a pure function of its input, so this proves the rewrite without running the
    network, and random values have more near-ties than a trained model's logits."""
    from artefact.manifest import LABELS_NAME

    labels = _run_tails(whole, tiled, labels_name, LABELS_NAME, samples, seed)
    equal = sum(int(np.count_nonzero(a == b)) for a, b in zip(*labels))
    return equal / sum(a.size for a in labels[0])


def tail_confidence_difference(whole: Any, tiled: Any, labels_name: str, samples: int = 2,
                               seed: int = 0) -> int | None:
    """The largest |difference| in uint8 levels between the two graphs' `confidence` outputs on the
    same random logits (as tail_agreement), or None when the graph has no confidence output."""
    from artefact.manifest import CONFIDENCE_NAME

    if not any(o.name == CONFIDENCE_NAME for o in whole.graph.output):
        return None
    maps = _run_tails(whole, tiled, labels_name, CONFIDENCE_NAME, samples, seed)
    return max(int(np.abs(a.astype(np.int16) - b).max()) for a, b in zip(*maps))


def _run_tails(whole: Any, tiled: Any, labels_name: str, output: str, samples: int,
               seed: int) -> list[list[np.ndarray]]:
    """`output` of both graphs' tails (from the low-resolution logits) on the same random logits."""
    import onnx

    from runtime.backends import open_runner

    tail_input = find_tail(whole, labels_name)[0].input[0]
    shape = _static_shape(whole, tail_input)
    rng = np.random.default_rng(seed)
    inputs = [rng.standard_normal(shape[1:]).astype(np.float32) for _ in range(samples)]
    found = []
    with tempfile.TemporaryDirectory(prefix="pspnet-tiles-") as tmp:
        for name, model in (("whole", whole), ("tiled", tiled)):
            path = Path(tmp) / f"{name}.onnx"
            onnx.save(_tail_model(model, tail_input, labels_name, output), str(path))
            with open_runner("onnxruntime", path) as run:
                found.append([run.infer(x, [output])[output] for x in inputs])
    return found


def _tail_model(model: Any, tail_input: str, labels_name: str, output: str | None = None) -> Any:
    """The graph from `tail_input` to the labels (and `output`, e.g. confidence), with the runners'
    tensor names (image -> labels)."""
    import onnx

    from artefact.manifest import INPUT_NAME, LABELS_NAME

    outputs = [labels_name] + ([output] if output and output != LABELS_NAME else [])
    part = onnx.utils.Extractor(model).extract_model([tail_input], outputs)
    renames = {tail_input: INPUT_NAME, labels_name: LABELS_NAME}
    for node in part.graph.node:
        node.input[:] = [renames.get(i, i) for i in node.input]
        node.output[:] = [renames.get(o, o) for o in node.output]
    for value in [*part.graph.input, *part.graph.output]:
        value.name = renames.get(value.name, value.name)
    return part
