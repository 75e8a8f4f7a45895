"""The forward pass of every Llama-layout decoder (``openaudit.families._decoder.DecoderConfig``).

One set of pure functions serves llama, mistral, mixtral, qwen2, qwen3, gemma, gemma2, gemma3, phi3 and
olmo2: what differs between them is read from the config's flags, never from the family name (biases,
q/k norms per head or over the whole projection, pre / sandwich / post norm placement, Gemma's
``1 + w`` norms and embedding multiplier, query scaling, soft-caps, sliding windows per layer kind,
RoPE scaling and Gemma 3's local base, fused qkv / gate_up, top-k experts, tied embeddings).

It implements ``openaudit.run.model.ForwardModel``. Parameters are keyed by canonical names
(``openaudit.inspect.tensor_names.canonical``: ``embed_tokens.weight``, ``layers.3.self_attn.q_proj.weight``);
a layer's function sees the names after ``layers.N.``. The layer kind is the layer's attention type
(``full_attention`` / ``sliding_attention``), static under ``jax.jit``: all layers of one kind share a
compiled function. Activations are float32 unless ``embed`` is asked for another dtype; every layer
then computes in the dtype of its input (norm statistics, softmax and routing stay float32).

The formulas are transformers' (v5.24 modelling files of each family), checked against logits from
transformers in ``tests/test_forward_decoder.py``. ``canonical_from_gguf`` maps llama.cpp's tensor
names back to these and undoes the q/k row permutation that llama.cpp's converter applies.
"""

from __future__ import annotations

import re
from typing import Any, Hashable, Mapping

import jax.numpy as jnp
import numpy as np

from openaudit.families._decoder import FULL, POST_NORM, PRE_NORM, SANDWICH_NORM, SLIDING, DecoderConfig
from openaudit.families.spec import ConfigError
from openaudit.run import layers as L
from openaudit.run.model import LayerSlot

FAMILIES = ("llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3", "olmo2")

Array = Any
Params = Mapping[str, Array]

EMBED = "embed_tokens.weight"
FINAL_NORM = "norm.weight"
LM_HEAD = "lm_head.weight"


# ---------------------------------------------------------------------------------------------- structure


def layers(config: DecoderConfig) -> tuple[LayerSlot, ...]:
    return tuple(LayerSlot(f"layers.{index}.", kind) for index, kind in enumerate(config.layer_types))


def global_names(config: DecoderConfig) -> tuple[str, ...]:
    names = (EMBED, FINAL_NORM)
    return names + (LM_HEAD,) if config.has_output_head else names


def layer_names(config: DecoderConfig, kind: Hashable) -> tuple[str, ...]:
    """Every tensor one layer uses (the same for both kinds: only masks and RoPE differ)."""
    names: list[str] = []
    if config.norm_layout != POST_NORM:
        names.append("input_layernorm.weight")
    attn = "self_attn."
    projections = ("qkv_proj",) if config.fused_qkv else ("q_proj", "k_proj", "v_proj")
    for projection in projections:
        names.append(f"{attn}{projection}.weight")
        if config.qkv_bias:
            names.append(f"{attn}{projection}.bias")
    names.append(f"{attn}o_proj.weight")
    if config.o_bias:
        names.append(f"{attn}o_proj.bias")
    if config.qk_norm:
        names.extend((f"{attn}q_norm.weight", f"{attn}k_norm.weight"))
    names.append("post_attention_layernorm.weight")
    if config.norm_layout == SANDWICH_NORM:
        names.append("pre_feedforward_layernorm.weight")
    if config.norm_layout in (SANDWICH_NORM, POST_NORM):
        names.append("post_feedforward_layernorm.weight")
    if config.num_experts:
        names.append("block_sparse_moe.gate.weight")
        for expert in range(config.num_experts):
            names.extend(f"block_sparse_moe.experts.{expert}.{w}.weight" for w in ("w1", "w2", "w3"))
    elif config.fused_gate_up:
        names.extend(("mlp.gate_up_proj.weight", "mlp.down_proj.weight"))
    else:
        for projection in ("gate_proj", "up_proj", "down_proj"):
            names.append(f"mlp.{projection}.weight")
            if config.mlp_bias:
                names.append(f"mlp.{projection}.bias")
    return tuple(names)


