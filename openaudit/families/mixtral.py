"""Mixtral (``MixtralForCausalLM``): Mistral's attention with a sparse mixture of SwiGLU experts.

Checkpoint names (transformers 4.x, the format on the Hub): ``block_sparse_moe.gate.weight`` (E, d)
and ``block_sparse_moe.experts.{e}.w1/w3`` (ff, d) and ``w2`` (d, ff); w1 is the gate, w3 the up and
w2 the down projection. Routing: softmax over all experts, top-k, weights renormalised to sum to 1.
Defaults are transformers' ``MixtralConfig`` (rope_theta 1e6, rms eps 1e-5, no window).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

from openaudit.families import _decoder, _hf
from openaudit.families._decoder import DecoderConfig
from openaudit.families._decoder import (  # noqa: F401 - the family's interface, shared by the layout
    active_parameter_count,
    expected_tensors,
    non_embedding_parameter_count,
    one_expert_path_parameter_count,
    parameter_count,
    parameter_counts,
)
from openaudit.families._hf import ConfigReader
from openaudit.families.spec import ConfigError
from openaudit.inspect.tensors import TensorRecord

NAME = "mixtral"
MODEL_TYPES = ("mixtral",)
ARCHITECTURES = ("MixtralForCausalLM", "MixtralModel")
GGUF_ARCHITECTURES: tuple[str, ...] = ()  # llama.cpp writes Mixtral as "llama" with expert_count

HF_KEYS: tuple[str, ...] = (
    *_decoder.DECODER_KEYS,
    "hidden_act",
    "sliding_window",
    "num_local_experts",
    "num_experts_per_tok",
)

DEFAULTS: Mapping[str, Any] = {
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": None,
    "max_position_embeddings": 4096 * 32,
    "rms_norm_eps": 1e-5,
    "rope_theta": 1e6,
    "tie_word_embeddings": False,
}


@dataclass(frozen=True)
class Config(DecoderConfig):
    family: ClassVar[str] = NAME


def config_from_hf(config: Mapping[str, Any]) -> Config:
    reader = ConfigReader(config, HF_KEYS)
    common = _decoder.read_common(reader, DEFAULTS)
    window = reader.optional_int("sliding_window", None)
    if not common["layer_types"]:
        common["layer_types"] = _decoder.window_types(common["num_layers"], window)
    return Config(
        **common,
        activation=reader.str("hidden_act", "silu"),
        sliding_window=window,
        num_experts=reader.int("num_local_experts", 8, maximum=_hf.MAX_EXPERTS),
        num_experts_per_tok=reader.int("num_experts_per_tok", 2, maximum=_hf.MAX_EXPERTS),
        moe_renormalize=True,
    )


def config_from_gguf(metadata: Mapping[str, Any], tensors: Sequence[TensorRecord] = ()) -> Config:
    """A Mixtral from llama.cpp metadata ("llama" with ``llama.expert_count``)."""
    fields = _decoder.gguf_common(metadata, tensors)
    if not fields.get("num_experts"):
        raise ConfigError("GGUF metadata declares no experts: this is a dense Llama, not a Mixtral")
    return Config(**fields, moe_renormalize=True)
