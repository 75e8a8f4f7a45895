"""The Llama-layout forward pass against logits from transformers, for all ten decoder families.

Fixtures: ``tests/data/reference/<family>/`` (config.json, model.safetensors, reference.npz), made by
``tests/reference/make_reference_logits.py`` with torch and transformers (versions in
``tests/data/reference/README.md``); this test needs neither.
"""

from __future__ import annotations

import dataclasses
import json
import os
from functools import lru_cache
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

from openaudit.families import registry  # noqa: E402
from openaudit.inspect.tensor_names import canonical  # noqa: E402
from openaudit.run import layers as L  # noqa: E402
from openaudit.run.model import forward, split_params  # noqa: E402
from openaudit.run.models import decoder, forward_model  # noqa: E402

REFERENCE = Path(__file__).parent / "data" / "reference"
TOLERANCE = 1e-4


@lru_cache(maxsize=None)
def fixture(family: str):
    folder = REFERENCE / family
    config = registry.FAMILIES[family].config_from_hf(json.loads((folder / "config.json").read_text()))
    params = {canonical(name): value for name, value in load_file(folder / "model.safetensors").items()}
    reference = dict(np.load(folder / "reference.npz"))
    return config, params, reference


def run(config, params, tokens: np.ndarray) -> np.ndarray:
    return np.asarray(forward(decoder, config, params, jnp.asarray(tokens)))


@lru_cache(maxsize=None)
def logits_of(family: str) -> np.ndarray:
    config, params, reference = fixture(family)
    return run(config, params, reference["input_ids"])


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.max(np.abs(a - b)))


# ---------------------------------------------------------------------------------------------- reference


@pytest.mark.parametrize("family", decoder.FAMILIES)
def test_logits_match_transformers(family):
    config, _, reference = fixture(family)
    logits = logits_of(family)
    assert logits.dtype == np.float32
    assert logits.shape == reference["logits"].shape == (1, 20, config.vocab_size)
    assert max_diff(logits, reference["logits"]) <= TOLERANCE


@pytest.mark.parametrize("family", decoder.FAMILIES)
def test_two_runs_are_identical(family):
    config, params, reference = fixture(family)
    assert np.array_equal(run(config, params, reference["input_ids"]), logits_of(family))


def test_registry_finds_this_module_for_every_family():
    assert all(forward_model(family) is decoder for family in decoder.FAMILIES)


# Each fixture switches on its family's distinctive options; turning one off must move the logits well
# past the tolerance, or the comparison above would not be testing it.
def _without_biases(params):
    return {name: value for name, value in params.items() if not name.endswith(".bias")}


def _rope(config, **items):
    """The config's rope dict with some items replaced (None removes one)."""
    rope = {**dict(config.rope_scaling or ()), **items}
    return tuple(sorted((key, value) for key, value in rope.items() if value is not None))


# name -> (family, config changes (a dict, or a function of the config), parameter edit)
ABLATIONS = {
    "llama: llama3 rope scaling": ("llama", dict(rope_scaling=None), None),
    "llama: biases": ("llama", {}, _without_biases),
    "mistral: sliding window": ("mistral", dict(sliding_window=None), None),
    "mixtral: renormalised gates": ("mixtral", dict(moe_renormalize=False), None),
    "mixtral: top-2 of 4": ("mixtral", dict(num_experts_per_tok=1), None),
    "qwen2: sliding layer": ("qwen2", dict(sliding_window=None), None),
    "qwen2: linear rope": ("qwen2", dict(rope_scaling=None), None),
    "qwen3: yarn rope": ("qwen3", dict(rope_scaling=None), None),
    "gemma: dynamic rope": ("gemma", dict(rope_scaling=None), None),
    "gemma: embedding multiplier": ("gemma", dict(embedding_multiplier=1.0), None),
    "gemma2: attention softcap": ("gemma2", dict(attn_logit_softcapping=None), None),
    "gemma2: final softcap": ("gemma2", dict(final_logit_softcapping=None), None),
    "gemma2: query scaling": ("gemma2", dict(query_scale=16**-0.5), None),
    "gemma3: local rope base": ("gemma3", dict(rope_local_theta=None), None),
    "gemma3: sliding window": ("gemma3", dict(sliding_window=None), None),
    "phi3: longrope": ("phi3", lambda c: dict(rope_scaling=_rope(c, rope_type="default")), None),
    "phi3: long factors past the original length": (
        "phi3",
        lambda c: dict(rope_scaling=_rope(c, long_factor=dict(c.rope_scaling)["short_factor"])),
        None,
    ),
    "phi3: partial rotary": (
        "phi3",
        lambda c: dict(rope_scaling=_rope(c, rope_type="default", partial_rotary_factor=1.0)),
        None,
    ),
    "olmo2: attention biases": ("olmo2", {}, _without_biases),
}


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_fixture_exercises_option(name):
    family, changes, edit = ABLATIONS[name]
    config, params, reference = fixture(family)
    changed_config = dataclasses.replace(config, **(changes(config) if callable(changes) else changes))
    changed = run(changed_config, edit(params) if edit else params, reference["input_ids"])
    assert max_diff(changed, reference["logits"]) > 100 * TOLERANCE


