"""The contract between a family's forward pass and the code that loads, shards and streams weights.

A forward pass is split into ``embed`` → ``layer`` × N → ``head`` so that a streamed run can hold one
layer's weights at a time, and every function is pure: ``f(config, params, inputs) -> outputs`` with the
parameters as a flat mapping of arrays. Names are the family's canonical tensor names
(``openaudit.inspect.tensor_names.canonical``): the global tensors by full name, a layer's tensors by the name
*after* its prefix, so the same compiled function serves every layer of the same kind.

Shapes are in names: ``tokens_BxT`` (int32), ``x_BxTxD`` (activations), ``logits_BxTxV``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, Mapping, Protocol, Sequence

Array = Any  # a jax.Array (kept abstract so this module does not import jax)
Params = Mapping[str, Array]


@dataclass(frozen=True)
class LayerSlot:
    """One layer: the prefix of its tensors' canonical names and its static kind.

    ``kind`` is hashable and static under ``jax.jit``: layers of the same kind (e.g. Gemma 2's sliding
    and global layers are two kinds) share one compiled function.
    """

    prefix: str
    kind: Hashable = None


class ForwardModel(Protocol):
    """What each module in ``openaudit.run.models`` provides (module-level functions)."""

    FAMILIES: tuple[str, ...]  # family names (openaudit.families) this forward pass serves

    def layers(self, config: Any) -> tuple[LayerSlot, ...]: ...

    def global_names(self, config: Any) -> tuple[str, ...]:
        """Canonical names of the tensors ``embed``/``head`` need (tied embeddings appear once)."""

    def layer_names(self, config: Any, kind: Hashable) -> tuple[str, ...]:
        """Names (after the layer prefix) of one layer's tensors; optional tensors (biases) may be absent."""

    def prepare(self, config: Any, tokens_BxT: Array) -> Any:
        """Per-sequence inputs every layer needs (positions, masks), as a pytree."""

    def embed(self, config: Any, params: Params, tokens_BxT: Array) -> Array: ...

    def layer(self, config: Any, params: Params, x_BxTxD: Array, context: Any, kind: Hashable) -> Array: ...

    def head(self, config: Any, params: Params, x_BxTxD: Array) -> Array:
        """Logits (decoders) or the final hidden states / MLM logits (encoders)."""


def forward(model: ForwardModel, config: Any, params: Params, tokens_BxT: Array) -> Array:
    """The whole forward pass with every weight in ``params`` (full canonical names)."""
    context = model.prepare(config, tokens_BxT)
    x = model.embed(config, params, tokens_BxT)
    for slot in model.layers(config):
        layer_params = {name[len(slot.prefix):]: value for name, value in params.items() if name.startswith(slot.prefix)}
        x = model.layer(config, layer_params, x, context, slot.kind)
    return model.head(config, params, x)


def split_params(model: ForwardModel, config: Any, names: Sequence[str]) -> tuple[set[str], list[set[str]]]:
    """Partition canonical names into the global set and one set per layer (for streaming)."""
    slots = model.layers(config)
    per_layer: list[set[str]] = [set() for _ in slots]
    global_set: set[str] = set()
    for name in names:
        for index, slot in enumerate(slots):
            if name.startswith(slot.prefix):
                per_layer[index].add(name)
                break
        else:
            global_set.add(name)
    return global_set, per_layer
