"""Grok-1's tensor shapes, written out independently of openaudit's own family code.

Facts from xai-org/grok-1 ``run.py``/``model.py`` (see shared reference §4): 64 layers, embedding 6144,
vocabulary 131,072, 48 query and 8 key/value heads of size 128, 8 experts with ffn size 32,768, Haiku
``w`` matrices stored (in, out), experts stacked on the first axis, tied input/output embedding.
"""

from __future__ import annotations

from typing import Mapping

VOCAB, EMBED, LAYERS, Q_HEADS, KV_HEADS, KEY_SIZE, EXPERTS, FFN = 131_072, 6144, 64, 48, 8, 128, 8, 32_768
TOTAL_PARAMETERS = 315_684_820_992

# Quantized matrices (int8 weight + bfloat16 scales) and their scale shapes (llama.cpp convert_grok.py).
_SCALE_SHAPES = {
    "moe/linear/w": lambda c: (c["experts"], 1, c["ffn"]),
    "moe/linear_1/w": lambda c: (c["experts"], 8, c["embed"]),
    "moe/linear_v/w": lambda c: (c["experts"], 1, c["ffn"]),
    "multi_head_attention/key/w": lambda c: (1, c["kv_heads"] * c["key_size"]),
    "multi_head_attention/linear/w": lambda c: (8, c["embed"]),
    "multi_head_attention/query/w": lambda c: (1, c["q_heads"] * c["key_size"]),
    "multi_head_attention/value/w": lambda c: (1, c["kv_heads"] * c["key_size"]),
}


def grok_leaves(
    *, vocab: int = VOCAB, embed: int = EMBED, layers: int = LAYERS, q_heads: int = Q_HEADS, kv_heads: int = KV_HEADS,
    key_size: int = KEY_SIZE, experts: int = EXPERTS, ffn: int = FFN,
) -> list[tuple[str, tuple[int, ...], tuple[int, ...] | None]]:
    """(name, shape, scale shape or None) for every leaf, in checkpoint file order (sorted keys)."""
    c = dict(embed=embed, q_heads=q_heads, kv_heads=kv_heads, key_size=key_size, experts=experts, ffn=ffn)
    per_layer = {
        "moe/linear/w": (experts, embed, ffn),
        "moe/linear_1/w": (experts, ffn, embed),
        "moe/linear_v/w": (experts, embed, ffn),
        "multi_head_attention/key/w": (embed, kv_heads * key_size),
        "multi_head_attention/linear/w": (q_heads * key_size, embed),
        "multi_head_attention/query/w": (embed, q_heads * key_size),
        "multi_head_attention/value/w": (embed, kv_heads * key_size),
        "rms_norm/scale": (embed,),
        "rms_norm_1/scale": (embed,),
        "rms_norm_2/scale": (embed,),
        "rms_norm_3/scale": (embed,),
        "router/w": (embed, experts),
    }
    leaves = [("language_model/in_out_embed/embeddings", (vocab, embed), None), ("language_model/rms_norm/scale", (embed,), None)]
    for layer in sorted(f"transformer/decoder_layer_{i}" for i in range(layers)):
        for leaf in sorted(per_layer):
            scale = _SCALE_SHAPES[leaf](c) if leaf in _SCALE_SHAPES else None
            leaves.append((f"{layer}/{leaf}", per_layer[leaf], scale))
    return leaves


def grok_bf16_tensors(**kwargs) -> Mapping[str, tuple[int, ...]]:
    """name -> shape for a dequantized (e.g. BF16 safetensors) copy of the checkpoint."""
    return {name: shape for name, shape, _ in grok_leaves(**kwargs)}
