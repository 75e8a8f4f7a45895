"""GPT-2's forward pass (transformers ``GPT2LMHeadModel``): learned positions, pre-LayerNorm blocks, tied head.

Conv1D weights are (in, out), so projections are ``x @ w + b`` with no transpose; ``c_attn`` holds
[q | k | v] along its columns. The stored causal-mask buffers (``attn.bias``, ``attn.masked_bias``) are
ignored: the mask is built here. Activations follow ``embed``'s ``dtype`` (float32 by default); LayerNorm
and the softmax run in float32.
"""

from __future__ import annotations

from typing import Any, Hashable, NamedTuple

import jax
import jax.numpy as jnp

from openaudit.families.gpt2 import Config
from openaudit.run.model import LayerSlot, Params
from openaudit.run import layers as blocks

FAMILIES = ("gpt2",)

_LAYER_NAMES = (
    "ln_1.weight",
    "ln_1.bias",
    "attn.c_attn.weight",
    "attn.c_attn.bias",
    "attn.c_proj.weight",
    "attn.c_proj.bias",
    "ln_2.weight",
    "ln_2.bias",
    "mlp.c_fc.weight",
    "mlp.c_fc.bias",
    "mlp.c_proj.weight",
    "mlp.c_proj.bias",
)


class Context(NamedTuple):
    positions_T: jax.Array
    causal_TxS: jax.Array


def layers(config: Config) -> tuple[LayerSlot, ...]:
    """One kind for every block, unless scores are also divided by the layer's index + 1: then the kind
    is that index (a static divisor, one compiled function per layer)."""
    return tuple(
        LayerSlot(f"h.{index}.", index if config.scale_attn_by_inverse_layer_idx else None)
        for index in range(config.n_layer)
    )


def global_names(config: Config) -> tuple[str, ...]:
    names = ("wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias")
    return names + (("lm_head.weight",) if config.lm_head and not config.tie_word_embeddings else ())


def layer_names(config: Config, kind: Hashable = None) -> tuple[str, ...]:
    return _LAYER_NAMES


def prepare(config: Config, tokens_BxT: jax.Array) -> Context:
    seq_len = tokens_BxT.shape[1]
    if seq_len > config.n_positions:
        raise ValueError(f"{seq_len} tokens exceed GPT-2's {config.n_positions} learned positions")
    return Context(jnp.arange(seq_len), blocks.causal_mask(seq_len))


def embed(config: Config, params: Params, tokens_BxT: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
    """Word plus learned position embeddings (positions 0..T-1), in ``dtype``."""
    seq_len = tokens_BxT.shape[1]
    words_BxTxD = jnp.take(params["wte.weight"], tokens_BxT, axis=0).astype(dtype)
    return words_BxTxD + params["wpe.weight"][:seq_len].astype(dtype)[None]


def layer(config: Config, params: Params, x_BxTxD: jax.Array, context: Context, kind: Hashable = None) -> jax.Array:
    """``h = x + attn(ln_1(x))``; ``h + mlp(ln_2(h))`` (transformers GPT2Block)."""
    h = x_BxTxD + _attention(config, params, _layer_norm(config, params, "ln_1", x_BxTxD), context, kind)
    act = blocks.activation(config.activation)
    hidden = act(_conv1d(params, "mlp.c_fc", _layer_norm(config, params, "ln_2", h)))
    return h + _conv1d(params, "mlp.c_proj", hidden)


def head(config: Config, params: Params, x_BxTxD: jax.Array) -> jax.Array:
    """Logits (float32) from ``lm_head.weight`` when it is a separate tensor, else the tied ``wte``."""
    h = _layer_norm(config, params, "ln_f", x_BxTxD)
    untied = not config.tie_word_embeddings and "lm_head.weight" in params
    return blocks.linear(h, params["lm_head.weight" if untied else "wte.weight"]).astype(jnp.float32)


def _layer_norm(config: Config, params: Params, name: str, x_BxTxD: jax.Array) -> jax.Array:
    return blocks.layer_norm(x_BxTxD, params[f"{name}.weight"], params[f"{name}.bias"], config.layer_norm_epsilon)


def _conv1d(params: Params, name: str, x_BxTxI: jax.Array) -> jax.Array:
    """transformers Conv1D: ``x @ w + b`` with ``w`` stored (in, out)."""
    y = blocks.einsum("...i,io->...o", x_BxTxI, params[f"{name}.weight"].astype(x_BxTxI.dtype))
    return y + params[f"{name}.bias"].astype(y.dtype)


def _attention(config: Config, params: Params, x_BxTxD: jax.Array, context: Context, kind: Hashable) -> jax.Array:
    batch, seq_len, width = x_BxTxD.shape
    qkv_BxTx3D = _conv1d(params, "attn.c_attn", x_BxTxD)
    q, k, v = (
        part.reshape(batch, seq_len, config.n_head, config.head_dim) for part in jnp.split(qkv_BxTx3D, 3, axis=-1)
    )
    scale = config.head_dim**-0.5 if config.scale_attn_weights else 1.0
    if config.scale_attn_by_inverse_layer_idx:
        scale /= kind + 1  # transformers: scores / float(layer_idx + 1)
    out_BxTxNxH = blocks.attention(q, k, v, context.causal_TxS, scale=scale)
    return _conv1d(params, "attn.c_proj", out_BxTxNxH.reshape(batch, seq_len, width))