# ---------------------------------------------------------------------------------------------- RoPE


def rotary_dim(config: DecoderConfig) -> int:
    """Rotary features per head; transformers 5 may keep ``partial_rotary_factor`` inside the rope dict."""
    factor = dict(config.rope_scaling or ()).get("partial_rotary_factor", config.partial_rotary_factor)
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor <= 1:
        raise ConfigError("config.json: partial_rotary_factor must be a number in (0, 1]")
    return int(config.head_dim * factor)


def rope_table(config: DecoderConfig, kind: Hashable, seq_len: int) -> tuple[np.ndarray, float]:
    """(inverse frequencies, attention factor) of a layer kind: Gemma 3's sliding layers use their own base."""
    if kind == SLIDING and config.rope_local_theta is not None:
        theta, scaling = config.rope_local_theta, None
    else:
        theta, scaling = config.rope_theta, dict(config.rope_scaling or ())
    return L.rope_frequencies(
        rotary_dim(config),
        theta,
        scaling,
        seq_len=seq_len,
        max_position_embeddings=config.max_position_embeddings,
        original_max_position_embeddings=getattr(config, "original_max_position_embeddings", None),
    )


# ---------------------------------------------------------------------------------------------- contract


def prepare(config: DecoderConfig, tokens_BxT: Array) -> dict[str, dict[str, Array]]:
    """Per layer kind: the attention mask (T, T) and RoPE cos/sin (T, R/2) for positions 0..T-1."""
    length = tokens_BxT.shape[1]
    positions_T = jnp.arange(length, dtype=jnp.int32)
    context: dict[str, dict[str, Array]] = {}
    for kind in sorted(set(config.layer_types)):
        window = config.sliding_window if kind == SLIDING else None
        inv_freq, factor = rope_table(config, kind, length)
        cos, sin = L.rope_angles(positions_T, inv_freq, factor)
        context[kind] = {"mask": L.causal_mask(length, window), "cos": cos, "sin": sin}
    return context


def embed(config: DecoderConfig, params: Params, tokens_BxT: Array, dtype: Any = jnp.float32) -> Array:
    """Token embeddings in ``dtype``, times ``embedding_multiplier`` rounded to that dtype (Gemma)."""
    x_BxTxD = jnp.take(jnp.asarray(params[EMBED]), tokens_BxT, axis=0).astype(dtype)
    if config.embedding_multiplier != 1.0:
        x_BxTxD = x_BxTxD * jnp.asarray(config.embedding_multiplier, dtype)
    return x_BxTxD


def layer(config: DecoderConfig, params: Params, x_BxTxD: Array, context: Any, kind: Hashable) -> Array:
    def norm(name: str, x: Array) -> Array:
        return L.rms_norm(x, params[f"{name}.weight"], config.rms_norm_eps, config.norm_weight_offset)

    tables = context[kind]
    if config.norm_layout == PRE_NORM:
        h = x_BxTxD + _attention(config, params, norm("input_layernorm", x_BxTxD), tables)
        return h + _feed_forward(config, params, norm("post_attention_layernorm", h))
    if config.norm_layout == SANDWICH_NORM:
        attn = _attention(config, params, norm("input_layernorm", x_BxTxD), tables)
        h = x_BxTxD + norm("post_attention_layernorm", attn)
        ff = _feed_forward(config, params, norm("pre_feedforward_layernorm", h))
        return h + norm("post_feedforward_layernorm", ff)
    if config.norm_layout == POST_NORM:
        h = x_BxTxD + norm("post_attention_layernorm", _attention(config, params, x_BxTxD, tables))
        return h + norm("post_feedforward_layernorm", _feed_forward(config, params, h))
    raise ConfigError(f"unknown norm layout {config.norm_layout!r}")


