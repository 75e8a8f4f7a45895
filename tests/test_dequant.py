"""Dequantization: every GGUF block type against gguf-py and against literal ports of ggml's C loops;
Grok-1's blockwise int8 scales against an explicit loop."""

from __future__ import annotations

import struct

import ml_dtypes
import numpy as np
import pytest

from openaudit.errors import MalformedInput
from openaudit.run import dequant
from openaudit.run.dequant import (
    GGUF_TYPES,
    dequantize,
    dequantize_blocks,
    dequantize_int8,
    int8_scale_plan,
    quantize_with_gguf,
)

# Byte offsets of the fp16 fields of each block (ggml-common.h), so random blocks get finite scales.
HALF_FIELDS = {
    "F16": (0,), "Q4_0": (0,), "Q4_1": (0, 2), "Q5_0": (0,), "Q5_1": (0, 2), "Q8_0": (0,),
    "Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,),
}


def random_blocks(ggml_type: str, count: int, seed: int = 0) -> np.ndarray:
    """Random block bytes with finite float fields (a NaN scale would make every comparison vacuous)."""
    spec = GGUF_TYPES[ggml_type]
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(count, spec.type_size), dtype=np.uint8)
    for start in HALF_FIELDS.get(ggml_type, ()):
        blocks[:, start : start + 2] = rng.uniform(-3, 3, (count, 1)).astype("<f2").view(np.uint8)
    if ggml_type in ("F32", "Q8_K"):
        blocks[:, 0:4] = rng.standard_normal((count, 1)).astype("<f4").view(np.uint8)
    if ggml_type == "BF16":
        blocks[:] = rng.standard_normal((count, 1)).astype("<f4").view("<u2")[:, 1:2].view(np.uint8)
    if ggml_type == "MXFP4":
        blocks[:, 0] = rng.integers(100, 150, count)  # e8m0 exponents around 2^0
        blocks[:3, 0] = (0, 1, 255)  # the subnormal and largest cases of GGML_E8M0_TO_FP32_HALF
    return blocks


def same_bits(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == np.float32 and expected.dtype == np.float32
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(actual.view(np.uint32), expected.view(np.uint32))


# --- literal ports of ggml-quants.c dequantize_row_* (one block at a time, element by element) ---------

f32 = np.float32


def half(block: bytes, at: int) -> np.float32:
    return f32(np.frombuffer(block[at : at + 2], "<f2")[0])


def ref_q4_0(b: bytes) -> list:
    d, y = half(b, 0), [f32(0)] * 32
    for j in range(16):
        y[j] = f32((b[2 + j] & 0x0F) - 8) * d
        y[j + 16] = f32((b[2 + j] >> 4) - 8) * d
    return y


def ref_q4_1(b: bytes) -> list:
    d, m, y = half(b, 0), half(b, 2), [f32(0)] * 32
    for j in range(16):
        y[j] = f32(b[4 + j] & 0x0F) * d + m
        y[j + 16] = f32(b[4 + j] >> 4) * d + m
    return y


def ref_q5_0(b: bytes) -> list:
    d, y = half(b, 0), [f32(0)] * 32
    qh = struct.unpack_from("<I", b, 2)[0]
    for j in range(16):
        xh0 = ((qh >> j) << 4) & 0x10
        xh1 = (qh >> (j + 12)) & 0x10
        y[j] = f32(((b[6 + j] & 0x0F) | xh0) - 16) * d
        y[j + 16] = f32(((b[6 + j] >> 4) | xh1) - 16) * d
    return y


def ref_q5_1(b: bytes) -> list:
    d, m, y = half(b, 0), half(b, 2), [f32(0)] * 32
    qh = struct.unpack_from("<I", b, 4)[0]
    for j in range(16):
        xh0 = ((qh >> j) << 4) & 0x10
        xh1 = (qh >> (j + 12)) & 0x10
        y[j] = f32((b[8 + j] & 0x0F) | xh0) * d + m
        y[j + 16] = f32((b[8 + j] >> 4) | xh1) * d + m
    return y


def ref_q8_0(b: bytes) -> list:
    d = half(b, 0)
    return [f32(np.int8(np.uint8(b[2 + j]))) * d for j in range(32)]


def ref_q2_k(b: bytes) -> list:
    scales, qs = b[0:16], b[16:80]
    d, dmin = half(b, 80), half(b, 82)
    y, q, is_ = [], 0, 0
    for _ in range(2):
        shift = 0
        for _ in range(4):
            for part in (0, 16):
                sc = scales[is_]
                is_ += 1
                dl, ml = d * f32(sc & 0xF), dmin * f32(sc >> 4)
                y += [dl * f32((qs[q + part + l] >> shift) & 3) - ml for l in range(16)]
            shift += 2
        q += 32
    return y


def ref_q3_k(b: bytes) -> list:
    hm, qs, raw, d_all = b[0:32], b[32:96], b[96:108], half(b, 108)
    # The kmask1/kmask2 shuffle of the C code, on four little-endian uint32 words.
    aux = list(struct.unpack("<3I", raw)) + [0]
    kmask1, kmask2 = 0x03030303, 0x0F0F0F0F
    tmp = aux[2]
    aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4)
    aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4)
    aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4)
    aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4)
    scales = np.frombuffer(struct.pack("<4I", *aux), dtype=np.int8)
    y, q, is_, m = [], 0, 0, 1
    for _ in range(2):
        shift = 0
        for _ in range(4):
            for part in (0, 16):
                dl = d_all * f32(int(scales[is_]) - 32)
                is_ += 1
                y += [
                    dl * f32(((qs[q + part + l] >> shift) & 3) - (0 if hm[part + l] & m else 4))
                    for l in range(16)
                ]
            shift += 2
            m <<= 1
        q += 32
    return y


