"""The hardened GGUF reader: exact counts and sizes on valid files, one finding per hardening rule."""

from __future__ import annotations

import struct
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from openaudit import limits
from openaudit.errors import MalformedInput, ParseTimeout
from openaudit.inspect import gguf as reader
from openaudit.inspect.gguf import GGML_TYPES, GgmlType, read_gguf, scan_gguf
from openaudit.inspect.tensors import BUFFER, PARAMETER
from openaudit.limits import Deadline
from tests.builders import gguf_builder as gb
from tests.builders.gguf_builder import TensorSpec


def _read(path: Path, **kwargs) -> reader.GGUFFile:
    return read_gguf(path, path.name, path.stat().st_size, **kwargs)


def _scan(path: Path):
    return scan_gguf(path, path.name, path.stat().st_size)


def _ids(findings) -> list[str]:
    return [item.id for item in findings]


def _fatal(path: Path, **kwargs) -> MalformedInput:
    with pytest.raises(MalformedInput) as caught:
        _read(path, **kwargs)
    return caught.value


# --- the ggml type table --------------------------------------------------------------------------------



def count_reads(monkeypatch) -> list[int]:
    """Make the reader's file handles record the size of every read; returns the list they fill."""
    read_bytes: list[int] = []

    class CountingHandle:
        def __init__(self, handle):
            self._handle = handle

        def read(self, count=-1):
            chunk = self._handle.read(count)
            read_bytes.append(len(chunk))
            return chunk

        def seek(self, offset, whence=0):
            return self._handle.seek(offset, whence)

    @contextmanager
    def counting_open(location):
        with limits.open_regular(location) as handle:
            yield CountingHandle(handle)

    monkeypatch.setattr(reader, "open_regular", counting_open)
    return read_bytes

def test_ggml_type_table_has_every_current_type_with_exact_sizes():
    assert sorted(GGML_TYPES) == [*range(0, 4), *range(6, 31), 34, 35, 39, 40, 41, 42]
    assert GGML_TYPES[0] == GgmlType("F32", 1, 4)
    assert GGML_TYPES[30] == GgmlType("BF16", 1, 2)
    assert GGML_TYPES[2] == GgmlType("Q4_0", 32, 18)
    assert GGML_TYPES[9] == GgmlType("Q8_1", 32, 36)  # two fp16 + 32 int8 in current ggml
    assert GGML_TYPES[12] == GgmlType("Q4_K", 256, 144)
    assert GGML_TYPES[14] == GgmlType("Q6_K", 256, 210)
    assert GGML_TYPES[23] == GgmlType("IQ4_XS", 256, 136)
    assert GGML_TYPES[29] == GgmlType("IQ1_M", 256, 56)
    assert GGML_TYPES[34] == GgmlType("TQ1_0", 256, 54)
    assert GGML_TYPES[39] == GgmlType("MXFP4", 32, 17)
    # Plain types use openaudit's safetensors dtype names.
    assert [GGML_TYPES[i].name for i in (0, 1, 24, 25, 26, 27, 28, 30)] == [
        "F32", "F16", "I8", "I16", "I32", "I64", "F64", "BF16"
    ]


def test_ggml_type_table_agrees_with_gguf_package():
    constants = pytest.importorskip("gguf.constants")
    compared = 0
    for quant_type, (block, size) in constants.GGML_QUANT_SIZES.items():
        if quant_type.value == 9:
            continue  # gguf-py still lists Q8_1 with fp32 scales (40 bytes); ggml's block is 36
        assert GGML_TYPES[quant_type.value] == GgmlType(quant_type.name, block, size)
        compared += 1
    assert compared >= 33


# --- valid files ----------------------------------------------------------------------------------------

# name, ggml type, numpy shape, parameters, bytes
MIXED = [
    ("f32", gb.F32, (4, 8), 32, 128),
    ("f16", gb.F16, (3, 5), 15, 30),
    ("bf16", gb.BF16, (2, 16), 32, 64),
    ("q8_0", gb.Q8_0, (2, 64), 128, 136),
    ("q4_0", gb.Q4_0, (3, 32), 96, 54),
    ("q4_1", gb.Q4_1, (1, 64), 64, 40),
    ("q5_0", gb.Q5_0, (2, 32), 64, 44),
    ("q5_1", gb.Q5_1, (1, 96), 96, 72),
    ("q4_k", gb.Q4_K, (2, 256), 512, 288),
    ("q5_k", gb.Q5_K, (1, 512), 512, 352),
    ("q6_k", gb.Q6_K, (3, 256), 768, 630),
]
MIXED_RELATIVE_OFFSETS = [0, 128, 160, 224, 384, 448, 512, 576, 672, 960, 1312]


def _mixed_file(tmp_path: Path) -> gb.GGUFLayout:
    specs = [TensorSpec(name, kind, shape) for name, kind, shape, _, _ in MIXED]
    # One tensor carries real bytes, so the file is not all holes.
    specs[0] = TensorSpec("f32", gb.F32, (4, 8), data=struct.pack("<32f", *range(32)))
    return gb.write_gguf(tmp_path / "mixed.gguf", {"general.architecture": "llama"}, specs)


