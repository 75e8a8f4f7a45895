"""Host arrays from tensor records: one read-only memory map per file, every dtype, no needless copy.

A :class:`TensorRecord` says where a tensor's bytes are (file, absolute ``offset``, ``nbytes``), how to
read them (canonical ``dtype``, logical ``shape``, optional element ``strides``). :class:`TensorReader`
checks that against the file *before* making any array, then:

- plain dtypes (integers, floats, bf16, every F8): a zero-copy, read-only numpy view of the map;
  ``read_slice`` is a view of just the region asked for, so building per-device shards touches only
  their pages. The data is little-endian (safetensors, GGUF and PyTorch all store it so on the hosts they
  come from); a record known to be byte-swapped is refused rather than byte-swapped.
- ``F4`` / ``F6_E2M3`` / ``F6_E3M2`` (OCP MX element types): unpacked into one ml_dtypes value per byte;
  a copy is unavoidable because numpy has no sub-byte element.
- GGUF block types (Q4_0 … Q6_K, MXFP4): dequantized to float32 by :mod:`openaudit.run.dequant`; again a
  copy by nature.

Sub-byte packing, which the safetensors format leaves to the writer (its Rust crate only counts bits):
elements form a little-endian bit stream, element k at bits [k·w, k·w + w) counted from the least
significant bit of byte 0. For F4 that is element 2i in the low nibble of byte i and 2i + 1 in the high
nibble — PyTorch's ``float4_e2m1fn_x2`` (``pack_uint4`` in pytorch ``test/test_matmul_cuda.py``), which
safetensors' torch binding maps F4 to. For F6 it packs four elements in 3 bytes as
``b0 = a0..5 | b0..1 << 6``, ``b1 = b2..5 | c0..3 << 4``, ``b2 = c4..5 | d << 2`` — the order CUTLASS
expects for MX FP6 (torchao ``mx_formats`` triton packing kernel). torchao's own reference packer
(``pack_uint6_pytorch``) uses a different split, and no F6 safetensors file from a real release has been
checked, so F6 files from other writers may need another order.

Memory maps stay valid while any array made from them lives: ``close()`` releases openaudit's references,
and the operating system unmaps a file when its last view goes. A file truncated *while* mapped can
still fault on access (SIGBUS); the bounds here are checked against the size when the map was made.
"""

from __future__ import annotations

import mmap
import os
import sys
import threading
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Collection, Mapping, Union

import ml_dtypes
import numpy as np

from openaudit.errors import MalformedInput
from openaudit.inspect.tensors import TensorRecord
from openaudit.limits import open_regular
from openaudit.run import dequant

if TYPE_CHECKING:  # pragma: no cover
    import jax

# --- dtypes ---------------------------------------------------------------------------------------------

