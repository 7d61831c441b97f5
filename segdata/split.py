"""A deterministic hold-out split of any data set, written as two list files anyone can reread.

Why list files: a split is only auditable and repeatable if the exact names are kept. A run
writes `SPLIT/train.txt` and `SPLIT/val.txt`; each names its source in a header and lists
sample names, and each is itself a data source: `open_dataset("runs/x/split/val.txt")` gives
exactly those samples, so training, evaluation (`--eval-data`, `benchmarks.accuracy --data`)
and calibration (`--calib-data`) read the same hold-out without copying a file. The split is
stratified by the data set's groups (KITTI road: um / umm / uu) and depends only on the sorted
sample names, the fraction and the seed.

    python -m segdata.split kitti-road:/data/data_road --val-split 0.2 --split-seed 0 --out split/
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import numpy as np

# a split list is a data source: open_dataset reads it (open_split_list); its format is split_lists'
from segdata.datasets import DatasetError, SegDataset, open_split_list  # noqa: F401
from segdata.split_lists import MARK, SplitDataset, is_split_list, read_split_list  # noqa: F401

PARTS = ("train", "val")


def holdout_names(dataset: SegDataset, val_fraction: float, seed: int) -> dict[str, list[str]]:
    """{"train": names, "val": names}: round(fraction x N) names held out (at least one each side),
    spread over the data set's groups by largest remainder, drawn with a seeded permutation."""
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"a hold-out fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    names = [dataset.name_of(i) for i in range(len(dataset))]
    if len(set(names)) != len(names):
        raise DatasetError(f"{dataset.description}: sample names repeat, so a split list cannot name them")
    n = len(names)
    if n < 2:
        raise DatasetError(f"{dataset.description} has {n} sample(s): a hold-out split needs at least 2")
    target = min(n - 1, max(1, round(val_fraction * n)))
    groups: dict[str, list[str]] = {}
    for name in sorted(names):
        groups.setdefault(dataset.group_of(name), []).append(name)
    order = sorted(groups)
    quota = {g: val_fraction * len(groups[g]) for g in order}
    take = {g: min(len(groups[g]), math.floor(quota[g])) for g in order}
    by_remainder = sorted(order, key=lambda g: (-(quota[g] - math.floor(quota[g])), g))
    i = 0
    while sum(take.values()) < target:
        g = by_remainder[i % len(by_remainder)]
        if take[g] < len(groups[g]):
            take[g] += 1
        i += 1
    while sum(take.values()) > target:  # only when the floors overshoot a clamped target
        g = max(order, key=lambda g: (take[g], g))
        take[g] -= 1
    rng = np.random.default_rng(seed)
    val: set[str] = set()
    for g in order:
        members = groups[g]
        val.update(members[j] for j in rng.permutation(len(members))[:take[g]])
    return {"train": [x for x in sorted(names) if x not in val], "val": sorted(val)}


def absolute_source(source: str) -> str:
    """The source with its folder made absolute, so a list file works from any directory."""
    if source.startswith("synthetic"):
        return source
    layout, sep, rest = source.partition(":")
    if sep and rest and "/" not in layout and not Path(source).exists():
        return f"{layout}:{Path(rest).expanduser().resolve()}"
    return str(Path(source).expanduser().resolve())


def write_split(out_dir: str | Path, source: str, dataset: SegDataset, val_fraction: float,
                seed: int) -> dict[str, Path]:
    """Write OUT/train.txt and OUT/val.txt (atomically); return their paths."""
    parts = holdout_names(dataset, val_fraction, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for part in PARTS:
        names = parts[part]
        text = "\n".join([MARK, f"# source: {absolute_source(source)}", f"# part: {part}",
                          f"# val-split: {val_fraction:g}", f"# split-seed: {seed}",
                          f"# samples: {len(names)} of {len(dataset)}", *names]) + "\n"
        path = out / f"{part}.txt"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        paths[part] = path
    return paths


def split_dataset(source: str, out_dir: str | Path, val_fraction: float, seed: int) -> dict[str, Path]:
    """Open `source` (its labelled part) and write its split lists into out_dir."""
    from segdata.datasets import open_dataset

    return write_split(out_dir, source, open_dataset(source, split="train"), val_fraction, seed)


def add_split_options(p: argparse.ArgumentParser, default: float | None = None) -> None:
    """--val-split F and --split-seed N, the same on every command that splits."""
    import clikit
    from clikit.types import number

    p.add_argument("--val-split", type=number(greater_than=0, below=1, what="a hold-out fraction"),
                   default=default, metavar="F",
                   help="hold out this fraction of the data for validation (0 < F < 1; the fork: "
                        "0.2); the two file lists are written into the run folder")
    p.add_argument("--split-seed", type=clikit.int_in(0, 2**32 - 1), default=0, metavar="N",
                   help="seed of the hold-out split (same seed, same data: same lists)")


def build_parser() -> argparse.ArgumentParser:
    import clikit

    p = clikit.parser("python -m segdata.split", __doc__, clikit.EXIT_CODES_HELP)
    p.add_argument("source", type=clikit.non_empty("a data source"),
                   help="a data folder (layout auto-detected), layout:/path, or synthetic:...")
    add_split_options(p, default=0.2)
    p.add_argument("--out", type=clikit.output_dir("a folder for the lists"), default="split")
    clikit.add_verbose(p)
    return p


def main(argv: list[str] | None = None) -> int:
    import clikit

    def body(args: argparse.Namespace) -> int:
        paths = split_dataset(args.source, args.out, args.val_split, args.split_seed)
        for part in PARTS:
            print(paths[part])
        return 0

    return clikit.run("python -m segdata.split", build_parser(), body, argv, usage=(DatasetError,))


if __name__ == "__main__":
    raise SystemExit(main())
