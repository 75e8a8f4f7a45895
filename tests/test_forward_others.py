"""GPT-2, GPT-NeoX and BERT forward passes against logits from transformers.

Fixtures: ``tests/data/reference/<family>/`` (config.json, model.safetensors, reference.npz), made by
``tests/reference/make_reference_logits.py`` with torch and transformers (versions in
``tests/data/reference/VERSIONS.txt``); this test needs neither. Every weight there is random (norms
around 1), so a wrong formula cannot hide behind a constant. The tolerance is 1e-4 in float32.
"""

from __future__ import annotations

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

from openaudit.families import bert as bert_family  # noqa: E402
from openaudit.families import gpt2 as gpt2_family  # noqa: E402
from openaudit.families import gpt_neox as gpt_neox_family  # noqa: E402
from openaudit.inspect.tensor_names import canonical  # noqa: E402
from openaudit.run.model import forward, split_params  # noqa: E402
from openaudit.run.models import bert, forward_model, gpt2, gpt_neox  # noqa: E402

REFERENCE = Path(__file__).parent / "data" / "reference"
TOLERANCE = 1e-4
FAMILY_MODULES = {"gpt2": gpt2_family, "gpt_neox": gpt_neox_family, "bert": bert_family}


@lru_cache(maxsize=None)
def reference(family: str):
    """(config, canonical params, reference arrays). The fixtures are committed: a missing one is a failure."""
    folder = REFERENCE / family
    needed = [folder / name for name in ("config.json", "model.safetensors", "reference.npz")]
    missing = [str(path.relative_to(REFERENCE.parent.parent)) for path in needed if not path.is_file()]
    if missing:
        pytest.fail(f"reference fixture missing (committed under tests/data/reference): {', '.join(missing)}")
    config = FAMILY_MODULES[family].config_from_hf(json.loads((folder / "config.json").read_text()))
    params = {canonical(name): value for name, value in load_file(folder / "model.safetensors").items()}
    with np.load(folder / "reference.npz") as arrays:
        expected = {name: arrays[name] for name in arrays.files}
    return config, params, expected


def _run(module, config, params, tokens, **embed_options):
    """embed → layers → head, returning (input of head, head output); jitted per layer kind."""
    tokens = jnp.asarray(tokens)
    context = module.prepare(config, tokens)
    x = module.embed(config, params, tokens, **embed_options)
    step = jax.jit(module.layer, static_argnums=(0, 4))
    for slot in module.layers(config):
        own = {name[len(slot.prefix) :]: value for name, value in params.items() if name.startswith(slot.prefix)}
        x = step(config, own, x, context, slot.kind)
    return np.asarray(x), np.asarray(module.head(config, params, x))


def _max_diff(got: np.ndarray, want: np.ndarray) -> float:
    assert got.shape == want.shape
    return float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))


@pytest.mark.parametrize("family, module", [("gpt2", gpt2), ("gpt_neox", gpt_neox), ("bert", bert)])
def test_registry_and_names_cover_the_checkpoint(family, module):
    config, params, _ = reference(family)
    assert forward_model(family) is module
    assert module.FAMILIES == (family,)
    names = set(module.global_names(config))
    for slot in module.layers(config):
        names |= {slot.prefix + name for name in module.layer_names(config, slot.kind)}
    # bert also names the decoder.bias alias of its MLM bias, which a checkpoint may store instead
    optional = {"cls.predictions.decoder.bias"} if family == "bert" else set()
    assert set(params) <= names and names - set(params) <= optional
    global_set, per_layer = split_params(module, config, sorted(params))
    assert global_set == set(module.global_names(config)) - optional
    assert [len(layer) for layer in per_layer] == [len(module.layer_names(config, None))] * len(per_layer)


def test_gpt2_matches_transformers():
    config, params, expected = reference("gpt2")
    run = jax.jit(forward, static_argnums=(0, 1))
    logits = np.asarray(run(gpt2, config, params, jnp.asarray(expected["input_ids"])))
    assert logits.dtype == np.float32
    assert _max_diff(logits, expected["logits"]) <= TOLERANCE


def test_gpt2_ignores_stored_mask_buffers():
    config, params, expected = reference("gpt2")
    with_buffers = dict(params)
    for index in range(config.n_layer):
        # Old checkpoints store these; a garbage mask must not change anything.
        with_buffers[f"h.{index}.attn.bias"] = np.zeros((1, 1, config.n_positions, config.n_positions), np.float32)
        with_buffers[f"h.{index}.attn.masked_bias"] = np.asarray(-1e4, np.float32)
    _, logits = _run(gpt2, config, with_buffers, expected["input_ids"])
    assert _max_diff(logits, expected["logits"]) <= TOLERANCE


def test_gpt2_refuses_more_tokens_than_positions():
    config, _, _ = reference("gpt2")
    with pytest.raises(ValueError, match="64 learned positions"):
        gpt2.prepare(config, jnp.zeros((1, config.n_positions + 1), jnp.int32))


def test_gpt_neox_matches_transformers():
    config, params, expected = reference("gpt_neox")
    # The fixture's config.json is transformers 5's: partial_rotary_factor sits in rope_parameters.
    assert gpt_neox.rotary_ndims(config) == 4  # head size 8 × 0.5
    _, logits = _run(gpt_neox, config, params, expected["input_ids"])
    assert logits.dtype == np.float32
    assert _max_diff(logits, expected["logits"]) <= TOLERANCE


def test_bert_encoder_check_hidden_states_and_masked_lm_logits():
    config, params, expected = reference("bert")
    types = jnp.asarray(expected["token_type_ids"])
    hidden, logits = _run(bert, config, params, expected["input_ids"], token_types_BxT=types)
    assert bert.has_mlm_head(params)
    assert _max_diff(hidden, expected["hidden_states"]) <= TOLERANCE
    assert logits.dtype == np.float32
    assert _max_diff(logits, expected["logits"]) <= TOLERANCE


def test_bert_token_types_matter_and_default_to_zero():
    config, params, expected = reference("bert")
    tokens = expected["input_ids"]
    hidden_default, _ = _run(bert, config, params, tokens)
    hidden_zero, _ = _run(bert, config, params, tokens, token_types_BxT=jnp.zeros_like(jnp.asarray(tokens)))
    np.testing.assert_array_equal(hidden_default, hidden_zero)
    assert _max_diff(hidden_default, expected["hidden_states"]) > 1e-2  # the fixture's second segment is type 1


def test_bert_without_the_mlm_head_returns_the_hidden_states():
    config, params, expected = reference("bert")
    encoder_only = {name: value for name, value in params.items() if not name.startswith("cls.")}
    types = jnp.asarray(expected["token_type_ids"])
    hidden, out = _run(bert, config, encoder_only, expected["input_ids"], token_types_BxT=types)
    assert not bert.has_mlm_head(encoder_only)
    np.testing.assert_array_equal(out, hidden)
    assert _max_diff(out, expected["hidden_states"]) <= TOLERANCE


def test_bert_relative_positions_are_refused():
    config, _, _ = reference("bert")
    relative = bert_family.config_from_hf(
        {"hidden_size": 32, "num_attention_heads": 4, "position_embedding_type": "relative_key"}
    )
    assert config.position_embedding_type == "absolute"
    with pytest.raises(NotImplementedError, match="relative_key"):
        bert.prepare(relative, jnp.zeros((1, 4), jnp.int32))
