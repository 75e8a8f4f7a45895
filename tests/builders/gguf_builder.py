"""Write GGUF v3 files for tests: valid ones with any metadata and tensors, and raw pieces for crafted ones.

Independent of ``openaudit.inspect.gguf`` on purpose (its own type tables), so the reader is checked
against a second reading of the specification (ggml-org/ggml ``docs/gguf.md``), not against itself.
Tensor data left as ``None`` becomes a sparse hole, so large shapes cost no disk.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import Iterable, Mapping, Sequence

# GGUF metadata value types.
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
_SCALAR_FORMATS = {
    UINT8: "B", INT8: "b", UINT16: "H", INT16: "h", UINT32: "I", INT32: "i", FLOAT32: "f", BOOL: "?",
    UINT64: "Q", INT64: "q", FLOAT64: "d",
}

# ggml types used by the tests: id -> (elements per block, bytes per block), from ggml-common.h.
F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1 = 0, 1, 2, 3, 6, 7, 8, 9
Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K = 10, 11, 12, 13, 14, 15
I8, I16, I32, I64, F64, BF16, MXFP4 = 24, 25, 26, 27, 28, 30, 39
BLOCKS: Mapping[int, tuple[int, int]] = {
    F32: (1, 4), F16: (1, 2), BF16: (1, 2), F64: (1, 8), I8: (1, 1), I16: (1, 2), I32: (1, 4), I64: (1, 8),
    Q4_0: (32, 2 + 16), Q4_1: (32, 4 + 16), Q5_0: (32, 2 + 4 + 16), Q5_1: (32, 4 + 4 + 16),
    Q8_0: (32, 2 + 32), Q8_1: (32, 4 + 32),
    Q2_K: (256, 16 + 64 + 4), Q3_K: (256, 32 + 64 + 12 + 2), Q4_K: (256, 4 + 12 + 128),
    Q5_K: (256, 4 + 12 + 32 + 128), Q6_K: (256, 128 + 64 + 16 + 2), Q8_K: (256, 4 + 256 + 32),
    MXFP4: (32, 1 + 16),
}


@dataclass(frozen=True)
class Value:
    """A typed metadata value. For ARRAY, ``element_type`` is set and ``value`` is a sequence whose items
    are plain values, or ``Value`` arrays when ``element_type`` is ARRAY."""

    type: int
    value: object
    element_type: int | None = None


def u8(v: int) -> Value: return Value(UINT8, v)
def i8(v: int) -> Value: return Value(INT8, v)
def u16(v: int) -> Value: return Value(UINT16, v)
def i16(v: int) -> Value: return Value(INT16, v)
def u32(v: int) -> Value: return Value(UINT32, v)
def i32(v: int) -> Value: return Value(INT32, v)
def f32(v: float) -> Value: return Value(FLOAT32, v)
def boolean(v: bool) -> Value: return Value(BOOL, v)
def string(v: str | bytes) -> Value: return Value(STRING, v)
def u64(v: int) -> Value: return Value(UINT64, v)
def i64(v: int) -> Value: return Value(INT64, v)
def f64(v: float) -> Value: return Value(FLOAT64, v)


def array(element_type: int, items: Sequence[object]) -> Value:
    return Value(ARRAY, list(items), element_type)


def typed(value: object) -> Value:
    """A plain Python value with the type a converter would give it (int -> UINT32 or INT64, float -> FLOAT32)."""
    if isinstance(value, Value):
        return value
    if isinstance(value, bool):
        return boolean(value)
    if isinstance(value, int):
        return u32(value) if 0 <= value < 1 << 32 else i64(value)
    if isinstance(value, float):
        return f32(value)
    if isinstance(value, (str, bytes)):
        return string(value)
    raise TypeError(f"give a Value for {value!r}")


# --- raw encodings --------------------------------------------------------------------------------------


def encode_string(text: str | bytes) -> bytes:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def encode_payload(value_type: int, value: object, element_type: int | None = None) -> bytes:
    """A value without its type tag (how array elements are stored)."""
    if value_type == STRING:
        return encode_string(value)  # type: ignore[arg-type]
    if value_type == ARRAY:
        assert element_type is not None, "an array needs its element type"
        items = list(value)  # type: ignore[call-overload]
        parts = [struct.pack("<IQ", element_type, len(items))]
        for item in items:
            if element_type == ARRAY:
                assert isinstance(item, Value) and item.type == ARRAY
                parts.append(encode_payload(ARRAY, item.value, item.element_type))
            else:
                parts.append(encode_payload(element_type, item))
        return b"".join(parts)
    return struct.pack("<" + _SCALAR_FORMATS[value_type], value)


def encode_value(value: object) -> bytes:
    """The type tag and the payload of a metadata value."""
    typed_value = typed(value)
    return struct.pack("<I", typed_value.type) + encode_payload(
        typed_value.type, typed_value.value, typed_value.element_type
    )


def encode_kv(key: str | bytes, value: object) -> bytes:
    return encode_string(key) + encode_value(value)


def encode_header(tensor_count: int, kv_count: int, *, version: int = 3, magic: bytes = b"GGUF") -> bytes:
    return magic + struct.pack("<IQQ", version, tensor_count, kv_count)


def encode_tensor_info(name: str | bytes, gguf_dims: Sequence[int], ggml_type: int, offset: int) -> bytes:
    """A tensor info; ``gguf_dims`` are in GGUF order (fastest-varying first, the reverse of numpy)."""
    return (
        encode_string(name)
        + struct.pack("<I", len(gguf_dims))
        + b"".join(struct.pack("<Q", dim) for dim in gguf_dims)
        + struct.pack("<IQ", ggml_type, offset)
    )


def write_raw(path: Path, *parts: bytes, size: int | None = None) -> Path:
    """Write the parts one after the other; ``size`` extends the file with a sparse hole."""
    data = b"".join(parts)
    with open(path, "wb") as handle:
        handle.write(data)
        if size is not None:
            handle.truncate(size)
    return path


# --- valid files ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorSpec:
    """A tensor to write: ``shape`` in numpy order; ``data`` None leaves a sparse hole of the right size;
    ``offset`` overrides the data offset written in the info (relative to the data section)."""

    name: str
    ggml_type: int
    shape: tuple[int, ...]
    data: bytes | None = None
    offset: int | None = None


def tensor_nbytes(ggml_type: int, shape: Sequence[int]) -> int:
    block, block_bytes = BLOCKS[ggml_type]
    elements = prod(shape)
    assert shape and shape[-1] % block == 0, "rows must be whole blocks"
    return elements // block * block_bytes


@dataclass(frozen=True)
class GGUFLayout:
    """Where the writer put things: the data section start, each tensor's relative and absolute offset."""

    path: Path
    data_start: int
    size: int
    relative_offsets: dict[str, int] = field(default_factory=dict)

    def absolute(self, name: str) -> int:
        return self.data_start + self.relative_offsets[name]


