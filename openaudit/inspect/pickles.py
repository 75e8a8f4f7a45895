"""Static pickle inspection: walk the opcodes, never unpickle.

A pickle is a program for a stack machine. This module runs that program *symbolically*: every value
is a description (a string, a tuple of descriptions, "the result of calling numpy.dtype with …"),
nothing is imported or constructed, and no data payload is read — large BINBYTES/BINUNICODE8/…
payloads are skipped with a seek and remembered as (offset, length). From the descriptions it
recovers two things:

- safety: every global the file would import (GLOBAL, INST, STACK_GLOBAL resolved through the stack
  and the memo), classified by ``checks/pickle_globals.yaml``, plus the calls, BUILDs and persistent
  ids that an unpickler would execute;
- tensors: numpy arrays (``_reconstruct`` + ``__setstate__``), Grok-1's ``QuantizedWeight8bit``
  objects and PyTorch ``_rebuild_tensor_v2/v3`` calls, as :class:`TensorRecord` with dtype, shape and
  the absolute file offset of their data.

``scan_pickle_file`` is the entry point for a file of any name; it hands PyTorch zip and legacy files
to :mod:`openaudit.inspect.torch_files`.
"""

from __future__ import annotations

import codecs
import gc
import io
import struct
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from math import prod
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from openaudit.errors import MalformedInput, ParseTimeout
from openaudit.findings import Finding, Severity, finding
from openaudit.inspect.tensors import DTYPE_BITS, PARAMETER, SCALE, TensorRecord, WeightsFileScan
from openaudit.limits import Deadline, open_regular

# ---------------------------------------------------------------------------------------------------
# Limits. A crafted pickle can describe anything; these bound what the walker keeps in memory.

# Payloads up to this size are read (names, dict keys, small arrays); larger ones are skipped.
INLINE_PAYLOAD_BYTES = 4096
# Strings longer than this are skipped and kept as opaque text (tensor names are short).
MAX_TEXT_BYTES = 64 * 1024
# Protocol-0 lines (GLOBAL names, INT, STRING…) longer than this are malformed.
MAX_LINE_BYTES = 64 * 1024
# Integers wider than this many bytes (LONG1/LONG4) are kept opaque.
MAX_LONG_BYTES = 64
# Symbolic values created per file: the memory bound. A torch.save state dict needs 35 per tensor with its
# module's _metadata entry (45 when tensors are wrapped as nn.Parameter; tests/test_pickles.py measures
# both), so 1,000,000 values hold about 28,000 tensors in one file; real checkpoints shard long before that
# (a 100,000-tensor MoE ships as many files, and as safetensors). Walking a million one-byte values takes
# about half a second; the former 2,000,000 let five 2 MB files take 20 s.
MAX_VALUES = 1_000_000
# Opcodes run per file: the time bound (PROTO or FRAME opcodes repeated create no value). Real pickles
# run about one opcode per value, so this never binds before MAX_VALUES does.
MAX_OPCODES = 2_000_000
# Distinct globals one pickle may import. A weights pickle needs a handful (numpy's _reconstruct/ndarray/
# dtype, torch's rebuild functions and storage classes: under 40); thousands mean a crafted file, and
# working out the safety of each one is what made such a file slow.
MAX_DISTINCT_GLOBALS = 1_000
# Payload and text bytes kept in memory per file; past this, payloads are skipped like large ones.
MAX_INLINE_TOTAL = 64 * 1024 * 1024
# Nesting of pickles inside pickles that the scanner follows.
MAX_NESTED_DEPTH = 3
# The reader fetches this much around small reads; Grok-1 leaves need about 300 bytes of opcodes.
READ_CHUNK = 2048
# A file holding more concatenated pickles than this is treated as hostile.
MAX_PICKLES_PER_FILE = 64

PROTOCOL_MAX = 5

# ---------------------------------------------------------------------------------------------------
# Opcode table (pickletools names). Argument kinds:
#   ""          no argument
#   u1 u2 u4 u8 unsigned little-endian integers; i4 signed
#   long1 long4 length-prefixed little-endian two's complement integers
#   b1 b4 b8    length-prefixed byte payloads (b4 of BINSTRING is a signed length)
#   t1 t4 t8    length-prefixed UTF-8 text
#   f8          big-endian double
#   nl_*        newline-terminated protocol-0 arguments

_OPCODES: dict[int, tuple[str, str]] = {
    ord("("): ("MARK", ""),
    ord("."): ("STOP", ""),
    ord("0"): ("POP", ""),
    ord("1"): ("POP_MARK", ""),
    ord("2"): ("DUP", ""),
    ord("F"): ("FLOAT", "nl_float"),
    ord("I"): ("INT", "nl_int"),
    ord("J"): ("BININT", "i4"),
    ord("K"): ("BININT1", "u1"),
    ord("L"): ("LONG", "nl_long"),
    ord("M"): ("BININT2", "u2"),
    ord("N"): ("NONE", ""),
    ord("P"): ("PERSID", "nl_ascii"),
    ord("Q"): ("BINPERSID", ""),
    ord("R"): ("REDUCE", ""),
    ord("S"): ("STRING", "nl_string"),
    ord("T"): ("BINSTRING", "bs4"),
    ord("U"): ("SHORT_BINSTRING", "bs1"),
    ord("V"): ("UNICODE", "nl_unicode"),
    ord("X"): ("BINUNICODE", "t4"),
    ord("a"): ("APPEND", ""),
    ord("b"): ("BUILD", ""),
    ord("c"): ("GLOBAL", "nl_global"),
    ord("d"): ("DICT", ""),
    ord("}"): ("EMPTY_DICT", ""),
    ord("e"): ("APPENDS", ""),
    ord("g"): ("GET", "nl_int"),
    ord("h"): ("BINGET", "u1"),
    ord("i"): ("INST", "nl_global"),
    ord("j"): ("LONG_BINGET", "u4"),
    ord("l"): ("LIST", ""),
    ord("]"): ("EMPTY_LIST", ""),
    ord("o"): ("OBJ", ""),
    ord("p"): ("PUT", "nl_int"),
    ord("q"): ("BINPUT", "u1"),
    ord("r"): ("LONG_BINPUT", "u4"),
    ord("s"): ("SETITEM", ""),
    ord("t"): ("TUPLE", ""),
    ord(")"): ("EMPTY_TUPLE", ""),
    ord("u"): ("SETITEMS", ""),
    ord("G"): ("BINFLOAT", "f8"),
    # protocol 2
    0x80: ("PROTO", "u1"),
    0x81: ("NEWOBJ", ""),
    0x82: ("EXT1", "u1"),
    0x83: ("EXT2", "u2"),
    0x84: ("EXT4", "i4"),
    0x85: ("TUPLE1", ""),
    0x86: ("TUPLE2", ""),
    0x87: ("TUPLE3", ""),
    0x88: ("NEWTRUE", ""),
    0x89: ("NEWFALSE", ""),
    0x8A: ("LONG1", "long1"),
    0x8B: ("LONG4", "long4"),
    # protocol 3
    ord("B"): ("BINBYTES", "b4"),
    ord("C"): ("SHORT_BINBYTES", "b1"),
    # protocol 4
    0x8C: ("SHORT_BINUNICODE", "t1"),
    0x8D: ("BINUNICODE8", "t8"),
    0x8E: ("BINBYTES8", "b8"),
    0x8F: ("EMPTY_SET", ""),
    0x90: ("ADDITEMS", ""),
    0x91: ("FROZENSET", ""),
    0x92: ("NEWOBJ_EX", ""),
    0x93: ("STACK_GLOBAL", ""),
    0x94: ("MEMOIZE", ""),
    0x95: ("FRAME", "u8"),
    # protocol 5
    0x96: ("BYTEARRAY8", "ba8"),
    0x97: ("NEXT_BUFFER", ""),
    0x98: ("READONLY_BUFFER", ""),
}

# Opcodes a protocol 0/1 pickle can start with (protocol 2+ pickles start with PROTO).
# Opcodes that can begin a pickle without a PROTO header: protocol 0/1 ones, and protocol 2+ ones that
# need no stack (the unpickler accepts a protocol-4 stream whose PROTO was left out).
_PROTO0_FIRST = frozenset(
    [ord(c) for c in "(cNIJKLMFGSTUVX]})iplqdtBC"] + [0x88, 0x89, 0x8A, 0x8B, 0x8C, 0x8D, 0x8E, 0x8F, 0x95, 0x96]
)

_FIXED_INT = {kind: struct.Struct(fmt) for kind, fmt in (("u1", "<B"), ("u2", "<H"), ("u4", "<I"), ("i4", "<i"),
                                                          ("u8", "<Q"))}