def test_mixed_types_give_exact_parameter_counts_and_byte_sizes(tmp_path):
    layout = _mixed_file(tmp_path)
    header = _read(layout.path)
    assert header.version == 3
    assert header.alignment == 32
    assert header.warnings == ()
    assert header.complete is True
    assert header.tensor_count == 11
    assert header.data_start == layout.data_start and header.data_start % 32 == 0
    assert [t.name for t in header.tensors] == [row[0] for row in MIXED]
    assert [t.dtype for t in header.tensors] == ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
                                                 "Q4_K", "Q5_K", "Q6_K"]
    assert [t.shape for t in header.tensors] == [row[2] for row in MIXED]
    assert [t.elements for t in header.tensors] == [row[3] for row in MIXED]
    assert [t.nbytes for t in header.tensors] == [row[4] for row in MIXED]
    assert [t.offset - header.data_start for t in header.tensors] == MIXED_RELATIVE_OFFSETS
    assert sum(t.elements for t in header.tensors) == 2319
    assert sum(t.nbytes for t in header.tensors) == 1838
    assert layout.size == header.data_start + 1952
    assert {t.file for t in header.tensors} == {"mixed.gguf"}
    assert {t.role for t in header.tensors} == {PARAMETER}


def test_metadata_of_every_value_type(tmp_path):
    path = tmp_path / "values.gguf"
    gb.write_gguf(path, [
        ("general.architecture", "llama"),
        ("u8", gb.u8(255)), ("i8", gb.i8(-128)), ("u16", gb.u16(65535)), ("i16", gb.i16(-32768)),
        ("u32", gb.u32(4_294_967_295)), ("i32", gb.i32(-2_147_483_648)), ("f32", gb.f32(1e-5)),
        ("bool", gb.boolean(True)), ("str", gb.string("Grüße, 世界")), ("u64", gb.u64(2**64 - 1)),
        ("i64", gb.i64(-(2**63))), ("f64", gb.f64(0.1)),
        ("arr", gb.array(gb.INT32, [1, -2, 3])),
        ("nested", gb.array(gb.ARRAY, [gb.array(gb.UINT8, [1, 2]), gb.array(gb.STRING, ["a", "b"])])),
    ])
    header = _read(path)
    assert header.warnings == ()
    assert header.metadata == {
        "general.architecture": "llama",
        "u8": 255, "i8": -128, "u16": 65535, "i16": -32768, "u32": 4_294_967_295, "i32": -2_147_483_648,
        "f32": 1e-05, "bool": True, "str": "Grüße, 世界", "u64": 2**64 - 1, "i64": -(2**63), "f64": 0.1,
        "arr": [1, -2, 3],
        "nested": {"type": "array", "element_type": "ARRAY", "count": 2},
    }
    assert header.metadata_types == {
        "general.architecture": "STRING", "u8": "UINT8", "i8": "INT8", "u16": "UINT16", "i16": "INT16",
        "u32": "UINT32", "i32": "INT32", "f32": "FLOAT32", "bool": "BOOL", "str": "STRING", "u64": "UINT64",
        "i64": "INT64", "f64": "FLOAT64", "arr": "ARRAY[INT32]", "nested": "ARRAY[ARRAY]",
    }
    kept = _read(path, keep_arrays=True)
    assert kept.metadata["nested"] == [[1, 2], ["a", "b"]]


def test_long_arrays_are_summarised_unless_kept(tmp_path):
    path = tmp_path / "vocab.gguf"
    tokens = [f"tok{i}" for i in range(1000)]
    scores = [float(i) for i in range(1000)]
    gb.write_gguf(path, {
        "general.architecture": "llama",
        "tokenizer.ggml.tokens": gb.array(gb.STRING, tokens),
        "tokenizer.ggml.scores": gb.array(gb.FLOAT32, scores),
        "tokenizer.ggml.token_type": gb.array(gb.INT32, [1] * 1000),
    })
    header = _read(path)
    assert header.metadata["tokenizer.ggml.tokens"] == {"type": "array", "element_type": "STRING", "count": 1000}
    assert header.metadata["tokenizer.ggml.scores"] == {"type": "array", "element_type": "FLOAT32", "count": 1000}
    assert header.warnings == ()
    kept = _read(path, keep_arrays=True)
    assert kept.metadata["tokenizer.ggml.tokens"] == tokens
    assert kept.metadata["tokenizer.ggml.scores"] == scores
    assert kept.metadata["tokenizer.ggml.token_type"] == [1] * 1000


def test_scan_returns_metadata_claims_and_tensors(tmp_path):
    path = tmp_path / "tiny-llama-Q4_K_M.gguf"
    gb.write_gguf(path, {
        "general.architecture": "llama",
        "general.name": "Tiny Llama",
        "general.basename": "tiny-llama",
        "general.size_label": "1.1B",
        "general.license": "apache-2.0",
        "general.finetune": "chat",
        "general.file_type": gb.u32(15),
        "general.quantization_version": gb.u32(2),
        "general.tags": gb.array(gb.STRING, ["text-generation"]),
        "llama.context_length": gb.u32(2048),
        "llama.embedding_length": gb.u32(2048),
        "llama.block_count": gb.u32(22),
        "llama.feed_forward_length": gb.u32(5632),
        "llama.attention.head_count": gb.u32(32),
        "llama.attention.head_count_kv": gb.u32(4),
        "llama.rope.freq_base": gb.f32(10000.0),
        "llama.rope.dimension_count": gb.u32(64),
        "llama.vocab_size": gb.u32(32000),
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": gb.array(gb.STRING, ["<unk>"] * 32000),
    }, [TensorSpec("token_embd.weight", gb.Q4_K, (32000, 2048)), TensorSpec("output_norm.weight", gb.F32, (2048,))])
    scan = _scan(path)
    assert scan.format == "gguf" and scan.container == "gguf"
    assert scan.complete is True and scan.findings == ()
    claims = dict(scan.metadata)
    assert claims.pop("tokenizer.ggml.tokens") == {"type": "array", "element_type": "STRING", "count": 32000}
    assert claims == {
        "general.architecture": "llama", "general.name": "Tiny Llama", "general.basename": "tiny-llama",
        "general.size_label": "1.1B", "general.license": "apache-2.0", "general.finetune": "chat",
        "general.file_type": 15, "general.quantization_version": 2, "general.tags": ["text-generation"],
        "llama.context_length": 2048, "llama.embedding_length": 2048, "llama.block_count": 22,
        "llama.feed_forward_length": 5632, "llama.attention.head_count": 32, "llama.attention.head_count_kv": 4,
        "llama.rope.freq_base": 10000.0, "llama.rope.dimension_count": 64, "llama.vocab_size": 32000,
        "tokenizer.ggml.model": "llama",
    }
    assert [(t.name, t.dtype, t.shape, t.elements, t.nbytes) for t in scan.tensors] == [
        ("token_embd.weight", "Q4_K", (32000, 2048), 65_536_000, 36_864_000),
        ("output_norm.weight", "F32", (2048,), 2048, 8192),
    ]