# Canonical name -> numpy dtype, explicit little-endian where numpy has a byte order.
_NUMPY_NAMES: Mapping[str, str] = {
    "BOOL": "|b1",
    "U8": "|u1",
    "I8": "|i1",
    "I16": "<i2",
    "U16": "<u2",
    "I32": "<i4",
    "U32": "<u4",
    "I64": "<i8",
    "U64": "<u8",
    "F16": "<f2",
    "F32": "<f4",
    "F64": "<f8",
    "C64": "<c8",
}
# Canonical name -> ml_dtypes attribute. ml_dtypes types have no byte order: little-endian hosts only.
_ML_DTYPES: Mapping[str, str] = {
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "float8_e8m0fnu",
    "F8_E4M3FNUZ": "float8_e4m3fnuz",
    "F8_E5M2FNUZ": "float8_e5m2fnuz",
    "F4": "float4_e2m1fn",
    "F6_E2M3": "float6_e2m3fn",
    "F6_E3M2": "float6_e3m2fn",
}
# Packed sub-byte dtypes: bits per element.
PACKED_BITS: Mapping[str, int] = {"F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}


def numpy_dtype(canonical: str) -> np.dtype:
    """The numpy dtype of one element of a plain canonical dtype (``F8_E4M3`` → ``float8_e4m3fn`` …).

    For the packed F4/F6 types this is the unpacked element type that ``TensorReader.read`` returns.
    Raises MalformedInput (``tensor-unsupported-dtype``) for anything else, GGUF block types included.
    """
    name = _NUMPY_NAMES.get(canonical)
    if name is not None:
        return np.dtype(name)
    attribute = _ML_DTYPES.get(canonical)
    scalar = getattr(ml_dtypes, attribute, None) if attribute else None
    if scalar is None:
        raise MalformedInput("tensor-unsupported-dtype", f"openaudit cannot map dtype {_show(canonical)} to numpy")
    dtype = np.dtype(scalar)
    if dtype.itemsize > 1 and sys.byteorder != "little":  # ml_dtypes are native-order only
        raise MalformedInput("tensor-unsupported-dtype", f"{canonical} cannot be read on a big-endian host")
    return dtype


def result_dtype(canonical: str) -> np.dtype:
    """The dtype of the array ``TensorReader.read`` returns for a record of ``canonical`` dtype:
    float32 for GGUF block types, ``numpy_dtype`` otherwise."""
    if dequant.is_block_type(canonical):
        return np.dtype(np.float32)
    return numpy_dtype(canonical)


def unpack_subbyte(packed: np.ndarray, canonical: str, count: int) -> np.ndarray:
    """Unpack ``count`` F4/F6 elements from the bytes ``packed`` (order in the module docstring)."""
    bits = PACKED_BITS[canonical]
    flat = np.ascontiguousarray(packed, dtype=np.uint8).reshape(-1)
    if bits == 4:
        codes = np.empty(flat.size * 2, dtype=np.uint8)
        codes[0::2] = flat & 0x0F
        codes[1::2] = flat >> 4
    else:  # 6 bits: groups of 3 bytes hold 4 elements
        groups = flat.reshape(-1, 3).astype(np.uint32)
        word = groups[:, 0] | (groups[:, 1] << 8) | (groups[:, 2] << 16)
        shifts = np.array([0, 6, 12, 18], dtype=np.uint32)
        codes = ((word[:, None] >> shifts) & 0x3F).astype(np.uint8).reshape(-1)
    return codes[:count].view(numpy_dtype(canonical))


# --- reading ----------------------------------------------------------------------------------------

FileLocator = Union[Mapping[str, Union[str, os.PathLike]], Callable[[str], Union[str, os.PathLike]]]
Index = tuple[Union[slice, int], ...]


@dataclass
class _MappedFile:
    size: int
    buffer: mmap.mmap | None  # None for an empty file, which cannot be mapped


@dataclass(frozen=True)
class _Layout:
    """A record checked against its file: what kind of data it is and which bytes it may touch."""

    kind: str  # "plain", "packed" or "blocks"
    dtype: np.dtype  # element dtype of the stored data (uint8 for packed and block types)
    shape: tuple[int, ...]
    offset: int
    nbytes: int  # bytes the data occupies (for strided records, its span)
    strides: tuple[int, ...] | None  # element strides, for plain records only


class TensorReader:
    """Reads tensors of one release through read-only memory maps (one per file, opened on first use).

    ``files`` maps a record's ``file`` (its path in the release) to where it is on disk, as a mapping or a
    function. ``byte_swapped`` names ``(file, tensor)`` pairs known to be stored big-endian (the pickle
    scanner reports them); they are refused. Use as a context manager, or call ``close()``.
    """

    def __init__(self, files: FileLocator, *, byte_swapped: Collection[tuple[str, str]] = (),
                 prefetch: bool = True):
        self._locate = files.__getitem__ if isinstance(files, Mapping) else files
        self._byte_swapped = frozenset(byte_swapped)
        self._prefetch = prefetch and hasattr(mmap, "MADV_WILLNEED")
        self._maps: dict[str, _MappedFile] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_release(cls, release, **kwargs) -> "TensorReader":
        """A reader for the files of an ``openaudit.release.Release``."""
        return cls({entry.path: entry.location for entry in release.files}, **kwargs)

    def __enter__(self) -> "TensorReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            maps, self._maps = self._maps, {}
        for mapped in maps.values():
            if mapped.buffer is not None:
                try:
                    mapped.buffer.close()
                except BufferError:
                    pass  # arrays still view it; it is unmapped when the last of them goes

    def file_size(self, file: str) -> int:
        """The size of ``file`` when it was mapped."""
        return self._mapped(file).size

    def read(self, record: TensorRecord) -> np.ndarray:
        """The whole tensor: a read-only view for plain dtypes, a new array for F4/F6 and GGUF blocks."""
        layout, mapped = self._check(record)
        if layout.kind == "plain":
            if self._prefetch and layout.nbytes:
                _will_need(mapped.buffer, layout.offset, layout.nbytes)
            return _valid_bools(record, _plain_view(mapped, layout))
        raw = _bytes(mapped, layout.offset, layout.nbytes)
        if layout.kind == "packed":
            return unpack_subbyte(raw, record.dtype, prod(layout.shape)).reshape(layout.shape)
        return dequant.dequantize(raw, record.dtype).reshape(layout.shape)

    def read_slice(self, record: TensorRecord, index: Index) -> np.ndarray:
        """The part of the tensor that ``index`` (a tuple of slices or ints, one per leading axis) selects,
        equal to ``read(record)[index]`` but reading only what it needs: a view for plain dtypes; for GGUF
        block types only the rows and blocks covering the region are dequantized; for F4/F6 only the
        selected rows are unpacked (when rows end on a byte boundary)."""
        layout, mapped = self._check(record)
        index = _normalize(index, layout.shape)
        if layout.kind == "plain":
            return _valid_bools(record, _plain_view(mapped, layout)[index])
        if layout.kind == "blocks":
            return _block_slice(mapped, layout, record.dtype, index)
        return _packed_slice(mapped, layout, record.dtype, index)

    def raw_bytes(self, record: TensorRecord) -> np.ndarray:
        """The stored bytes of a contiguous record as a read-only uint8 view (for raw-throughput baselines
        and checksums)."""
        layout, mapped = self._check(record)
        if layout.strides is not None:
            raise ValueError("raw_bytes needs a contiguous record")
        return _bytes(mapped, layout.offset, layout.nbytes)

    # -- checks ---------------------------------------------------------------------------------------

    def _check(self, record: TensorRecord) -> tuple[_Layout, _MappedFile]:
        layout = _layout(record, (record.file, record.name) in self._byte_swapped)
        mapped = self._mapped(record.file)
        end = layout.offset + layout.nbytes
        if end > mapped.size:
            raise MalformedInput(
                "truncated-file",
                f"tensor {_show(record.name)} needs bytes {layout.offset:,} to {end:,} of {_show(record.file)}, "
                f"which has {mapped.size:,}",
            )
        return layout, mapped

    def _mapped(self, file: str) -> _MappedFile:
        with self._lock:
            mapped = self._maps.get(file)
            if mapped is None:
                mapped = self._maps[file] = self._open(file)
            return mapped

    def _open(self, file: str) -> _MappedFile:
        try:
            location = self._locate(file)
        except (KeyError, LookupError):
            raise MalformedInput("unreadable-file", f"{_show(file)} is not a file of this release") from None
        with open_regular(Path(location)) as handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                return _MappedFile(0, None)
            try:
                buffer = mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ)
            except (OSError, ValueError) as exc:
                raise MalformedInput("unreadable-file", f"cannot map {_show(file)}: {exc}") from None
        return _MappedFile(size, buffer)