_BIG_ENDIAN_DOUBLE = struct.Struct(">d")


# ---------------------------------------------------------------------------------------------------
# Reading a byte range without reading its payloads.


class _Truncated(Exception):
    """The region ends inside an opcode."""


class _Malformed(Exception):
    """The opcode stream is invalid where an unpickler would stop."""


class ByteRange:
    """Reads ``[start, end)`` of a seekable binary handle through a small window.

    Small reads are served from a window of ``READ_CHUNK`` bytes; ``skip`` moves past a payload with
    no read at all, so a 3 GB array costs nothing. ``bytes_read`` counts what came from the handle.
    """

    __slots__ = ("_handle", "start", "end", "pos", "_window", "_window_start", "bytes_read")

    def __init__(self, handle: BinaryIO, start: int, end: int):
        self._handle = handle
        self.start = start
        self.end = end
        self.pos = start
        self._window = b""
        self._window_start = start
        self.bytes_read = 0

    @classmethod
    def of_bytes(cls, data: bytes) -> "ByteRange":
        return cls(io.BytesIO(data), 0, len(data))

    def remaining(self) -> int:
        return self.end - self.pos

    def read(self, size: int) -> bytes:
        if size > self.end - self.pos:
            raise _Truncated
        offset = self.pos - self._window_start
        if offset < 0 or offset + size > len(self._window):
            self._fill(size)
            offset = 0
        self.pos += size
        return self._window[offset : offset + size]

    def unpack(self, fmt: struct.Struct) -> tuple:
        """``fmt`` unpacked at the current position: straight from the window when it holds the bytes."""
        size = fmt.size
        offset = self.pos - self._window_start
        if 0 <= offset and offset + size <= len(self._window):  # the window never extends past ``end``
            self.pos += size
            return fmt.unpack_from(self._window, offset)
        return fmt.unpack(self.read(size))

    def peek(self, size: int) -> bytes:
        size = min(size, self.end - self.pos)
        start = self.pos
        data = self.read(size)
        self.pos = start
        return data

    def skip(self, size: int) -> None:
        if size > self.end - self.pos:
            raise _Truncated
        self.pos += size

    def readline(self, limit: int = MAX_LINE_BYTES) -> bytes:
        """Bytes up to and including the next newline (protocol-0 arguments).

        Searched in the window first: a protocol-0 pickle is mostly short lines, and refilling the window
        for each one (as a fixed-size peek would) costs two system calls a line.
        """
        collected = bytearray()
        while True:
            offset = self.pos - self._window_start
            if not 0 <= offset < len(self._window):
                if self.pos >= self.end:
                    raise _Truncated
                self._fill(1)
                offset = 0
            window = self._window
            cut = window.find(b"\n", offset)
            end = cut + 1 if cut >= 0 else len(window)
            collected += window[offset:end]
            self.pos += end - offset
            if len(collected) > limit + 1:  # the line and its newline
                raise _Malformed(f"a protocol-0 line is longer than {limit} bytes")
            if cut >= 0:
                return bytes(collected)

    def _fill(self, size: int) -> None:
        want = min(max(size, READ_CHUNK), self.end - self.pos)
        self._handle.seek(self.pos)
        parts = []
        got = 0
        while got < want:
            part = self._handle.read(want - got)
            if not part:
                break
            parts.append(part)
            got += len(part)
        self.bytes_read += got
        self._window = b"".join(parts)
        self._window_start = self.pos
        if got < size:
            # The handle is shorter than the size we were told: the file shrank or lied.
            raise _Truncated


# ---------------------------------------------------------------------------------------------------
# Symbolic values. Identity matters (memo entries and BUILD share objects), so none define __eq__.


class Value:
    __slots__ = ()


class Opaque(Value):
    """A value the scanner does not model (an out-of-band buffer, an EXT code, a huge integer)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str):
        self.reason = reason


class Blob(Value):
    """A bytes/str payload; ``data`` is kept only for small payloads, ``offset`` only for file regions."""

    __slots__ = ("offset", "length", "data", "kind")

    def __init__(self, offset: int | None, length: int, data: bytes | None, kind: str):
        self.offset = offset
        self.length = length
        self.data = data
        self.kind = kind  # "bytes", "bytearray", "text"


class Global(Value):
    __slots__ = ("module", "name", "offset")

    def __init__(self, module: str, name: str, offset: int):
        self.module = module
        self.name = name
        self.offset = offset

    @property
    def full(self) -> str:
        return f"{self.module}.{self.name}"


class Tup(Value):
    __slots__ = ("items",)

    def __init__(self, items: tuple):
        self.items = items


class Lst(Value):
    __slots__ = ("items",)

    def __init__(self, items: list):
        self.items = items


class Dct(Value):
    __slots__ = ("pairs", "state")

    def __init__(self, pairs: list):
        self.pairs = pairs
        self.state = None


class SetV(Value):
    __slots__ = ("items",)

    def __init__(self, items: list):
        self.items = items


class Persistent(Value):
    """What ``persistent_load(pid)`` returns; for torch.save this is a storage."""

    __slots__ = ("pid", "storage")

    def __init__(self, pid: object, storage: "StorageRef | None"):
        self.pid = pid
        self.storage = storage


class Call(Value):
    """The result of calling something the scanner does not model further."""

    __slots__ = ("func", "args", "state", "items", "pairs")

    def __init__(self, func: object, args: object):
        self.func = func
        self.args = args
        self.state = None
        self.items: list = []  # APPEND/APPENDS on the result
        self.pairs: list = []  # SETITEM/SETITEMS on the result


class DType(Value):
    """``numpy.dtype(...)``: ``canonical`` is openaudit's dtype name, or None when unsupported."""

    __slots__ = ("spec", "canonical", "itemsize", "byteorder")

    def __init__(self, spec: str, canonical: str | None, itemsize: int | None):
        self.spec = spec
        self.canonical = canonical
        self.itemsize = itemsize
        self.byteorder = "<"


class NdArray(Value):
    __slots__ = ("shape", "dtype", "fortran", "data", "problem")

    def __init__(self):
        self.shape: tuple[int, ...] | None = None
        self.dtype: DType | None = None
        self.fortran = False
        self.data: Blob | Value | None = None
        self.problem: str | None = None


class Instance(Value):
    """``cls.__new__(cls)`` of a class the scanner recognises by name (Grok's QuantizedWeight8bit)."""

    __slots__ = ("cls", "state")

    def __init__(self, cls: Global):
        self.cls = cls
        self.state = None


@dataclass(frozen=True)
class StorageRef:
    """A PyTorch storage named by a persistent id ``('storage', cls, key, location, numel)``."""

    key: str
    dtype: str | None  # canonical dtype of the storage class; "U8" for UntypedStorage
    numel: int
    location: str
    type_name: str


class TorchTensor(Value):
    __slots__ = ("storage", "storage_offset", "size", "stride", "dtype")

    def __init__(self, storage: StorageRef, storage_offset: int, size: tuple, stride: tuple, dtype: str | None):
        self.storage = storage
        self.storage_offset = storage_offset
        self.size = size
        self.stride = stride
        self.dtype = dtype


class Unresolved(Value):
    """A value an unpickler could only produce by running code (the result of an unsafe call)."""

    __slots__ = ("origin",)

    def __init__(self, origin: str):
        self.origin = origin


# ---------------------------------------------------------------------------------------------------
# The allow-list and severities, as data.


@dataclass(frozen=True)
class GlobalPolicy:
    allow: frozenset[str]
    critical: tuple[str, ...]
    high: tuple[str, ...]

    def severity(self, module: str, name: str) -> Severity | None:
        """None for an allowed global, else the severity of importing it."""
        return _classify(self, module, name)

    def is_allowed(self, module: str, name: str) -> bool:
        return self.severity(module, name) is None

    def _rule_severity(self, candidate: str) -> Severity | None:
        if _matches(candidate, self.critical):
            return Severity.CRITICAL
        if _matches(candidate, self.high):
            return Severity.HIGH
        return None


@lru_cache(maxsize=4096)
def _classify(policy: GlobalPolicy, module: str, name: str) -> Severity | None:
    # Cached: a state dict calls the same few globals once per tensor.
    names = _compat_names(module, name)
    if any(full in policy.allow for full in names):
        return None
    worst = Severity.MEDIUM
    for full in names:
        for candidate in _chain_candidates(full, len(module.split("."))):
            level = policy._rule_severity(candidate)
            if level is not None and level.rank > worst.rank:
                worst = level
        if _has_dunder_attribute(full, len(module.split("."))):
            worst = Severity.CRITICAL
    return worst


