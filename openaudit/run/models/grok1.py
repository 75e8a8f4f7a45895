"""Grok-1's forward pass, read straight from its official checkpoint layout (xai-org/grok-1 ``model.py``).

Parameters keep the checkpoint's Haiku leaf names (``openaudit.inspect.pickle.grok_layout``): the globals
by full name, a layer's leaves after ``transformer/decoder_layer_<i>/``. A quantized matrix arrives as its int8 ``<name>`` plus
bf16 ``<name>:scales`` and is dequantized here, on the device, as the official code does
(``weight.astype(scales.dtype) * scales``, block-row scales included); an already dequantized float
weight without scales works the same. Every fact used below, with its source, is listed in
``docs/grok1-architecture.md``.

Precision: activations follow ``embed``'s ``dtype`` (float32 by default; the official runner uses
bfloat16). RMSNorm, RoPE, attention logits/softmax and the router are always float32, as in the official
code. In float32 the dequantized weights are exact (int8 × bf16 needs 16 significant bits), where the
official bf16 product rounds them.

Deliberate differences from the official code, none of which changes the result: the MoE evaluates every
expert for every token one expert at a time (``lax.scan``), adding each output where the router chose it,
so at most one expert's dequantized weights exist at once; the official "slow" path evaluates all experts
for each of the two choices and picks with a one-hot. Batches of any size work (the official quantized
``Linear`` flattens its input and only works for a batch of one).
"""

from __future__ import annotations

from typing import Any, Hashable, Mapping, NamedTuple

import jax
import jax.numpy as jnp

from openaudit.errors import MalformedInput
from openaudit.families.grok1 import Config
from openaudit.inspect.pickle.grok_layout import EMBEDDING, FINAL_NORM, LAYER_LEAVES, SCALES_SUFFIX
from openaudit.run import layers as blocks
from openaudit.run.dequant import dequantize_int8_jax
from openaudit.run.model import LayerSlot, Params

FAMILIES = ("grok1",)

# The seven matrices the released checkpoint stores as int8 weight + bf16 scales.
QUANTIZED_LEAVES: tuple[str, ...] = (
    "moe/linear/w",
    "moe/linear_1/w",
    "moe/linear_v/w",
    "multi_head_attention/key/w",
    "multi_head_attention/linear/w",
    "multi_head_attention/query/w",
    "multi_head_attention/value/w",
)


class Context(NamedTuple):
    """Per-sequence inputs of every layer."""

    cos_TxR2: jax.Array  # RoPE over the whole key size (R = key_size), float32
    sin_TxR2: jax.Array
    # Query t may attend to key s: causal, and key s is not padding. Shaped to broadcast over the
    # (B, kv heads, group, T, S) logits of ``layers.attention``.
    mask_Bx1x1xTxS: jax.Array


def layers(config: Config) -> tuple[LayerSlot, ...]:
    return tuple(LayerSlot(f"transformer/decoder_layer_{index}/") for index in range(config.num_layers))


def global_names(config: Config) -> tuple[str, ...]:
    """The tied embedding (used in and out) and the final norm."""
    return (EMBEDDING, FINAL_NORM)


def layer_names(config: Config, kind: Hashable = None) -> tuple[str, ...]:
    """The twelve leaves of a layer, then the scales of the quantized ones (absent for float weights)."""
    return LAYER_LEAVES + tuple(name + SCALES_SUFFIX for name in QUANTIZED_LEAVES)


def prepare(config: Config, tokens_BxT: jax.Array) -> Context:
    _, seq_len = tokens_BxT.shape
    # model.py RotaryEmbedding: float32 inv_freq = 1 / base^(arange(0, K, 2) / K), positions from 0.
    inv_freq, _ = blocks.rope_frequencies(
        config.key_size, config.rope_theta, None, seq_len=seq_len, max_position_embeddings=config.sequence_len
    )
    cos_TxR2, sin_TxR2 = blocks.rope_angles(jnp.arange(seq_len), inv_freq)
    # model.py LanguageModel: input_mask = tokens > pad_token; Transformer: times tril(ones(T, T)).
    key_mask_BxS = tokens_BxT > config.pad_token
    mask_BxTxS = key_mask_BxS[:, None, :] & blocks.causal_mask(seq_len)[None]
    return Context(cos_TxR2, sin_TxR2, mask_BxTxS[:, None, None])


