"""From symbolic values to tensor records: every array and tensor reachable from a walked pickle.

numpy arrays (``_reconstruct`` + ``__setstate__``), Grok-1's ``QuantizedWeight8bit`` objects (an int8
weight and its scales) and PyTorch tensors (``_rebuild_tensor_v2/v3`` on a storage) become
:class:`TensorRecord` with dtype, shape and, where the data lies in the file, its absolute offset.
Each is named by its key path from the root (``layers.0.attention.wq.weight``).
"""

from __future__ import annotations

from math import prod
from typing import Callable

from openaudit.inspect.pickle.constructors import dtype_itemsize
from openaudit.inspect.pickle.grok_layout import SCALES_SUFFIX
from openaudit.inspect.pickle.machine import ScanContext
from openaudit.inspect.pickle.values import (
    Blob,
    Call,
    Dct,
    Instance,
    Lst,
    NdArray,
    SetV,
    StorageRef,
    TorchTensor,
    Tup,
    describe,
)
from openaudit.inspect.tensors import PARAMETER, SCALE, TensorRecord

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
    text = key if isinstance(key, str) else str(key) if isinstance(key, (int, bool)) else describe(key)
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
    itemsize = dtype_itemsize(dtype)
    if dtype is None or dtype == "unsupported" or itemsize is None:
        ctx.add("pickle-unsupported-dtype", f"tensor {name!r} has a dtype openaudit does not count "
                f"(storage {storage.type_name})", key=("dtype", name))
        return None
    size, stride = tensor.size, tensor.stride
    elements = prod(size)
    storage_itemsize = dtype_itemsize(storage.dtype) or 1
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

