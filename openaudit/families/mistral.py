"""Mistral (``MistralForCausalLM``): Llama's tensors, GQA, no biases, sliding-window attention.

Defaults are transformers' ``MistralConfig`` (note ``sliding_window`` 4096 when absent and None when
the config says null, as Mistral-7B-v0.3 does). The window applies to every layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from openaudit.families import _decoder
from openaudit.families._decoder import DecoderConfig
from openaudit.families._decoder import (  # noqa: F401 - the family's interface, shared by the layout
    expected_tensors,
    non_embedding_parameter_count,
    parameter_count,
    parameter_counts,
)
from openaudit.families._hf import ConfigReader

NAME = "mistral"
MODEL_TYPES = ("mistral",)
ARCHITECTURES = ("MistralForCausalLM", "MistralModel")
GGUF_ARCHITECTURES: tuple[str, ...] = ()  # llama.cpp writes Mistral as "llama"

HF_KEYS: tuple[str, ...] = (*_decoder.DECODER_KEYS, "hidden_act", "sliding_window")

DEFAULTS: Mapping[str, Any] = {
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": None,
    "max_position_embeddings": 4096 * 32,
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
    window = reader.optional_int("sliding_window", 4096)
    if not common["layer_types"]:
        common["layer_types"] = _decoder.window_types(common["num_layers"], window)
    return Config(**common, activation=reader.str("hidden_act", "silu"), sliding_window=window)