def load_sharded(reader: TensorReader, record: TensorRecord, sharding) -> "jax.Array":
    """The tensor as a ``jax.Array`` placed by ``sharding``, each device's part read with ``read_slice``.

    ``jax.make_array_from_callback`` asks once per addressable device, replicas included; a shard asked
    for again is served from the first read instead of being read (or dequantized) twice.
    """
    import jax

    shards: dict[tuple, np.ndarray] = {}

    def shard(index: Index) -> np.ndarray:
        key = tuple((part.start, part.stop, part.step) if isinstance(part, slice) else part for part in index)
        if key not in shards:
            shards[key] = reader.read_slice(record, index)
        return shards[key]

    return jax.make_array_from_callback(tuple(record.shape), sharding, shard)


def _layout(record: TensorRecord, byte_swapped: bool) -> _Layout:
    """Check a record on its own (dtype, shape, size, strides); the file bounds come after."""
    name, dtype = record.name, record.dtype
    shape = tuple(record.shape)
    if any(not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim < 0 for dim in shape):
        raise MalformedInput("tensor-size-mismatch", f"tensor {_show(name)} has an invalid shape {list(shape)}")
    offset = record.offset
    if offset is None or offset < 0:
        raise MalformedInput(
            "tensor-location-unknown",
            f"the position of tensor {_show(name)}'s data in {_show(record.file)} is not known",
        )
    elements = prod(shape)
    block = dequant.BLOCK_TYPES.get(dtype)
    if block is not None:
        kind, element_dtype = "blocks", np.dtype(np.uint8)
        if not shape or shape[-1] % block.block_size:
            raise MalformedInput(
                "tensor-size-mismatch",
                f"tensor {_show(name)} of type {dtype} has rows of {shape[-1] if shape else 0} elements, not a "
                f"multiple of its block size {block.block_size}",
            )
        expected = elements // block.block_size * block.type_size
    elif dtype in PACKED_BITS:
        kind, element_dtype = "packed", np.dtype(np.uint8)
        numpy_dtype(dtype)  # refuses an ml_dtypes without the type
        bits = elements * PACKED_BITS[dtype]
        if bits % 8 or (dtype != "F4" and elements % 4):
            raise MalformedInput(
                "tensor-size-mismatch", f"tensor {_show(name)} ({dtype}{list(shape)}) does not end on a byte boundary"
            )
        expected = bits // 8
    else:
        kind, element_dtype = "plain", numpy_dtype(dtype)
        expected = elements * element_dtype.itemsize
    if record.nbytes is not None and record.nbytes != expected:
        raise MalformedInput(
            "tensor-size-mismatch",
            f"tensor {_show(name)} ({dtype}{list(shape)}) needs {expected:,} bytes, "
            f"but its record says {record.nbytes:,}",
        )
    if byte_swapped and element_dtype.itemsize > 1:
        raise MalformedInput("tensor-byte-swapped", f"tensor {_show(name)} is stored big-endian")
    strides = record.strides
    if strides is not None:
        strides = tuple(strides)
        if kind != "plain":
            raise MalformedInput("tensor-bad-strides", f"tensor {_show(name)} of dtype {dtype} cannot have strides")
        if len(strides) != len(shape) or any(
            not isinstance(step, (int, np.integer)) or isinstance(step, bool) or step < 0 for step in strides
        ):
            raise MalformedInput(
                "tensor-bad-strides", f"tensor {_show(name)} has strides {list(strides)} for shape {list(shape)}"
            )
        # The bytes a strided view reaches: from its first element to one past its last.
        span = 0 if elements == 0 else (sum((dim - 1) * step for dim, step in zip(shape, strides)) + 1)
        return _Layout(kind, element_dtype, shape, offset, span * element_dtype.itemsize, strides)
    return _Layout(kind, element_dtype, shape, offset, expected, None)


