"""GPT-NeoX and Pythia's forward pass (transformers ``GPTNeoXForCausalLM``).

Biased LayerNorms; a fused ``attention.query_key_value`` whose output, viewed as (heads, 3 × head
size), holds [q_h | k_h | v_h] per head; rotate-half RoPE over the first ``rotary_ndims`` features of
each head; a parallel residual ``x + attn(ln1(x)) + mlp(ln2(x))`` when ``use_parallel_residual``, else
sequential; an untied ``embed_out`` head. Stored buffers (``attention.bias``, ``masked_bias``,
``rotary_emb.inv_freq``) are ignored. Activations follow ``embed``'s ``dtype`` (float32 by default);
LayerNorm and the softmax run in float32.
"""

from __future__ import annotations

from typing import Any, Hashable, NamedTuple

import jax
import jax.numpy as jnp

from openaudit.families.gpt_neox import Config
from openaudit.run import layers as blocks
from openaudit.run.model import LayerSlot, Params

FAMILIES = ("gpt_neox",)

EMBED = "embed_in.weight"
FINAL_NORM = "final_layer_norm"
OUTPUT = "embed_out.weight"


class Context(NamedTuple):
    causal_TxS: jax.Array
    cos_TxR2: jax.Array
    sin_TxR2: jax.Array


def layers(config: Config) -> tuple[LayerSlot, ...]:
    return tuple(LayerSlot(f"layers.{index}.") for index in range(config.num_layers))


def global_names(config: Config) -> tuple[str, ...]:
    names = (EMBED, f"{FINAL_NORM}.weight", f"{FINAL_NORM}.bias")
    return names + ((OUTPUT,) if config.lm_head and not config.tie_word_embeddings else ())


def layer_names(config: Config, kind: Hashable = None) -> tuple[str, ...]:
    """Every tensor a layer uses; the attention biases only when ``attention_bias``."""
    names = [
        "input_layernorm.weight",
        "input_layernorm.bias",
        "post_attention_layernorm.weight",
        "post_attention_layernorm.bias",
        "attention.query_key_value.weight",
        "attention.dense.weight",
    ]
    if config.attention_bias:
        names += ["attention.query_key_value.bias", "attention.dense.bias"]
    names += ["mlp.dense_h_to_4h.weight", "mlp.dense_h_to_4h.bias"]
    names += ["mlp.dense_4h_to_h.weight", "mlp.dense_4h_to_h.bias"]
    return tuple(names)


def rotary_ndims(config: Config) -> int:
    """Rotary features per head. transformers 5 keeps ``partial_rotary_factor`` inside ``rope_parameters``,
    which the family config carries as ``rope_scaling``; it wins over the top-level ``rotary_pct``."""
    factor = dict(config.rope_scaling or ()).get("partial_rotary_factor", config.rotary_pct)
    return int(config.head_dim * factor)


def prepare(config: Config, tokens_BxT: jax.Array) -> Context:
    seq_len = tokens_BxT.shape[1]
    inv_freq, attention_factor = blocks.rope_frequencies(
        rotary_ndims(config),
        config.rope_theta,
        dict(config.rope_scaling or ()),
        seq_len=seq_len,
        max_position_embeddings=config.max_position_embeddings,
    )
    cos_TxR2, sin_TxR2 = blocks.rope_angles(jnp.arange(seq_len), inv_freq, attention_factor)
    return Context(blocks.causal_mask(seq_len), cos_TxR2, sin_TxR2)


def embed(config: Config, params: Params, tokens_BxT: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
    return jnp.take(params[EMBED], tokens_BxT, axis=0).astype(dtype)


def layer(config: Config, params: Params, x_BxTxD: jax.Array, context: Context, kind: Hashable = None) -> jax.Array:
    """transformers GPTNeoXLayer: parallel ``x + attn + mlp`` or sequential ``h = x + attn; h + mlp(h)``."""

    def norm(name: str, x: jax.Array) -> jax.Array:
        return blocks.layer_norm(x, params[f"{name}.weight"], params[f"{name}.bias"], config.layer_norm_eps)

    attended = _attention(config, params, norm("input_layernorm", x_BxTxD), context)
    if config.use_parallel_residual:
        return x_BxTxD + attended + _mlp(config, params, norm("post_attention_layernorm", x_BxTxD))
    h = x_BxTxD + attended
    return h + _mlp(config, params, norm("post_attention_layernorm", h))


def head(config: Config, params: Params, x_BxTxD: jax.Array) -> jax.Array:
    """Float32 logits from ``embed_out`` (``embed_in`` when tied); a bare ``GPTNeoXModel`` checkpoint,
    with neither, gives the normed final hidden states."""
    h = blocks.layer_norm(
        x_BxTxD, params[f"{FINAL_NORM}.weight"], params[f"{FINAL_NORM}.bias"], config.layer_norm_eps
    )
    if OUTPUT in params and not config.tie_word_embeddings:
        weight = params[OUTPUT]
    elif config.tie_word_embeddings:
        weight = params[EMBED]
    else:
        return h
    return blocks.linear(h, weight).astype(jnp.float32)


def _attention(config: Config, params: Params, x_BxTxD: jax.Array, context: Context) -> jax.Array:
    batch, seq_len, width = x_BxTxD.shape
    heads, size = config.num_heads, config.head_dim
    qkv = blocks.linear(
        x_BxTxD, params["attention.query_key_value.weight"], params.get("attention.query_key_value.bias")
    )
    # Per head, not per projection: feature h·3S + j is q (j < S), k (S ≤ j < 2S) or v of head h.
    qkv_BxTxNx3S = qkv.reshape(batch, seq_len, heads, 3 * size)
    q, k, v = (qkv_BxTxNx3S[..., i * size : (i + 1) * size] for i in range(3))
    q = blocks.apply_rope(q, context.cos_TxR2, context.sin_TxR2)
    k = blocks.apply_rope(k, context.cos_TxR2, context.sin_TxR2)
    out_BxTxNxS = blocks.attention(q, k, v, context.causal_TxS, scale=size**-0.5)
    return blocks.linear(
        out_BxTxNxS.reshape(batch, seq_len, width), params["attention.dense.weight"], params.get("attention.dense.bias")
    )


def _mlp(config: Config, params: Params, x_BxTxD: jax.Array) -> jax.Array:
    return blocks.mlp(
        x_BxTxD,
        params["mlp.dense_h_to_4h.weight"],
        params["mlp.dense_h_to_4h.bias"],
        params["mlp.dense_4h_to_h.weight"],
        params["mlp.dense_4h_to_h.bias"],
        blocks.activation(config.activation),
    )
