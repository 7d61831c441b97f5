"""TensorFlow checkpoints (`tf.train.Saver`'s V2 "tensor bundle") read without TensorFlow.

Why a reader of our own and not TensorFlow as an extra: the format is small and frozen (TF has
written V2 bundles unchanged since 2016), while TensorFlow is a ~600 MB install with its own
numpy/protobuf pins that would sit beside torch in the build environment only to read one kind of
file. The reader is ~200 lines of stdlib + numpy (+ google-crc32c, a small C extension, for the
checksums) and checks every checksum the format carries, so a damaged download is refused, not read.

The format (tensorflow/core/util/tensor_bundle, core/lib/io/table):
- `PREFIX.index` is a LevelDB-style table, uncompressed: data blocks of prefix-compressed
  key/value entries with restart points, an index block of block handles, a 48-byte footer ending
  in a magic number; every block carries a masked crc32c. Keys are variable names; the value for
  key "" is a BundleHeaderProto (number of shards, endianness), every other value a
  BundleEntryProto (dtype, shape, shard, offset, size, masked crc32c of the bytes).
- `PREFIX.data-SSSSS-of-NNNNN` hold the raw little-endian tensors at those offsets.
- `PREFIX.meta` (the graph) is not needed; a `checkpoint` text file names the newest prefix,
  often as an absolute path of the machine that saved it.
"""

from __future__ import annotations

import logging
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pspnet.errors import CheckpointError

log = logging.getLogger(__name__)
TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER = 5  # 1 byte compression type + 4 bytes masked crc32c
MASK_DELTA = 0xA282EAD8
# tensorflow/core/framework/types.proto -> numpy (little-endian); strings etc. are never read here
DTYPES = {1: np.dtype("<f4"), 2: np.dtype("<f8"), 3: np.dtype("<i4"), 4: np.dtype("u1"),
          5: np.dtype("<i2"), 6: np.dtype("i1"), 9: np.dtype("<i8"), 10: np.dtype("?"),
          17: np.dtype("<u2"), 19: np.dtype("<f2"), 22: np.dtype("<u4"), 23: np.dtype("<u8")}
DTYPE_NAMES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string",
               9: "int64", 10: "bool", 14: "bfloat16", 17: "uint16", 19: "float16", 20: "resource",
               21: "variant", 22: "uint32", 23: "uint64"}
CKPT_STEP = re.compile(r"-(\d+)$")


# --------------------------------------------------------------------------- checksums
def crc32c(data: bytes | memoryview) -> int:
    import google_crc32c

    return google_crc32c.value(bytes(data))


def mask(crc: int) -> int:
    """LevelDB/TF's masked crc (stored so a crc of data holding crcs stays well distributed)."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + MASK_DELTA) & 0xFFFFFFFF


# --------------------------------------------------------------------------- protobuf wire format
def _varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: bytes | memoryview) -> list[tuple[int, int | bytes]]:
    """(field number, value) of a serialized protobuf message: varints as ints, the rest as bytes."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos:pos + 8], "little"), pos + 8
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos:pos + 4], "little"), pos + 4
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = bytes(buf[pos:pos + length]), pos + length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise ValueError("truncated protobuf field")
        out.append((number, value))
    return out


@dataclass(frozen=True)
class BundleEntry:
    """One tensor's BundleEntryProto: where its bytes are and what they must hash to."""

    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int  # masked, as stored
    sliced: bool = False

    @property
    def dtype_name(self) -> str:
        return DTYPE_NAMES.get(self.dtype, f"dtype {self.dtype}")


def _entry(value: bytes) -> BundleEntry:
    got: dict[str, int | tuple[int, ...] | bool] = {"dtype": 0, "shape": (), "shard": 0, "offset": 0,
                                                    "size": 0, "crc32c": 0, "sliced": False}
    for number, v in _fields(value):
        if number == 1:
            got["dtype"] = v
        elif number == 2:  # TensorShapeProto: repeated Dim dim = 2 {int64 size = 1}
            dims = []
            for n, dim in _fields(v):  # type: ignore[arg-type]
                if n == 2:
                    dims.append(next((int(s) for k, s in _fields(dim) if k == 1), 0))  # type: ignore[arg-type]
            got["shape"] = tuple(dims)
        elif number in (3, 4, 5, 6):
            got[{3: "shard", 4: "offset", 5: "size", 6: "crc32c"}[number]] = v
        elif number == 7:
            got["sliced"] = True
    return BundleEntry(**got)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the .index table