def _matches(candidate: str, rules: tuple[str, ...]) -> bool:
    for rule in rules:
        if rule.endswith(".*"):
            prefix = rule[:-2]
            if candidate == prefix or candidate.startswith(prefix + "."):
                return True
        elif candidate == rule:
            return True
    return False


def _chain_candidates(full: str, module_parts: int) -> Iterator[str]:
    """The dotted path itself, then every attribute suffix of its name part.

    ``numpy`` + ``testing.os.system`` reaches ``os.system`` through attributes, so the suffix
    ``os.system`` is classified too. Suffixes of the *module* path are not: ``mypkg.types`` is a
    module of its own, not the standard ``types``.
    """
    yield full
    parts = full.split(".")
    for start in range(module_parts + 1, len(parts)):
        yield ".".join(parts[start:])


def _has_dunder_attribute(full: str, module_parts: int) -> bool:
    parts = full.split(".")[module_parts:]
    return any(len(part) > 4 and part.startswith("__") and part.endswith("__") for part in parts)


def _compat_names(module: str, name: str) -> list[str]:
    """The global as written, plus the Python 3 name the unpickler maps a Python 2 name to."""
    import _compat_pickle

    names = [f"{module}.{name}"]
    mapped = _compat_pickle.NAME_MAPPING.get((module, name))
    if mapped is None and module in _compat_pickle.IMPORT_MAPPING:
        mapped = (_compat_pickle.IMPORT_MAPPING[module], name)
    if mapped is not None:
        names.append(f"{mapped[0]}.{mapped[1]}")
    return names


@lru_cache(maxsize=1)
def global_policy() -> GlobalPolicy:
    """The policy in ``checks/pickle_globals.yaml``."""
    from openaudit.resources import data_dir, load_data_yaml

    document = load_data_yaml(data_dir("checks").joinpath("pickle_globals.yaml"))
    return GlobalPolicy(
        allow=frozenset(document.get("allow") or ()),
        critical=tuple(document.get("critical") or ()),
        high=tuple(document.get("high") or ()),
    )


# ---------------------------------------------------------------------------------------------------
# What the walker knows about recognised globals.

_RECONSTRUCT = {"numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct"}
_FROMBUFFER = {"numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer"}
_NUMPY_DTYPE = "numpy.dtype"
_ORDERED_DICT = "collections.OrderedDict"
_REBUILD_V2 = {"torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor"}
_REBUILD_V3 = "torch._utils._rebuild_tensor_v3"
_REBUILD_PARAMETER = {"torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state"}
_REBUILD_FROM_TYPE = "torch._tensor._rebuild_from_type_v2"
_TORCH_SIZE = "torch.Size"
_CODECS_ENCODE = "_codecs.encode"
_RECONSTRUCTOR = "copyreg._reconstructor"
_QUANTIZED_WEIGHT_CLASS = "QuantizedWeight8bit"
_LOADS_LIKE = frozenset(
    {"pickle.loads", "_pickle.loads", "pickle._loads", "dill.loads", "cloudpickle.loads", "numpy.loads",
     "numpy.core.numeric.loads"}
)

_NUMPY_KINDS = {
    "b1": "BOOL", "i1": "I8", "u1": "U8", "i2": "I16", "u2": "U16", "i4": "I32", "u4": "U32",
    "i8": "I64", "u8": "U64", "f2": "F16", "f4": "F32", "f8": "F64", "c8": "C64",
}
# ml_dtypes types stored one per byte or more in numpy; sub-byte formats (float4/float6/int4) are not
# packed in numpy arrays, so they have no canonical (packed) name here.
_ML_DTYPES = {
    "bfloat16": "BF16", "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2",
    "float8_e4m3fnuz": "F8_E4M3FNUZ", "float8_e5m2fnuz": "F8_E5M2FNUZ", "float8_e8m0fnu": "F8_E8M0",
}
_TORCH_STORAGE_DTYPES = {
    "FloatStorage": "F32", "DoubleStorage": "F64", "HalfStorage": "F16", "BFloat16Storage": "BF16",
    "LongStorage": "I64", "IntStorage": "I32", "ShortStorage": "I16", "CharStorage": "I8",
    "ByteStorage": "U8", "BoolStorage": "BOOL", "ComplexFloatStorage": "C64", "QInt8Storage": "I8",
    "QUInt8Storage": "U8", "QInt32Storage": "I32", "QUInt4x2Storage": "U8", "QUInt2x4Storage": "U8",
    "UntypedStorage": "U8",
}
_TORCH_DTYPES = {
    "float32": "F32", "float": "F32", "float64": "F64", "double": "F64", "float16": "F16", "half": "F16",
    "bfloat16": "BF16", "int8": "I8", "uint8": "U8", "int16": "I16", "short": "I16", "int32": "I32",
    "int": "I32", "int64": "I64", "long": "I64", "bool": "BOOL", "uint16": "U16", "uint32": "U32",
    "uint64": "U64", "complex64": "C64", "cfloat": "C64", "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2", "float8_e4m3fnuz": "F8_E4M3FNUZ", "float8_e5m2fnuz": "F8_E5M2FNUZ",
    "float8_e8m0fnu": "F8_E8M0",
}


def _itemsize(dtype: str | None) -> int | None:
    bits = DTYPE_BITS.get(dtype or "")
    return bits // 8 if bits and bits % 8 == 0 else None


# ---------------------------------------------------------------------------------------------------
# The scan context: what one file's walk accumulates.


@dataclass
class ScanContext:
    """Per-file state shared by every pickle walked in it (nested ones included)."""

    path: str
    deadline: Deadline
    policy: GlobalPolicy = field(default_factory=global_policy)
    imports: dict[str, int] = field(default_factory=dict)  # module.name -> first offset
    findings: list[Finding] = field(default_factory=list)
    storages: dict[str, StorageRef] = field(default_factory=dict)
    values_left: int = field(default_factory=lambda: MAX_VALUES)
    opcodes_left: int = field(default_factory=lambda: MAX_OPCODES)
    inline_left: int = field(default_factory=lambda: MAX_INLINE_TOTAL)
    depth: int = 0
    # For a pickle read from memory (a decompressed zip member) payload offsets are not file offsets.
    file_offsets: bool = True
    where: str = ""  # e.g. " (zip member archive/data.pkl)"
    _seen: set = field(default_factory=set)

    def add(self, rule_id: str, message: str, *, key: object = None, severity: Severity | None = None) -> None:
        """Record a finding once per (id, key)."""
        dedupe = (rule_id, key if key is not None else message)
        if dedupe in self._seen:
            return
        self._seen.add(dedupe)
        self.findings.append(finding(rule_id, f"{message}{self.where}", self.path, severity=severity))

    def spend(self, count: int = 1) -> None:
        self.values_left -= count
        if self.values_left < 0:
            raise _TooComplex(f"builds more than {MAX_VALUES:,} values")


class _TooComplex(Exception):
    """The file builds more values or runs more opcodes than openaudit follows in one file."""


@dataclass
class PickleResult:
    """One walked pickle: where it lies, what it evaluates to, and whether the walk got to STOP."""

    start: int
    end: int
    root: Value | object | None
    protocol: int | None
    complete: bool


# ---------------------------------------------------------------------------------------------------
# The walker.


