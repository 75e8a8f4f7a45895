"""GPT-NeoX and Pythia (``GPTNeoXForCausalLM``): LayerNorms with biases, fused qkv, partial RoPE.

``attention.query_key_value`` (3d, d) is laid out per head: its output, viewed as
(heads, 3 * head_size), holds [q_h | k_h | v_h] for each head h (not [all q | all k | all v]). RoPE
(rotate-half) covers the first ``rotary_ndims = int(head_size * rotary_pct)`` features of each head.
With ``use_parallel_residual`` a layer is ``h + attn(ln1(h)) + mlp(ln2(h))``, otherwise sequential.
The output head ``embed_out`` is untied by default. Older checkpoints store per-layer buffers
``attention.bias`` (causal mask), ``attention.masked_bias`` and ``attention.rotary_emb.inv_freq``.
Defaults are transformers' ``GPTNeoXConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from openaudit.families import _hf
from openaudit.families._hf import ConfigReader, RopeScaling
from openaudit.families.spec import ConfigError, ParameterCounts, TensorSpec, buffer, parameter

NAME = "gpt_neox"
MODEL_TYPES = ("gpt_neox",)
ARCHITECTURES = ("GPTNeoXForCausalLM", "GPTNeoXModel")
GGUF_ARCHITECTURES: tuple[str, ...] = ()

HF_KEYS: tuple[str, ...] = (
    *_hf.COMMON_KEYS,
    *_hf.ROPE_KEYS,
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "rotary_pct",
    "partial_rotary_factor",
    "rotary_emb_base",
    "max_position_embeddings",
    "layer_norm_eps",
    "use_parallel_residual",
    "attention_bias",
)


@dataclass(frozen=True)
class Config:
    family: ClassVar[str] = NAME

    vocab_size: int = 50432
    hidden_size: int = 6144
    num_layers: int = 44
    num_heads: int = 64
    intermediate_size: int = 24576
    activation: str = "gelu"
    rotary_pct: float = 0.25
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    max_position_embeddings: int = 2048
    layer_norm_eps: float = 1e-5
    use_parallel_residual: bool = True
    attention_bias: bool = True
    tie_word_embeddings: bool = False
    lm_head: bool = True
    bos_token_ids: tuple[int, ...] = ()
    eos_token_ids: tuple[int, ...] = ()
    declared_dtype: str | None = None
    architectures: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"config.json: hidden_size {self.hidden_size} is not divisible by {self.num_heads} heads")
        if not 0 < self.rotary_pct <= 1:
            raise ConfigError("config.json: rotary_pct must be in (0, 1]")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def rotary_ndims(self) -> int:
        return int(self.head_dim * self.rotary_pct)


def config_from_hf(config: Mapping[str, Any]) -> Config:
    reader = ConfigReader(config, HF_KEYS)
    # transformers 4.5x renamed rotary_pct/rotary_emb_base to partial_rotary_factor/rope_theta.
    rotary = reader.float("partial_rotary_factor", reader.float("rotary_pct", 0.25))
    # transformers 5 moves it into rope_parameters, which then wins.
    rope_parameters = reader.mapping("rope_parameters")
    if rope_parameters is not None and "partial_rotary_factor" in rope_parameters:
        rotary = _hf.check_float(rope_parameters["partial_rotary_factor"], "rope_parameters.partial_rotary_factor")
    base = reader.float("rotary_emb_base", 10000.0)
    theta, scaling = _hf.read_rope(reader, base)
    architectures = reader.architectures()
    return Config(
        vocab_size=reader.int("vocab_size", 50432, maximum=_hf.MAX_VOCAB),
        hidden_size=reader.int("hidden_size", 6144),
        num_layers=reader.int("num_hidden_layers", 44, maximum=_hf.MAX_LAYERS),
        num_heads=reader.int("num_attention_heads", 64, maximum=_hf.MAX_HEADS),
        intermediate_size=reader.int("intermediate_size", 24576),
        activation=reader.str("hidden_act", "gelu"),
        rotary_pct=rotary,
        rope_theta=theta,
        rope_scaling=scaling,
        max_position_embeddings=reader.int("max_position_embeddings", 2048, maximum=_hf.MAX_POSITIONS),
        layer_norm_eps=reader.float("layer_norm_eps", 1e-5),
        use_parallel_residual=reader.bool("use_parallel_residual", True),
        attention_bias=reader.bool("attention_bias", True),
        tie_word_embeddings=reader.bool("tie_word_embeddings", False),
        lm_head=_hf.has_lm_head(architectures),
        bos_token_ids=reader.token_ids("bos_token_id"),
        eos_token_ids=reader.token_ids("eos_token_id"),
        declared_dtype=_hf.declared_dtype(reader),
        architectures=architectures,
    )


def expected_tensors(config: Config) -> tuple[TensorSpec, ...]:
    d, ff, positions = config.hidden_size, config.intermediate_size, config.max_position_embeddings
    tied = ("embed_out.weight",) if config.lm_head and config.tie_word_embeddings else ()
    specs = [parameter("gpt_neox.embed_in.weight", config.vocab_size, d, aliases=tied)]
    for index in range(config.num_layers):
        layer = f"gpt_neox.layers.{index}"
        specs += [
            parameter(f"{layer}.input_layernorm.weight", d),
            parameter(f"{layer}.input_layernorm.bias", d),
            parameter(f"{layer}.post_attention_layernorm.weight", d),
            parameter(f"{layer}.post_attention_layernorm.bias", d),
            buffer(f"{layer}.attention.bias", 1, 1, positions, positions),
            buffer(f"{layer}.attention.masked_bias"),
            buffer(f"{layer}.attention.rotary_emb.inv_freq", config.rotary_ndims // 2),
            parameter(f"{layer}.attention.query_key_value.weight", 3 * d, d),
        ]
        if config.attention_bias:
            specs.append(parameter(f"{layer}.attention.query_key_value.bias", 3 * d))
        specs.append(parameter(f"{layer}.attention.dense.weight", d, d))
        if config.attention_bias:
            specs.append(parameter(f"{layer}.attention.dense.bias", d))
        specs += [
            parameter(f"{layer}.mlp.dense_h_to_4h.weight", ff, d),
            parameter(f"{layer}.mlp.dense_h_to_4h.bias", ff),
            parameter(f"{layer}.mlp.dense_4h_to_h.weight", d, ff),
            parameter(f"{layer}.mlp.dense_4h_to_h.bias", d),
        ]
    specs += [parameter("gpt_neox.final_layer_norm.weight", d), parameter("gpt_neox.final_layer_norm.bias", d)]
    if config.lm_head and not config.tie_word_embeddings:
        specs.append(parameter("embed_out.weight", config.vocab_size, d))
    return tuple(specs)


def parameter_counts(config: Config) -> ParameterCounts:
    d, ff = config.hidden_size, config.intermediate_size
    attention = 3 * d * d + d * d + (4 * d if config.attention_bias else 0)
    layer = 4 * d + attention + (d * ff + ff) + (ff * d + d)
    embedding = config.vocab_size * d * (2 if config.lm_head and not config.tie_word_embeddings else 1)
    total = config.num_layers * layer + 2 * d + embedding
    return ParameterCounts(total, embedding, total - embedding, total, total)


def parameter_count(config: Config) -> int:
    return parameter_counts(config).total


def non_embedding_parameter_count(config: Config) -> int:
    return parameter_counts(config).non_embedding