# ---------------------------------------------------------------------------------------------- contract


def test_names_cover_the_checkpoint_exactly():
    for family in decoder.FAMILIES:
        config, params, _ = fixture(family)
        global_set, per_layer = split_params(decoder, config, list(params))
        assert global_set == set(decoder.global_names(config)), family
        for slot, names in zip(decoder.layers(config), per_layer):
            assert {name[len(slot.prefix) :] for name in names} == set(decoder.layer_names(config, slot.kind)), family


def test_layer_kinds_follow_the_config():
    assert [slot.kind for slot in decoder.layers(fixture("gemma2")[0])] == ["sliding_attention", "full_attention"]
    assert [slot.kind for slot in decoder.layers(fixture("qwen2")[0])] == ["full_attention", "sliding_attention"]
    assert [slot.prefix for slot in decoder.layers(fixture("llama")[0])] == ["layers.0.", "layers.1."]


def test_jitted_pieces_with_static_config_and_kind_agree():
    config, params, reference = fixture("gemma3")
    tokens = jnp.asarray(reference["input_ids"])
    embed = jax.jit(decoder.embed, static_argnums=0)
    layer = jax.jit(decoder.layer, static_argnums=(0, 4))
    head = jax.jit(decoder.head, static_argnums=0)
    context = decoder.prepare(config, tokens)
    x = embed(config, {decoder.EMBED: params[decoder.EMBED]}, tokens)
    for slot in decoder.layers(config):
        layer_params = {n[len(slot.prefix) :]: v for n, v in params.items() if n.startswith(slot.prefix)}
        x = layer(config, layer_params, x, context, slot.kind)
    logits = np.asarray(head(config, params, x))
    assert max_diff(logits, reference["logits"]) <= TOLERANCE


def test_bfloat16_activations_stay_close():
    config, params, reference = fixture("llama")
    tokens = jnp.asarray(reference["input_ids"])
    context = decoder.prepare(config, tokens)
    x = decoder.embed(config, params, tokens, dtype=jnp.bfloat16)
    for slot in decoder.layers(config):
        layer_params = {n[len(slot.prefix) :]: v for n, v in params.items() if n.startswith(slot.prefix)}
        x = decoder.layer(config, layer_params, x, context, slot.kind)
        assert x.dtype == jnp.bfloat16
    logits = np.asarray(decoder.head(config, params, x))
    assert logits.dtype == np.float32
    assert TOLERANCE < max_diff(logits, reference["logits"]) < 0.25


# ---------------------------------------------------------------------------------------------- GGUF


