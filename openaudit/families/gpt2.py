"""GPT-2 (``GPT2LMHeadModel``): learned positions, pre-LayerNorm blocks, Conv1D projections.

Conv1D stores its weight as (in, out), the transpose of ``nn.Linear``: ``c_attn`` is (d, 3d) holding
[q | k | v] along columns, ``c_fc`` (d, inner), ``c_proj`` (inner, d). The output head is tied to
``wte``. The released ``openai-community/gpt2`` checkpoint has no prefix (``h.0.attn.c_attn.weight``);
checkpoints saved by transformers prefix ``transformer.`` and may add a tied ``lm_head.weight``. Each
block may store a causal-mask buffer ``attn.bias`` (1, 1, n_positions, n_positions) and a scalar
``attn.masked_bias``. Attention scores are divided by sqrt(head_dim) (``scale_attn_weights``) and, if
``scale_attn_by_inverse_layer_idx``, by (layer index + 1). Defaults are transformers' ``GPT2Config``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from openaudit.families import _hf
from openaudit.families._hf import ConfigReader
from openaudit.families.spec import ConfigError, ParameterCounts, TensorSpec, buffer, parameter

NAME = "gpt2"
MODEL_TYPES = ("gpt2",)
ARCHITECTURES = ("GPT2LMHeadModel", "GPT2Model")
GGUF_ARCHITECTURES: tuple[str, ...] = ()

HF_KEYS: tuple[str, ...] = (
    *_hf.COMMON_KEYS,
    "vocab_size",
    "n_positions",
    "n_embd",
    "n_layer",
    "n_head",
    "n_inner",
    "activation_function",
    "layer_norm_epsilon",
    "scale_attn_weights",
    "scale_attn_by_inverse_layer_idx",
    "reorder_and_upcast_attn",
)


@dataclass(frozen=True)
class Config:
    family: ClassVar[str] = NAME

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int = 3072
    activation: str = "gelu_new"
    layer_norm_epsilon: float = 1e-5
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    reorder_and_upcast_attn: bool = False
    tie_word_embeddings: bool = True
    lm_head: bool = True
    bos_token_ids: tuple[int, ...] = ()
    eos_token_ids: tuple[int, ...] = ()
    declared_dtype: str | None = None
    architectures: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ConfigError(f"config.json: n_embd {self.n_embd} is not divisible by {self.n_head} heads")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


def config_from_hf(config: Mapping[str, Any]) -> Config:
    reader = ConfigReader(config, HF_KEYS)
    embd = reader.int("n_embd", 768)
    architectures = reader.architectures()
    return Config(
        vocab_size=reader.int("vocab_size", 50257, maximum=_hf.MAX_VOCAB),
        n_positions=reader.int("n_positions", 1024, maximum=_hf.MAX_POSITIONS),
        n_embd=embd,
        n_layer=reader.int("n_layer", 12, maximum=_hf.MAX_LAYERS),
        n_head=reader.int("n_head", 12, maximum=_hf.MAX_HEADS),
        n_inner=reader.int("n_inner", 4 * embd),  # transformers: n_inner None means 4 * n_embd
        activation=reader.str("activation_function", "gelu_new"),
        layer_norm_epsilon=reader.float("layer_norm_epsilon", 1e-5),
        scale_attn_weights=reader.bool("scale_attn_weights", True),
        scale_attn_by_inverse_layer_idx=reader.bool("scale_attn_by_inverse_layer_idx", False),
        reorder_and_upcast_attn=reader.bool("reorder_and_upcast_attn", False),
        tie_word_embeddings=reader.bool("tie_word_embeddings", True),
        lm_head=_hf.has_lm_head(architectures),
        bos_token_ids=reader.token_ids("bos_token_id"),
        eos_token_ids=reader.token_ids("eos_token_id"),
        declared_dtype=_hf.declared_dtype(reader),
        architectures=architectures,
    )


def expected_tensors(config: Config) -> tuple[TensorSpec, ...]:
    d, inner, positions = config.n_embd, config.n_inner, config.n_positions
    tied = ("lm_head.weight",) if config.lm_head and config.tie_word_embeddings else ()
    specs = [parameter("wte.weight", config.vocab_size, d, aliases=tied), parameter("wpe.weight", positions, d)]
    for index in range(config.n_layer):
        block = f"h.{index}"
        specs += [
            parameter(f"{block}.ln_1.weight", d),
            parameter(f"{block}.ln_1.bias", d),
            buffer(f"{block}.attn.bias", 1, 1, positions, positions),
            buffer(f"{block}.attn.masked_bias"),
            parameter(f"{block}.attn.c_attn.weight", d, 3 * d),
            parameter(f"{block}.attn.c_attn.bias", 3 * d),
            parameter(f"{block}.attn.c_proj.weight", d, d),
            parameter(f"{block}.attn.c_proj.bias", d),
            parameter(f"{block}.ln_2.weight", d),
            parameter(f"{block}.ln_2.bias", d),
            parameter(f"{block}.mlp.c_fc.weight", d, inner),
            parameter(f"{block}.mlp.c_fc.bias", inner),
            parameter(f"{block}.mlp.c_proj.weight", inner, d),
            parameter(f"{block}.mlp.c_proj.bias", d),
        ]
    specs += [parameter("ln_f.weight", d), parameter("ln_f.bias", d)]
    if config.lm_head and not config.tie_word_embeddings:
        specs.append(parameter("lm_head.weight", config.vocab_size, d))
    return tuple(specs)


def parameter_counts(config: Config) -> ParameterCounts:
    d, inner = config.n_embd, config.n_inner
    block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * inner + inner) + (inner * d + d)
    embedding = config.vocab_size * d + config.n_positions * d
    if config.lm_head and not config.tie_word_embeddings:
        embedding += config.vocab_size * d
    total = config.n_layer * block + 2 * d + embedding
    return ParameterCounts(total, embedding, total - embedding, total, total)


def parameter_count(config: Config) -> int:
    return parameter_counts(config).total


def non_embedding_parameter_count(config: Config) -> int:
    return parameter_counts(config).non_embedding