def _show(name: str, limit: int = 80) -> str:
    """A name from a file, shortened and quoted with escapes (repr escapes control and bidi characters)."""
    return repr(name if len(name) <= limit else name[:limit] + "…")


# --- views ------------------------------------------------------------------------------------------


def _bytes(mapped: _MappedFile, offset: int, nbytes: int) -> np.ndarray:
    if nbytes == 0:
        return np.empty(0, dtype=np.uint8)
    return np.frombuffer(mapped.buffer, dtype=np.uint8, count=nbytes, offset=offset)


def _plain_view(mapped: _MappedFile, layout: _Layout) -> np.ndarray:
    dtype = layout.dtype
    if layout.nbytes == 0:
        empty = np.empty(layout.shape, dtype=dtype)
        empty.flags.writeable = False
        return empty
    count = layout.nbytes // dtype.itemsize
    base = np.frombuffer(mapped.buffer, dtype=dtype, count=count, offset=layout.offset)
    if layout.strides is None:
        return base.reshape(layout.shape)
    byte_strides = tuple(step * dtype.itemsize for step in layout.strides)
    # Safe: _check proved that the furthest element reachable through these strides lies in ``base``.
    return np.lib.stride_tricks.as_strided(base, shape=layout.shape, strides=byte_strides, writeable=False)


