"""Grok-1's JAX forward pass against an independent float64 NumPy implementation of the same facts.

The model is tiny but in the official checkpoint layout: Haiku leaf names, (in, out) matrices, 8 stacked
experts with top-2 routing, int8 weights with bfloat16 scales whose shapes are the release's scaled down
(block-row scales for the attention output and ``moe/linear_1``), float32 embedding, norms and router.
The reference below is written from the facts in ``docs/grok1-architecture.md`` (xai-org/grok-1
``model.py``) and shares no code with ``openaudit.run.models.grok1``.
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import partial

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from openaudit.errors import MalformedInput
from openaudit.families.grok1 import GROK1
from openaudit.run import model as contract
from openaudit.run.models import forward_model
from openaudit.run.models import grok1 as grok

CONFIG = replace(
    GROK1,
    vocab_size=48,
    emb_size=32,
    key_size=8,
    num_q_heads=4,
    num_kv_heads=2,
    num_layers=3,
    widening_factor=2.0,  # ffn_size(32, 2.0) = 48: 8 blocks of 6 rows for moe/linear_1's scales
    attn_output_multiplier=8**-0.5,
)
EXPERTS, FFN, D = 8, 48, 32
Q, KV = 4 * 8, 2 * 8
EMBEDDING = "language_model/in_out_embed/embeddings"
FINAL_NORM = "language_model/rms_norm/scale"

TOLERANCE = 1e-5  # float32 JAX against float64 NumPy, absolute, on logits of size O(1)
# Pad token 0 in the middle of both rows, and first in the second row (its first query sees no key).
TOKENS = np.array([[5, 9, 0, 17, 3, 0, 22, 8], [0, 4, 11, 0, 0, 30, 2, 47]], dtype=np.int32)

# (weight shape, scale shape) of the quantized matrices, the release's shapes scaled down.
QUANTIZED = {
    "moe/linear/w": ((EXPERTS, D, FFN), (EXPERTS, 1, FFN)),
    "moe/linear_1/w": ((EXPERTS, FFN, D), (EXPERTS, 8, D)),
    "moe/linear_v/w": ((EXPERTS, D, FFN), (EXPERTS, 1, FFN)),
    "multi_head_attention/key/w": ((D, KV), (1, KV)),
    "multi_head_attention/linear/w": ((Q, D), (8, D)),
    "multi_head_attention/query/w": ((D, Q), (1, Q)),
    "multi_head_attention/value/w": ((D, KV), (1, KV)),
}
# Scale magnitudes chosen so attention logits reach the 30·tanh(x/30) cap and activations stay O(1).
SCALE_SIZE = {"query": 0.012, "key": 0.012, "value": 0.01, "linear": 0.008, "moe": 0.006}


def _scale_size(name: str) -> float:
    return SCALE_SIZE["moe" if name.startswith("moe/") else name.split("/")[1]]


def build_checkpoint(seed: int = 0) -> dict[str, np.ndarray]:
    """Leaf name -> numpy array; quantized leaves as int8 ``name`` plus bfloat16 ``name:scales``."""
    rng = np.random.default_rng(seed)
    leaves: dict[str, np.ndarray] = {
        EMBEDDING: rng.normal(0.0, 0.15, (CONFIG.vocab_size, D)).astype(np.float32),
        FINAL_NORM: (1.0 + 0.2 * rng.normal(size=D)).astype(np.float32),
    }
    for index in range(CONFIG.num_layers):
        prefix = f"transformer/decoder_layer_{index}/"
        for name, (shape, scale_shape) in QUANTIZED.items():
            leaves[prefix + name] = rng.integers(-127, 128, shape, dtype=np.int8)
            # Block rows differ by up to 4x, so a scale applied to the wrong rows changes the logits.
            scales = _scale_size(name) * rng.uniform(0.5, 2.0, scale_shape)
            leaves[prefix + name + ":scales"] = scales.astype(ml_dtypes.bfloat16)
        for norm in ("rms_norm", "rms_norm_1", "rms_norm_2", "rms_norm_3"):
            leaves[f"{prefix}{norm}/scale"] = (1.0 + 0.3 * rng.normal(size=D)).astype(np.float32)
        leaves[prefix + "router/w"] = rng.normal(0.0, 0.5, (D, EXPERTS)).astype(np.float32)
    return leaves


# --- the independent float64 reference ------------------------------------------------------------------


def ref_dequantize(weight: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """int8 × scales; a scale axis shorter than the weight's (and not 1) repeats each row over a block."""
    full = scales.astype(np.float64)
    for axis, (rows, scale_rows) in enumerate(zip(weight.shape, scales.shape)):
        if scale_rows not in (1, rows):
            full = np.repeat(full, rows // scale_rows, axis=axis)
    return weight.astype(np.float64) * full


def ref_rms_norm(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return scale * x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-5)


def ref_gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def ref_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def ref_rope(x_TxK: np.ndarray) -> np.ndarray:
    length, size = x_TxK.shape
    inv_freq = 1.0 / 10000.0 ** (np.arange(0, size, 2) / size)
    angles = np.arange(length)[:, None] * inv_freq[None, :]
    angles = np.concatenate([angles, angles], axis=-1)
    half = size // 2
    rotated = np.concatenate([-x_TxK[:, half:], x_TxK[:, :half]], axis=-1)
    return x_TxK * np.cos(angles) + rotated * np.sin(angles)


def ref_layer(w: dict[str, np.ndarray], h_TxD: np.ndarray, tokens_T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One decoder layer for one sequence; also returns the router probabilities (to check the top-2 margin)."""
    length = h_TxD.shape[0]
    allowed = np.tril(np.ones((length, length), dtype=bool)) & (tokens_T != 0)[None, :]
    x = ref_rms_norm(h_TxD, w["rms_norm/scale"])
    q, k, v = (x @ w[f"multi_head_attention/{n}/w"] for n in ("query", "key", "value"))
    heads = []
    for j in range(4):  # query head j reads kv head j // (4 / 2)
        n = j // 2
        qj = ref_rope(q[:, 8 * j : 8 * j + 8])
        kn = ref_rope(k[:, 8 * n : 8 * n + 8])
        logits = (qj @ kn.T) * 8**-0.5
        logits = 30.0 * np.tanh(logits / 30.0)
        logits = np.where(allowed, logits, -1e30)
        heads.append(ref_softmax(logits) @ v[:, 8 * n : 8 * n + 8])
    attended = np.concatenate(heads, axis=-1) @ w["multi_head_attention/linear/w"]
    h_TxD = h_TxD + ref_rms_norm(attended, w["rms_norm_1/scale"])

    x = ref_rms_norm(h_TxD, w["rms_norm_2/scale"])
    probs = ref_softmax(x @ w["router/w"])
    moe = np.zeros_like(x)
    for t in range(length):
        for e in np.argsort(-probs[t])[:2]:  # the two most probable experts, gates not renormalised
            hidden = ref_gelu_tanh(x[t] @ w["moe/linear/w"][e]) * (x[t] @ w["moe/linear_v/w"][e])
            moe[t] += probs[t, e] * (hidden @ w["moe/linear_1/w"][e])
    return h_TxD + ref_rms_norm(moe, w["rms_norm_3/scale"]), probs


def reference(leaves: dict[str, np.ndarray], tokens: np.ndarray) -> tuple[np.ndarray, float]:
    """float64 logits (B, T, V) and the smallest gap between the 2nd and 3rd router probabilities."""
    embeddings = leaves[EMBEDDING].astype(np.float64)
    all_logits, margin = [], np.inf
    for row in tokens:
        h = embeddings[row] * 78.38367176906169
        for index in range(CONFIG.num_layers):
            prefix = f"transformer/decoder_layer_{index}/"
            w = {}
            for name, value in leaves.items():
                if name.startswith(prefix) and not name.endswith(":scales"):
                    leaf = name[len(prefix) :]
                    scales = leaves.get(name + ":scales")
                    w[leaf] = ref_dequantize(value, scales) if scales is not None else value.astype(np.float64)
            h, probs = ref_layer(w, h, row)
            ordered = np.sort(probs, axis=-1)
            margin = min(margin, float(np.min(ordered[:, -2] - ordered[:, -3])))
        h = ref_rms_norm(h, leaves[FINAL_NORM].astype(np.float64))
        all_logits.append(h @ embeddings.T * 0.5773502691896257)
    return np.stack(all_logits), margin


# --- tests --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint() -> dict[str, np.ndarray]:
    return build_checkpoint()


@pytest.fixture(scope="module")
def expected(checkpoint) -> np.ndarray:
    logits, margin = reference(checkpoint, TOKENS)
    # The float32 run must route every token like the float64 one: no near-tie between 2nd and 3rd.
    assert margin > 1e-4
    return logits


@partial(jax.jit, static_argnums=0)
def _jit_forward(config, params, tokens):
    return contract.forward(grok, config, params, tokens)


def _device(leaves: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    return {name: jnp.asarray(value) for name, value in leaves.items()}


def test_registry_finds_the_module():
    assert forward_model("grok1") is grok
    assert grok.FAMILIES == ("grok1",)


def test_layer_slots_in_numeric_order_not_checkpoint_order():
    slots = grok.layers(replace(CONFIG, num_layers=12))
    assert [slot.prefix for slot in slots] == [f"transformer/decoder_layer_{i}/" for i in range(12)]
    assert {slot.kind for slot in slots} == {None}


def test_names_cover_the_checkpoint(checkpoint):
    names = set(grok.global_names(CONFIG))
    for slot in grok.layers(CONFIG):
        names |= {slot.prefix + name for name in grok.layer_names(CONFIG, slot.kind)}
    assert names == set(checkpoint)
    global_set, per_layer = contract.split_params(grok, CONFIG, list(checkpoint))
    assert global_set == {EMBEDDING, FINAL_NORM}
    assert [len(layer) for layer in per_layer] == [12 + 7] * 3


def test_the_fixture_exercises_the_cap_and_the_pad_mask(checkpoint):
    """Guards the fixture: first-layer attention logits beyond the cap's linear range, pads in both rows."""
    layer = "transformer/decoder_layer_0/"

    def matrix(name: str) -> np.ndarray:
        leaf = f"{layer}multi_head_attention/{name}/w"
        return ref_dequantize(checkpoint[leaf], checkpoint[leaf + ":scales"])

    h = checkpoint[EMBEDDING].astype(np.float64)[TOKENS[0]] * 78.38367176906169
    x = ref_rms_norm(h, checkpoint[layer + "rms_norm/scale"])
    q, k = x @ matrix("query"), x @ matrix("key")
    raw = np.abs(ref_rope(q[:, :8]) @ ref_rope(k[:, :8]).T * 8**-0.5)
    assert raw.max() > 15.0  # 30·tanh(x/30) bends by more than 7% here
    assert (TOKENS == 0).any(axis=1).all() and TOKENS[1, 0] == 0


def test_int8_logits_match_float64_reference(checkpoint, expected):
    logits = np.asarray(_jit_forward(CONFIG, _device(checkpoint), jnp.asarray(TOKENS)))
    assert logits.dtype == np.float32 and logits.shape == (2, 8, CONFIG.vocab_size)
    assert np.isfinite(logits).all()
    assert 1.0 < np.max(np.abs(expected)) < 10.0  # O(1) logits, so an absolute tolerance is meaningful
    # Measured: 3e-7. Wrong facts give 4e-5 (exact-erf gelu) to 3 (1 + w norms).
    diff = np.max(np.abs(logits - expected))
    assert diff <= TOLERANCE, diff


def test_predequantized_float_weights_give_the_same_logits(checkpoint):
    floats = {}
    for name, value in checkpoint.items():
        if name.endswith(":scales"):
            continue
        scales = checkpoint.get(name + ":scales")
        # int8 × bf16 is exact in float32, so these are the very weights the int8 path computes with.
        floats[name] = ref_dequantize(value, scales).astype(np.float32) if scales is not None else value
    quantized = np.asarray(_jit_forward(CONFIG, _device(checkpoint), jnp.asarray(TOKENS)))
    dequantized = np.asarray(_jit_forward(CONFIG, _device(floats), jnp.asarray(TOKENS)))
    np.testing.assert_allclose(dequantized, quantized, rtol=0, atol=1e-6)


def test_unjitted_layer_by_layer_run_matches(checkpoint, expected):
    """The streaming shape of the contract: embed, each layer with only its own leaves, head."""
    params = _device(checkpoint)
    tokens = jnp.asarray(TOKENS)
    context = grok.prepare(CONFIG, tokens)
    x = grok.embed(CONFIG, {EMBEDDING: params[EMBEDDING]}, tokens)
    for slot in grok.layers(CONFIG):
        own = {name: params[slot.prefix + name] for name in grok.layer_names(CONFIG, slot.kind)}
        x = jax.jit(grok.layer, static_argnums=(0, 4))(CONFIG, own, x, context, slot.kind)
    logits = np.asarray(grok.head(CONFIG, {n: params[n] for n in grok.global_names(CONFIG)}, x))
    assert np.max(np.abs(logits - expected)) <= TOLERANCE


def test_bfloat16_activations_stay_close(checkpoint, expected):
    params = _device(checkpoint)
    tokens = jnp.asarray(TOKENS)
    context = grok.prepare(CONFIG, tokens)
    x = grok.embed(CONFIG, params, tokens, dtype=jnp.bfloat16)
    assert x.dtype == jnp.bfloat16
    for slot in grok.layers(CONFIG):
        x = grok.layer(CONFIG, {k[len(slot.prefix):]: v for k, v in params.items() if k.startswith(slot.prefix)},
                       x, context, slot.kind)
        assert x.dtype == jnp.bfloat16
    logits = np.asarray(grok.head(CONFIG, params, x))
    scale = np.max(np.abs(expected))
    assert np.max(np.abs(logits - expected)) < 0.1 * scale  # bf16 keeps ~3 significant digits
    assert np.max(np.abs(logits - expected)) > 10 * TOLERANCE  # and is measurably not float32


def test_a_changed_block_scale_changes_the_logits(checkpoint, expected):
    """The block-row scales matter: scaling one block of moe/linear_1 moves the output."""
    tampered = dict(checkpoint)
    name = "transformer/decoder_layer_1/moe/linear_1/w:scales"
    scales = checkpoint[name].astype(np.float32)
    scales[:, 3, :] *= 2.0
    tampered[name] = scales.astype(ml_dtypes.bfloat16)
    logits = np.asarray(_jit_forward(CONFIG, _device(tampered), jnp.asarray(TOKENS)))
    assert np.max(np.abs(logits - expected)) > 1e-2


def test_int8_weight_without_scales_is_refused(checkpoint):
    dropped = "transformer/decoder_layer_0/multi_head_attention/query/w:scales"
    broken = {name: value for name, value in checkpoint.items() if name != dropped}
    with pytest.raises(MalformedInput) as caught:
        _jit_forward(CONFIG, _device(broken), jnp.asarray(TOKENS))
    assert caught.value.finding_id == "grok-leaf-kind-mismatch"


def test_scales_that_do_not_divide_the_weight_are_refused(checkpoint):
    broken = dict(checkpoint)
    broken["transformer/decoder_layer_0/moe/linear_1/w:scales"] = np.ones((EXPERTS, 5, D), ml_dtypes.bfloat16)
    with pytest.raises(MalformedInput) as caught:
        _jit_forward(CONFIG, _device(broken), jnp.asarray(TOKENS))
    assert caught.value.finding_id == "tensor-scale-shape-mismatch"
