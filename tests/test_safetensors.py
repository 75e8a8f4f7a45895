"""The safetensors header parser: exact layouts, every dtype, every validation rule, and agreement with
the reference reader (the `safetensors` package, whose Rust core is the reference) where it is installed."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from openaudit.findings import Severity, catalogue
from openaudit.inspect import safetensors as st_module
from openaudit.inspect.safetensors import (
    MAX_FINDINGS_PER_ID,
    MalformedSafetensors,
    header_length_needed,
    parse_header,
    scan_safetensors,
)
from openaudit.limits import Deadline
from tests.builders.safetensors_builder import BITS, layout, write_raw, write_safetensors, write_sharded

NAME = "model.safetensors"


def scan(path: Path, **kwargs):
    return scan_safetensors(path, NAME, path.stat().st_size, **kwargs)


def ids(result) -> list[str]:
    return [item.id for item in result.findings]


def _has_safetensors() -> bool:
    try:
        import safetensors  # noqa: F401
    except ImportError:
        return False
    return True


def reference_accepts(path: Path) -> bool:
    """Whether the reference reader opens the file and describes every tensor."""
    safetensors = pytest.importorskip("safetensors")
    try:
        with safetensors.safe_open(str(path), "np") as handle:
            for key in handle.keys():
                piece = handle.get_slice(key)
                piece.get_shape(), piece.get_dtype()
            handle.metadata()
    except Exception:  # SafetensorError, or a framework error on an exotic dtype
        return False
    return True


# --- valid files, exact values ---------------------------------------------------------------------


def test_small_file_exact_layout(tmp_path: Path) -> None:
    path = tmp_path / NAME
    write_safetensors(
        path,
        {"w": ("F32", (4, 6)), "b": ("F16", (6,)), "s": ("I64", ()), "e": ("F32", (0, 3))},
        metadata={"format": "pt"},
        sparse=False,
    )
    assert path.stat().st_size == 380
    result = scan(path)
    assert result.complete and result.findings == ()
    assert (result.format, result.container, result.path) == ("safetensors", "safetensors", NAME)
    assert dict(result.metadata) == {"format": "pt"}
    got = [(t.name, t.dtype, t.shape, t.nbytes, t.offset, t.elements, t.file) for t in result.tensors]
    # JSON of 253 bytes padded to 256: data starts at 264; I64 first (widest dtype), then F32 by name.
    assert got == [
        ("s", "I64", (), 8, 264, 1, NAME),
        ("e", "F32", (0, 3), 0, 272, 0, NAME),
        ("w", "F32", (4, 6), 96, 272, 24, NAME),
        ("b", "F16", (6,), 12, 368, 6, NAME),
    ]
    header = parse_header(path.read_bytes()[:264], 380, NAME)
    assert (header.header_length, header.data_start, header.elements, header.data_bytes) == (256, 264, 31, 116)
    assert header.warnings == ()


def test_header_length_needed_and_prefix_handling(tmp_path: Path) -> None:
    plan = layout({"a": ("BF16", (3, 5))})
    assert header_length_needed(plan.prefix()[:8]) == 8 + len(plan.header) == plan.data_start
    with pytest.raises(MalformedSafetensors) as short:
        header_length_needed(b"\x01\x02")
    assert short.value.finding_id == "safetensors-too-small"
    with pytest.raises(MalformedSafetensors) as large:
        header_length_needed(struct.pack("<Q", 100_000_001))
    assert large.value.finding_id == "safetensors-header-too-large"
    assert header_length_needed(struct.pack("<Q", 100_000_000)) == 100_000_008
    with pytest.raises(ValueError):  # the caller must pass the whole header when the file has it
        parse_header(plan.prefix()[:8], plan.file_size, NAME)
    # Extra bytes after the header (a remote reader that fetched more) are ignored.
    header = parse_header(plan.prefix() + b"\0" * 30, plan.file_size, NAME)
    assert [(t.name, t.offset, t.nbytes) for t in header.tensors] == [("a", plan.data_start, 30)]


def test_sparse_file_costs_no_disk(tmp_path: Path) -> None:
    path = tmp_path / NAME
    plan = write_safetensors(path, {"embed": ("BF16", (131072, 6144)), "norm": ("F32", (6144,))})
    assert path.stat().st_size == plan.file_size == plan.data_start + 24_576 + 1_610_612_736
    assert path.stat().st_blocks * 512 < 1 << 20
    result = scan(path)
    assert result.complete and result.findings == ()
    assert [(t.name, t.offset, t.nbytes, t.elements) for t in result.tensors] == [
        ("norm", plan.data_start, 24_576, 6144),
        ("embed", plan.data_start + 24_576, 1_610_612_736, 805_306_368),
    ]


# Bytes of a (2, 4) tensor: 8 elements, so bytes = bits per element.
EXPECTED_NBYTES = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8,
    "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}


def test_dtype_table_matches_the_reference_list() -> None:
    from openaudit.inspect.tensors import DTYPE_BITS

    assert dict(DTYPE_BITS) == dict(BITS)
    assert list(EXPECTED_NBYTES) == list(DTYPE_BITS)


@pytest.mark.parametrize("dtype", sorted(EXPECTED_NBYTES))
def test_every_dtype(tmp_path: Path, dtype: str) -> None:
    path = tmp_path / NAME
    plan = write_safetensors(path, {"x": (dtype, (2, 4)), "tail": ("U8", (3,))})
    result = scan(path)
    assert result.complete and result.findings == ()
    record = {t.name: t for t in result.tensors}["x"]
    assert (record.dtype, record.shape, record.nbytes, record.elements) == (dtype, (2, 4), EXPECTED_NBYTES[dtype], 8)
    # The writer puts wider dtypes first, then sorts by name: "tail" (U8, 3 bytes) precedes x when
    # x is U8 or narrower.
    narrower = dtype in ("BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8")
    assert record.offset == plan.data_start + (3 if narrower else 0)
    if _has_safetensors():
        import safetensors

        with safetensors.safe_open(str(path), "np") as handle:
            piece = handle.get_slice("x")
            assert (piece.get_dtype(), piece.get_shape()) == (dtype, [2, 4])


def test_sub_byte_tensors_that_fill_whole_bytes(tmp_path: Path) -> None:
    path = tmp_path / NAME
    write_safetensors(path, {"f4": ("F4", (2, 3)), "f6": ("F6_E2M3", (4,)), "f6b": ("F6_E3M2", (0, 5))})
    result = scan(path)
    assert result.complete and result.findings == ()
    assert {t.name: t.nbytes for t in result.tensors} == {"f4": 3, "f6": 3, "f6b": 0}


def test_official_writer_files_parse_identically(tmp_path: Path) -> None:
    """Files written by the reference writer, every dtype it can write: our records against its reader."""
    safetensors = pytest.importorskip("safetensors")
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(7)
    # (numpy-level dtype name the binding accepts, shape given to it, expected safetensors dtype and shape)
    specs = {
        "f64": ("float64", [2, 3], "F64", [2, 3]), "f32": ("float32", [5], "F32", [5]),
        "f16": ("float16", [3, 1, 2], "F16", [3, 1, 2]), "bf16": ("bfloat16", [7], "BF16", [7]),
        "i64": ("int64", [], "I64", []), "i32": ("int32", [4], "I32", [4]), "i16": ("int16", [3], "I16", [3]),
        "i8": ("int8", [9], "I8", [9]), "u64": ("uint64", [1], "U64", [1]), "u32": ("uint32", [2], "U32", [2]),
        "u16": ("uint16", [5], "U16", [5]), "u8": ("uint8", [0, 4], "U8", [0, 4]), "b": ("bool", [6], "BOOL", [6]),
        "c64": ("complex64", [2], "C64", [2]), "e4m3": ("float8_e4m3fn", [3, 3], "F8_E4M3", [3, 3]),
        "e5m2": ("float8_e5m2", [4], "F8_E5M2", [4]), "e8m0": ("float8_e8m0fnu", [6], "F8_E8M0", [6]),
        "e4fnuz": ("float8_e4m3fnuz", [2], "F8_E4M3FNUZ", [2]), "e5fnuz": ("float8_e5m2fnuz", [2], "F8_E5M2FNUZ", [2]),
        "fp4": ("float4_e2m1fn_x2", [3, 2], "F4", [3, 4]),
    }
    payloads, tensor_specs = {}, {}
    for name, (np_name, shape, dtype, logical) in specs.items():
        nbytes = int(np.prod(logical)) * BITS[dtype] // 8
        payloads[name] = rng.integers(0, 256, size=nbytes, dtype=np.uint8)
        tensor_specs[name] = safetensors.TensorSpec(
            dtype=np_name, shape=shape, data_ptr=payloads[name].ctypes.data, data_len=nbytes
        )
    path = tmp_path / NAME
    path.write_bytes(safetensors.serialize(tensor_specs, metadata={"format": "np", "note": "a-b"}))
    blob = path.read_bytes()
    result = scan(path)
    assert result.complete and result.findings == ()
    assert dict(result.metadata) == {"format": "np", "note": "a-b"}
    records = {t.name: t for t in result.tensors}
    with safetensors.safe_open(str(path), "np") as handle:
        assert sorted(handle.keys()) == sorted(records) == sorted(specs)
        assert handle.metadata() == dict(result.metadata)
        for name, (_, _, dtype, logical) in specs.items():
            piece = handle.get_slice(name)
            assert (piece.get_dtype(), piece.get_shape()) == (records[name].dtype, list(records[name].shape))
            assert (records[name].dtype, list(records[name].shape)) == (dtype, logical)
            record = records[name]
            assert blob[record.offset : record.offset + record.nbytes] == payloads[name].tobytes(), name
        for name in ("f32", "i64", "u8", "c64"):  # dtypes numpy reads: the reader's bytes at our offsets
            record = records[name]
            assert handle.get_tensor(name).tobytes() == blob[record.offset : record.offset + record.nbytes]


def test_builder_matches_official_writer_bytes(tmp_path: Path) -> None:
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    np = pytest.importorskip("numpy")
    ml_dtypes = pytest.importorskip("ml_dtypes")
    arrays = {
        "w": np.arange(24, dtype=np.float32).reshape(4, 6), "a": np.arange(3, dtype=np.uint8),
        "b": np.array([1.5, -2.0]), "z": np.array(7, dtype=np.int16), "e": np.zeros((0, 3), np.float32),
        "h": np.arange(5).astype(ml_dtypes.bfloat16), "c": np.array([1 + 2j], dtype=np.complex64),
        "big": np.arange(4, dtype=">i4"),
    }
    for metadata in (None, {"format": "np"}):
        path = tmp_path / "ours.safetensors"
        write_safetensors(path, arrays, metadata=metadata, sparse=False)
        assert path.read_bytes() == safetensors_numpy.save(arrays, metadata=metadata)


def test_write_sharded(tmp_path: Path) -> None:
    shapes = {"embed": (10, 4), "l0.w": (4, 4), "l0.norm": (4,), "l1.w": (4, 4), "head": ("F32", (4, 10))}
    index_path = write_sharded(tmp_path, shapes, 2, "BF16")
    index = json.loads(index_path.read_text())
    first, second = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    assert index == {
        "metadata": {"total_size": 80 + 32 + 8 + 32 + 160},
        "weight_map": {"embed": first, "head": second, "l0.norm": first, "l0.w": first, "l1.w": second},
    }
    scans = [scan_safetensors(tmp_path / name, name, (tmp_path / name).stat().st_size) for name in (first, second)]
    assert all(item.complete and item.findings == () for item in scans)
    assert sum(t.nbytes for item in scans for t in item.tensors) == 312
    assert [t.name for t in scans[1].tensors] == ["head", "l1.w"]  # F32 sorts before BF16


def test_valid_edge_cases_have_no_findings(tmp_path: Path) -> None:
    cases = {
        "empty header": ("{}", 0),
        "scalar and empty tensors": (
            '{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},'
            '"y":{"dtype":"I8","shape":[3,0],"data_offsets":[4,4]}}',
            4,
        ),
        "escaped name": ('{"\\u0061":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', 1),
        "surrogate pair name": ('{"\\ud83d\\ude00":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', 1),
        "dash in metadata": ('{"__metadata__":{"k":"-1"},"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}', 2),
        # ":-" inside a string makes the parser watch for negative numbers; none here.
        "colon dash in a name": ('{"a:-b":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}', 2),
        "space padding": ('{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}' + " " * 100, 2),
        "zero shape first": ('{"a":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}}', 0),
    }
    for label, (header, data_len) in cases.items():
        path = write_raw(tmp_path / f"{len(label)}.safetensors", header, data_len)
        result = scan(path)
        assert (label, result.complete, ids(result)) == (label, True, [])
        if _has_safetensors():
            assert reference_accepts(path), label
    names = [t.name for t in scan(tmp_path / f"{len('surrogate pair name')}.safetensors").tensors]
    assert names == ["\U0001F600"]


# --- every validation rule -------------------------------------------------------------------------

E = '"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]'  # a valid entry for 8 data bytes, no closing brace


def entry(dtype: str = "F32", shape: str = "[2]", offsets: str = "[0,8]", name: str = "a", extra: str = "") -> str:
    return f'"{name}":{{"dtype":"{dtype}","shape":{shape},"data_offsets":{offsets}{extra}}}'


def pad8(header: str) -> str:
    """Pad like the official writer, so that the data region starts on a multiple of 8."""
    return header + " " * (-len(header) % 8)


@dataclass(frozen=True)
class Case:
    label: str
    header: str | bytes
    data_len: int
    finding_id: str
    fatal: bool
    reference_accepts: bool  # what safetensors 0.8.0 does with the same bytes
    tensor: str | None = None  # the tensor named in the finding's location
    declared_length: int | None = None


CASES = [
    Case("leading whitespace", pad8(" \n{" + E + "}}"), 8, "safetensors-header-leading-whitespace", False, True),
    Case("tab and newline padding", pad8("{" + E + "}}\t\n"), 8, "safetensors-nonspace-padding", False, True),
    Case("NUL padding", ("{" + E + "}}").encode() + b"\0\0", 8, "safetensors-invalid-json", True, False),
    Case("not UTF-8", b'{"\xff":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', 8, "safetensors-header-not-utf8", True, False),
    Case("invalid JSON", '{"a":', 0, "safetensors-invalid-json", True, False),
    Case("empty header", "", 0, "safetensors-invalid-json", True, False),
    Case("deep nesting", "[" * 5000 + "]" * 5000, 0, "safetensors-header-too-deep", True, False),
    Case("too many values", '{"a":[' + "0," * 4_100_000 + "0]}", 0, "safetensors-header-too-complex", True, False),
    Case("NaN in an unknown field", "{" + E + ',"x":NaN}}', 8, "safetensors-nonstandard-json", True, False),
    Case("Infinity in a shape", "{" + entry(shape="[Infinity]") + "}", 8, "safetensors-nonstandard-json", True, False),
    Case("1e400 in an unknown field", "{" + E + ',"x":1e400}}', 8, "safetensors-nonstandard-json", True, False),
    Case("lone surrogate in a name", "{" + entry(name="\\ud800") + "}", 8, "safetensors-nonstandard-json", True, False),
    Case("lone surrogate in metadata", '{"__metadata__":{"k":"\\udc00"},' + E + "}}", 8, "safetensors-nonstandard-json", True, False),
    Case("lone surrogate in an unknown field", "{" + E + ',"x":["\\ud800"]}}', 8, "safetensors-nonstandard-json", True, False),
    Case("root is a list", "[]", 0, "safetensors-header-not-object", True, False),
    Case("entry is a list", '{"a":[1,2]}', 0, "safetensors-invalid-entry", True, False, "a"),
    Case("missing shape", '{"a":{"dtype":"F32","data_offsets":[0,4]}}', 4, "safetensors-invalid-entry", True, False, "a"),
    Case("dtype is a number", '{"a":{"dtype":32,"shape":[1],"data_offsets":[0,4]}}', 4, "safetensors-invalid-entry", True, False, "a"),
    Case("shape is null", "{" + entry(shape="null") + "}", 8, "safetensors-invalid-entry", True, False, "a"),
    Case("three offsets", "{" + entry(offsets="[0,8,8]") + "}", 8, "safetensors-invalid-entry", True, False, "a"),
    Case("offsets object", "{" + entry(offsets='{"0":0}') + "}", 8, "safetensors-invalid-entry", True, False, "a"),
    Case("repeated field", '{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}', 8, "safetensors-duplicate-field", True, False, "a"),
    Case("two __metadata__", '{"__metadata__":{},' + E + '},"__metadata__":{}}', 8, "safetensors-duplicate-field", True, False),
    Case("unknown field", pad8("{" + E + ',"byte_order":"big"}}'), 8, "safetensors-unknown-field", False, True, "a"),
    Case("unknown dtype", "{" + entry(dtype="f32") + "}", 8, "safetensors-unknown-dtype", True, False, "a"),
    Case("float in shape", "{" + entry(shape="[2.0]") + "}", 8, "safetensors-non-integer", True, False, "a"),
    Case("boolean in shape", "{" + entry(shape="[true,2]") + "}", 8, "safetensors-non-integer", True, False, "a"),
    Case("string in offsets", "{" + entry(offsets='[0,"8"]') + "}", 8, "safetensors-non-integer", True, False, "a"),
    Case("null in shape", "{" + entry(shape="[null]") + "}", 8, "safetensors-non-integer", True, False, "a"),
    Case("negative dimension", "{" + entry(shape="[-2]") + "}", 8, "safetensors-negative-integer", True, False, "a"),
    Case("negative zero offset", "{" + entry(shape="[0]", offsets="[-0,0]") + "}", 0, "safetensors-negative-integer", True, False, "a"),
    Case("dimension 2**64", "{" + entry(shape="[18446744073709551616]") + "}", 8, "safetensors-integer-too-large", True, False, "a"),
    Case("offset of 100 digits", "{" + entry(offsets="[0," + "9" * 100 + "]") + "}", 8, "safetensors-integer-too-large", True, False, "a"),
    Case("long offset, hook active", "{" + entry(name="x:-y", offsets="[0," + "9" * 5000 + "]") + "}", 8, "safetensors-integer-too-large", True, False, "x:-y"),
    Case("offset of 5000 digits", "{" + entry(offsets="[0," + "9" * 5000 + "]") + "}", 8, "safetensors-integer-too-large", True, False),
    Case("metadata value not a string", '{"__metadata__":{"k":1},' + E + "}}", 8, "safetensors-invalid-metadata", True, False),
    Case("metadata is a list", '{"__metadata__":["k"],' + E + "}}", 8, "safetensors-invalid-metadata", True, False),
    Case("tensor named __metadata__", "{" + entry(name="__metadata__") + "}", 8, "safetensors-invalid-metadata", True, False),
    Case("metadata is null", pad8('{"__metadata__":null,' + E + "}}"), 8, "safetensors-null-metadata", False, True),
    Case("identical duplicate tensor", pad8("{" + E + "}," + E + "}}"), 8, "safetensors-duplicate-key", False, True, "a"),
    Case("identical duplicate metadata key", pad8('{"__metadata__":{"k":"v","k":"v"},' + E + "}}"), 8, "safetensors-duplicate-key", False, True),
    Case("conflicting metadata key", pad8('{"__metadata__":{"k":"v","k":"w"},' + E + "}}"), 8, "safetensors-conflicting-duplicate-key", False, True),
    # Same bytes, two dtypes: the reference keeps the last (I32), first-wins parsers the first (F32).
    Case("conflicting duplicate tensor", "{" + E + "}," + entry(dtype="I32") + "}", 8, "safetensors-conflicting-duplicate-key", True, True, "a"),
    Case("conflicting duplicate leaving a hole", "{" + E + "}," + entry(offsets="[8,16]") + "}", 16, "safetensors-conflicting-duplicate-key", True, False, "a"),
    Case("element count overflows", "{" + entry(shape="[4294967296,4294967296,0]", offsets="[0,0]") + "}", 0, "safetensors-shape-overflow", True, False, "a"),
    Case("bit count overflows", "{" + entry(shape="[1152921504606846976]", offsets="[0,0]") + "}", 0, "safetensors-shape-overflow", True, False, "a"),
    Case("u64 max elements", "{" + entry(shape="[18446744073709551615]", offsets="[0,0]") + "}", 0, "safetensors-shape-overflow", True, False, "a"),
    Case("F4 odd count", "{" + entry(dtype="F4", shape="[3]", offsets="[0,2]") + "}", 2, "safetensors-partial-byte", True, False, "a"),
    Case("F6 count of 3", "{" + entry(dtype="F6_E3M2", shape="[3]", offsets="[0,3]") + "}", 3, "safetensors-partial-byte", True, False, "a"),
    Case("size mismatch", "{" + entry(shape="[3]") + "}", 8, "safetensors-size-mismatch", True, False, "a"),
    Case("reversed offsets", "{" + entry(shape="[0]", offsets="[4,0]") + "}", 0, "safetensors-reversed-offsets", True, False, "a"),
    Case("overlap", "{" + E + "}," + entry(name="b", offsets="[4,12]") + "}", 12, "safetensors-offset-overlap", True, False, "b"),
    Case("gap between tensors", "{" + E + "}," + entry(name="b", offsets="[12,20]") + "}", 20, "safetensors-offset-gap", True, False, "b"),
    Case("gap at the start", "{" + entry(offsets="[4,12]") + "}", 12, "safetensors-offset-gap", True, False, "a"),
    Case("trailing data (polyglot)", "{" + E + "}}", 9, "safetensors-trailing-data", True, False),
    Case("data after an empty header", "{}", 1, "safetensors-trailing-data", True, False),
    Case("truncated data", "{" + E + "}}", 4, "safetensors-truncated-data", True, False),
    Case("misaligned F32", pad8('{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},' + entry(name="b", shape="[1]", offsets="[2,6]") + "}"), 6, "safetensors-misaligned-tensor", False, True, "b"),
    Case("header too large", "{}", 0, "safetensors-header-too-large", True, False, declared_length=100_000_001),
    Case("header past the end", "{}", 0, "safetensors-header-out-of-bounds", True, False, declared_length=100_000_000),
    Case("header one byte past the end", "{}", 0, "safetensors-header-out-of-bounds", True, False, declared_length=3),
]


def _write_case(tmp_path: Path, case: Case) -> Path:
    return write_raw(tmp_path / NAME, case.header, case.data_len, declared_length=case.declared_length)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.label)
def test_validation_rule(tmp_path: Path, case: Case) -> None:
    result = scan(_write_case(tmp_path, case))
    assert ids(result) == [case.finding_id]
    assert result.complete is not case.fatal
    expected_location = NAME if case.tensor is None else f"{NAME}:{case.tensor}"
    assert result.findings[0].location == expected_location
    assert result.findings[0].severity == catalogue()[case.finding_id].severity


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.label)
def test_reference_reader_agrees(tmp_path: Path, case: Case) -> None:
    """Fatal findings are exactly what safetensors rejects, except a conflicting duplicate, which it
    silently resolves (last wins) and openaudit refuses because other parsers resolve it differently."""
    pytest.importorskip("safetensors")
    assert reference_accepts(_write_case(tmp_path, case)) is case.reference_accepts


def test_file_shorter_than_eight_bytes(tmp_path: Path) -> None:
    path = tmp_path / NAME
    for content in (b"", b"\x02\x00\x00\x00\x00"):
        path.write_bytes(content)
        result = scan(path)
        assert (result.complete, ids(result), result.tensors) == (False, ["safetensors-too-small"], ())
    if _has_safetensors():
        assert not reference_accepts(path)


def test_warnings_accompany_a_fatal_problem(tmp_path: Path) -> None:
    path = write_raw(tmp_path / NAME, "  {" + E + "}}\t", 9)
    result = scan(path)
    assert ids(result) == [
        "safetensors-header-leading-whitespace",
        "safetensors-nonspace-padding",
        "safetensors-trailing-data",
    ]
    assert not result.complete
    # The header itself was valid, so its tensors are still reported.
    assert [(t.name, t.nbytes) for t in result.tensors] == [("a", 8)]


def test_truncated_file_keeps_its_tensor_list(tmp_path: Path) -> None:
    path = tmp_path / NAME
    plan = write_safetensors(path, {"a": ("F32", (4,)), "b": ("F32", (1000,))})
    os.truncate(path, plan.file_size - 100)
    result = scan(path)
    assert not result.complete
    assert ids(result) == ["safetensors-truncated-data"]
    assert "'b'" in result.findings[0].message
    assert [(t.name, t.elements) for t in result.tensors] == [("a", 4), ("b", 1000)]


def test_repeated_warnings_are_summarized(tmp_path: Path) -> None:
    entries = ['"u":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}']
    entries += [entry(name=f"t{i:02d}", shape="[1]", offsets=f"[{1 + 4 * i},{5 + 4 * i}]") for i in range(25)]
    header = pad8("{" + ",".join(entries) + "}")  # so every F32 sits at 1 mod 4 in the file
    result = scan(write_raw(tmp_path / NAME, header, 101))
    assert result.complete
    assert ids(result) == ["safetensors-misaligned-tensor"] * (MAX_FINDINGS_PER_ID + 1)
    assert result.findings[0].location == f"{NAME}:t00"
    assert (result.findings[-1].message, result.findings[-1].location) == ("5 more cases of the same problem", NAME)


def test_unpadded_header_is_one_alignment_finding(tmp_path: Path) -> None:
    entries = [entry(name=f"t{i}", shape="[1]", offsets=f"[{4 * i},{4 * i + 4}]") for i in range(3)]
    header = "{" + ",".join(entries) + "}"
    header += " " * ((5 - len(header)) % 8)  # 8 + N = 5 mod 8: no F32 can be aligned
    path = write_raw(tmp_path / NAME, header, 12)
    result = scan(path)
    assert result.complete
    assert ids(result) == ["safetensors-misaligned-tensor"]
    assert result.findings[0].location == NAME
    assert result.findings[0].message == (
        f"the data region starts at byte {8 + len(header)} (the header is not padded to a multiple of 8), "
        "so 3 tensor(s) are misaligned in the file"
    )
    assert (8 + len(header)) % 8 == 5
    if _has_safetensors():
        assert reference_accepts(path)


def test_deadline_stops_a_long_parse(tmp_path: Path) -> None:
    entries = [entry(name=f"t{i}", dtype="U8", shape="[1]", offsets=f"[{i},{i + 1}]") for i in range(3000)]
    path = write_raw(tmp_path / NAME, "{" + ",".join(entries) + "}", 3000)
    assert scan(path).complete
    result = scan(path, deadline=Deadline(0.0))
    assert (result.complete, ids(result)) == (False, ["parse-timeout"])


def test_special_files_and_links_are_findings(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    result = scan_safetensors(fifo, "pipe.safetensors", 0)
    assert (result.complete, ids(result)) == (False, ["special-file"])
    target = write_raw(tmp_path / "real.safetensors", "{}", 0)
    link = tmp_path / "link.safetensors"
    link.symlink_to(target)
    result = scan_safetensors(link, "link.safetensors", 10)
    assert (result.complete, ids(result)) == (False, ["unreadable-file"])


def test_size_changed_since_listing(tmp_path: Path) -> None:
    path = write_raw(tmp_path / NAME, pad8("{" + E + "}}"), 8)
    result = scan_safetensors(path, NAME, path.stat().st_size + 5)
    assert result.complete
    assert ids(result) == ["safetensors-size-changed"]
    assert [t.name for t in result.tensors] == ["a"]


def test_hostile_names_are_shortened_in_messages(tmp_path: Path) -> None:
    name = "\x1b[31m" + "x" * 5000
    header = json.dumps({name: {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})
    result = scan(write_raw(tmp_path / NAME, header, 8))
    assert ids(result) == ["safetensors-size-mismatch"]
    message, location = result.findings[0].message, result.findings[0].location
    assert "\x1b" not in message and len(message) < 400
    assert len(location) < 200 and location.startswith(f"{NAME}:\x1b[31mxxx")


def test_catalogue_holds_exactly_the_ids_the_parser_emits() -> None:
    source = Path(st_module.__file__).read_text(encoding="utf-8")
    emitted = set(re.findall(r'"(safetensors-[a-z0-9-]+)"', source))
    defined = {rule_id for rule_id in catalogue() if rule_id.startswith("safetensors-")}
    assert emitted == defined
    assert catalogue()["safetensors-trailing-data"].severity is Severity.HIGH
    assert catalogue()["safetensors-conflicting-duplicate-key"].severity is Severity.HIGH
    assert catalogue()["safetensors-misaligned-tensor"].severity is Severity.LOW


def test_header_only_path_imports_neither_numpy_nor_jax() -> None:
    code = "import sys, openaudit.inspect.safetensors; print('numpy' in sys.modules, 'jax' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.split() == ["False", "False"]


# --- Grok-1 scale ----------------------------------------------------------------------------------

# Reference §4.2-4.4: Grok-1's leaf shapes (stored here as BF16).
GROK_LAYER_SHAPES = {
    "moe/linear/w": (8, 6144, 32768),
    "moe/linear_1/w": (8, 32768, 6144),
    "moe/linear_v/w": (8, 6144, 32768),
    "multi_head_attention/key/w": (6144, 1024),
    "multi_head_attention/linear/w": (6144, 6144),
    "multi_head_attention/query/w": (6144, 6144),
    "multi_head_attention/value/w": (6144, 1024),
    "rms_norm/scale": (6144,),
    "rms_norm_1/scale": (6144,),
    "rms_norm_2/scale": (6144,),
    "rms_norm_3/scale": (6144,),
    "router/w": (6144, 8),
}


def grok_tensors() -> dict[str, tuple[str, tuple[int, ...]]]:
    from openaudit.inspect.pickle.grok_layout import EMBEDDING, FINAL_NORM, leaf_paths

    shapes = {EMBEDDING: (131072, 6144), FINAL_NORM: (6144,)}
    tensors = {}
    for name in leaf_paths(64):
        shape = shapes.get(name) or GROK_LAYER_SHAPES[name.split("/", 2)[2]]
        tensors[name] = ("BF16", shape)
    return tensors


def test_grok1_header_parses_fast_and_counts_exactly() -> None:
    plan = layout(grok_tensors())
    prefix = plan.prefix()
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        header = parse_header(prefix, plan.file_size, NAME)
        timings.append(time.perf_counter() - start)
    assert min(timings) < 0.050
    assert len(header.tensors) == 770
    assert header.elements == 315_684_820_992
    assert header.data_bytes == 631_369_641_984
    assert header.warnings == ()
    last = header.tensors[-1]
    assert (last.name, last.offset) == ("transformer/decoder_layer_9/router/w", plan.file_size - 6144 * 8 * 2)


def test_grok1_sized_sparse_file_scans_from_its_header(tmp_path: Path) -> None:
    path = tmp_path / NAME
    plan = write_safetensors(path, grok_tensors())
    assert path.stat().st_size == plan.file_size == plan.data_start + 631_369_641_984
    result = scan(path)
    assert result.complete and result.findings == ()
    assert sum(t.elements for t in result.tensors) == 315_684_820_992
    assert result.tensors[0].name == "language_model/in_out_embed/embeddings"
    assert result.tensors[0].offset == plan.data_start
