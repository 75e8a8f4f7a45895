"""Llama (``LlamaForCausalLM``): pre-norm decoder, SwiGLU MLP, RoPE, optional GQA.

Defaults are transformers' ``LlamaConfig``; attention_bias puts a bias on q, k, v *and* o.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

from openaudit.families import _decoder
from openaudit.families._decoder import DecoderConfig
from openaudit.families._decoder import (  # noqa: F401 - the family's interface, shared by the layout
    expected_tensors,
    non_embedding_parameter_count,
    parameter_count,
    parameter_counts,
)
from openaudit.families._hf import ConfigReader
from openaudit.families.spec import ConfigError
from openaudit.inspect.tensors import TensorRecord

NAME = "llama"
MODEL_TYPES = ("llama",)
ARCHITECTURES = ("LlamaForCausalLM", "LlamaModel")
GGUF_ARCHITECTURES = ("llama",)

HF_KEYS: tuple[str, ...] = (
    *_decoder.DECODER_KEYS,
    "hidden_act",
    "attention_bias",
    "mlp_bias",
)

DEFAULTS: Mapping[str, Any] = {
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": None,
    "head_dim": None,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6,
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
        qkv_bias=bias,
        o_bias=bias,
        mlp_bias=reader.bool("mlp_bias", False),
    )


def config_from_gguf(metadata: Mapping[str, Any], tensors: Sequence[TensorRecord] = ()) -> Config:
    """A Llama from llama.cpp metadata (``general.architecture`` "llama", no experts).

    llama.cpp also writes Mistral models as "llama": the tensors are the same.
    """
    fields = _decoder.gguf_common(metadata, tensors)
    if fields.get("num_experts"):
        raise ConfigError("GGUF metadata declares experts: this is a Mixtral-style model, not a dense Llama")
    return Config(**fields)
