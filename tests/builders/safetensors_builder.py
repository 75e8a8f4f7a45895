"""Write safetensors files for tests: valid ones laid out like the official writer, and raw malformed ones.

The layout follows huggingface/safetensors ``tensor.rs`` ``prepare()``: the header is compact JSON
(``__metadata__`` first), tensors sorted by descending dtype (the Rust enum order, which is increasing
alignment) then by name, offsets packed from 0, the JSON padded with spaces to a multiple of 8. With
``sparse=True`` the data region is a hole made by ``truncate``, so a file with Grok-1's shapes (631 GB)
costs a few kilobytes of disk. This module keeps its own dtype table so that it does not trust the code
under test.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import Any, Mapping, Sequence

# Rust `Dtype` enum order (increasing alignment) and bits per element, safetensors 0.8.
DTYPE_ORDER: tuple[str, ...] = (
    "BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ",
    "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "C64", "F64", "I64", "U64",
)
BITS: Mapping[str, int] = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8,
    "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}
# numpy dtype names (ml_dtypes for the small floats) -> safetensors dtype, as safetensors' bindings map them.
NUMPY_DTYPES: Mapping[str, str] = {
    "bool": "BOOL", "uint8": "U8", "int8": "I8", "float8_e5m2": "F8_E5M2", "float8_e4m3fn": "F8_E4M3",
    "float8_e8m0fnu": "F8_E8M0", "float8_e4m3fnuz": "F8_E4M3FNUZ", "float8_e5m2fnuz": "F8_E5M2FNUZ",
    "int16": "I16", "uint16": "U16", "float16": "F16", "bfloat16": "BF16", "int32": "I32", "uint32": "U32",
    "float32": "F32", "complex64": "C64", "float64": "F64", "int64": "I64", "uint64": "U64",
}

TensorSpec = tuple[str, Sequence[int]]


@dataclass(frozen=True)
class Layout:
    """Where everything lands in a file the builder writes."""

    header: bytes  # the padded JSON header (N = len(header))
    offsets: Mapping[str, tuple[int, int]]  # data_offsets, relative to the data region
    dtypes: Mapping[str, str]
    shapes: Mapping[str, tuple[int, ...]]
    data_len: int

    @property
    def data_start(self) -> int:
        return 8 + len(self.header)

    @property
    def file_size(self) -> int:
        return self.data_start + self.data_len

    def absolute(self, name: str) -> int:
        return self.data_start + self.offsets[name][0]

    def prefix(self) -> bytes:
        """The first 8 + N bytes of the file."""
        return struct.pack("<Q", len(self.header)) + self.header


def tensor_nbytes(dtype: str, shape: Sequence[int]) -> int:
    bits = prod(shape) * BITS[dtype]
    if bits % 8:
        raise ValueError(f"{dtype} {list(shape)} does not end on a byte boundary")
    return bits // 8


def layout(tensors: Mapping[str, TensorSpec], metadata: Mapping[str, str] | None = None) -> Layout:
    """The official writer's layout for ``{name: (dtype, shape)}``."""
    names = sorted(tensors, key=lambda name: (-DTYPE_ORDER.index(tensors[name][0]), name))
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offsets: dict[str, tuple[int, int]] = {}
    cursor = 0
    for name in names:
        dtype, shape = tensors[name]
        end = cursor + tensor_nbytes(dtype, shape)
        offsets[name] = (cursor, end)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [cursor, end]}
        cursor = end
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return Layout(
        header=text,
        offsets=offsets,
        dtypes={name: tensors[name][0] for name in names},
        shapes={name: tuple(tensors[name][1]) for name in names},
        data_len=cursor,
    )


def write_safetensors(
    path: str | os.PathLike,
    tensors: Mapping[str, Any],
    metadata: Mapping[str, str] | None = None,
    sparse: bool = True,
) -> Layout:
    """Write a valid safetensors file. Values are numpy arrays (their bytes are written) or
    ``(dtype, shape)`` pairs, whose data is a sparse hole when ``sparse`` and explicit zeros otherwise."""
    specs: dict[str, TensorSpec] = {}
    arrays: dict[str, Any] = {}
    for name, value in tensors.items():
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
            specs[name] = (value[0], tuple(value[1]))
        else:
            array = _little_endian(value)
            specs[name] = (NUMPY_DTYPES[array.dtype.name], array.shape)
            arrays[name] = array
    plan = layout(specs, metadata)
    with open(path, "wb") as handle:
        handle.write(plan.prefix())
        for name, (begin, end) in plan.offsets.items():
            if name in arrays:
                handle.seek(plan.data_start + begin)
                handle.write(arrays[name].tobytes())
            elif not sparse:
                handle.seek(plan.data_start + begin)
                _write_zeros(handle, end - begin)
        handle.truncate(plan.file_size)
    return plan


def write_raw(
    path: str | os.PathLike,
    header: bytes | str | Mapping[str, Any],
    data_len: int = 0,
    *,
    declared_length: int | None = None,
) -> Path:
    """Write an 8-byte length, ``header`` as given (a dict is dumped compactly, unpadded) and a sparse
    data region of ``data_len`` bytes; ``declared_length`` overrides the length written."""
    if isinstance(header, Mapping):
        header = json.dumps(header, separators=(",", ":"))
    if isinstance(header, str):
        header = header.encode("utf-8")
    length = len(header) if declared_length is None else declared_length
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", length) + header)
        handle.truncate(8 + len(header) + data_len)
    return Path(path)


def write_sharded(
    directory: str | os.PathLike,
    tensors: Mapping[str, Sequence[int] | TensorSpec],
    shard_count: int,
    dtype: str = "BF16",
) -> Path:
    """Write ``model-0000i-of-0000n.safetensors`` shards (sparse) and ``model.safetensors.index.json``.

    ``tensors`` maps names to shapes (all of ``dtype``) or to ``(dtype, shape)``; they are split in
    order into ``shard_count`` runs of near-equal count. Returns the index path.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    specs = {name: _spec(value, dtype) for name, value in tensors.items()}
    names = list(specs)
    weight_map: dict[str, str] = {}
    total = 0
    base, extra = divmod(len(names), shard_count)
    start = 0
    for index in range(shard_count):
        count = base + (1 if index < extra else 0)
        shard = {name: specs[name] for name in names[start : start + count]}
        start += count
        file_name = f"model-{index + 1:05d}-of-{shard_count:05d}.safetensors"
        plan = write_safetensors(directory / file_name, shard, metadata={"format": "pt"})
        total += plan.data_len
        weight_map.update((name, file_name) for name in shard)
    index_path = directory / "model.safetensors.index.json"
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    index_path.write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return index_path


def _spec(value: Sequence[int] | TensorSpec, dtype: str) -> TensorSpec:
    if len(value) == 2 and isinstance(value[0], str):
        return (value[0], tuple(value[1]))  # type: ignore[arg-type]
    return (dtype, tuple(value))  # type: ignore[arg-type]


def _little_endian(array: Any) -> Any:
    import numpy as np

    array = np.asarray(array, order="C")  # ascontiguousarray would turn a 0-d scalar into 1-d
    if array.dtype.byteorder == ">":
        array = array.byteswap().view(array.dtype.newbyteorder("<"))
    return array


def _write_zeros(handle, count: int) -> None:
    chunk = b"\0" * min(count, 1 << 20)
    while count > 0:
        handle.write(chunk[:count])
        count -= len(chunk)
