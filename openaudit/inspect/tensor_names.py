"""Tensor names across checkpoint flavours: wrapper prefixes and legacy LayerNorm names.

The same weight is ``model.layers.0.self_attn.q_proj.weight`` in a ``LlamaForCausalLM`` checkpoint,
``layers.0.self_attn.q_proj.weight`` in a bare ``LlamaModel`` and ``language_model.model.layers.0…`` in
a multimodal Gemma 3. ``canonical`` strips the wrapper prefixes so names from different savers compare
equal.
"""

from __future__ import annotations

import re

# Longest first: "model.language_model." must win over "model.".
WRAPPER_PREFIXES: tuple[str, ...] = (
    "model.language_model.",
    "language_model.model.",
    "language_model.",
    "transformer.",
    "gpt_neox.",
    "model.",
    "bert.",
)

_LEGACY_LAYERNORM = re.compile(r"(^|\.)LayerNorm\.(gamma|beta)$")


def canonical(name: str) -> str:
    """The name without its wrapper prefix, with TF-era ``LayerNorm.gamma/beta`` as ``weight/bias``."""
    for prefix in WRAPPER_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    match = _LEGACY_LAYERNORM.search(name)
    if match:
        name = name[: match.start(2)] + ("weight" if match.group(2) == "gamma" else "bias")
    return name