def head(config: DecoderConfig, params: Params, x_BxTxD: Array) -> Array:
    """Float32 logits (B, T, V) after the final norm, soft-capped when the config says so.

    A bare ``*Model`` checkpoint with neither an output head nor tied embeddings gives the normed final
    hidden states (B, T, D) instead.
    """
    h = L.rms_norm(x_BxTxD, params[FINAL_NORM], config.rms_norm_eps, config.norm_weight_offset)
    if config.has_output_head:
        weight = params[LM_HEAD]
    elif config.tie_word_embeddings:
        weight = params[EMBED]
    else:
        return h
    logits_BxTxV = L.linear(h, jnp.asarray(weight)).astype(jnp.float32)
    return L.softcap(logits_BxTxV, config.final_logit_softcapping)


# ---------------------------------------------------------------------------------------------- sub-layers


def _attention(config: DecoderConfig, params: Params, x_BxTxD: Array, tables: Mapping[str, Array]) -> Array:
    def p(name: str) -> Array | None:
        return params.get(f"self_attn.{name}")

    q_size, kv_size = config.q_size, config.kv_size
    if config.fused_qkv:
        qkv = L.linear(x_BxTxD, p("qkv_proj.weight"), p("qkv_proj.bias"))
        q, k, v = qkv[..., :q_size], qkv[..., q_size : q_size + kv_size], qkv[..., q_size + kv_size :]
    else:
        q = L.linear(x_BxTxD, p("q_proj.weight"), p("q_proj.bias"))
        k = L.linear(x_BxTxD, p("k_proj.weight"), p("k_proj.bias"))
        v = L.linear(x_BxTxD, p("v_proj.weight"), p("v_proj.bias"))
    eps, offset = config.rms_norm_eps, config.norm_weight_offset
    if config.qk_norm == "full":  # OLMo 2: over the whole projection, before the split into heads
        q, k = L.rms_norm(q, p("q_norm.weight"), eps, offset), L.rms_norm(k, p("k_norm.weight"), eps, offset)
    batch, length = x_BxTxD.shape[:2]
    q_BxTxNxH = q.reshape(batch, length, config.num_heads, config.head_dim)
    k_BxTxKxH = k.reshape(batch, length, config.num_kv_heads, config.head_dim)
    v_BxTxKxH = v.reshape(batch, length, config.num_kv_heads, config.head_dim)
    if config.qk_norm == "head":  # Qwen3, Gemma 3: per head, before RoPE
        q_BxTxNxH = L.rms_norm(q_BxTxNxH, p("q_norm.weight"), eps, offset)
        k_BxTxKxH = L.rms_norm(k_BxTxKxH, p("k_norm.weight"), eps, offset)
    q_BxTxNxH = L.apply_rope(q_BxTxNxH, tables["cos"], tables["sin"])
    k_BxTxKxH = L.apply_rope(k_BxTxKxH, tables["cos"], tables["sin"])
    out_BxTxNxH = L.attention(
        q_BxTxNxH,
        k_BxTxKxH,
        v_BxTxKxH,
        tables["mask"],
        scale=config.query_scale,
        softcap=config.attn_logit_softcapping,
    )
    return L.linear(out_BxTxNxH.reshape(batch, length, q_size), p("o_proj.weight"), p("o_proj.bias"))