def test_rope_frequencies_and_integer_tensors_are_buffers(tmp_path):
    path = tmp_path / "buffers.gguf"
    gb.write_gguf(path, {"general.architecture": "llama"}, [
        TensorSpec("rope_freqs.weight", gb.F32, (64,)),
        TensorSpec("positions", gb.I32, (16,)),
        TensorSpec("blk.0.attn_q.weight", gb.Q8_0, (64, 64)),
    ])
    assert [t.role for t in _read(path).tensors] == [BUFFER, BUFFER, PARAMETER]


def test_alignment_key_is_used(tmp_path):
    path = tmp_path / "aligned.gguf"
    layout = gb.write_gguf(path, {"general.architecture": "llama"},
                           [TensorSpec("a", gb.F32, (3,)), TensorSpec("b", gb.F32, (5,))], alignment=64)
    header = _read(path)
    assert header.alignment == 64 and header.warnings == ()
    assert header.data_start == layout.data_start and header.data_start % 64 == 0
    assert [t.offset - header.data_start for t in header.tensors] == [0, 64]


def test_legacy_version_2_is_read_with_a_warning(tmp_path):
    path = tmp_path / "v2.gguf"
    gb.write_gguf(path, {"general.architecture": "llama"}, [TensorSpec("a", gb.F16, (4, 4))], version=2)
    header = _read(path)
    assert header.version == 2
    assert _ids(header.warnings) == ["gguf-legacy-version"]
    assert header.tensors[0].elements == 16


# --- cross-checks with the gguf package ------------------------------------------------------------------

CROSS_CHECK_TYPES = [row for row in MIXED] + [("q2_k", gb.Q2_K, (2, 256), 512, 168),
                                              ("q3_k", gb.Q3_K, (1, 256), 256, 110),
                                              ("q8_k", gb.Q8_K, (1, 256), 256, 292),
                                              ("mxfp4", gb.MXFP4, (2, 32), 64, 34)]


def test_matches_gguf_package_reader(tmp_path):
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "cross.gguf"
    gb.write_gguf(path, {"general.architecture": "llama", "general.name": "cross"},
                  [TensorSpec(name, kind, shape) for name, kind, shape, _, _ in CROSS_CHECK_TYPES], alignment=64)
    theirs = gguf.GGUFReader(path)
    ours = _read(path)
    assert ours.complete and ours.warnings == ()
    assert [t.name for t in ours.tensors] == [t.name for t in theirs.tensors]
    assert [t.dtype for t in ours.tensors] == [t.tensor_type.name for t in theirs.tensors]
    assert [t.shape for t in ours.tensors] == [tuple(int(d) for d in reversed(t.shape)) for t in theirs.tensors]
    assert [t.elements for t in ours.tensors] == [int(t.n_elements) for t in theirs.tensors]
    assert [t.nbytes for t in ours.tensors] == [int(t.n_bytes) for t in theirs.tensors]
    assert [t.offset for t in ours.tensors] == [int(t.data_offset) for t in theirs.tensors]
    assert [t.nbytes for t in ours.tensors] == [row[4] for row in CROSS_CHECK_TYPES]


def test_reads_a_file_written_by_gguf_package_writer(tmp_path):
    gguf = pytest.importorskip("gguf")
    np = pytest.importorskip("numpy")
    path = tmp_path / "writer.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("written")
    writer.add_context_length(4096)
    writer.add_token_list([f"t{i}" for i in range(300)])
    writer.add_tensor("blk.0.ffn_up.weight", np.zeros((8, 16), dtype=np.float32))
    writer.add_tensor("blk.0.attn_k.weight", np.zeros((4, 64), dtype=np.float16))
    q4_k = gguf.GGMLQuantizationType.Q4_K
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((3, 288), dtype=np.uint8), raw_dtype=q4_k)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    ours = _read(path)
    theirs = gguf.GGUFReader(path)
    assert ours.warnings == () and ours.complete
    assert ours.metadata["general.architecture"] == "llama"
    assert ours.metadata["general.name"] == "written"
    assert ours.metadata["llama.context_length"] == 4096
    assert ours.metadata["tokenizer.ggml.tokens"] == {"type": "array", "element_type": "STRING", "count": 300}
    assert [(t.name, t.dtype, t.shape, t.nbytes) for t in ours.tensors] == [
        ("blk.0.ffn_up.weight", "F32", (8, 16), 512),
        ("blk.0.attn_k.weight", "F16", (4, 64), 512),
        ("blk.0.attn_q.weight", "Q4_K", (3, 512), 864),
    ]
    assert [t.offset for t in ours.tensors] == [int(t.data_offset) for t in theirs.tensors]


# --- hardening: fatal problems ---------------------------------------------------------------------------


def test_bad_magic(tmp_path):
    path = gb.write_raw(tmp_path / "bad.gguf", b"GGML" + bytes(20))
    assert _fatal(path).finding_id == "gguf-bad-magic"
    scan = _scan(path)
    assert scan.complete is False
    assert _ids(scan.findings) == ["gguf-bad-magic"]
    assert scan.findings[0].location == "bad.gguf"


