"""The decoder-only families that share Llama's checkpoint layout (``model.layers.N.self_attn.q_proj``…).

llama, mistral, mixtral, qwen2, qwen3, gemma, gemma2, gemma3, phi3 and olmo2 differ only in flags held
by ``DecoderConfig``: biases, q/k norms, where the RMSNorms sit, fused projections, experts, and the
numbers a forward pass needs (eps, rope, softcaps, query scaling, the Gemma ``1 + w`` norm). One tensor
layout and one formula serve them all; each family module only maps its config.json onto these flags.

Forward-pass conventions recorded here (from the transformers modelling files):
- attention logits are ``(q · k) * query_scale``, then ``cap * tanh(logits / cap)`` when
  ``attn_logit_softcapping`` is set; grouped-query head j reads kv head ``j // (heads / kv_heads)``;
- RoPE is rotate-half (not interleaved) over the first ``rotary_dim`` features of each head, base
  ``rope_theta`` (``rope_local_theta`` on sliding layers when set, without scaling);
- RMSNorm is ``x / sqrt(mean(x^2) + eps) * (norm_weight_offset + w)``, computed in float32;
- the MLP is ``down(act(gate(x)) * up(x))``; a fused ``gate_up_proj`` holds [gate; up] along rows and a
  fused ``qkv_proj`` holds [q; k; v];
- a mixture of experts takes softmax router probabilities over all experts, keeps the top
  ``num_experts_per_tok`` and renormalises them when ``moe_renormalize``;
- token embeddings are multiplied by ``embedding_multiplier`` (Gemma: sqrt(hidden), rounded to the
  activation dtype); final logits are soft-capped by ``final_logit_softcapping`` when set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

from openaudit.families import _hf
from openaudit.families._hf import ConfigReader, RopeScaling
from openaudit.families.spec import ConfigError, ParameterCounts, TensorSpec, buffer, parameter
from openaudit.inspect.tensors import TensorRecord

FULL = "full_attention"
SLIDING = "sliding_attention"

# Where the RMSNorms of a layer sit.
PRE_NORM = "pre"  # input_layernorm, post_attention_layernorm (before the MLP): Llama
SANDWICH_NORM = "sandwich"  # + post_attention/pre_feedforward/post_feedforward: Gemma 2 and 3
POST_NORM = "post"  # post_attention_layernorm, post_feedforward_layernorm on sub-layer outputs: OLMo 2


@dataclass(frozen=True)
class DecoderConfig:
    """Every hyper-parameter of a Llama-layout decoder; family modules subclass it to name it."""

    family: ClassVar[str] = "decoder"

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    activation: str = "silu"
    rms_norm_eps: float = 1e-6
    norm_weight_offset: float = 0.0  # Gemma's RMSNorm multiplies by (1 + w)
    norm_layout: str = PRE_NORM
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: str | None = None  # "head": over head_dim (Qwen3, Gemma 3); "full": over all heads (OLMo 2)
    fused_qkv: bool = False  # Phi-3 qkv_proj
    fused_gate_up: bool = False  # Phi-3 gate_up_proj
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    rope_local_theta: float | None = None  # Gemma 3 sliding layers
    partial_rotary_factor: float = 1.0
    max_position_embeddings: int = 2048
    sliding_window: int | None = None
    layer_types: tuple[str, ...] = ()
    query_scale: float = 0.0  # 0 means head_dim ** -0.5 (filled in __post_init__)
    attn_logit_softcapping: float | None = None
    final_logit_softcapping: float | None = None
    embedding_multiplier: float = 1.0
    num_experts: int = 0
    num_experts_per_tok: int = 0
    moe_renormalize: bool = True
    tie_word_embeddings: bool = False
    lm_head: bool = True  # False for a bare ``*Model`` checkpoint without the output head
    bos_token_ids: tuple[int, ...] = ()
    eos_token_ids: tuple[int, ...] = ()
    pad_token_ids: tuple[int, ...] = ()
    declared_dtype: str | None = None
    architectures: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(
                f"config.json: {self.num_heads} attention heads cannot be shared by {self.num_kv_heads} kv heads"
            )
        if not self.layer_types:
            object.__setattr__(self, "layer_types", (FULL,) * self.num_layers)
        if len(self.layer_types) != self.num_layers:
            raise ConfigError("config.json: layer_types does not list one type per layer")
        if self.query_scale == 0.0:
            object.__setattr__(self, "query_scale", self.head_dim**-0.5)
        if self.num_experts:
            if not 1 <= self.num_experts_per_tok <= self.num_experts:
                raise ConfigError("config.json: experts per token must be between 1 and the number of experts")
            if self.num_layers * self.num_experts > _hf.MAX_EXPERT_SLOTS:
                raise ConfigError("config.json: too many experts across layers")

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.partial_rotary_factor)

    @property
    def has_output_head(self) -> bool:
        """A separate ``lm_head.weight`` is a parameter (not tied to the input embedding)."""
        return self.lm_head and not self.tie_word_embeddings


# ---------------------------------------------------------------------------------------------- tensors


def expected_tensors(config: DecoderConfig) -> tuple[TensorSpec, ...]:
    d, ff = config.hidden_size, config.intermediate_size
    tied_alias = ("lm_head.weight",) if config.lm_head and config.tie_word_embeddings else ()
    specs: list[TensorSpec] = [parameter("model.embed_tokens.weight", config.vocab_size, d, aliases=tied_alias)]
    for index in range(config.num_layers):
        layer = f"model.layers.{index}"
        specs.extend(_layer_norms(config, layer, before_mlp=False))
        specs.extend(_attention(config, f"{layer}.self_attn"))
        specs.extend(_layer_norms(config, layer, before_mlp=True))
        if config.num_experts:
            moe = f"{layer}.block_sparse_moe"
            specs.append(parameter(f"{moe}.gate.weight", config.num_experts, d))
            for expert in range(config.num_experts):
                prefix = f"{moe}.experts.{expert}"
                specs.append(parameter(f"{prefix}.w1.weight", ff, d))
                specs.append(parameter(f"{prefix}.w2.weight", d, ff))
                specs.append(parameter(f"{prefix}.w3.weight", ff, d))
        elif config.fused_gate_up:
            specs.append(parameter(f"{layer}.mlp.gate_up_proj.weight", 2 * ff, d))
            specs.append(parameter(f"{layer}.mlp.down_proj.weight", d, ff))
        else:
            for name, shape in (("gate_proj", (ff, d)), ("up_proj", (ff, d)), ("down_proj", (d, ff))):
                specs.append(parameter(f"{layer}.mlp.{name}.weight", *shape))
                if config.mlp_bias:
                    specs.append(parameter(f"{layer}.mlp.{name}.bias", shape[0]))
        specs.extend(_layer_norms(config, layer, after_mlp=True))
        # Checkpoints converted with older transformers stored the rotary frequencies per layer.
        specs.append(buffer(f"{layer}.self_attn.rotary_emb.inv_freq", config.rotary_dim // 2))
    specs.append(parameter("model.norm.weight", d))
    specs.append(buffer("model.rotary_emb.inv_freq", config.rotary_dim // 2))
    if config.has_output_head:
        specs.append(parameter("lm_head.weight", config.vocab_size, d))
    return tuple(specs)


def _attention(config: DecoderConfig, prefix: str) -> list[TensorSpec]:
    d, q, kv = config.hidden_size, config.q_size, config.kv_size
    specs: list[TensorSpec] = []
    if config.fused_qkv:
        specs.append(parameter(f"{prefix}.qkv_proj.weight", q + 2 * kv, d))
        if config.qkv_bias:
            specs.append(parameter(f"{prefix}.qkv_proj.bias", q + 2 * kv))
    else:
        for name, rows in (("q_proj", q), ("k_proj", kv), ("v_proj", kv)):
            specs.append(parameter(f"{prefix}.{name}.weight", rows, d))
            if config.qkv_bias:
                specs.append(parameter(f"{prefix}.{name}.bias", rows))
    specs.append(parameter(f"{prefix}.o_proj.weight", d, q))
    if config.o_bias:
        specs.append(parameter(f"{prefix}.o_proj.bias", d))
    if config.qk_norm == "head":
        specs.append(parameter(f"{prefix}.q_norm.weight", config.head_dim))
        specs.append(parameter(f"{prefix}.k_norm.weight", config.head_dim))
    elif config.qk_norm == "full":
        specs.append(parameter(f"{prefix}.q_norm.weight", q))
        specs.append(parameter(f"{prefix}.k_norm.weight", kv))
    return specs


def _layer_norms(
    config: DecoderConfig, layer: str, *, before_mlp: bool = False, after_mlp: bool = False
) -> list[TensorSpec]:
    d = config.hidden_size
    names: tuple[str, ...]
    if after_mlp:
        names = ("post_feedforward_layernorm",) if config.norm_layout in (SANDWICH_NORM, POST_NORM) else ()
    elif before_mlp:
        names = {
            PRE_NORM: ("post_attention_layernorm",),
            SANDWICH_NORM: ("post_attention_layernorm", "pre_feedforward_layernorm"),
            POST_NORM: ("post_attention_layernorm",),
        }[config.norm_layout]
    else:
        names = () if config.norm_layout == POST_NORM else ("input_layernorm",)
    return [parameter(f"{layer}.{name}.weight", d) for name in names]


# ---------------------------------------------------------------------------------------------- counts


def parameter_counts(config: DecoderConfig) -> ParameterCounts:
    """The counts by formula (kept independent of ``expected_tensors``; the tests check they agree)."""
    d, ff, q, kv = config.hidden_size, config.intermediate_size, config.q_size, config.kv_size
    attention = d * q + 2 * d * kv + q * d
    if config.qkv_bias:
        attention += q + 2 * kv
    if config.o_bias:
        attention += d
    attention += {None: 0, "head": 2 * config.head_dim, "full": q + kv}[config.qk_norm]
    expert = 3 * d * ff + (2 * ff + d if config.mlp_bias else 0)
    norms = {PRE_NORM: 2, SANDWICH_NORM: 4, POST_NORM: 2}[config.norm_layout] * d
    router = d * config.num_experts

    def layers(experts: int) -> int:
        return config.num_layers * (attention + norms + router + experts * expert)

    embedding = config.vocab_size * d * (2 if config.has_output_head else 1)
    final_norm = d
    total = layers(config.num_experts or 1) + embedding + final_norm
    if not config.num_experts:
        return ParameterCounts(total, embedding, total - embedding, total, total)
    return ParameterCounts(
        total=total,
        embedding=embedding,
        non_embedding=total - embedding,
        active=layers(config.num_experts_per_tok) + embedding + final_norm,
        one_expert_path=layers(1) + embedding + final_norm,
    )


# ---------------------------------------------------------------------------------------------- config.json


# Keys every Llama-layout family reads the same way.
DECODER_KEYS: tuple[str, ...] = (
    *_hf.COMMON_KEYS,
    *_hf.ROPE_KEYS,
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "max_position_embeddings",
    "rms_norm_eps",
    "layer_types",
)


def read_common(reader: ConfigReader, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The fields every decoder family reads, with that family's transformers defaults.

    ``defaults`` holds the family's config-class defaults under the config.json key names.
    """
    hidden = reader.int("hidden_size", defaults["hidden_size"])
    heads = reader.int("num_attention_heads", defaults["num_attention_heads"], maximum=_hf.MAX_HEADS)
    # transformers: num_key_value_heads None means multi-head attention.
    kv_heads = reader.int("num_key_value_heads", defaults.get("num_key_value_heads") or heads, maximum=_hf.MAX_HEADS)
    default_head_dim = defaults.get("head_dim")
    if default_head_dim is None and not reader.has("head_dim"):
        # transformers: head_dim = hidden_size // num_attention_heads, which must divide evenly.
        if hidden % heads:
            raise ConfigError(f"config.json: hidden_size {hidden} is not divisible by {heads} heads")
        default_head_dim = hidden // heads
    layers = reader.int("num_hidden_layers", defaults["num_hidden_layers"], maximum=_hf.MAX_LAYERS)
    theta, scaling = _hf.read_rope(reader, defaults["rope_theta"])
    architectures = reader.architectures()
    return dict(
        vocab_size=reader.int("vocab_size", defaults["vocab_size"], maximum=_hf.MAX_VOCAB),
        hidden_size=hidden,
        intermediate_size=reader.int("intermediate_size", defaults["intermediate_size"]),
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=reader.int("head_dim", default_head_dim),
        rms_norm_eps=reader.float("rms_norm_eps", defaults["rms_norm_eps"]),
        rope_theta=theta,
        rope_scaling=scaling,
        max_position_embeddings=reader.int(
            "max_position_embeddings", defaults["max_position_embeddings"], maximum=_hf.MAX_POSITIONS
        ),
        tie_word_embeddings=reader.bool("tie_word_embeddings", defaults.get("tie_word_embeddings", False)),
        lm_head=_hf.has_lm_head(architectures),
        layer_types=read_layer_types(reader, layers),
        bos_token_ids=reader.token_ids("bos_token_id"),
        eos_token_ids=reader.token_ids("eos_token_id"),
        pad_token_ids=reader.token_ids("pad_token_id"),
        declared_dtype=_hf.declared_dtype(reader),
        architectures=architectures,
    )


