"""Tensor names in llama.cpp's GGUF files, from a family's expected tensors.

The same weight is ``model.layers.0.self_attn.q_proj.weight`` in a Hugging Face checkpoint and
``blk.0.attn_q.weight`` in a GGUF file. Names are compared in their canonical form
(:func:`openaudit.inspect.tensor_names.canonical`); ``to_gguf`` rewrites a Llama-layout
family's expected tensors into llama.cpp's names and shapes (stacked experts included), because that
mapping needs the whole layer (which RMSNorm ``ffn_norm`` is depends on the family).
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

from openaudit.families.spec import TensorSpec
from openaudit.inspect.tensor_names import canonical


def is_gguf_naming(names: Iterable[str]) -> bool:
    """True when the names are llama.cpp's (``token_embd.weight``, ``blk.N.…``)."""
    return any(name.startswith("blk.") or name == "token_embd.weight" for name in names)


_LAYER = re.compile(r"^layers\.(\d+)\.(.+)$")
_EXPERT = re.compile(r"^block_sparse_moe\.experts\.(\d+)\.(w[123])\.weight$")

_GGUF_TOP = {
    "embed_tokens.weight": "token_embd.weight",
    "norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_GGUF_LAYER = {
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
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "mlp.gate_up_proj.weight": "ffn_up.weight",  # Phi-3: llama.cpp keeps the fused [gate; up]
    "block_sparse_moe.gate.weight": "ffn_gate_inp.weight",
}
_GGUF_ROPE_TABLES = ("rope_freqs.weight", "rope_factors_long.weight", "rope_factors_short.weight")
_GGUF_EXPERTS = {"w1": "ffn_gate_exps.weight", "w3": "ffn_up_exps.weight", "w2": "ffn_down_exps.weight"}


def to_gguf(specs: Sequence[TensorSpec]) -> tuple[TensorSpec, ...]:
    """A Llama-layout family's expected tensors as llama.cpp names them.

    GGUF shapes in numpy order (ggml dims reversed) equal the Hugging Face shapes; experts become one
    stacked tensor per projection, (experts, rows, cols). Buffers are dropped, except that the rotary
    frequencies become llama.cpp's optional rope tables (head_dim / 2 entries each).
    Names with no GGUF counterpart keep their canonical name, so they surface as missing.
    """
    layers: dict[str, set[str]] = {}
    for spec in specs:
        match = _LAYER.match(canonical(spec.name))
        if match:
            layers.setdefault(match.group(1), set()).add(match.group(2))
    result: list[TensorSpec] = []
    stacked: dict[str, list[TensorSpec]] = {}
    for spec in specs:
        name = canonical(spec.name)
        if not spec.is_parameter:
            if name == "rotary_emb.inv_freq":
                # llama.cpp's rope tables: Llama 3.1 frequency factors, Phi-3 128k long/short factors.
                result.extend(TensorSpec(table, spec.shape, spec.role, True) for table in _GGUF_ROPE_TABLES)
            continue
        aliases = tuple(_GGUF_TOP.get(canonical(alias), canonical(alias)) for alias in spec.aliases)
        if name in _GGUF_TOP:
            result.append(TensorSpec(_GGUF_TOP[name], spec.shape, spec.role, spec.optional, aliases))
            continue
        match = _LAYER.match(name)
        if not match:
            result.append(TensorSpec(name, spec.shape, spec.role, spec.optional, aliases))
            continue
        index, rest = match.groups()
        expert = _EXPERT.match(rest)
        if expert:
            key = f"blk.{index}.{_GGUF_EXPERTS[expert.group(2)]}"
            if key not in stacked:
                stacked[key] = []
                result.append(TensorSpec(key, (), spec.role))  # placeholder, shape filled below
            stacked[key].append(spec)
            continue
        if rest == "post_attention_layernorm.weight":
            # Llama's second norm feeds the MLP (ffn_norm); in Gemma 2/3 and OLMo 2 it normalises the
            # attention output (post_attention_norm).
            names = layers[index]
            pre_norm = "input_layernorm.weight" in names and "pre_feedforward_layernorm.weight" not in names
            gguf = "ffn_norm.weight" if pre_norm else "post_attention_norm.weight"
        else:
            gguf = _GGUF_LAYER.get(rest, "")
        target = f"blk.{index}.{gguf}" if gguf else name
        result.append(TensorSpec(target, spec.shape, spec.role, spec.optional, aliases))
    return tuple(_fill_stacked(spec, stacked) for spec in result)


def _fill_stacked(spec: TensorSpec, stacked: dict[str, list[TensorSpec]]) -> TensorSpec:
    experts = stacked.get(spec.name)
    if not experts:
        return spec
    return TensorSpec(spec.name, (len(experts), *experts[0].shape), spec.role)
