"""NumPy ``.npy`` files and the ``.npy`` members of ``.npz`` zips, read without numpy and never unpickled.

Layout (numpy ``lib/format.py``): the magic ``\\x93NUMPY``, a major and a minor version byte, the header
length (uint16 little-endian in version 1.0, uint32 in 2.0 and 3.0), then the header: a Python dict
literal with the keys ``descr``, ``fortran_order`` and ``shape`` (latin-1 in 1.0 and 2.0, UTF-8 in 3.0),
padded with spaces and a newline so that the data starts on a 64-byte boundary. The array data follows.

An array whose dtype holds Python objects (``descr`` ``'|O'``, or a structured or sub-array dtype with an
object field) has no raw data: ``numpy.save`` pickles the array after the header, and
``numpy.load(allow_pickle=True)`` unpickles it. Such a payload is walked by the static pickle scanner
like any other pickle. The header is read by the small strict literal parser below, never by ``eval``
or ``ast.literal_eval``; when it cannot be read, or names a dtype the parser does not know, the data is
walked as a pickle too, since a reader that does accept the header might unpickle it.

Numeric arrays are not counted as weights: ``weights.format`` has no value for them. Their header is
read, to tell them apart, and nothing else.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

from openaudit.errors import MalformedInput, ParseTimeout
from openaudit.findings import finding
from openaudit.inspect.pickle.machine import PickleResult, ScanContext, walk_pickle
from openaudit.inspect.pickle.opcodes import ByteRange
from openaudit.inspect.pickle.sniff import walk_remaining_pickles
from openaudit.inspect.tensors import WeightsFileScan
from openaudit.limits import Deadline, open_regular

NPY_MAGIC = b"\x93NUMPY"
# Magic, version and the longest length field: what must be read before the header length is known.
PREAMBLE_BYTES = len(NPY_MAGIC) + 2 + 4
# numpy refuses headers over 10,000 bytes unless allow_pickle=True, and then reads any length. Headers up
# to this size (the most a version 1.0 header holds; parsed in a few milliseconds) are parsed; a longer
# one is not, and its data is scanned as a pickle.
MAX_HEADER_BYTES = 65_535
# Nesting of the header's literals (a structured dtype nests a few levels; numpy writes no deeper).
MAX_LITERAL_DEPTH = 32

# What the data after the header is.
PICKLE = "pickle"  # an object dtype: numpy.save pickled the array
ARRAY = "array"  # raw array data
UNKNOWN = "unknown"  # the header or its dtype could not be read: scanned as a pickle in case

_VERSIONS = {(1, 0): ("<H", "latin-1"), (2, 0): ("<I", "latin-1"), (3, 0): ("<I", "utf-8")}
# numpy dtype strings without Python objects: byte order, then a kind with an item size (what
# ``dtype.str`` writes), a one-character type code, or a datetime with its unit.
_PLAIN_DTYPE = re.compile(r"[<>|=]?(?:[?bBhHiIlLqQnNpPefdgFDG]|[biufc]\d+|[SUVa]\d*|[mM]8(?:\[\w*\])?)")
_OBJECT_DTYPE = re.compile(r"[<>|=]?O\d*|object_?|object0")


@dataclass(frozen=True)
class NpyHeader:
    """A parsed ``.npy`` header. ``data_offset`` counts from the start of the ``.npy`` bytes; ``descr``,
    ``fortran_order`` and ``shape`` are None where the header could not be read (``problem`` says why)."""

    version: tuple[int, int]
    data_offset: int
    payload: str  # PICKLE, ARRAY or UNKNOWN
    descr: object = None
    fortran_order: bool | None = None
    shape: tuple[int, ...] | None = None
    problem: str | None = None


def is_npy(head: bytes) -> bool:
    return head.startswith(NPY_MAGIC)


def header_size(preamble: bytes) -> int | None:
    """The data offset that the first PREAMBLE_BYTES announce, or None when they are not a known preamble."""
    version = tuple(preamble[len(NPY_MAGIC) : len(NPY_MAGIC) + 2])
    spec = _VERSIONS.get(version)  # type: ignore[arg-type]
    if not preamble.startswith(NPY_MAGIC) or spec is None:
        return None
    length_format = spec[0]
    start = len(NPY_MAGIC) + 2
    size = struct.calcsize(length_format)
    if len(preamble) < start + size:
        return None
    return start + size + struct.unpack_from(length_format, preamble, start)[0]


def parse_header(data: bytes) -> NpyHeader:
    """The header at the start of ``data`` (which holds at least the whole header, or the whole member).

    Raises ``MalformedInput("npy-malformed")`` when not even the preamble can be read: numpy refuses such
    a file, and where its data starts is unknown.
    """
    if not data.startswith(NPY_MAGIC):
        raise MalformedInput("npy-malformed", "the file does not start with the .npy magic bytes")
    if len(data) < len(NPY_MAGIC) + 2:
        raise MalformedInput("npy-malformed", "the file ends inside the .npy preamble")
    version = (data[len(NPY_MAGIC)], data[len(NPY_MAGIC) + 1])
    if version not in _VERSIONS:
        raise MalformedInput("npy-malformed", f"unknown .npy format version {version[0]}.{version[1]}")
    length_format, encoding = _VERSIONS[version]
    data_offset = header_size(data[:PREAMBLE_BYTES])
    if data_offset is None:
        raise MalformedInput("npy-malformed", "the file ends inside the .npy preamble")
    start = len(NPY_MAGIC) + 2 + struct.calcsize(length_format)
    if data_offset - start > MAX_HEADER_BYTES:
        return NpyHeader(version, data_offset, UNKNOWN,
                         problem=f"the header is {data_offset - start:,} bytes long; openaudit reads at most "
                                 f"{MAX_HEADER_BYTES:,}")
    if len(data) < data_offset:
        raise MalformedInput("npy-malformed", f"the file ends inside the {data_offset - start}-byte .npy header")
    try:
        text = data[start:data_offset].decode(encoding)
        literal = _LiteralParser(text).parse()
    except (UnicodeDecodeError, _NotALiteral) as exc:
        reason = str(exc) if isinstance(exc, _NotALiteral) else f"it is not valid {encoding}"
        return NpyHeader(version, data_offset, UNKNOWN, problem=f"the header is not a plain dict literal: {reason}")
    return _header_from_literal(version, data_offset, literal)


def walk_npy(source: ByteRange, ctx: ScanContext) -> list[PickleResult]:
    """Read the ``.npy`` header at ``source.pos`` and walk its data as a pickle when it is (or may be) one.

    Findings go to ``ctx``: ``npy-object-array`` for an object dtype, ``npy-malformed`` for a header that
    cannot be read, and whatever the pickle scanner finds in the data. A numeric array gives nothing and
    only its header is read.
    """
    start = source.pos
    preamble = source.peek(PREAMBLE_BYTES)
    data_offset = header_size(preamble)
    if data_offset is None:
        return []  # numpy refuses it: no version it knows, or no room for a length
    if data_offset - PREAMBLE_BYTES > MAX_HEADER_BYTES:
        wanted = PREAMBLE_BYTES  # parse_header reports the length and asks for no more
    else:
        wanted = min(data_offset, source.remaining())
    try:
        header = parse_header(source.read(wanted))
    except MalformedInput:
        return []  # the file ends inside the header: numpy refuses it
    if header.payload == ARRAY:
        return []
    if header.payload == PICKLE:
        ctx.add(
            "npy-object-array",
            f"the array (dtype {_show(header.descr)}, shape {list(header.shape or ())}) holds Python objects: its "
            f"data, from byte {start + header.data_offset}, is a pickle that numpy.load(allow_pickle=True) runs; "
            "it was scanned as one",
        )
    else:
        ctx.add("npy-malformed", f"{header.problem}; the data from byte {start + header.data_offset} was scanned "
                                 "as a pickle, in case a reader that accepts the header unpickles it")
    if start + header.data_offset >= source.end:
        return []  # no data after the header
    source.pos = start + header.data_offset  # the data, wherever the read above left the position
    first = walk_pickle(source, ctx)
    results = [first]
    if first.complete and source.remaining():
        more, _ = walk_remaining_pickles(source, ctx)
        results.extend(more)
    return results


def scan_npy_file(location: Path, path: str, size: int, deadline: Deadline | None = None) -> WeightsFileScan | None:
    """Scan a ``.npy`` file: a scan (format ``pickle``, container ``npy``) when its data is or may be a
    pickle, None for a numeric array (not weights openaudit counts) or a file numpy would refuse."""
    ctx = ScanContext(path=path, deadline=deadline or Deadline())
    failed = None
    try:
        with open_regular(location) as handle:
            results = walk_npy(ByteRange(handle, 0, size), ctx)
    except ParseTimeout as exc:
        failed = finding("parse-timeout", str(exc), path)
    except MalformedInput as exc:
        failed = finding(exc.finding_id, str(exc), path)
    except OSError as exc:
        failed = finding("unreadable-file", f"cannot read: {exc.strerror or exc}", path)
    except Exception as exc:  # noqa: BLE001 - a hostile file must never crash the audit (a file that shrank)
        failed = finding("npy-malformed", f"the scanner stopped: {type(exc).__name__}", path)
    if failed is not None:
        ctx.findings.append(failed)
        results = [PickleResult(0, 0, None, None, False)]
    if not results and not ctx.findings:
        return None
    return WeightsFileScan(
        path=path, format="pickle", container="npy", imports=tuple(ctx.imports), findings=tuple(ctx.findings),
        complete=all(result.complete for result in results),
    )


def may_hold_pickle(prefix: bytes) -> bool:
    """Whether an ``.npy`` whose first bytes are ``prefix`` (its whole header, when it has one) has data
    that is or may be a pickle. A prefix cut inside the header counts as may."""
    data_offset = header_size(prefix[:PREAMBLE_BYTES])
    if data_offset is None:
        return False
    if len(prefix) < data_offset and data_offset - PREAMBLE_BYTES <= MAX_HEADER_BYTES:
        return True
    try:
        return parse_header(prefix).payload != ARRAY
    except MalformedInput:
        return True


# --- the header dict ----------------------------------------------------------------------------------


def _header_from_literal(version: tuple[int, int], data_offset: int, literal: object) -> NpyHeader:
    if not isinstance(literal, dict):
        return NpyHeader(version, data_offset, UNKNOWN, problem="the header is not a dict")
    if "descr" not in literal:
        return NpyHeader(version, data_offset, UNKNOWN, problem="the header has no 'descr' key")
    descr = literal["descr"]
    payload = _dtype_payload(descr, 0)
    fortran_order = literal.get("fortran_order")
    shape = literal.get("shape")
    problems = []
    if set(literal) != {"descr", "fortran_order", "shape"}:
        problems.append(f"the header has the keys {sorted(map(str, literal))}, not descr, fortran_order and shape")
    if not isinstance(fortran_order, bool):
        problems.append("fortran_order is not a bool")
        fortran_order = None
    if not (isinstance(shape, tuple) and all(isinstance(dim, int) and not isinstance(dim, bool) for dim in shape)):
        problems.append("shape is not a tuple of integers")
        shape = None
    if payload == UNKNOWN:
        problems.insert(0, f"the dtype {_show(descr)} is not one openaudit knows")
    return NpyHeader(version, data_offset, payload, descr, fortran_order, shape,
                     "; ".join(problems) if problems else None)


def _dtype_payload(descr: object, depth: int) -> str:
    """PICKLE when a numpy dtype description holds an object field, ARRAY when it surely does not."""
    if depth > MAX_LITERAL_DEPTH:
        return UNKNOWN
    if isinstance(descr, str):
        if _OBJECT_DTYPE.fullmatch(descr):
            return PICKLE
        return ARRAY if _PLAIN_DTYPE.fullmatch(descr) else UNKNOWN
    if isinstance(descr, tuple) and len(descr) == 2:  # a sub-array: (dtype, shape)
        return _dtype_payload(descr[0], depth + 1)
    if isinstance(descr, list) and descr:  # a structured dtype: [(name, dtype[, shape]), ...]
        kinds = set()
        for field in descr:
            if isinstance(field, (tuple, list)) and len(field) in (2, 3) and isinstance(field[0], (str, tuple)):
                kinds.add(_dtype_payload(field[1], depth + 1))
            else:
                kinds.add(UNKNOWN)
        return PICKLE if PICKLE in kinds else UNKNOWN if UNKNOWN in kinds else ARRAY
    return UNKNOWN


class _NotALiteral(Exception):
    pass


# Tokens of the literals numpy writes: quoted strings (with an optional u/b prefix from Python 2),
# integers (with Python 2's L suffix), True/False/None and punctuation. Anything else (names, operators,
# comments, implicit string concatenation) is refused.
_TOKEN = re.compile(
    r"""\s*(?:(?P<string>[uUbB]?(?:'(?:[^'\\\n]|\\[^\n])*'|"(?:[^"\\\n]|\\[^\n])*"))"""
    r"""|(?P<int>\d+)[lL]?(?![\w.])|(?P<name>True|False|None)(?!\w)|(?P<punct>[{}()\[\]:,]))"""
)
_CONSTANTS = {"True": True, "False": False, "None": None}