def walk_pickle(source: ByteRange, ctx: ScanContext) -> PickleResult:
    """Run one pickle (from ``source.pos`` to its STOP) on the symbolic machine.

    Never raises on bad input: problems become findings in ``ctx`` and ``complete`` is False.
    ``ParseTimeout`` does propagate (the caller decides how to report it).
    """
    machine = _Machine(source, ctx)
    start = source.pos
    with _collector_paused():
        try:
            root = machine.run()
            return PickleResult(start, source.pos, root, machine.protocol, True)
        except _Truncated:
            ctx.add("pickle-truncated", f"the pickle starting at byte {start} ends before its STOP opcode")
        except _Malformed as exc:
            ctx.add("pickle-malformed", f"pickle at byte {start}: {exc} (at byte {machine.op_offset})")
        except _TooComplex as exc:
            # Once per file: when the budget is spent, every later pickle of the file stops at once.
            ctx.add("pickle-too-complex", f"the pickle at byte {start} {exc}, more than openaudit follows in one file",
                    key=("too-complex", str(exc)))
        except RecursionError:
            ctx.add("pickle-too-complex", f"the pickle at byte {start} nests values too deeply")
        # Free what the failed walk built while the collector is still paused: reference counting frees
        # it at once, where the collector would first traverse up to MAX_VALUES objects.
        machine.release()
    return PickleResult(start, source.pos, None, machine.protocol, False)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector during a walk (re-entrant: nested walks leave it alone).

    A walk allocates up to MAX_VALUES small objects that all stay alive, and every few hundred
    allocations the collector traverses the young ones, and now and then all of them: that doubles the
    time of a long walk. Cycles made while it is paused (a list appended to itself through the memo) are
    collected once it resumes.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class _Machine:
    """The symbolic stack machine of one pickle (pickle.py's ``_Unpickler`` semantics)."""

    def __init__(self, source: ByteRange, ctx: ScanContext):
        self.source = source
        self.ctx = ctx
        self.stack: list = []
        self.metastack: list[list] = []
        self.memo: dict[int, object] = {}
        self.protocol: int | None = None
        self.op_offset = source.pos

    # -- helpers ---------------------------------------------------------------------------------

    def release(self) -> None:
        """Drop the stack, the marks and the memo (after a failed walk)."""
        self.stack, self.metastack, self.memo = [], [], {}

    def pop(self) -> object:
        if not self.stack:
            raise _Malformed("stack underflow")
        return self.stack.pop()

    def top(self) -> object:
        if not self.stack:
            raise _Malformed("stack underflow")
        return self.stack[-1]

    def pop_mark(self) -> list:
        if not self.metastack:
            raise _Malformed("MARK expected but not found")
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def push(self, value: object) -> None:
        ctx = self.ctx  # ctx.spend(), inlined: every value passes here
        ctx.values_left -= 1
        if ctx.values_left < 0:
            raise _TooComplex(f"builds more than {MAX_VALUES:,} values")
        self.stack.append(value)

    # -- the loop ---------------------------------------------------------------------------------

    def run(self) -> object:
        # The hot loop of every scan (a crafted file can be millions of one-byte opcodes): the opcode and
        # a fixed-size argument are read straight from the source's window, dispatched through a table
        # built once; every _POLL_EVERY opcodes the deadline is polled and the opcode budget charged.
        source = self.source
        ctx = self.ctx
        deadline = ctx.deadline
        deadline.check_now()
        if ctx.opcodes_left <= 0:  # the file's budget is spent: no further pickle is walked
            raise _TooComplex(f"runs more than {MAX_OPCODES:,} opcodes")
        dispatch = _DISPATCH
        argument = self._argument
        countdown = _POLL_EVERY
        try:
            while True:
                countdown -= 1
                if not countdown:
                    countdown = _POLL_EVERY
                    self._charge(_POLL_EVERY)
                    deadline.check_now()
                pos = source.pos
                self.op_offset = pos
                window = source._window
                index = pos - source._window_start
                if 0 <= index < len(window):  # the window never extends past the end of the range
                    code = window[index]
                    source.pos = pos + 1
                else:
                    code = source.read(1)[0]
                    window = source._window
                    index = pos - source._window_start
                entry = dispatch[code]
                if entry is None:
                    raise _Malformed(f"invalid opcode 0x{code:02x}")
                name, kind, handler, fixed = entry
                if fixed is not None:
                    end = index + 1 + fixed.size
                    if end <= len(window):
                        arg = fixed.unpack_from(window, index + 1)[0]
                        source.pos = pos + 1 + fixed.size
                    else:
                        arg = source.unpack(fixed)[0]
                elif kind:
                    arg = argument(kind, name)
                else:
                    arg = None
                if handler is None:  # STOP
                    spent, countdown = _POLL_EVERY - countdown, _POLL_EVERY
                    self._charge(spent)
                    return self.pop()
                handler(self, arg)
        finally:
            ctx.opcodes_left -= _POLL_EVERY - countdown  # a walk that stopped early used them too

    def _charge(self, opcodes: int) -> None:
        ctx = self.ctx
        ctx.opcodes_left -= opcodes
        if ctx.opcodes_left < 0:
            raise _TooComplex(f"runs more than {MAX_OPCODES:,} opcodes")

    def _argument(self, kind: str, name: str) -> object:
        source = self.source
        fixed = _FIXED_INT.get(kind)
        if fixed is not None:
            return source.unpack(fixed)[0]
        if kind == "f8":
            return source.unpack(_BIG_ENDIAN_DOUBLE)[0]
        if kind in ("long1", "long4"):
            size = source.read(1)[0] if kind == "long1" else struct.unpack("<i", source.read(4))[0]
            if size < 0:
                raise _Malformed("LONG4 with a negative length")
            if size > MAX_LONG_BYTES:
                source.skip(size)
                return Opaque(f"a {size}-byte integer")
            return int.from_bytes(source.read(size), "little", signed=True)
        if kind in ("b1", "b4", "b8", "ba8", "bs1", "bs4", "t1", "t4", "t8"):
            return self._payload(kind, name)
        if kind.startswith("nl_"):
            return self._line_argument(kind)
        raise AssertionError(kind)

    def _payload(self, kind: str, name: str) -> Blob | str | Opaque:
        source = self.source
        if kind in ("b1", "bs1", "t1"):
            length = source.read(1)[0]
        elif kind in ("b4", "t4"):
            length = struct.unpack("<I", source.read(4))[0]
        elif kind == "bs4":
            length = struct.unpack("<i", source.read(4))[0]
            if length < 0:
                raise _Malformed("BINSTRING with a negative length")
        else:
            length = struct.unpack("<Q", source.read(8))[0]
        if length > source.remaining():
            raise _Truncated
        offset = source.pos if self.ctx.file_offsets else None
        keep = length <= self.ctx.inline_left
        if keep:
            self.ctx.inline_left -= min(length, MAX_TEXT_BYTES)
        is_text = kind.startswith("t")
        if is_text:
            if length > MAX_TEXT_BYTES or not keep:
                source.skip(length)
                return Blob(offset, length, None, "text")
            raw = source.read(length)
            try:
                return raw.decode("utf-8", "surrogatepass")
            except UnicodeDecodeError:
                raise _Malformed(f"{name} holds invalid UTF-8") from None
        if kind.startswith("bs"):
            # BINSTRING: Python 2 str; Python 3 decodes it with the load's encoding (ASCII by default).
            if length > MAX_TEXT_BYTES or not keep:
                source.skip(length)
                return Blob(offset, length, None, "text")
            raw = source.read(length)
            return raw.decode("latin-1")
        blob_kind = "bytearray" if kind == "ba8" else "bytes"
        if length <= INLINE_PAYLOAD_BYTES and keep:
            return Blob(offset, length, source.read(length), blob_kind)
        source.skip(length)
        return Blob(offset, length, None, blob_kind)

    def _line_argument(self, kind: str) -> object:
        source = self.source
        if kind == "nl_global":
            module = source.readline()[:-1]
            name = source.readline()[:-1]
            try:
                return module.decode("utf-8"), name.decode("utf-8")
            except UnicodeDecodeError:
                raise _Malformed("GLOBAL name is not UTF-8") from None
        line = source.readline()[:-1]
        if kind == "nl_int":
            if line == b"00":
                return False
            if line == b"01":
                return True
            return _parse_int(line)
        if kind == "nl_long":
            return _parse_int(line[:-1] if line.endswith(b"L") else line)
        if kind == "nl_float":
            try:
                return float(line)
            except ValueError:
                raise _Malformed("FLOAT argument is not a number") from None
        if kind == "nl_ascii":
            try:
                return line.decode("ascii")
            except UnicodeDecodeError:
                raise _Malformed("PERSID is not ASCII") from None
        if kind == "nl_string":
            line = line.rstrip(b"\r")
            if len(line) >= 2 and line[0] == line[-1] and line[:1] in (b"'", b'"'):
                try:
                    return codecs.escape_decode(line[1:-1])[0].decode("latin-1")
                except ValueError:
                    raise _Malformed("STRING has a bad escape") from None
            raise _Malformed("STRING argument is not quoted")
        if kind == "nl_unicode":
            return line.decode("raw-unicode-escape", "replace")
        raise AssertionError(kind)

    # -- stack and memo opcodes -------------------------------------------------------------------

    def op_PROTO(self, arg: int) -> None:
        if not 0 <= arg <= PROTOCOL_MAX:
            raise _Malformed(f"unsupported pickle protocol {arg}")
        self.protocol = arg

    def op_FRAME(self, arg: int) -> None:
        # Frames are a read-ahead hint; the opcodes inside are walked like any others.
        if arg > self.source.remaining():
            raise _Truncated

    def op_MARK(self, _arg: None) -> None:
        self.ctx.spend()  # a new list: a stream of MARKs is a memory bomb too
        self.metastack.append(self.stack)
        self.stack = []

    def op_POP(self, _arg: None) -> None:
        if self.stack:
            self.stack.pop()
        else:
            self.pop_mark()

    def op_POP_MARK(self, _arg: None) -> None:
        self.pop_mark()

    def op_DUP(self, _arg: None) -> None:
        self.push(self.top())

    def _memo_get(self, index: object) -> None:
        if not isinstance(index, int) or index not in self.memo:
            raise _Malformed(f"memo key {index!r} was never stored")
        self.push(self.memo[index])

    op_GET = op_BINGET = op_LONG_BINGET = _memo_get

    def _memo_put(self, index: object) -> None:
        if not isinstance(index, int) or index < 0:
            raise _Malformed("negative PUT argument")
        self.ctx.spend()
        self.memo[index] = self.top()

    op_PUT = op_BINPUT = op_LONG_BINPUT = _memo_put

    def op_MEMOIZE(self, _arg: None) -> None:
        self.ctx.spend()
        self.memo[len(self.memo)] = self.top()

    # -- constants --------------------------------------------------------------------------------

    _push_arg = push  # the argument is the value (one call fewer per constant)

    op_INT = op_BININT = op_BININT1 = op_BININT2 = op_LONG = op_LONG1 = op_LONG4 = _push_arg
    op_FLOAT = op_BINFLOAT = _push_arg
    op_STRING = op_BINSTRING = op_SHORT_BINSTRING = op_UNICODE = op_BINUNICODE = _push_arg
    op_SHORT_BINUNICODE = op_BINUNICODE8 = _push_arg
    op_BINBYTES = op_SHORT_BINBYTES = op_BINBYTES8 = op_BYTEARRAY8 = _push_arg

    def op_NONE(self, _arg: None) -> None:
        self.push(None)

    def op_NEWTRUE(self, _arg: None) -> None:
        self.push(True)

    def op_NEWFALSE(self, _arg: None) -> None:
        self.push(False)

    def op_NEXT_BUFFER(self, _arg: None) -> None:
        self.ctx.add(
            "pickle-out-of-band-buffer",
            f"the pickle takes a protocol-5 buffer from its loader at byte {self.op_offset}",
            key="buffer",
        )
        self.push(Opaque("out-of-band buffer"))

    def op_READONLY_BUFFER(self, _arg: None) -> None:
        self.top()

    # -- containers -------------------------------------------------------------------------------

    def op_EMPTY_TUPLE(self, _arg: None) -> None:
        self.push(Tup(()))

    def op_TUPLE(self, _arg: None) -> None:
        items = self.pop_mark()
        self.push(Tup(tuple(items)))

    def _tuple_n(self, count: int) -> None:
        if len(self.stack) < count:
            raise _Malformed("stack underflow")
        items = tuple(self.stack[-count:])
        del self.stack[-count:]
        self.push(Tup(items))

    def op_TUPLE1(self, _arg: None) -> None:
        self._tuple_n(1)

    def op_TUPLE2(self, _arg: None) -> None:
        self._tuple_n(2)

    def op_TUPLE3(self, _arg: None) -> None:
        self._tuple_n(3)

    def op_EMPTY_LIST(self, _arg: None) -> None:
        self.push(Lst([]))

    def op_LIST(self, _arg: None) -> None:
        self.push(Lst(self.pop_mark()))

    def op_APPEND(self, _arg: None) -> None:
        value = self.pop()
        self._extend(self.top(), [value])

    def op_APPENDS(self, _arg: None) -> None:
        items = self.pop_mark()
        self._extend(self.top(), items)

    def _extend(self, target: object, items: list) -> None:
        if isinstance(target, (Lst, Call)):
            target.items.extend(items)
        elif isinstance(target, (SetV,)):
            target.items.extend(items)
        else:
            # list.append on anything else calls that object's append method.
            self._unexpected_target("APPEND", target)

    def op_EMPTY_DICT(self, _arg: None) -> None:
        self.push(Dct([]))

    def op_DICT(self, _arg: None) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise _Malformed("odd number of items for DICT")
        self.push(Dct(list(zip(items[0::2], items[1::2]))))

    def op_SETITEM(self, _arg: None) -> None:
        value = self.pop()
        key = self.pop()
        self._set_items(self.top(), [(key, value)])

    def op_SETITEMS(self, _arg: None) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise _Malformed("odd number of items for SETITEMS")
        self._set_items(self.top(), list(zip(items[0::2], items[1::2])))

    def _set_items(self, target: object, pairs: list) -> None:
        if isinstance(target, Dct):
            target.pairs.extend(pairs)
        elif isinstance(target, Call):
            target.pairs.extend(pairs)
        else:
            self._unexpected_target("SETITEM", target)

    def op_EMPTY_SET(self, _arg: None) -> None:
        self.push(SetV([]))

    def op_ADDITEMS(self, _arg: None) -> None:
        items = self.pop_mark()
        target = self.top()
        if isinstance(target, SetV):
            target.items.extend(items)
        else:
            self._unexpected_target("ADDITEMS", target)

    def op_FROZENSET(self, _arg: None) -> None:
        self.push(SetV(self.pop_mark()))

    def _unexpected_target(self, opcode: str, target: object) -> None:
        # The real unpickler may fail here, or may not (SETITEM on a list, append on an object of an
        # imported class). The walk goes on either way, so a payload placed after such a step is
        # still seen; a global being modified is reported.
        if isinstance(target, Global):
            self.ctx.add(
                "pickle-build-on-global",
                f"{opcode} at byte {self.op_offset} modifies the imported global {_printable(target.full)}",
                key=("build", target.full),
            )

    # -- globals ----------------------------------------------------------------------------------

    def op_GLOBAL(self, arg: tuple[str, str]) -> None:
        module, name = arg
        self.push(self._import(module, name))

    def op_STACK_GLOBAL(self, _arg: None) -> None:
        name = self.pop()
        module = self.pop()
        if not isinstance(module, str) or not isinstance(name, str):
            described = f"{_describe(module)}, {_describe(name)}"
            self.ctx.add(
                "pickle-dynamic-global",
                f"STACK_GLOBAL at byte {self.op_offset} imports a global named by values that are not "
                f"plain strings ({described})",
                key=("dynamic", self.op_offset),
            )
            self.ctx.imports.setdefault("<dynamic>", self.op_offset)
            self.push(Unresolved("a dynamically named global"))
            return
        self.push(self._import(module, name))

    def op_INST(self, arg: tuple[str, str]) -> None:
        module, name = arg
        cls = self._import(module, name)
        args = self.pop_mark()
        self.push(self._call(cls, Tup(tuple(args)), "INST"))

    def op_EXT1(self, arg: int) -> None:
        self._extension(arg)

    op_EXT2 = op_EXT4 = op_EXT1

    def _extension(self, code: int) -> None:
        self.ctx.add(
            "pickle-extension-code",
            f"EXT opcode at byte {self.op_offset} imports the global registered as extension code {code}",
            key=("ext", code),
        )
        self.ctx.imports.setdefault(f"<extension {code}>", self.op_offset)
        self.push(Unresolved(f"extension code {code}"))

    def _import(self, module: str, name: str) -> Global:
        glob = Global(module, name, self.op_offset)
        full = _printable(glob.full)  # names come from the file: no terminal escapes in reports
        if full not in self.ctx.imports and len(self.ctx.imports) >= MAX_DISTINCT_GLOBALS:
            raise _TooComplex(f"imports more than {MAX_DISTINCT_GLOBALS:,} distinct globals")
        self.ctx.imports.setdefault(full, self.op_offset)
        severity = self.ctx.policy.severity(module, name)
        if severity is not None:
            mapped = _compat_names(module, name)
            also = f" (the unpickler maps it to {mapped[1]})" if len(mapped) > 1 else ""
            self.ctx.add(
                "unsafe-code",
                f"imports {full}{also} at byte {self.op_offset}: {_severity_reason(severity)}",
                key=("import", full),
                severity=severity,
            )
        return glob

    # -- calls ------------------------------------------------------------------------------------

    def op_REDUCE(self, _arg: None) -> None:
        args = self.pop()
        func = self.pop()
        self.push(self._call(func, args, "REDUCE"))

    def op_NEWOBJ(self, _arg: None) -> None:
        args = self.pop()
        cls = self.pop()
        self.push(self._new(cls, args, "NEWOBJ"))

    def op_NEWOBJ_EX(self, _arg: None) -> None:
        self.pop()  # kwargs
        args = self.pop()
        cls = self.pop()
        self.push(self._new(cls, args, "NEWOBJ_EX"))

    def op_OBJ(self, _arg: None) -> None:
        items = self.pop_mark()
        if not items:
            raise _Malformed("OBJ without a class")
        self.push(self._call(items[0], Tup(tuple(items[1:])), "OBJ"))

    def _new(self, cls: object, args: object, opcode: str) -> object:
        if isinstance(cls, Global) and cls.name.rsplit(".", 1)[-1] == _QUANTIZED_WEIGHT_CLASS:
            self._flag_call(cls, opcode)
            return Instance(cls)
        return self._call(cls, args, opcode)

    def _call(self, func: object, args: object, opcode: str) -> object:
        self._scan_nested_pickles(func, args)
        if not isinstance(func, Global):
            self.ctx.add(
                "pickle-uncalled-reduce",
                f"{opcode} at byte {self.op_offset} calls {_describe(func)}, which is not an imported global",
                key="computed-callable",  # once per file: every such call site is as bad as the first
            )
            return Unresolved(f"a call of {_describe(func)}")
        self._flag_call(func, opcode)
        full = func.full
        arguments = args.items if isinstance(args, Tup) else None
        if arguments is None:
            return Unresolved(f"{full}(…)")
        if not self.ctx.policy.is_allowed(func.module, func.name):
            return Call(func, args)
        if full == _RECONSTRUCTOR and arguments and isinstance(arguments[0], Global):
            # copyreg._reconstructor(cls, base, state) creates a cls instance: protocol 0/1 objects.
            return self._new(arguments[0], Tup(()), "copyreg._reconstructor")
        return _interpret_call(full, arguments, self.ctx) or Call(func, args)

    def _flag_call(self, func: Global, opcode: str) -> None:
        severity = self.ctx.policy.severity(func.module, func.name)
        if severity is not None:
            self.ctx.add(
                "pickle-unsafe-call",
                f"{opcode} at byte {self.op_offset} calls {_printable(func.full)}: {_severity_reason(severity)}",
                key=("call", func.full),
                severity=severity,
            )

    def _scan_nested_pickles(self, func: object, args: object) -> None:
        if not isinstance(args, Tup):
            return
        name = func.full if isinstance(func, Global) else ""
        for item in args.items:
            if isinstance(item, Blob) and item.kind != "text" and _looks_like_nested(item, name):
                self._walk_nested(item, name or _describe(func))

    def _walk_nested(self, blob: Blob, callee: str) -> None:
        ctx = self.ctx
        self.ctx.add(
            "pickle-nested",
            f"a {blob.length}-byte pickle at byte {blob.offset if blob.offset is not None else '?'} "
            f"is passed to {callee}",
            key=("nested", blob.offset, blob.length),
        )
        if ctx.depth >= MAX_NESTED_DEPTH:
            return
        if blob.data is not None:
            inner = ByteRange.of_bytes(blob.data)
        elif blob.offset is not None and ctx.file_offsets:
            inner = ByteRange(self.source._handle, blob.offset, blob.offset + blob.length)
        else:
            return
        saved_where = ctx.where
        ctx.depth += 1
        ctx.where = f"{saved_where} (in a pickle nested at byte {blob.offset})"
        try:
            # Offsets inside in-memory copies are not file offsets.
            saved_offsets = ctx.file_offsets
            ctx.file_offsets = saved_offsets and blob.data is None
            walk_pickle(inner, ctx)
        finally:
            ctx.file_offsets = saved_offsets
            ctx.depth -= 1
            ctx.where = saved_where

    def op_BUILD(self, _arg: None) -> None:
        state = self.pop()
        target = self.top()
        if isinstance(target, NdArray):
            _set_array_state(target, state)
        elif isinstance(target, DType):
            if isinstance(state, Tup) and len(state.items) >= 2 and isinstance(state.items[1], str):
                target.byteorder = state.items[1]
        elif isinstance(target, (Instance, Dct)):
            target.state = state
        elif isinstance(target, Call):
            target.state = state
            func = target.func
            if isinstance(func, Global) and not self.ctx.policy.is_allowed(func.module, func.name):
                self._flag_call(func, "BUILD (__setstate__)")
        elif isinstance(target, Global):
            self.ctx.add(
                "pickle-build-on-global",
                f"BUILD at byte {self.op_offset} sets attributes of the imported global {_printable(target.full)}",
                key=("build", target.full),
            )
        # BUILD on anything else (a str, a tuple, an unresolved value) is not followed further; the
        # walk continues so that nothing after it goes unseen.

    # -- persistent ids ---------------------------------------------------------------------------

    def op_PERSID(self, arg: str) -> None:
        self.push(self._persistent(arg))

    def op_BINPERSID(self, _arg: None) -> None:
        self.push(self._persistent(self.pop()))

    def _persistent(self, pid: object) -> Persistent:
        storage = _storage_from_pid(pid)
        if storage is None:
            self.ctx.add(
                "pickle-unsafe-persistent-id",
                f"persistent id {_describe(pid)} at byte {self.op_offset} is not a PyTorch storage",
                key=("pid", self.op_offset),
            )
            return Persistent(pid, None)
        known = self.ctx.storages.setdefault(storage.key, storage)
        return Persistent(pid, known)


