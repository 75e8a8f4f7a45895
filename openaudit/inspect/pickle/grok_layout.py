"""Grok-1's checkpoint layout: the order of the leaves in ``checkpoints/ckpt-0/tensorNNNNN_000``.

xai-org/grok-1 ``checkpoint.py`` saves one pickle per leaf of the flattened Haiku parameter tree, and
JAX flattens a dict in *sorted key order*: ``language_model/...`` before ``transformer/...``, and the
layers in string order (decoder_layer_0, decoder_layer_1, decoder_layer_10, …). Leaf names here are the
module path joined with "/" plus the parameter name, e.g. ``transformer/decoder_layer_0/moe/linear/w``.
The scales of a quantized weight are recorded as ``<weight name>:scales``.
"""

from __future__ import annotations

# Per-layer parameters in sorted module order (12 leaves per layer).
LAYER_LEAVES: tuple[str, ...] = (
    "moe/linear/w",
    "moe/linear_1/w",
    "moe/linear_v/w",
    "multi_head_attention/key/w",
    "multi_head_attention/linear/w",
    "multi_head_attention/query/w",
    "multi_head_attention/value/w",
    "rms_norm/scale",
    "rms_norm_1/scale",
    "rms_norm_2/scale",
    "rms_norm_3/scale",
    "router/w",
)
EMBEDDING = "language_model/in_out_embed/embeddings"
FINAL_NORM = "language_model/rms_norm/scale"
SCALES_SUFFIX = ":scales"


def leaf_paths(num_layers: int) -> tuple[str, ...]:
    """The leaf names in checkpoint file order for a Grok-1-shaped model with ``num_layers`` layers."""
    layers = sorted((f"transformer/decoder_layer_{index}" for index in range(num_layers)))
    names = [EMBEDDING, FINAL_NORM]
    for layer in layers:
        names.extend(f"{layer}/{leaf}" for leaf in LAYER_LEAVES)
    return tuple(names)


def layers_for_leaf_count(count: int) -> int | None:
    """The number of layers a checkpoint with ``count`` leaves has, or None if no layout fits."""
    layers, remainder = divmod(count - 2, len(LAYER_LEAVES))
    return layers if count >= 2 and remainder == 0 else None
