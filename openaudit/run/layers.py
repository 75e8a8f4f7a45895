"""Pure JAX building blocks shared by the forward passes: norms, RoPE, attention, MLPs, experts.

Every function is ``f(arrays, static numbers) -> array``; weights are plain arrays in the layout their
checkpoints store (``nn.Linear``: (out, in)) and are cast to the activation dtype where they are used.
Reductions that lose precision in low-precision dtypes (norm statistics, softmax, routing) run in
float32, as transformers does. Matrix products ask for ``Precision.HIGHEST`` so that float32 stays
float32 on accelerators that would otherwise use TF32 or bf16 passes (a reference comparison at 1e-4
needs it; for bf16 activations it changes nothing).

Shapes are in names: B batch, T query positions, S key positions, D model width, N query heads,
K kv heads, G query heads per kv head, H head width, R rotary width, E experts, F MLP width.

RoPE numbers follow transformers' ``modeling_rope_utils`` (v5.24): the inverse frequencies are computed
once per (config, sequence length) with numpy in float32, outside the traced function, so that a jitted
layer sees them as constants.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from openaudit.families.spec import ConfigError

Array = jax.Array

einsum = partial(jnp.einsum, precision=jax.lax.Precision.HIGHEST)


# ---------------------------------------------------------------------------------------------- linear


def linear(x_BxTxI: Array, weight_OxI: Array, bias_O: Array | None = None) -> Array:
    """``x @ W.T + b`` with an ``nn.Linear`` weight (out, in), computed in the activation dtype."""
    y = einsum("...i,oi->...o", x_BxTxI, weight_OxI.astype(x_BxTxI.dtype))
    if bias_O is not None:
        y = y + bias_O.astype(y.dtype)
    return y


# ---------------------------------------------------------------------------------------------- norms


def rms_norm(x_BxTxD: Array, weight_D: Array, eps: float, offset: float = 0.0) -> Array:
    """``x / sqrt(mean(x^2) + eps) * (offset + w)`` in float32, returned in x's dtype.

    ``offset`` is 1 for Gemma's norms, whose stored weight is the deviation from 1.
    """
    x = x_BxTxD.astype(jnp.float32)
    normed = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps)
    return (normed * (offset + weight_D.astype(jnp.float32))).astype(x_BxTxD.dtype)


def layer_norm(x_BxTxD: Array, weight_D: Array | None, bias_D: Array | None, eps: float) -> Array:
    """LayerNorm over the last axis (biased variance, as torch), statistics in float32."""
    x = x_BxTxD.astype(jnp.float32)
    mean = jnp.mean(x, axis=-1, keepdims=True)
    centred = x - mean
    variance = jnp.mean(centred * centred, axis=-1, keepdims=True)
    y = centred * jax.lax.rsqrt(variance + eps)
    if weight_D is not None:
        y = y * weight_D.astype(jnp.float32)
    if bias_D is not None:
        y = y + bias_D.astype(jnp.float32)
    return y.astype(x_BxTxD.dtype)


# ---------------------------------------------------------------------------------------------- activations


def _gelu_tanh(x: Array) -> Array:
    return jax.nn.gelu(x, approximate=True)


def _gelu_erf(x: Array) -> Array:
    return jax.nn.gelu(x, approximate=False)


# transformers' ACT2FN names. gelu_new, gelu_fast and gelu_pytorch_tanh are the same tanh formula.
ACTIVATIONS: Mapping[str, Callable[[Array], Array]] = {
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "gelu": _gelu_erf,
    "gelu_new": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
}


def activation(name: str) -> Callable[[Array], Array]:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ConfigError(f"config.json: activation {name!r} is not supported by the forward pass") from None


# ---------------------------------------------------------------------------------------------- MLPs


def gated_mlp(
    x_BxTxD: Array,
    gate_FxD: Array,
    up_FxD: Array,
    down_DxF: Array,
    act: Callable[[Array], Array],
    biases: tuple[Array | None, Array | None, Array | None] = (None, None, None),
) -> Array:
    """``down(act(gate(x)) * up(x))``: SwiGLU / GeGLU."""
    gate_b, up_b, down_b = biases
    hidden_BxTxF = act(linear(x_BxTxD, gate_FxD, gate_b)) * linear(x_BxTxD, up_FxD, up_b)
    return linear(hidden_BxTxF, down_DxF, down_b)


def mlp(
    x_BxTxD: Array,
    up_FxD: Array,
    up_b: Array | None,
    down_DxF: Array,
    down_b: Array | None,
    act: Callable[[Array], Array],
) -> Array:
    """``down(act(up(x)))``: the two-matrix MLP of GPT-2, GPT-NeoX and BERT (nn.Linear layout)."""
    return linear(act(linear(x_BxTxD, up_FxD, up_b)), down_DxF, down_b)


# ---------------------------------------------------------------------------------------------- experts


def top_k_gates(router_logits_BxTxE: Array, k: int, renormalize: bool) -> Array:
    """Dense gate weights (float32), zero outside each token's top-k experts.

    Softmax over all experts, keep the k largest, and (Mixtral) divide them by their sum.
    """
    probs = jax.nn.softmax(router_logits_BxTxE.astype(jnp.float32), axis=-1)
    top_values_BxTxK, top_index_BxTxK = jax.lax.top_k(probs, k)
    if renormalize:
        top_values_BxTxK = top_values_BxTxK / jnp.sum(top_values_BxTxK, axis=-1, keepdims=True)
    chosen_BxTxKxE = jax.nn.one_hot(top_index_BxTxK, probs.shape[-1], dtype=jnp.float32)
    return jnp.einsum("btk,btke->bte", top_values_BxTxK, chosen_BxTxKxE)


def mixture_of_experts(x_BxTxD: Array, gates_BxTxE: Array, experts: Sequence[Callable[[Array], Array]]) -> Array:
    """``sum_e gate_e * expert_e(x)`` over the experts with a non-zero gate.

    Every expert runs on every token (static shapes, no gather): E/k times the routed FLOPs, which a
    correctness run can afford. An unrouted token's output is dropped with ``where`` rather than
    multiplied by 0, so an overflow in an expert the token does not use cannot leak a NaN into it.
    """
    out = jnp.zeros(x_BxTxD.shape, jnp.float32)
    for index, expert in enumerate(experts):
        gate_BxTx1 = gates_BxTxE[..., index : index + 1]
        y = expert(x_BxTxD).astype(jnp.float32)
        out = out + jnp.where(gate_BxTx1 > 0, y * gate_BxTx1, 0.0)
    return out.astype(x_BxTxD.dtype)


# ---------------------------------------------------------------------------------------------- RoPE


def rope_frequencies(
    rotary_dim: int,
    theta: float,
    scaling: Mapping[str, Any] | None,
    *,
    seq_len: int,
    max_position_embeddings: int,
    original_max_position_embeddings: int | None = None,
) -> tuple[np.ndarray, float]:
    """(inverse frequencies (R/2,) float32, attention factor) for one sequence length.

    ``scaling`` is the config's rope dict (``rope_type`` or legacy ``type``): default, linear, dynamic
    (NTK, grows past ``max_position_embeddings``), llama3, longrope (``su`` is its old name; long
    factors past ``original_max_position_embeddings``) or yarn. The attention factor multiplies cos and
    sin (longrope and yarn). ``seq_len`` matters only for dynamic and longrope.
    """
    if rotary_dim < 2 or rotary_dim % 2:
        raise ConfigError(f"config.json: the rotary width {rotary_dim} must be a positive even number")
    try:
        with np.errstate(all="ignore"):  # overflow and division by zero show up as non-finite values below
            inv_freq, attention_factor = _rope_frequencies(
                rotary_dim, theta, dict(scaling or {}), seq_len, max_position_embeddings, original_max_position_embeddings
            )
    except (TypeError, ValueError, ZeroDivisionError, OverflowError) as error:
        # A config.json is untrusted: a string where a number belongs, or a ratio of equal numbers.
        raise ConfigError(f"config.json: the rope scaling values cannot be used ({error})") from None
    if not (np.all(np.isfinite(inv_freq)) and math.isfinite(attention_factor)):
        raise ConfigError("config.json: the rope scaling values give non-finite frequencies")
    return inv_freq, attention_factor


def _rope_frequencies(
    rotary_dim: int,
    theta: float,
    params: dict[str, Any],
    seq_len: int,
    max_position_embeddings: int,
    original_max_position_embeddings: int | None,
) -> tuple[np.ndarray, float]:
    kind = params.get("rope_type", params.get("type", "default")) or "default"
    exponents = np.arange(0, rotary_dim, 2, dtype=np.int64).astype(np.float32) / np.float32(rotary_dim)
    base = np.float32(theta)

    def plain(b: Any) -> np.ndarray:
        return (np.float32(1.0) / (np.asarray(b, np.float32) ** exponents)).astype(np.float32)

    original = params.get("original_max_position_embeddings") or original_max_position_embeddings
    if kind == "default":
        return plain(base), 1.0
    if kind == "linear":
        return (plain(base) / np.float32(_number(params, "factor"))).astype(np.float32), 1.0
    if kind == "dynamic":
        factor = _number(params, "factor")
        if seq_len <= max_position_embeddings or rotary_dim <= 2:
            return plain(base), 1.0
        grown = theta * ((factor * seq_len / max_position_embeddings) - (factor - 1)) ** (rotary_dim / (rotary_dim - 2))
        return plain(np.float32(grown)), 1.0
    if kind == "llama3":
        return _llama3(plain(base), params), 1.0
    if kind in ("longrope", "su"):
        return _longrope(exponents, base, params, seq_len, max_position_embeddings, original)
    if kind == "yarn":
        return _yarn(rotary_dim, theta, params, max_position_embeddings, original)
    raise ConfigError(f"config.json: rope scaling {kind!r} is not supported by the forward pass")


def _number(params: Mapping[str, Any], key: str) -> float:
    value = params.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"config.json: rope scaling needs a number for {key!r}")
    return float(value)


def _llama3(inv_freq: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    factor = _number(params, "factor")
    low, high = _number(params, "low_freq_factor"), _number(params, "high_freq_factor")
    context = _number(params, "original_max_position_embeddings")
    low_wavelen, high_wavelen = context / low, context / high
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (context / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return np.where(medium, smoothed, scaled).astype(np.float32)


def _longrope(
    exponents: np.ndarray,
    base: np.float32,
    params: Mapping[str, Any],
    seq_len: int,
    max_position_embeddings: int,
    original: int | None,
) -> tuple[np.ndarray, float]:
    original = int(original or max_position_embeddings)
    factor = params.get("factor") or max_position_embeddings / original
    attention_factor = params.get("attention_factor")
    if attention_factor is None:
        attention_factor = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
    key = "long_factor" if seq_len > original else "short_factor"
    ext = np.asarray(params.get(key), dtype=np.float32)
    if ext.shape != exponents.shape:
        raise ConfigError(f"config.json: rope {key} must list {exponents.shape[0]} numbers")
    return (np.float32(1.0) / (ext * base**exponents)).astype(np.float32), float(attention_factor)


def _yarn(
    dim: int, theta: float, params: Mapping[str, Any], max_position_embeddings: int, original: int | None
) -> tuple[np.ndarray, float]:
    original = int(original or max_position_embeddings)
    factor = params.get("factor") or max_position_embeddings / original

    def mscale(scale: float, m: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attention_factor = params.get("attention_factor")
    if attention_factor is None:
        m, m_all = params.get("mscale"), params.get("mscale_all_dim")
        attention_factor = mscale(factor, m) / mscale(factor, m_all) if m and m_all else mscale(factor)
    beta_fast = params.get("beta_fast") or 32
    beta_slow = params.get("beta_slow") or 1

    def correction_dim(rotations: float) -> float:
        return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(theta))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if params.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # transformers: avoid a zero-width ramp
    ramp = np.clip((np.arange(dim // 2, dtype=np.float32) - low) / (high - low), 0, 1).astype(np.float32)
    pos_freqs = np.float32(theta) ** (np.arange(0, dim, 2).astype(np.float32) / np.float32(dim))
    extrapolation = np.float32(1.0) / pos_freqs
    interpolation = np.float32(1.0) / (np.float32(factor) * pos_freqs)
    keep = 1 - ramp  # 1: keep the original frequency (high frequencies), 0: interpolate
    return (interpolation * (1 - keep) + extrapolation * keep).astype(np.float32), float(attention_factor)


def rope_angles(positions_T: Array, inv_freq_R2: np.ndarray, attention_factor: float = 1.0) -> tuple[Array, Array]:
    """cos and sin (T, R/2) in float32, scaled by the attention factor."""
    angles_TxR2 = positions_T.astype(jnp.float32)[:, None] * jnp.asarray(inv_freq_R2, jnp.float32)[None, :]
    return jnp.cos(angles_TxR2) * attention_factor, jnp.sin(angles_TxR2) * attention_factor


def apply_rope(x_BxTxNxH: Array, cos_TxR2: Array, sin_TxR2: Array) -> Array:
    """Rotate-half RoPE (Llama in transformers, GPT-NeoX) over the first R features of each head.

    Feature i of the rotated part pairs with feature i + R/2.
    """
    rotary = 2 * cos_TxR2.shape[-1]
    x_rot, x_pass = x_BxTxNxH[..., :rotary], x_BxTxNxH[..., rotary:]
    cos = jnp.concatenate([cos_TxR2, cos_TxR2], axis=-1)[None, :, None, :].astype(x_BxTxNxH.dtype)
    sin = jnp.concatenate([sin_TxR2, sin_TxR2], axis=-1)[None, :, None, :].astype(x_BxTxNxH.dtype)
    half = rotary // 2
    rotated = jnp.concatenate([-x_rot[..., half:], x_rot[..., :half]], axis=-1)
    return jnp.concatenate([x_rot * cos + rotated * sin, x_pass], axis=-1)


def apply_rope_interleaved(x_BxTxNxH: Array, cos_TxR2: Array, sin_TxR2: Array) -> Array:
    """Interleaved RoPE (GPT-J, Meta's original Llama, llama.cpp's "normal" mode): features 2i, 2i+1 pair."""
    rotary = 2 * cos_TxR2.shape[-1]
    x_rot, x_pass = x_BxTxNxH[..., :rotary], x_BxTxNxH[..., rotary:]
    pairs = x_rot.reshape(*x_rot.shape[:-1], rotary // 2, 2)
    even, odd = pairs[..., 0], pairs[..., 1]
    cos = cos_TxR2[None, :, None, :].astype(x_BxTxNxH.dtype)
    sin = sin_TxR2[None, :, None, :].astype(x_BxTxNxH.dtype)
    rotated = jnp.stack([even * cos - odd * sin, even * sin + odd * cos], axis=-1).reshape(x_rot.shape)
    return jnp.concatenate([rotated, x_pass], axis=-1)


# ---------------------------------------------------------------------------------------------- attention


def causal_mask(length: int, window: int | None = None) -> Array:
    """(T, T) booleans: query i sees key j when j <= i and, with a window, i - j < window.

    transformers' sliding window: ``kv_idx > q_idx - sliding_window`` (the window counts the query itself).
    """
    query_T1 = jnp.arange(length)[:, None]
    key_1T = jnp.arange(length)[None, :]
    allowed = key_1T <= query_T1
    if window is not None:
        allowed = allowed & (query_T1 - key_1T < window)
    return allowed


def attention(
    q_BxTxNxH: Array,
    k_BxSxKxH: Array,
    v_BxSxKxH: Array,
    mask_TxS: Array | None,
    *,
    scale: float,
    softcap: float | None = None,
) -> Array:
    """Grouped-query attention: query head j reads kv head ``j // (N / K)``; returns (B, T, N, H).

    Logits are ``(q . k) * scale``, then ``softcap * tanh(logits / softcap)`` when set, masked, and
    soft-maxed in float32.
    """
    batch, length, heads, width = q_BxTxNxH.shape
    kv_heads = k_BxSxKxH.shape[2]
    if heads % kv_heads:
        raise ValueError(f"{heads} query heads cannot share {kv_heads} kv heads")
    q_BxTxKxGxH = q_BxTxNxH.reshape(batch, length, kv_heads, heads // kv_heads, width)
    logits_BxKxGxTxS = einsum("btkgh,bskh->bkgts", q_BxTxKxGxH, k_BxSxKxH).astype(jnp.float32) * scale
    if softcap is not None:
        logits_BxKxGxTxS = softcap * jnp.tanh(logits_BxKxGxTxS / softcap)
    if mask_TxS is not None:
        logits_BxKxGxTxS = jnp.where(mask_TxS, logits_BxKxGxTxS, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits_BxKxGxTxS, axis=-1).astype(v_BxSxKxH.dtype)
    out_BxTxKxGxH = einsum("bkgts,bskh->btkgh", weights, v_BxSxKxH)
    return out_BxTxKxGxH.reshape(batch, length, heads, width)


def softcap(x: Array, cap: float | None) -> Array:
    """``cap * tanh(x / cap)`` (Gemma 2 logits), identity without a cap."""
    return x if cap is None else cap * jnp.tanh(x / cap)