def llama_cpp_permute(rows: np.ndarray, heads: int) -> np.ndarray:
    """Written out here from llama.cpp convert_hf_to_gguf.py ``LlamaModel.permute`` (not imported)."""
    return rows.reshape(heads, 2, rows.shape[0] // heads // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


_TO_GGUF_LAYER = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.o_proj.bias": "attn_output.bias",
    "self_attn.qkv_proj.weight": "attn_qkv.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "pre_feedforward_layernorm.weight": "ffn_norm.weight",
    "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.gate_proj.bias": "ffn_gate.bias",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.up_proj.bias": "ffn_up.bias",
    "mlp.down_proj.weight": "ffn_down.weight",
    "mlp.down_proj.bias": "ffn_down.bias",
    "mlp.gate_up_proj.weight": "ffn_up.weight",
    "block_sparse_moe.gate.weight": "ffn_gate_inp.weight",
}


def to_gguf(config, params, *, permute: bool, norm_shift: float = 0.0) -> dict[str, np.ndarray]:
    """What llama.cpp's converter writes for these tensors (names, q/k permutation, Gemma's +1 norms)."""
    out: dict[str, np.ndarray] = {}
    experts: dict[tuple[str, str], dict[int, np.ndarray]] = {}
    top = {
        "embed_tokens.weight": "token_embd.weight",
        "norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    for name, value in params.items():
        value = np.array(value)
        if name.endswith("norm.weight"):
            value = value + np.float32(norm_shift)
        if name in top:
            out[top[name]] = value
            continue
        _, index, rest = name.split(".", 2)
        if rest.startswith("block_sparse_moe.experts."):
            _, _, expert, which, _ = rest.split(".")
            experts.setdefault((index, which), {})[int(expert)] = value
            continue
        if permute and rest.startswith("self_attn.q_proj."):
            value = llama_cpp_permute(value, config.num_heads)
        if permute and rest.startswith("self_attn.k_proj."):
            value = llama_cpp_permute(value, config.num_kv_heads)
        if rest == "post_attention_layernorm.weight":
            # Llama's second norm feeds the MLP; Gemma 2/3's and OLMo 2's normalises the attention output.
            siblings = _layer(params, index)
            feeds_mlp = "input_layernorm.weight" in siblings and "pre_feedforward_layernorm.weight" not in siblings
            gguf = "ffn_norm.weight" if feeds_mlp else "post_attention_norm.weight"
        else:
            gguf = _TO_GGUF_LAYER[rest]
        out[f"blk.{index}.{gguf}"] = value
    stacked = {"w1": "ffn_gate_exps.weight", "w3": "ffn_up_exps.weight", "w2": "ffn_down_exps.weight"}
    for (index, which), by_expert in experts.items():
        out[f"blk.{index}.{stacked[which]}"] = np.stack([by_expert[e] for e in sorted(by_expert)])
    return out


def _layer(params, index: str) -> set[str]:
    prefix = f"layers.{index}."
    return {name[len(prefix) :] for name in params if name.startswith(prefix)}


@pytest.mark.parametrize(
    "family, architecture, shift",
    [
        ("llama", "llama", 0.0),
        ("mixtral", "llama", 0.0),
        ("gemma2", "gemma2", 1.0),
        ("phi3", "phi3", 0.0),
        ("olmo2", "olmo2", 0.0),
    ],
)
def test_gguf_names_map_back_to_the_same_logits(family, architecture, shift):
    config, params, reference = fixture(family)
    permute = architecture in decoder.GGUF_PERMUTED_ARCHITECTURES
    gguf = to_gguf(config, params, permute=permute, norm_shift=shift)
    top = ("token_embd.weight", "output_norm.weight", "output.weight")
    assert all(name.startswith("blk.") or name in top for name in gguf)
    back = decoder.canonical_from_gguf(gguf, config, architecture)
    assert set(back) == set(params)
    logits = run(config, back, reference["input_ids"])
    assert max_diff(logits, logits_of(family)) <= 1e-6
    assert max_diff(logits, reference["logits"]) <= TOLERANCE


def test_gguf_permutation_is_undone_for_llama():
    config, params, reference = fixture("llama")
    gguf = to_gguf(config, params, permute=True)
    q = params["layers.0.self_attn.q_proj.weight"]
    assert not np.array_equal(gguf["blk.0.attn_q.weight"], q)
    assert np.array_equal(decoder.llama_cpp_unpermute(gguf["blk.0.attn_q.weight"], config.num_heads), q)
    assert np.array_equal(decoder.llama_cpp_permute(q, config.num_heads), gguf["blk.0.attn_q.weight"])
    # Read as an unpermuted architecture, the rows stay scrambled and the logits are wrong.
    scrambled = run(config, decoder.canonical_from_gguf(gguf, config, "qwen2"), reference["input_ids"])
    assert max_diff(scrambled, reference["logits"]) > 100 * TOLERANCE


def test_gguf_unknown_tensor_is_refused():
    config, params, _ = fixture("llama")
    gguf = to_gguf(config, params, permute=True)
    gguf["blk.0.attn_sinks.weight"] = np.zeros(4, np.float32)
    with pytest.raises(KeyError, match="attn_sinks"):
        decoder.canonical_from_gguf(gguf, config, "llama")


# ---------------------------------------------------------------------------------------------- layers


def test_causal_mask_window_counts_the_query_itself():
    mask = np.asarray(L.causal_mask(5, window=2))
    assert mask.astype(int).tolist() == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 1, 1, 0, 0],
        [0, 0, 1, 1, 0],
        [0, 0, 0, 1, 1],
    ]


