"""BERT's forward pass (transformers ``BertModel`` / ``BertForMaskedLM``): a post-LayerNorm encoder.

Embeddings are word + token type (type 0 unless ``embed`` is given types) + learned position, then LayerNorm; each
layer is ``a = LN(x + attn(x))``, ``LN(a + ffn(a))`` with bidirectional attention over every position
(no padding mask: as transformers without an ``attention_mask``). ``head`` returns the masked-LM logits
through ``cls.predictions`` (dense, activation, LayerNorm, then the decoder tied to the word embeddings
plus ``cls.predictions.bias``) when the checkpoint has that head, else the final hidden states, which
are also the input of ``head``: the run's encoder check compares both. Only absolute positions are
supported. Activations follow ``embed``'s ``dtype`` (float32 by default); LayerNorm and the softmax run
in float32.
"""

from __future__ import annotations

from typing import Any, Hashable, NamedTuple

import jax
import jax.numpy as jnp

from openaudit.families.bert import Config
from openaudit.run import layers as blocks
from openaudit.run.model import LayerSlot, Params

FAMILIES = ("bert",)

WORDS = "embeddings.word_embeddings.weight"
POSITIONS = "embeddings.position_embeddings.weight"
TOKEN_TYPES = "embeddings.token_type_embeddings.weight"
EMBEDDING_NORM = "embeddings.LayerNorm"
# The masked-LM head; the decoder weight is stored only when untied, its bias under either name.
MLM_TRANSFORM = "cls.predictions.transform"
MLM_DECODER = "cls.predictions.decoder.weight"
MLM_BIAS = "cls.predictions.bias"
MLM_BIAS_ALIAS = "cls.predictions.decoder.bias"
MLM_HEAD_NAMES: tuple[str, ...] = (
    f"{MLM_TRANSFORM}.dense.weight",
    f"{MLM_TRANSFORM}.dense.bias",
    f"{MLM_TRANSFORM}.LayerNorm.weight",
    f"{MLM_TRANSFORM}.LayerNorm.bias",
    MLM_BIAS,
)
# Classes whose checkpoints carry the masked-LM head (BertForPreTraining's also holds the NSP head).
MLM_ARCHITECTURES = ("BertForMaskedLM", "BertForPreTraining", "BertLMHeadModel")

_LAYER_NAMES = (
    "attention.self.query.weight",
    "attention.self.query.bias",
    "attention.self.key.weight",
    "attention.self.key.bias",
    "attention.self.value.weight",
    "attention.self.value.bias",
    "attention.output.dense.weight",
    "attention.output.dense.bias",
    "attention.output.LayerNorm.weight",
    "attention.output.LayerNorm.bias",
    "intermediate.dense.weight",
    "intermediate.dense.bias",
    "output.dense.weight",
    "output.dense.bias",
    "output.LayerNorm.weight",
    "output.LayerNorm.bias",
)


class Context(NamedTuple):
    positions_T: jax.Array


def layers(config: Config) -> tuple[LayerSlot, ...]:
    return tuple(LayerSlot(f"encoder.layer.{index}.") for index in range(config.num_layers))


def global_names(config: Config) -> tuple[str, ...]:
    """The embeddings, and the masked-LM head when the declared class has one (it may still be absent:
    ``head`` then returns the hidden states)."""
    names = (WORDS, POSITIONS, TOKEN_TYPES, f"{EMBEDDING_NORM}.weight", f"{EMBEDDING_NORM}.bias")
    if not any(name in MLM_ARCHITECTURES for name in config.architectures):
        return names
    # The output bias may be stored under either name (cls.predictions.bias or its decoder.bias alias).
    return names + MLM_HEAD_NAMES + (MLM_BIAS_ALIAS,) + (() if config.tie_word_embeddings else (MLM_DECODER,))


def layer_names(config: Config, kind: Hashable = None) -> tuple[str, ...]:
    return _LAYER_NAMES


def prepare(config: Config, tokens_BxT: jax.Array) -> Context:
    if config.relative_positions:
        raise NotImplementedError(
            f"the BERT forward pass supports absolute positions, not {config.position_embedding_type!r}"
        )
    seq_len = tokens_BxT.shape[1]
    if seq_len > config.max_position_embeddings:
        raise ValueError(f"{seq_len} tokens exceed BERT's {config.max_position_embeddings} learned positions")
    return Context(jnp.arange(seq_len))


