"""A hardened safetensors header parser: counts and locates every tensor without reading the data.

A safetensors file is an 8-byte little-endian length N, N bytes of UTF-8 JSON, then the data region.
``parse_header`` applies every rule of the Rust reference reader (huggingface/safetensors
``SafeTensors::read_metadata`` + ``Metadata::validate``, checked against safetensors 0.8.0) and the gaps
it leaves: duplicate keys, a header not starting with ``{``, padding other than spaces, misaligned
offsets, JSON that Python accepts and strict parsers reject (NaN, ``-0``, lone surrogates). Problems the
reference reader rejects are fatal (``MalformedSafetensors``); problems it accepts are warnings.

``scan_safetensors`` reads only the length and the header of a local file and never raises for a bad
file. Remote readers fetch ``header_length_needed(first8)`` bytes and call ``parse_header`` themselves.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple

from openaudit.errors import MalformedInput
from openaudit.findings import Finding, finding
from openaudit.inspect.tensors import DTYPE_BITS, TensorRecord, WeightsFileScan
from openaudit.limits import Deadline, open_regular, read_exact

# The reference reader's MAX_HEADER_SIZE (decimal bytes).
MAX_HEADER_BYTES = 100_000_000
U64_MAX = 2**64 - 1
# A real header needs about 9 JSON values ("{", "[" or ",") per tensor, so 4 million is ~450,000
# tensors, far beyond any real file. Without this cap a 100 MB header of "{}," would build 33 million
# dicts (gigabytes). Counted only for headers above 1 MiB, where the cap can matter.
MAX_HEADER_TOKENS = 4_000_000
_TOKEN_COUNT_ABOVE = 1 << 20
# One problem repeated on thousands of tensors is reported this many times, then summarized.
MAX_FINDINGS_PER_ID = 20
_NAME_SHOWN = 120

_ENTRY_FIELDS = ("dtype", "shape", "data_offsets")
_JSON_WHITESPACE = b" \t\n\r"
# Natural alignment in bytes: the element size, except complex64 (two float32) and sub-byte types.
_ALIGNMENT: Mapping[str, int] = {
    dtype: (4 if dtype == "C64" else max(1, bits // 8)) for dtype, bits in DTYPE_BITS.items()
}
_SURROGATE = re.compile("[\ud800-\udfff]")
_MAYBE_NEGATIVE = re.compile(rb"[\[,:][ \t\n\r]*-")


@dataclass(frozen=True)
class SafetensorsHeader:
    """What the header of one safetensors file says; ``tensors`` are in data-region order."""

    header_length: int  # N, the JSON length declared in the first 8 bytes
    data_start: int  # 8 + N, the absolute offset of the data region
    tensors: tuple[TensorRecord, ...]
    metadata: dict[str, str] = field(default_factory=dict)
    warnings: tuple[Finding, ...] = ()

    @property
    def elements(self) -> int:
        return sum(tensor.elements for tensor in self.tensors)

    @property
    def data_bytes(self) -> int:
        return sum(tensor.nbytes or 0 for tensor in self.tensors)


class MalformedSafetensors(MalformedInput):
    """A fatal problem in a safetensors file, with what was learned before it was found.

    ``location`` is the finding location (``path`` or ``path:tensor``); ``warnings`` are the non-fatal
    findings seen first; ``tensors`` the records validated before the problem (all of them when only
    the file's length is wrong, e.g. a truncated download).
    """

    def __init__(
        self,
        finding_id: str,
        message: str,
        *,
        location: str | None = None,
        warnings: tuple[Finding, ...] = (),
        tensors: tuple[TensorRecord, ...] = (),
    ):
        super().__init__(finding_id, message)
        self.location = location
        self.warnings = warnings
        self.tensors = tensors

    def as_findings(self, path: str) -> tuple[Finding, ...]:
        return self.warnings + (finding(self.finding_id, str(self), self.location or path),)


def header_length_needed(first8: bytes) -> int:
    """How many bytes from the start of the file ``parse_header`` needs: 8 + N.

    Raises MalformedSafetensors when fewer than 8 bytes are given or N exceeds the reference limit.
    """
    if len(first8) < 8:
        raise MalformedSafetensors(
            "safetensors-too-small", f"the file has {len(first8)} bytes, fewer than the 8-byte header length"
        )
    length = int.from_bytes(first8[:8], "little")
    if length > MAX_HEADER_BYTES:
        raise MalformedSafetensors(
            "safetensors-header-too-large",
            f"the header declares {length:,} bytes; the reference reader refuses more than {MAX_HEADER_BYTES:,}",
        )
    return 8 + length


def parse_header(
    prefix: bytes, file_size: int, path: str, *, deadline: Deadline | None = None
) -> SafetensorsHeader:
    """Parse and validate the header of a safetensors file of ``file_size`` bytes.

    ``prefix`` is the start of the file: at least 8 bytes, and all ``8 + N`` whenever the file is that
    long (a shorter prefix is the caller's mistake, a ValueError). Raises MalformedSafetensors (a
    MalformedInput) for fatal problems, or ParseTimeout.
    """
    if file_size < 8:
        raise MalformedSafetensors(
            "safetensors-too-small", f"the file has {file_size} bytes, fewer than the 8-byte header length"
        )
    if len(prefix) < 8:
        raise ValueError("parse_header needs the first 8 bytes of the file")
    data_start = header_length_needed(prefix)
    if data_start > file_size:
        raise MalformedSafetensors(
            "safetensors-header-out-of-bounds",
            f"the header declares {data_start - 8:,} bytes but only {file_size - 8:,} follow the length",
        )
    if len(prefix) < data_start:
        raise ValueError(f"parse_header needs the first {data_start} bytes of the file, got {len(prefix)}")
    raw = bytes(prefix[8:data_start])
    return _HeaderParser(path, file_size, data_start, deadline or Deadline()).parse(raw)


def scan_safetensors(
    location: Path, path: str, size: int, *, deadline: Deadline | None = None
) -> WeightsFileScan:
    """Scan one local safetensors file, reading only its length and header; never raises for bad files.

    ``location`` is where the file is on disk, ``path`` its name in the release (used in findings and
    tensor records), ``size`` its size from the release listing.
    """
    notes: list[Finding] = []
    try:
        with open_regular(location) as handle:
            actual = os.fstat(handle.fileno()).st_size
            if actual != size:
                notes.append(
                    finding("safetensors-size-changed", f"listed with {size:,} bytes, now {actual:,}", path)
                )
            first8 = handle.read(8) or b""
            if len(first8) < 8:
                actual = len(first8)  # shrank since fstat, or simply short
            header_bytes = first8
            if actual >= 8:
                needed = header_length_needed(first8)
                if needed <= actual:
                    header_bytes = first8 + read_exact(handle, needed - 8, "the safetensors header")
            header = parse_header(header_bytes, actual, path, deadline=deadline)
    except MalformedSafetensors as exc:
        return _scan(path, exc.tensors, {}, tuple(notes) + exc.as_findings(path), complete=False)
    except MalformedInput as exc:
        notes.append(finding(exc.finding_id, str(exc), path))
        return _scan(path, (), {}, tuple(notes), complete=False)
    return _scan(path, header.tensors, header.metadata, tuple(notes) + header.warnings, complete=True)


def _scan(path: str, tensors, metadata, findings, *, complete: bool) -> WeightsFileScan:
    return WeightsFileScan(
        path=path,
        format="safetensors",
        container="safetensors",
        tensors=tuple(tensors),
        metadata=metadata,
        findings=findings,
        complete=complete,
    )


# --- JSON parsing hooks -----------------------------------------------------------------------------


class _OddInteger:
    """An integer literal that is negative (``-0`` included) or longer than any u64: kept as text.

    Keeping the text avoids CPython's quadratic big-int conversion and tells ``-0`` from ``0``.
    """

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    @property
    def negative(self) -> bool:
        return self.text.startswith("-")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _OddInteger) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def _parse_int(text: str) -> int | _OddInteger:
    if text[0] == "-" or len(text) > 20:
        return _OddInteger(text)
    return int(text)


class _NonStandardNumber(Exception):
    pass


def _parse_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _NonStandardNumber(f"the number {text[:40]} is out of range for a double")
    return value


def _reject_constant(text: str) -> None:
    raise _NonStandardNumber(f"the constant {text} is not JSON")


class _RepeatedKeysObject(dict):
    """A JSON object that repeats keys: holds the last value of each (as serde_json and Python do),
    and in ``repeats`` each repeated key mapped to whether its values conflict."""

    __slots__ = ("repeats",)

    def __init__(self, pairs: list[tuple[str, object]]):
        super().__init__(pairs)
        first: dict[str, object] = {}
        self.repeats: dict[str, bool] = {}
        for key, value in pairs:
            if key in first:
                self.repeats[key] = self.repeats.get(key, False) or value != first[key]
            else:
                first[key] = value


def _object_from_pairs(pairs: list[tuple[str, object]]) -> dict:
    obj = dict(pairs)
    return obj if len(obj) == len(pairs) else _RepeatedKeysObject(pairs)


# --- validation -------------------------------------------------------------------------------------


def _show(name: str) -> str:
    """A tensor name safe to print: quoted, escaped, and cut when a hostile file makes it huge."""
    if len(name) > _NAME_SHOWN:
        return repr(name[:_NAME_SHOWN]) + "…"
    return repr(name)


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {'true' if value else 'false'}"
    if isinstance(value, float):
        return f"the non-integer number {value!r}"
    if isinstance(value, str):
        return f"the string {_show(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class _Entry(NamedTuple):
    name: str
    dtype: str
    shape: list
    begin: int
    end: int


class _HeaderParser:
    def __init__(self, path: str, file_size: int, data_start: int, deadline: Deadline):
        self.path = path
        self.file_size = file_size
        self.data_start = data_start
        self.deadline = deadline
        self.warnings: list[Finding] = []
        self.records: list[TensorRecord] = []
        self._counts: dict[str, int] = {}

    # Reporting -------------------------------------------------------------------------------------

    def location(self, tensor: str | None) -> str:
        if tensor is None:
            return self.path
        shown = tensor if len(tensor) <= _NAME_SHOWN else tensor[:_NAME_SHOWN] + "…"
        return f"{self.path}:{shown}"

    def warn(self, finding_id: str, message: str, tensor: str | None = None) -> None:
        count = self._counts.get(finding_id, 0) + 1
        self._counts[finding_id] = count
        if count <= MAX_FINDINGS_PER_ID:
            self.warnings.append(finding(finding_id, message, self.location(tensor)))

    def _all_warnings(self) -> tuple[Finding, ...]:
        summaries = [
            finding(finding_id, f"{count - MAX_FINDINGS_PER_ID:,} more cases of the same problem", self.path)
            for finding_id, count in self._counts.items()
            if count > MAX_FINDINGS_PER_ID
        ]
        return tuple(self.warnings) + tuple(summaries)

    def fatal(self, finding_id: str, message: str, tensor: str | None = None) -> MalformedSafetensors:
        return MalformedSafetensors(
            finding_id,
            message,
            location=self.location(tensor),
            warnings=self._all_warnings(),
            tensors=tuple(self.records),
        )

    # Stages ----------------------------------------------------------------------------------------

    def parse(self, raw: bytes) -> SafetensorsHeader:
        root = self._load_json(raw)
        if not isinstance(root, dict):
            raise self.fatal("safetensors-header-not-object", f"the header is {_describe(root)}, not a JSON object")
        if b"\\u" in raw:  # only an escape can produce a surrogate: strict UTF-8 decoding refuses them
            self._reject_lone_surrogates(root)
        metadata, entries = self._read_root(root)
        self._validate_layout(entries)
        self._check_alignment()
        return SafetensorsHeader(
            header_length=self.data_start - 8,
            data_start=self.data_start,
            tensors=tuple(self.records),
            metadata=metadata,
            warnings=self._all_warnings(),
        )

    def _load_json(self, raw: bytes) -> object:
        if raw[:1] != b"{":
            leading = len(raw) - len(raw.lstrip(_JSON_WHITESPACE))
            if leading and raw[leading : leading + 1] == b"{":
                self.warn(
                    "safetensors-header-leading-whitespace",
                    f"the header starts with {leading} whitespace byte(s) before '{{' "
                    "(the format says it MUST start with '{')",
                )
        if len(raw) > _TOKEN_COUNT_ABOVE:
            tokens = raw.count(b"{") + raw.count(b"[") + raw.count(b",")
            if tokens > MAX_HEADER_TOKENS:
                raise self.fatal(
                    "safetensors-header-too-complex",
                    f"the header holds about {tokens:,} JSON values; openaudit parses at most {MAX_HEADER_TOKENS:,}",
                )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fatal(
                "safetensors-header-not-utf8", f"the header is not valid UTF-8 (byte {exc.start} of the header)"
            ) from None
        try:
            # The hook costs a Python call per integer, so it runs only where a number may start with
            # "-" (after "[", "," or ":"); a "-" inside a tensor name does not trigger it.
            root = json.loads(
                text,
                object_pairs_hook=_object_from_pairs,
                parse_int=_parse_int if _MAYBE_NEGATIVE.search(raw) else None,
                parse_float=_parse_float,
                parse_constant=_reject_constant,
            )
        except RecursionError:
            raise self.fatal(
                "safetensors-header-too-deep", "the header nests JSON deeper than Python's recursion limit"
            ) from None
        except _NonStandardNumber as exc:
            raise self.fatal(
                "safetensors-nonstandard-json", f"{exc}; Python's json module accepts it, the reference reader does not"
            ) from None
        except ValueError as exc:
            if "integer string conversion" in str(exc):  # CPython's 4300-digit cap, without the hook
                raise self.fatal(
                    "safetensors-integer-too-large", "the header holds an integer of more than 4,300 digits"
                ) from None
            note = ""
            if raw.rstrip(b" ").endswith(b"\0"):
                note = " (the header is padded with NUL bytes; only spaces are allowed)"
            raise self.fatal("safetensors-invalid-json", f"the header is not valid JSON: {exc}{note}") from None
        padding = raw[len(raw.rstrip(_JSON_WHITESPACE)) :]
        if padding.strip(b" "):
            kinds = sorted({repr(chr(byte)) for byte in padding if byte != 0x20})
            self.warn(
                "safetensors-nonspace-padding",
                f"the header is padded with {', '.join(kinds)} as well as spaces; only spaces (0x20) are allowed",
            )
        return root

    def _reject_lone_surrogates(self, root: dict) -> None:
        # Python's json decodes "\ud800" to a lone surrogate; serde_json rejects it anywhere in the header.
        stack: list[object] = [root]
        while stack:
            self.deadline.check()
            value = stack.pop()
            if isinstance(value, str):
                texts: Iterable[str] = (value,)
            elif isinstance(value, dict):
                texts = value.keys()
                stack.extend(value.values())
            elif isinstance(value, list):
                stack.extend(value)
                continue
            else:
                continue
            for text in texts:
                if _SURROGATE.search(text):
                    raise self.fatal(
                        "safetensors-nonstandard-json",
                        f"the string {_show(text)} holds a lone UTF-16 surrogate escape; Python's json module "
                        "accepts it, the reference reader does not",
                    )

    def _read_root(self, root: dict) -> tuple[dict[str, str], list[_Entry]]:
        if isinstance(root, _RepeatedKeysObject):
            self._report_root_repeats(root)
        metadata: dict[str, str] = {}
        entries: list[_Entry] = []
        for name, value in root.items():
            self.deadline.check()
            if name == "__metadata__":
                metadata = self._read_metadata(value)
            else:
                entries.append(self._read_entry(name, value))
        return metadata, entries

    def _report_root_repeats(self, root: _RepeatedKeysObject) -> None:
        for key, conflicting in root.repeats.items():
            if key != "__metadata__" and not conflicting:
                self.warn(
                    "safetensors-duplicate-key",
                    f"tensor {_show(key)} is described more than once (identically)",
                    key,
                )
        if "__metadata__" in root.repeats:
            raise self.fatal(
                "safetensors-duplicate-field",
                "the header holds more than one '__metadata__'; the reference reader rejects it, Python keeps the last",
            )
        for key, conflicting in root.repeats.items():
            if conflicting:
                raise self.fatal(
                    "safetensors-conflicting-duplicate-key",
                    f"tensor {_show(key)} is described more than once with different values; readers that keep "
                    "the first and readers that keep the last load different tensors",
                    key,
                )

    def _read_metadata(self, value: object) -> dict[str, str]:
        if value is None:
            self.warn("safetensors-null-metadata", "'__metadata__' is null")
            return {}
        if not isinstance(value, dict):
            raise self.fatal(
                "safetensors-invalid-metadata", f"'__metadata__' is {_describe(value)}, not a map of strings"
            )
        for key, item in value.items():
            if not isinstance(item, str):
                raise self.fatal(
                    "safetensors-invalid-metadata",
                    f"'__metadata__' value of {_show(key)} is {_describe(item)}, not a string",
                )
        if isinstance(value, _RepeatedKeysObject):
            for key, conflicting in value.repeats.items():
                if conflicting:
                    self.warn(
                        "safetensors-conflicting-duplicate-key",
                        f"'__metadata__' repeats {_show(key)} with different values; readers disagree on its value",
                    )
                else:
                    self.warn("safetensors-duplicate-key", f"'__metadata__' repeats {_show(key)} (identically)")
        return dict(value)

    def _read_entry(self, name: str, value: object) -> _Entry:
        # Fast path for the entries every real file holds; anything else is diagnosed in detail.
        if type(value) is dict and len(value) == 3:
            dtype = value.get("dtype")
            shape = value.get("shape")
            offsets = value.get("data_offsets")
            if (
                type(dtype) is str
                and dtype in DTYPE_BITS
                and type(shape) is list
                and all(type(dim) is int for dim in shape)
                and (not shape or max(shape) <= U64_MAX)
                and type(offsets) is list
                and len(offsets) == 2
                and type(offsets[0]) is int
                and type(offsets[1]) is int
                and offsets[0] <= U64_MAX
                and offsets[1] <= U64_MAX
            ):
                return _Entry(name, dtype, shape, offsets[0], offsets[1])
        return self._diagnose_entry(name, value)

    def _diagnose_entry(self, name: str, value: object) -> _Entry:
        """Validate an unusual entry: raise for what the reference rejects, warn for what it ignores."""
        if not isinstance(value, dict):
            raise self.fatal(
                "safetensors-invalid-entry",
                f"tensor {_show(name)} is described by {_describe(value)}, not an object",
                name,
            )
        if isinstance(value, _RepeatedKeysObject):
            fields = ", ".join(repr(key) for key in list(value.repeats)[:5])
            raise self.fatal(
                "safetensors-duplicate-field",
                f"tensor {_show(name)} repeats the field(s) {fields}; the reference reader rejects it, "
                "Python keeps the last",
                name,
            )
        for key in _ENTRY_FIELDS:
            if key not in value:
                raise self.fatal("safetensors-invalid-entry", f"tensor {_show(name)} has no {key!r}", name)
        if len(value) > len(_ENTRY_FIELDS):
            extra = [key for key in value if key not in _ENTRY_FIELDS]
            shown = ", ".join(_show(key) for key in extra[:5])
            self.warn(
                "safetensors-unknown-field",
                f"tensor {_show(name)} has field(s) {shown} that the format does not define "
                "(the reference reader ignores them)",
                name,
            )
        dtype, shape, offsets = value["dtype"], value["shape"], value["data_offsets"]
        if not isinstance(dtype, str):
            raise self.fatal("safetensors-invalid-entry", f"tensor {_show(name)} has dtype {_describe(dtype)}", name)
        if dtype not in DTYPE_BITS:
            raise self.fatal(
                "safetensors-unknown-dtype", f"tensor {_show(name)} has unknown dtype {_show(dtype)}", name
            )
        if not isinstance(shape, list):
            raise self.fatal(
                "safetensors-invalid-entry",
                f"tensor {_show(name)} has a shape that is {_describe(shape)}, not a list",
                name,
            )
        for dim in shape:
            self._unsigned(dim, name, "shape")
        if not isinstance(offsets, list) or len(offsets) != 2:
            what = f"a list of {len(offsets)} values" if isinstance(offsets, list) else _describe(offsets)
            raise self.fatal(
                "safetensors-invalid-entry",
                f"tensor {_show(name)} has data_offsets that are {what}, not [BEGIN, END]",
                name,
            )
        begin = self._unsigned(offsets[0], name, "data_offsets")
        end = self._unsigned(offsets[1], name, "data_offsets")
        return _Entry(name, dtype, list(shape), begin, end)

    def _unsigned(self, value: object, name: str, what: str) -> int:
        if type(value) is int:
            if value <= U64_MAX:
                return value
            raise self.fatal(
                "safetensors-integer-too-large", f"tensor {_show(name)} has {what} value {value} above 2**64-1", name
            )
        if isinstance(value, _OddInteger):
            shown = value.text if len(value.text) <= 40 else value.text[:40] + "…"
            if value.negative:
                note = " (the reference reader reads -0 as the float -0.0 and rejects it)" if value.text == "-0" else ""
                raise self.fatal(
                    "safetensors-negative-integer",
                    f"tensor {_show(name)} has negative {what} value {shown}{note}",
                    name,
                )
            raise self.fatal(
                "safetensors-integer-too-large",
                f"tensor {_show(name)} has {what} value {shown} ({len(value.text)} digits) above 2**64-1",
                name,
            )
        raise self.fatal(
            "safetensors-non-integer", f"tensor {_show(name)} has {_describe(value)} in {what}, not an integer", name
        )

    def _validate_layout(self, entries: list[_Entry]) -> None:
        # The reference order: sort by (BEGIN, END), then each tensor must start where the last ended.
        entries.sort(key=lambda entry: (entry.begin, entry.end))
        cursor = 0
        previous: _Entry | None = None
        for entry in entries:
            self.deadline.check()
            name = entry.name
            if entry.end < entry.begin:
                raise self.fatal(
                    "safetensors-reversed-offsets",
                    f"tensor {_show(name)} has data_offsets [{entry.begin}, {entry.end}]: END before BEGIN",
                    name,
                )
            if entry.begin > cursor:
                raise self.fatal(
                    "safetensors-offset-gap",
                    f"bytes {cursor:,}..{entry.begin:,} of the data region, before tensor {_show(name)}, "
                    "belong to no tensor",
                    name,
                )
            if entry.begin < cursor:
                other = _show(previous.name) if previous else "another tensor"
                raise self.fatal(
                    "safetensors-offset-overlap",
                    f"tensor {_show(name)} starts at {entry.begin:,}, inside {other} which ends at {cursor:,}",
                    name,
                )
            numel = 1
            for dim in entry.shape:
                numel *= dim
                if numel > U64_MAX:
                    raise self.fatal(
                        "safetensors-shape-overflow",
                        f"tensor {_show(name)} has a shape whose element count overflows 64 bits",
                        name,
                    )
            bits = numel * DTYPE_BITS[entry.dtype]
            if bits > U64_MAX:
                raise self.fatal(
                    "safetensors-shape-overflow",
                    f"tensor {_show(name)} holds {numel:,} {entry.dtype} elements, whose bit count overflows 64 bits",
                    name,
                )
            if bits % 8:
                raise self.fatal(
                    "safetensors-partial-byte",
                    f"tensor {_show(name)} holds {numel:,} {entry.dtype} elements = {bits:,} bits, not whole bytes",
                    name,
                )
            nbytes = bits // 8
            if entry.end - entry.begin != nbytes:
                raise self.fatal(
                    "safetensors-size-mismatch",
                    f"tensor {_show(name)} ({entry.dtype} {list(entry.shape)}) needs {nbytes:,} bytes but its "
                    f"data_offsets [{entry.begin:,}, {entry.end:,}] span {entry.end - entry.begin:,}",
                    name,
                )
            self.records.append(
                TensorRecord(
                    name=name,
                    dtype=entry.dtype,
                    shape=tuple(entry.shape),
                    file=self.path,
                    nbytes=nbytes,
                    offset=self.data_start + entry.begin,
                )
            )
            cursor = entry.end
            previous = entry
        available = self.file_size - self.data_start
        if cursor < available:
            raise self.fatal(
                "safetensors-trailing-data",
                f"{available - cursor:,} bytes follow the last tensor's data (the data region indexes {cursor:,} "
                f"of {available:,} bytes)",
            )
        if cursor > available:
            cut = next(record for record in self.records if record.offset + record.nbytes > self.file_size)
            raise self.fatal(
                "safetensors-truncated-data",
                f"the header indexes {cursor:,} data bytes but only {available:,} follow it; the file ends inside "
                f"tensor {_show(cut.name)}",
            )

    def _check_alignment(self) -> None:
        # A tensor badly placed by its writer is reported by name; a header whose length is not a
        # multiple of 8 shifts every tensor at once, and is reported once for the file.
        shifted = 0
        for record in self.records:
            alignment = _ALIGNMENT[record.dtype]
            if not record.nbytes or record.offset % alignment == 0:
                continue
            begin = record.offset - self.data_start
            if begin % alignment:
                self.warn(
                    "safetensors-misaligned-tensor",
                    f"tensor {_show(record.name)} ({record.dtype}) starts at byte {begin:,} of the data region, "
                    f"not a multiple of its element size {alignment}",
                    record.name,
                )
            else:
                shifted += 1
        if shifted:
            self.warn(
                "safetensors-misaligned-tensor",
                f"the data region starts at byte {self.data_start:,} (the header is not padded to a multiple of 8), "
                f"so {shifted:,} tensor(s) are misaligned in the file",
            )