def embed(config: Config, params: Params, tokens_BxT: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
    """``embeddings[tokens] * embedding_multiplier_scale`` in ``dtype`` (the activations' dtype from here on)."""
    if EMBEDDING + SCALES_SUFFIX in params:
        rows_BxTxD = jnp.take(_weight(params, EMBEDDING, dtype), tokens_BxT, axis=0)
    else:  # the released embedding is float32: gather the rows, then cast only those
        rows_BxTxD = _float_weight(EMBEDDING, jnp.take(params[EMBEDDING], tokens_BxT, axis=0), dtype)
    return rows_BxTxD * jnp.asarray(config.embedding_multiplier_scale, dtype)


def layer(config: Config, params: Params, x_BxTxD: jax.Array, context: Context, kind: Hashable = None) -> jax.Array:
    """``h += rms_norm_1(attn(rms_norm(h)))``; ``h += rms_norm_3(moe(rms_norm_2(h)))`` (model.py DecoderLayer)."""
    # RMSNorm: scale * x * rsqrt(mean(x²) + eps) in float32, the scale used as is (no 1 + scale).
    def norm(name: str, x: jax.Array) -> jax.Array:
        return blocks.rms_norm(x, params[f"{name}/scale"], config.rms_norm_eps)

    h = x_BxTxD
    h = h + norm("rms_norm_1", _attention(config, params, norm("rms_norm", h), context))
    return h + norm("rms_norm_3", _moe(config, params, norm("rms_norm_2", h)))


def head(config: Config, params: Params, x_BxTxD: jax.Array) -> jax.Array:
    """Final RMSNorm, then the tied embedding transposed, times ``output_multiplier_scale``; float32 logits."""
    h = blocks.rms_norm(x_BxTxD, params[FINAL_NORM], config.rms_norm_eps)
    logits = blocks.linear(h, _weight(params, EMBEDDING, h.dtype))  # InOutEmbed.decode: h @ embeddings.T
    return (logits * jnp.asarray(config.output_multiplier_scale, h.dtype)).astype(jnp.float32)


# --- pieces -----------------------------------------------------------------------------------------------


def _weight(params: Params, name: str, dtype: Any) -> jax.Array:
    """A weight in ``dtype``: int8 with scales dequantized blockwise, a float weight cast."""
    weight = params[name]
    scales = params.get(name + SCALES_SUFFIX)
    if scales is not None:
        return dequantize_int8_jax(weight, scales, dtype)
    return _float_weight(name, weight, dtype)


def _float_weight(name: str, weight: jax.Array, dtype: Any) -> jax.Array:
    if not jnp.issubdtype(weight.dtype, jnp.floating):
        raise MalformedInput("grok-leaf-kind-mismatch", f"{name} is {weight.dtype} without its scales")
    return weight.astype(dtype)


def _in_out(x: jax.Array, w_IxO: jax.Array) -> jax.Array:
    """``x @ w`` for a Haiku (in, out) weight, in full float32 precision on every accelerator."""
    return blocks.einsum("...i,io->...o", x, w_IxO)


def _rope(x_BxTxNxK: jax.Array, context: Context) -> jax.Array:
    """Rotate-half RoPE over the whole key size, computed in float32 as model.py does for bf16 inputs."""
    rotated = blocks.apply_rope(x_BxTxNxK.astype(jnp.float32), context.cos_TxR2, context.sin_TxR2)
    return rotated.astype(x_BxTxNxK.dtype)


def _attention(config: Config, params: Params, x_BxTxD: jax.Array, context: Context) -> jax.Array:
    """GQA with logits ``q·k * attn_output_multiplier`` capped by ``30 tanh(x / 30)``, then masked.

    Masked logits become float32's minimum where model.py writes -1e30: both make a row whose keys are all
    masked (a pad token in first position) a uniform softmax, and both vanish next to any unmasked key.
    """
    batch, seq_len, _ = x_BxTxD.shape
    dtype = x_BxTxD.dtype

    def project(name: str, heads: int) -> jax.Array:
        y = _in_out(x_BxTxD, _weight(params, f"multi_head_attention/{name}/w", dtype))
        return y.reshape(batch, seq_len, heads, config.key_size)

    q_BxTxNxK = _rope(project("query", config.num_q_heads), context)
    k_BxSxKxK = _rope(project("key", config.num_kv_heads), context)
    v_BxSxKxK = project("value", config.num_kv_heads)
    out_BxTxNxK = blocks.attention(
        q_BxTxNxK,
        k_BxSxKxK,
        v_BxSxKxK,
        context.mask_Bx1x1xTxS,
        scale=config.attn_output_multiplier,
        softcap=config.max_attn_value,
    )
    out_BxTxNK = out_BxTxNxK.reshape(batch, seq_len, config.num_q_heads * config.key_size)
    return _in_out(out_BxTxNK, _weight(params, "multi_head_attention/linear/w", dtype))


def _moe(config: Config, params: Params, x_BxTxD: jax.Array) -> jax.Array:
    """Router softmax over all experts in float32, top-k gates *not* renormalised, GeGLU experts."""
    dtype = x_BxTxD.dtype
    router_DxE = _float_weight("router/w", params["router/w"], jnp.float32)
    probs_BxTxE = jax.nn.softmax(_in_out(x_BxTxD.astype(jnp.float32), router_DxE), axis=-1)
    # The gates are the chosen probabilities themselves, selected with an integer one-hot rather than
    # multiplied by a float one (an accelerator's default matmul precision could round them).
    _, chosen_BxTxK = jax.lax.top_k(probs_BxTxE, config.num_selected_experts)
    selected_BxTxE = jax.nn.one_hot(chosen_BxTxK, config.num_experts, dtype=jnp.int32).sum(axis=-2) > 0

    names = ("moe/linear/w", "moe/linear_v/w", "moe/linear_1/w")
    stacked: dict[str, jax.Array] = {}
    for name in names:
        weight = params[name]
        stacked[name] = weight
        scales = params.get(name + SCALES_SUFFIX)
        if scales is not None:
            stacked[name + SCALES_SUFFIX] = _per_expert(scales, weight.shape)
    stacked["gate"] = jnp.moveaxis(probs_BxTxE, -1, 0)
    stacked["selected"] = jnp.moveaxis(selected_BxTxE, -1, 0)

    def one_expert(total_BxTxD: jax.Array, expert: Mapping[str, jax.Array]) -> tuple[jax.Array, None]:
        linear, linear_v, linear_1 = (_weight(expert, name, dtype) for name in names)
        hidden = jax.nn.gelu(_in_out(x_BxTxD, linear), approximate=True) * _in_out(x_BxTxD, linear_v)
        out_BxTxD = _in_out(hidden, linear_1).astype(jnp.float32)
        # Only where chosen: an unchosen expert's output never reaches the sum, not even as 0 * inf.
        contribution = jnp.where(expert["selected"][..., None], expert["gate"][..., None] * out_BxTxD, 0.0)
        return total_BxTxD + contribution, None

    total, _ = jax.lax.scan(one_expert, jnp.zeros(x_BxTxD.shape, jnp.float32), stacked)
    return total.astype(dtype)


def _per_expert(scales: jax.Array, weight_shape: tuple[int, ...]) -> jax.Array:
    """Scales with one leading row per expert, so ``lax.scan`` can slice them with their weight."""
    padded = scales.reshape((1,) * (len(weight_shape) - scales.ndim) + scales.shape)
    if padded.ndim != len(weight_shape) or padded.shape[0] not in (1, weight_shape[0]):
        raise MalformedInput(
            "tensor-scale-shape-mismatch",
            f"scales of shape {list(scales.shape)} do not fit stacked experts {list(weight_shape)}",
        )
    return jnp.broadcast_to(padded, (weight_shape[0], *padded.shape[1:]))