def _pad(offset: int, alignment: int) -> int:
    return offset + (-offset % alignment)


def write_gguf(
    path: Path,
    metadata: Mapping[str, object] | Iterable[tuple[str | bytes, object]] = (),
    tensors: Sequence[TensorSpec] = (),
    *,
    alignment: int = 32,
    version: int = 3,
    pad_end: bool = True,
) -> GGUFLayout:
    """Write a GGUF file the way gguf-py's GGUFWriter lays it out: header, metadata, tensor infos, padding
    to ``alignment``, then each tensor's data padded to ``alignment``.

    ``metadata`` may be a list of pairs (to repeat a key). A non-default ``alignment`` adds a UINT32
    ``general.alignment`` unless the metadata already has that key.
    """
    pairs = list(metadata.items()) if isinstance(metadata, Mapping) else list(metadata)
    if alignment != 32 and not any(key == "general.alignment" for key, _ in pairs):
        pairs.append(("general.alignment", u32(alignment)))

    relative: dict[str, int] = {}
    sizes: list[int] = []
    cursor = 0
    for spec in tensors:
        nbytes = tensor_nbytes(spec.ggml_type, spec.shape)
        if spec.data is not None:
            assert len(spec.data) == nbytes, f"{spec.name}: {len(spec.data)} bytes given, {nbytes} needed"
        offset = cursor if spec.offset is None else spec.offset
        relative[spec.name] = offset
        sizes.append(nbytes)
        cursor = _pad(max(cursor, offset + nbytes), alignment)

    header = [encode_header(len(tensors), len(pairs), version=version)]
    header += [encode_kv(key, value) for key, value in pairs]
    header += [
        encode_tensor_info(spec.name, tuple(reversed(spec.shape)), spec.ggml_type, relative[spec.name])
        for spec in tensors
    ]
    head = b"".join(header)
    data_start = _pad(len(head), alignment) if tensors else len(head)
    end = data_start + cursor
    if not pad_end and tensors:
        end = max(data_start + relative[s.name] + n for s, n in zip(tensors, sizes))
    with open(path, "wb") as handle:
        handle.write(head)
        for spec in tensors:
            if spec.data is not None:
                handle.seek(data_start + relative[spec.name])
                handle.write(spec.data)
        handle.truncate(end)
    return GGUFLayout(path=path, data_start=data_start, size=end, relative_offsets=relative)
