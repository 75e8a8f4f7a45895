"""Qwen2 and Qwen2.5 (``Qwen2ForCausalLM``): Llama's tensors with a bias on q, k and v (never on o).

The biases are hard-coded in transformers' ``Qwen2Attention`` (no config key). A sliding window is
used only when ``use_sliding_window`` is true, and then on layers from ``max_window_layers`` on.
Defaults are transformers' ``Qwen2Config``.
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
from openaudit.families._hf import MAX_LAYERS, ConfigReader
from openaudit.inspect.tensors import TensorRecord

NAME = "qwen2"
MODEL_TYPES = ("qwen2",)
ARCHITECTURES = ("Qwen2ForCausalLM", "Qwen2Model")
GGUF_ARCHITECTURES = ("qwen2",)

HF_KEYS: tuple[str, ...] = (
    *_decoder.DECODER_KEYS,
    "hidden_act",
    "use_sliding_window",
    "sliding_window",
    "max_window_layers",
)

DEFAULTS: Mapping[str, Any] = {
    "vocab_size": 151936,
    "hidden_size": 4096,
    "intermediate_size": 22016,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "head_dim": None,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
}


@dataclass(frozen=True)
class Config(DecoderConfig):
    family: ClassVar[str] = NAME


def read_window(reader: ConfigReader, common: dict[str, Any]) -> int | None:
    """The window in force (None unless use_sliding_window), filling layer_types when absent."""
    window = reader.optional_int("sliding_window", 4096) if reader.bool("use_sliding_window", False) else None
    first = reader.int("max_window_layers", 28, minimum=0, maximum=MAX_LAYERS)
    if not common["layer_types"]:
        common["layer_types"] = _decoder.window_types(common["num_layers"], window, first_sliding=first)
    return window


def config_from_hf(config: Mapping[str, Any]) -> Config:
    reader = ConfigReader(config, HF_KEYS)
    common = _decoder.read_common(reader, DEFAULTS)
    window = read_window(reader, common)
    return Config(**common, activation=reader.str("hidden_act", "silu"), qkv_bias=True, sliding_window=window)


def config_from_gguf(metadata: Mapping[str, Any], tensors: Sequence[TensorRecord] = ()) -> Config:
    return Config(**_decoder.gguf_common(metadata, tensors), qkv_bias=True)
