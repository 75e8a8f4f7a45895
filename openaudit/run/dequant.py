"""Dequantization in numpy: GGUF block types and Grok-1's blockwise int8 weights.

GGUF blocks follow ggml exactly: the structs in ``ggml/src/ggml-common.h`` (field order and sizes) and
``dequantize_row_*`` in ``ggml/src/ggml-quants.c`` (ggml-org/llama.cpp). Each type is decoded for many
blocks at once with array operations, never a Python loop per block, and in the same float32 operation
order as ggml and gguf-py (``gguf.quants``), so results are bit-identical to both.

Grok-1 (xai-org/grok-1 ``model.py``/``checkpoint.py``) stores its big matrices as ``QuantizedWeight8bit``:
int8 weights and bf16 scales, dequantized as ``weight.astype(scales.dtype) * scales``. A scale axis
shorter than the weight's holds one row per block of that axis (attention output: weight (6144, 6144),
scales (8, 6144), scale row b covers weight rows [768b, 768b + 768)); a scale axis of 1 broadcasts.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from openaudit.errors import MalformedInput

if TYPE_CHECKING:  # pragma: no cover
    import jax

QK_K = 256  # elements in a K-quant super-block
# Blocks decoded per step: bounds the temporaries to a few tens of MiB whatever the tensor's size.
_CHUNK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class BlockType:
    """A GGUF tensor type: ``block_size`` elements stored in ``type_size`` bytes."""

    name: str
    block_size: int
    type_size: int


# --- GGUF block decoders: (n, type_size) uint8 -> (n, block_size) float32 -----------------------------


def _half(blocks: np.ndarray, start: int) -> np.ndarray:
    """The little-endian fp16 at byte ``start`` of every block, as an (n, 1) float32 column."""
    return blocks[:, start : start + 2].view("<f2").astype(np.float32)


def _nibbles(packed: np.ndarray) -> np.ndarray:
    """(..., m) bytes -> (..., 2, m): low nibbles first, then high nibbles (ggml's qs layout)."""
    return np.stack((packed & 0x0F, packed >> 4), axis=-2)


def _bits(packed: np.ndarray, count: int, width: int) -> np.ndarray:
    """(..., m) bytes -> (..., count, m): field k is ``(byte >> (width * k)) & mask``."""
    shifts = (np.arange(count, dtype=np.uint8) * width).reshape(count, 1)
    return (packed[..., None, :] >> shifts) & np.uint8((1 << width) - 1)


def _f32(blocks: np.ndarray) -> np.ndarray:
    return blocks.view("<f4").astype(np.float32, copy=False)


def _f16(blocks: np.ndarray) -> np.ndarray:
    return blocks.view("<f2").astype(np.float32)


def _bf16(blocks: np.ndarray) -> np.ndarray:
    # bf16 is the top half of a float32: exact widening.
    return (blocks.view("<u2").astype(np.uint32) << 16).view(np.float32)


def _q8_0(blocks: np.ndarray) -> np.ndarray:
    # block_q8_0 {ggml_half d; int8_t qs[32];}  y = qs * d
    d = _half(blocks, 0)
    return np.multiply(blocks[:, 2:34].view(np.int8), d, dtype=np.float32)


def _q4_0(blocks: np.ndarray) -> np.ndarray:
    # block_q4_0 {ggml_half d; uint8_t qs[16];}  y[j] = (lo(qs[j]) - 8) d, y[j+16] = (hi(qs[j]) - 8) d
    d = _half(blocks, 0)
    q = _nibbles(blocks[:, 2:18]).reshape(-1, 32).astype(np.int8) - np.int8(8)
    return d * q.astype(np.float32)


def _q4_1(blocks: np.ndarray) -> np.ndarray:
    # block_q4_1 {ggml_half d; ggml_half m; uint8_t qs[16];}  y = q d + m
    d, m = _half(blocks, 0), _half(blocks, 2)
    q = _nibbles(blocks[:, 4:20]).reshape(-1, 32).astype(np.float32)
    return d * q + m


def _five_bit(qh: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """Q5_0/Q5_1 quants: nibbles of qs plus bit j of the little-endian uint32 qh as bit 4 of element j."""
    high = _bits(qh, 8, 1).transpose(0, 2, 1).reshape(-1, 32)  # bit b of byte k is element 8k + b
    return _nibbles(qs).reshape(-1, 32) | (high << np.uint8(4))


def _q5_0(blocks: np.ndarray) -> np.ndarray:
    # block_q5_0 {ggml_half d; uint8_t qh[4]; uint8_t qs[16];}  y = (q - 16) d
    d = _half(blocks, 0)
    q = _five_bit(blocks[:, 2:6], blocks[:, 6:22]).astype(np.int8) - np.int8(16)
    return d * q.astype(np.float32)


def _q5_1(blocks: np.ndarray) -> np.ndarray:
    # block_q5_1 {ggml_half d; ggml_half m; uint8_t qh[4]; uint8_t qs[16];}  y = q d + m
    d, m = _half(blocks, 0), _half(blocks, 2)
    q = _five_bit(blocks[:, 4:8], blocks[:, 8:24]).astype(np.float32)
    return d * q + m


def _q2_k(blocks: np.ndarray) -> np.ndarray:
    # block_q2_K {uint8_t scales[16]; uint8_t qs[64]; ggml_half d; ggml_half dmin;}
    # Element 128h + 32j + l is bits 2j..2j+1 of qs[32h + l]; sub-block e // 16 has scale nibble
    # (lo: scale, hi: min) and y = d sc q - dmin m.
    n = blocks.shape[0]
    scales = blocks[:, 0:16]
    d, dmin = _half(blocks, 80), _half(blocks, 82)
    dl = (d * (scales & 0x0F).astype(np.float32)).reshape(n, 16, 1)
    ml = (dmin * (scales >> 4).astype(np.float32)).reshape(n, 16, 1)
    q = _bits(blocks[:, 16:80].reshape(n, 2, 32), 4, 2).reshape(n, 16, 16).astype(np.float32)
    return (dl * q - ml).reshape(n, QK_K)


def _q3_k_scales(packed: np.ndarray) -> np.ndarray:
    """The 16 signed 6-bit scales of block_q3_K: low 4 bits from bytes 0-7 (lo nibbles give scales 0-7,
    hi nibbles 8-15), top 2 bits of scale j from byte 8 + j % 4 at bit 2 (j // 4)."""
    n = packed.shape[0]
    low = _nibbles(packed[:, 0:8]).reshape(n, 16)
    high = _bits(packed[:, 8:12], 4, 2).reshape(n, 16)
    return ((low | (high << np.uint8(4))).astype(np.int8) - np.int8(32)).astype(np.float32)


def _q3_k(blocks: np.ndarray) -> np.ndarray:
    # block_q3_K {uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; ggml_half d;}
    # Element 128h + 32j + l: low bits 2j.. of qs[32h + l], high bit (4h + j) of hmask[l]; a clear high
    # bit subtracts 4. y = d (scale - 32) q.
    n = blocks.shape[0]
    d = _half(blocks, 108)
    dl = (d * _q3_k_scales(blocks[:, 96:108])).reshape(n, 16, 1)
    low = _bits(blocks[:, 32:96].reshape(n, 2, 32), 4, 2).reshape(n, QK_K)
    high = _bits(blocks[:, 0:32], 8, 1).reshape(n, QK_K)  # bit 4h + j of hmask[l] = element 128h+32j+l
    q = low.astype(np.int8) - ((high ^ np.uint8(1)) << np.uint8(2)).astype(np.int8)
    return (dl * q.reshape(n, 16, 16).astype(np.float32)).reshape(n, QK_K)


def _k4_scales_mins(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ggml's get_scale_min_k4 for the 8 sub-blocks of Q4_K/Q5_K (12 bytes of 6-bit scales and mins)."""
    first, second, third = packed[:, 0:4], packed[:, 4:8], packed[:, 8:12]
    scales = np.concatenate((first & 63, (third & 0x0F) | ((first >> 6) << 4)), axis=1)
    mins = np.concatenate((second & 63, (third >> 4) | ((second >> 6) << 4)), axis=1)
    return scales.astype(np.float32), mins.astype(np.float32)


def _q4_k(blocks: np.ndarray) -> np.ndarray:
    # block_q4_K {ggml_half d; ggml_half dmin; uint8_t scales[12]; uint8_t qs[128];}
    # Element 64c + 32h + l is nibble h of qs[32c + l], in sub-block 2c + h: y = d sc q - dmin m.
    n = blocks.shape[0]
    d, dmin = _half(blocks, 0), _half(blocks, 2)
    scales, mins = _k4_scales_mins(blocks[:, 4:16])
    dl = (d * scales).reshape(n, 8, 1)
    ml = (dmin * mins).reshape(n, 8, 1)
    q = _nibbles(blocks[:, 16:144].reshape(n, 4, 32)).reshape(n, 8, 32).astype(np.float32)
    return (dl * q - ml).reshape(n, QK_K)


def _q5_k(blocks: np.ndarray) -> np.ndarray:
    # block_q5_K {ggml_half d; ggml_half dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128];}
    # As Q4_K, plus bit (2c + h) of qh[l] as bit 4 of element 64c + 32h + l.
    n = blocks.shape[0]
    d, dmin = _half(blocks, 0), _half(blocks, 2)
    scales, mins = _k4_scales_mins(blocks[:, 4:16])
    dl = (d * scales).reshape(n, 8, 1)
    ml = (dmin * mins).reshape(n, 8, 1)
    low = _nibbles(blocks[:, 48:176].reshape(n, 4, 32)).reshape(n, 8, 32)
    high = _bits(blocks[:, 16:48], 8, 1)  # (n, 8, 32): bit s of qh[l] belongs to sub-block s
    q = (low | (high << np.uint8(4))).astype(np.float32)
    return (dl * q - ml).reshape(n, QK_K)


def _q6_k(blocks: np.ndarray) -> np.ndarray:
    # block_q6_K {uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; ggml_half d;}
    # Element 128h + 32k + l: low 4 bits from ql[64h + 32(k % 2) + l] (nibble k // 2), high 2 bits from
    # bits 2k.. of qh[32h + l]; y = d scale[e // 16] (q - 32).
    n = blocks.shape[0]
    d = _half(blocks, 208)
    dl = (d * blocks[:, 192:208].view(np.int8).astype(np.float32)).reshape(n, 16, 1)
    low = _nibbles(blocks[:, 0:128].reshape(n, 2, 64)).reshape(n, 2, 4, 32)
    high = _bits(blocks[:, 128:192].reshape(n, 2, 32), 4, 2)
    q = (low | (high << np.uint8(4))).astype(np.int8) - np.int8(32)
    return (dl * q.reshape(n, 16, 16).astype(np.float32)).reshape(n, QK_K)


def _q8_k(blocks: np.ndarray) -> np.ndarray:
    # block_q8_K {float d; int8_t qs[256]; int16_t bsums[16];}  y = d qs (bsums only serve dot products)
    d = blocks[:, 0:4].view("<f4").astype(np.float32)
    return np.multiply(d, blocks[:, 4:260].view(np.int8), dtype=np.float32)


# E2M1 values doubled (ggml kvalues_mxfp4); the block scale carries the missing factor 1/2.
_MXFP4_VALUES = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], dtype=np.float32)


def _mxfp4(blocks: np.ndarray) -> np.ndarray:
    # block_mxfp4 {uint8_t e; uint8_t qs[16];}  y[j] = kvalues[lo(qs[j])] * 2^(e-128) (ggml
    # GGML_E8M0_TO_FP32_HALF: e < 2 is a float32 subnormal), y[j+16] likewise with the high nibble.
    e = blocks[:, 0:1].astype(np.uint32)
    bits = np.where(e < 2, np.uint32(0x00200000) << e, (e - np.uint32(1)) << np.uint32(23))
    d = bits.astype(np.uint32).view(np.float32)
    q = _nibbles(blocks[:, 1:17]).reshape(-1, 32)
    return _MXFP4_VALUES[q] * d


_Decoder = Callable[[np.ndarray], np.ndarray]

_DECODERS: Mapping[str, tuple[BlockType, _Decoder]] = MappingProxyType(
    {
        "F32": (BlockType("F32", 1, 4), _f32),
        "F16": (BlockType("F16", 1, 2), _f16),
        "BF16": (BlockType("BF16", 1, 2), _bf16),
        "Q4_0": (BlockType("Q4_0", 32, 18), _q4_0),
        "Q4_1": (BlockType("Q4_1", 32, 20), _q4_1),
        "Q5_0": (BlockType("Q5_0", 32, 22), _q5_0),
        "Q5_1": (BlockType("Q5_1", 32, 24), _q5_1),
        "Q8_0": (BlockType("Q8_0", 32, 34), _q8_0),
        "Q2_K": (BlockType("Q2_K", QK_K, 84), _q2_k),
        "Q3_K": (BlockType("Q3_K", QK_K, 110), _q3_k),
        "Q4_K": (BlockType("Q4_K", QK_K, 144), _q4_k),
        "Q5_K": (BlockType("Q5_K", QK_K, 176), _q5_k),
        "Q6_K": (BlockType("Q6_K", QK_K, 210), _q6_k),
        "Q8_K": (BlockType("Q8_K", QK_K, 292), _q8_k),
        "MXFP4": (BlockType("MXFP4", 32, 17), _mxfp4),
    }
)

# Every type ``dequantize`` decodes, by its ggml name (as GGUF TensorRecords carry it).
GGUF_TYPES: Mapping[str, BlockType] = MappingProxyType({name: spec for name, (spec, _) in _DECODERS.items()})
# The types stored in blocks of several elements (the rest are plain arrays a reader can map directly).
BLOCK_TYPES: Mapping[str, BlockType] = MappingProxyType(
    {name: spec for name, spec in GGUF_TYPES.items() if spec.block_size > 1}
)


def is_block_type(dtype: str) -> bool:
    """True for a GGUF quantized type that ``dequantize`` decodes (Q4_0, Q6_K, MXFP4 …)."""
    return dtype in BLOCK_TYPES


def dequantize_blocks(blocks: np.ndarray, ggml_type: str) -> np.ndarray:
    """Decode ``blocks`` (uint8, shape (n, type_size)) of ``ggml_type`` into (n, block_size) float32."""
    spec, decode = _decoder(ggml_type)
    blocks = np.ascontiguousarray(blocks, dtype=np.uint8)
    if blocks.ndim != 2 or blocks.shape[1] != spec.type_size:
        raise ValueError(f"{ggml_type} blocks must have shape (n, {spec.type_size}), not {blocks.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        return decode(blocks).reshape(blocks.shape[0], spec.block_size)


def dequantize(raw: np.ndarray, ggml_type: str, out: np.ndarray | None = None,
               workers: int | None = None) -> np.ndarray:
    """Decode the bytes of whole blocks of ``ggml_type`` into a flat float32 array.

    ``raw`` is any uint8 array (a memory map slice included) whose size is a whole number of blocks. The
    work runs in chunks of about two million elements, so temporaries stay small, on up to ``workers``
    threads (numpy releases the GIL; default: the CPU count, at most 8). The output (``out`` when given,
    flat contiguous float32 of the right size) is the one copy that cannot be avoided.
    """
    spec, decode = _decoder(ggml_type)
    flat = raw.reshape(-1) if raw.flags.c_contiguous else np.ascontiguousarray(raw).reshape(-1)
    if flat.dtype != np.uint8:
        raise ValueError(f"dequantize needs uint8 bytes, not {flat.dtype}")
    if flat.size % spec.type_size:
        raise MalformedInput(
            "tensor-size-mismatch",
            f"{flat.size} bytes are not a whole number of {ggml_type} blocks of {spec.type_size} bytes",
        )
    blocks = flat.reshape(-1, spec.type_size)
    count = blocks.shape[0] * spec.block_size
    if out is None:
        out = np.empty(count, dtype=np.float32)
    elif out.dtype != np.float32 or out.size != count or not out.flags.c_contiguous:
        raise ValueError(f"out must be a contiguous float32 array of {count} elements")
    target = out.reshape(-1, spec.block_size)
    step = max(1, _CHUNK_ELEMENTS // spec.block_size)
    starts = range(0, blocks.shape[0], step)

    def run(start: int) -> None:
        # Hostile scales may overflow to inf or make NaN: that is the data, not an error. (errstate is
        # per thread, so each worker sets it.)
        with np.errstate(over="ignore", invalid="ignore"):
            target[start : start + step] = decode(blocks[start : start + step])

    workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    if workers > 1 and len(starts) > 1:
        with ThreadPoolExecutor(min(workers, len(starts))) as pool:
            list(pool.map(run, starts))
    else:
        for start in starts:
            run(start)
    return out.reshape(-1)


def _decoder(ggml_type: str) -> tuple[BlockType, _Decoder]:
    entry = _DECODERS.get(ggml_type)
    if entry is None:
        raise MalformedInput(
            "tensor-unsupported-dtype",
            f"openaudit does not dequantize GGUF type {ggml_type[:40]!r} (it reads {', '.join(_DECODERS)})",
        )
    return entry


def quantize_with_gguf(values: Any, ggml_type: str) -> np.ndarray:
    """Quantize float ``values`` (last axis a whole number of blocks) with the ``gguf`` package.

    For tests that need small quantized tensors from known floats. Returns uint8 of shape
    (..., row bytes), ready to write as GGUF tensor data. Raises ImportError without ``gguf`` and
    NotImplementedError for types gguf-py cannot quantize (the K-quants).
    """
    import gguf  # the reference implementation; imported only when asked for

    qtype = gguf.GGMLQuantizationType[ggml_type]
    result = gguf.quants.quantize(np.asarray(values, dtype=np.float32), qtype)
    return np.ascontiguousarray(result).view(np.uint8)


# --- Grok-1 int8 ------------------------------------------------------------------------------------


def int8_scale_plan(weight_shape: tuple[int, ...], scales_shape: tuple[int, ...]) -> tuple[
    tuple[int, ...], tuple[int, ...]
]:
    """How a scale tensor applies to a weight: the shapes to reshape weight and scales to so that plain
    broadcasting multiplies each weight by its scale.

    Scales with fewer dimensions are padded with leading 1s. Per axis of length W with scale length S:
    S == W is elementwise, S == 1 broadcasts, and S < W with W % S == 0 means S blocks of W // S rows,
    block b covering [b W/S, (b + 1) W/S) — the axis is split into (S, W // S) for the weight and
    (S, 1) for the scales. Anything else raises MalformedInput.
    """
    if len(scales_shape) > len(weight_shape):
        raise MalformedInput(
            "tensor-scale-shape-mismatch",
            f"scales of shape {list(scales_shape)} have more axes than their weight {list(weight_shape)}",
        )
    padded = (1,) * (len(weight_shape) - len(scales_shape)) + tuple(scales_shape)
    weight_split: list[int] = []
    scale_split: list[int] = []
    for axis, (length, scale) in enumerate(zip(weight_shape, padded)):
        if scale == length or scale == 1:
            weight_split.append(length)
            scale_split.append(scale)
        elif 0 < scale < length and length % scale == 0:
            weight_split += [scale, length // scale]
            scale_split += [scale, 1]
        else:
            raise MalformedInput(
                "tensor-scale-shape-mismatch",
                f"scales of shape {list(scales_shape)} do not divide weight {list(weight_shape)} "
                f"along axis {axis} ({scale} scale rows for {length} weight rows)",
            )
    return tuple(weight_split), tuple(scale_split)


def dequantize_int8(weight: np.ndarray, scales: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
    """Grok-1's ``weight.astype(scales.dtype) * scales`` with blockwise scales, in numpy.

    Computes in ``dtype`` (float32 by default; None means the scales' dtype, as the official code does).
    The weight is converted inside the multiplication, so the only full-size array made is the result.
    """
    target = np.dtype(scales.dtype if dtype is None else dtype)
    weight_split, scale_split = int8_scale_plan(tuple(weight.shape), tuple(scales.shape))
    reshaped_weight = np.asarray(weight).reshape(weight_split)
    reshaped_scales = np.asarray(scales).astype(target, copy=False).reshape(scale_split)
    result = np.multiply(reshaped_weight, reshaped_scales, dtype=target, casting="unsafe")
    return result.reshape(weight.shape)


def dequantize_int8_jax(weight: "jax.Array", scales: "jax.Array", dtype: Any = "float32") -> "jax.Array":
    """The same blockwise dequantization in jax.numpy; shapes are static, so it works inside ``jit``
    (and ``shard_map``, where it sees the local block of weight and scales)."""
    import jax.numpy as jnp

    target = jnp.dtype(scales.dtype if dtype is None else dtype)
    weight_split, scale_split = int8_scale_plan(tuple(weight.shape), tuple(scales.shape))
    product = weight.reshape(weight_split).astype(target) * scales.astype(target).reshape(scale_split)
    return product.reshape(weight.shape)
