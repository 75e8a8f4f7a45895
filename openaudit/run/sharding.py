"""Where each weight lives: one mesh over every device, and a table of rules choosing each tensor's axis.

The mesh has a single axis, ``model``, over all devices of all processes. A probe run is one sequence
(batch 1), so a data-parallel axis would hold nothing; every device instead holds a slice of every
large weight (tensor parallelism), which is what lets a release larger than one device run at all.

Each weight is split along its *natural* axis: attention heads for the q/k/v and output projections,
experts for stacked expert weights, the MLP width for the feed-forward matrices, the vocabulary for
embeddings and output heads, and the hidden dimension for anything else. The rules below are data: a
pattern on the canonical tensor name and the tensor axes to try, in order. The first axis whose length
divides by the device count is split; when none does, the tensor is replicated (so is every 1-D
tensor: norms and biases are small). A quantization scale (``<name>:scales``) follows its weight's rule,
checked against its own shape: Grok-1's block-row scales (8 rows) split with their weight's 8 blocks,
a broadcast scale axis of length 1 stays whole.

Sharding never changes what is computed, only where: the forward functions are ordinary ``jax.jit``
programs and XLA's partitioner inserts the collectives, so logits agree across device counts up to
float32 summation order (the tests compare 1 and 8 devices at 1e-5).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXIS = "model"
SCALES_SUFFIX = ":scales"


@dataclass(frozen=True)
class ShardRule:
    """Tensors whose canonical name ends with a match of ``pattern`` are split along the first of
    ``axes`` (tensor axes, negative from the end) that divides by the device count."""

    pattern: str
    axes: tuple[int, ...]
    why: str


# Layouts: nn.Linear is (out, in); GPT-2's Conv1D and Grok-1's Haiku ``w`` are (in, out).
RULES: tuple[ShardRule, ...] = (
    # Llama-layout decoders (q/k/v rows are heads x head_dim; o_proj's columns are the heads)
    ShardRule(r"self_attn\.(q|k|v|qkv)_proj\.weight", (0,), "attention heads (output rows)"),
    ShardRule(r"self_attn\.o_proj\.weight", (1,), "attention heads (input columns)"),
    ShardRule(r"mlp\.(gate|up|gate_up)_proj\.weight", (0,), "MLP width (output rows)"),
    ShardRule(r"mlp\.down_proj\.weight", (1,), "MLP width (input columns)"),
    ShardRule(r"experts\.\d+\.(w1|w3)\.weight", (0,), "expert MLP width (output rows)"),
    ShardRule(r"experts\.\d+\.w2\.weight", (1,), "expert MLP width (input columns)"),
    ShardRule(r"block_sparse_moe\.gate\.weight", (), "router: small, needed whole by every device"),
    # GPT-NeoX
    ShardRule(r"attention\.query_key_value\.weight", (0,), "attention heads (output rows)"),
    ShardRule(r"attention\.dense\.weight", (1,), "attention heads (input columns)"),
    ShardRule(r"mlp\.dense_h_to_4h\.weight", (0,), "MLP width (output rows)"),
    ShardRule(r"mlp\.dense_4h_to_h\.weight", (1,), "MLP width (input columns)"),
    # BERT (attention.output.dense before the MLP's output.dense, which the same suffix would match)
    ShardRule(r"attention\.self\.(query|key|value)\.weight", (0,), "attention heads (output rows)"),
    ShardRule(r"attention\.output\.dense\.weight", (1,), "attention heads (input columns)"),
    ShardRule(r"intermediate\.dense\.weight", (0,), "MLP width (output rows)"),
    ShardRule(r"output\.dense\.weight", (1,), "MLP width (input columns)"),
    # GPT-2 Conv1D (in, out)
    ShardRule(r"attn\.c_attn\.weight", (1,), "attention heads (output columns)"),
    ShardRule(r"attn\.c_proj\.weight", (0,), "attention heads (input rows)"),
    ShardRule(r"mlp\.c_fc\.weight", (1,), "MLP width (output columns)"),
    ShardRule(r"mlp\.c_proj\.weight", (0,), "MLP width (input rows)"),
    # Grok-1 Haiku leaves (in, out); experts stacked first
    ShardRule(r"multi_head_attention/(query|key|value)/w", (1,), "attention heads (output columns)"),
    ShardRule(r"multi_head_attention/linear/w", (0,), "attention heads (input rows)"),
    ShardRule(r"moe/linear(_v|_1)?/w", (0, -1), "experts (stacked on the first axis)"),
    ShardRule(r"router/w", (), "router: small, needed whole by every device"),
    # Embeddings and output heads: the vocabulary, else the hidden dimension
    ShardRule(r"(embed_tokens|wte|word_embeddings|embed_in|lm_head|embed_out)\.weight", (0, 1), "vocabulary"),
    ShardRule(r"in_out_embed/embeddings", (0, 1), "vocabulary"),
    ShardRule(r"(wpe|position_embeddings|token_type_embeddings)\.weight", (1,), "hidden dimension"),
)
# Any other tensor of two or more axes: the hidden dimension (last axis), else the first.
DEFAULT_AXES: tuple[int, ...] = (-1, 0)

_COMPILED = tuple((re.compile(f"(^|[./])(?:{rule.pattern})$"), rule) for rule in RULES)


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh over ``devices`` (default: every device of every process, in jax's order)."""
    chosen = list(jax.devices() if devices is None else devices)
    return Mesh(np.array(chosen, dtype=object), (MESH_AXIS,))


def rule_for(name: str) -> ShardRule | None:
    """The first rule whose pattern ends ``name`` (a scale uses its weight's rule), or None."""
    base = name[: -len(SCALES_SUFFIX)] if name.endswith(SCALES_SUFFIX) else name
    for pattern, rule in _COMPILED:
        if pattern.search(base):
            return rule
    return None


def split_axis(name: str, shape: Sequence[int], device_count: int) -> int | None:
    """The tensor axis split across the mesh, or None when the tensor is replicated."""
    if device_count <= 1 or len(shape) < 2:
        return None
    rule = rule_for(name)
    candidates: Iterable[int] = rule.axes if rule is not None else DEFAULT_AXES
    for axis in candidates:
        axis = axis % len(shape)
        if shape[axis] >= device_count and shape[axis] % device_count == 0:
            return axis
    return None


def partition_spec(name: str, shape: Sequence[int], device_count: int) -> PartitionSpec:
    axis = split_axis(name, shape, device_count)
    if axis is None:
        return PartitionSpec()
    return PartitionSpec(*([None] * axis + [MESH_AXIS]))


def sharding_for(mesh: Mesh, name: str, shape: Sequence[int]) -> NamedSharding:
    """The placement of tensor ``name`` of ``shape`` on ``mesh``."""
    return NamedSharding(mesh, partition_spec(name, shape, mesh.size))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (tokens, masks, logits gathered for the probes)."""
    return NamedSharding(mesh, PartitionSpec())
