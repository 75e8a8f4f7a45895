"""The bundled example release ``examples/tiny-llama``: a real, trained Llama that openaudit can verify.

No training here: the release is committed, made by ``examples/make_tiny_llama.py``. These tests read it
with numpy and ``tokenizers`` only, run an independent float32 Llama forward pass written below (not
openaudit's), and check that the model is what its files say it is and that it has learned something:
the bundled probe text scores far below a uniform guess, and the same weights with their rows shuffled
(or replaced by fresh random ones) score near or above it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from openaudit.families import llama

REPO = Path(__file__).resolve().parents[1]
RELEASE = REPO / "examples" / "tiny-llama"
PROBE_TEXT = REPO / "openaudit" / "run" / "probe_text.txt"
CORPUS_DIR = REPO / "tests" / "data" / "tiny_llama_corpus"

VOCAB = 512
EXPECTED_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "eos_token_id": 0,
    "head_dim": 24,
    "hidden_act": "silu",
    "hidden_size": 96,
    "initializer_range": 0.02,
    "intermediate_size": 256,
    "max_position_embeddings": 512,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 4,
    "num_hidden_layers": 3,
    "num_key_value_heads": 2,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
    "torch_dtype": "float32",
    "transformers_version": "4.45.2",
    "use_cache": True,
    "vocab_size": VOCAB,
}
# 512 x 96 tied embedding + 3 x (attention 96x96 + 2 x 48x96 + 96x96, MLP 3 x 96x256, two norms of 96)
# + the final norm: 49,152 + 3 x 101,568 + 96.
EXPECTED_PARAMETERS = 353_952

# A trained model must be far below a uniform guess; broken weights must not be.
TRAINED_PERPLEXITY_BELOW = VOCAB / 10
BROKEN_PERPLEXITY_ABOVE = VOCAB / 2


# ----------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def config() -> dict:
    return json.loads((RELEASE / "config.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def weights() -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(RELEASE / "model.safetensors"))


@pytest.fixture(scope="module")
def probe_ids() -> list[int]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(RELEASE / "tokenizer.json"))
    return tokenizer.encode(PROBE_TEXT.read_text(encoding="utf-8")).ids


# ----------------------------------------------------------------------------------------- a numpy Llama


def _rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    return (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight).astype(np.float32)


def _rope(x: np.ndarray, theta: float) -> np.ndarray:
    """Rotate-half RoPE over [T, heads, head_dim], as transformers' Llama applies it."""
    length, _, head_dim = x.shape
    inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim)
    angles = np.arange(length, dtype=np.float32)[:, None] * inv_freq[None, :]
    angles = np.concatenate([angles, angles], axis=-1)[:, None, :]
    half = head_dim // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return (x * np.cos(angles) + rotated * np.sin(angles)).astype(np.float32)