def scale_min_k4(j: int, q: bytes) -> tuple[int, int]:
    if j < 4:
        return q[j] & 63, q[j + 4] & 63
    return (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4)


def ref_q4_k(b: bytes) -> list:
    d, dmin, scales, qs = half(b, 0), half(b, 2), b[4:16], b[16:144]
    y, q, is_ = [], 0, 0
    for _ in range(4):
        sc, m = scale_min_k4(is_, scales)
        d1, m1 = d * f32(sc), dmin * f32(m)
        sc, m = scale_min_k4(is_ + 1, scales)
        d2, m2 = d * f32(sc), dmin * f32(m)
        y += [d1 * f32(qs[q + l] & 0xF) - m1 for l in range(32)]
        y += [d2 * f32(qs[q + l] >> 4) - m2 for l in range(32)]
        q += 32
        is_ += 2
    return y


def ref_q5_k(b: bytes) -> list:
    d, dmin, scales, qh, ql = half(b, 0), half(b, 2), b[4:16], b[16:48], b[48:176]
    y, q, is_, u1, u2 = [], 0, 0, 1, 2
    for _ in range(4):
        sc, m = scale_min_k4(is_, scales)
        d1, m1 = d * f32(sc), dmin * f32(m)
        sc, m = scale_min_k4(is_ + 1, scales)
        d2, m2 = d * f32(sc), dmin * f32(m)
        y += [d1 * f32((ql[q + l] & 0xF) + (16 if qh[l] & u1 else 0)) - m1 for l in range(32)]
        y += [d2 * f32((ql[q + l] >> 4) + (16 if qh[l] & u2 else 0)) - m2 for l in range(32)]
        q += 32
        is_ += 2
        u1 <<= 2
        u2 <<= 2
    return y