@pytest.mark.parametrize("version, finding_id", [(0, "gguf-unsupported-version"), (1, "gguf-unsupported-version"),
                                                 (4, "gguf-unsupported-version"), (3 << 24, "gguf-big-endian"),
                                                 (2 << 24, "gguf-big-endian")])
def test_unsupported_versions(tmp_path, version, finding_id):
    path = gb.write_raw(tmp_path / "v.gguf", gb.encode_header(0, 0, version=version))
    error = _fatal(path)
    assert error.finding_id == finding_id
    if finding_id == "gguf-big-endian":
        assert "big-endian" in str(error)


def test_array_of_two_to_the_63_elements_in_49_bytes(tmp_path):
    data = gb.encode_header(0, 1) + gb.encode_string("a") + struct.pack("<IIQ", gb.ARRAY, gb.UINT8, 2**63)
    assert len(data) == 49
    path = gb.write_raw(tmp_path / "bomb.gguf", data)
    started = time.perf_counter()
    scan = _scan(path)
    assert time.perf_counter() - started < 1.0
    assert scan.complete is False
    assert _ids(scan.findings) == ["gguf-length-exceeds-file"]
    assert "9223372036854775808" in scan.findings[0].message


def test_tensor_count_of_two_to_the_64_minus_1(tmp_path):
    path = gb.write_raw(tmp_path / "count.gguf", gb.encode_header(2**64 - 1, 0))
    started = time.perf_counter()
    scan = _scan(path)
    assert time.perf_counter() - started < 1.0
    assert _ids(scan.findings) == ["gguf-length-exceeds-file"]
    assert scan.complete is False


def test_metadata_count_beyond_file(tmp_path):
    # 100 pairs need at least 1,300 bytes; the file has 100 after the header.
    path = gb.write_raw(tmp_path / "kv.gguf", gb.encode_header(0, 100) + bytes(100))
    assert _fatal(path).finding_id == "gguf-length-exceeds-file"


def test_counts_above_absolute_limits_in_a_large_sparse_file(tmp_path):
    keys = gb.write_raw(tmp_path / "keys.gguf", gb.encode_header(0, 70_000), size=2_000_000)
    assert _fatal(keys).finding_id == "gguf-too-many-entries"
    tensors = gb.write_raw(tmp_path / "tensors.gguf", gb.encode_header(2_000_000, 0), size=60_000_000)
    assert _fatal(tensors).finding_id == "gguf-too-many-entries"


def test_string_length_beyond_file(tmp_path):
    data = gb.encode_header(0, 1) + gb.encode_string("k") + struct.pack("<IQ", gb.STRING, 2**40) + b"abc"
    path = gb.write_raw(tmp_path / "string.gguf", data)
    error = _fatal(path)
    assert error.finding_id == "gguf-length-exceeds-file"
    assert "1099511627776" in str(error)


def test_string_array_element_length_beyond_file(tmp_path):
    data = (gb.encode_header(0, 1) + gb.encode_string("k") + struct.pack("<IIQ", gb.ARRAY, gb.STRING, 2)
            + gb.encode_string("ok") + struct.pack("<Q", 2**62) + b"xy")
    path = gb.write_raw(tmp_path / "strings.gguf", data)
    assert _fatal(path).finding_id == "gguf-length-exceeds-file"


def test_string_array_count_is_bounded_by_eight_bytes_per_element(tmp_path):
    # 10 bytes remain after the count: room for one empty string (8 bytes), not two.
    data = gb.encode_header(0, 1) + gb.encode_string("k") + struct.pack("<IIQ", gb.ARRAY, gb.STRING, 2) + bytes(10)
    path = gb.write_raw(tmp_path / "strings.gguf", data)
    error = _fatal(path)
    assert error.finding_id == "gguf-length-exceeds-file"
    assert "only 10 bytes remain" in str(error)


def test_nested_array_counts_are_bounded(tmp_path):
    # Each nested array needs at least 12 bytes: 24 bytes left cannot hold 3.
    outer = gb.encode_header(0, 1) + gb.encode_string("k") + struct.pack("<IIQ", gb.ARRAY, gb.ARRAY, 3) + bytes(24)
    assert _fatal(gb.write_raw(tmp_path / "outer.gguf", outer)).finding_id == "gguf-length-exceeds-file"
    inner = (gb.encode_header(0, 1) + gb.encode_string("k") + struct.pack("<IIQ", gb.ARRAY, gb.ARRAY, 1)
             + struct.pack("<IQ", gb.UINT64, 2**61) + bytes(16))
    error = _fatal(gb.write_raw(tmp_path / "inner.gguf", inner))
    assert error.finding_id == "gguf-length-exceeds-file"
    assert "2305843009213693952 UINT64" in str(error)


def test_arrays_nested_too_deep(tmp_path):
    value = gb.array(gb.UINT8, [1])
    for _ in range(12):
        value = gb.array(gb.ARRAY, [value])
    path = tmp_path / "deep.gguf"
    gb.write_gguf(path, [("deep", value)])
    assert _fatal(path).finding_id == "gguf-array-too-deep"


@pytest.mark.parametrize("payload", [struct.pack("<I", 13) + bytes(8), struct.pack("<IIQ", gb.ARRAY, 99, 0)])
def test_unknown_value_types(tmp_path, payload):
    path = gb.write_raw(tmp_path / "type.gguf", gb.encode_header(0, 1) + gb.encode_string("k") + payload)
    assert _fatal(path).finding_id == "gguf-unknown-value-type"