def _block(data: bytes, offset: int, size: int, where: str) -> memoryview:
    end = offset + size
    if end + BLOCK_TRAILER > len(data):
        raise ValueError(f"{where} block at {offset} runs past the end of the file")
    kind = data[end]
    (stored,) = struct.unpack_from("<I", data, end + 1)
    if mask(crc32c(data[offset:end + 1])) != stored:
        raise ValueError(f"{where} block at {offset} fails its crc32c check")
    if kind != 0:
        raise ValueError(f"{where} block at {offset} is compressed (type {kind}); TensorFlow writes "
                         "bundle indexes uncompressed")
    return memoryview(data)[offset:end]


def _block_entries(block: memoryview) -> list[tuple[bytes, bytes]]:
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * restarts
    if limit < 0:
        raise ValueError("block restart array is larger than the block")
    out: list[tuple[bytes, bytes]] = []
    pos, key = 0, b""
    while pos < limit:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        if shared > len(key) or pos + unshared + length > limit:
            raise ValueError("corrupt block entry")
        key = key[:shared] + bytes(block[pos:pos + unshared])
        pos += unshared
        out.append((key, bytes(block[pos:pos + length])))
        pos += length
    return out


def _handle(value: bytes | memoryview, pos: int = 0) -> tuple[int, int, int]:
    offset, pos = _varint(value, pos)
    size, pos = _varint(value, pos)
    return offset, size, pos


MAX_SHARDS = 4096  # data files a checkpoint may have (TF's own savers write 1 per device)


def read_index(path: str | Path) -> tuple[dict[str, BundleEntry], int]:
    """{variable name: BundleEntry} of a `.index` file, and its number of data shards."""
    path = Path(path)
    if not path.is_file():  # a FIFO would block the read for ever, a device never end
        raise CheckpointError(f"{path} is not a regular file; a TensorFlow checkpoint index is one")
    data = path.read_bytes()
    if len(data) < FOOTER_SIZE or int.from_bytes(data[-8:], "little") != TABLE_MAGIC:
        raise CheckpointError(f"{path} is not a TensorFlow checkpoint index (no table magic at its end)")
    try:
        footer = memoryview(data)[-FOOTER_SIZE:]
        _, _, pos = _handle(footer)  # metaindex: empty in bundles
        index_offset, index_size, _ = _handle(footer, pos)
        entries: dict[str, BundleEntry] = {}
        shards, little = 1, True
        for _, handle in _block_entries(_block(data, index_offset, index_size, "index")):
            offset, size, _ = _handle(handle)
            for key, value in _block_entries(_block(data, offset, size, "data")):
                if key == b"":  # BundleHeaderProto
                    header = dict(_fields(value))
                    shards = int(header.get(1, 1))  # type: ignore[arg-type]
                    little = int(header.get(2, 0)) == 0  # type: ignore[arg-type]
                    continue
                entries[key.decode("utf8")] = _entry(value)
    except (ValueError, struct.error, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is a damaged TensorFlow checkpoint index ({exc}); copy or "
                              "download it again") from None
    if not little:
        raise CheckpointError(f"{path} was written on a big-endian machine; not supported")
    if not 1 <= shards <= MAX_SHARDS:  # a damaged or hostile header: never loop over 10^9 file names
        raise CheckpointError(f"{path} says its tensors are in {shards} data files; a damaged TensorFlow "
                              "checkpoint index - copy or download it again")
    return entries, shards


# --------------------------------------------------------------------------- finding the files
def data_file(prefix: Path, shard: int, shards: int) -> Path:
    return prefix.with_name(f"{prefix.name}.data-{shard:05d}-of-{shards:05d}")


def index_file(prefix: Path) -> Path:
    return prefix.with_name(prefix.name + ".index")


def _step(prefix: Path) -> int:
    m = CKPT_STEP.search(prefix.name)
    return int(m.group(1)) if m else -1