def test_rope_layouts_agree_after_llama_cpp_permutation():
    """Interleaved RoPE on permuted rows equals rotate-half RoPE on the original rows (llama.cpp's premise)."""
    heads, width, length = 2, 8, 5
    w = np.random.default_rng(0).standard_normal((heads * width, 3)).astype(np.float32)
    x = np.random.default_rng(1).standard_normal((1, length, 3)).astype(np.float32)
    inv_freq, _ = L.rope_frequencies(width, 10000.0, None, seq_len=length, max_position_embeddings=length)
    cos, sin = L.rope_angles(jnp.arange(length), inv_freq)
    half = L.apply_rope((x @ w.T).reshape(1, length, heads, width), cos, sin)
    pairs = L.apply_rope_interleaved((x @ llama_cpp_permute(w, heads).T).reshape(1, length, heads, width), cos, sin)
    unpermuted = decoder.llama_cpp_unpermute(np.asarray(pairs).reshape(length, heads * width).T, heads).T
    assert np.allclose(unpermuted.reshape(half.shape), np.asarray(half), atol=1e-6)


def test_top_k_gates_renormalise():
    logits = jnp.asarray([[[2.0, 1.0, 0.0, -1.0]]])
    probs = np.exp([2.0, 1.0, 0.0, -1.0]) / np.exp([2.0, 1.0, 0.0, -1.0]).sum()
    renormalised = np.asarray(L.top_k_gates(logits, 2, True))[0, 0]
    raw = np.asarray(L.top_k_gates(logits, 2, False))[0, 0]
    assert np.allclose(renormalised, [probs[0] / probs[:2].sum(), probs[1] / probs[:2].sum(), 0, 0], atol=1e-6)
    assert np.allclose(raw, [probs[0], probs[1], 0, 0], atol=1e-6)


def test_unsupported_rope_and_activation_are_config_errors():
    from openaudit.families.spec import ConfigError

    with pytest.raises(ConfigError, match="mrope"):
        L.rope_frequencies(8, 1e4, {"rope_type": "mrope"}, seq_len=4, max_position_embeddings=8)
    with pytest.raises(ConfigError, match="swiglu_oai"):
        L.activation("swiglu_oai")


@pytest.mark.parametrize(
    "scaling",
    [
        {"rope_type": "llama3", "factor": 8.0},
        {"rope_type": "longrope", "short_factor": "abc", "long_factor": (1.0, 1.0, 1.0, 1.0)},
        {"rope_type": "longrope", "short_factor": (1.0, 1.0), "long_factor": (1.0, 1.0)},
        {"rope_type": "linear", "factor": 0.0},
        {"rope_type": "yarn", "factor": "4"},
        {"rope_type": "linear"},
    ],
)
def test_hostile_rope_values_are_config_errors(scaling):
    from openaudit.families.spec import ConfigError

    with pytest.raises(ConfigError):
        L.rope_frequencies(8, 1e4, scaling, seq_len=4, max_position_embeddings=8, original_max_position_embeddings=8)