def test_key_longer_than_65535_bytes(tmp_path):
    data = gb.encode_header(0, 1) + struct.pack("<Q", 70_000)
    path = gb.write_raw(tmp_path / "key.gguf", data, size=200_000)
    assert _fatal(path).finding_id == "gguf-invalid-key"
    beyond = gb.write_raw(tmp_path / "beyond.gguf", gb.encode_header(0, 1) + struct.pack("<Q", 2**63) + bytes(20))
    assert _fatal(beyond).finding_id == "gguf-length-exceeds-file"


def test_tensor_name_longer_than_65535_bytes(tmp_path):
    data = gb.encode_header(1, 0) + struct.pack("<Q", 70_000)
    path = gb.write_raw(tmp_path / "name.gguf", data, size=200_000)
    assert _fatal(path).finding_id == "gguf-tensor-name-too-long"


def test_dimension_count_beyond_file(tmp_path):
    data = gb.encode_header(1, 0) + gb.encode_string("t") + struct.pack("<I", 2**32 - 1) + bytes(64)
    path = gb.write_raw(tmp_path / "dims.gguf", data)
    assert _fatal(path).finding_id == "gguf-length-exceeds-file"


def test_truncated_header_keeps_what_was_read(tmp_path):
    full = gb.encode_header(1, 1) + gb.encode_kv("general.architecture", "llama") + gb.encode_tensor_info(
        "t", (4,), gb.F32, 0)
    path = gb.write_raw(tmp_path / "cut.gguf", full[:-6])
    assert _fatal(path).finding_id == "truncated-file"
    scan = _scan(path)
    assert scan.complete is False
    assert dict(scan.metadata) == {"general.architecture": "llama"}
    assert _ids(scan.findings) == ["truncated-file"]


def test_file_shorter_than_its_listed_size(tmp_path):
    # The inventory listed the full size, but the file on disk ends inside the header.
    path = tmp_path / "short.gguf"
    layout = gb.write_gguf(path, {"general.architecture": "llama", "general.name": "x" * 100})
    with open(path, "r+b") as handle:
        handle.truncate(60)
    with pytest.raises(MalformedInput) as caught:
        read_gguf(path, "short.gguf", layout.size)
    assert caught.value.finding_id == "truncated-file"
    assert "shorter than its listed size" in str(caught.value)


class _CountingDeadline(Deadline):
    """Runs out after a number of polls (``check`` or ``check_now``), to show that a loop polls at all."""

    def __init__(self, polls: int):
        super().__init__(60)
        self.polls = polls

    def check(self) -> None:
        self.polls -= 1
        if self.polls < 0:
            raise ParseTimeout("out of polls")

    check_now = check


def test_long_loops_poll_the_deadline(tmp_path):
    path = tmp_path / "vocab.gguf"
    gb.write_gguf(path, {"tokenizer.ggml.tokens": gb.array(gb.STRING, ["x"] * 5000)})
    with pytest.raises(ParseTimeout):  # a kept vocabulary polls once per string
        read_gguf(path, "vocab.gguf", path.stat().st_size, keep_arrays=True, deadline=_CountingDeadline(1000))
    assert _read(path).metadata["tokenizer.ggml.tokens"]["count"] == 5000


def test_skipped_string_arrays_poll_the_deadline_once_per_buffer(tmp_path):
    # 16 bytes a string: 3,000 fit one 64 KiB buffer, 40,000 need ten. Five polls cover the header and the
    # first, not the second.
    short, long = tmp_path / "short.gguf", tmp_path / "long.gguf"
    gb.write_gguf(short, {"tokenizer.ggml.tokens": gb.array(gb.STRING, [f"tok{i:05}" for i in range(3000)])})
    gb.write_gguf(long, {"tokenizer.ggml.tokens": gb.array(gb.STRING, [f"tok{i:05}" for i in range(40_000)])})
    header = read_gguf(short, "short.gguf", short.stat().st_size, deadline=_CountingDeadline(5))
    assert header.metadata["tokenizer.ggml.tokens"] == {"type": "array", "element_type": "STRING", "count": 3000}
    with pytest.raises(ParseTimeout):
        read_gguf(long, "long.gguf", long.stat().st_size, deadline=_CountingDeadline(5))
    assert _read(long).metadata["tokenizer.ggml.tokens"]["count"] == 40_000


# --- caps on what a crafted header can make the reader walk --------------------------------------------


def test_caps_are_far_above_real_files():
    assert reader.MAX_TENSORS == 131_072
    assert reader.MAX_WALKED_ELEMENTS == 2_097_152


def _string_array_file(path: Path, count: int, *, strings: bytes = b"", size: int | None = None) -> Path:
    data = gb.encode_header(0, 2) + gb.encode_kv("general.architecture", "llama")
    data += gb.encode_string("tokenizer.ggml.tokens") + struct.pack("<IIQ", gb.ARRAY, gb.STRING, count) + strings
    return gb.write_raw(path, data, size=size)


def test_string_array_past_the_cap_stops_at_once(tmp_path):
    # 2^25 empty strings: a 256 MiB sparse file, which used to take the whole 5 s deadline to walk.
    count = 1 << 25
    path = _string_array_file(tmp_path / "strings.gguf", count, size=200 + 8 * count)
    started = time.process_time()
    scan = _scan(path)
    assert time.process_time() - started < 0.5
    assert _ids(scan.findings) == ["gguf-too-many-entries"]
    assert scan.findings[0].message == (
        "the array 'tokenizer.ggml.tokens' declares 33554432 STRING elements; openaudit walks at most 2097152 "
        "string or array elements per file (real vocabularies and merges have a few hundred thousand)"
    )
    assert scan.complete is False and scan.metadata == {"general.architecture": "llama"}


