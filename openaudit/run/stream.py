"""Running a forward pass layer by layer, with every weight resident or streamed under a memory budget.

Both modes run the same compiled pieces: ``embed``, one ``layer`` function per layer *kind* (layers of a
kind share a compiled function because their parameter names after the layer prefix are the same), and
``head``, whose logits are gathered onto every device so that process 0 holds them whole. Only where
the weights come from differs, so a streamed run gives the in-memory run's logits.

Streamed (``streamed=True``): the global tensors ``embed`` reads are loaded, the sequences embedded and
those tensors freed, except those ``head`` reads too when they fit the budget beside two layers; then for each layer its weights are loaded, the
layer run on every sequence, and the weights deleted, while one background thread loads the next
layer (double buffering: at most two layers' weights are resident, plus activations); last, the head's
tensors. Which global tensors ``embed`` and ``head`` read is found by tracing them abstractly
(``jax.eval_shape``) with a mapping that records the names looked up.

Several token sequences (the probe twice for the determinism check, a reference's ids) go through the
same loaded weights, so a streamed run reads each weight once however many sequences it checks.
"""

from __future__ import annotations

import inspect
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Mapping, Sequence

import jax
import numpy as np

from openaudit.run.loader import Entry, LoadPlan, Loader
from openaudit.run.sharding import replicated


@dataclass(frozen=True)
class Program:
    """The jitted pieces of one model: ``embed``, ``prepare``, ``layer(kind)`` and ``head``."""

    embed: Callable
    prepare: Callable
    head: Callable
    layer_functions: Mapping[Hashable, Callable]
    mesh: Any

    def layer(self, kind: Hashable) -> Callable:
        return self.layer_functions[kind]


_PROGRAMS: dict[tuple, Program] = {}


def compile_program(model, config, mesh, compute_dtype: np.dtype) -> Program:
    """jit each piece once; ``head``'s and ``prepare``'s results are replicated on every device.

    Programs are kept per (model, config, mesh, dtype), so a second run of the same model reuses the
    compiled functions (a new ``jax.jit`` object would compile again)."""
    try:
        key = (model.__name__, config, mesh, np.dtype(compute_dtype).name)
        cached = _PROGRAMS.get(key)
    except TypeError:  # an unhashable config: compile afresh
        key, cached = None, None
    if cached is not None:
        return cached
    program = _compile(model, config, mesh, compute_dtype)
    if key is not None:
        if len(_PROGRAMS) >= 8:
            _PROGRAMS.pop(next(iter(_PROGRAMS)))
        _PROGRAMS[key] = program
    return program


def _compile(model, config, mesh, compute_dtype: np.dtype) -> Program:
    embed_kwargs = {"dtype": compute_dtype} if "dtype" in inspect.signature(model.embed).parameters else {}
    everywhere = replicated(mesh)

    def embed(params, tokens, token_types):
        types = {} if token_types is None else {"token_types_BxT": token_types}  # BERT's segments
        return model.embed(config, params, tokens, **embed_kwargs, **types)

    def make_layer(kind: Hashable) -> Callable:
        return jax.jit(lambda params, x, context: model.layer(config, params, x, context, kind))

    kinds = {slot.kind for slot in model.layers(config)}
    return Program(
        embed=jax.jit(embed),
        prepare=jax.jit(lambda tokens: model.prepare(config, tokens), out_shardings=everywhere),
        head=jax.jit(lambda params, x: model.head(config, params, x), out_shardings=everywhere),
        layer_functions={kind: make_layer(kind) for kind in kinds},
        mesh=mesh,
    )


class _Recorder(dict):
    """A parameter mapping that remembers which names were read."""

    def __init__(self, items):
        super().__init__(items)
        self.used: set[str] = set()

    def __getitem__(self, key):
        value = super().__getitem__(key)
        self.used.add(key)
        return value

    def get(self, key, default=None):
        if key in self.keys():
            self.used.add(key)
        return super().get(key, default)


def globals_used(model, config, entries: Sequence[Entry], compute_dtype: np.dtype, sequence: int = 2) -> tuple[set[str], set[str]]:
    """(names ``embed`` reads, names ``head`` reads) among the global ``entries``, from abstract traces."""
    names = [entry.name for entry in entries]
    structs = [jax.ShapeDtypeStruct(entry.shape, entry.dtype) for entry in entries]
    tokens = jax.ShapeDtypeStruct((1, sequence), np.int32)
    embed_kwargs = {"dtype": compute_dtype} if "dtype" in inspect.signature(model.embed).parameters else {}
    recorded: dict[str, set[str]] = {}

    def embed(tokens_BxT, *arrays):
        params = _Recorder(zip(names, arrays))
        out = model.embed(config, params, tokens_BxT, **embed_kwargs)
        recorded["embed"] = params.used
        return out

    hidden = jax.eval_shape(embed, tokens, *structs)

    def head(x, *arrays):
        params = _Recorder(zip(names, arrays))
        out = model.head(config, params, x)
        recorded["head"] = params.used
        return out

    jax.eval_shape(head, hidden, *structs)
    return set(recorded["embed"]), set(recorded["head"])


