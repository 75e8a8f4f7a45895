"""Architecture families: config -> expected tensors, shapes and parameter counts; name normalisation;
the comparison with a checkpoint's tensor records; family detection.

Published counts come from the real config.json files in tests/data/configs (provenance in its
README). Tiny configs of every family are turned into tensor records and compared with themselves and
with tampered copies.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import pytest

from openaudit.families import (
    _decoder,
    bert,
    gemma,
    gemma2,
    gemma3,
    gpt2,
    gpt_neox,
    grok1,
    llama,
    mistral,
    mixtral,
    naming,
    olmo2,
    phi3,
    qwen2,
    qwen3,
    registry,
)
from openaudit.families._hf import ConfigReader
from openaudit.families.compare import ArchitectureCheck, Mismatch, compare
from openaudit.families.spec import ConfigError, TensorSpec, counted_parameters
from openaudit.inspect.pickle import grok_layout
from openaudit.inspect.tensor_names import canonical
from openaudit.inspect.tensors import BUFFER, PARAMETER, SCALE, TensorRecord

CONFIGS = Path(__file__).parent / "data" / "configs"


def load(name: str) -> dict[str, Any]:
    return json.loads((CONFIGS / f"{name}.json").read_text(encoding="utf-8"))


def records(specs: tuple[TensorSpec, ...] | list[TensorSpec], dtype: str = "BF16") -> list[TensorRecord]:
    """The records a checkpoint holding exactly the required parameters would give."""
    return [
        TensorRecord(spec.name, dtype, spec.shape, "model.safetensors")
        for spec in specs
        if spec.is_parameter and not spec.optional
    ]


def record(name: str, shape: tuple[int, ...], dtype: str = "BF16", role: str = PARAMETER, **extra: Any) -> TensorRecord:
    return TensorRecord(name, dtype, shape, "model.safetensors", role=role, **extra)


# ------------------------------------------------------------------------------------------ published


PUBLISHED = [
    # (config file, family, total, non-embedding or None)
    ("meta-llama--Llama-2-7b-hf", "llama", 6_738_415_616, 6_476_271_616),
    ("mistralai--Mistral-7B-v0.1", "mistral", 7_241_732_096, None),
    ("mistralai--Mixtral-8x7B-v0.1", "mixtral", 46_702_792_704, None),
    ("Qwen--Qwen2.5-7B", "qwen2", 7_615_616_512, 6_525_621_760),
    ("Qwen--Qwen2.5-0.5B", "qwen2", 494_032_768, 357_898_112),
    ("Qwen--Qwen3-0.6B", "qwen3", 596_049_920, 440_467_456),
    ("google--gemma-7b", "gemma", 8_537_680_896, 7_751_248_896),
    ("google--gemma-2-2b", "gemma2", 2_614_341_888, None),
    ("google--gemma-3-1b-it", "gemma3", 999_885_952, None),
    ("google--gemma-3-4b-it", "gemma3", 3_880_263_168, None),
    ("microsoft--Phi-3-mini-4k-instruct", "phi3", 3_821_079_552, None),
    ("allenai--OLMo-2-1124-7B", "olmo2", 7_298_617_344, None),
    ("openai-community--gpt2", "gpt2", 124_439_808, None),
    ("EleutherAI--pythia-160m", "gpt_neox", 162_322_944, 85_056_000),
    # The config declares BertForMaskedLM, which transformers builds without the pooler (590,592 parameters);
    # with the pooler that the released checkpoint stores it is the published 109,482,240 (BertModel).
    ("google-bert--bert-base-uncased", "bert", 108_891_648, None),
]


@pytest.mark.parametrize("name, family, total, non_embedding", PUBLISHED, ids=[row[0] for row in PUBLISHED])
def test_published_counts_from_real_configs(name: str, family: str, total: int, non_embedding: int | None) -> None:
    detection = registry.detect_from_hf_config(load(name))
    assert detection.family == family
    module = detection.module
    counts = module.parameter_counts(detection.config)
    assert counts.total == total
    assert module.parameter_count(detection.config) == total
    if non_embedding is not None:
        assert counts.non_embedding == non_embedding
        assert module.non_embedding_parameter_count(detection.config) == non_embedding
    # The formula and the tensor list are computed independently and must agree.
    assert counted_parameters(module.expected_tensors(detection.config)) == total


def test_mixtral_active_and_one_expert_path() -> None:
    config = mixtral.config_from_hf(load("mistralai--Mixtral-8x7B-v0.1"))
    assert mixtral.active_parameter_count(config) == 12_879_925_248
    assert mixtral.one_expert_path_parameter_count(config) == 7_242_780_672
    # One expert path is Mistral-7B plus the routers (32 layers x 4096 x 8).
    assert mixtral.one_expert_path_parameter_count(config) - 7_241_732_096 == 32 * 4096 * 8


def test_grok1_published_constants() -> None:
    config = grok1.GROK1
    assert (config.vocab_size, config.emb_size, config.num_layers, config.ffn_size) == (131072, 6144, 64, 32768)
    assert grok1.parameter_count(config) == 315_684_820_992
    assert grok1.layers_parameter_count(config) == 314_879_508_480
    assert grok1.non_embedding_parameter_count(config) == 314_879_508_480 + 6144  # the final norm stays in
    assert grok1.active_parameter_count(config) == 83_756_587_008
    assert grok1.one_expert_path_parameter_count(config) == 83_756_587_008 - 64 * 603_979_776
    specs = grok1.expected_tensors(config)
    assert len(specs) == 770
    assert tuple(spec.name for spec in specs) == grok_layout.leaf_paths(64)
    assert counted_parameters(specs) == 315_684_820_992
    shapes = {spec.name: spec.shape for spec in specs}
    assert shapes["language_model/in_out_embed/embeddings"] == (131072, 6144)
    assert shapes["language_model/rms_norm/scale"] == (6144,)
    assert shapes["transformer/decoder_layer_9/moe/linear/w"] == (8, 6144, 32768)
    assert shapes["transformer/decoder_layer_9/moe/linear_1/w"] == (8, 32768, 6144)
    assert shapes["transformer/decoder_layer_9/multi_head_attention/key/w"] == (6144, 1024)
    assert shapes["transformer/decoder_layer_9/multi_head_attention/linear/w"] == (6144, 6144)
    assert shapes["transformer/decoder_layer_9/router/w"] == (6144, 8)
    assert specs[-1].name == "transformer/decoder_layer_9/router/w"  # string order of layers


def test_forward_pass_hyperparameters_from_real_configs() -> None:
    llama2 = llama.config_from_hf(load("meta-llama--Llama-2-7b-hf"))
    assert (llama2.rms_norm_eps, llama2.rope_theta, llama2.head_dim, llama2.activation) == (1e-5, 10000.0, 128, "silu")
    assert llama2.norm_weight_offset == 0.0 and llama2.query_scale == 128**-0.5
    assert not llama2.tie_word_embeddings and llama2.lm_head

    g7 = gemma.config_from_hf(load("google--gemma-7b"))
    # transformers ignores hidden_act "gelu" and uses the tanh GELU; tied by default; 1 + w norms.
    assert g7.activation == "gelu_pytorch_tanh"
    assert g7.tie_word_embeddings and g7.norm_weight_offset == 1.0
    assert g7.embedding_multiplier == math.sqrt(3072)
    assert g7.q_size == 4096 and g7.hidden_size == 3072

    g2 = gemma2.config_from_hf(load("google--gemma-2-2b"))
    assert (g2.attn_logit_softcapping, g2.final_logit_softcapping, g2.sliding_window) == (50.0, 30.0, 4096)
    assert g2.query_scale == 256**-0.5
    assert g2.layer_types[:3] == ("sliding_attention", "full_attention", "sliding_attention")

    mixtral_config = mixtral.config_from_hf(load("mistralai--Mixtral-8x7B-v0.1"))
    assert (mixtral_config.num_experts, mixtral_config.num_experts_per_tok) == (8, 2)
    assert mixtral_config.moe_renormalize and mixtral_config.sliding_window is None
    assert mixtral_config.rope_theta == 1e6

    mistral_config = mistral.config_from_hf(load("mistralai--Mistral-7B-v0.1"))
    assert mistral_config.sliding_window == 4096
    assert set(mistral_config.layer_types) == {"sliding_attention"}
    assert mistral_config.eos_token_ids == (2,)

    qwen = qwen2.config_from_hf(load("Qwen--Qwen2.5-7B"))
    assert qwen.qkv_bias and not qwen.o_bias and qwen.sliding_window is None  # use_sliding_window false
    assert set(qwen.layer_types) == {"full_attention"}

    q3 = qwen3.config_from_hf(load("Qwen--Qwen3-0.6B"))
    assert q3.qk_norm == "head" and q3.head_dim == 128 and q3.q_size == 2048 and q3.tie_word_embeddings

    olmo = olmo2.config_from_hf(load("allenai--OLMo-2-1124-7B"))
    assert (olmo.norm_layout, olmo.qk_norm, olmo.rope_theta, olmo.rms_norm_eps) == ("post", "full", 500000.0, 1e-6)

    phi = phi3.config_from_hf(load("microsoft--Phi-3-mini-4k-instruct"))
    assert phi.fused_qkv and phi.fused_gate_up and phi.sliding_window == 2047 and phi.head_dim == 96

    neox = gpt_neox.config_from_hf(load("EleutherAI--pythia-160m"))
    assert (neox.rotary_ndims, neox.use_parallel_residual, neox.tie_word_embeddings) == (16, True, False)

    g = gpt2.config_from_hf(load("openai-community--gpt2"))
    assert (g.n_inner, g.activation, g.tie_word_embeddings, g.head_dim) == (3072, "gelu_new", True, 64)

    b = bert.config_from_hf(load("google-bert--bert-base-uncased"))
    assert (b.layer_norm_eps, b.type_vocab_size, b.activation) == (1e-12, 2, "gelu")
    bare = bert.config_from_hf({**load("google-bert--bert-base-uncased"), "architectures": ["BertModel"]})
    assert bert.parameter_count(bare) == 109_482_240


def test_gemma3_multimodal_text_config_takes_transformers_defaults() -> None:
    config = load("google--gemma-3-4b-it")
    detection = registry.detect_from_hf_config(config)
    text = detection.config
    assert detection.family == "gemma3"
    assert detection.ignore_prefixes == ("vision_tower.", "multi_modal_projector.")
    # Absent from text_config: Gemma3TextConfig's defaults apply.
    assert (text.vocab_size, text.num_heads, text.num_kv_heads, text.head_dim) == (262208, 8, 4, 256)
    assert (text.hidden_size, text.num_layers, text.sliding_window) == (2560, 34, 1024)
    assert text.rope_scaling == (("factor", 8.0), ("rope_type", "linear"))
    assert (text.rope_theta, text.rope_local_theta, text.query_scale) == (1e6, 10000.0, 1 / 16)
    assert text.layer_types[:6] == ("sliding_attention",) * 5 + ("full_attention",)
    assert text.tie_word_embeddings and text.declared_dtype == "bfloat16"
    assert text.qk_norm == "head" and text.norm_layout == "sandwich"


def test_rope_parameters_of_transformers_5_are_read() -> None:
    config = dict(TINY["llama"], rope_parameters={"rope_theta": 500000.0, "rope_type": "llama3", "factor": 8.0})
    parsed = llama.config_from_hf(config)
    assert parsed.rope_theta == 500000.0
    assert parsed.rope_scaling == (("factor", 8.0), ("rope_type", "llama3"))
    # A legacy "type" key is copied to rope_type, as transformers does.
    legacy = llama.config_from_hf(dict(TINY["llama"], rope_scaling={"type": "linear", "factor": 2.0}))
    assert legacy.rope_scaling == (("factor", 2.0), ("rope_type", "linear"), ("type", "linear"))


def test_gemma3_rope_parameters_per_attention_type() -> None:
    """transformers 5 writes one rope dict per attention type for Gemma 3."""
    text = {key: value for key, value in TINY["gemma3"].items()}
    text["rope_parameters"] = {
        "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0},
        "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
    }
    config = gemma3.config_from_hf(text)
    assert (config.rope_theta, config.rope_local_theta) == (1e6, 1e4)
    assert config.rope_scaling == (("factor", 8.0), ("rope_type", "linear"))


def test_explicit_head_dim_need_not_divide_the_width() -> None:
    """Mistral-Nemo style: 5120 wide, 32 heads of 128 (heads x head_dim != hidden)."""
    config = mistral.config_from_hf(dict(TINY["mistral"], hidden_size=20, head_dim=8))
    assert (config.head_dim, config.q_size) == (8, 32)
    q_proj = mistral.expected_tensors(config)[2]
    assert (q_proj.name, q_proj.shape) == ("model.layers.0.self_attn.q_proj.weight", (32, 20))


def test_null_sliding_window_disables_the_window() -> None:
    config = mistral.config_from_hf(dict(TINY["mistral"], sliding_window=None))
    assert config.sliding_window is None and set(config.layer_types) == {"full_attention"}
    absent = {key: value for key, value in TINY["mistral"].items() if key != "sliding_window"}
    assert mistral.config_from_hf(absent).sliding_window == 4096  # MistralConfig's default


# ------------------------------------------------------------------------------------------ tiny models

BASE = {
    "vocab_size": 64,
    "hidden_size": 16,
    "intermediate_size": 40,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32,
}

TINY: dict[str, dict[str, Any]] = {
    "llama": {"model_type": "llama", "architectures": ["LlamaForCausalLM"], **BASE},
    "mistral": {"model_type": "mistral", "architectures": ["MistralForCausalLM"], **BASE, "sliding_window": 8},
    "mixtral": {
        "model_type": "mixtral",
        "architectures": ["MixtralForCausalLM"],
        **BASE,
        "num_local_experts": 4,
        "num_experts_per_tok": 2,
    },
    "qwen2": {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], **BASE, "tie_word_embeddings": True},
    "qwen3": {"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], **BASE, "head_dim": 8},
    "gemma": {"model_type": "gemma", "architectures": ["GemmaForCausalLM"], **BASE, "head_dim": 8},
    "gemma2": {"model_type": "gemma2", "architectures": ["Gemma2ForCausalLM"], **BASE, "head_dim": 8},
    "gemma3": {"model_type": "gemma3_text", "architectures": ["Gemma3ForCausalLM"], **BASE, "head_dim": 8},
    "phi3": {"model_type": "phi3", "architectures": ["Phi3ForCausalLM"], **BASE},
    "olmo2": {"model_type": "olmo2", "architectures": ["Olmo2ForCausalLM"], **BASE},
    "gpt2": {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": 64,
        "n_embd": 16,
        "n_layer": 2,
        "n_head": 4,
        "n_positions": 32,
    },
    "gpt_neox": {
        "model_type": "gpt_neox",
        "architectures": ["GPTNeoXForCausalLM"],
        **BASE,
        "rotary_pct": 0.5,
    },
    "bert": {
        "model_type": "bert",
        "architectures": ["BertForMaskedLM"],
        **{key: value for key, value in BASE.items() if key != "num_key_value_heads"},
    },
}

TINY_GROK = replace(
    grok1.GROK1,
    vocab_size=64,
    emb_size=16,
    key_size=4,
    num_q_heads=4,
    num_kv_heads=2,
    num_layers=2,
    widening_factor=3.0,  # ffn_size 32
    num_experts=4,
    num_selected_experts=2,
)

# Per family: the tensors that carry the vocabulary (shape mismatches when the config's vocab changes).
VOCAB_TENSORS = {
    "llama": {"model.embed_tokens.weight", "lm_head.weight"},
    "mistral": {"model.embed_tokens.weight", "lm_head.weight"},
    "mixtral": {"model.embed_tokens.weight", "lm_head.weight"},
    "qwen2": {"model.embed_tokens.weight"},  # tied
    "qwen3": {"model.embed_tokens.weight", "lm_head.weight"},
    "gemma": {"model.embed_tokens.weight"},
    "gemma2": {"model.embed_tokens.weight"},
    "gemma3": {"model.embed_tokens.weight"},
    "phi3": {"model.embed_tokens.weight", "lm_head.weight"},
    "olmo2": {"model.embed_tokens.weight", "lm_head.weight"},
    "gpt2": {"wte.weight"},
    "gpt_neox": {"gpt_neox.embed_in.weight", "embed_out.weight"},
    "bert": {"bert.embeddings.word_embeddings.weight"},
    "grok1": {"language_model/in_out_embed/embeddings"},
}


def tiny(family: str) -> tuple[Any, Any]:
    """(family module, config) of the tiny model of a family."""
    if family == "grok1":
        return grok1, TINY_GROK
    module = registry.FAMILIES[family]
    return module, module.config_from_hf(TINY[family])


def with_vocab(family: str, vocab: int) -> Any:
    if family == "grok1":
        return replace(TINY_GROK, vocab_size=vocab)
    return registry.FAMILIES[family].config_from_hf(dict(TINY[family], vocab_size=vocab))


FAMILY_NAMES = sorted(VOCAB_TENSORS)
_SECOND_LAYER = re.compile(r"(layers\.1\.|h\.1\.|layer\.1\.|decoder_layer_1/)")
_FIRST_LAYER = re.compile(r"(layers\.0\.|h\.0\.|layer\.0\.|decoder_layer_0/)")


def test_every_family_has_a_tiny_model() -> None:
    assert set(FAMILY_NAMES) == set(registry.FAMILIES)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_tiny_model_matches_itself_with_the_exact_count(family: str) -> None:
    module, config = tiny(family)
    specs = module.expected_tensors(config)
    total = module.parameter_count(config)
    assert counted_parameters(specs) == total
    check = compare(specs, records(specs))
    assert check == ArchitectureCheck("match", (), total, total, 0, "hf")


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_removed_layer_tensor_is_named(family: str) -> None:
    module, config = tiny(family)
    specs = module.expected_tensors(config)
    observed = records(specs)
    victim = next(item for item in observed if _SECOND_LAYER.search(item.name) and len(item.shape) == 2)
    observed.remove(victim)
    total = module.parameter_count(config)
    check = compare(specs, observed)
    assert check.status == "mismatch"
    shape = "[" + ", ".join(map(str, victim.shape)) + "]"
    assert check.mismatches == (
        Mismatch("missing", victim.name, shape, None),
        Mismatch("count", "parameters", f"{total:,}", f"{total - victim.elements:,}"),
    )


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_transposed_matrix_is_named(family: str) -> None:
    module, config = tiny(family)
    specs = module.expected_tensors(config)
    observed = records(specs)
    index = next(
        position
        for position, item in enumerate(observed)
        if _FIRST_LAYER.search(item.name) and len(item.shape) == 2 and item.shape[0] != item.shape[1]
    )
    original = observed[index]
    observed[index] = replace(original, shape=original.shape[::-1])
    rows, cols = original.shape
    check = compare(specs, observed)
    assert check.status == "mismatch"
    assert check.mismatches == (Mismatch("shape", original.name, f"[{rows}, {cols}]", f"[{cols}, {rows}]"),)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_changed_vocabulary_is_named(family: str) -> None:
    module, config = tiny(family)
    observed = records(module.expected_tensors(config))
    claimed = with_vocab(family, 65)
    check = compare(module.expected_tensors(claimed), observed)
    assert check.status == "mismatch"
    shape_mismatches = {item.tensor for item in check.mismatches if item.kind == "shape"}
    assert shape_mismatches == VOCAB_TENSORS[family]
    assert {item.kind for item in check.mismatches} == {"shape", "count"}
    assert check.expected_parameters - check.observed_parameters == 16 * len(VOCAB_TENSORS[family])


# ------------------------------------------------------------------------------------------ compare rules


def test_stored_copy_of_tied_embedding_is_a_soft_duplicate() -> None:
    module, config = tiny("qwen2")
    specs = module.expected_tensors(config)
    observed = records(specs) + [record("lm_head.weight", (64, 16))]
    check = compare(specs, observed)
    assert check.status == "match"
    assert check.mismatches == (
        Mismatch("tied-duplicate", "lm_head.weight", "tied to model.embed_tokens.weight", "[64, 16]"),
    )
    assert check.observed_parameters == check.expected_parameters == module.parameter_count(config)


def test_tied_tensor_stored_only_under_its_alias_counts_once() -> None:
    module, config = tiny("qwen2")
    specs = module.expected_tensors(config)
    observed = [item for item in records(specs) if item.name != "model.embed_tokens.weight"]
    observed.append(record("lm_head.weight", (64, 16)))
    check = compare(specs, observed)
    assert check.status == "match" and check.mismatches == ()


def test_wrongly_shaped_tied_copy_is_a_hard_mismatch() -> None:
    module, config = tiny("qwen2")
    specs = module.expected_tensors(config)
    check = compare(specs, records(specs) + [record("lm_head.weight", (65, 16))])
    assert check.status == "mismatch"
    assert Mismatch("shape", "lm_head.weight", "[64, 16]", "[65, 16]") in check.mismatches


def test_real_gpt2_checkpoint_layout_with_mask_buffers() -> None:
    """openai-community/gpt2 stores 12 attn.bias masks (F32, like parameters) and no prefix."""
    config = gpt2.config_from_hf(load("openai-community--gpt2"))
    specs = gpt2.expected_tensors(config)
    observed = records(specs, "F32") + [
        record(f"h.{index}.attn.bias", (1, 1, 1024, 1024), "F32") for index in range(12)
    ]
    assert sum(item.elements for item in observed) == 137_022_720  # the file's element count
    check = compare(specs, observed)
    assert check.status == "match" and check.mismatches == ()
    assert check.observed_parameters == 124_439_808


def test_gpt2_with_transformer_prefix_and_tied_head() -> None:
    config = gpt2.config_from_hf(TINY["gpt2"])
    specs = gpt2.expected_tensors(config)
    observed = [replace(item, name="transformer." + item.name) for item in records(specs)]
    observed.append(record("lm_head.weight", (64, 16)))
    check = compare(specs, observed)
    assert check.status == "match"
    assert [item.kind for item in check.mismatches] == ["tied-duplicate"]


def test_rotary_buffers_may_be_present_or_absent() -> None:
    module, config = tiny("llama")
    specs = module.expected_tensors(config)
    total = module.parameter_count(config)
    inv_freq = [record(f"model.layers.{i}.self_attn.rotary_emb.inv_freq", (2,), "F32", BUFFER) for i in range(2)]
    assert compare(specs, records(specs) + inv_freq) == ArchitectureCheck("match", (), total, total)
    wrong = [record("model.layers.0.self_attn.rotary_emb.inv_freq", (3,), "F32", BUFFER)]
    check = compare(specs, records(specs) + wrong)
    assert check.mismatches == (Mismatch("shape", "model.layers.0.self_attn.rotary_emb.inv_freq", "[2]", "[3]"),)


def test_unknown_buffer_is_soft_and_unknown_parameter_is_hard() -> None:
    module, config = tiny("llama")
    specs = module.expected_tensors(config)
    total = module.parameter_count(config)
    extra_buffer = record("model.layers.0.self_attn.cache", (4,), "I64", BUFFER)
    check = compare(specs, records(specs) + [extra_buffer])
    assert check.status == "match"
    assert check.mismatches == (Mismatch("extra-buffer", "model.layers.0.self_attn.cache", None, "[4]"),)
    extra = record("model.layers.0.mlp.extra.weight", (4, 4))
    check = compare(specs, records(specs) + [extra])
    assert check.status == "mismatch"
    assert check.mismatches == (
        Mismatch("unexpected", "model.layers.0.mlp.extra.weight", None, "[4, 4]"),
        Mismatch("count", "parameters", f"{total:,}", f"{total + 16:,}"),
    )


def test_parameter_stored_as_integers_is_a_dtype_role_mismatch() -> None:
    module, config = tiny("llama")
    specs = module.expected_tensors(config)
    observed = records(specs)
    observed[1] = replace(observed[1], dtype="I64", role=BUFFER)
    check = compare(specs, observed)
    assert check.status == "mismatch"
    assert check.mismatches == (Mismatch("dtype-role", observed[1].name, "parameter", "I64 buffer"),)


def test_duplicate_names_after_normalisation_are_unexpected() -> None:
    module, config = tiny("llama")
    specs = module.expected_tensors(config)
    observed = records(specs) + [record("norm.weight", (16,))]
    check = compare(specs, observed)
    assert check.status == "mismatch"
    assert Mismatch("unexpected", "norm.weight", None, "[16]") in check.mismatches


def test_grok_int8_weights_with_scales_match() -> None:
    specs = grok1.expected_tensors(TINY_GROK)
    observed = []
    for spec in specs:
        big = len(spec.shape) >= 2 and "router" not in spec.name and "embed" not in spec.name
        if big:
            scale = spec.name + grok_layout.SCALES_SUFFIX
            observed.append(record(spec.name, spec.shape, "I8", pairs_with=scale))
            observed.append(record(scale, (1, spec.shape[-1]), "BF16", SCALE, pairs_with=spec.name))
        else:
            observed.append(record(spec.name, spec.shape, "F32"))
    check = compare(specs, observed)
    total = grok1.parameter_count(TINY_GROK)
    assert check == ArchitectureCheck("match", (), total, total, ignored=2 * 7, naming="hf")
    # Without its scale, an int8 weight is integers, not a parameter.
    unscaled = [replace(item, pairs_with=None) if item.dtype == "I8" else item for item in observed]
    assert compare(specs, unscaled).hard_mismatches[0].kind == "dtype-role"


def test_grok_config_read_back_from_leaf_shapes() -> None:
    observed = records(grok1.expected_tensors(TINY_GROK), "F32")
    detection = registry.detect_from_tensors(observed, key_size=4)
    assert detection.family == "grok1"
    assert detection.config == replace(TINY_GROK, attn_output_multiplier=4**-0.5)
    assert grok1.config_from_tensors(records(grok1.expected_tensors(grok1.GROK1))) == grok1.GROK1


# ------------------------------------------------------------------------------------------ names


def test_canonical_names() -> None:
    assert canonical("model.layers.0.self_attn.q_proj.weight") == "layers.0.self_attn.q_proj.weight"
    assert canonical("transformer.h.3.attn.c_attn.weight") == "h.3.attn.c_attn.weight"
    assert canonical("gpt_neox.layers.1.mlp.dense_4h_to_h.bias") == "layers.1.mlp.dense_4h_to_h.bias"
    assert canonical("bert.embeddings.LayerNorm.gamma") == "embeddings.LayerNorm.weight"
    assert canonical("cls.predictions.transform.LayerNorm.beta") == "cls.predictions.transform.LayerNorm.bias"
    assert canonical("language_model.model.layers.2.mlp.up_proj.weight") == "layers.2.mlp.up_proj.weight"
    assert canonical("model.language_model.embed_tokens.weight") == "embed_tokens.weight"
    assert canonical("language_model.lm_head.weight") == "lm_head.weight"
    assert canonical("transformer/decoder_layer_0/router/w") == "transformer/decoder_layer_0/router/w"


def test_bert_pretraining_checkpoint_with_legacy_names_and_heads() -> None:
    """bert-base-uncased: ``bert.`` prefix, LayerNorm gamma/beta, MLM and NSP heads, tied decoder."""
    config = bert.config_from_hf(load("google-bert--bert-base-uncased"))
    specs = bert.expected_tensors(config)
    observed = []
    for spec in specs:
        if not spec.is_parameter:
            continue
        name = spec.name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        observed.append(record(name, spec.shape, "F32"))
    observed.append(record("cls.predictions.decoder.weight", (30522, 768), "F32"))
    check = compare(specs, observed)
    assert check.status == "match"
    assert check.mismatches == (
        Mismatch(
            "tied-duplicate",
            "cls.predictions.decoder.weight",
            "tied to bert.embeddings.word_embeddings.weight",
            "[30522, 768]",
        ),
    )
    heads = 30522 + 768 * 768 + 768 + 2 * 768 + 2 * 768 + 2
    assert check.observed_parameters == check.expected_parameters == 109_482_240 + heads


def test_bare_bert_model_without_prefix_matches() -> None:
    config = bert.config_from_hf(TINY["bert"])
    specs = bert.expected_tensors(config)
    observed = [replace(item, name=item.name.removeprefix("bert.")) for item in records(specs)]
    check = compare(specs, observed)
    assert check.status == "match" and check.observed_parameters == bert.parameter_count(config)


def test_gemma3_multimodal_checkpoint_sets_the_vision_tower_aside() -> None:
    config = {
        "model_type": "gemma3",
        "architectures": ["Gemma3ForConditionalGeneration"],
        "text_config": TINY["gemma3"],
    }
    detection = registry.detect_from_hf_config(config)
    specs = gemma3.expected_tensors(detection.config)
    observed = [replace(item, name=item.name.replace("model.", "language_model.model.", 1)) for item in records(specs)]
    observed += [
        record("vision_tower.vision_model.embeddings.patch_embedding.weight", (8, 3, 2, 2)),
        record("multi_modal_projector.mm_input_projection_weight", (8, 16)),
    ]
    check = registry.check_architecture(detection, observed)
    total = gemma3.parameter_count(detection.config)
    assert check == ArchitectureCheck("match", (), total, total, ignored=2, naming="hf")
    # Without the prefixes set aside, the vision tensors are unexpected.
    assert compare(specs, observed).status == "mismatch"


# ------------------------------------------------------------------------------------------ GGUF


def gguf_records(specs: tuple[TensorSpec, ...]) -> list[TensorRecord]:
    return [record(spec.name, spec.shape, "Q4_K") for spec in naming.to_gguf(specs) if not spec.optional]


def test_gguf_names_for_a_llama_layer() -> None:
    _, config = tiny("llama")
    specs = naming.to_gguf(llama.expected_tensors(config))
    names = [spec.name for spec in specs if spec.is_parameter and ".1." not in spec.name]
    assert names == [
        "token_embd.weight",
        "blk.0.attn_norm.weight",
        "blk.0.attn_q.weight",
        "blk.0.attn_k.weight",
        "blk.0.attn_v.weight",
        "blk.0.attn_output.weight",
        "blk.0.ffn_norm.weight",
        "blk.0.ffn_gate.weight",
        "blk.0.ffn_up.weight",
        "blk.0.ffn_down.weight",
        "output_norm.weight",
        "output.weight",
    ]


def test_gguf_rope_tables_are_buffers() -> None:
    module, config = tiny("llama")
    specs = module.expected_tensors(config)
    observed = gguf_records(specs) + [record("rope_freqs.weight", (2,), "F32")]
    check = compare(specs, observed)
    total = module.parameter_count(config)
    assert check == ArchitectureCheck("match", (), total, total, 0, "gguf")


def test_gguf_norm_names_depend_on_the_family() -> None:
    def layer0(module: Any, config: Any) -> set[str]:
        names = (spec.name for spec in naming.to_gguf(module.expected_tensors(config)))
        return {name for name in names if "norm" in name and ".0." in name}

    assert layer0(*tiny("gemma2")) == {
        "blk.0.attn_norm.weight",
        "blk.0.post_attention_norm.weight",
        "blk.0.ffn_norm.weight",
        "blk.0.post_ffw_norm.weight",
    }
    assert layer0(*tiny("olmo2")) == {
        "blk.0.attn_q_norm.weight",
        "blk.0.attn_k_norm.weight",
        "blk.0.post_attention_norm.weight",
        "blk.0.post_ffw_norm.weight",
    }


def test_gguf_experts_are_stacked() -> None:
    _, config = tiny("mixtral")
    shapes = {spec.name: spec.shape for spec in naming.to_gguf(mixtral.expected_tensors(config))}
    assert shapes["blk.1.ffn_gate_inp.weight"] == (4, 16)
    assert shapes["blk.1.ffn_gate_exps.weight"] == (4, 40, 16)
    assert shapes["blk.1.ffn_up_exps.weight"] == (4, 40, 16)
    assert shapes["blk.1.ffn_down_exps.weight"] == (4, 16, 40)


@pytest.mark.parametrize("family", ["llama", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3", "olmo2"])
def test_gguf_checkpoint_matches_the_hf_expectation(family: str) -> None:
    module, config = tiny(family)
    specs = module.expected_tensors(config)
    check = compare(specs, gguf_records(specs))
    total = module.parameter_count(config)
    assert check == ArchitectureCheck("match", (), total, total, 0, "gguf")
    missing = gguf_records(specs)[:-1]
    assert compare(specs, missing).mismatches[0].kind == "missing"


def gguf_metadata(arch: str, **extra: Any) -> dict[str, Any]:
    return {
        "general.architecture": arch,
        f"{arch}.embedding_length": 16,
        f"{arch}.feed_forward_length": 40,
        f"{arch}.block_count": 2,
        f"{arch}.attention.head_count": 4,
        f"{arch}.attention.head_count_kv": 2,
        f"{arch}.attention.layer_norm_rms_epsilon": 1e-5,
        f"{arch}.context_length": 32,
        "tokenizer.ggml.tokens": [f"t{i}" for i in range(64)],
        **{f"{arch}.{key}": value for key, value in extra.items()},
    }


@pytest.mark.parametrize("family, arch, extra", [
    ("llama", "llama", {}),
    ("mixtral", "llama", {"expert_count": 4, "expert_used_count": 2}),
    ("qwen2", "qwen2", {}),
    ("qwen3", "qwen3", {"attention.key_length": 8}),
    ("gemma", "gemma", {"attention.key_length": 8}),
    ("phi3", "phi3", {}),
    ("olmo2", "olmo2", {}),
])
def test_config_from_gguf_metadata(family: str, arch: str, extra: dict[str, Any]) -> None:
    module, hf_config = tiny(family)
    observed = gguf_records(module.expected_tensors(hf_config))
    detection = registry.detect_from_gguf(gguf_metadata(arch, **extra), observed)
    assert detection.family == family
    assert module.expected_tensors(detection.config) == module.expected_tensors(hf_config)
    assert registry.check_architecture(detection, observed).status == "match"


def test_gguf_vocabulary_and_tying_from_the_tensors_alone() -> None:
    metadata = gguf_metadata("qwen2")
    del metadata["tokenizer.ggml.tokens"]
    _, hf_config = tiny("qwen2")  # tied: no output.weight
    observed = gguf_records(qwen2.expected_tensors(hf_config))
    config = qwen2.config_from_gguf(metadata, observed)
    assert config.vocab_size == 64 and config.tie_word_embeddings
    with pytest.raises(ConfigError):
        qwen2.config_from_gguf(metadata)


# ------------------------------------------------------------------------------------------ registry


def test_detection_says_unknown_plainly() -> None:
    unknown = registry.detect_from_hf_config({"model_type": "falcon", "architectures": ["FalconForCausalLM"]})
    assert unknown.family is None and unknown.config is None
    assert unknown.reason.startswith("unknown architecture: model_type 'falcon'")
    empty = registry.detect_from_hf_config({})
    assert empty.family is None and "no model_type" in empty.reason
    assert registry.detect_from_hf_config(["not", "a", "mapping"]).family is None  # type: ignore[arg-type]
    port = registry.detect_from_hf_config({"model_type": "grok-1", "architectures": ["Grok1ModelForCausalLM"]})
    assert port.family is None and "third-party port" in port.reason
    gguf = registry.detect_from_gguf({"general.architecture": "mamba"})
    assert gguf.family is None and "'mamba'" in gguf.reason
    assert registry.detect_from_gguf({}).reason == "GGUF metadata has no general.architecture"


def test_detection_from_architectures_and_disagreements() -> None:
    by_class = registry.detect_from_hf_config({"architectures": ["Olmo2ForCausalLM"], **BASE})
    assert by_class.family == "olmo2" and by_class.reason == "architectures ['Olmo2ForCausalLM']"
    both = registry.detect_from_hf_config({**TINY["mistral"], "architectures": ["LlamaForCausalLM"]})
    assert both.family == "mistral" and "model_type decides" in both.reason
    gemma2_gguf = registry.detect_from_gguf({"general.architecture": "gemma2"})
    assert gemma2_gguf.family == "gemma2" and gemma2_gguf.config is None


def test_invalid_config_is_detected_but_not_parsed() -> None:
    detection = registry.detect_from_hf_config(dict(TINY["llama"], hidden_size=True))
    assert detection.family == "llama" and detection.config is None
    assert "hidden_size must be an integer" in detection.reason


def test_grok_checkpoint_from_file_names() -> None:
    names = [f"ckpt-0/tensor{index:05d}_000" for index in range(770)]
    detection = registry.detect_from_grok_checkpoint(names)
    assert (detection.family, detection.config) == ("grok1", grok1.GROK1)
    assert detection.reason == "770 leaf files: Grok-1's layout with 64 layers"
    small = registry.detect_from_grok_checkpoint([f"tensor{index:05d}_000" for index in range(26)])
    assert small.family == "grok1" and small.config is None and "2 layers" in small.reason
    assert registry.detect_from_grok_checkpoint(names[:-1]).family is None  # 769 fits no layout
    assert registry.detect_from_grok_checkpoint(names[:5] + names[6:] + ["tensor00770_000"]).family is None
    assert registry.detect_from_grok_checkpoint(["model.safetensors"]).family is None


# ------------------------------------------------------------------------------------------ hostile configs


@pytest.mark.parametrize("change", [
    {"hidden_size": True},
    {"hidden_size": "4096"},
    {"hidden_size": 16.0},
    {"vocab_size": -1},
    {"num_hidden_layers": 10**9},
    {"num_attention_heads": 4, "num_key_value_heads": 3},
    {"num_attention_heads": 5, "hidden_size": 16},
    {"rms_norm_eps": float("nan")},
    {"rope_theta": 0},
    {"rope_scaling": "linear"},
    {"layer_types": ["full_attention"]},
    {"architectures": "LlamaForCausalLM"},
])
def test_hostile_values_are_config_errors(change: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as raised:
        llama.config_from_hf(dict(TINY["llama"], **change))
    assert raised.value.finding_id == "architecture-config-invalid"


def test_expert_slots_are_bounded() -> None:
    with pytest.raises(ConfigError):
        mixtral.config_from_hf(dict(TINY["mixtral"], num_hidden_layers=64, num_local_experts=4096))
    with pytest.raises(ConfigError):
        mixtral.config_from_hf(dict(TINY["mixtral"], num_experts_per_tok=5))


class RecordingMapping(Mapping[str, Any]):
    """A config that remembers every key read from it."""

    def __init__(self, data: Mapping[str, Any]):
        self._data = dict(data)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return self._data[key]

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return self._data.get(key, default)

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


@pytest.mark.parametrize("name, family", [(row[0], row[1]) for row in PUBLISHED])
def test_families_read_only_the_keys_they_declare(name: str, family: str) -> None:
    module = registry.FAMILIES[family]
    config = RecordingMapping(load(name))
    module.config_from_hf(config)
    declared = set(module.HF_KEYS) | set(getattr(module, "HF_TOP_KEYS", ()))
    assert config.read <= declared


def test_reader_refuses_undeclared_keys() -> None:
    reader = ConfigReader({"hidden_size": 8}, ("vocab_size",))
    with pytest.raises(RuntimeError):
        reader.int("hidden_size")


def test_decoder_layer_types_patterns() -> None:
    assert _decoder.alternating_types(7, 6) == ("sliding_attention",) * 5 + ("full_attention", "sliding_attention")
    assert _decoder.window_types(3, 8, first_sliding=1) == ("full_attention", "sliding_attention", "sliding_attention")
    assert _decoder.window_types(2, None) == ("full_attention", "full_attention")
