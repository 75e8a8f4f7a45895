"""From tensor records to device arrays: which stored tensor feeds which forward-pass name, and loading it.

``plan_load`` decides, before any data is read, what the forward pass needs: the model's global names and
every layer's names (``openaudit.run.model``), matched to the primary weights' records by canonical
name (``openaudit.inspect.tensor_names.canonical``; GGUF names through the decoder's ``canonical_from_gguf``),
with each tensor's shape and dtype on the device. ``Loader.load`` then reads a set of those tensors:

- safetensors and pickle-based files (PyTorch zip/legacy, Grok-1's raw pickles): each device's part is
  built from a memory-mapped view of just that part (``TensorReader.read_slice``), so no full host
  copy is made. On accelerators that view is handed to ``jax.make_array_from_callback``
  (``tensor_io.load_sharded``), which copies it to the device. On CPU, where the "device" is host
  memory, a 64-byte-aligned view is aliased by jax (zero copy) and any other contiguous part is read
  with ``pread`` into an aligned buffer that jax aliases in turn (one copy, at the disk's speed).
  A stored float dtype other than the compute dtype is converted on the device after the transfer
  (half the bytes over the bus for BF16). The two dtypes jax cannot hold (the 6-bit MX floats,
  float64) are converted on the host, per shard.
- Grok-1's quantized matrices stay int8 with their bfloat16 ``:scales`` on the device; the forward
  pass dequantizes them inside the layer (``dequantize_int8_jax``).
- GGUF: each tensor is dequantized on the host to float32 (a copy by nature of the block formats),
  renamed, un-permuted and split by ``canonical_from_gguf``, then placed with its sharding.

A ``load`` call reads up to ``LOAD_WORKERS`` tensors at once (disk reads overlap page faults, copies
and transfers), through a ``TensorReader`` opened for that call and closed at its end, so the memory
maps (and, on CPU, file pages aliased by device arrays) go away with the arrays: a streamed run does
not keep the whole file resident.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from math import prod
from typing import Any, Iterable, Mapping, Sequence

import jax
import ml_dtypes
import numpy as np

from openaudit.errors import MalformedInput
from openaudit.inspect.tensor_names import canonical
from openaudit.inspect.tensors import BUFFER, SCALE, TensorRecord
from openaudit.limits import open_regular
from openaudit.run import dequant
from openaudit.run import sharding as shard_rules
from openaudit.run.tensor_io import TensorReader, load_sharded, numpy_dtype

# Stored float dtypes that become the compute dtype on the device.
FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F8_E4M3FNUZ",
                          "F8_E5M2FNUZ", "F4", "F6_E2M3", "F6_E3M2"})
# Stored dtypes jax cannot hold (no XLA type, or float64 without x64): converted on the host per shard.
HOST_CONVERTED = frozenset({"F6_E2M3", "F6_E3M2", "F64"})
# How each container's bytes reach the device (reported in the run's "loaded" section).
METHODS: Mapping[str, str] = {
    "safetensors": "memory map -> per-device slices (make_array_from_callback), converted on the device",
    "pickle": "pickle opcodes located the array bytes (never unpickled) -> memory map -> per-device slices",
    "gguf": "memory map -> blocks dequantized to float32 on the host (ggml's formulas) -> renamed, un-permuted "
            "-> per-device slices",
    "grok-int8": "int8 weights and bfloat16 scales placed as stored; dequantized inside each layer on the device",
}
LOAD_WORKERS = 4  # tensors read at once by one load call


@dataclass(frozen=True)
class Entry:
    """One array the forward pass reads: its canonical ``name``, device ``shape`` and ``dtype``, and the
    stored tensor it comes from (for GGUF, ``gguf_name`` is that tensor's llama.cpp name)."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    record: TensorRecord
    container: str  # "safetensors", "pickle" or "gguf"
    gguf_architecture: str | None = None

    @property
    def nbytes(self) -> int:
        return prod(self.shape) * self.dtype.itemsize


@dataclass(frozen=True)
class LoadPlan:
    """The arrays of one run, split as the forward pass consumes them."""

    global_entries: tuple[Entry, ...]
    layer_entries: tuple[tuple[Entry, ...], ...]  # one tuple per LayerSlot, names in full
    prefixes: tuple[str, ...]
    kinds: tuple[Any, ...]
    compute_dtype: np.dtype
    unused: tuple[str, ...] = ()  # stored tensors the forward pass does not read (buffers, tied copies)
    methods: Mapping[str, str] = field(default_factory=dict)

    @property
    def entries(self) -> tuple[Entry, ...]:
        return self.global_entries + tuple(e for layer in self.layer_entries for e in layer)

    @property
    def nbytes(self) -> int:
        return sum(entry.nbytes for entry in self.entries)

    @property
    def largest_layer_bytes(self) -> int:
        return max((sum(e.nbytes for e in layer) for layer in self.layer_entries), default=0)

    @property
    def formats(self) -> tuple[str, ...]:
        return tuple(sorted({entry.container for entry in self.entries}))


def compute_dtype(name: str) -> np.dtype:
    """``--dtype`` value -> numpy dtype (float32, bfloat16, float16)."""
    table = {"float32": np.dtype(np.float32), "bfloat16": np.dtype(ml_dtypes.bfloat16), "float16": np.dtype(np.float16)}
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unsupported compute dtype {name!r} (choose from {', '.join(table)})") from None


def plan_load(weights, architecture, model, compute: np.dtype) -> LoadPlan:
    """Match the forward pass's names to the primary weights. Raises MalformedInput for tensors that
    cannot be loaded (unsupported dtype, a GGUF name with no counterpart)."""
    config = architecture.config
    slots = model.layers(config)
    wanted_globals = tuple(model.global_names(config))
    wanted_layers = [tuple(slot.prefix + name for name in model.layer_names(config, slot.kind)) for slot in slots]

    available: dict[str, Entry] = {}
    unused: list[str] = []
    for entry in _entries(weights, architecture, compute):
        if entry.name in available:
            unused.append(f"{entry.record.file}:{entry.record.name} (another copy of {entry.name})")
            continue
        available[entry.name] = entry
    wanted = set(wanted_globals).union(*wanted_layers) if wanted_layers else set(wanted_globals)
    unused.extend(name for name in available if name not in wanted)
    global_entries = tuple(available[name] for name in wanted_globals if name in available)
    layer_entries = tuple(tuple(available[name] for name in names if name in available) for names in wanted_layers)
    for entry in global_entries + tuple(e for layer in layer_entries for e in layer):
        if (np.issubdtype(entry.dtype, np.integer) or entry.dtype == np.bool_) and entry.record.pairs_with is None:
            # int8/uint8 weights without scales: a quantization (bitsandbytes, AWQ, GPTQ …) with no decoder here.
            raise MalformedInput("tensor-unsupported-dtype", f"{entry.record.name} is stored as {entry.record.dtype} "
                                 "without quantization scales openaudit can apply")
    methods = {container: METHODS[container] for container in {e.container for e in available.values()}}
    if any(e.record.pairs_with and e.dtype == np.int8 for e in available.values()):
        methods["grok-int8"] = METHODS["grok-int8"]
    return LoadPlan(global_entries, layer_entries, tuple(s.prefix for s in slots), tuple(s.kind for s in slots),
                    compute, tuple(sorted(unused)), methods)


def _entries(weights, architecture, compute: np.dtype) -> Iterable[Entry]:
    containers = {scan.path: scan for scan in weights.primary_scans}
    for record in weights.tensors:
        if record.role == BUFFER:
            continue
        scan = containers.get(record.file)
        container = scan.format if scan is not None else "safetensors"
        if container == "gguf":
            arch = scan.metadata.get("general.architecture") if isinstance(scan.metadata, Mapping) else None
            yield from _gguf_entries(record, architecture.config, str(arch or ""), compute)
            continue
        yield Entry(canonical(record.name), tuple(record.shape), device_dtype(record, compute), record, container)


def device_dtype(record: TensorRecord, compute: np.dtype) -> np.dtype:
    """Floats become the compute dtype; quantization scales and paired int8 weights stay as stored."""
    if record.dtype in FLOAT_DTYPES:
        if record.role == SCALE:
            return numpy_dtype("F32") if record.dtype in HOST_CONVERTED else numpy_dtype(record.dtype)
        return compute
    if dequant.is_block_type(record.dtype):
        return compute
    if record.dtype in ("C64",):
        raise MalformedInput("tensor-unsupported-dtype", f"{record.name} is complex ({record.dtype}): no model here uses complex weights")
    return numpy_dtype(record.dtype)  # integers (Grok-1's int8) and bools stay as stored


def _gguf_entries(record: TensorRecord, config, arch: str, compute: np.dtype) -> Iterable[Entry]:
    """The canonical tensors one GGUF tensor becomes, found by running the decoder's mapping on a
    zero-stride placeholder (no data is read: reshapes of a broadcast array are views)."""
    mapping = _gguf_mapping()
    placeholder = np.broadcast_to(np.zeros((), np.float32), tuple(record.shape))
    try:
        mapped = mapping({record.name: placeholder}, config, arch)
    except KeyError as exc:
        raise MalformedInput("run-unmapped-tensor", f"GGUF tensor {record.name!r} has no place in the forward pass: {exc}") from None
    except (ValueError, AttributeError) as exc:
        raise MalformedInput("run-unmapped-tensor", f"GGUF tensor {record.name!r} cannot be mapped: {exc}") from None
    if not dequant.is_block_type(record.dtype) and record.dtype not in FLOAT_DTYPES:
        raise MalformedInput("tensor-unsupported-dtype", f"GGUF tensor {record.name!r} has type {record.dtype}")
    for name, value in mapped.items():
        yield Entry(name, tuple(value.shape), compute, record, "gguf", arch)


def _gguf_mapping():
    try:
        from openaudit.run.models.decoder import canonical_from_gguf
    except ImportError as exc:  # pragma: no cover - the decoder forward pass is part of the package
        raise MalformedInput("run-unmapped-tensor", f"no GGUF name mapping available: {exc}") from None
    return canonical_from_gguf


# --- loading ------------------------------------------------------------------------------------------


class Loader:
    """Reads entries of a plan into arrays placed on ``mesh``; thread-safe (one reader per call).

    ``resident_bytes`` is what the loaded and not yet freed arrays occupy, and ``peak_resident_bytes``
    its maximum: the weights a run held at once, whatever the platform reports.
    """

    def __init__(self, release, plan: LoadPlan, mesh, config, *, touch: bool = False, workers: int = LOAD_WORKERS,
                 cpu_path: bool | None = None):
        self._release = release
        self._workers = workers
        self._touch = touch
        # On CPU, jax aliases a 64-byte-aligned host array instead of copying it, and copies anything
        # else with a slow single-threaded path: shards are handed over aligned (see _for_device).
        # ``cpu_path`` None: chosen from the mesh's devices (tests force either path).
        self._cpu = all(d.platform == "cpu" for d in mesh.devices.flat) if cpu_path is None else cpu_path
        self._plan = plan
        self._mesh = mesh
        self._config = config
        self._lock = threading.Lock()
        self.resident_bytes = 0
        self.peak_resident_bytes = 0
        self.loaded_tensors = 0
        self.loaded_bytes = 0
        self.sharded_tensors = 0  # split across devices (the rest are replicated)

    def load(self, entries: Sequence[Entry]) -> dict[str, jax.Array]:
        """Arrays for ``entries`` by canonical name. Raises MalformedInput for unreadable data."""
        arrays: dict[str, jax.Array] = {}
        reader = TensorReader.for_release(self._release)
        by_record: dict[tuple[str, str], list[Entry]] = defaultdict(list)
        for entry in entries:
            by_record[(entry.record.file, entry.record.name)].append(entry)

        def load_group(group: list[Entry]) -> dict[str, jax.Array]:
            if group[0].container == "gguf":
                return self._load_gguf(reader, group)
            return {entry.name: self._load_direct(reader, entry) for entry in group}

        groups = list(by_record.values())
        try:
            if self._workers > 1 and len(groups) > 1:
                # Several tensors in flight: disk reads overlap page faults, copies and transfers.
                with ThreadPoolExecutor(min(self._workers, len(groups)), thread_name_prefix="openaudit-load") as pool:
                    for part in pool.map(load_group, groups):
                        arrays.update(part)
            else:
                for group in groups:
                    arrays.update(load_group(group))
        except BaseException:
            self._discard(arrays)
            raise
        finally:
            reader.close()  # the maps stay alive exactly as long as arrays view them
        size = sum(array.nbytes for array in arrays.values())
        split = sum(1 for e in entries if shard_rules.split_axis(e.name, e.shape, self._mesh.size) is not None)
        with self._lock:
            self.sharded_tensors += split
            self.resident_bytes += size
            self.peak_resident_bytes = max(self.peak_resident_bytes, self.resident_bytes)
            self.loaded_tensors += len(arrays)
            self.loaded_bytes += size
        return arrays

    @staticmethod
    def _discard(arrays: Mapping[str, jax.Array]) -> None:
        for array in arrays.values():
            if not array.is_deleted():
                array.delete()

    def free(self, arrays: Mapping[str, jax.Array]) -> None:
        """Delete device arrays now (not when Python collects them) and account for it."""
        size = 0
        for array in arrays.values():
            if not array.is_deleted():
                size += array.nbytes
                array.delete()
        with self._lock:
            self.resident_bytes -= size

    def _sharding(self, entry: Entry):
        return shard_rules.sharding_for(self._mesh, entry.name, entry.shape)

    def _load_direct(self, reader: TensorReader, entry: Entry) -> jax.Array:
        record, sharding = entry.record, self._sharding(entry)
        if record.dtype in HOST_CONVERTED:
            return _from_callback(entry.shape, sharding, lambda index: _host_cast(reader.read_slice(record, index), entry.dtype))
        if self._cpu:
            location = self._release.file(record.file).location
            array = _from_callback(entry.shape, sharding,
                                   lambda index: _cpu_shard(reader, record, index, location, self._touch))
        else:
            array = load_sharded(reader, record, sharding)
        return _convert(array, entry.dtype)

    def _load_gguf(self, reader: TensorReader, group: Sequence[Entry]) -> dict[str, jax.Array]:
        record = group[0].record
        host = reader.read(record)  # float32 for block types, a view for plain ones
        mapped = _gguf_mapping()({record.name: host}, self._config, group[0].gguf_architecture or "")
        arrays = {}
        for entry in group:
            value = np.asarray(mapped[entry.name])
            sharding = self._sharding(entry)
            array = _from_callback(entry.shape, sharding, lambda index, value=value: _for_device(value[index]) if self._cpu else value[index])
            arrays[entry.name] = _convert(array, entry.dtype)
        return arrays


def touch_pages(data: np.ndarray, page: int = 4096) -> None:
    """Read one byte of every page of a mapped region (uint8), so that the file's bytes are in memory
    before the device needs them. On CPU jax aliases aligned mapped pages instead of copying them; a
    streamed run's prefetch thread then does the disk reads here, overlapped with the current layer's
    compute, instead of the compute faulting them in one page at a time."""
    if data.size:
        int(data[::page].sum(dtype=np.uint64))


def _from_callback(shape: tuple[int, ...], sharding, read) -> jax.Array:
    cache: dict[tuple, np.ndarray] = {}

    def shard(index):
        key = tuple((part.start, part.stop, part.step) if isinstance(part, slice) else part for part in index)
        if key not in cache:
            cache[key] = read(index)
        return cache[key]

    return jax.make_array_from_callback(shape, sharding, shard)


ALIGNMENT = 64  # bytes: what XLA's CPU client needs to alias a host buffer rather than copy it


def _for_device(values: np.ndarray) -> np.ndarray:
    """A C-contiguous, 64-byte-aligned array: the mapped view itself when it already is one (jax then
    aliases the file's pages, zero copy), else one numpy copy into an aligned buffer, which jax aliases
    (a numpy copy runs at memory speed; jax's own copy of a misaligned array is several times slower)."""
    if values.flags.c_contiguous and values.ctypes.data % ALIGNMENT == 0:
        return values
    out = aligned_empty(values.shape, values.dtype)
    np.copyto(out, values, casting="no")
    return out


def _cpu_shard(reader: TensorReader, record: TensorRecord, index, location, touch: bool) -> np.ndarray:
    """One device's part for the CPU backend, 64-byte aligned (see ``_for_device``).

    An aligned contiguous part is the mapped view itself (jax aliases it: zero copy); with ``touch`` its
    pages are read in now (see ``touch_pages``). Another part that is one contiguous run of the file is
    read with ``pread`` straight into an aligned buffer: one kernel copy in large requests, as fast as
    reading the file, instead of page faults then a copy."""
    view = reader.read_slice(record, index)  # checks the record against the file; a view of the map
    if view.flags.c_contiguous and view.ctypes.data % ALIGNMENT == 0 and record.dtype != "BOOL":
        if touch and view.nbytes:
            touch_pages(view.reshape(-1).view(np.uint8))
        return view
    if not view.flags.c_contiguous or view.nbytes == 0 or record.dtype == "BOOL":
        return _for_device(view)
    start = record.offset + (view.ctypes.data - reader.raw_bytes(record).ctypes.data)
    out = aligned_empty(view.shape, view.dtype)
    target = out.reshape(-1).view(np.uint8)
    with open_regular(location) as handle:
        done = 0
        while done < target.size:
            count = os.preadv(handle.fileno(), [target[done : done + _READ_CHUNK]], start + done)
            if count <= 0:
                return _for_device(view)  # the file changed under us: fall back to the mapped bytes
            done += count
    return out


_READ_CHUNK = 64 << 20


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    nbytes = prod(shape) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def _host_cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    target = dtype if dtype.name in ("bfloat16", "float16", "float32") else np.dtype(np.float32)
    out = aligned_empty(tuple(values.shape), target)
    np.copyto(out, values, casting="unsafe")
    return out


def _convert(array: jax.Array, dtype: np.dtype) -> jax.Array:
    """The array in ``dtype``, converted where it lives (the sharding is kept); the original freed."""
    if array.dtype == dtype:
        return array
    converted = array.astype(dtype)
    converted.block_until_ready()
    array.delete()
    return converted
