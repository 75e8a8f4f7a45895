"""A hardened GGUF reader: header, metadata and tensor infos, never the tensor data.

Layout (ggml-org/ggml ``docs/gguf.md``, GGUF v3, little-endian): ``"GGUF"``, uint32 version, uint64
tensor_count, uint64 metadata_kv_count, the key/value pairs, the tensor infos (name, uint32 n_dims, uint64
dims fastest-first, uint32 ggml_type, uint64 offset relative to the data section), padding to the
alignment, then the data.

Crafted headers are the threat: the ``gguf`` package 0.19.0 hangs on a 49-byte file that declares an array
of 2^63 elements. Here every count and length is checked against the bytes left in the file, at the
smallest size one element can be encoded in, *before* any loop or allocation; loops poll a ``Deadline``;
what is kept in memory has a budget. Fatal problems raise ``MalformedInput``; the rest become warnings.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO, Callable, Mapping

from openaudit.errors import MalformedInput
from openaudit.findings import Finding, finding
from openaudit.inspect.tensors import BUFFER, PARAMETER, TensorRecord, WeightsFileScan
from openaudit.limits import Deadline, open_regular
from openaudit.release import printable


@dataclass(frozen=True)
class GgmlType:
    """A ggml tensor type: ``block_size`` elements are stored in ``type_size`` bytes."""

    name: str
    block_size: int
    type_size: int


# Every ggml_type id that may appear in a GGUF file (ggml/include/ggml.h ``enum ggml_type``) with its block
# size and block bytes (ggml/src/ggml-common.h ``block_*`` static_asserts, ggml.c ``type_traits``).
# Ids 4, 5 (Q4_2, Q4_3), 31-33 (Q4_0_4_4 …) and 36-38 (IQ4_NL_4_4 …) were removed from GGUF files.
# Q8_1 is 36 bytes in current ggml (two fp16 + 32 int8); gguf-py's GGML_QUANT_SIZES still says 40.
GGML_TYPES: Mapping[int, GgmlType] = MappingProxyType(
    {
        0: GgmlType("F32", 1, 4),
        1: GgmlType("F16", 1, 2),
        2: GgmlType("Q4_0", 32, 18),
        3: GgmlType("Q4_1", 32, 20),
        6: GgmlType("Q5_0", 32, 22),
        7: GgmlType("Q5_1", 32, 24),
        8: GgmlType("Q8_0", 32, 34),
        9: GgmlType("Q8_1", 32, 36),
        10: GgmlType("Q2_K", 256, 84),
        11: GgmlType("Q3_K", 256, 110),
        12: GgmlType("Q4_K", 256, 144),
        13: GgmlType("Q5_K", 256, 176),
        14: GgmlType("Q6_K", 256, 210),
        15: GgmlType("Q8_K", 256, 292),
        16: GgmlType("IQ2_XXS", 256, 66),
        17: GgmlType("IQ2_XS", 256, 74),
        18: GgmlType("IQ3_XXS", 256, 98),
        19: GgmlType("IQ1_S", 256, 50),
        20: GgmlType("IQ4_NL", 32, 18),
        21: GgmlType("IQ3_S", 256, 110),
        22: GgmlType("IQ2_S", 256, 82),
        23: GgmlType("IQ4_XS", 256, 136),
        24: GgmlType("I8", 1, 1),
        25: GgmlType("I16", 1, 2),
        26: GgmlType("I32", 1, 4),
        27: GgmlType("I64", 1, 8),
        28: GgmlType("F64", 1, 8),
        29: GgmlType("IQ1_M", 256, 56),
        30: GgmlType("BF16", 1, 2),
        34: GgmlType("TQ1_0", 256, 54),
        35: GgmlType("TQ2_0", 256, 66),
        39: GgmlType("MXFP4", 32, 17),
        40: GgmlType("NVFP4", 64, 36),
        41: GgmlType("Q1_0", 128, 18),
        42: GgmlType("Q2_0", 64, 18),
    }
)

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
DEFAULT_ALIGNMENT = 32
GGML_MAX_DIMS = 4
# ggml stores names in char[GGML_MAX_NAME] with a terminating NUL, so it accepts at most 63 bytes.
GGML_MAX_NAME = 64
MAX_KEY_BYTES = 65_535
# Far above any real model (a few hundred keys), far below what a crafted header could make a Python dict hold.
MAX_METADATA_KEYS = 65_536
# Real GGUF files have a few hundred to ~2,000 tensors (llama.cpp stores MoE experts as one 3-D tensor per
# layer); even one tensor per expert, as early Mixtral conversions did, is 256 experts x 61 layers x 3 =
# 46,848 for a DeepSeek-V3-sized model. 2^17 is nearly three times that, and reading 2^17 infos takes
# well under a second, where the former 2^20 let four crafted files take 17 s.
MAX_TENSORS = 1 << 17
# Elements of arrays with no fixed element size (strings, nested arrays) can only be walked one at a time.
# Real ones are a vocabulary (at most ~262K tokens: Gemma 3) and its BPE merges (a few hundred thousand:
# about 280K for Llama 3's 128K tokens), well under 10^6 together; 2^21 per file is several times that and
# takes under a second to walk. Past it the file is hostile and parsing stops. Numeric arrays are skipped
# with one seek whatever their length, so they need no such cap.
MAX_WALKED_ELEMENTS = 1 << 21
MAX_ARRAY_DEPTH = 8
# Strings longer than this are summarised, never read (chat templates are tens of KiB).
MAX_KEPT_STRING_BYTES = 1 << 20
# Without keep_arrays, arrays up to this length are kept (general.tags, per-layer head counts …).
SMALL_ARRAY_ELEMENTS = 64
# What one file may make us hold: enough for a 262,144-token vocabulary with scores, types and merges.
KEPT_ELEMENTS_BUDGET = 8_000_000
KEPT_BYTES_BUDGET = 256 << 20
# The same finding id is reported at most this many times per file, then counted.
MAX_FINDINGS_PER_ID = 20
_INT64_MAX = (1 << 63) - 1
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_DIMS = tuple(struct.Struct(f"<{n}Q") for n in range(GGML_MAX_DIMS + 1))
_TYPE_AND_OFFSET = struct.Struct("<IQ")
_BUFFER_BYTES = 1 << 16

# GGUF metadata value types: id -> (name, struct format or None, smallest encoded size in bytes).
_STRING, _ARRAY = 8, 9
_VALUE_TYPES: Mapping[int, tuple[str, str | None, int]] = {
    0: ("UINT8", "B", 1),
    1: ("INT8", "b", 1),
    2: ("UINT16", "H", 2),
    3: ("INT16", "h", 2),
    4: ("UINT32", "I", 4),
    5: ("INT32", "i", 4),
    6: ("FLOAT32", "f", 4),
    7: ("BOOL", "?", 1),
    _STRING: ("STRING", None, 8),  # uint64 length, then the bytes
    _ARRAY: ("ARRAY", None, 12),  # uint32 element type, uint64 count, then the elements
    10: ("UINT64", "Q", 8),
    11: ("INT64", "q", 8),
    12: ("FLOAT64", "d", 8),
}
# Smallest encodings: a key/value pair is a key length, an (invalid but readable) empty key, a type and a
# one-byte value; a tensor info is a name length, n_dims, a type and an offset.
_MIN_KV_BYTES = 8 + 4 + 1
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8


@dataclass(frozen=True)
class GGUFFile:
    """What the header of a GGUF file says.

    ``metadata`` maps keys to Python values; arrays and long strings that were not kept are summaries
    such as ``{"type": "array", "element_type": "STRING", "count": 32000}``. ``metadata_types`` gives
    each key's GGUF type (``UINT32``, ``ARRAY[STRING]`` …). ``tensors`` are in file order, shapes in numpy
    order, offsets absolute. ``complete`` is False when some tensor was left out (``skipped_tensors``)
    or its data is not inside the file.
    """

    version: int
    alignment: int
    metadata: dict[str, object]
    metadata_types: dict[str, str]
    tensors: tuple[TensorRecord, ...]
    data_start: int
    warnings: tuple[Finding, ...]
    tensor_count: int
    skipped_tensors: tuple[str, ...] = ()
    complete: bool = True


def read_gguf(
    location: Path, path: str, size: int, *, keep_arrays: bool = False, deadline: Deadline | None = None
) -> GGUFFile:
    """Read the header of the GGUF file at ``location`` (``path`` names it in the release, ``size`` bytes).

    With ``keep_arrays`` metadata arrays are kept as lists (the embedded tokenizer needs them) within a
    memory budget; otherwise only short ones are. Raises ``MalformedInput`` when the header cannot be read.
    """
    parser = _Parser(path, size, keep_arrays, deadline or Deadline())
    with open_regular(location) as handle:
        return parser.parse(handle)


def scan_gguf(location: Path, path: str, size: int, *, deadline: Deadline | None = None) -> WeightsFileScan:
    """Inspect one GGUF file for the audit; a malformed file gives findings and ``complete=False``."""
    parser = _Parser(path, size, keep_arrays=False, deadline=deadline or Deadline())
    try:
        with open_regular(location) as handle:
            header = parser.parse(handle)
    except MalformedInput as exc:
        fatal = finding(exc.finding_id, str(exc), path)
        return WeightsFileScan(
            path=path,
            format="gguf",
            container="gguf",
            tensors=tuple(parser.records),
            metadata=dict(parser.metadata),
            findings=(*parser.log.findings(), fatal),
            complete=False,
        )
    return WeightsFileScan(
        path=path,
        format="gguf",
        container="gguf",
        tensors=header.tensors,
        metadata=header.metadata,
        findings=header.warnings,
        complete=header.complete,
    )


def ggml_nbytes(ggml_type: GgmlType, elements: int) -> int:
    """Bytes of ``elements`` values of ``ggml_type`` (a whole number of blocks)."""
    return elements // ggml_type.block_size * ggml_type.type_size


# --- internals -----------------------------------------------------------------------------------------


class _FindingLog:
    """Warnings of one file, at most MAX_FINDINGS_PER_ID per id so a crafted file cannot flood the report."""

    def __init__(self, path: str):
        self._path = path
        self._kept: list[Finding] = []
        self._counts: dict[str, int] = {}

    def add(self, rule_id: str, message: str | Callable[[], str]) -> None:
        """Record a finding; ``message`` may be a function, called only when the finding is kept, so that
        a crafted file repeating one problem a million times does not format a million messages."""
        count = self._counts.get(rule_id, 0) + 1
        self._counts[rule_id] = count
        if count <= MAX_FINDINGS_PER_ID:
            self._kept.append(finding(rule_id, message if isinstance(message, str) else message(), self._path))

    def findings(self) -> tuple[Finding, ...]:
        extra = [
            finding(rule_id, f"{count - MAX_FINDINGS_PER_ID} more findings of this kind are not listed", self._path)
            for rule_id, count in self._counts.items()
            if count > MAX_FINDINGS_PER_ID
        ]
        return (*self._kept, *extra)


class _Cursor:
    """Sequential little-endian reads over an unbuffered handle, never past ``size`` bytes."""

    def __init__(self, handle: BinaryIO, size: int):
        self._handle = handle
        self._size = size
        self._buffer = b""
        self._start = 0  # file offset of _buffer[0]
        self._index = 0  # read position inside _buffer

    @property
    def offset(self) -> int:
        return self._start + self._index

    @property
    def remaining(self) -> int:
        return self._size - self.offset

    def read(self, count: int, what: str) -> bytes:
        if count > self.remaining:
            raise MalformedInput("truncated-file", f"file ends inside {what} (byte {self.offset})")
        end = self._index + count
        if end > len(self._buffer):
            self._fill(count, what)
            end = count
        data = self._buffer[self._index : end]
        self._index = end
        return data

    def skip(self, count: int, what: str) -> None:
        if count > self.remaining:
            raise MalformedInput("truncated-file", f"file ends inside {what} (byte {self.offset})")
        if self._index + count <= len(self._buffer):
            self._index += count
            return
        target = self.offset + count
        self._seek(target)

    def unpack(self, fmt: str, size: int, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.read(size, what))

    def u32(self, what: str) -> int:
        index = self._index
        if index + 4 <= len(self._buffer):  # the buffer never extends past ``size``
            self._index = index + 4
            return _U32.unpack_from(self._buffer, index)[0]
        return _U32.unpack(self.read(4, what))[0]

    def u64(self, what: str) -> int:
        index = self._index
        if index + 8 <= len(self._buffer):
            self._index = index + 8
            return _U64.unpack_from(self._buffer, index)[0]
        return _U64.unpack(self.read(8, what))[0]

    def tensor_info(self) -> tuple[bytes, tuple[int, ...], int, int] | None:
        """(name, dims, ggml type, offset) of the tensor info at the cursor when it lies whole in the buffer
        and has a plausible name length and dimension count; None (nothing consumed) otherwise, and the
        caller reads it field by field. One bounds check per info instead of six reads."""
        buffer, index = self._buffer, self._index
        available = len(buffer)  # the buffer never extends past ``size``
        if index + 8 > available:
            return None
        name_end = index + 8 + _U64.unpack_from(buffer, index)[0]
        if name_end + 4 > available or name_end - index - 8 > MAX_KEY_BYTES:
            return None
        n_dims = _U32.unpack_from(buffer, name_end)[0]
        if n_dims > GGML_MAX_DIMS:
            return None
        end = name_end + 4 + 8 * n_dims + 12
        if end > available:
            return None
        dims = _DIMS[n_dims].unpack_from(buffer, name_end + 4)
        type_id, offset = _TYPE_AND_OFFSET.unpack_from(buffer, end - 12)
        self._index = end
        return buffer[index + 8 : name_end], dims, type_id, offset

    def skip_strings(self, count: int, what: str, deadline: Deadline) -> None:
        """Skip ``count`` length-prefixed strings, reading only their lengths.

        A tight loop over the buffered bytes (about five times faster than a read per string), polling the
        deadline once per buffer; a string longer than the buffer is passed with a seek.
        """
        unpack_from = _U64.unpack_from
        while count:
            deadline.check_now()
            if len(self._buffer) - self._index < 8:
                if self.remaining < 8:
                    raise MalformedInput("truncated-file", f"file ends inside {what} (byte {self.offset})")
                self._fill(8, what)
            buffer, index = self._buffer, self._index
            last = len(buffer) - 8  # the last index where a whole length field is buffered
            limit = self._size - self._start  # the end of the file, relative to the buffer
            start = index
            left = count
            # Only the last string of a pass can end past the buffer (the loop stops there), so the file's
            # end is checked once, after the loop.
            while index <= last:
                start = index
                index += 8 + unpack_from(buffer, index)[0]
                left -= 1
                if not left:
                    break
            if index > limit:
                self._index = start
                length = index - start - 8
                raise MalformedInput(
                    "gguf-length-exceeds-file", f"{what} declares {length} bytes, but only {limit - start - 8} remain"
                )
            count = left
            if index > len(buffer):
                self._seek(self._start + index)  # inside the file: checked against ``limit`` above
            else:
                self._index = index

    def _seek(self, target: int) -> None:
        try:
            self._handle.seek(target)
        except OSError as exc:
            raise MalformedInput("unreadable-file", f"cannot seek: {exc.strerror or exc}") from None
        self._buffer, self._start, self._index = b"", target, 0

    def _fill(self, count: int, what: str) -> None:
        # Keep the unread tail and read at least what is missing (a whole chunk when the file has it).
        tail = self._buffer[self._index :]
        self._start += self._index
        self._index = 0
        end_of_buffer = self._start + len(tail)
        wanted = min(max(count - len(tail), _BUFFER_BYTES), self._size - end_of_buffer)
        parts = [tail]
        got = 0
        while got < wanted:
            try:
                chunk = self._handle.read(wanted - got)
            except OSError as exc:
                raise MalformedInput("unreadable-file", f"cannot read: {exc.strerror or exc}") from None
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        self._buffer = b"".join(parts)
        if len(self._buffer) < count:
            raise MalformedInput("truncated-file", f"file ends inside {what} (shorter than its listed size)")


class _Budget:
    """How many more array elements and string bytes this file may make us keep."""

    def __init__(self) -> None:
        self.elements = KEPT_ELEMENTS_BUDGET
        self.bytes = KEPT_BYTES_BUDGET

    def take(self, elements: int, data_bytes: int) -> bool:
        if elements > self.elements or data_bytes > self.bytes:
            return False
        self.elements -= elements
        self.bytes -= data_bytes
        return True


@dataclass
class _PendingTensor:
    name: str
    ggml_type: GgmlType
    shape: tuple[int, ...]
    nbytes: int
    relative_offset: int


class _Parser:
    """One parse of one file; holds what was read so far, so a failed parse can still report it."""

    def __init__(self, path: str, size: int, keep_arrays: bool, deadline: Deadline):
        self.path = path
        self.size = size
        self.keep_arrays = keep_arrays
        self.deadline = deadline
        self.log = _FindingLog(path)
        self.metadata: dict[str, object] = {}
        self.metadata_types: dict[str, str] = {}
        self.records: list[TensorRecord] = []
        self._budget = _Budget()
        self._utf8_reported: set[str] = set()
        self._walked = 0  # elements of string and nested arrays walked so far

    # -- header ---------------------------------------------------------------------------------------

    def parse(self, handle: BinaryIO) -> GGUFFile:
        cursor = _Cursor(handle, self.size)
        self.deadline.check_now()
        magic = cursor.read(4, "the magic bytes")
        if magic != GGUF_MAGIC:
            raise MalformedInput("gguf-bad-magic", f"the file starts with {_show_bytes(magic)}, not 'GGUF'")
        version = self._read_version(cursor)
        tensor_count = cursor.u64("the tensor count")
        kv_count = cursor.u64("the metadata key count")
        self._check_counts(cursor, tensor_count, kv_count)

        for index in range(kv_count):
            self.deadline.check()
            self._read_kv(cursor, index)
        alignment = self._alignment()
        if "general.architecture" not in self.metadata:
            self.log.add("gguf-missing-architecture", "the file has no general.architecture key")

        pending: list[_PendingTensor] = []
        skipped: list[str] = []
        seen: set[str] = set()
        for index in range(tensor_count):
            self.deadline.check()
            tensor = self._read_tensor_info(cursor, index, seen)
            if isinstance(tensor, str):
                skipped.append(tensor)
            else:
                pending.append(tensor)

        header_end = cursor.offset
        data_start = _pad(header_end, alignment) if tensor_count else header_end
        data_ok = self._place_tensors(pending, data_start, alignment)
        self._check_trailing(pending, skipped, data_start, alignment, header_end)
        return GGUFFile(
            version=version,
            alignment=alignment,
            metadata=self.metadata,
            metadata_types=self.metadata_types,
            tensors=tuple(self.records),
            data_start=data_start,
            warnings=self.log.findings(),
            tensor_count=tensor_count,
            skipped_tensors=tuple(skipped),
            complete=data_ok and not skipped,
        )

    def _read_version(self, cursor: _Cursor) -> int:
        version = cursor.u32("the version")
        if version in (2, GGUF_VERSION):
            if version == 2:
                self.log.add("gguf-legacy-version", "GGUF version 2 (current writers produce version 3)")
            return version
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        if version & 0xFFFF == 0 and swapped in (1, 2, 3):
            raise MalformedInput(
                "gguf-big-endian",
                f"the version field reads {version:#010x}, which is version {swapped} byte-swapped: "
                "a big-endian GGUF file, which openaudit does not read",
            )
        if version == 1:
            raise MalformedInput("gguf-unsupported-version", "GGUF version 1 (ggml no longer loads it)")
        raise MalformedInput("gguf-unsupported-version", f"GGUF version {version} (openaudit reads 2 and 3)")

    def _check_counts(self, cursor: _Cursor, tensor_count: int, kv_count: int) -> None:
        remaining = cursor.remaining
        needed = kv_count * _MIN_KV_BYTES + tensor_count * _MIN_TENSOR_INFO_BYTES
        if needed > remaining:
            raise MalformedInput(
                "gguf-length-exceeds-file",
                f"the header declares {kv_count} metadata keys and {tensor_count} tensors, which need at least "
                f"{needed} bytes, but only {remaining} remain",
            )
        if kv_count > MAX_METADATA_KEYS:
            raise MalformedInput(
                "gguf-too-many-entries", f"the header declares {kv_count} metadata keys (limit {MAX_METADATA_KEYS})"
            )
        if tensor_count > MAX_TENSORS:
            raise MalformedInput(
                "gguf-too-many-entries", f"the header declares {tensor_count} tensors (limit {MAX_TENSORS})"
            )

    # -- metadata -------------------------------------------------------------------------------------

    def _read_kv(self, cursor: _Cursor, index: int) -> None:
        key_length = cursor.u64(f"the length of metadata key {index}")
        if key_length > MAX_KEY_BYTES:
            if key_length > cursor.remaining:
                raise MalformedInput(
                    "gguf-length-exceeds-file",
                    f"metadata key {index} is {key_length} bytes long, but only {cursor.remaining} remain",
                )
            raise MalformedInput(
                "gguf-invalid-key", f"metadata key {index} is {key_length} bytes long (limit {MAX_KEY_BYTES})"
            )
        key = self._decode(cursor.read(key_length, f"metadata key {index}"), f"metadata key {index}")
        if not key:
            self.log.add("gguf-invalid-key", f"metadata key {index} is empty")
        value_type = cursor.u32(f"the type of {_show(key)}")
        value, type_label = self._read_value(cursor, value_type, key, depth=0)
        if key in self.metadata:
            self.log.add("gguf-duplicate-key", f"the key {_show(key)} appears more than once; the first value is kept")
            return
        self.metadata[key] = value
        self.metadata_types[key] = type_label

    def _read_value(self, cursor: _Cursor, value_type: int, key: str, depth: int) -> tuple[object, str]:
        spec = _VALUE_TYPES.get(value_type)
        if spec is None:
            raise MalformedInput("gguf-unknown-value-type", f"the value of {_show(key)} has type {value_type}")
        name, fmt, size = spec
        if fmt is not None:
            value = cursor.unpack(fmt, size, f"the value of {_show(key)}")[0]
            return (_shortest_float32(value) if value_type == 6 else value), name
        if value_type == _STRING:
            return self._read_string_value(cursor, key), name
        return self._read_array(cursor, key, depth + 1, may_keep=True)

    def _read_string_value(self, cursor: _Cursor, key: str) -> object:
        length = self._string_length(cursor, f"the string {_show(key)}")
        if length > MAX_KEPT_STRING_BYTES:
            cursor.skip(length, f"the value of {_show(key)}")
            self.log.add("gguf-value-not-kept", f"the string {_show(key)} has {length} bytes; it is summarised")
            return {"type": "string", "bytes": length}
        return self._decode(cursor.read(length, f"the value of {_show(key)}"), f"the value of {_show(key)}")

    def _string_length(self, cursor: _Cursor, where: str) -> int:
        length = cursor.u64(where)
        if length > cursor.remaining:
            raise MalformedInput(
                "gguf-length-exceeds-file",
                f"{where} declares {length} bytes, but only {cursor.remaining} remain",
            )
        return length

    def _read_array(self, cursor: _Cursor, key: str, depth: int, may_keep: bool) -> tuple[object, str]:
        if depth > MAX_ARRAY_DEPTH:
            raise MalformedInput(
                "gguf-array-too-deep", f"arrays in {_show(key)} nest more than {MAX_ARRAY_DEPTH} levels deep"
            )
        element_type = cursor.u32(f"the element type of {_show(key)}")
        count = cursor.u64(f"the length of {_show(key)}")
        spec = _VALUE_TYPES.get(element_type)
        if spec is None:
            raise MalformedInput(
                "gguf-unknown-value-type", f"the elements of {_show(key)} have type {element_type}"
            )
        element_name, fmt, min_size = spec
        # The bound that keeps a crafted count from driving a loop or an allocation.
        if count > cursor.remaining // min_size:
            raise MalformedInput(
                "gguf-length-exceeds-file",
                f"the array {_show(key)} declares {count} {element_name} elements (at least {min_size} bytes "
                f"each), but only {cursor.remaining} bytes remain",
            )
        if fmt is None:
            self._count_walked(key, count, element_name)
        label = f"ARRAY[{element_name}]"
        summary = {"type": "array", "element_type": element_name, "count": count}
        # Without keep_arrays, short flat arrays are kept (tags, languages, per-layer sizes); long or
        # nested ones are summarised.
        keep = may_keep and (
            self.keep_arrays or (count <= SMALL_ARRAY_ELEMENTS and element_type != _ARRAY)
        )
        if fmt is not None:
            data_bytes = count * min_size
            if keep and self._budget.take(count, data_bytes):
                values = list(struct.unpack(f"<{count}{fmt}", cursor.read(data_bytes, f"the array {_show(key)}")))
                return values, label
            cursor.skip(data_bytes, f"the array {_show(key)}")
            self._not_kept(key, keep, summary)
            return summary, label
        if element_type == _STRING:
            return self._read_string_array(cursor, key, count, keep, summary), label
        return self._read_nested_arrays(cursor, key, count, depth, keep, summary), label

    def _count_walked(self, key: str, count: int, element_name: str) -> None:
        """Refuse string and nested arrays longer than any real file has: each element costs a step."""
        self._walked += count
        if self._walked > MAX_WALKED_ELEMENTS:
            earlier = self._walked - count
            raise MalformedInput(
                "gguf-too-many-entries",
                f"the array {_show(key)} declares {count} {element_name} elements"
                + (f" after {earlier} in earlier arrays" if earlier else "")
                + f"; openaudit walks at most {MAX_WALKED_ELEMENTS} string or array elements per file (real "
                "vocabularies and merges have a few hundred thousand)",
            )

    def _read_string_array(self, cursor: _Cursor, key: str, count: int, keep: bool, summary: dict) -> object:
        where = f"a string in {_show(key)}"  # formatted once: vocabularies have 10^5 strings
        if not keep:
            cursor.skip_strings(count, where, self.deadline)
            return summary
        check = self.deadline.check
        kept: list[str] | None = [] if keep else None
        invalid = 0
        for _ in range(count):
            check()
            length = self._string_length(cursor, where)
            if kept is not None and length <= MAX_KEPT_STRING_BYTES and self._budget.take(1, length):
                raw = cursor.read(length, where)
                try:
                    kept.append(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    invalid += 1
                    kept.append(raw.decode("utf-8", errors="replace"))
                continue
            if kept is not None:
                kept = None
                self._not_kept(key, True, summary)
            cursor.skip(length, where)
        if invalid:
            self._report_utf8(key, f"{invalid} strings of {_show(key)} are not valid UTF-8")
        return kept if kept is not None else summary

    def _read_nested_arrays(
        self, cursor: _Cursor, key: str, count: int, depth: int, keep: bool, summary: dict
    ) -> object:
        kept: list[object] | None = [] if keep and self._budget.take(count, 0) else None
        if keep and kept is None:
            self._not_kept(key, True, summary)
        for _ in range(count):
            self.deadline.check()
            value, _label = self._read_array(cursor, key, depth + 1, may_keep=kept is not None)
            if kept is not None:
                kept.append(value)
        return kept if kept is not None else summary

    def _not_kept(self, key: str, wanted: bool, summary: dict) -> None:
        # Only arrays we meant to keep are worth a finding; summarising long arrays is the normal case.
        if wanted:
            self.log.add(
                "gguf-value-not-kept",
                f"the array {_show(key)} ({summary['count']} {summary['element_type']} elements) is beyond "
                "openaudit's memory budget; it is summarised",
            )

    def _alignment(self) -> int:
        if "general.alignment" not in self.metadata:
            return DEFAULT_ALIGNMENT
        value = self.metadata["general.alignment"]
        value_type = self.metadata_types["general.alignment"]
        if value_type != "UINT32":
            self.log.add("gguf-bad-alignment", f"general.alignment is {value_type}, not UINT32")
        elif value == 0 or value & (value - 1) or value % 8:
            self.log.add("gguf-bad-alignment", f"general.alignment is {value}, not a power of two multiple of 8")
        else:
            return value
        return DEFAULT_ALIGNMENT

    # -- tensor infos ---------------------------------------------------------------------------------

    def _read_tensor_info(self, cursor: _Cursor, index: int, seen: set[str]) -> _PendingTensor | str:
        """The tensor's info, or its name when it cannot be counted (a finding says why).

        Messages are formatted lazily: a crafted file can repeat one problem in every one of its infos.
        """
        fast = cursor.tensor_info()
        if fast is None:
            raw_name, dims, n_dims, type_id, relative_offset = self._read_tensor_info_fields(cursor, index)
        else:
            raw_name, dims, type_id, relative_offset = fast
            n_dims = len(dims)
        try:
            name = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            name = self._decode(raw_name, f"the name of tensor {index}")
        if len(raw_name) >= GGML_MAX_NAME:
            self.log.add(
                "gguf-tensor-name-too-long",
                lambda: f"tensor {_show(name)} has a {len(raw_name)}-byte name; ggml accepts at most "
                f"{GGML_MAX_NAME - 1}",
            )
        if name in seen:
            self.log.add(
                "gguf-duplicate-tensor", lambda: f"tensor {_show(name)} appears more than once; the first is counted"
            )
            return name
        seen.add(name)
        if dims is None:
            self.log.add(
                "gguf-too-many-dims",
                lambda: f"tensor {_show(name)} has {n_dims} dimensions (ggml allows {GGML_MAX_DIMS})",
            )
            return name
        ggml_type = GGML_TYPES.get(type_id)
        if ggml_type is None:
            self.log.add("gguf-unknown-ggml-type", lambda: f"tensor {_show(name)} has ggml type {type_id}")
            return name
        elements = 1
        for dim in dims:
            elements *= dim
        if elements > _INT64_MAX or any(dim > _INT64_MAX for dim in dims):
            self.log.add(
                "gguf-tensor-size-overflow",
                lambda: f"tensor {_show(name)} has dimensions {list(dims)}, whose element count does not fit in "
                "int64",
            )
            return name
        row = dims[0] if dims else 1
        if row % ggml_type.block_size:
            self.log.add(
                "gguf-row-not-block-multiple",
                lambda: f"tensor {_show(name)} of type {ggml_type.name} has rows of {row} elements, not a "
                f"multiple of its block size {ggml_type.block_size}",
            )
            return name
        shape = tuple(reversed(dims))  # GGUF lists the fastest-varying dimension first
        return _PendingTensor(name, ggml_type, shape, ggml_nbytes(ggml_type, elements), relative_offset)

    def _read_tensor_info_fields(
        self, cursor: _Cursor, index: int
    ) -> tuple[bytes, tuple[int, ...] | None, int, int, int]:
        """(name, dims or None when there are too many, n_dims, type, offset), one checked read at a time."""
        where = f"the info of tensor {index}"
        name_length = cursor.u64(where)
        if name_length > MAX_KEY_BYTES:
            if name_length > cursor.remaining:
                raise MalformedInput(
                    "gguf-length-exceeds-file",
                    f"the name of tensor {index} declares {name_length} bytes, but only {cursor.remaining} remain",
                )
            raise MalformedInput(
                "gguf-tensor-name-too-long", f"the name of tensor {index} is {name_length} bytes long"
            )
        raw_name = cursor.read(name_length, where)
        n_dims = cursor.u32(where)
        dims: tuple[int, ...] | None
        if n_dims > GGML_MAX_DIMS:
            if n_dims * 8 > cursor.remaining:
                name = raw_name.decode("utf-8", errors="replace")
                raise MalformedInput(
                    "gguf-length-exceeds-file",
                    f"tensor {_show(name)} declares {n_dims} dimensions, but only {cursor.remaining} bytes remain",
                )
            cursor.skip(n_dims * 8, where)
            dims = None
        else:
            dims = cursor.unpack(f"{n_dims}Q", n_dims * 8, where)
        type_id = cursor.u32(where)
        relative_offset = cursor.u64(where)
        return raw_name, dims, n_dims, type_id, relative_offset

    def _place_tensors(self, pending: list[_PendingTensor], data_start: int, alignment: int) -> bool:
        """Record the tensors with absolute offsets; check alignment, bounds and overlaps."""
        inside = True
        for tensor in pending:
            self.deadline.check()
            offset = data_start + tensor.relative_offset
            if tensor.relative_offset % alignment:
                self.log.add(
                    "gguf-tensor-misaligned",
                    lambda: f"tensor {_show(tensor.name)} starts at data offset {tensor.relative_offset}, not a "
                    f"multiple of {alignment}",
                )
            if offset + tensor.nbytes > self.size:
                inside = False
                self.log.add(
                    "gguf-tensor-data-beyond-file",
                    lambda: f"tensor {_show(tensor.name)} needs bytes {offset} to {offset + tensor.nbytes} but the "
                    f"file has {self.size}",
                )
            self.records.append(
                TensorRecord(
                    name=tensor.name,
                    dtype=tensor.ggml_type.name,
                    shape=tensor.shape,
                    file=self.path,
                    nbytes=tensor.nbytes,
                    offset=offset,
                    role=_role_of(tensor.name, tensor.ggml_type.name),
                )
            )
        self._check_overlaps(pending)
        return inside

    def _check_overlaps(self, pending: list[_PendingTensor]) -> None:
        ordered = sorted((t for t in pending if t.nbytes), key=lambda t: t.relative_offset)
        furthest: _PendingTensor | None = None  # the tensor whose data ends last so far
        furthest_end = 0
        for tensor in ordered:
            self.deadline.check()
            if furthest is not None and tensor.relative_offset < furthest_end:
                self.log.add(
                    "gguf-tensor-overlap",
                    lambda: f"the data of tensors {_show(furthest.name)} and {_show(tensor.name)} overlap",
                )
            end = tensor.relative_offset + tensor.nbytes
            if furthest is None or end > furthest_end:
                furthest, furthest_end = tensor, end

    def _check_trailing(self, pending: list[_PendingTensor], skipped: list[str], data_start: int,
                        alignment: int, header_end: int) -> None:
        """Flag bytes after the data of the last tensor (its alignment padding is allowed)."""
        if skipped:
            return  # the extent of a tensor that could not be read is unknown
        if pending:
            data_end = max(data_start + t.relative_offset + t.nbytes for t in pending)
            expected_end = _pad(data_end, alignment)
        else:
            expected_end = header_end
        if self.size > expected_end:
            self.log.add(
                "gguf-trailing-data",
                f"{self.size - expected_end} bytes follow the end of the tensor data (byte {expected_end})",
            )

    # -- strings --------------------------------------------------------------------------------------

    def _decode(self, raw: bytes, where: str) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="replace")
            self._report_utf8(where, f"{where} ({_show(text)}) is not valid UTF-8; invalid bytes show as U+FFFD")
            return text

    def _report_utf8(self, where: str, message: str) -> None:
        # One finding per key or name: a vocabulary of byte tokens must not produce thousands.
        if where not in self._utf8_reported:
            self._utf8_reported.add(where)
            self.log.add("gguf-invalid-utf8", message)


def _role_of(name: str, dtype: str) -> str:
    # llama.cpp stores RoPE frequency factors as a tensor; they are computed, not trained. Wide integer
    # tensors are indices or masks (integer quantization uses the Q* block types); I8 stays a parameter, as
    # in every other format, because int8 is how quantized weights are stored elsewhere.
    if name.endswith("rope_freqs.weight") or dtype in ("I16", "I32", "I64"):
        return BUFFER
    return PARAMETER


def _pad(offset: int, alignment: int) -> int:
    return offset + (-offset % alignment)


def _shortest_float32(value: float) -> float:
    """The shortest decimal that reads back as the same float32 (1e-05, not 9.999999747378752e-06)."""
    if value != value or value in (float("inf"), float("-inf")):
        return value
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.unpack("<f", struct.pack("<f", candidate))[0] == value:
            return candidate
    return value


def _show(text: str, limit: int = 80) -> str:
    """A name from the file, quoted, shortened and escaped so that it cannot drive a terminal."""
    shown = printable(text if len(text) <= limit else text[:limit] + "…")
    return f"'{shown}'"


def _show_bytes(data: bytes) -> str:
    return "".join(chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}" for b in data) or "nothing"