def _from_checkpoint_file(state: Path) -> Path | None:
    """The prefix the `checkpoint` text file names, if it resolves here (as written, or by name in
    this folder: the file often holds an absolute path of the machine that saved it)."""
    try:
        text = state.read_text(errors="replace")
    except OSError:
        return None
    m = re.search(r'^model_checkpoint_path:\s*"((?:[^"\\]|\\.)*)"', text, re.M)
    if not m:
        return None
    named = Path(m.group(1).encode().decode("unicode_escape"))
    here = state.parent / named if not named.is_absolute() else named
    if index_file(here).is_file():
        return here
    local = state.parent / named.name
    if index_file(local).is_file():
        log.warning("%s names %s, which is not here; using %s from the same folder", state, named, local)
        return local
    return None


def find_prefix(path: str | Path) -> Path | None:
    """The checkpoint prefix `path` stands for, or None if it is no TF checkpoint location.

    Accepts the prefix itself (`model.ckpt-N`), any of its files (`.index`, `.data-*`, `.meta`),
    the `checkpoint` text file, or the folder (whose `checkpoint` file is used when the prefix it
    names resolves, else the `*.index` with the highest step, said in one line).
    """
    path = Path(path)
    if path.is_dir() or path.name == "checkpoint":
        folder = path if path.is_dir() else path.parent
        state = folder / "checkpoint"
        named = _from_checkpoint_file(state) if state.is_file() else None
        if named is not None:
            return named
        # regular files only: a FIFO (or a link to one) named *.index would block the read for ever
        indexes = sorted((p for p in folder.glob("*.index") if p.is_file()),
                         key=lambda p: (_step(p.with_suffix("")), p.stat().st_mtime))
        if not indexes:
            return None
        chosen = indexes[-1].with_suffix("")
        why = "names no checkpoint found here" if state.is_file() else "is absent"
        log.warning("%s/checkpoint %s; using the newest of %d checkpoint(s): %s", folder, why,
                    len(indexes), chosen.name)
        return chosen
    m = re.match(r"^(?P<prefix>.+)\.(index|meta|data-\d{5}-of-\d{5})$", path.name)
    if m and path.is_file():
        return path.with_name(m.group("prefix"))
    if index_file(path).is_file():  # the prefix itself (a file of that name may exist too)
        return path
    return None


def checkpoint_files(prefix: Path) -> list[Path]:
    """The files whose bytes make up the checkpoint's tensors: the index and its data shards."""
    entries, shards = read_index(index_file(prefix))
    del entries
    return [index_file(prefix), *(data_file(prefix, s, shards) for s in range(shards))]


# --------------------------------------------------------------------------- reading tensors
class TFCheckpoint:
    """A checkpoint's variables by name; tensors read lazily, each checked against its crc32c."""

    def __init__(self, prefix: str | Path) -> None:
        self.prefix = Path(prefix)
        self.entries, self.shards = read_index(index_file(self.prefix))
        missing = [data_file(self.prefix, s, self.shards) for s in range(self.shards)
                   if not data_file(self.prefix, s, self.shards).is_file()]
        if missing:
            raise CheckpointError(f"TensorFlow checkpoint {self.prefix}: data file {missing[0].name} is "
                                  "missing beside its .index (copy every model.ckpt-N.* file)")

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: e.shape for k, e in self.entries.items()}

    def read(self, name: str) -> np.ndarray:
        entry = self.entries[name]
        if entry.sliced:
            raise CheckpointError(f"{self.prefix}: variable {name} is saved in partitioned slices; "
                                  "not supported")
        dtype = DTYPES.get(entry.dtype)
        if dtype is None:
            raise CheckpointError(f"{self.prefix}: variable {name} has dtype {entry.dtype_name}, "
                                  "which is not a numeric tensor")
        count = int(np.prod(entry.shape, dtype=np.int64))
        if count * dtype.itemsize != entry.size:
            raise CheckpointError(f"{self.prefix}: variable {name} claims {entry.size} bytes for shape "
                                  f"{entry.shape} of {entry.dtype_name}; the index is damaged")
        path = data_file(self.prefix, entry.shard, self.shards)
        with open(path, "rb") as fh:
            fh.seek(entry.offset)
            raw = fh.read(entry.size)
        if len(raw) != entry.size:
            raise CheckpointError(f"{path.name} ends before variable {name} (truncated download?)")
        if mask(crc32c(raw)) != entry.crc32c:
            raise CheckpointError(f"{path.name}: variable {name} fails its crc32c check (damaged file); "
                                  "copy or download the checkpoint again")
        return np.frombuffer(raw, dtype).reshape(entry.shape).copy()


