"""Gemma 3, text part (``Gemma3ForCausalLM``, and ``text_config`` of ``Gemma3ForConditionalGeneration``).

Gemma 2's sandwich norms and ``1 + w`` RMSNorms, plus per-head q/k RMSNorms (also ``1 + w``), no
soft-capping by default, and five sliding layers for every full one (layer i slides unless
(i + 1) % sliding_window_pattern == 0). Full layers use ``rope_theta`` with ``rope_scaling``; sliding
layers use ``rope_local_base_freq`` unscaled. Defaults are transformers' ``Gemma3TextConfig``: the
multimodal configs (gemma-3-4b and up) give only a few text keys, so vocab_size 262208, 8 heads, 4 kv
heads and head_dim 256 come from these defaults.

Multimodal checkpoints name the text tensors ``language_model.model.*`` (transformers 4.50) or
``model.language_model.*`` (4.52 on); the vision tower and projector are outside this family
(``MULTIMODAL_PREFIXES``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from openaudit.families import _decoder, _hf, gemma, gemma2
from openaudit.families._decoder import SANDWICH_NORM, DecoderConfig
from openaudit.families._decoder import (  # noqa: F401 - the family's interface, shared by the layout
    expected_tensors,
    non_embedding_parameter_count,
    parameter_count,
    parameter_counts,
)
from openaudit.families._hf import ConfigReader
from openaudit.families.spec import ConfigError

NAME = "gemma3"
MODEL_TYPES = ("gemma3_text", "gemma3")
ARCHITECTURES = ("Gemma3ForCausalLM", "Gemma3ForConditionalGeneration", "Gemma3TextModel")
GGUF_ARCHITECTURES: tuple[str, ...] = ()  # the query scaling is not in llama.cpp's metadata

# Keys of the text config (top level for Gemma3ForCausalLM, under text_config otherwise).
HF_KEYS: tuple[str, ...] = (
    *_decoder.DECODER_KEYS,
    "hidden_activation",
    "attention_bias",
    "query_pre_attn_scalar",
    "sliding_window",
    "sliding_window_pattern",
    "rope_local_base_freq",
    "attn_logit_softcapping",
    "final_logit_softcapping",
)
# Keys of the multimodal wrapper.
HF_TOP_KEYS: tuple[str, ...] = ("model_type", "text_config", "architectures", "torch_dtype", "dtype")

MULTIMODAL_PREFIXES: tuple[str, ...] = ("vision_tower.", "multi_modal_projector.")

DEFAULTS: Mapping[str, Any] = {
    "vocab_size": 262208,
    "hidden_size": 2304,
    "intermediate_size": 9216,
    "num_hidden_layers": 26,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1_000_000.0,
    "tie_word_embeddings": True,
}


@dataclass(frozen=True)
class Config(DecoderConfig):
    family: ClassVar[str] = NAME


def is_multimodal(config: Mapping[str, Any]) -> bool:
    return isinstance(config, Mapping) and (config.get("model_type") == "gemma3" or "text_config" in config)


def config_from_hf(config: Mapping[str, Any]) -> Config:
    """The text model of a Gemma 3 config.json, multimodal or not."""
    text: Mapping[str, Any] = config
    top_dtype = None
    if is_multimodal(config):
        top = ConfigReader(config, HF_TOP_KEYS)
        text = top.mapping("text_config") or {}
        top_dtype = _hf.declared_dtype(top)
    reader = ConfigReader(text, HF_KEYS, "config.json text_config" if text is not config else "config.json")
    common = _decoder.read_common(reader, DEFAULTS)
    common["declared_dtype"] = common["declared_dtype"] or top_dtype
    bias = reader.bool("attention_bias", False)
    local_theta = reader.float("rope_local_base_freq", 10_000.0)
    parameters = reader.mapping("rope_parameters")
    if parameters is not None and "full_attention" in parameters:
        # transformers 5 keeps one rope dict per attention type.
        full, sliding = parameters.get("full_attention"), parameters.get("sliding_attention")
        if not isinstance(full, Mapping) or not isinstance(sliding, Mapping):
            raise ConfigError("config.json: rope_parameters needs full_attention and sliding_attention objects")
        common["rope_theta"] = _hf.check_float(full.get("rope_theta", DEFAULTS["rope_theta"]), "rope_theta")
        common["rope_scaling"] = _hf.freeze_rope(full, "rope_parameters.full_attention")
        local_theta = _hf.check_float(sliding.get("rope_theta", local_theta), "rope_local_base_freq")
    if not common["layer_types"]:
        pattern = reader.int("sliding_window_pattern", 6, maximum=_hf.MAX_LAYERS)
        common["layer_types"] = _decoder.alternating_types(common["num_layers"], pattern)
    return Config(
        **common,
        **gemma.GEMMA_STYLE,
        norm_layout=SANDWICH_NORM,
        qk_norm="head",
        activation=reader.str("hidden_activation", "gelu_pytorch_tanh"),
        qkv_bias=bias,
        o_bias=bias,
        rope_local_theta=local_theta,
        sliding_window=reader.optional_int("sliding_window", 4096),
        query_scale=gemma2.query_scale(reader, 256),
        attn_logit_softcapping=reader.optional_float("attn_logit_softcapping", None),
        final_logit_softcapping=reader.optional_float("final_logit_softcapping", None),
        embedding_multiplier=_decoder.sqrt_hidden(common["hidden_size"]),
    )
