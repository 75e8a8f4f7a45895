"""Qwen3 (``Qwen3ForCausalLM``): Llama's tensors plus an RMSNorm on each query and key head.

``q_norm``/``k_norm`` have head_dim weights and act per head before RoPE ("unlike olmo, only on the
head dim" in transformers). No biases unless attention_bias; explicit head_dim (default 128). The
sliding-window rule is Qwen2's. Defaults are transformers' ``Qwen3Config``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

from openaudit.families import _decoder, qwen2
from openaudit.families._decoder import DecoderConfig
from openaudit.families._decoder import (  # noqa: F401 - the family's interface, shared by the layout
    expected_tensors,
    non_embedding_parameter_count,
    parameter_count,
    parameter_counts,
)
from openaudit.families._hf import ConfigReader
from openaudit.inspect.tensors import TensorRecord

NAME = "qwen3"
MODEL_TYPES = ("qwen3",)
ARCHITECTURES = ("Qwen3ForCausalLM", "Qwen3Model")
GGUF_ARCHITECTURES = ("qwen3",)

HF_KEYS: tuple[str, ...] = (*qwen2.HF_KEYS, "attention_bias")

DEFAULTS: Mapping[str, Any] = {
    "vocab_size": 151936,
    "hidden_size": 4096,
    "intermediate_size": 22016,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "head_dim": 128,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
}


@dataclass(frozen=True)
class Config(DecoderConfig):
    family: ClassVar[str] = NAME


def config_from_hf(config: Mapping[str, Any]) -> Config:
    reader = ConfigReader(config, HF_KEYS)
    common = _decoder.read_common(reader, DEFAULTS)
    window = qwen2.read_window(reader, common)
    bias = reader.bool("attention_bias", False)
    return Config(
        **common,
        activation=reader.str("hidden_act", "silu"),
        qkv_bias=bias,
        o_bias=bias,
        qk_norm="head",
        sliding_window=window,
    )


def config_from_gguf(metadata: Mapping[str, Any], tensors: Sequence[TensorRecord] = ()) -> Config:
    return Config(**_decoder.gguf_common(metadata, tensors), qk_norm="head")