# --------------------------------------------------------------------------- writing (tests, tools)
def _put_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        out.append(b | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _put_varint(number << 3 | wire) + payload


def _entry_bytes(dtype: int, shape: tuple[int, ...], offset: int, size: int, crc: int) -> bytes:
    dims = b"".join(_field(2, 2, _put_varint(len(d)) + d) for d in
                    (_field(1, 0, _put_varint(n)) for n in shape))
    out = _field(1, 0, _put_varint(dtype)) + _field(2, 2, _put_varint(len(dims)) + dims)
    if offset:
        out += _field(4, 0, _put_varint(offset))
    return out + _field(5, 0, _put_varint(size)) + _field(6, 5, struct.pack("<I", crc))


def _build_block(items: list[tuple[bytes, bytes]], restart_interval: int = 16) -> bytes:
    out, restarts, last = bytearray(), [], b""
    for i, (key, value) in enumerate(items):
        shared = 0
        if i % restart_interval == 0:
            restarts.append(len(out))
        else:
            while shared < min(len(key), len(last)) and key[shared] == last[shared]:
                shared += 1
        out += _put_varint(shared) + _put_varint(len(key) - shared) + _put_varint(len(value))
        out += key[shared:] + value
        last = key
    restarts = restarts or [0]
    out += b"".join(struct.pack("<I", r) for r in restarts) + struct.pack("<I", len(restarts))
    return bytes(out)


def write_checkpoint(prefix: str | Path, tensors: dict[str, np.ndarray], block_size: int = 4096,
                     header_shards: int = 1) -> Path:
    """A V2 bundle TensorFlow's Saver would read: one shard, sorted keys, crc32c everywhere.

    For tests and tools: small fixtures in the seed's layout without TensorFlow (`header_shards`
    other than 1 makes a damaged one, whose header claims that many data files).
    """
    prefix = Path(prefix)
    codes = {v: k for k, v in DTYPES.items()}
    blob, items = bytearray(), []
    for name in sorted(tensors):
        array = np.asarray(tensors[name], order="C")  # keeps scalars 0-d (ascontiguousarray would not)
        array = array.astype(array.dtype.newbyteorder("<"))
        raw = array.tobytes()
        items.append((name.encode(), _entry_bytes(codes[array.dtype], array.shape, len(blob), len(raw),
                                                   mask(crc32c(raw)))))
        blob += raw
    version = _field(3, 2, _put_varint(2) + _field(1, 0, _put_varint(1)))
    header = _field(1, 0, _put_varint(header_shards)) + version
    items.insert(0, (b"", header))
    table, index_items, chunk = bytearray(), [], []

    def flush() -> None:
        block = _build_block(chunk)
        handle = _put_varint(len(table)) + _put_varint(len(block))
        table.extend(block + b"\0" + struct.pack("<I", mask(crc32c(block + b"\0"))))
        index_items.append((chunk[-1][0], handle))
        chunk.clear()

    for item in items:
        chunk.append(item)
        if sum(len(k) + len(v) for k, v in chunk) >= block_size:
            flush()
    if chunk:
        flush()
    handles = []
    for block in (_build_block([]), _build_block(index_items)):  # metaindex (empty), index
        handles.append(_put_varint(len(table)) + _put_varint(len(block)))
        table.extend(block + b"\0" + struct.pack("<I", mask(crc32c(block + b"\0"))))
    footer = (handles[0] + handles[1]).ljust(40, b"\0") + TABLE_MAGIC.to_bytes(8, "little")
    data_file(prefix, 0, 1).write_bytes(bytes(blob))
    index_file(prefix).write_bytes(bytes(table) + footer)
    (prefix.parent / "checkpoint").write_text(f'model_checkpoint_path: "{prefix.name}"\n'
                                              f'all_model_checkpoint_paths: "{prefix.name}"\n')
    return prefix
