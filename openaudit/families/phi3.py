"""Phi-3 (``Phi3ForCausalLM``): a Llama with fused ``qkv_proj`` ([q; k; v] rows) and ``gate_up_proj``.

``gate_up_proj`` holds [gate; up] along its rows: ``up * act(gate)`` feeds ``down_proj``. No biases.
head_dim is hidden / heads unless given. RoPE may be partial (``partial_rotary_factor``, Phi-4-mini) and scaled
("longrope" with short/long factor lists in the 128k models). The window applies to every layer.
Defaults are transformers' ``Phi3Config``.
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

NAME = "phi3"
MODEL_TYPES = ("phi3",)
ARCHITECTURES = ("Phi3ForCausalLM", "Phi3Model")
GGUF_ARCHITECTURES = ("phi3",)

HF_KEYS: tuple[str, ...] = (
    *_decoder.DECODER_KEYS,
    "hidden_act",
    "sliding_window",
    "partial_rotary_factor",
    "original_max_position_embeddings",
)

DEFAULTS: Mapping[str, Any] = {
    "vocab_size": 32064,
    "hidden_size": 3072,
    "intermediate_size": 8192,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": None,
    "head_dim": None,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
}


@dataclass(frozen=True)
class Config(DecoderConfig):
    family: ClassVar[str] = NAME
    original_max_position_embeddings: int = 4096


def config_from_hf(config: Mapping[str, Any]) -> Config:
    reader = ConfigReader(config, HF_KEYS)
    common = _decoder.read_common(reader, DEFAULTS)
    window = reader.optional_int("sliding_window", None)
    if not common["layer_types"]:
        common["layer_types"] = _decoder.window_types(common["num_layers"], window)
    factor = reader.float("partial_rotary_factor", 1.0)
    if not 0 < factor <= 1:
        raise ConfigError("config.json: partial_rotary_factor must be in (0, 1]")
    return Config(
        **common,
        activation=reader.str("hidden_act", "silu"),
        fused_qkv=True,
        fused_gate_up=True,
        sliding_window=window,
        partial_rotary_factor=factor,
        original_max_position_embeddings=reader.int(
            "original_max_position_embeddings", common["max_position_embeddings"], maximum=1 << 26
        ),
    )


def config_from_gguf(metadata: Mapping[str, Any], tensors: Sequence[TensorRecord] = ()) -> Config:
    return Config(**_decoder.gguf_common(metadata, tensors), fused_qkv=True, fused_gate_up=True)