# The deadline is polled once per this many opcodes (and whenever a walk starts).
_POLL_EVERY = 1024


def _dispatch_entry(code: int) -> tuple[str, str, Callable | None, struct.Struct | None] | None:
    """(name, argument kind, handler or None for STOP, struct of a fixed-size integer argument or None)."""
    if code not in _OPCODES:
        return None
    name, kind = _OPCODES[code]
    handler = None if name == "STOP" else getattr(_Machine, "op_" + name)
    return name, kind, handler, _FIXED_INT.get(kind)


_DISPATCH = tuple(_dispatch_entry(code) for code in range(256))


def _parse_int(line: bytes) -> int:
    if len(line) > 4000:
        raise _Malformed("integer literal too long")
    try:
        return int(line)
    except ValueError:
        raise _Malformed("integer argument is not a number") from None


def _severity_reason(severity: Severity) -> str:
    if severity is Severity.CRITICAL:
        return "loading the file can run arbitrary code"
    if severity is Severity.HIGH:
        return "a builtin or interpreter facility that no weights file needs"
    return "not on the allow-list of array-building constructs"


def _printable(text: str) -> str:
    from openaudit.release import printable

    return printable(text)


def _describe(value: object, depth: int = 0) -> str:
    if isinstance(value, Global):
        return _printable(value.full)
    if isinstance(value, str):
        return repr(value[:60])
    if isinstance(value, (int, float, bool)) or value is None:
        return repr(value)
    if isinstance(value, Tup):
        if depth > 3:
            return "(…)"
        inner = ", ".join(_describe(item, depth + 1) for item in value.items[:6])
        return f"({inner}{', …' if len(value.items) > 6 else ''})"
    if isinstance(value, Blob):
        return f"{value.length} bytes"
    if isinstance(value, Unresolved):
        return value.origin
    return type(value).__name__.lower()