def ref_q6_k(b: bytes) -> list:
    ql, qh, sc, d = b[0:128], b[128:192], np.frombuffer(b[192:208], np.int8), half(b, 208)
    y = [f32(0)] * 256
    for h in range(2):
        for l in range(32):
            is_ = l // 16
            a, c = ql[64 * h + l], ql[64 * h + 32 + l]
            hh = qh[32 * h + l]
            q1 = ((a & 0xF) | (((hh >> 0) & 3) << 4)) - 32
            q2 = ((c & 0xF) | (((hh >> 2) & 3) << 4)) - 32
            q3 = ((a >> 4) | (((hh >> 4) & 3) << 4)) - 32
            q4 = ((c >> 4) | (((hh >> 6) & 3) << 4)) - 32
            base = 128 * h
            y[base + l] = d * f32(sc[8 * h + is_ + 0]) * f32(q1)
            y[base + l + 32] = d * f32(sc[8 * h + is_ + 2]) * f32(q2)
            y[base + l + 64] = d * f32(sc[8 * h + is_ + 4]) * f32(q3)
            y[base + l + 96] = d * f32(sc[8 * h + is_ + 6]) * f32(q4)
    return y


def ref_q8_k(b: bytes) -> list:
    d = f32(np.frombuffer(b[0:4], "<f4")[0])
    return [d * f32(v) for v in np.frombuffer(b[4:260], np.int8)]


KVALUES_MXFP4 = (0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12)


def ref_mxfp4(b: bytes) -> list:
    e = b[0]
    bits = (0x00200000 << e) if e < 2 else ((e - 1) << 23)  # GGML_E8M0_TO_FP32_HALF
    d = f32(np.frombuffer(struct.pack("<I", bits), "<f4")[0])
    y = [f32(0)] * 32
    for j in range(16):
        y[j] = f32(KVALUES_MXFP4[b[1 + j] & 0x0F]) * d
        y[j + 16] = f32(KVALUES_MXFP4[b[1 + j] >> 4]) * d
    return y


C_PORTS = {
    "Q4_0": ref_q4_0, "Q4_1": ref_q4_1, "Q5_0": ref_q5_0, "Q5_1": ref_q5_1, "Q8_0": ref_q8_0,
    "Q2_K": ref_q2_k, "Q3_K": ref_q3_k, "Q4_K": ref_q4_k, "Q5_K": ref_q5_k, "Q6_K": ref_q6_k,
    "Q8_K": ref_q8_k, "MXFP4": ref_mxfp4,
}


# --- tests ------------------------------------------------------------------------------------------


def test_the_required_types_are_all_supported():
    required = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K",
                "Q5_K", "Q6_K", "Q8_K"}
    assert required <= set(GGUF_TYPES)
    # Block geometry from ggml-common.h static_asserts.
    sizes = {name: (spec.block_size, spec.type_size) for name, spec in GGUF_TYPES.items()}
    assert sizes["Q4_0"] == (32, 18) and sizes["Q5_1"] == (32, 24) and sizes["Q8_0"] == (32, 34)
    assert sizes["Q2_K"] == (256, 84) and sizes["Q3_K"] == (256, 110) and sizes["Q4_K"] == (256, 144)
    assert sizes["Q5_K"] == (256, 176) and sizes["Q6_K"] == (256, 210) and sizes["Q8_K"] == (256, 292)
    assert sizes["MXFP4"] == (32, 17)
    assert dequant.is_block_type("Q4_K") and not dequant.is_block_type("F16")


@pytest.mark.parametrize("ggml_type", sorted(C_PORTS))
def test_matches_a_literal_port_of_ggml(ggml_type):
    blocks = random_blocks(ggml_type, 3, seed=len(ggml_type))
    with np.errstate(over="ignore"):  # MXFP4 with e = 255 overflows to inf, in ggml too
        values = [v for block in blocks for v in C_PORTS[ggml_type](block.tobytes())]
    expected = np.array(values, dtype=np.float32)
    same_bits(dequantize(blocks, ggml_type), expected)


@pytest.mark.parametrize("ggml_type", sorted(set(GGUF_TYPES) - {"Q8_K"}))
def test_matches_the_gguf_package_bit_for_bit(ggml_type):
    gguf = pytest.importorskip("gguf")
    blocks = random_blocks(ggml_type, 97, seed=7)
    with np.errstate(over="ignore"):
        expected = gguf.quants.dequantize(blocks.reshape(-1), gguf.GGMLQuantizationType[ggml_type])
    same_bits(dequantize(blocks, ggml_type), np.asarray(expected, dtype=np.float32).reshape(-1))