def _valid_bools(record: TensorRecord, array: np.ndarray) -> np.ndarray:
    """BOOL bytes other than 0 and 1 are not valid numpy booleans: normalise them (a copy, rare)."""
    if record.dtype != "BOOL" or array.size == 0:
        return array
    raw = array.view(np.uint8)
    if raw.max() <= 1:
        return array
    return raw != 0


def _will_need(buffer: mmap.mmap | None, offset: int, nbytes: int) -> None:
    """Ask the kernel to start reading a tensor that is about to be consumed whole (read-ahead)."""
    if buffer is None:
        return
    start = offset - offset % mmap.PAGESIZE
    try:
        buffer.madvise(mmap.MADV_WILLNEED, start, offset + nbytes - start)
    except (OSError, ValueError):
        pass  # advice only


def _normalize(index: Index, shape: tuple[int, ...]) -> tuple[slice | int, ...]:
    if not isinstance(index, tuple):
        index = (index,)
    if len(index) > len(shape):
        raise IndexError(f"index {index} has more entries than the tensor's {len(shape)} axes")
    normalized: list[slice | int] = []
    for entry, dim in zip(index, shape):
        if isinstance(entry, slice):
            picked = range(*entry.indices(dim))
            # Re-applicable form: a stop of -1 from indices() would mean "the last element" again.
            if len(picked) == 0:
                normalized.append(slice(0, 0, 1))
            else:
                stop = picked.stop if picked.stop >= 0 else None
                normalized.append(slice(picked.start, stop, picked.step))
        elif isinstance(entry, (int, np.integer)) and not isinstance(entry, bool):
            position = int(entry) + dim if entry < 0 else int(entry)
            if not 0 <= position < dim:
                raise IndexError(f"index {entry} is out of range for an axis of length {dim}")
            normalized.append(position)
        else:
            raise TypeError(f"read_slice takes slices and ints, not {type(entry).__name__}")
    normalized += [slice(0, dim, 1) for dim in shape[len(index):]]
    return tuple(normalized)


def _block_slice(mapped: _MappedFile, layout: _Layout, dtype: str, index: tuple) -> np.ndarray:
    """Dequantize only the rows and the blocks of each row that the index reaches."""
    block = dequant.BLOCK_TYPES[dtype]
    *leading, row = layout.shape
    per_row = row // block.block_size
    raw = _bytes(mapped, layout.offset, layout.nbytes).reshape(*leading, per_row, block.type_size)
    rows = raw[index[:-1]]  # a view: only the selected rows' pages are read below
    last = index[-1]
    picked = range(last, last + 1) if isinstance(last, int) else range(*last.indices(row))
    if len(picked) == 0:
        return np.empty(rows.shape[:-2] + (0,), dtype=np.float32)
    low, high = min(picked[0], picked[-1]), max(picked[0], picked[-1])
    first_block, end_block = low // block.block_size, high // block.block_size + 1
    chosen = rows[..., first_block:end_block, :]
    values = dequant.dequantize(chosen, dtype).reshape(*chosen.shape[:-2], chosen.shape[-2] * block.block_size)
    # The same selection, counted from the first decoded element.
    base = first_block * block.block_size
    if isinstance(last, int):
        return values[..., last - base]
    stop = picked.stop - base
    return values[..., slice(picked.start - base, stop if stop >= 0 else None, picked.step)]


def _packed_slice(mapped: _MappedFile, layout: _Layout, dtype: str, index: tuple) -> np.ndarray:
    """Unpack only the selected rows of an F4/F6 tensor when rows are whole bytes; else everything."""
    bits = PACKED_BITS[dtype]
    shape = layout.shape
    raw = _bytes(mapped, layout.offset, layout.nbytes)
    group = 8 if bits == 4 else 24  # bits in the smallest whole-byte run of elements
    if len(shape) >= 1 and (shape[-1] * bits) % group == 0 and shape[-1]:
        rows = raw.reshape(*shape[:-1], shape[-1] * bits // 8)[index[:-1]]
        values = unpack_subbyte(rows, dtype, rows.size * 8 // bits)
        return values.reshape(*rows.shape[:-1], shape[-1])[..., index[-1]]
    whole = unpack_subbyte(raw, dtype, prod(shape)).reshape(shape)
    return whole[index]