def _looks_like_nested(blob: Blob, callee: str) -> bool:
    if callee in _LOADS_LIKE:
        return True
    head = blob.data[:2] if blob.data is not None else None
    # Only payloads handed to something other than an array constructor are considered: array data
    # can start with any byte.
    return head is not None and len(head) == 2 and head[0] == 0x80 and head[1] <= PROTOCOL_MAX and callee not in (
        _RECONSTRUCT | _FROMBUFFER | {_CODECS_ENCODE}
    )


# ---------------------------------------------------------------------------------------------------
# Interpreting calls of allowed globals: arrays, dtypes, tensors, containers.


def _interpret_call(full: str, args: tuple, ctx: ScanContext) -> Value | None:
    if full in _RECONSTRUCT:
        return NdArray()
    if full == _NUMPY_DTYPE:
        return _numpy_dtype(args)
    if full in _FROMBUFFER:
        return _frombuffer(args)
    if full == _ORDERED_DICT:
        pairs: list = []
        if args and isinstance(args[0], (Lst, Tup)):
            for item in args[0].items:
                if isinstance(item, Tup) and len(item.items) == 2:
                    pairs.append(item.items)
        return Dct(pairs)
    if full == _TORCH_SIZE:
        return args[0] if args and isinstance(args[0], Tup) else Tup(())
    if full in _REBUILD_V2:
        return _rebuild_tensor(args, None, ctx)
    if full == _REBUILD_V3:
        dtype_arg = args[6] if len(args) > 6 else None
        dtype = _TORCH_DTYPES.get(dtype_arg.name) if isinstance(dtype_arg, Global) else None
        return _rebuild_tensor(args, dtype or "unsupported", ctx)
    if full in _REBUILD_PARAMETER:
        return args[0] if args and isinstance(args[0], TorchTensor) else None
    if full == _REBUILD_FROM_TYPE:
        # _rebuild_from_type_v2(func, new_type, args, state): the tensor is func(*args).
        if len(args) >= 3 and isinstance(args[0], Global) and isinstance(args[2], Tup):
            inner = args[0]
            if ctx.policy.is_allowed(inner.module, inner.name):
                return _interpret_call(inner.full, args[2].items, ctx)
        return None
    if full == _CODECS_ENCODE:
        # Protocol 0-2 bytes under Python 3: _codecs.encode(text, 'latin1'). The bytes are not raw in
        # the file (no offset), but short ones are kept so that a pickle hidden in them is scanned.
        if args and isinstance(args[0], str):
            try:
                data = args[0].encode("latin-1")
            except UnicodeEncodeError:
                data = None
            kept = data if data is not None and len(data) <= INLINE_PAYLOAD_BYTES else None
            return Blob(None, len(args[0]), kept, "encoded")
        return Blob(None, -1, None, "encoded")
    return None