def test_q4_0_block_from_literal_bytes():
    # d = 0.5 (fp16 0x3800); every qs byte 0x9F: low nibble 15 -> (15 - 8) * 0.5, high nibble 9 -> 0.5.
    block = np.frombuffer(b"\x00\x38" + b"\x9f" * 16, dtype=np.uint8)
    np.testing.assert_array_equal(dequantize(block, "Q4_0"), np.array([3.5] * 16 + [0.5] * 16, np.float32))


def test_q8_k_block_from_literal_bytes():
    # d = 0.25 (float32), qs = 0, 1, ..., -128 ... ; bsums are not part of the values.
    qs = np.arange(-128, 128, dtype=np.int8)
    block = np.frombuffer(struct.pack("<f", 0.25) + qs.tobytes() + b"\xff" * 32, dtype=np.uint8)
    np.testing.assert_array_equal(dequantize(block, "Q8_K"), qs.astype(np.float32) * np.float32(0.25))


def test_quantized_known_floats_come_back_exactly():
    pytest.importorskip("gguf")
    # Q8_0: a block whose absolute max is 127 has d = 1, so integers survive exactly.
    ints = np.concatenate([np.arange(-127, -95), np.arange(96, 128)]).astype(np.float32).reshape(2, 32)
    packed = quantize_with_gguf(ints, "Q8_0")
    assert packed.dtype == np.uint8 and packed.shape == (2, 34)
    np.testing.assert_array_equal(dequantize(packed, "Q8_0").reshape(2, 32), ints)
    # Q4_0: d = max / -8 with max = -8 gives d = 1 and codes q + 8.
    values = np.array([-8, 7, 0, 3, -1, 5, -6, 2] * 4, dtype=np.float32)
    np.testing.assert_array_equal(dequantize(quantize_with_gguf(values, "Q4_0"), "Q4_0"), values)


def test_quantize_with_gguf_refuses_types_gguf_cannot_quantize():
    pytest.importorskip("gguf")
    with pytest.raises(NotImplementedError):
        quantize_with_gguf(np.zeros(256, np.float32), "Q4_K")


def test_chunked_decoding_equals_one_pass(monkeypatch):
    blocks = random_blocks("Q6_K", 11, seed=3)
    whole = dequantize(blocks, "Q6_K")
    monkeypatch.setattr(dequant, "_CHUNK_ELEMENTS", 3 * 256)  # 3 blocks per step, a ragged last step
    out = np.empty(11 * 256, dtype=np.float32)
    result = dequantize(blocks, "Q6_K", out=out, workers=1)
    assert result.base is out or result is out
    same_bits(result, whole)
    same_bits(dequantize(blocks, "Q6_K", workers=3), whole)  # chunks decoded on threads


def test_dequantize_blocks_shape_and_errors():
    blocks = random_blocks("Q5_K", 2)
    assert dequantize_blocks(blocks, "Q5_K").shape == (2, 256)
    with pytest.raises(ValueError):
        dequantize_blocks(blocks[:, :100], "Q5_K")
    with pytest.raises(MalformedInput) as bad_size:
        dequantize(np.zeros(35, np.uint8), "Q8_0")
    assert bad_size.value.finding_id == "tensor-size-mismatch"
    with pytest.raises(MalformedInput) as unknown:
        dequantize(np.zeros(66, np.uint8), "IQ2_XXS")
    assert unknown.value.finding_id == "tensor-unsupported-dtype"


# --- Grok-1 int8 --------------------------------------------------------------------------------------


