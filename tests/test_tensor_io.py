"""TensorReader: exact round trips for every dtype from real file bytes, strided records, slices, GGUF
blocks, and malformed records that must become MalformedInput (never a crash or a numpy error)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from openaudit.errors import MalformedInput
from openaudit.inspect.tensors import TensorRecord
from openaudit.run import dequant
from openaudit.run.tensor_io import TensorReader, numpy_dtype, result_dtype, unpack_subbyte

FILE = "weights.bin"


class FileWriter:
    """Lays tensors out one after another behind a junk prefix (odd offsets on purpose) and returns
    records with the absolute offsets it wrote."""

    def __init__(self, prefix: bytes = b"junk-header\x00\x01"):
        self.data = bytearray(prefix)
        self.records: dict[str, TensorRecord] = {}

    def add(self, name: str, dtype: str, shape: tuple[int, ...], payload: bytes, *, gap: int = 0,
            **fields) -> TensorRecord:
        self.data += b"\xee" * gap
        record = TensorRecord(name=name, dtype=dtype, shape=tuple(shape), file=FILE,
                              nbytes=fields.pop("nbytes", len(payload)), offset=len(self.data), **fields)
        self.data += payload
        self.records[name] = record
        return record

    def write(self, directory: Path, trailing: bytes = b"") -> Path:
        path = directory / FILE
        path.write_bytes(bytes(self.data) + trailing)
        return path


def reader_for(path: Path, **kwargs) -> TensorReader:
    return TensorReader({FILE: path}, **kwargs)


def error_id(reader: TensorReader, record: TensorRecord, index=None) -> str:
    with pytest.raises(MalformedInput) as error:
        reader.read(record) if index is None else reader.read_slice(record, index)
    return error.value.finding_id


# --- dtypes -------------------------------------------------------------------------------------------

EXPECTED_DTYPES = {
    "BOOL": np.dtype(np.bool_), "U8": np.dtype(np.uint8), "I8": np.dtype(np.int8),
    "I16": np.dtype("<i2"), "U16": np.dtype("<u2"), "I32": np.dtype("<i4"), "U32": np.dtype("<u4"),
    "I64": np.dtype("<i8"), "U64": np.dtype("<u8"), "F16": np.dtype("<f2"), "BF16": np.dtype(ml_dtypes.bfloat16),
    "F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "C64": np.dtype("<c8"),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn), "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "F8_E8M0": np.dtype(ml_dtypes.float8_e8m0fnu), "F8_E4M3FNUZ": np.dtype(ml_dtypes.float8_e4m3fnuz),
    "F8_E5M2FNUZ": np.dtype(ml_dtypes.float8_e5m2fnuz), "F4": np.dtype(ml_dtypes.float4_e2m1fn),
    "F6_E2M3": np.dtype(ml_dtypes.float6_e2m3fn), "F6_E3M2": np.dtype(ml_dtypes.float6_e3m2fn),
}


def test_numpy_dtype_for_every_canonical_dtype():
    for canonical, expected in EXPECTED_DTYPES.items():
        assert numpy_dtype(canonical) == expected, canonical
    assert result_dtype("Q4_K") == np.float32 and result_dtype("BF16") == np.dtype(ml_dtypes.bfloat16)
    for bad in ("Q4_K", "F8", "bf16", ""):
        with pytest.raises(MalformedInput) as error:
            numpy_dtype(bad)
        assert error.value.finding_id == "tensor-unsupported-dtype"


def plain_samples() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    all_bytes = np.arange(256, dtype=np.uint8)
    samples = {
        "BOOL": np.array([[True, False, True], [False, False, True]]),
        "U8": all_bytes.reshape(16, 16),
        "I8": all_bytes.view(np.int8).reshape(4, 64),
        "I16": np.array([-32768, -1, 0, 1, 32767], "<i2"),
        "U16": np.array([0, 1, 65535, 4660], "<u2"),
        "I32": np.array([[-(2**31), 2**31 - 1], [7, -7]], "<i4"),
        "U32": np.array([0, 2**32 - 1, 305419896], "<u4"),
        "I64": np.array([-(2**63), 2**63 - 1, 42], "<i8"),
        "U64": np.array([0, 2**64 - 1, 2**40], "<u8"),
        "F16": np.array([0.0, -0.0, 6.1e-5, 65504.0, np.inf, np.nan], "<f2"),
        "F32": rng.standard_normal((3, 4, 5)).astype("<f4"),
        "F64": np.array([np.pi, -np.inf, 5e-324], "<f8"),
        "C64": np.array([1 + 2j, -0.5j, np.inf], "<c8"),
        "BF16": rng.standard_normal((7, 3)).astype(ml_dtypes.bfloat16),
    }
    for canonical in ("F8_E4M3", "F8_E5M2", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ"):
        samples[canonical] = all_bytes.view(EXPECTED_DTYPES[canonical]).reshape(2, 128)  # every code
    return samples


def test_every_plain_dtype_round_trips_bit_for_bit(tmp_path):
    writer = FileWriter()
    samples = plain_samples()
    for gap, (canonical, array) in enumerate(samples.items()):
        writer.add(canonical, canonical, array.shape, array.tobytes(), gap=gap % 3)
    path = writer.write(tmp_path, trailing=b"tail")
    with reader_for(path) as reader:
        for canonical, array in samples.items():
            result = reader.read(writer.records[canonical])
            assert result.dtype == EXPECTED_DTYPES[canonical], canonical
            assert result.shape == array.shape, canonical
            assert result.tobytes() == array.tobytes(), canonical
            assert not result.flags.writeable and not result.flags.owndata, canonical  # a view of the map
        first = reader.read(writer.records["F32"])
        assert np.shares_memory(first, reader.read(writer.records["F32"]))  # one map per file


def test_f8_values_are_exact(tmp_path):
    writer = FileWriter()
    cases = {
        "F8_E4M3": (b"\x38\x7e\xc0\x01", [1.0, 448.0, -2.0, 2.0**-9]),
        "F8_E5M2": (b"\x3c\x7b\x7c\xc0", [1.0, 57344.0, np.inf, -2.0]),
        "F8_E8M0": (b"\x7f\x80\x00", [1.0, 2.0, 2.0**-127]),
        "F8_E4M3FNUZ": (b"\x40\x7f\x01", [1.0, 240.0, 2.0**-10]),
        "F8_E5M2FNUZ": (b"\x40\x7f\x01", [1.0, 57344.0, 2.0**-17]),
    }
    for canonical, (payload, _) in cases.items():
        writer.add(canonical, canonical, (len(payload),), payload)
    nan = writer.add("nan", "F8_E4M3FNUZ", (1,), b"\x80")
    with reader_for(writer.write(tmp_path)) as reader:
        for canonical, (_, values) in cases.items():
            result = reader.read(writer.records[canonical]).astype(np.float64)
            np.testing.assert_array_equal(result, np.array(values), err_msg=canonical)
        assert np.isnan(reader.read(nan).astype(np.float32)[0])  # FNUZ: 0x80 is the only NaN


def test_f4_and_f6_are_unpacked_exactly(tmp_path):
    writer = FileWriter()
    # F4: element 2i in the low nibble of byte i. 0x2f -> codes 0xf (-6), 0x2 (1); 0x70 -> 0 (0), 7 (6).
    f4 = writer.add("f4", "F4", (2, 2), b"\x2f\x70")
    # F6: four codes per 3 bytes, little-endian bit stream (code k at bits 6k..6k+5).
    # E2M3 codes 8, 31, 40, 1 = 1.0, 7.5, -1.0, 0.125; E3M2 codes 12, 31, 44, 1 = 1.0, 28.0, -1.0, 0.0625.
    e2m3 = writer.add("e2m3", "F6_E2M3", (4,), b"\xc8\x87\x06")
    e3m2 = writer.add("e3m2", "F6_E3M2", (4,), b"\xcc\xc7\x06")
    path = writer.write(tmp_path)
    with reader_for(path) as reader:
        result = reader.read(f4)
        assert result.dtype == np.dtype(ml_dtypes.float4_e2m1fn) and result.shape == (2, 2)
        np.testing.assert_array_equal(result.astype(np.float32), [[-6.0, 1.0], [0.0, 6.0]])
        np.testing.assert_array_equal(reader.read(e2m3).astype(np.float32), [1.0, 7.5, -1.0, 0.125])
        np.testing.assert_array_equal(reader.read(e3m2).astype(np.float32), [1.0, 28.0, -1.0, 0.0625])
        assert reader.read(e3m2).dtype == np.dtype(ml_dtypes.float6_e3m2fn)


def pack_codes(codes: np.ndarray, bits: int) -> bytes:
    """The test's own packer: code k at bit k*bits of a little-endian integer."""
    value = 0
    for position, code in enumerate(codes.tolist()):
        value |= code << (position * bits)
    return value.to_bytes(len(codes) * bits // 8, "little")


@pytest.mark.parametrize("canonical, bits", [("F4", 4), ("F6_E2M3", 6), ("F6_E3M2", 6)])
def test_every_subbyte_code_round_trips(tmp_path, canonical, bits):
    codes = np.arange(2**bits, dtype=np.uint8)
    writer = FileWriter()
    record = writer.add(canonical, canonical, (4, 2**bits // 4), pack_codes(codes, bits))
    with reader_for(writer.write(tmp_path)) as reader:
        expected = codes.view(EXPECTED_DTYPES[canonical]).reshape(4, -1)
        assert reader.read(record).tobytes() == expected.tobytes()
    np.testing.assert_array_equal(unpack_subbyte(np.frombuffer(pack_codes(codes, bits), np.uint8), canonical,
                                                 codes.size).view(np.uint8), codes)


def test_invalid_bool_bytes_are_normalised(tmp_path):
    writer = FileWriter()
    record = writer.add("mask", "BOOL", (4,), b"\x00\x01\x02\xff")
    with reader_for(writer.write(tmp_path)) as reader:
        result = reader.read(record)
        assert result.dtype == np.bool_
        assert result.tolist() == [False, True, True, True]


# --- strides ------------------------------------------------------------------------------------------


def test_fortran_order_record_reads_as_the_original_array(tmp_path):
    original = np.arange(24, dtype="<f4").reshape(4, 6) * 1.5
    writer = FileWriter()
    record = writer.add("w", "F32", (4, 6), original.T.copy().tobytes(), strides=(1, 4))
    with reader_for(writer.write(tmp_path)) as reader:
        result = reader.read(record)
        assert not result.flags.c_contiguous and not result.flags.owndata
        np.testing.assert_array_equal(result, original)
        np.testing.assert_array_equal(reader.read_slice(record, (slice(1, 3), slice(None, None, 2))),
                                      original[1:3, ::2])


def test_strided_view_into_a_larger_storage(tmp_path):
    storage = np.arange(30, dtype="<i2")
    writer = FileWriter()
    # A (3, 4) view starting at storage element 2 with row stride 7 (a PyTorch narrow/select result).
    record = writer.add("v", "I16", (3, 4), storage[2:].tobytes(), nbytes=24, strides=(7, 1))
    with reader_for(writer.write(tmp_path)) as reader:
        expected = np.array([[2, 3, 4, 5], [9, 10, 11, 12], [16, 17, 18, 19]], dtype="<i2")
        np.testing.assert_array_equal(reader.read(record), expected)


def test_zero_stride_record_at_the_end_of_the_file(tmp_path):
    # An expanded tensor: 5 rows sharing the same 3 values; its span (12 bytes) is all the file has.
    writer = FileWriter()
    record = writer.add("e", "F32", (5, 3), np.array([1, 2, 3], "<f4").tobytes(), nbytes=60, strides=(0, 1))
    with reader_for(writer.write(tmp_path)) as reader:
        np.testing.assert_array_equal(reader.read(record), np.tile(np.array([1, 2, 3], np.float32), (5, 1)))


def test_bad_strides_are_malformed(tmp_path):
    writer = FileWriter()
    payload = np.zeros(6, "<f4").tobytes()
    fits = writer.add("fits", "F32", (2, 3), payload, strides=(3, 1))
    path = writer.write(tmp_path)
    with reader_for(path) as reader:
        assert reader.read(fits).shape == (2, 3)
        assert error_id(reader, replace(fits, **{"strides": (4, 1)})) == "truncated-file"
        assert error_id(reader, replace(fits, **{"strides": (-3, 1)})) == "tensor-bad-strides"
        assert error_id(reader, replace(fits, **{"strides": (3,)})) == "tensor-bad-strides"
        packed = TensorRecord("p", "F4", (4,), FILE, nbytes=2, offset=0, strides=(1,))
        assert error_id(reader, packed) == "tensor-bad-strides"
        # Strides that reach far past the file are refused before any view exists.
        huge = TensorRecord("h", "F32", (2, 2), FILE, nbytes=16, offset=0, strides=(2**60, 1))
        assert error_id(reader, huge) == "truncated-file"


# --- bounds and consistency ---------------------------------------------------------------------------


def test_records_that_disagree_with_the_file_are_malformed(tmp_path):
    writer = FileWriter()
    good = writer.add("good", "F32", (2, 2), np.ones(4, "<f4").tobytes())
    path = writer.write(tmp_path)
    size = path.stat().st_size

    def variant(**changes) -> TensorRecord:
        return replace(good, **changes)

    with reader_for(path, byte_swapped={(FILE, "swapped")}) as reader:
        assert reader.file_size(FILE) == size
        assert error_id(reader, variant(offset=size - 15)) == "truncated-file"
        assert error_id(reader, variant(offset=size + 10**12)) == "truncated-file"
        assert error_id(reader, variant(shape=(2**40, 2**40), nbytes=None)) == "truncated-file"
        assert error_id(reader, variant(nbytes=15)) == "tensor-size-mismatch"
        assert error_id(reader, variant(shape=(2, 3))) == "tensor-size-mismatch"
        assert error_id(reader, variant(shape=(-1, -4))) == "tensor-size-mismatch"
        assert error_id(reader, variant(offset=None)) == "tensor-location-unknown"
        assert error_id(reader, variant(offset=-4)) == "tensor-location-unknown"
        assert error_id(reader, variant(dtype="Q8_1")) == "tensor-unsupported-dtype"
        assert error_id(reader, variant(dtype="F128")) == "tensor-unsupported-dtype"
        assert error_id(reader, variant(name="swapped")) == "tensor-byte-swapped"
        assert reader.read(variant(name="swapped", dtype="U8", shape=(16,))).size == 16  # one byte: no order
        assert error_id(reader, variant(dtype="F4", shape=(3,), nbytes=None)) == "tensor-size-mismatch"
        assert error_id(reader, variant(dtype="F6_E2M3", shape=(6,), nbytes=None)) == "tensor-size-mismatch"
        assert error_id(reader, variant(dtype="Q8_0", shape=(1, 20), nbytes=None)) == "tensor-size-mismatch"
        assert error_id(reader, variant(dtype="Q8_0", shape=(), nbytes=None)) == "tensor-size-mismatch"
        assert error_id(reader, variant(file="other.bin")) == "unreadable-file"
        np.testing.assert_array_equal(reader.read(good), np.ones((2, 2), np.float32))


def test_special_files_and_links_are_refused(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    target = tmp_path / "target.bin"
    target.write_bytes(b"\x00" * 16)
    link = tmp_path / "link.bin"
    link.symlink_to(target)
    record = TensorRecord("t", "U8", (4,), "x", nbytes=4, offset=0)
    with TensorReader({"x": fifo}) as reader:
        assert error_id(reader, record) == "special-file"
    with TensorReader({"x": link}) as reader:
        assert error_id(reader, record) == "unreadable-file"


def test_empty_tensors_and_empty_files(tmp_path):
    empty_file = tmp_path / FILE
    empty_file.write_bytes(b"")
    with reader_for(empty_file) as reader:
        result = reader.read(TensorRecord("e", "BF16", (0, 4), FILE, nbytes=0, offset=0))
        assert result.shape == (0, 4) and result.dtype == np.dtype(ml_dtypes.bfloat16)
        empty = TensorRecord("e", "F32", (0, 4), FILE, nbytes=0, offset=0)
        assert reader.read_slice(empty, (slice(0, 0),)).shape == (0, 4)
        assert error_id(reader, TensorRecord("x", "U8", (1,), FILE, nbytes=1, offset=0)) == "truncated-file"


def test_arrays_outlive_the_reader(tmp_path):
    writer = FileWriter()
    record = writer.add("a", "I32", (3,), np.array([7, 8, 9], "<i4").tobytes())
    reader = reader_for(writer.write(tmp_path))
    array = reader.read(record)
    reader.close()  # the map stays alive while ``array`` views it
    assert array.tolist() == [7, 8, 9]
    assert reader.read(record).tolist() == [7, 8, 9]  # a closed reader maps the file again on demand
    reader.close()


# --- slices -------------------------------------------------------------------------------------------

PLAIN_INDICES = [
    (slice(1, 3), slice(None), slice(0, 6, 2)),
    (2,),
    (slice(None, None, -1), 3),
    (),
    (slice(3, 1, -1), slice(4, 0, -2), -1),
    (slice(0, 0),),
    (slice(-2, None), slice(None, None, 3)),
]


@pytest.mark.parametrize("index", PLAIN_INDICES)
def test_read_slice_equals_slicing_the_full_array(tmp_path, index):
    array = np.arange(120, dtype="<f4").reshape(4, 5, 6) / 7
    writer = FileWriter()
    record = writer.add("x", "F32", array.shape, array.tobytes())
    with reader_for(writer.write(tmp_path)) as reader:
        part = reader.read_slice(record, index)
        np.testing.assert_array_equal(part, array[index])
        assert part.dtype == np.float32 and not part.flags.owndata


def test_read_slice_argument_errors(tmp_path):
    writer = FileWriter()
    record = writer.add("x", "U8", (2, 3), bytes(range(6)))
    with reader_for(writer.write(tmp_path)) as reader:
        with pytest.raises(IndexError):
            reader.read_slice(record, (0, 0, 0))
        with pytest.raises(IndexError):
            reader.read_slice(record, (2,))
        with pytest.raises(TypeError):
            reader.read_slice(record, (None,))


def random_block_bytes(ggml_type: str, blocks: int, seed: int) -> bytes:
    spec = dequant.GGUF_TYPES[ggml_type]
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(blocks, spec.type_size), dtype=np.uint8)
    halves = {"Q8_0": (0,), "Q4_K": (0, 2), "Q6_K": (208,), "Q5_0": (0,)}[ggml_type]
    for start in halves:
        data[:, start : start + 2] = rng.uniform(-2, 2, (blocks, 1)).astype("<f2").view(np.uint8)
    return data.tobytes()


BLOCK_INDICES = [
    (slice(None), 1, slice(250, 300)),
    (1, slice(0, 3, 2), slice(511, 0, -3)),
    (0,),
    (slice(None), slice(None), 257),
    (slice(0, 0),),
    (slice(None), slice(None), slice(300, 290)),
    (-1, -1, slice(None, None, -1)),
]


@pytest.mark.parametrize("ggml_type", ["Q4_K", "Q6_K", "Q8_0", "Q5_0"])
def test_gguf_blocks_read_whole_and_sliced(tmp_path, ggml_type):
    shape = (2, 3, 512)
    spec = dequant.GGUF_TYPES[ggml_type]
    count = 2 * 3 * 512 // spec.block_size
    payload = random_block_bytes(ggml_type, count, seed=count)
    writer = FileWriter(prefix=b"\x00" * 32)
    record = writer.add("q", ggml_type, shape, payload, gap=32)
    expected = dequant.dequantize(np.frombuffer(payload, np.uint8), ggml_type).reshape(shape)
    with reader_for(writer.write(tmp_path)) as reader:
        whole = reader.read(record)
        assert whole.dtype == np.float32 and whole.shape == shape
        np.testing.assert_array_equal(whole.view(np.uint32), expected.view(np.uint32))
        for index in BLOCK_INDICES:
            part = reader.read_slice(record, index)
            assert part.shape == expected[index].shape, index
            np.testing.assert_array_equal(part.view(np.uint32), expected[index].view(np.uint32), err_msg=str(index))


def test_gguf_read_matches_the_gguf_package(tmp_path):
    gguf = pytest.importorskip("gguf")
    payload = random_block_bytes("Q4_K", 4, seed=11)
    writer = FileWriter()
    record = writer.add("q", "Q4_K", (2, 512), payload)
    expected = gguf.quants.dequantize(np.frombuffer(payload, np.uint8).reshape(2, -1), gguf.GGMLQuantizationType.Q4_K)
    with reader_for(writer.write(tmp_path)) as reader:
        np.testing.assert_array_equal(reader.read(record).view(np.uint32),
                                      np.asarray(expected, np.float32).view(np.uint32))


def test_quantized_known_floats_read_back_exactly(tmp_path):
    pytest.importorskip("gguf")
    values = (np.arange(256) % 255 - 127).astype(np.float32).reshape(4, 64)  # -127 .. 127
    values[:, ::32] = 127.0  # every block has absolute max 127, so d = 1 and integers are exact
    writer = FileWriter()
    record = writer.add("q8", "Q8_0", values.shape, dequant.quantize_with_gguf(values, "Q8_0").tobytes())
    with reader_for(writer.write(tmp_path)) as reader:
        np.testing.assert_array_equal(reader.read(record), values)
        np.testing.assert_array_equal(reader.read_slice(record, (slice(1, 3), slice(30, 40))), values[1:3, 30:40])


@pytest.mark.parametrize("canonical, shape", [("F4", (3, 8)), ("F4", (2, 5)), ("F6_E2M3", (3, 8)),
                                              ("F6_E3M2", (2, 6))])
def test_packed_slices_equal_slicing_the_full_array(tmp_path, canonical, shape):
    bits = 4 if canonical == "F4" else 6
    codes = np.random.default_rng(3).integers(0, 2**bits, size=int(np.prod(shape)), dtype=np.uint8)
    writer = FileWriter()
    record = writer.add("p", canonical, shape, pack_codes(codes, bits))
    expected = codes.view(EXPECTED_DTYPES[canonical]).reshape(shape)
    with reader_for(writer.write(tmp_path)) as reader:
        for index in [(slice(1, None),), (0, slice(1, 4)), (slice(None, None, -1), -1), ()]:
            part = reader.read_slice(record, index)
            assert part.tobytes() == expected[index].tobytes(), index
            assert part.dtype == expected.dtype


def test_shards_through_make_array_from_callback(tmp_path):
    jax = pytest.importorskip("jax")
    from jax.sharding import NamedSharding, PartitionSpec

    from openaudit.run.tensor_io import load_sharded

    array = np.arange(64, dtype="<f4").reshape(8, 8)
    writer = FileWriter()
    record = writer.add("w", "F32", array.shape, array.tobytes())
    quantized = writer.add("q", "Q8_0", (2, 64), random_block_bytes("Q8_0", 4, seed=9))
    mesh = jax.make_mesh((len(jax.devices()),), ("model",))
    calls = []
    with reader_for(writer.write(tmp_path)) as reader:
        def shard(index):
            calls.append(index)
            return reader.read_slice(record, index)

        columns = NamedSharding(mesh, PartitionSpec(None, "model"))
        result = jax.make_array_from_callback(array.shape, columns, shard)
        np.testing.assert_array_equal(np.asarray(result), array)
        assert len(calls) == len(jax.devices())
        replicated = load_sharded(reader, record, NamedSharding(mesh, PartitionSpec()))
        np.testing.assert_array_equal(np.asarray(replicated), array)
        dequantized = load_sharded(reader, quantized, columns)
        assert dequantized.dtype == np.float32
        np.testing.assert_array_equal(np.asarray(dequantized), reader.read(quantized))


# --- with the real header parsers --------------------------------------------------------------------


def test_safetensors_file_from_the_builder(tmp_path):
    builder = pytest.importorskip("tests.builders.safetensors_builder")
    scanner = pytest.importorskip("openaudit.inspect.safetensors")
    arrays = {
        "embed": np.random.default_rng(0).standard_normal((6, 4)).astype(ml_dtypes.bfloat16),
        "fp8": np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn).reshape(16, 16),
        "ids": np.arange(5, dtype=np.int64),
        "norm": np.linspace(0, 1, 4, dtype=np.float32),
    }
    path = tmp_path / "model.safetensors"
    builder.write_safetensors(path, arrays)
    scan = scanner.scan_safetensors(path, "model.safetensors", path.stat().st_size)
    assert scan.complete
    with TensorReader({"model.safetensors": path}) as reader:
        for record in scan.tensors:
            assert reader.read(record).tobytes() == arrays[record.name].tobytes(), record.name
            assert reader.read(record).dtype == arrays[record.name].dtype


def test_gguf_file_from_the_builder(tmp_path):
    builder = pytest.importorskip("tests.builders.gguf_builder")
    scanner = pytest.importorskip("openaudit.inspect.gguf")
    q4k = random_block_bytes("Q4_K", 2, seed=4)
    f16 = np.arange(12, dtype="<f2").reshape(3, 4)
    specs = [
        builder.TensorSpec("blk.0.ffn_down.weight", builder.Q4_K, (2, 256), q4k),
        builder.TensorSpec("output_norm.weight", builder.F16, (3, 4), f16.tobytes()),
    ]
    path = tmp_path / "model.gguf"
    builder.write_gguf(path, {"general.architecture": "llama"}, specs)
    scan = scanner.scan_gguf(path, "model.gguf", path.stat().st_size)
    records = {record.name: record for record in scan.tensors}
    with TensorReader({"model.gguf": path}) as reader:
        quantized = reader.read(records["blk.0.ffn_down.weight"])
        expected = dequant.dequantize(np.frombuffer(q4k, np.uint8), "Q4_K").reshape(2, 256)
        np.testing.assert_array_equal(quantized.view(np.uint32), expected.view(np.uint32))
        plain = reader.read(records["output_norm.weight"])
        assert plain.dtype == np.dtype("<f2")
        np.testing.assert_array_equal(plain, f16)


def test_every_finding_id_raised_is_in_the_catalogue():
    import re

    from openaudit.findings import catalogue
    from openaudit.run import tensor_io

    ids = set()
    for module in (tensor_io, dequant):
        source = Path(module.__file__).read_text(encoding="utf-8")
        ids |= set(re.findall(r'MalformedInput\(\s*"([a-z0-9-]+)"', source))
    assert {"tensor-size-mismatch", "truncated-file", "tensor-scale-shape-mismatch"} <= ids
    assert ids <= set(catalogue())