def _feed_forward(config: DecoderConfig, params: Params, x_BxTxD: Array) -> Array:
    act = L.activation(config.activation)
    if config.num_experts:
        moe = "block_sparse_moe."
        gates_BxTxE = L.top_k_gates(
            L.linear(x_BxTxD, params[f"{moe}gate.weight"]), config.num_experts_per_tok, config.moe_renormalize
        )

        def expert(index: int):
            prefix = f"{moe}experts.{index}."
            weights = tuple(params[f"{prefix}{w}.weight"] for w in ("w1", "w3", "w2"))  # gate, up, down
            return lambda x: L.gated_mlp(x, *weights, act)

        return L.mixture_of_experts(x_BxTxD, gates_BxTxE, [expert(e) for e in range(config.num_experts)])
    if config.fused_gate_up:
        gate_up = L.linear(x_BxTxD, params["mlp.gate_up_proj.weight"])
        ff = config.intermediate_size
        return L.linear(act(gate_up[..., :ff]) * gate_up[..., ff:], params["mlp.down_proj.weight"])
    biases = tuple(params.get(f"mlp.{name}.bias") for name in ("gate_proj", "up_proj", "down_proj"))
    return L.gated_mlp(
        x_BxTxD,
        params["mlp.gate_proj.weight"],
        params["mlp.up_proj.weight"],
        params["mlp.down_proj.weight"],
        act,
        biases,  # type: ignore[arg-type]
    )


# ---------------------------------------------------------------------------------------------- GGUF names


# llama.cpp's converter (convert_hf_to_gguf.py, ``LlamaModel.modify_tensors``) permutes the rows of
# q_proj and k_proj (weights and biases) of the models it writes as general.architecture "llama"
# (Llama, Mistral, Mixtral), because llama.cpp applies RoPE to adjacent feature pairs ("normal" rope
# mode) where transformers rotates halves:
#     permute(w, n_head) = w.reshape(n_head, 2, rows // n_head // 2, *rest).swapaxes(1, 2).reshape(w.shape)
# with n_head the kv head count for k_proj (``LlamaModel.permute``). Its other architectures here
# (qwen2, qwen3, gemma*, phi3, olmo2) use the "neox" rope mode and store rows unpermuted.
GGUF_PERMUTED_ARCHITECTURES = ("llama",)

# llama.cpp's Gemma converters add 1 to every ``*norm.weight`` so that its RMSNorm multiplies by the
# stored value (``GemmaModel``/``Gemma2Model`` ``data_torch + 1``, Gemma 3 ``norm_shift``): here the
# stored value minus the config's ``norm_weight_offset`` gives back transformers' weight.

_GGUF_GLOBAL = {"token_embd.weight": EMBED, "output_norm.weight": FINAL_NORM, "output.weight": LM_HEAD}
_GGUF_LAYER = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_qkv.weight": "self_attn.qkv_proj.weight",
    "attn_qkv.bias": "self_attn.qkv_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_output.bias": "self_attn.o_proj.bias",
    "attn_q_norm.weight": "self_attn.q_norm.weight",
    "attn_k_norm.weight": "self_attn.k_norm.weight",
    "post_attention_norm.weight": "post_attention_layernorm.weight",
    "post_ffw_norm.weight": "post_feedforward_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_gate.bias": "mlp.gate_proj.bias",
    "ffn_down.weight": "mlp.down_proj.weight",
    "ffn_down.bias": "mlp.down_proj.bias",
    "ffn_gate_inp.weight": "block_sparse_moe.gate.weight",
}
_GGUF_STACKED_EXPERTS = {"ffn_gate_exps.weight": "w1", "ffn_up_exps.weight": "w3", "ffn_down_exps.weight": "w2"}
_GGUF_SPLIT_EXPERT = re.compile(r"^ffn_(gate|up|down)\.(\d+)\.weight$")  # older per-expert files
_GGUF_SPLIT_NAMES = {"gate": "w1", "up": "w3", "down": "w2"}
_GGUF_BUFFERS = ("rope_freqs.weight", "rope_factors_long.weight", "rope_factors_short.weight")
_GGUF_BLOCK = re.compile(r"^blk\.(\d+)\.(.+)$")