def loop_dequantize(weight: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The definition, one element at a time: scale index per axis is 0 (broadcast), the weight index
    (same length) or weight index // (rows per block)."""
    padded = scales.reshape((1,) * (weight.ndim - scales.ndim) + scales.shape)
    out = np.empty(weight.shape, dtype=np.float32)
    for index in np.ndindex(*weight.shape):
        scale_index = tuple(
            0 if s == 1 else i if s == w else i // (w // s)
            for i, w, s in zip(index, weight.shape, padded.shape)
        )
        out[index] = np.float32(weight[index]) * np.float32(padded[scale_index])
    return out


GROK_LIKE = [
    ((48, 16), (8, 16)),  # attention output: 8 row blocks of 6 (Grok: 6144 rows, blocks of 768)
    ((48, 16), (1, 16)),  # q/k/v: one scale per column
    ((4, 32, 12), (4, 8, 12)),  # moe linear_1: blocks of 4 along the middle axis (Grok: 4096)
    ((4, 12, 32), (4, 1, 32)),  # moe linear / linear_v: broadcast over the middle axis
    ((12, 8), (8,)),  # fewer scale axes: padded with a leading 1
]


@pytest.mark.parametrize("weight_shape, scales_shape", GROK_LIKE)
def test_int8_dequantization_matches_the_loop(weight_shape, scales_shape):
    rng = np.random.default_rng(1)
    weight = rng.integers(-128, 128, weight_shape, dtype=np.int8)
    scales = rng.standard_normal(scales_shape).astype(ml_dtypes.bfloat16)
    result = dequantize_int8(weight, scales)
    assert result.dtype == np.float32 and result.shape == weight_shape
    np.testing.assert_array_equal(result, loop_dequantize(weight, scales))


def test_attention_output_blocks_cover_row_ranges():
    # Row block b (scale row b) covers weight rows [6b, 6b + 6): with all weights 1 each row shows its scale.
    scales = np.arange(1, 9, dtype=np.float32).reshape(8, 1) * np.ones((1, 3), np.float32)
    result = dequantize_int8(np.ones((48, 3), np.int8), scales)
    np.testing.assert_array_equal(result[:, 0], np.repeat(np.arange(1, 9, dtype=np.float32), 6))
    assert int8_scale_plan((6144, 6144), (8, 6144)) == ((8, 768, 6144), (8, 1, 6144))
    assert int8_scale_plan((8, 32768, 6144), (8, 8, 6144)) == ((8, 8, 4096, 6144), (8, 8, 1, 6144))
    assert int8_scale_plan((8, 6144, 32768), (8, 1, 32768)) == ((8, 6144, 32768), (8, 1, 32768))


def test_int8_in_the_scales_dtype_as_the_official_code():
    weight = np.array([[3, -7], [127, -128]], dtype=np.int8)
    scales = np.array([[0.1, 3.0]], dtype=ml_dtypes.bfloat16)
    result = dequantize_int8(weight, scales, dtype=None)
    assert result.dtype == np.dtype(ml_dtypes.bfloat16)
    expected = (weight.astype(ml_dtypes.bfloat16) * scales).astype(np.float32)
    np.testing.assert_array_equal(result.astype(np.float32), expected)


@pytest.mark.parametrize("weight_shape, scales_shape", [((8, 4), (3, 4)), ((8, 4), (16, 4)), ((4,), (2, 4))])
def test_int8_scale_shapes_that_do_not_fit_are_malformed(weight_shape, scales_shape):
    with pytest.raises(MalformedInput) as error:
        dequantize_int8(np.zeros(weight_shape, np.int8), np.ones(scales_shape, np.float32))
    assert error.value.finding_id == "tensor-scale-shape-mismatch"


def test_int8_jax_variant_matches_numpy_inside_jit():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from openaudit.run.dequant import dequantize_int8_jax

    rng = np.random.default_rng(2)
    for weight_shape, scales_shape in GROK_LIKE[:3]:
        weight = rng.integers(-128, 128, weight_shape, dtype=np.int8)
        scales = rng.standard_normal(scales_shape).astype(ml_dtypes.bfloat16)
        jitted = jax.jit(dequantize_int8_jax)(jnp.asarray(weight), jnp.asarray(scales))
        assert jitted.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(jitted), dequantize_int8(weight, scales))
    as_bf16 = dequantize_int8_jax(jnp.ones((8, 2), jnp.int8), jnp.full((2, 2), 0.5, jnp.bfloat16), dtype=None)
    assert as_bf16.dtype == jnp.bfloat16
