"""Gemma (``GemmaForCausalLM``): Llama's tensors, tied embeddings, head_dim 256, GeGLU, ``1 + w`` norms.

Forward-pass details from transformers' modelling code: the embedding output is multiplied by
sqrt(hidden_size) rounded to the activation dtype; every RMSNorm multiplies by (1 + weight); the MLP
activation is ``hidden_activation`` or, when absent, the tanh GELU (transformers ignores the
``hidden_act: "gelu"`` that the original configs carry). Defaults are transformers' ``GemmaConfig``
(``tie_word_embeddings`` absent means tied).
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
from openaudit.inspect.tensors import TensorRecord

NAME = "gemma"
MODEL_TYPES = ("gemma",)
ARCHITECTURES = ("GemmaForCausalLM", "GemmaModel")
GGUF_ARCHITECTURES = ("gemma",)

HF_KEYS: tuple[str, ...] = (*_decoder.DECODER_KEYS, "hidden_activation", "attention_bias")

DEFAULTS: Mapping[str, Any] = {
    "vocab_size": 256000,
    "hidden_size": 3072,
    "intermediate_size": 24576,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "head_dim": 256,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
}

# What every Gemma generation shares.
GEMMA_STYLE: Mapping[str, Any] = {"norm_weight_offset": 1.0}


@dataclass(frozen=True)
class Config(DecoderConfig):
    family: ClassVar[str] = NAME


def config_from_hf(config: Mapping[str, Any]) -> Config:
    reader = ConfigReader(config, HF_KEYS)
    common = _decoder.read_common(reader, DEFAULTS)
    bias = reader.bool("attention_bias", False)
    return Config(
        **common,
        **GEMMA_STYLE,
        activation=reader.str("hidden_activation", "gelu_pytorch_tanh"),
        qkv_bias=bias,
        o_bias=bias,
        embedding_multiplier=_decoder.sqrt_hidden(common["hidden_size"]),
    )


def config_from_gguf(metadata: Mapping[str, Any], tensors: Sequence[TensorRecord] = ()) -> Config:
    fields = _decoder.gguf_common(metadata, tensors, tied_default=True)
    return Config(
        **fields,
        **GEMMA_STYLE,
        activation="gelu_pytorch_tanh",
        embedding_multiplier=_decoder.sqrt_hidden(fields["hidden_size"]),
    )
