"""The split list format (segdata/split.py writes it): a marked text file that names its source
data set in a header and lists sample names. Reading it needs only the data set base types;
opening one as a data set is `segdata.datasets.open_split_list` (it opens the named source).
"""

from __future__ import annotations

from pathlib import Path

from segdata.dataset_base import SegDataset

MARK = "# pspnet-rt split list v1"


def is_split_list(source: str) -> bool:
    path = Path(str(source)).expanduser()
    if path.suffix != ".txt" or not path.is_file():
        return False
    try:
        with path.open(encoding="utf-8") as fh:
            return fh.readline().rstrip("\n") == MARK
    except (OSError, UnicodeDecodeError):
        return False


class SplitDataset(SegDataset):
    """The named samples of a base data set, in the list's order."""

    def __init__(self, base: SegDataset, indices: list[int], description: str) -> None:
        self.base = base
        self.indices = indices
        self.label_set = base.label_set
        self.notes = base.notes
        self.description = description

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.base[self.indices[self._index(i)]]

    def group_of(self, name: str) -> str:
        return self.base.group_of(name)

    def name_of(self, i: int) -> str:
        return self.base.name_of(self.indices[self._index(i)])


def read_split_list(path: str | Path) -> tuple[dict[str, str], list[str]]:
    """(header fields, names) of a list file."""
    header: dict[str, str] = {}
    names: list[str] = []
    for line in Path(path).expanduser().read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            key, sep, value = line[1:].partition(":")
            if sep:
                header[key.strip()] = value.strip()
        elif line.strip():
            names.append(line.strip())
    return header, names