@dataclass
class StreamStats:
    """What a run did: ``wait_seconds`` is time spent blocked on loading (prefetch hides the rest)."""

    mode: str
    layers: int = 0
    load_seconds: float = 0.0
    wait_seconds: float = 0.0
    compute_seconds: float = 0.0
    peak_resident_weight_bytes: int = 0


def global_array(mesh, tokens: np.ndarray) -> jax.Array:
    """Host tokens as an array replicated over the whole mesh (every process passes the same ids)."""
    tokens = np.ascontiguousarray(tokens, dtype=np.int32)
    return jax.make_array_from_callback(tokens.shape, replicated(mesh), lambda index: tokens[index])


def host_copy(array: jax.Array) -> np.ndarray:
    """A replicated array's value on this process (every process holds it whole)."""
    return np.asarray(array.addressable_data(0))


def accepts_token_types(model) -> bool:
    return "token_types_BxT" in inspect.signature(model.embed).parameters


def run_forward(program: Program, plan: LoadPlan, loader: Loader, sequences: Sequence[np.ndarray], *,
                streamed: bool, embed_names: set[str], head_names: set[str], prefetch: bool = True,
                token_types: Sequence[np.ndarray | None] | None = None, budget: int | None = None
                ) -> tuple[list[np.ndarray], StreamStats]:
    """Logits (or the head's output) of every (1, T) token sequence, as host arrays. ``token_types``
    (one per sequence, or None) are passed to an ``embed`` that takes them (BERT's segment ids).

    Streamed, a tensor both ``embed`` and ``head`` read (a tied embedding) stays resident through the
    layers when it fits ``budget`` beside two layers, else it is freed after ``embed`` and read again
    for ``head``: memory kept within the budget at the cost of reading it twice."""
    stats = StreamStats("streamed" if streamed else "in-memory")
    tokens = [global_array(program.mesh, ids) for ids in sequences]
    types = [None if t is None else global_array(program.mesh, t) for t in (token_types or [None] * len(tokens))]
    contexts = [program.prepare(t) for t in tokens]
    by_name = {entry.name: entry for entry in plan.global_entries}
    embed_entries = [by_name[name] for name in sorted(embed_names)]
    resident: dict[str, jax.Array] = {}
    started = time.perf_counter()

    def load(entries: Sequence[Entry]) -> dict[str, jax.Array]:
        began = time.perf_counter()
        arrays = loader.load(entries)
        stats.load_seconds += time.perf_counter() - began
        return arrays

    layers_all: list[dict[str, jax.Array]] = []
    try:
        if streamed:
            resident.update(load(embed_entries))
        else:
            resident.update(load(plan.global_entries))
            for layer in plan.layer_entries:
                layers_all.append(load(layer))
        xs = [program.embed({n: resident[n] for n in embed_names}, t, kinds) for t, kinds in zip(tokens, types)]
        if streamed:
            shared = embed_names & head_names
            shared_bytes = sum(by_name[n].nbytes for n in shared)
            keep = shared if budget is None or shared_bytes + 2 * plan.largest_layer_bytes <= budget else set()
            embed_only = [by_name[n] for n in embed_names - keep]
            jax.block_until_ready(xs)
            loader.free({entry.name: resident.pop(entry.name) for entry in embed_only})

        count = len(plan.layer_entries)
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="openaudit-prefetch") if streamed and prefetch else None
        try:
            pending = pool.submit(load, plan.layer_entries[0]) if pool is not None and count else None
            for index in range(count):
                entries = plan.layer_entries[index]
                if not streamed:
                    arrays = layers_all[index]
                else:
                    waited = time.perf_counter()
                    arrays = pending.result() if pending is not None else load(entries)
                    stats.wait_seconds += time.perf_counter() - waited
                    if pool is not None and index + 1 < count:
                        pending = pool.submit(load, plan.layer_entries[index + 1])
                prefix = plan.prefixes[index]
                params = {name[len(prefix):]: array for name, array in arrays.items()}
                function = program.layer(plan.kinds[index])
                xs = [function(params, x, context) for x, context in zip(xs, contexts)]
                if streamed:
                    jax.block_until_ready(xs)  # the layer's weights may be freed only once it has run
                    loader.free(arrays)
                stats.layers += 1
        finally:
            if pool is not None:
                pool.shutdown(wait=True)

        if streamed:
            missing = [by_name[n] for n in sorted(head_names) if n not in resident]
            resident.update(load(missing))
        outputs = [program.head({n: resident[n] for n in head_names}, x) for x in xs]
        results = [host_copy(out) for out in outputs]
    finally:
        for arrays in layers_all:
            loader.free(arrays)
        loader.free(resident)
    stats.compute_seconds = time.perf_counter() - started - stats.wait_seconds - (0.0 if streamed else stats.load_seconds)
    stats.peak_resident_weight_bytes = loader.peak_resident_bytes
    return results, stats
