"""Grok-1 (xai-org/grok-1): its published constants, Haiku leaf names and shapes, and the arithmetic.

The constants are ``LanguageModelConfig``/``TransformerConfig`` in the release's ``run.py``; shapes
follow ``model.py``'s Haiku modules, whose ``w`` is (in, out) and whose experts are stacked on a
leading axis (8, in, out). Names are those of ``openaudit.inspect.pickle.grok_layout`` (one checkpoint
file per leaf, in sorted pytree order). The int8 checkpoint stores ``QuantizedWeight8bit(weight, scales)`` for the
seven big matrices of each layer; the scales are bookkeeping, not parameters.

Forward pass (verified against the official code, see the reference notes): embeddings times
``embedding_multiplier_scale``; per layer ``h += rms_norm_1(attn(rms_norm(h)))`` and
``h += rms_norm_3(moe(rms_norm_2(h)))``; RMSNorm multiplies by its scale directly (no ``1 + w``),
eps 1e-5 in float32; RoPE rotate-half over the whole key size, base 10000; attention logits
``q·k * attn_output_multiplier`` capped by ``max_attn_value * tanh(x / max_attn_value)``; router in
float32, softmax over all experts, top-2 gates *not* renormalised; expert
``(gelu_tanh(x @ linear) * (x @ linear_v)) @ linear_1``; output ``norm(h) @ embeddings.T *
output_multiplier_scale`` (tied).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar, Sequence

from openaudit.families import _hf
from openaudit.families.spec import ConfigError, ParameterCounts, TensorSpec, parameter
from openaudit.inspect.pickle import grok_layout
from openaudit.inspect.pickle.grok_layout import EMBEDDING, FINAL_NORM, LAYER_LEAVES
from openaudit.inspect.tensors import PARAMETER, TensorRecord

NAME = "grok1"


def ffn_size(emb_size: int, widening_factor: float) -> int:
    """``model.py``: two thirds of the widened size, rounded up to a multiple of 8."""
    size = int(widening_factor * emb_size) * 2 // 3
    return size + (8 - size) % 8


@dataclass(frozen=True)
class Config:
    family: ClassVar[str] = NAME

    vocab_size: int = 128 * 1024
    emb_size: int = 48 * 128
    key_size: int = 128
    num_q_heads: int = 48
    num_kv_heads: int = 8
    num_layers: int = 64
    widening_factor: float = 8.0
    num_experts: int = 8
    num_selected_experts: int = 2
    attn_output_multiplier: float = 0.08838834764831845
    embedding_multiplier_scale: float = 78.38367176906169
    output_multiplier_scale: float = 0.5773502691896257
    max_attn_value: float = 30.0
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    norm_weight_offset: float = 0.0
    activation: str = "gelu_tanh"
    moe_renormalize: bool = False
    tie_word_embeddings: bool = True
    sequence_len: int = 8192
    pad_token: int = 0
    eos_token: int = 2

    def __post_init__(self) -> None:
        if self.num_q_heads % self.num_kv_heads:
            raise ConfigError(f"{self.num_q_heads} query heads cannot share {self.num_kv_heads} kv heads")
        if not 1 <= self.num_selected_experts <= self.num_experts:
            raise ConfigError("experts per token must be between 1 and the number of experts")

    @property
    def ffn_size(self) -> int:
        return ffn_size(self.emb_size, self.widening_factor)


# The released model (run.py at xai-org/grok-1 7050ed2).
GROK1 = Config()


def leaf_shapes(config: Config) -> dict[str, tuple[int, ...]]:
    """The shape of each per-layer leaf (``LAYER_LEAVES`` names), Haiku order (in, out)."""
    d, ff, experts = config.emb_size, config.ffn_size, config.num_experts
    q, kv = config.num_q_heads * config.key_size, config.num_kv_heads * config.key_size
    shapes = {
        "moe/linear/w": (experts, d, ff),
        "moe/linear_1/w": (experts, ff, d),
        "moe/linear_v/w": (experts, d, ff),
        "multi_head_attention/key/w": (d, kv),
        "multi_head_attention/linear/w": (q, d),
        "multi_head_attention/query/w": (d, q),
        "multi_head_attention/value/w": (d, kv),
        "rms_norm/scale": (d,),
        "rms_norm_1/scale": (d,),
        "rms_norm_2/scale": (d,),
        "rms_norm_3/scale": (d,),
        "router/w": (d, experts),
    }
    assert tuple(shapes) == LAYER_LEAVES
    return shapes


def expected_tensors(config: Config) -> tuple[TensorSpec, ...]:
    """Every leaf in checkpoint file order (``grok_layout.leaf_paths``)."""
    layer_shapes = leaf_shapes(config)
    specs = []
    for path in grok_layout.leaf_paths(config.num_layers):
        if path == EMBEDDING:
            shape: tuple[int, ...] = (config.vocab_size, config.emb_size)
        elif path == FINAL_NORM:
            shape = (config.emb_size,)
        else:
            shape = layer_shapes[path.split("/", 2)[2]]
        specs.append(parameter(path, *shape))
    return tuple(specs)


def parameter_counts(config: Config) -> ParameterCounts:
    d, ff = config.emb_size, config.ffn_size
    q, kv = config.num_q_heads * config.key_size, config.num_kv_heads * config.key_size
    attention = d * q + 2 * d * kv + q * d
    expert = 3 * d * ff
    shared = attention + d * config.num_experts + 4 * d  # attention, router, four norms

    def with_experts(count: int) -> int:
        return config.num_layers * (shared + count * expert) + embedding + d

    embedding = config.vocab_size * d  # tied: one matrix in and out
    total = with_experts(config.num_experts)
    return ParameterCounts(
        total=total,
        embedding=embedding,
        non_embedding=total - embedding,
        active=with_experts(config.num_selected_experts),
        one_expert_path=with_experts(1),
    )


def parameter_count(config: Config) -> int:
    return parameter_counts(config).total


def non_embedding_parameter_count(config: Config) -> int:
    """Total less the embedding; the final norm stays in (314,879,514,624 for Grok-1)."""
    return parameter_counts(config).non_embedding


def layers_parameter_count(config: Config) -> int:
    """The decoder layers alone (314,879,508,480 for Grok-1: the README's "314B")."""
    counts = parameter_counts(config)
    return counts.total - counts.embedding - config.emb_size


def active_parameter_count(config: Config) -> int:
    return parameter_counts(config).active


def one_expert_path_parameter_count(config: Config) -> int:
    return parameter_counts(config).one_expert_path


def config_from_tensors(records: Sequence[TensorRecord], key_size: int = GROK1.key_size) -> Config:
    """A Grok-shaped config read off a checkpoint's leaf shapes (the number of heads needs ``key_size``).

    The multipliers stay Grok-1's: a checkpoint records shapes, not constants.
    """
    shapes = {record.name: record.shape for record in records if record.role == PARAMETER}
    layers = grok_layout.layers_for_leaf_count(len(shapes))
    if layers is None or EMBEDDING not in shapes:
        raise ConfigError("the tensors do not have the Grok-1 checkpoint layout")
    try:
        vocab, d = shapes[EMBEDDING]
        experts, d_in, ff = shapes["transformer/decoder_layer_0/moe/linear/w"]
        q = shapes["transformer/decoder_layer_0/multi_head_attention/query/w"][1]
        kv = shapes["transformer/decoder_layer_0/multi_head_attention/key/w"][1]
    except (KeyError, ValueError, IndexError):
        raise ConfigError("the Grok-1 leaves do not have the expected shapes") from None
    if q % key_size or kv % key_size or d_in != d:
        raise ConfigError(f"the Grok-1 attention widths are not multiples of key_size {key_size}")
    widening = _widening_for(d, ff)
    return replace(
        GROK1,
        vocab_size=_hf.check_int(vocab, "embedding rows", 1, _hf.MAX_VOCAB, "checkpoint"),
        emb_size=_hf.check_int(d, "embedding width", 1, _hf.MAX_WIDTH, "checkpoint"),
        key_size=key_size,
        num_q_heads=q // key_size,
        num_kv_heads=kv // key_size,
        num_layers=layers,
        widening_factor=widening,
        num_experts=_hf.check_int(experts, "experts", 1, _hf.MAX_EXPERTS, "checkpoint"),
        num_selected_experts=min(GROK1.num_selected_experts, experts),
        attn_output_multiplier=key_size**-0.5,
    )


def _widening_for(d: int, ff: int) -> float:
    """A widening factor whose ``ffn_size`` gives ``ff`` (ff * 3 / 2 / d, checked by recomputing)."""
    for candidate in (ff * 3 / (2 * d), (ff * 3 + 2) / (2 * d), GROK1.widening_factor):
        if ffn_size(d, candidate) == ff:
            return candidate
    raise ConfigError(f"no widening factor gives an expert width of {ff} for width {d}")