def test_walked_elements_are_capped_exactly_and_per_file(tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "MAX_WALKED_ELEMENTS", 1000)
    at_cap = _string_array_file(tmp_path / "at.gguf", 1000, strings=bytes(8 * 1000))
    assert _read(at_cap).metadata["tokenizer.ggml.tokens"]["count"] == 1000
    past = _string_array_file(tmp_path / "past.gguf", 1001, strings=bytes(8 * 1001))
    assert _fatal(past).finding_id == "gguf-too-many-entries"
    # Two arrays share the budget; nested arrays count too.
    two = gb.write_raw(tmp_path / "two.gguf", gb.encode_header(0, 2),
                       gb.encode_string("a") + struct.pack("<IIQ", gb.ARRAY, gb.STRING, 600) + bytes(8 * 600),
                       gb.encode_string("b") + struct.pack("<IIQ", gb.ARRAY, gb.ARRAY, 401)
                       + struct.pack("<IQ", gb.UINT8, 0) * 401)
    error = _fatal(two)
    assert error.finding_id == "gguf-too-many-entries"
    assert str(error).startswith("the array 'b' declares 401 ARRAY elements after 600 in earlier arrays;")


def test_numeric_arrays_are_skipped_with_one_seek(tmp_path, monkeypatch):


    # 2^30 FLOAT32 elements: a 4 GiB sparse array, far past the walking cap, costs no reads.
    count = 1 << 30
    data = gb.encode_header(0, 2) + gb.encode_string("scores") + struct.pack("<IIQ", gb.ARRAY, gb.FLOAT32, count)
    tail = gb.encode_kv("general.architecture", "llama")
    path = tmp_path / "scores.gguf"
    with open(path, "wb") as handle:
        handle.write(data)
        handle.seek(len(data) + 4 * count)
        handle.write(tail)
    read_bytes = count_reads(monkeypatch)
    header = _read(path)
    assert header.metadata == {"scores": {"type": "array", "element_type": "FLOAT32", "count": count},
                               "general.architecture": "llama"}
    assert read_bytes == [reader._BUFFER_BYTES, len(tail)]  # one buffer, then a seek past 4 GiB to the tail


def test_skipped_strings_longer_than_the_buffer_are_passed_with_a_seek(tmp_path):
    strings = [f"t{i}" for i in range(100)]
    strings[50] = "x" * 200_000
    path = tmp_path / "long-token.gguf"
    gb.write_gguf(path, [("tokenizer.ggml.tokens", gb.array(gb.STRING, strings)), ("general.architecture", "llama")])
    header = _read(path)
    assert header.metadata == {"tokenizer.ggml.tokens": {"type": "array", "element_type": "STRING", "count": 100},
                               "general.architecture": "llama"}
    assert header.warnings == ()


def test_skipped_string_running_past_the_file(tmp_path):
    strings = b"".join(gb.encode_string(f"t{i}") for i in range(99)) + struct.pack("<Q", 2**62) + b"xy"
    error = _fatal(_string_array_file(tmp_path / "past.gguf", 100, strings=strings))
    assert error.finding_id == "gguf-length-exceeds-file"
    assert str(error) == "a string in 'tokenizer.ggml.tokens' declares 4611686018427387904 bytes, but only 2 remain"


def test_skipped_string_array_cut_inside_a_length(tmp_path):
    strings = b"".join(gb.encode_string(f"t{i}") for i in range(99)) + b"\x01\x00"
    path = _string_array_file(tmp_path / "cut.gguf", 100, strings=strings)
    error = _fatal(path)
    assert error.finding_id == "truncated-file"  # 2 bytes cannot hold the 100th string's length
    assert str(error) == f"file ends inside a string in 'tokenizer.ggml.tokens' (byte {path.stat().st_size - 2})"


def test_tensor_count_just_past_the_cap(tmp_path):
    count = reader.MAX_TENSORS + 1
    path = gb.write_raw(tmp_path / "tensors.gguf", gb.encode_header(count, 0), size=24 + 24 * count)
    error = _fatal(path)
    assert error.finding_id == "gguf-too-many-entries"
    assert str(error) == "the header declares 131073 tensors (limit 131072)"


def test_tensor_infos_at_the_cap_are_read_quickly(tmp_path):
    # 2^17 infos of 24 zero bytes (empty name, no dims, F32, offset 0): one tensor and 131,071 duplicates.
    count = reader.MAX_TENSORS
    path = gb.write_raw(tmp_path / "zeros.gguf", gb.encode_header(count, 0), size=24 + 24 * count)
    started = time.process_time()
    scan = _scan(path)
    assert time.process_time() - started < 2.0
    assert _ids(scan.findings) == (["gguf-missing-architecture"] + ["gguf-duplicate-tensor"] * 20
                                   + ["gguf-tensor-data-beyond-file", "gguf-duplicate-tensor"])
    assert scan.findings[-1].message == "131051 more findings of this kind are not listed"
    assert [(t.name, t.shape, t.nbytes) for t in scan.tensors] == [("", (), 4)]


# --- hardening: warnings ---------------------------------------------------------------------------------


def test_duplicate_key_keeps_the_first_value(tmp_path):
    path = tmp_path / "dup.gguf"
    gb.write_gguf(path, [("general.architecture", "llama"), ("general.license", "mit"),
                         ("general.license", "proprietary")])
    header = _read(path)
    assert header.metadata["general.license"] == "mit"
    assert _ids(header.warnings) == ["gguf-duplicate-key"]


def test_empty_key(tmp_path):
    path = tmp_path / "empty.gguf"
    gb.write_gguf(path, [("general.architecture", "llama"), ("", gb.u8(1))])
    assert _ids(_read(path).warnings) == ["gguf-invalid-key"]