class _LiteralParser:
    """A recursive-descent parser for dicts, lists, tuples, strings, integers, booleans and None.

    Bounded by the text (at most MAX_HEADER_BYTES) and by MAX_LITERAL_DEPTH; it evaluates nothing.
    """

    def __init__(self, text: str):
        self._text = text
        self._pos = 0
        self._token_start = 0  # where the last token read begins, for messages

    def parse(self) -> object:
        value = self._value(0)
        if self._text[self._pos :].strip():
            raise _NotALiteral(f"unexpected text at character {self._next_character()}")
        return value

    def _next_character(self) -> int:
        return len(self._text) - len(self._text[self._pos :].lstrip())

    def _token(self) -> tuple[str, object]:
        match = _TOKEN.match(self._text, self._pos)
        if match is None:
            raise _NotALiteral(f"unexpected text at character {self._next_character()}")
        self._pos = match.end()
        kind = match.lastgroup
        self._token_start = match.start(kind)  # type: ignore[arg-type]
        raw = match.group(kind)  # type: ignore[arg-type]
        if kind == "string":
            return kind, _unquote(raw)
        if kind == "int":
            if len(raw) > 40:
                raise _NotALiteral("an integer with more than 40 digits")
            return kind, int(raw)
        if kind == "name":
            return kind, _CONSTANTS[raw]
        return kind, raw

    def _peek_punct(self, char: str) -> bool:
        match = _TOKEN.match(self._text, self._pos)
        return match is not None and match.group("punct") == char

    def _value(self, depth: int) -> object:
        if depth > MAX_LITERAL_DEPTH:
            raise _NotALiteral(f"literals nest more than {MAX_LITERAL_DEPTH} levels deep")
        kind, value = self._token()
        if kind != "punct":
            return value
        if value == "{":
            pairs = self._items("}", depth, pairs=True)
            result: dict = {}
            for key, item in pairs:
                if not isinstance(key, (str, int, bool)) and key is not None:
                    raise _NotALiteral("a dict key that is not a string or a number")
                if key in result:
                    raise _NotALiteral(f"the key {key!r} appears twice")
                result[key] = item
            return result
        if value == "[":
            return list(self._items("]", depth, pairs=False))
        if value == "(":
            items, trailing_comma = self._tuple_items(depth)
            if len(items) == 1 and not trailing_comma:
                return items[0]  # parentheses around a value
            return tuple(items)
        raise _NotALiteral(f"unexpected {value!r} at character {self._token_start}")

    def _items(self, closer: str, depth: int, *, pairs: bool) -> list:
        items: list = []
        while True:
            if self._peek_punct(closer):
                self._token()
                return items
            item = self._value(depth + 1)
            if pairs:
                self._expect(":")
                item = (item, self._value(depth + 1))
            items.append(item)
            if self._peek_punct(","):
                self._token()
                continue
            self._expect(closer)
            return items

    def _tuple_items(self, depth: int) -> tuple[list, bool]:
        items: list = []
        trailing_comma = False
        while True:
            if self._peek_punct(")"):
                self._token()
                return items, trailing_comma
            items.append(self._value(depth + 1))
            trailing_comma = self._peek_punct(",")
            if trailing_comma:
                self._token()
                continue
            self._expect(")")
            return items, False

    def _expect(self, char: str) -> None:
        kind, value = self._token()
        if kind != "punct" or value != char:
            raise _NotALiteral(f"expected {char!r} at character {self._token_start}")


_SIMPLE_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "r": "\r", "t": "\t", "0": "\0"}
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", re.S)


def _unquote(raw: str) -> str:
    """The value of a quoted string token; the escapes Python's repr writes, and no others."""
    if raw[0] in "uUbB":
        raw = raw[1:]
    body = raw[1:-1]

    def escape(match: re.Match[str]) -> str:
        code = match.group(1)
        if code[0] in "xuU" and len(code) > 1:
            value = int(code[1:], 16)
            if value > 0x10FFFF:
                raise _NotALiteral("an escape past U+10FFFF")
            return chr(value)
        if code in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[code]
        raise _NotALiteral(f"the escape \\{code} in a string")

    return _ESCAPE.sub(escape, body) if "\\" in body else body


def _show(descr: object) -> str:
    from openaudit.release import printable

    text = repr(descr)
    return printable(text if len(text) <= 80 else text[:80] + "…")