def llama_cpp_permute(rows: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's ``LlamaModel.permute`` of q/k rows (for tests and for writing GGUF names)."""
    width = rows.shape[0] // heads
    return rows.reshape(heads, 2, width // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def llama_cpp_unpermute(rows: np.ndarray, heads: int) -> np.ndarray:
    """The inverse of :func:`llama_cpp_permute`: adjacent pairs back to rotate-half halves."""
    width = rows.shape[0] // heads
    return rows.reshape(heads, width // 2, 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def canonical_from_gguf(
    tensors: Mapping[str, np.ndarray], config: DecoderConfig, architecture: str
) -> dict[str, np.ndarray]:
    """GGUF tensors (llama.cpp names, numpy shapes) as canonical names in transformers' layout.

    ``architecture`` is the file's ``general.architecture``: for "llama" the q/k rows are un-permuted.
    Stacked experts (E, rows, cols) become one tensor per expert; llama.cpp's rope tables are dropped
    (the config carries the same numbers). An unknown name raises ``KeyError`` so that nothing is
    silently left out.
    """
    permuted = architecture in GGUF_PERMUTED_ARCHITECTURES
    result: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        if name in _GGUF_GLOBAL:
            result[_GGUF_GLOBAL[name]] = value
            continue
        if name in _GGUF_BUFFERS:
            continue
        match = _GGUF_BLOCK.match(name)
        if not match:
            raise KeyError(f"GGUF tensor {name!r} has no counterpart in the {config.family} layout")
        index, rest = match.groups()
        prefix = f"layers.{index}."
        if rest in _GGUF_STACKED_EXPERTS:
            which = _GGUF_STACKED_EXPERTS[rest]
            for expert in range(value.shape[0]):
                result[f"{prefix}block_sparse_moe.experts.{expert}.{which}.weight"] = value[expert]
            continue
        split = _GGUF_SPLIT_EXPERT.match(rest)
        if split:
            which = _GGUF_SPLIT_NAMES[split.group(1)]
            result[f"{prefix}block_sparse_moe.experts.{split.group(2)}.{which}.weight"] = value
            continue
        target = _gguf_layer_name(config, rest)
        if target is None:
            raise KeyError(f"GGUF tensor {name!r} has no counterpart in the {config.family} layout")
        if permuted and target.startswith(("self_attn.q_proj.", "self_attn.k_proj.")):
            heads = config.num_heads if target.startswith("self_attn.q_proj.") else config.num_kv_heads
            value = llama_cpp_unpermute(np.asarray(value), heads)
        if config.norm_weight_offset and target.endswith("norm.weight"):
            value = (np.asarray(value, np.float32) - np.float32(config.norm_weight_offset)).astype(value.dtype)
        result[prefix + target] = value
    if config.norm_weight_offset and FINAL_NORM in result:
        final = np.asarray(result[FINAL_NORM], np.float32)
        result[FINAL_NORM] = (final - np.float32(config.norm_weight_offset)).astype(result[FINAL_NORM].dtype)
    return result


def _gguf_layer_name(config: DecoderConfig, rest: str) -> str | None:
    if rest == "ffn_norm.weight":
        # The norm before the MLP: Llama's second norm, Gemma 2/3's pre-feedforward norm.
        sandwich = config.norm_layout == SANDWICH_NORM
        return "pre_feedforward_layernorm.weight" if sandwich else "post_attention_layernorm.weight"
    if rest in ("ffn_up.weight", "ffn_up.bias"):
        # Phi-3: llama.cpp keeps the fused [gate; up] under ffn_up.
        suffix = rest.split(".")[-1]
        return f"mlp.gate_up_proj.{suffix}" if config.fused_gate_up else f"mlp.up_proj.{suffix}"
    return _GGUF_LAYER.get(rest)


__all__ = [
    "FAMILIES",
    "FULL",
    "SLIDING",
    "layers",
    "global_names",
    "layer_names",
    "prepare",
    "embed",
    "layer",
    "head",
    "rotary_dim",
    "rope_table",
    "canonical_from_gguf",
    "llama_cpp_permute",
    "llama_cpp_unpermute",
]