def test_invalid_utf8_is_replaced_and_reported(tmp_path):
    path = tmp_path / "utf8.gguf"
    gb.write_gguf(path, [("general.architecture", "llama"), ("general.name", gb.string(b"bad\xff")),
                         (b"key\xfe", gb.u8(1))], [TensorSpec("t", gb.F32, (2,))])
    header = _read(path)
    assert header.metadata["general.name"] == "bad\ufffd"
    assert header.metadata["key\ufffd"] == 1
    assert _ids(header.warnings) == ["gguf-invalid-utf8", "gguf-invalid-utf8"]
    raw = gb.encode_header(1, 1) + gb.encode_kv("general.architecture", "llama") + gb.encode_tensor_info(
        b"w\x80", (2,), gb.F32, 0)
    named = gb.write_raw(tmp_path / "name.gguf", raw + bytes(-len(raw) % 32) + bytes(8))
    header = _read(named)
    assert header.tensors[0].name == "w\ufffd"
    assert _ids(header.warnings) == ["gguf-invalid-utf8"]


def test_invalid_utf8_in_a_kept_string_array(tmp_path):
    path = tmp_path / "tokens.gguf"
    gb.write_gguf(path, [("general.architecture", "llama"),
                         ("tokenizer.ggml.tokens", gb.array(gb.STRING, [b"a", b"\xc3", b"\xff"]))])
    header = _read(path, keep_arrays=True)
    assert header.metadata["tokenizer.ggml.tokens"] == ["a", "\ufffd", "\ufffd"]
    assert _ids(header.warnings) == ["gguf-invalid-utf8"]
    assert header.warnings[0].message.startswith("2 strings of 'tokenizer.ggml.tokens'")


@pytest.mark.parametrize("value", [gb.u64(32), gb.u32(48), gb.u32(4), gb.u32(0), gb.string("32")])
def test_bad_alignment_falls_back_to_32(tmp_path, value):
    path = tmp_path / "align.gguf"
    gb.write_gguf(path, [("general.architecture", "llama"), ("general.alignment", value)],
                  [TensorSpec("t", gb.F32, (8,))])
    header = _read(path)
    assert header.alignment == 32
    assert _ids(header.warnings) == ["gguf-bad-alignment"]


def test_missing_architecture(tmp_path):
    path = tmp_path / "noarch.gguf"
    gb.write_gguf(path, {"general.name": "x"})
    assert _ids(_read(path).warnings) == ["gguf-missing-architecture"]


def test_tensor_name_of_64_bytes_or_more_is_reported_but_counted(tmp_path):
    path = tmp_path / "names.gguf"
    gb.write_gguf(path, {"general.architecture": "llama"},
                  [TensorSpec("a" * 63, gb.F32, (2,)), TensorSpec("b" * 64, gb.F32, (2,)),
                   TensorSpec("c" * 200, gb.F32, (2,))])
    header = _read(path)
    assert _ids(header.warnings) == ["gguf-tensor-name-too-long", "gguf-tensor-name-too-long"]
    assert [t.name for t in header.tensors] == ["a" * 63, "b" * 64, "c" * 200]


def _raw_tensor_file(tmp_path: Path, infos: list[bytes], data_bytes: int = 256) -> Path:
    head = gb.encode_header(len(infos), 1) + gb.encode_kv("general.architecture", "llama") + b"".join(infos)
    return gb.write_raw(tmp_path / "tensors.gguf", head + bytes(-len(head) % 32 + data_bytes))


def test_more_than_four_dimensions(tmp_path):
    path = _raw_tensor_file(tmp_path, [gb.encode_tensor_info("five", (1, 2, 3, 4, 5), gb.F32, 0),
                                       gb.encode_tensor_info("ok", (4,), gb.F32, 0)])
    header = _read(path)
    assert _ids(header.warnings) == ["gguf-too-many-dims"]
    assert [t.name for t in header.tensors] == ["ok"]
    assert header.skipped_tensors == ("five",)
    assert header.complete is False
    assert _scan(path).complete is False


@pytest.mark.parametrize("dims", [(2**62, 4), (2**63, 1), (2**64 - 1,), (2**32, 2**32)])
def test_element_count_overflowing_int64(tmp_path, dims):
    path = _raw_tensor_file(tmp_path, [gb.encode_tensor_info("huge", dims, gb.F32, 0)])
    header = _read(path)
    assert _ids(header.warnings) == ["gguf-tensor-size-overflow"]
    assert header.tensors == ()
    assert header.complete is False


def test_byte_size_beyond_the_file(tmp_path):
    path = _raw_tensor_file(tmp_path, [gb.encode_tensor_info("big", (1000, 1000), gb.F32, 0)])
    header = _read(path)
    assert _ids(header.warnings) == ["gguf-tensor-data-beyond-file"]
    assert header.tensors[0].elements == 1_000_000
    assert header.complete is False


def test_offset_beyond_the_file(tmp_path):
    path = _raw_tensor_file(tmp_path, [gb.encode_tensor_info("far", (8,), gb.F32, 2**40)])
    header = _read(path)
    assert _ids(header.warnings) == ["gguf-tensor-data-beyond-file"]
    assert header.tensors[0].offset == header.data_start + 2**40


def test_row_not_a_multiple_of_the_block(tmp_path):
    path = _raw_tensor_file(tmp_path, [gb.encode_tensor_info("q", (100, 2), gb.Q4_K, 0),
                                       gb.encode_tensor_info("q8", (48,), gb.Q8_0, 0)])
    header = _read(path)
    assert _ids(header.warnings) == ["gguf-row-not-block-multiple", "gguf-row-not-block-multiple"]
    assert header.tensors == ()