def embed(
    config: Config,
    params: Params,
    tokens_BxT: jax.Array,
    dtype: Any = jnp.float32,
    token_types_BxT: jax.Array | None = None,
) -> jax.Array:
    """LayerNorm(word + token type + position), in ``dtype`` (transformers BertEmbeddings).

    Without ``token_types_BxT`` every token is of type 0 (one segment), as transformers assumes.
    """
    seq_len = tokens_BxT.shape[1]
    words_BxTxD = jnp.take(params[WORDS], tokens_BxT, axis=0).astype(dtype)
    if token_types_BxT is None:
        types_BxTxD = params[TOKEN_TYPES][0].astype(dtype)[None, None]
    else:
        types_BxTxD = jnp.take(params[TOKEN_TYPES], token_types_BxT, axis=0).astype(dtype)
    positions_TxD = params[POSITIONS][:seq_len].astype(dtype)
    summed = (words_BxTxD + types_BxTxD) + positions_TxD[None]
    return _layer_norm(config, params, EMBEDDING_NORM, summed)


def layer(config: Config, params: Params, x_BxTxD: jax.Array, context: Context, kind: Hashable = None) -> jax.Array:
    """transformers BertLayer: post-LN attention block, then post-LN feed-forward block."""
    attended = _layer_norm(config, params, "attention.output.LayerNorm", x_BxTxD + _attention(config, params, x_BxTxD))
    hidden = blocks.activation(config.activation)(_linear(params, "intermediate.dense", attended))
    return _layer_norm(config, params, "output.LayerNorm", attended + _linear(params, "output.dense", hidden))


def has_mlm_head(params: Params) -> bool:
    """True when ``params`` hold the masked-LM head (transform and bias)."""
    return all(name in params for name in MLM_HEAD_NAMES[:4]) and (MLM_BIAS in params or MLM_BIAS_ALIAS in params)


def head(config: Config, params: Params, x_BxTxD: jax.Array) -> jax.Array:
    """Masked-LM logits (B, T, V), float32, when the checkpoint has that head; else the final hidden
    states (B, T, D) unchanged (BERT has no final norm: the last layer's output is the encoding)."""
    if not has_mlm_head(params):
        return x_BxTxD
    return mlm_logits(config, params, x_BxTxD)


def mlm_logits(config: Config, params: Params, x_BxTxD: jax.Array) -> jax.Array:
    """transformers BertLMPredictionHead: ``decoder(LN(act(dense(x)))) + bias``, decoder tied to the words."""
    transformed = blocks.activation(config.activation)(_linear(params, f"{MLM_TRANSFORM}.dense", x_BxTxD))
    transformed = _layer_norm(config, params, f"{MLM_TRANSFORM}.LayerNorm", transformed)
    untied = not config.tie_word_embeddings and MLM_DECODER in params
    bias = params[MLM_BIAS] if MLM_BIAS in params else params[MLM_BIAS_ALIAS]
    return blocks.linear(transformed, params[MLM_DECODER if untied else WORDS], bias).astype(jnp.float32)


def _layer_norm(config: Config, params: Params, name: str, x_BxTxD: jax.Array) -> jax.Array:
    return blocks.layer_norm(x_BxTxD, params[f"{name}.weight"], params[f"{name}.bias"], config.layer_norm_eps)


def _linear(params: Params, name: str, x: jax.Array) -> jax.Array:
    return blocks.linear(x, params[f"{name}.weight"], params[f"{name}.bias"])


def _attention(config: Config, params: Params, x_BxTxD: jax.Array) -> jax.Array:
    """Bidirectional multi-head attention, then the output projection (its LayerNorm is the caller's)."""
    batch, seq_len, width = x_BxTxD.shape

    def heads(name: str) -> jax.Array:
        projected = _linear(params, f"attention.self.{name}", x_BxTxD)
        return projected.reshape(batch, seq_len, config.num_heads, config.head_dim)

    out_BxTxNxH = blocks.attention(heads("query"), heads("key"), heads("value"), None, scale=config.head_dim**-0.5)
    return _linear(params, "attention.output.dense", out_BxTxNxH.reshape(batch, seq_len, width))