def llama_logits(config: dict, weights: dict[str, np.ndarray], ids: list[int]) -> np.ndarray:
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim, eps, theta = config["head_dim"], config["rms_norm_eps"], config["rope_theta"]
    length = len(ids)
    causal = np.tril(np.ones((length, length), bool))
    x = weights["model.embed_tokens.weight"][np.asarray(ids)]
    for layer in range(config["num_hidden_layers"]):
        w = {name[len(f"model.layers.{layer}.") :]: value for name, value in weights.items() if name.startswith(f"model.layers.{layer}.")}
        h = _rms_norm(x, w["input_layernorm.weight"], eps)
        q = _rope((h @ w["self_attn.q_proj.weight"].T).reshape(length, heads, head_dim), theta)
        k = _rope((h @ w["self_attn.k_proj.weight"].T).reshape(length, kv_heads, head_dim), theta)
        v = (h @ w["self_attn.v_proj.weight"].T).reshape(length, kv_heads, head_dim)
        k, v = np.repeat(k, heads // kv_heads, axis=1), np.repeat(v, heads // kv_heads, axis=1)
        scores = np.einsum("thd,shd->hts", q, k) / np.sqrt(head_dim)
        scores = np.where(causal[None], scores, -np.inf)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        attention = np.einsum("hts,shd->thd", scores, v).reshape(length, heads * head_dim)
        x = x + attention @ w["self_attn.o_proj.weight"].T
        h = _rms_norm(x, w["post_attention_layernorm.weight"], eps)
        gate = h @ w["mlp.gate_proj.weight"].T
        x = x + ((gate / (1.0 + np.exp(-gate))) * (h @ w["mlp.up_proj.weight"].T)) @ w["mlp.down_proj.weight"].T
    x = _rms_norm(x, weights["model.norm.weight"], eps)
    head = weights.get("lm_head.weight", weights["model.embed_tokens.weight"])
    return (x @ head.T).astype(np.float32)


def perplexity(config: dict, weights: dict[str, np.ndarray], ids: list[int]) -> float:
    logits = llama_logits(config, weights, ids[:-1]).astype(np.float64)
    top = logits.max(axis=-1, keepdims=True)
    log_probs = logits - top - np.log(np.exp(logits - top).sum(axis=-1, keepdims=True))
    return math.exp(-float(np.mean(log_probs[np.arange(len(ids) - 1), ids[1:]])))


def shuffled_rows(weights: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """Every matrix with its rows permuted: the same values and statistics, none of the structure."""
    rng = np.random.default_rng(seed)
    return {name: value[rng.permutation(value.shape[0])] if value.ndim == 2 else value for name, value in weights.items()}


# ----------------------------------------------------------------------------------------- the release


def test_release_holds_the_files_of_a_hub_model_repository():
    assert sorted(path.name for path in RELEASE.iterdir()) == [
        "LICENSE",
        "README.md",
        "SHA256SUMS",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert sum(path.stat().st_size for path in RELEASE.iterdir()) < 2 * 1024 * 1024


def test_config_is_exactly_a_llama_config(config):
    assert config == EXPECTED_CONFIG


def test_tensors_are_exactly_what_the_llama_family_expects(config, weights):
    family_config = llama.config_from_hf(config)
    expected = {spec.name: spec.shape for spec in llama.expected_tensors(family_config) if spec.is_parameter and not spec.optional}
    assert {name: value.shape for name, value in weights.items()} == expected
    assert {value.dtype for value in weights.values()} == {np.dtype(np.float32)}
    assert "lm_head.weight" not in weights  # tied: the head is the input embedding
    assert llama.parameter_count(family_config) == EXPECTED_PARAMETERS
    assert sum(value.size for value in weights.values()) == EXPECTED_PARAMETERS


def test_weights_are_finite_and_trained_away_from_their_initial_values(weights):
    assert all(np.isfinite(value).all() for value in weights.values())
    # Initialised as transformers does (norms at one, matrices with std 0.02); training moved them.
    assert not np.allclose(weights["model.norm.weight"], 1.0)
    assert weights["model.embed_tokens.weight"].std() > 0.04


def test_sha256sums_lists_the_weights():
    digest = hashlib.sha256((RELEASE / "model.safetensors").read_bytes()).hexdigest()
    assert (RELEASE / "SHA256SUMS").read_text(encoding="utf-8") == f"{digest}  model.safetensors\n"


def test_tokenizer_is_the_byte_level_bpe_the_config_declares(config):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(RELEASE / "tokenizer.json"))
    assert tokenizer.get_vocab_size() == config["vocab_size"]
    assert tokenizer.token_to_id("<|endoftext|>") == config["bos_token_id"] == config["eos_token_id"]
    text = "Dorothy lived in the midst of the great Kansas prairies."
    assert tokenizer.decode(tokenizer.encode(text).ids) == text
    tokenizer_config = json.loads((RELEASE / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert tokenizer_config["model_max_length"] == config["max_position_embeddings"]


def test_license_is_the_full_apache_2_text():
    text = (RELEASE / "LICENSE").read_text(encoding="utf-8")
    assert text.split("\n")[0].strip() == "Apache License"
    assert text.split("\n")[1].strip() == "Version 2.0, January 2004"
    assert "END OF TERMS AND CONDITIONS" in text
    assert len(text) > 11000


def test_model_card_declares_what_the_files_show(config):
    card = (RELEASE / "README.md").read_text(encoding="utf-8")
    front_matter = card.split("---\n")[1]
    assert "license: apache-2.0\n" in front_matter
    assert "pipeline_tag: text-generation\n" in front_matter
    prose = " ".join(card.split("---\n", 2)[2].split())
    for claim in (
        f"{EXPECTED_PARAMETERS:,} parameters",
        f"{config['num_hidden_layers']} layers",
        f"{config['num_attention_heads']} attention heads",
        f"{config['num_key_value_heads']} key-value heads",
        f"embedding size (hidden size) of {config['hidden_size']}",
        f"vocabulary of {config['vocab_size']} tokens",
        f"context length of {config['max_position_embeddings']} tokens",
    ):
        assert claim in prose
    assert "## Training" in card and "make_tiny_llama.py" in card


# ----------------------------------------------------------------------------------------- it has learned


def test_probe_text_is_short_and_not_training_text(probe_ids, config):
    probe = PROBE_TEXT.read_text(encoding="utf-8")
    assert 200 <= len(probe_ids) <= config["max_position_embeddings"]
    corpus = " ".join("".join(path.read_text(encoding="utf-8") for path in CORPUS_DIR.glob("*.txt")).split())
    for sentence in re.split(r"(?<=\.) ", " ".join(probe.split())):
        assert sentence not in corpus


def test_trained_model_predicts_the_probe_text_far_better_than_chance(config, weights, probe_ids):
    assert perplexity(config, weights, probe_ids) < TRAINED_PERPLEXITY_BELOW


def test_model_card_reports_the_probe_perplexity_this_forward_pass_measures(config, weights, probe_ids):
    card = (RELEASE / "README.md").read_text(encoding="utf-8")
    reported = float(re.search(r"probe text[^:]*: ([0-9.]+)", " ".join(card.split())).group(1))
    assert abs(perplexity(config, weights, probe_ids) - reported) < 0.1


@pytest.mark.parametrize("seed", [0, 1])
def test_row_shuffled_weights_score_no_better_than_chance(config, weights, probe_ids, seed):
    assert perplexity(config, shuffled_rows(weights, seed), probe_ids) > BROKEN_PERPLEXITY_ABOVE


def test_fresh_random_weights_score_near_a_uniform_guess(config, weights, probe_ids):
    rng = np.random.default_rng(0)
    fresh = {
        name: np.ones_like(value) if value.ndim == 1 else rng.normal(0.0, 0.02, value.shape).astype(np.float32)
        for name, value in weights.items()
    }
    assert BROKEN_PERPLEXITY_ABOVE < perplexity(config, fresh, probe_ids) < 2 * VOCAB
