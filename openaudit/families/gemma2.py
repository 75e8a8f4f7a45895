"""Gemma 2 (``Gemma2ForCausalLM``): Gemma with sandwich norms, soft-capping and alternating windows.

Each layer has four RMSNorms (``input_layernorm``, ``post_attention_layernorm`` on the attention
output, ``pre_feedforward_layernorm``, ``post_feedforward_layernorm`` on the MLP output), all ``1 + w``.
Attention logits are scaled by ``query_pre_attn_scalar ** -0.5`` and capped by
``attn_logit_softcapping``; final logits are capped by ``final_logit_softcapping``. Even layers
(0, 2, …) use the sliding window. Defaults are transformers' ``Gemma2Config``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from openaudit.families import _decoder, gemma
from openaudit.families._decoder import SANDWICH_NORM, DecoderConfig
from openaudit.families._decoder import (  # noqa: F401 - the family's interface, shared by the layout
    expected_tensors,
    non_embedding_parameter_count,
    parameter_count,
    parameter_counts,
)
from openaudit.families._hf import ConfigReader
from openaudit.families.spec import ConfigError

NAME = "gemma2"
MODEL_TYPES = ("gemma2",)
ARCHITECTURES = ("Gemma2ForCausalLM", "Gemma2Model")
GGUF_ARCHITECTURES: tuple[str, ...] = ()  # the query scaling is not in llama.cpp's metadata

HF_KEYS: tuple[str, ...] = (
    *_decoder.DECODER_KEYS,
    "hidden_activation",
    "attention_bias",
    "query_pre_attn_scalar",
    "sliding_window",
    "attn_logit_softcapping",
    "final_logit_softcapping",
)

DEFAULTS: Mapping[str, Any] = {
    "vocab_size": 256000,
    "hidden_size": 2304,
    "intermediate_size": 9216,
    "num_hidden_layers": 26,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
}


@dataclass(frozen=True)
class Config(DecoderConfig):
    family: ClassVar[str] = NAME


def query_scale(reader: ConfigReader, default: float) -> float:
    scalar = reader.float("query_pre_attn_scalar", default)
    if scalar <= 0:
        raise ConfigError("config.json: query_pre_attn_scalar must be positive")
    return scalar**-0.5


def config_from_hf(config: Mapping[str, Any]) -> Config:
    reader = ConfigReader(config, HF_KEYS)
    common = _decoder.read_common(reader, DEFAULTS)
    bias = reader.bool("attention_bias", False)
    window = reader.optional_int("sliding_window", 4096)
    if not common["layer_types"]:
        common["layer_types"] = _decoder.alternating_types(common["num_layers"], 2)
    return Config(
        **common,
        **gemma.GEMMA_STYLE,
        norm_layout=SANDWICH_NORM,
        activation=reader.str("hidden_activation", "gelu_pytorch_tanh"),
        qkv_bias=bias,
        o_bias=bias,
        sliding_window=window,
        query_scale=query_scale(reader, 256),
        attn_logit_softcapping=reader.optional_float("attn_logit_softcapping", 50.0),
        final_logit_softcapping=reader.optional_float("final_logit_softcapping", 30.0),
        embedding_multiplier=_decoder.sqrt_hidden(common["hidden_size"]),
    )