@pytest.mark.parametrize("type_id", [4, 5, 31, 43, 2**31])
def test_unknown_ggml_type(tmp_path, type_id):
    path = _raw_tensor_file(tmp_path, [gb.encode_tensor_info("t", (32,), type_id, 0)])
    header = _read(path)
    assert _ids(header.warnings) == ["gguf-unknown-ggml-type"]
    assert header.skipped_tensors == ("t",)


def test_misaligned_offset(tmp_path):
    path = _raw_tensor_file(tmp_path, [gb.encode_tensor_info("t", (4,), gb.F32, 16)], data_bytes=32)
    assert _ids(_read(path).warnings) == ["gguf-tensor-misaligned"]


def test_overlapping_tensors(tmp_path):
    path = _raw_tensor_file(tmp_path, [gb.encode_tensor_info("a", (32,), gb.F32, 0),
                                       gb.encode_tensor_info("b", (8,), gb.F32, 96),
                                       gb.encode_tensor_info("c", (8,), gb.F32, 160)], data_bytes=192)
    header = _read(path)
    assert _ids(header.warnings) == ["gguf-tensor-overlap"]
    assert "'a' and 'b'" in header.warnings[0].message


def test_duplicate_tensor_names(tmp_path):
    path = _raw_tensor_file(tmp_path, [gb.encode_tensor_info("w", (8,), gb.F32, 0),
                                       gb.encode_tensor_info("w", (16,), gb.F32, 32)])
    header = _read(path)
    assert _ids(header.warnings) == ["gguf-duplicate-tensor"]
    assert [(t.name, t.elements) for t in header.tensors] == [("w", 8)]


def test_trailing_data_after_the_last_tensor(tmp_path):
    path = tmp_path / "trailing.gguf"
    layout = gb.write_gguf(path, {"general.architecture": "llama"}, [TensorSpec("t", gb.F32, (8,))])
    with open(path, "ab") as handle:
        handle.write(b"PK\x03\x04 hidden payload")
    header = _read(path)
    assert _ids(header.warnings) == ["gguf-trailing-data"]
    assert header.warnings[0].message.startswith(f"19 bytes follow the end of the tensor data (byte {layout.size})")


def test_missing_final_padding_is_not_trailing_data(tmp_path):
    path = tmp_path / "unpadded.gguf"
    gb.write_gguf(path, {"general.architecture": "llama"}, [TensorSpec("t", gb.F32, (3,))], pad_end=False)
    header = _read(path)
    assert header.warnings == () and header.complete


def test_long_string_is_summarised(tmp_path):
    path = tmp_path / "template.gguf"
    gb.write_gguf(path, {"general.architecture": "llama",
                         "tokenizer.chat_template": "x" * (reader.MAX_KEPT_STRING_BYTES + 1)})
    header = _read(path)
    assert header.metadata["tokenizer.chat_template"] == {"type": "string", "bytes": 1_048_577}
    assert _ids(header.warnings) == ["gguf-value-not-kept"]


def test_kept_arrays_stay_within_the_memory_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "KEPT_ELEMENTS_BUDGET", 150)
    path = tmp_path / "budget.gguf"
    gb.write_gguf(path, {"general.architecture": "llama",
                         "tokenizer.ggml.tokens": gb.array(gb.STRING, ["t"] * 100),
                         "tokenizer.ggml.scores": gb.array(gb.FLOAT32, [0.5] * 100)})
    header = _read(path, keep_arrays=True)
    assert header.metadata["tokenizer.ggml.tokens"] == ["t"] * 100
    assert header.metadata["tokenizer.ggml.scores"] == {"type": "array", "element_type": "FLOAT32", "count": 100}
    assert _ids(header.warnings) == ["gguf-value-not-kept"]


def test_findings_of_one_kind_are_capped(tmp_path):
    infos = [gb.encode_tensor_info(f"t{i}", (1,), gb.F32, 32 * i + 4) for i in range(30)]
    header = _read(_raw_tensor_file(tmp_path, infos, data_bytes=960))
    assert _ids(header.warnings) == ["gguf-tensor-misaligned"] * 21
    assert header.warnings[-1].message == "10 more findings of this kind are not listed"


def test_names_from_the_file_are_escaped_in_messages(tmp_path):
    path = tmp_path / "escape.gguf"
    gb.write_gguf(path, [("general.architecture", "llama"), ("\x1b[31mred", gb.u8(1)), ("\x1b[31mred", gb.u8(2))])
    message = _read(path).warnings[0].message
    assert "\x1b" not in message and "\\x1b[31mred" in message


def test_every_finding_id_the_reader_emits_is_catalogued():
    import re

    from openaudit.findings import catalogue

    source = Path(reader.__file__).read_text(encoding="utf-8")
    emitted = set(re.findall(r'"((?:gguf|truncated|unreadable|parse)-[a-z0-9-]+)"', source))
    assert len(emitted) >= 24
    assert emitted <= set(catalogue())


def test_tensor_data_is_never_read(tmp_path, monkeypatch):


    path = tmp_path / "large.gguf"
    layout = gb.write_gguf(path, {"general.architecture": "llama"},
                           [TensorSpec("token_embd.weight", gb.F16, (32000, 4096)),
                            TensorSpec("output.weight", gb.Q6_K, (32000, 4096))])
    assert layout.size > 300_000_000  # sparse holes, no disk
    read_bytes = count_reads(monkeypatch)
    header = _read(path)
    assert [t.elements for t in header.tensors] == [131_072_000, 131_072_000]
    assert [t.nbytes for t in header.tensors] == [262_144_000, 107_520_000]
    # The header, plus at most one buffer of read-ahead: never the 370 MB of tensor data.
    assert header.data_start == 192
    assert sum(read_bytes) <= header.data_start + reader._BUFFER_BYTES
