"""What calls of allowed globals evaluate to: numpy arrays and dtypes, PyTorch tensors and storages, containers.

The machine evaluates a call of an allowed global here, symbolically: ``numpy.core.multiarray._reconstruct``
becomes an :class:`NdArray` that a later BUILD fills in, ``torch._utils._rebuild_tensor_v2`` a
:class:`TorchTensor` on the storage its persistent id names, and so on. Anything not recognised stays an
opaque call.
"""

from __future__ import annotations

from openaudit.inspect.pickle.opcodes import INLINE_PAYLOAD_BYTES
from openaudit.inspect.pickle.policy import GlobalPolicy
from openaudit.inspect.pickle.values import (
    Blob,
    Dct,
    DType,
    Global,
    Lst,
    NdArray,
    Persistent,
    StorageRef,
    TorchTensor,
    Tup,
    Value,
    describe,
)
from openaudit.inspect.tensors import DTYPE_BITS

# Globals recognised by their full name (module.name); the machine uses the public ones too.
RECONSTRUCT = {"numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct"}
FROMBUFFER = {"numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer"}
_NUMPY_DTYPE = "numpy.dtype"
_ORDERED_DICT = "collections.OrderedDict"
_REBUILD_V2 = {"torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor"}
_REBUILD_V3 = "torch._utils._rebuild_tensor_v3"
_REBUILD_PARAMETER = {"torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state"}
_REBUILD_FROM_TYPE = "torch._tensor._rebuild_from_type_v2"
_TORCH_SIZE = "torch.Size"
CODECS_ENCODE = "_codecs.encode"
RECONSTRUCTOR = "copyreg._reconstructor"
QUANTIZED_WEIGHT_CLASS = "QuantizedWeight8bit"  # Grok-1's; recognised by its name in any module

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


def dtype_itemsize(dtype: str | None) -> int | None:
    """Bytes per element of a canonical dtype; None for sub-byte and unknown dtypes."""
    bits = DTYPE_BITS.get(dtype or "")
    return bits // 8 if bits and bits % 8 == 0 else None


def interpret_call(full: str, args: tuple, policy: GlobalPolicy) -> Value | None:
    """The value a call of the allowed global ``full`` builds, or None when it is not one modelled here."""
    if full in RECONSTRUCT:
        return NdArray()
    if full == _NUMPY_DTYPE:
        return _numpy_dtype(args)
    if full in FROMBUFFER:
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
        return _rebuild_tensor(args, None)
    if full == _REBUILD_V3:
        dtype_arg = args[6] if len(args) > 6 else None
        dtype = _TORCH_DTYPES.get(dtype_arg.name) if isinstance(dtype_arg, Global) else None
        return _rebuild_tensor(args, dtype or "unsupported")
    if full in _REBUILD_PARAMETER:
        return args[0] if args and isinstance(args[0], TorchTensor) else None
    if full == _REBUILD_FROM_TYPE:
        # _rebuild_from_type_v2(func, new_type, args, state): the tensor is func(*args).
        if len(args) >= 3 and isinstance(args[0], Global) and isinstance(args[2], Tup):
            inner = args[0]
            if policy.is_allowed(inner.module, inner.name):
                return interpret_call(inner.full, args[2].items, policy)
        return None
    if full == CODECS_ENCODE:
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
        itemsize = dtype_itemsize(canonical)
        return DType(spec, canonical, itemsize)
    if isinstance(spec, Global) and spec.module.split(".")[0] == "ml_dtypes":
        canonical = _ML_DTYPES.get(spec.name)
        return DType(spec.full, canonical, dtype_itemsize(canonical))
    return DType(describe(spec), None, None)


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


def set_array_state(array: NdArray, state: object) -> None:
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


def storage_from_pid(pid: object) -> StorageRef | None:
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


def _rebuild_tensor(args: tuple, dtype: str | None) -> Value | None:
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