def _numpy_dtype(args: tuple) -> DType:
    spec = args[0] if args else None
    if isinstance(spec, str):
        canonical = _NUMPY_KINDS.get(spec.lstrip("<>|="))
        itemsize = _itemsize(canonical)
        return DType(spec, canonical, itemsize)
    if isinstance(spec, Global) and spec.module.split(".")[0] == "ml_dtypes":
        canonical = _ML_DTYPES.get(spec.name)
        return DType(spec.full, canonical, _itemsize(canonical))
    return DType(_describe(spec), None, None)


def _frombuffer(args: tuple) -> NdArray:
    # numpy's protocol-5 path: _frombuffer(buffer, dtype, shape, order)
    array = NdArray()
    if len(args) >= 4:
        array.data = args[0]
        array.dtype = args[1] if isinstance(args[1], DType) else None
        array.shape = _int_tuple(args[2])
        array.fortran = args[3] == "F"
    else:
        array.problem = "unexpected _frombuffer arguments"
    return array


def _set_array_state(array: NdArray, state: object) -> None:
    # ndarray.__setstate__((version, shape, dtype, is_fortran, rawdata)); older pickles omit version.
    items = state.items if isinstance(state, Tup) else ()
    if len(items) == 5:
        items = items[1:]
    if len(items) != 4:
        array.problem = "unexpected ndarray state"
        return
    shape, dtype, fortran, data = items
    array.shape = _int_tuple(shape)
    array.dtype = dtype if isinstance(dtype, DType) else None
    array.fortran = bool(fortran) if isinstance(fortran, (bool, int)) else False
    array.data = data


def _int_tuple(value: object) -> tuple[int, ...] | None:
    if isinstance(value, Tup) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value.items):
        return tuple(value.items)
    return None


def _storage_from_pid(pid: object) -> StorageRef | None:
    # torch.save: ('storage', storage_type, key, location, numel); legacy files add view_metadata.
    if not isinstance(pid, Tup) or len(pid.items) not in (5, 6):
        return None
    tag, storage_type, key, location, numel = pid.items[:5]
    if tag != "storage" or not isinstance(storage_type, Global) or not isinstance(key, str):
        return None
    if not isinstance(location, str) or not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
        return None
    if storage_type.module not in ("torch", "torch.storage", "torch.cuda"):
        return None
    dtype = _TORCH_STORAGE_DTYPES.get(storage_type.name)
    if dtype is None and storage_type.name != "ComplexDoubleStorage":
        return None
    return StorageRef(key, dtype, numel, location, storage_type.name)


def _rebuild_tensor(args: tuple, dtype: str | None, ctx: ScanContext) -> Value | None:
    if len(args) < 4:
        return None
    storage_value, storage_offset, size, stride = args[:4]
    if not isinstance(storage_value, Persistent) or storage_value.storage is None:
        return None
    size_tuple = _int_tuple(size)
    stride_tuple = _int_tuple(stride)
    if size_tuple is None or stride_tuple is None or len(size_tuple) != len(stride_tuple):
        return None
    if not isinstance(storage_offset, int) or isinstance(storage_offset, bool) or storage_offset < 0:
        return None
    storage = storage_value.storage
    return TorchTensor(storage, storage_offset, size_tuple, stride_tuple, dtype if dtype else storage.dtype)


# ---------------------------------------------------------------------------------------------------
# From symbolic values to tensor records.

StorageLocator = Callable[[StorageRef], "tuple[int | None, int] | None"]
"""Given a storage, its (absolute data offset or None, stored byte count), or None when absent."""


def collect_tensors(
    root: object,
    base_name: str,
    ctx: ScanContext,
    locate_storage: StorageLocator | None = None,
) -> list[TensorRecord]:
    """Tensor records for every array/tensor reachable from ``root``, named by their key path."""
    records: list[TensorRecord] = []
    seen: set[int] = set()
    stack: list[tuple[object, str, int]] = [(root, "", 0)]
    while stack:
        ctx.deadline.check()
        value, name, depth = stack.pop()
        if depth > 64 or id(value) in seen and isinstance(value, (Dct, Lst, Tup, Call, Instance)):
            continue
        display = name or base_name
        if isinstance(value, NdArray):
            records.extend(_array_records(value, display, ctx))
        elif isinstance(value, Instance):
            seen.add(id(value))
            records.extend(_instance_records(value, display, ctx, stack, name, depth))
        elif isinstance(value, TorchTensor):
            record = _torch_record(value, display, ctx, locate_storage)
            if record is not None:
                records.append(record)
        elif isinstance(value, Dct):
            seen.add(id(value))
            children = [(k, v) for k, v in value.pairs]
            for key, child in reversed(children):
                stack.append((child, _join(name, key), depth + 1))
        elif isinstance(value, (Lst, Tup, SetV)):
            seen.add(id(value))
            for index in range(len(value.items) - 1, -1, -1):
                stack.append((value.items[index], _join(name, index), depth + 1))
        elif isinstance(value, Call):
            # An object of some other class: look for tensors in what was stored into it.
            seen.add(id(value))
            for key, child in reversed(value.pairs):
                stack.append((child, _join(name, key), depth + 1))
            for index in range(len(value.items) - 1, -1, -1):
                stack.append((value.items[index], _join(name, index), depth + 1))
            if value.state is not None:
                stack.append((value.state, name, depth + 1))
    return records


def _join(prefix: str, key: object) -> str:
    text = key if isinstance(key, str) else str(key) if isinstance(key, (int, bool)) else _describe(key)
    return f"{prefix}.{text}" if prefix else text


def _array_records(array: NdArray, name: str, ctx: ScanContext, role: str = PARAMETER,
                   pairs_with: str | None = None) -> list[TensorRecord]:
    dtype = array.dtype
    if array.shape is None or dtype is None or array.problem:
        if array.problem or array.shape is None:
            ctx.add("pickle-malformed", f"array {name!r} has no usable shape or state", key=("array", name))
        return []
    if dtype.canonical is None:
        ctx.add("pickle-unsupported-dtype", f"array {name!r} has dtype {dtype.spec}", key=("dtype", name))
        return []
    if dtype.byteorder == ">" and (dtype.itemsize or 1) > 1:
        ctx.add("pickle-big-endian", f"array {name!r} is stored big-endian", key=("endian", name))
    nbytes = prod(array.shape) * (dtype.itemsize or 0)
    offset = None
    data = array.data
    if isinstance(data, Blob) and data.kind in ("bytes", "bytearray"):
        if data.length != nbytes:
            ctx.add(
                "pickle-array-size-mismatch",
                f"array {name!r} declares {nbytes} bytes ({dtype.canonical}{list(array.shape)}) but stores {data.length}",
                key=("size", name),
            )
        else:
            offset = data.offset
    strides = None
    if array.fortran and sum(1 for dim in array.shape if dim > 1) > 1:
        strides = tuple(prod(array.shape[:axis]) for axis in range(len(array.shape)))
    return [
        TensorRecord(
            name=name, dtype=dtype.canonical, shape=array.shape, file=ctx.path, nbytes=nbytes,
            offset=offset, role=role, pairs_with=pairs_with, strides=strides,
        )
    ]


def _instance_records(instance: Instance, name: str, ctx: ScanContext, stack: list, raw_name: str,
                      depth: int) -> list[TensorRecord]:
    """Grok-1's QuantizedWeight8bit: ``{'weight': int8 array, 'scales': bf16 array}`` as __dict__."""
    from openaudit.families.grok1_layout import SCALES_SUFFIX

    state = instance.state
    if isinstance(state, Tup) and len(state.items) == 2 and isinstance(state.items[1], Dct):
        state = state.items[1] if state.items[0] is None else state.items[0]
    if not isinstance(state, Dct):
        return []
    fields = {key: value for key, value in state.pairs if isinstance(key, str)}
    weight, scales = fields.get("weight"), fields.get("scales")
    if isinstance(weight, NdArray) and isinstance(scales, NdArray):
        scale_name = name + SCALES_SUFFIX
        return _array_records(weight, name, ctx, PARAMETER, scale_name) + _array_records(
            scales, scale_name, ctx, SCALE, name
        )
    for key, value in reversed(state.pairs):
        stack.append((value, _join(raw_name, key), depth + 1))
    return []


