"""The symbolic values of a pickle walk: descriptions of what an unpickler would build, never the objects.

Every value is a description (a string, a tuple of descriptions, "the result of calling numpy.dtype with
…"); nothing is imported or constructed, and a large payload is remembered as (offset, length) only.
"""

from __future__ import annotations

from dataclasses import dataclass

from openaudit.release import printable

# Identity matters (memo entries and BUILD share objects), so no value defines __eq__.


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


def describe(value: object, depth: int = 0) -> str:
    """A short, printable description of a value, for findings."""
    if isinstance(value, Global):
        return printable(value.full)
    if isinstance(value, str):
        return repr(value[:60])
    if isinstance(value, (int, float, bool)) or value is None:
        return repr(value)
    if isinstance(value, Tup):
        if depth > 3:
            return "(…)"
        inner = ", ".join(describe(item, depth + 1) for item in value.items[:6])
        return f"({inner}{', …' if len(value.items) > 6 else ''})"
    if isinstance(value, Blob):
        return f"{value.length} bytes"
    if isinstance(value, Unresolved):
        return value.origin
    return type(value).__name__.lower()