def read_layer_types(reader: ConfigReader, layers: int) -> tuple[str, ...]:
    """transformers >= 4.54 may write the attention type of every layer; empty when absent."""
    value = reader.raw("layer_types")
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) != layers or not all(v in (FULL, SLIDING) for v in value):
        raise ConfigError("config.json: layer_types must list full_attention/sliding_attention for every layer")
    return tuple(value)


def alternating_types(layers: int, pattern: int) -> tuple[str, ...]:
    """Sliding layers with a full layer every ``pattern`` (Gemma 2: 2, Gemma 3: 6); layer 0 slides."""
    return tuple(SLIDING if (index + 1) % pattern else FULL for index in range(layers))


def window_types(layers: int, window: int | None, first_sliding: int = 0) -> tuple[str, ...]:
    """Every layer from ``first_sliding`` on uses the window, if there is one."""
    if window is None:
        return (FULL,) * layers
    return tuple(SLIDING if index >= first_sliding else FULL for index in range(layers))


# ---------------------------------------------------------------------------------------------- GGUF


def gguf_common(
    metadata: Mapping[str, Any], tensors: Sequence[TensorRecord] = (), *, tied_default: bool = False
) -> dict[str, Any]:
    """The DecoderConfig fields that llama.cpp's GGUF metadata records for its architecture.

    Tying is not in the metadata: with ``tensors`` given, it is the absence of ``output.weight``.
    """
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str):
        raise ConfigError("GGUF metadata has no general.architecture")
    where = "GGUF metadata"

    def value(key: str, default: Any = None) -> Any:
        return metadata.get(f"{arch}.{key}", default)

    def integer(key: str, default: Any = None, maximum: int = _hf.MAX_WIDTH, minimum: int = 1) -> int:
        raw = value(key, default)
        if raw is None:
            raise ConfigError(f"{where}: {arch}.{key} is missing")
        return _hf.check_int(raw, f"{arch}.{key}", minimum, maximum, where)

    hidden = integer("embedding_length")
    heads = integer("attention.head_count", maximum=_hf.MAX_HEADS)
    names = {record.name: record for record in tensors}
    fields = dict(
        vocab_size=_gguf_vocab(metadata, arch, names),
        hidden_size=hidden,
        intermediate_size=integer("feed_forward_length"),
        num_layers=integer("block_count", maximum=_hf.MAX_LAYERS),
        num_heads=heads,
        num_kv_heads=integer("attention.head_count_kv", heads, maximum=_hf.MAX_HEADS),
        head_dim=integer("attention.key_length", hidden // heads),
        rms_norm_eps=_hf.check_float(value("attention.layer_norm_rms_epsilon", 1e-5), "rms eps", where),
        rope_theta=_hf.check_float(value("rope.freq_base", 10000.0), "rope.freq_base", where),
        max_position_embeddings=integer("context_length", 2048, _hf.MAX_POSITIONS),
        tie_word_embeddings=("output.weight" not in names) if names else tied_default,
    )
    scaling = value("rope.scaling.type")
    if isinstance(scaling, str) and scaling != "none":
        items: dict[str, Any] = {"rope_type": scaling}
        factor = value("rope.scaling.factor")
        if factor is not None:
            items["factor"] = _hf.check_float(factor, "rope.scaling.factor", where)
        original = value("rope.scaling.original_context_length")
        if original is not None:
            items["original_max_position_embeddings"] = _hf.check_int(
                original, "rope.scaling.original_context_length", 1, _hf.MAX_POSITIONS, where
            )
        fields["rope_scaling"] = tuple(sorted(items.items()))
    experts = value("expert_count", 0) or 0
    if experts:
        fields["num_experts"] = _hf.check_int(experts, f"{arch}.expert_count", 1, _hf.MAX_EXPERTS, where)
        fields["num_experts_per_tok"] = integer("expert_used_count", maximum=_hf.MAX_EXPERTS)
    return fields


def _gguf_vocab(metadata: Mapping[str, Any], arch: str, names: Mapping[str, TensorRecord]) -> int:
    declared = metadata.get(f"{arch}.vocab_size")
    if declared is not None:
        return _hf.check_int(declared, f"{arch}.vocab_size", 1, _hf.MAX_VOCAB, "GGUF metadata")
    tokens = metadata.get("tokenizer.ggml.tokens")
    if isinstance(tokens, (list, tuple)):
        return _hf.check_int(len(tokens), "tokenizer.ggml.tokens", 1, _hf.MAX_VOCAB, "GGUF metadata")
    embedding = names.get("token_embd.weight")
    if embedding is not None and len(embedding.shape) == 2:
        return _hf.check_int(embedding.shape[0], "token_embd.weight rows", 1, _hf.MAX_VOCAB, "GGUF metadata")
    raise ConfigError("GGUF metadata gives no vocabulary size (no vocab_size, token list or token_embd)")


def sqrt_hidden(hidden: int) -> float:
    return math.sqrt(hidden)


# The count helpers every Llama-layout family exposes (families re-export them from here).
def parameter_count(config: DecoderConfig) -> int:
    return parameter_counts(config).total


def non_embedding_parameter_count(config: DecoderConfig) -> int:
    return parameter_counts(config).non_embedding


def active_parameter_count(config: DecoderConfig) -> int:
    """Parameters one token uses: attention, router, norms, embeddings and top-k experts per layer."""
    return parameter_counts(config).active


def one_expert_path_parameter_count(config: DecoderConfig) -> int:
    """The model with a single expert per layer (router kept): Mixtral-8x7B's "7B"."""
    return parameter_counts(config).one_expert_path