def _torch_record(tensor: TorchTensor, name: str, ctx: ScanContext,
                  locate_storage: StorageLocator | None) -> TensorRecord | None:
    storage = tensor.storage
    dtype = tensor.dtype
    itemsize = _itemsize(dtype)
    if dtype is None or dtype == "unsupported" or itemsize is None:
        ctx.add("pickle-unsupported-dtype", f"tensor {name!r} has a dtype openaudit does not count "
                f"(storage {storage.type_name})", key=("dtype", name))
        return None
    size, stride = tensor.size, tensor.stride
    elements = prod(size)
    storage_itemsize = _itemsize(storage.dtype) or 1
    storage_bytes = storage.numel * storage_itemsize
    if elements:
        last = tensor.storage_offset + sum((dim - 1) * step for dim, step in zip(size, stride))
        if (last + 1) * itemsize > storage_bytes:
            ctx.add(
                "pickle-tensor-out-of-bounds",
                f"tensor {name!r} ({dtype}{list(size)}, strides {list(stride)}, offset {tensor.storage_offset}) "
                f"reaches past its {storage_bytes}-byte storage {storage.key!r}",
                key=("bounds", name),
            )
    offset = None
    if locate_storage is not None:
        located = locate_storage(storage)
        if located is not None and located[0] is not None:
            offset = located[0] + tensor.storage_offset * itemsize
    contiguous = _contiguous_strides(size)
    strides = None if _same_layout(size, stride, contiguous) else stride
    return TensorRecord(
        name=name, dtype=dtype, shape=size, file=ctx.path, nbytes=elements * itemsize, offset=offset,
        role=PARAMETER, strides=strides,
    )


def _contiguous_strides(size: tuple[int, ...]) -> tuple[int, ...]:
    strides = []
    step = 1
    for dim in reversed(size):
        strides.append(step)
        step *= max(dim, 1)
    return tuple(reversed(strides))


def _same_layout(size: tuple, stride: tuple, contiguous: tuple) -> bool:
    # PyTorch ignores the stride of size-1 dimensions when it decides contiguity.
    return all(dim <= 1 or a == b for dim, a, b in zip(size, stride, contiguous))


# ---------------------------------------------------------------------------------------------------
# Sniffing and the file-level entry point.

_ZIP_MAGIC = b"PK\x03\x04"


def sniff_pickle(head: bytes) -> bool:
    """Whether ``head`` (the first bytes of a file) starts a pickle.

    Protocol 2+ pickles start with PROTO; protocol 0/1 pickles start with an ordinary opcode, so for
    them a short trial walk over ``head`` must reach STOP, or consume all of ``head`` without an
    error after at least four opcodes (a larger pickle cut off by the head).
    """
    if len(head) >= 2 and head[0] == 0x80:
        return head[1] <= PROTOCOL_MAX and (len(head) < 3 or head[2] in _OPCODES)
    if not head or head[0] not in _PROTO0_FIRST:
        return False
    return _trial_walk(head[:READ_CHUNK * 8])


def _trial_walk(head: bytes) -> bool:
    ctx = ScanContext(path="<sniff>", deadline=Deadline(0.5), policy=_EMPTY_POLICY)
    source = ByteRange.of_bytes(head)
    machine = _Machine(source, ctx)
    opcodes = 0
    try:
        while True:
            code = source.read(1)[0]
            spec = _OPCODES.get(code)
            if spec is None:
                return False
            name, kind = spec
            arg = machine._argument(kind, name) if kind else None
            opcodes += 1
            if name == "STOP":
                machine.pop()
                return True
            getattr(machine, "op_" + name)(arg)
    except _Truncated:
        return opcodes >= 4
    except (_Malformed, _TooComplex, ParseTimeout, MalformedInput, RecursionError, ValueError, KeyError):
        return False


_EMPTY_POLICY = GlobalPolicy(allow=frozenset(), critical=(), high=())


def sniff_torch_zip(head: bytes) -> bool:
    """A zip whose first member lies in a folder, as torch.save writes (``<name>/data.pkl`` first)."""
    if len(head) < 30 or not head.startswith(_ZIP_MAGIC):
        return False
    name_length = struct.unpack_from("<H", head, 26)[0]
    name = head[30 : 30 + name_length]
    return b"/" in name


def scan_pickle_file(location: Path, path: str, size: int, deadline: Deadline | None = None) -> WeightsFileScan:
    """Scan one file that may be a pickle, a PyTorch zip or a legacy PyTorch file. Never raises on bad input."""
    deadline = deadline or Deadline()
    ctx = ScanContext(path=path, deadline=deadline)
    container = "pickle"
    tensors: list[TensorRecord] = []
    metadata: dict[str, object] = {}
    complete = True
    try:
        with open_regular(location) as handle:
            size = _actual_size(handle, size)
            head = handle.read(4)
            if head == _ZIP_MAGIC:
                from openaudit.inspect import torch_files

                return torch_files.scan_torch_zip(handle, path, size, ctx)
            container, tensors, metadata, complete = _scan_raw(handle, size, ctx)
    except ParseTimeout as exc:
        ctx.findings.append(finding("parse-timeout", f"{exc}{ctx.where}", path))
        complete = False
    except MalformedInput as exc:
        ctx.findings.append(finding(_known_id(exc.finding_id), str(exc), path))
        complete = False
    except OSError as exc:
        ctx.findings.append(finding("unreadable-file", f"cannot read: {exc.strerror or exc}", path))
        complete = False
    except Exception as exc:  # noqa: BLE001 - a hostile file must never crash the audit
        ctx.findings.append(finding("pickle-malformed", f"the scanner stopped: {type(exc).__name__}: {exc}", path))
        complete = False
    return WeightsFileScan(
        path=path, format="pickle", container=container, tensors=tuple(tensors), metadata=metadata,
        imports=tuple(ctx.imports), findings=tuple(ctx.findings), complete=complete,
    )


def _known_id(rule_id: str) -> str:
    from openaudit.findings import catalogue

    return rule_id if rule_id in catalogue() else "pickle-malformed"


def _actual_size(handle: BinaryIO, declared: int) -> int:
    import os

    try:
        return os.fstat(handle.fileno()).st_size
    except (OSError, AttributeError, io.UnsupportedOperation):
        return declared


def _scan_raw(handle: BinaryIO, size: int, ctx: ScanContext) -> tuple[str, list[TensorRecord], dict, bool]:
    """A raw pickle file (or a legacy torch file, detected by its first pickle)."""
    source = ByteRange(handle, 0, size)
    first = walk_pickle(source, ctx)
    if first.complete and _is_torch_magic(first.root):
        from openaudit.inspect import torch_files

        return torch_files.scan_torch_legacy(source, size, ctx, first)
    results = [first]
    complete = first.complete
    if complete:
        more, complete = walk_remaining_pickles(source, ctx)
        results.extend(more)
    if len(results) > 1:
        ctx.add("pickle-concatenated", f"the file holds {len(results)} pickles one after another")
    tensors: list[TensorRecord] = []
    for result in results:
        tensors.extend(collect_tensors(result.root, ctx.path, ctx))
    metadata = {"protocol": first.protocol if first.protocol is not None else 0}
    return "pickle", tensors, metadata, complete


def walk_remaining_pickles(source: ByteRange, ctx: ScanContext) -> tuple[list[PickleResult], bool]:
    """Walk the pickles that follow a STOP; bytes that do not start a pickle are trailing data."""
    results: list[PickleResult] = []
    while source.remaining() > 0:
        if len(results) + 1 >= MAX_PICKLES_PER_FILE:
            ctx.add("pickle-too-complex", f"the file holds more than {MAX_PICKLES_PER_FILE} pickles")
            return results, False
        if not sniff_pickle(source.peek(READ_CHUNK)):
            ctx.add(
                "pickle-trailing-data",
                f"{source.remaining()} bytes follow the pickle's STOP opcode at byte {source.pos - 1}",
            )
            return results, True
        result = walk_pickle(source, ctx)
        if not result.complete:
            return results, False
        results.append(result)
    return results, True


TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _is_torch_magic(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value == TORCH_LEGACY_MAGIC
