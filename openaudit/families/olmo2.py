"""OLMo 2 (``Olmo2ForCausalLM``): post-norm layers and RMSNorms over the whole q and k projections.

A layer is ``h += post_attention_layernorm(attn(h))``; ``h += post_feedforward_layernorm(mlp(h))``
(no input_layernorm). ``q_norm`` has heads * head_dim weights and ``k_norm`` kv_heads * head_dim: they
normalise the flat projections before the split into heads. Defaults are transformers' ``Olmo2Config``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

from openaudit.families import _decoder
from openaudit.families._decoder import POST_NORM, DecoderConfig
from openaudit.families._decoder import (  # noqa: F401 - the family's interface, shared by the layout
    expected_tensors,
    non_embedding_parameter_count,
    parameter_count,
    parameter_counts,
)
from openaudit.families._hf import ConfigReader
from openaudit.inspect.tensors import TensorRecord

NAME = "olmo2"
MODEL_TYPES = ("olmo2",)
ARCHITECTURES = ("Olmo2ForCausalLM", "Olmo2Model")
GGUF_ARCHITECTURES = ("olmo2",)

HF_KEYS: tuple[str, ...] = (*_decoder.DECODER_KEYS, "hidden_act", "attention_bias")

DEFAULTS: Mapping[str, Any] = {
    "vocab_size": 50304,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": None,
    "head_dim": None,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
}


@dataclass(frozen=True)
class Config(DecoderConfig):
    family: ClassVar[str] = NAME


def config_from_hf(config: Mapping[str, Any]) -> Config:
    reader = ConfigReader(config, HF_KEYS)
    bias = reader.bool("attention_bias", False)
    return Config(
        **_decoder.read_common(reader, DEFAULTS),
        activation=reader.str("hidden_act", "silu"),
        norm_layout=POST_NORM,
        qk_norm="full",
        qkv_bias=bias,
        o_bias=bias,
    )


def config_from_gguf(metadata: Mapping[str, Any], tensors: Sequence[TensorRecord] = ()) -> Config:
    return Config(**_decoder.gguf_common(metadata, tensors), norm_layout=POST_NORM, qk_norm="full")
