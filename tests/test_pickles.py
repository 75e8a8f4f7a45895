"""Static pickle inspection: exact tensors and offsets, safety findings, PyTorch containers, Grok-1.

Nothing here unpickles a scanned file: an autouse fixture makes pickle.load/loads/Unpickler raise
while the scanner runs. One test unpickles its own file-creating sample in a child process, to prove
the sample is live (so that "the scan did not create the file" means something).
"""

from __future__ import annotations

import pickle
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from openaudit.findings import Severity, catalogue
from openaudit.inspect.pickle import machine, opcodes, policy, tensor_records, torch_files
from openaudit.inspect.pickle import scan as pickle_scan
from openaudit.inspect.pickle.grok_checkpoint import name_grok_leaves
from openaudit.inspect.pickle.grok_layout import leaf_paths
from openaudit.inspect.pickle.scan import scan_pickle_file
from openaudit.inspect.pickle.sniff import sniff_pickle
from openaudit.inspect.pickle.torch_files import sniff_torch_zip
from openaudit.inspect.tensors import PARAMETER, SCALE, TensorRecord
from openaudit.limits import Deadline
from tests.builders import pickle_builder as pb
from tests.builders.pickle_builder import ArraySpec, QuantizedSpec, TorchStorage, TorchTensor

INSTALLED_MULTIARRAY = np.ndarray.__reduce__(np.zeros(1))[0].__module__  # numpy._core.multiarray on numpy 2


# ---------------------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture(autouse=True)
def no_unpickling(monkeypatch):
    """Any unpickling during a test's scan is a failure."""
    import _pickle

    def refuse(*args, **kwargs):
        raise AssertionError("the scanner must never unpickle")

    for module in (pickle, _pickle):
        for name in ("load", "loads", "Unpickler"):
            monkeypatch.setattr(module, name, refuse)
    monkeypatch.setattr(pickle, "_Unpickler", refuse)


class CountingHandle:
    def __init__(self, handle):
        self._handle = handle
        self.count = 0

    def read(self, size=-1):
        data = self._handle.read(size)
        self.count += len(data)
        return data

    def __getattr__(self, name):
        return getattr(self._handle, name)


@pytest.fixture
def read_counter(monkeypatch):
    """Counts every byte the scanner reads from files it opens."""
    handles: list[CountingHandle] = []
    real_open = pickle_scan.open_regular

    @contextmanager
    def counting_open(path):
        with real_open(path) as handle:
            counted = CountingHandle(handle)
            handles.append(counted)
            yield counted

    monkeypatch.setattr(pickle_scan, "open_regular", counting_open)
    return lambda: sum(handle.count for handle in handles)


def scan(path: Path, name: str | None = None, deadline: Deadline | None = None):
    return scan_pickle_file(path, name or path.name, path.stat().st_size, deadline)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def ids(result) -> list[tuple[str, str]]:
    return [(f.id, f.severity.value) for f in result.findings]


def read_array(path: Path, record: TensorRecord, dtype) -> np.ndarray:
    count = int(np.prod(record.shape))
    with open(path, "rb") as handle:
        handle.seek(record.offset)
        raw = handle.read(record.nbytes)
    return np.frombuffer(raw, dtype=dtype, count=count).reshape(record.shape)


@dataclass
class QuantizedWeight8bit:  # the class xai-org/grok-1 registers in __main__ before unpickling
    weight: np.ndarray
    scales: np.ndarray


QuantizedWeight8bit.__module__ = "__main__"


@pytest.fixture
def main_qw8(monkeypatch):
    monkeypatch.setattr(sys.modules["__main__"], "QuantizedWeight8bit", QuantizedWeight8bit, raising=False)
    return QuantizedWeight8bit


def spec_of(array: np.ndarray, dtype: str) -> ArraySpec:
    fortran = array.flags.f_contiguous and not array.flags.c_contiguous
    return ArraySpec(dtype, array.shape, array.tobytes(order="F" if fortran else "A"), fortran)


RNG = np.random.default_rng(1234)


def random_array(dtype, shape, order="C") -> np.ndarray:
    values = RNG.integers(-100, 100, size=shape).astype(dtype)
    return np.asfortranarray(values) if order == "F" else values


# ---------------------------------------------------------------------------------------------------
# The builders write what the real writers write


@pytest.mark.parametrize(
    "dtype, code, shape, order",
    [
        (np.float32, "f4", (2, 3), "C"),
        (np.int8, "i1", (5,), "C"),
        (ml_dtypes.bfloat16, "bfloat16", (1, 3), "C"),
        (np.float16, "f2", (), "C"),
        (np.int64, "i8", (2, 2, 2, 2), "C"),
        (np.bool_, "b1", (0,), "C"),
        (np.uint8, "u1", (1,), "C"),
        (ml_dtypes.float8_e4m3fn, "float8_e4m3fn", (3, 5), "C"),
        (np.float32, "f4", (30, 40), "F"),
        (np.float32, "f4", (200, 100), "C"),  # 80,000 bytes: payload outside the frame
    ],
)
def test_emitter_matches_pickle_dumps_for_arrays(dtype, code, shape, order):
    array = random_array(dtype, shape, order)
    assert pb.pickle_bytes(spec_of(array, code), INSTALLED_MULTIARRAY) == pickle.dumps(array)


def test_emitter_matches_pickle_dumps_for_quantized_weights_and_dicts(main_qw8):
    small = main_qw8(random_array(np.int8, (2, 3)), random_array(ml_dtypes.bfloat16, (1, 3)))
    large = main_qw8(random_array(np.int8, (300, 300)), random_array(ml_dtypes.bfloat16, (1, 300)))
    for obj in (small, large):
        spec = QuantizedSpec(spec_of(obj.weight, "i1"), spec_of(obj.scales, "bfloat16"))
        assert pb.pickle_bytes(spec, INSTALLED_MULTIARRAY) == pickle.dumps(obj)
    a, b = random_array(np.uint8, (30000,)), random_array(np.float32, (3,))
    assert pb.pickle_bytes({"a": spec_of(a, "u1"), "b": spec_of(b, "f4")}, INSTALLED_MULTIARRAY) == pickle.dumps(
        {"a": a, "b": b}
    )
    assert pb.pickle_bytes({}, INSTALLED_MULTIARRAY) == pickle.dumps({})


def test_emitter_layout_points_at_the_data(tmp_path):
    array = random_array(np.float32, (100, 300))  # 120,000 bytes, outside any frame
    path = tmp_path / "leaf"
    layout = pb.write_pickle(path, spec_of(array, "f4"))
    offset, length = layout.payloads[""]
    assert length == 120_000
    assert path.stat().st_size == layout.size
    with open(path, "rb") as handle:
        handle.seek(offset)
        assert handle.read(length) == array.tobytes()


def test_torch_pickler_stand_ins_match_the_c_pickler():
    # The torch writer uses the pure-Python pickler so that torch's globals need no import; with real
    # importable globals in their place it writes what the C pickler writes.
    inner = {"a": (1, 2.5, "x"), "b": [None, True, b"\x00\x01", 70000, -5, 2**40]}
    real = [OrderedDict, OrderedDict, inner, (1, 2), (1, 2, 3, 4), {"k": inner}]
    standin = [pb.GlobalRef("collections", "OrderedDict")] * 2 + real[2:]
    data, storages = pb.torch_pickle(standin)
    assert storages == {}
    assert data == pickle.dumps(real, protocol=2)


def test_libstdcxx_string_hash_known_answers():
    # Values printed by std::hash<std::string> compiled with g++ 12 (libstdc++), the hash that
    # PyTorchStreamWriter's .data/serialization_id combines.
    expected = {
        "": 6142509188972423790,
        "a": 4993892634952068459,
        "data.pkl": 4941642132189851806,
        "version": 1565691551459181974,
        ".data/serialization_id": 6612201020302693182,
        "byteorder": 17475754552457364548,
        "data/0": 476597642816643211,
        "abcdefgh": 8664279048047335611,
        "abcdefghi": 13036955925923793583,
    }
    assert {name: pb._libstdcxx_hash(name.encode()) for name in expected} == expected


def small_state_dict():
    weights = np.arange(12, dtype=np.float32)
    halves = np.array([1.5, -2.0, 0.25, 8.0], dtype=np.float16)
    float8 = np.arange(6, dtype=np.uint8)
    s_float = TorchStorage("F32", 12, weights.tobytes())
    s_bf16 = TorchStorage("BF16", 4, np.array([1, 2, 3, 4], dtype=ml_dtypes.bfloat16).tobytes())
    s_half = TorchStorage("F16", 4, halves.tobytes())
    s_f8 = TorchStorage("F8_E4M3", 6, float8.tobytes())
    tensors = {
        "layer.weight": TorchTensor(s_float, (3, 4)),
        "layer.weight_t": TorchTensor(s_float, (4, 3), (1, 4)),  # a transposed view of the same storage
        "layer.bias": TorchTensor(s_float, (2,), storage_offset=5),
        "norm.weight": TorchTensor(s_bf16, (2, 2), parameter=True, requires_grad=True),
        "half": TorchTensor(s_half, (4,)),
        "fp8": TorchTensor(s_f8, (2, 3)),
    }
    return pb.state_dict(tensors), weights


def test_torch_zip_layout_is_what_pytorch_stream_writer_writes(tmp_path):
    sd, _ = small_state_dict()
    path = tmp_path / "model.pt"
    offsets = pb.write_torch_zip(path, sd)
    archive = zipfile.ZipFile(path)
    infos = archive.infolist()
    assert [info.filename for info in infos] == [
        "model/data.pkl", "model/.format_version", "model/.storage_alignment", "model/byteorder",
        "model/data/0", "model/data/1", "model/data/2", "model/data/3", "model/version",
        "model/.data/serialization_id",
    ]
    assert {info.flag_bits for info in infos} == {0x0808}  # data descriptor + UTF-8 names
    assert {info.date_time for info in infos} == {(1980, 0, 0, 0, 0, 0)}
    assert {info.compress_type for info in infos} == {zipfile.ZIP_STORED}
    assert all(offset % 64 == 0 for offset in offsets.values())
    raw = path.read_bytes()
    for info in infos:
        name_length, extra_length = struct.unpack_from("<HH", raw, info.header_offset + 26)
        data_offset = info.header_offset + 30 + name_length + extra_length
        assert data_offset == offsets[info.filename.split("/", 1)[1]]
        assert raw[data_offset : data_offset + info.file_size] == archive.read(info.filename)
        assert raw[info.header_offset + 30 + name_length : info.header_offset + 32 + name_length] == b"FB"
    assert archive.read("model/version") == b"3\n"
    assert archive.read("model/byteorder") == b"little"
    serialization_id = archive.read("model/.data/serialization_id")
    assert len(serialization_id) == 40 and serialization_id.isdigit()
    assert raw[-22 - 20 - 56 : -22 - 20 - 52] == b"PK\x06\x06"  # zip64 end record, as miniz writes it


# ---------------------------------------------------------------------------------------------------
# numpy arrays and Grok leaves: exact records and offsets


def test_numpy_array_record_and_offset(tmp_path):
    array = random_array(np.float32, (4, 6))
    path = write(tmp_path, "array.pkl", pickle.dumps(array))
    result = scan(path)
    assert result.container == "pickle" and result.format == "pickle" and result.complete
    assert result.imports == ("numpy._core.multiarray._reconstruct", "numpy.ndarray", "numpy.dtype")
    assert result.findings == ()
    assert result.metadata == {"protocol": 4}
    (record,) = result.tensors
    layout = pb.emit_pickle(spec_of(array, "f4"), INSTALLED_MULTIARRAY)[1]
    assert record == TensorRecord(name="array.pkl", dtype="F32", shape=(4, 6), file="array.pkl", nbytes=96,
                                  offset=layout.payloads[""][0])
    assert np.array_equal(read_array(path, record, np.float32), array)


def test_quantized_weight_records(tmp_path, main_qw8):
    weight, scales = random_array(np.int8, (16, 8)), random_array(ml_dtypes.bfloat16, (1, 8))
    path = write(tmp_path, "tensor00002_000", pickle.dumps(main_qw8(weight, scales)))
    result = scan(path, "ckpt-0/tensor00002_000")
    assert result.imports == (
        "__main__.QuantizedWeight8bit", "numpy._core.multiarray._reconstruct", "numpy.ndarray", "numpy.dtype",
        "ml_dtypes.bfloat16",
    )
    assert result.findings == ()
    w, s = result.tensors
    assert (w.name, w.dtype, w.shape, w.nbytes, w.role, w.pairs_with) == (
        "ckpt-0/tensor00002_000", "I8", (16, 8), 128, PARAMETER, "ckpt-0/tensor00002_000:scales")
    assert (s.name, s.dtype, s.shape, s.nbytes, s.role, s.pairs_with) == (
        "ckpt-0/tensor00002_000:scales", "BF16", (1, 8), 16, SCALE, "ckpt-0/tensor00002_000")
    assert np.array_equal(read_array(path, w, np.int8), weight)
    assert np.array_equal(read_array(path, s, ml_dtypes.bfloat16), scales)


@pytest.mark.parametrize("protocol, has_offset", [(0, False), (1, False), (2, False), (3, True), (4, True), (5, True)])
def test_every_protocol_gives_the_same_array(tmp_path, protocol, has_offset):
    array = random_array(np.int16, (3, 5))
    path = write(tmp_path, f"p{protocol}.pkl", pickle.dumps(array, protocol=protocol))
    result = scan(path)
    assert result.complete and result.findings == ()
    (record,) = result.tensors
    assert (record.dtype, record.shape, record.nbytes) == ("I16", (3, 5), 30)
    if has_offset:
        assert np.array_equal(read_array(path, record, np.int16), array)
    else:
        # Protocols 0-2 store bytes as _codecs.encode(latin-1 text): the data is not raw in the file.
        assert record.offset is None
        assert "_codecs.encode" in result.imports


def test_fortran_order_is_recorded_as_strides(tmp_path):
    array = random_array(np.float64, (3, 4, 5), order="F")
    result = scan(write(tmp_path, "f.pkl", pickle.dumps(array)))
    (record,) = result.tensors
    assert record.strides == (1, 3, 12)
    assert record.shape == (3, 4, 5) and record.nbytes == 480


def test_big_endian_array_is_a_finding(tmp_path):
    array = np.arange(4, dtype=">i4")
    result = scan(write(tmp_path, "be.pkl", pickle.dumps(array)))
    assert [t.dtype for t in result.tensors] == ["I32"]
    assert ids(result) == [("pickle-big-endian", "low")]


def test_dict_of_arrays_names_and_nested_lists(tmp_path):
    data = {"encoder": {"w": np.ones((2, 2), np.float32)}, "layers": [np.zeros(3, np.int8), np.zeros(1, np.uint8)]}
    result = scan(write(tmp_path, "d.pkl", pickle.dumps(data)))
    assert [(t.name, t.dtype, t.shape) for t in result.tensors] == [
        ("encoder.w", "F32", (2, 2)), ("layers.0", "I8", (3,)), ("layers.1", "U8", (1,)),
    ]


def test_object_and_structured_arrays_are_not_counted(tmp_path):
    result = scan(write(tmp_path, "o.pkl", pickle.dumps(np.array([1, "a"], dtype=object))))
    assert result.tensors == ()
    assert ids(result) == [("pickle-unsupported-dtype", "low")]


# ---------------------------------------------------------------------------------------------------
# PyTorch containers


def test_torch_zip_tensors_and_offsets(tmp_path):
    sd, weights = small_state_dict()
    path = tmp_path / "model.pt"
    offsets = pb.write_torch_zip(path, sd)
    result = scan(path)
    assert (result.container, result.format, result.complete) == ("pytorch-zip", "pickle", True)
    assert result.findings == ()
    assert result.imports == (
        "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch.FloatStorage",
        "torch._utils._rebuild_parameter", "torch.BFloat16Storage", "torch.HalfStorage",
        "torch._utils._rebuild_tensor_v3", "torch.UntypedStorage", "torch.float8_e4m3fn",
    )
    assert result.metadata == {"zip_members": 10, "archive_name": "model", "format_version": "1",
                               "storage_alignment": "64", "byteorder": "little", "version": "3"}
    file = "model.pt"
    assert result.tensors == (
        TensorRecord("layer.weight", "F32", (3, 4), file, 48, offsets["data/0"]),
        TensorRecord("layer.weight_t", "F32", (4, 3), file, 48, offsets["data/0"], strides=(1, 4)),
        TensorRecord("layer.bias", "F32", (2,), file, 8, offsets["data/0"] + 20),
        TensorRecord("norm.weight", "BF16", (2, 2), file, 8, offsets["data/1"]),
        TensorRecord("half", "F16", (4,), file, 8, offsets["data/2"]),
        TensorRecord("fp8", "F8_E4M3", (2, 3), file, 6, offsets["data/3"]),
    )
    by_name = {t.name: t for t in result.tensors}
    assert np.array_equal(read_array(path, by_name["layer.weight"], np.float32), weights.reshape(3, 4))
    assert np.array_equal(read_array(path, by_name["layer.bias"], np.float32), weights[5:7])
    assert np.array_equal(read_array(path, by_name["half"], np.float16),
                          np.array([1.5, -2.0, 0.25, 8.0], dtype=np.float16))


def test_torch_legacy_tensors_and_offsets(tmp_path):
    sd, weights = small_state_dict()
    path = tmp_path / "pytorch_model.bin"
    offsets = pb.write_torch_legacy(path, sd)
    keys = sorted(offsets)
    result = scan(path)
    assert (result.container, result.complete) == ("pytorch-legacy", True)
    assert result.findings == ()
    assert result.metadata == {"legacy_protocol_version": 1001, "little_endian": True}
    assert [(t.name, t.dtype, t.shape, t.offset, t.strides) for t in result.tensors] == [
        ("layer.weight", "F32", (3, 4), offsets[keys[0]], None),
        ("layer.weight_t", "F32", (4, 3), offsets[keys[0]], (1, 4)),
        ("layer.bias", "F32", (2,), offsets[keys[0]] + 20, None),
        ("norm.weight", "BF16", (2, 2), offsets[keys[1]], None),
        ("half", "F16", (4,), offsets[keys[2]], None),
        ("fp8", "F8_E4M3", (2, 3), offsets[keys[3]], None),
    ]
    # Each storage is preceded by its element count, little-endian int64.
    raw = path.read_bytes()
    assert struct.unpack_from("<q", raw, offsets[keys[0]] - 8) == (12,)
    weight = next(t for t in result.tensors if t.name == "layer.weight")
    assert np.array_equal(read_array(path, weight, np.float32), weights.reshape(3, 4))


def test_sparse_torch_files_read_no_data(tmp_path, read_counter):
    big = TorchStorage("BF16", 64 * 1024 * 1024)  # 128 MiB, a hole
    sd = pb.state_dict({"embed": TorchTensor(big, (16384, 4096))})
    zipped, legacy = tmp_path / "big.pt", tmp_path / "big.bin"
    zip_offsets = pb.write_torch_zip(zipped, sd)
    legacy_offsets = pb.write_torch_legacy(legacy, sd)
    assert scan(zipped).tensors == (TensorRecord("embed", "BF16", (16384, 4096), "big.pt", 2**27, zip_offsets["data/0"]),)
    (record,) = scan(legacy).tensors
    assert record.offset == next(iter(legacy_offsets.values()))
    assert read_counter() < 64 * 1024


def test_compressed_data_pkl_is_inflated_and_compressed_storage_has_no_offset(tmp_path):
    sd, _ = small_state_dict()
    path = tmp_path / "c.pt"
    pb.write_torch_zip(path, sd, compress={"data.pkl", "data/0"})
    result = scan(path)
    assert ids(result) == [("torch-zip-compressed-storage", "medium")]
    assert [t.offset is None for t in result.tensors] == [True, True, True, False, False, False]
    assert [t.name for t in result.tensors][:3] == ["layer.weight", "layer.weight_t", "layer.bias"]


def test_zip_bomb_is_not_inflated(tmp_path, monkeypatch):
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = bomb.compress(b"\x00" * (80 * 1024 * 1024)) + bomb.flush()  # 80 MiB of zeros in ~80 KB
    path = tmp_path / "bomb.pt"
    with open(path, "wb") as handle:
        writer = pb.TorchZipWriter(handle, "bomb")
        writer.write_record("data.pkl", pb.torch_pickle(pb.state_dict({}))[0])
        writer.finish()
    path.write_bytes(_zip_with_member(path.read_bytes(), "bomb/extra.pkl", payload, 80 * 1024 * 1024))
    inflated = []
    real_decompressobj = zlib.decompressobj

    class CountingInflater:
        def __init__(self, *args):
            self._inner = real_decompressobj(*args)

        def decompress(self, data, max_length=0):
            out = self._inner.decompress(data, max_length)
            inflated.append(len(out))
            return out

        def __getattr__(self, name):
            return getattr(self._inner, name)

    monkeypatch.setattr(torch_files.zlib, "decompressobj", CountingInflater)
    result = scan(path)
    assert ids(result) == [("torch-zip-extra-pickle", "medium"), ("torch-zip-bomb", "high")]
    assert sum(inflated) <= torch_files.SNIFF_BYTES  # only the sniffed head, never the member


def _zip_with_member(original: bytes, name: str, compressed: bytes, size: int) -> bytes:
    """Append a deflated member to a zip written by TorchZipWriter (rebuilding its end records)."""
    import io

    source = zipfile.ZipFile(io.BytesIO(original))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info, source.read(info.filename))
    rebuilt = out.getvalue()
    end = rebuilt.rfind(b"PK\x05\x06")
    cd_size, cd_offset = struct.unpack_from("<II", rebuilt, end + 12)
    count = struct.unpack_from("<H", rebuilt, end + 10)[0]
    members, directory = rebuilt[:cd_offset], rebuilt[cd_offset : cd_offset + cd_size]
    raw_name = name.encode()
    crc = zlib.crc32(b"\x00" * size)
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(compressed), size, len(raw_name), 0)
    header_offset = len(members)
    members += local + raw_name + compressed
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(compressed), size,
                          len(raw_name), 0, 0, 0, 0, 0, header_offset) + raw_name
    directory += central
    end_record = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count + 1, count + 1, len(directory), len(members), 0)
    return members + directory + end_record


def test_zip_structure_findings(tmp_path):
    sd, _ = small_state_dict()
    path = tmp_path / "odd.pt"
    pb.write_torch_zip(path, sd, extra_records=[
        ("data/0", b"\x00" * 48),  # a second member named data/0
        ("//../escape.txt", b"x"),
        ("///etc/passwd", b"y"),
        ("notes.md", b"hello"),
    ])
    result = scan(path)
    assert ids(result) == [
        ("torch-zip-unsafe-name", "high"),
        ("torch-zip-unsafe-name", "high"),
        ("torch-zip-duplicate-member", "high"),
        ("torch-zip-unexpected-member", "low"),
        ("torch-zip-unexpected-member", "low"),
        ("torch-zip-unexpected-member", "low"),
    ]
    assert [t.name for t in result.tensors][:1] == ["layer.weight"]


def test_missing_and_mismatched_storages(tmp_path):
    storage = TorchStorage("F32", 4, bytes(16))
    data_pkl, _ = pb.torch_pickle(pb.state_dict({"a": TorchTensor(storage, (4,)), "b": TorchTensor(storage, (8,))}))
    path = tmp_path / "m.pt"
    with open(path, "wb") as handle:
        writer = pb.TorchZipWriter(handle, "m")
        writer.write_record("data.pkl", data_pkl)
        writer.finish()
    result = scan(path)
    assert ids(result) == [("torch-missing-storage", "high"), ("pickle-tensor-out-of-bounds", "high")]
    assert [(t.name, t.offset) for t in result.tensors] == [("a", None), ("b", None)]

    with open(path, "wb") as handle:
        writer = pb.TorchZipWriter(handle, "m")
        writer.write_record("data.pkl", data_pkl)
        writer.write_record("data/0", bytes(12))  # 3 floats where the pickle declares 4
        writer.finish()
    assert ids(scan(path)) == [("torch-storage-size-mismatch", "high"), ("pickle-tensor-out-of-bounds", "high")]


def test_many_members(tmp_path):
    storages = [TorchStorage("F32", 1, struct.pack("<f", i)) for i in range(3000)]
    sd = pb.state_dict({f"t{i}": TorchTensor(s, (1,)) for i, s in enumerate(storages)}, metadata=False)
    path = tmp_path / "many.pt"
    offsets = pb.write_torch_zip(path, sd)
    start = time.monotonic()
    result = scan(path)
    assert time.monotonic() - start < 10
    assert result.findings == ()
    assert len(result.tensors) == 3000
    assert result.tensors[2999] == TensorRecord("t2999", "F32", (1,), "many.pt", 4, offsets["data/2999"])


def test_a_zip_that_is_not_a_torch_archive_is_quiet(tmp_path):
    path = tmp_path / "dataset.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("images/a.txt", "hello " * 1000)
        archive.writestr("labels.csv", "a,b\n1,2\n")
    result = scan(path)
    assert (result.container, result.tensors, result.imports, result.findings) == ("zip", (), (), ())


# ---------------------------------------------------------------------------------------------------
# Malicious pickles: every sample is flagged with the right global and severity


MALICIOUS = [
    ("os-system-p0", pb.global_call_p0("os", "system", "true"), ("os.system",),
     [("unsafe-code", "critical"), ("pickle-unsafe-call", "critical")]),
    ("posix-system-p4", pb.stack_global_call("posix", "system", "true"), ("posix.system",),
     [("unsafe-code", "critical"), ("pickle-unsafe-call", "critical")]),
    ("nt-system", pb.stack_global_call("nt", "system", "true"), ("nt.system",),
     [("unsafe-code", "critical"), ("pickle-unsafe-call", "critical")]),
    ("builtins-exec", pb.stack_global_call("builtins", "exec", "print(1)"), ("builtins.exec",),
     [("unsafe-code", "critical"), ("pickle-unsafe-call", "critical")]),
    ("builtins-eval", pb.stack_global_call("builtins", "eval", "1+1"), ("builtins.eval",),
     [("unsafe-code", "critical"), ("pickle-unsafe-call", "critical")]),
    ("py2-builtin-eval", pb.global_call_p0("__builtin__", "eval", "1+1"), ("__builtin__.eval",),
     [("unsafe-code", "critical"), ("pickle-unsafe-call", "critical")]),
    ("getattr-import", pb.getattr_chain("os", "system", "true"), ("builtins.getattr", "builtins.__import__"),
     [("unsafe-code", "critical"), ("unsafe-code", "critical"), ("pickle-unsafe-call", "critical"),
      ("pickle-unsafe-call", "critical"), ("pickle-uncalled-reduce", "high")]),
    ("subprocess", pb.stack_global_call("subprocess", "check_output", "true"), ("subprocess.check_output",),
     [("unsafe-code", "critical"), ("pickle-unsafe-call", "critical")]),
    ("runpy", pb.stack_global_call("runpy", "run_path", "/tmp/x.py"), ("runpy.run_path",),
     [("unsafe-code", "critical"), ("pickle-unsafe-call", "critical")]),
    ("pkgutil-resolve-name", pb.resolve_name_call("os:system", "true"), ("pkgutil.resolve_name",),
     [("unsafe-code", "critical"), ("pickle-unsafe-call", "critical"), ("pickle-uncalled-reduce", "high")]),
    ("operator-attrgetter", pb.attrgetter_call("os", "system", "true"),
     ("operator.attrgetter", "importlib.import_module"),
     [("unsafe-code", "critical"), ("pickle-unsafe-call", "critical"), ("unsafe-code", "critical"),
      ("pickle-unsafe-call", "critical"), ("pickle-uncalled-reduce", "high")]),
    ("inst-p0", pb.inst_call("os", "system", "true"), ("os.system",),
     [("unsafe-code", "critical"), ("pickle-unsafe-call", "critical")]),
    ("obj-p1", pb.obj_call("subprocess", "Popen", "true"), ("subprocess.Popen",),
     [("unsafe-code", "critical"), ("pickle-unsafe-call", "critical")]),
    ("memo-stack-global", pb.memo_stack_global("os", "system", "true"), ("os.system",),
     [("unsafe-code", "critical"), ("pickle-unsafe-call", "critical")]),
    ("dynamic-stack-global", pb.dynamic_stack_global(), ("builtins.str", "<dynamic>"),
     [("unsafe-code", "high"), ("pickle-unsafe-call", "high"), ("pickle-dynamic-global", "critical"),
      ("pickle-uncalled-reduce", "high")]),
    ("numpy-builtins", pb.numpy_builtins_eval("1+1"), ("_operator.getitem", "numpy.__builtins__"),
     [("unsafe-code", "critical"), ("unsafe-code", "critical"), ("pickle-unsafe-call", "critical"),
      ("pickle-uncalled-reduce", "high")]),
    ("attribute-chain", pb.attribute_chain_global("mypkg", "helpers.os.system", "true"),
     ("mypkg.helpers.os.system",), [("unsafe-code", "critical"), ("pickle-unsafe-call", "critical")]),
    ("numpy-f2py", pb.stack_global_call("numpy.f2py", "compile", "x"), ("numpy.f2py.compile",),
     [("unsafe-code", "critical"), ("pickle-unsafe-call", "critical")]),
    ("torch-load", pb.stack_global_call("torch", "load", "x.pt"), ("torch.load",),
     [("unsafe-code", "critical"), ("pickle-unsafe-call", "critical")]),
    ("extension-code", pb.extension_code_pickle(), ("<extension 1234>",),
     [("pickle-extension-code", "high"), ("pickle-uncalled-reduce", "high")]),
    ("proto2-stack-global", pb.stack_global_call("os", "system", "true", protocol=2), ("os.system",),
     [("unsafe-code", "critical"), ("pickle-unsafe-call", "critical")]),
    ("proto5-frame", pb.proto5_bytearray_pickle("os", "system", "true"), ("os.system",),
     [("unsafe-code", "critical"), ("pickle-unsafe-call", "critical")]),
    ("build-on-global", pb.build_on_global("collections", "OrderedDict", "fromkeys", "x"),
     ("collections.OrderedDict",), [("pickle-build-on-global", "critical")]),
    ("other-builtin", pb.stack_global_call("builtins", "type", "x"), ("builtins.type",),
     [("unsafe-code", "high"), ("pickle-unsafe-call", "high")]),
    ("unknown-class", pb.stack_global_call("mypkg.types", "Config", "x"), ("mypkg.types.Config",),
     [("unsafe-code", "medium"), ("pickle-unsafe-call", "medium")]),
    ("persistent-id", b"\x80\x02X\x03\x00\x00\x00abcQ.", (), [("pickle-unsafe-persistent-id", "high")]),
    # SETITEM on a list works in CPython; a scanner that stops there would miss what follows.
    ("setitem-on-list", b"\x80\x04]Na" + b"K\x00Ns0" + pb.global_call_p0("os", "system", "true"), ("os.system",),
     [("unsafe-code", "critical"), ("pickle-unsafe-call", "critical")]),
]


@pytest.mark.parametrize("label, data, imports, expected", MALICIOUS, ids=[m[0] for m in MALICIOUS])
def test_malicious_samples_are_flagged(tmp_path, label, data, imports, expected):
    result = scan(write(tmp_path, "tensor00000_000", data))  # extensionless, like Grok's files
    assert result.imports == imports
    assert ids(result) == expected
    assert result.tensors == ()


def test_finding_messages_name_the_global(tmp_path):
    result = scan(write(tmp_path, "x", pb.global_call_p0("__builtin__", "eval", "1")))
    assert result.findings[0].message == (
        "imports __builtin__.eval (the unpickler maps it to builtins.eval) at byte 0: "
        "loading the file can run arbitrary code"
    )
    assert result.findings[0].location == "x"


def test_nested_pickle_is_scanned(tmp_path):
    inner = pb.global_call_p0("os", "system", "true")
    result = scan(write(tmp_path, "n.pkl", pb.nested_pickle(inner)))
    assert result.imports == ("pickle.loads", "os.system")
    assert ids(result) == [
        ("unsafe-code", "critical"), ("pickle-nested", "critical"), ("unsafe-code", "critical"),
        ("pickle-unsafe-call", "critical"), ("pickle-unsafe-call", "critical"),
    ]
    assert result.findings[2].message.endswith("(in a pickle nested at byte 20)")


def test_nested_protocol_2_pickle_in_codecs_text_is_scanned(tmp_path):
    inner = pickle.dumps(OrderedDict(), protocol=2).replace(b"collections\nOrderedDict", b"os\nsystem")
    text = inner.decode("latin-1").encode("utf-8")  # how protocol 2 stores bytes under Python 3
    sample = (b"\x80\x02cpickle\nloads\nc_codecs\nencode\nX" + struct.pack("<I", len(text)) + text
              + b"X\x06\x00\x00\x00latin1\x86R\x85R.")
    result = scan(write(tmp_path, "p2nested", sample))
    assert result.imports == ("pickle.loads", "_codecs.encode", "os.system")
    assert ("pickle-nested", "critical") in ids(result)


def test_file_creating_pickle_does_not_create_the_file(tmp_path):
    target = tmp_path / "created-by-unpickling"
    sample = write(tmp_path, "payload.pkl", pb.file_creating_pickle(str(target)))
    result = scan(sample)
    assert result.imports == ("builtins.open",)
    assert ids(result) == [("unsafe-code", "critical"), ("pickle-unsafe-call", "critical")]
    assert not target.exists()
    # The sample is live: unpickled in a child process (never by openaudit), it creates the file.
    subprocess.run([sys.executable, "-c", f"import pickle; pickle.loads(open({str(sample)!r}, 'rb').read())"],
                   check=True, timeout=60)
    assert target.exists()


def test_malicious_pickles_inside_torch_zips(tmp_path):
    sd, _ = small_state_dict()
    evil = pb.global_call_p0("os", "system", "true")
    # A hostile data.pkl under an odd folder name.
    path = tmp_path / "weights.bin"
    pb.write_torch_zip(path, sd, archive_name="..hidden", data_pkl=evil)
    result = scan(path)
    assert result.imports == ("os.system",)
    assert ("unsafe-code", "critical") in ids(result)
    # A second pickle under a member name torch never reads, with a harmless-looking extension.
    path = tmp_path / "model.pt"
    pb.write_torch_zip(path, sd, extra_records=[("assets/readme.txt", pb.stack_global_call("posix", "system", "x")),
                                                ("data/99", pb.stack_global_call("builtins", "eval", "1"))])
    result = scan(path)
    assert "posix.system" in result.imports and "builtins.eval" in result.imports
    assert [f.id for f in result.findings] == [
        "torch-zip-extra-pickle", "unsafe-code", "pickle-unsafe-call",
        "torch-zip-extra-pickle", "unsafe-code", "pickle-unsafe-call",
    ]
    assert "zip member model/assets/readme.txt" in result.findings[1].message
    assert len(result.tensors) == 6


def test_malicious_pickle_hidden_in_legacy_sys_info(tmp_path):
    sd, _ = small_state_dict()
    path = tmp_path / "legacy.bin"
    pb.write_torch_legacy(path, sd)
    raw = path.read_bytes()
    # Swap the protocol-version pickle (6 bytes) for a payload: torch.load would run it.
    magic = pickle.dumps(pb.TORCH_MAGIC_NUMBER, protocol=2)
    protocol = pickle.dumps(pb.TORCH_PROTOCOL_VERSION, protocol=2)
    assert raw[len(magic) : len(magic) + len(protocol)] == protocol
    path.write_bytes(raw[: len(magic)] + pb.global_call_p0("os", "system", "true") + raw[len(magic) + len(protocol) :])
    result = scan(path)
    assert result.container == "pytorch-legacy"
    assert result.imports[0] == "os.system"
    assert ids(result)[:3] == [("unsafe-code", "critical"), ("pickle-unsafe-call", "critical"),
                               ("torch-legacy-malformed", "high")]


# ---------------------------------------------------------------------------------------------------
# Malformed and hostile structure: findings, never exceptions or hangs


MALFORMED = [
    ("empty", b"", [("pickle-truncated", "high")]),
    ("no-stop", b"\x80\x04K\x01", [("pickle-truncated", "high")]),
    ("invalid-opcode", b"\x80\x04\xff.", [("pickle-malformed", "high")]),
    ("underflow", b"\x80\x04R.", [("pickle-malformed", "high")]),
    ("memo-miss", b"\x80\x04h\x07.", [("pickle-malformed", "high")]),
    ("bad-protocol", b"\x80\x09N.", [("pickle-malformed", "high")]),
    ("huge-binbytes", b"\x80\x04\x8e" + struct.pack("<Q", 2**62) + b"abc", [("pickle-truncated", "high")]),
    ("huge-long4", b"\x80\x02\x8b" + struct.pack("<i", 2**30) + b".", [("pickle-truncated", "high")]),
    ("huge-frame", b"\x80\x04\x95" + struct.pack("<Q", 2**40) + b"N.", [("pickle-truncated", "high")]),
    ("no-mark", b"\x80\x04Nt.", [("pickle-malformed", "high")]),
    ("endless-line", b"c" + b"a" * 70_000, [("pickle-malformed", "high")]),
    ("trailing-garbage", b"\x80\x04N.garbage", [("pickle-trailing-data", "medium")]),
    ("two-pickles", b"\x80\x04N.\x80\x04N.", [("pickle-concatenated", "low")]),
    ("not-a-pickle", b"Hello, world\n", [("pickle-malformed", "high")]),
]


@pytest.mark.parametrize("label, data, expected", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_input_becomes_findings(tmp_path, label, data, expected):
    result = scan(write(tmp_path, label, data))
    assert ids(result) == expected
    assert result.complete == (label in ("trailing-garbage", "two-pickles"))


def test_deadline_stops_a_long_pickle(tmp_path):
    path = write(tmp_path, "slow.pkl", b"\x80\x04" + b"N0" * 200_000 + b"N.")
    result = scan(path, deadline=Deadline(0.0))
    assert ids(result) == [("parse-timeout", "high")]
    assert not result.complete


def test_inline_payload_budget(monkeypatch):
    monkeypatch.setattr(machine, "MAX_INLINE_TOTAL", 1000)
    # 300 memoized 100-byte payloads: the first ten are kept, the rest are skipped like large ones.
    body = b"".join(b"C\x64" + bytes(100) + b"\x94" for _ in range(300))
    ctx = machine.ScanContext(path="many.pkl", deadline=Deadline())
    result = machine.walk_pickle(opcodes.ByteRange.of_bytes(b"\x80\x04(" + body + b"t."), ctx)
    assert result.complete
    assert [blob.data is not None for blob in result.root.items] == [True] * 10 + [False] * 290
    assert [blob.offset for blob in result.root.items[:2]] == [5, 108]


def test_value_budget_stops_a_memory_bomb(tmp_path, monkeypatch):
    monkeypatch.setattr(machine, "MAX_VALUES", 10_000)
    result = scan(write(tmp_path, "bomb.pkl", b"\x80\x04" + b"]\x94" * 6000 + b"."))
    assert ids(result) == [("pickle-too-complex", "high")]


def test_protocol_0_lines_across_window_boundaries(tmp_path, read_counter):
    # 300 GLOBAL lines of varying length: many straddle the 2 KiB read window. Each global is found, at
    # its offset, and the file is read about once (a window per line would read 600 windows).
    lines = [b"c" + b"mod%d\n" % i + b"x" * (i % 37) + b"name%d\n0" % i for i in range(300)]
    data = b"".join(lines) + b"N."
    result = scan(write(tmp_path, "lines.pkl", data))
    assert result.complete
    assert len(result.imports) == 300
    assert result.imports[:2] == ("mod0.name0", "mod1.xname1")
    assert result.imports[-1] == "mod299." + "x" * (299 % 37) + "name299"
    assert read_counter() <= 2 * len(data) + opcodes.READ_CHUNK


def result_imports(result) -> list[str]:
    return list(result.imports)


def test_protocol_0_line_limits(tmp_path):
    limit = opcodes.MAX_LINE_BYTES
    longest = scan(write(tmp_path, "longest.pkl", b"c" + b"m" * limit + b"\nname\n0N."))
    assert result_imports(longest) == ["m" * limit + ".name"]
    too_long = scan(write(tmp_path, "long.pkl", b"c" + b"m" * (limit + 1) + b"\nname\n0N."))
    assert ids(too_long) == [("pickle-malformed", "high")]
    assert too_long.findings[0].message == f"pickle at byte 0: a protocol-0 line is longer than {limit} bytes (at byte 0)"
    assert ids(scan(write(tmp_path, "cut.pkl", b"cos\nsyst"))) == [("pickle-truncated", "high")]


def test_caps_leave_room_for_real_checkpoints():
    # a 10,000-tensor state dict of nn.Parameters (45 values, 46 opcodes each, measured below) fits in one file
    assert machine.MAX_VALUES >= 45 * 10_000
    assert machine.MAX_OPCODES >= 46 * 10_000


def _state_dict_costs(count: int, parameter: bool = False) -> tuple[int, int, int]:
    """(tensors found, values spent, opcodes run) walking a torch.save state dict of ``count`` tensors."""
    names = [f"model.layers.{i // 100}.mlp.experts.{i % 100}.down_proj" for i in range(count)]
    state = OrderedDict((f"{name}.weight", TorchTensor(TorchStorage("F32", 16), (4, 4), parameter=parameter))
                        for name in names)
    # Module.state_dict() adds one _metadata entry per module; here every tensor is a module of its own
    # (a Linear without bias), the costliest layout.
    state._metadata = OrderedDict([("", {"version": 1})] + [(name, {"version": 1}) for name in names])
    data, _ = pb.torch_pickle(state)
    ctx = machine.ScanContext(path="data.pkl", deadline=Deadline())
    result = machine.walk_pickle(opcodes.ByteRange.of_bytes(data), ctx)
    assert result.complete
    found = len(tensor_records.collect_tensors(result.root, "data.pkl", ctx))
    return found, machine.MAX_VALUES - ctx.values_left, machine.MAX_OPCODES - ctx.opcodes_left


def test_a_state_dict_costs_35_values_and_36_opcodes_per_tensor():
    # The arithmetic behind MAX_VALUES: 500,000 values hold 14,000 plain tensors (11,000 as nn.Parameter).
    small, large = _state_dict_costs(1000), _state_dict_costs(2000)
    assert (small[0], large[0]) == (1000, 2000)
    # 35 values and 36 opcodes per tensor, plus the pickler's MARK ... SETITEMS batch per 1,000 items of
    # each of the two dicts.
    assert (large[1] - small[1], large[2] - small[2]) == (35_002, 36_004)
    small, large = _state_dict_costs(1000, parameter=True), _state_dict_costs(2000, parameter=True)
    assert (large[1] - small[1], large[2] - small[2]) == (45_002, 46_004)


def test_value_cap_stops_two_million_empty_lists_quickly(tmp_path):
    # The hostile corpus's "five files past the value cap": each such file used to take about 4 s.
    path = write(tmp_path, "lists.pkl", b"\x80\x04" + b"]" * 2_100_000 + b".")
    started = time.process_time()
    result = scan(path)
    assert time.process_time() - started < 2.0  # about 0.6 s on a shared core
    assert ids(result) == [("pickle-too-complex", "high")]
    assert result.findings[0].message == (
        "the pickle at byte 0 builds more than 500,000 values, more than openaudit follows in one file")
    assert not result.complete


def test_marks_spend_values(tmp_path, monkeypatch):
    # Each MARK starts a new list: a stream of them is a memory bomb without building any other value.
    monkeypatch.setattr(machine, "MAX_VALUES", 10_000)
    assert ids(scan(write(tmp_path, "marks.pkl", b"\x80\x04" + b"(" * 10_000 + b"N."))) == [
        ("pickle-too-complex", "high")]
    assert ids(scan(write(tmp_path, "fewer.pkl", b"\x80\x04" + b"(" * 9_000 + b"N."))) == []


def test_opcode_budget_stops_opcodes_that_build_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(machine, "MAX_OPCODES", 5_000)
    # PROTO repeated builds no value; 4,999 of them, NONE and STOP are 5,001 opcodes.
    past = scan(write(tmp_path, "protos.pkl", b"\x80\x04" * 4_999 + b"N."))
    assert ids(past) == [("pickle-too-complex", "high")]
    assert past.findings[0].message == (
        "the pickle at byte 0 runs more than 5,000 opcodes, more than openaudit follows in one file")
    assert ids(scan(write(tmp_path, "at.pkl", b"\x80\x04" * 4_998 + b"N."))) == []
    # The budget is per file: five pickles of 1,000 opcodes spend it, the sixth stops at once (one finding).
    many = scan(write(tmp_path, "many.pkl", (b"\x80\x04" * 998 + b"N.") * 7))
    assert ids(many) == [("pickle-too-complex", "high"), ("pickle-concatenated", "low")]
    assert many.findings[0].message.startswith("the pickle at byte 9990 runs more than 5,000 opcodes")


def test_a_walk_pauses_the_garbage_collector_and_restores_it():
    import gc

    seen: list[bool] = []
    ctx = machine.ScanContext(path="x.pkl", deadline=Deadline())
    ctx.policy = policy.GlobalPolicy(allow=frozenset(), critical=(), high=())
    real_run = machine._Machine.run

    def spying_run(machine):
        seen.append(gc.isenabled())
        return real_run(machine)

    machine._Machine.run = spying_run
    try:
        assert gc.isenabled()
        machine.walk_pickle(opcodes.ByteRange.of_bytes(b"\x80\x04N."), ctx)
        assert gc.isenabled()
        gc.disable()
        machine.walk_pickle(opcodes.ByteRange.of_bytes(b"\x80\x04N."), ctx)
        assert not gc.isenabled()  # a caller's choice is left alone
    finally:
        gc.enable()
        machine._Machine.run = real_run
    assert seen == [False, False]


def test_large_declared_payload_is_skipped_not_read(tmp_path, read_counter):
    path = tmp_path / "sparse.pkl"
    size = 3 * 1024**3
    header = b"\x80\x04\x8e" + struct.pack("<Q", size)
    with open(path, "wb") as handle:
        handle.write(header)
        handle.seek(size, 1)
        handle.write(b".")
    result = scan(path)
    assert result.complete and result.findings == ()
    assert read_counter() < 8192


# ---------------------------------------------------------------------------------------------------
# Sniffing


def test_sniff_pickle():
    for protocol in range(2, 6):
        assert sniff_pickle(pickle.dumps({"a": 1}, protocol=protocol))
    assert sniff_pickle(pickle.dumps([1, 2, (3, "x")], protocol=0))
    assert sniff_pickle(pickle.dumps({"k": "v"}, protocol=1))
    assert sniff_pickle(pb.global_call_p0("os", "system", "true"))
    assert sniff_pickle(pickle.dumps(list(range(5000)), protocol=0)[:512])  # cut by the head, still valid
    assert not sniff_pickle(b"(This is a README)\n")
    assert not sniff_pickle(b"\x80\x09")
    assert not sniff_pickle(b"")
    assert not sniff_pickle(b'{"json": true}')
    assert not sniff_pickle(b"PK\x03\x04")


def test_sniff_torch_zip(tmp_path):
    sd, _ = small_state_dict()
    path = tmp_path / "m.pt"
    pb.write_torch_zip(path, sd)
    assert sniff_torch_zip(path.read_bytes()[:64])
    assert not sniff_torch_zip(b"PK\x03\x04" + b"\x00" * 60)


# ---------------------------------------------------------------------------------------------------
# Policy and catalogue


@pytest.mark.parametrize(
    "module, name, severity",
    [
        ("numpy.core.multiarray", "_reconstruct", None),
        ("numpy._core.multiarray", "_reconstruct", None),
        ("torch", "BFloat16Storage", None),
        ("__main__", "QuantizedWeight8bit", None),
        ("ml_dtypes", "bfloat16", None),
        ("__builtin__", "set", None),  # Python 2 name of an allowed builtin
        ("os", "system", Severity.CRITICAL),
        ("os.path", "join", Severity.CRITICAL),  # module-prefix inheritance
        ("posix", "system", Severity.CRITICAL),
        ("builtins", "__import__", Severity.CRITICAL),
        ("_operator", "attrgetter", Severity.CRITICAL),
        ("torch.serialization", "load", Severity.CRITICAL),
        ("numpy", "__builtins__", Severity.CRITICAL),  # dunder attribute chain
        ("numpy", "testing.os.system", Severity.CRITICAL),
        ("builtins", "type", Severity.HIGH),
        ("torch.nn.modules.linear", "Linear", Severity.MEDIUM),
        ("mypkg.types", "Config", Severity.MEDIUM),  # `types` as a package part is not the stdlib module
        ("__main__", "Other", Severity.MEDIUM),
    ],
)
def test_global_policy(module, name, severity):
    assert policy.global_policy().severity(module, name) == severity


def test_every_finding_id_used_is_in_the_catalogue():
    import re

    # Every module of the pickle package: the walker, the containers, npy and the Grok-1 leaf naming.
    sources = [path.read_text() for path in sorted(Path(machine.__file__).parent.glob("*.py"))]
    used = set()
    for source in sources:
        used |= set(re.findall(r'(?:add|finding)\(\s*"([a-z0-9-]+)"', source))
    assert used - set(catalogue()) == set()
    assert len(used) > 30


def test_every_opcode_has_a_handler():
    for name, _ in opcodes.OPCODES.values():
        assert name == "STOP" or callable(getattr(machine._Machine, "op_" + name, None)), name


# ---------------------------------------------------------------------------------------------------
# Grok-1


def test_full_grok1_checkpoint(tmp_path, read_counter):
    folder = tmp_path / "ckpt-0"
    pb.write_grok_checkpoint(folder)
    files = sorted(folder.iterdir())
    assert len(files) == 770
    assert sum(path.stat().st_size for path in files) > 318_000_000_000  # logical size
    start = time.monotonic()
    scans = [scan(path, f"ckpt-0/{path.name}") for path in files]
    named, findings = name_grok_leaves(scans)
    elapsed = time.monotonic() - start
    assert findings == ()
    assert all(s.findings == () and s.complete for s in named)
    assert sum(t.elements for s in named for t in s.tensors if t.role == PARAMETER) == 315_684_820_992
    assert sum(t.elements for s in named for t in s.tensors if t.role == SCALE) == 62_390_272
    assert sum(t.nbytes for s in named for t in s.tensors) == 318_239_694_848
    names = [t.name for s in named for t in s.tensors if t.role == PARAMETER]
    assert names == list(leaf_paths(64))
    assert named[0].tensors == (TensorRecord("language_model/in_out_embed/embeddings", "F32", (131072, 6144),
                                             "ckpt-0/tensor00000_000", 3_221_225_472, 151),)
    weight, scales = named[4].tensors
    assert (weight.name, weight.dtype, weight.shape) == ("transformer/decoder_layer_0/moe/linear_v/w", "I8",
                                                         (8, 6144, 32768))
    assert (scales.name, scales.dtype, scales.shape, scales.pairs_with) == (
        "transformer/decoder_layer_0/moe/linear_v/w:scales", "BF16", (8, 1, 32768),
        "transformer/decoder_layer_0/moe/linear_v/w")
    assert named[769].tensors[0].name == "transformer/decoder_layer_9/router/w"
    assert named[2].imports == ("__main__.QuantizedWeight8bit", "numpy.core.multiarray._reconstruct",
                                "numpy.ndarray", "numpy.dtype", "ml_dtypes.bfloat16")
    # No data was read: a few KiB of opcodes per file, out of 318 GB.
    assert read_counter() < 770 * 8192
    assert elapsed < 30


def small_grok(tmp_path, **kwargs):
    dims = pb.GrokDims(num_layers=2, vocab_size=32, emb_size=16, ffn_size=24, num_experts=8, num_q_heads=4,
                       num_kv_heads=2, key_size=4)
    folder = tmp_path / "ckpt-0"
    layouts = pb.write_grok_checkpoint(folder, dims, real_data=True, **kwargs)
    return dims, folder, layouts


def test_small_grok_checkpoint_offsets_point_at_the_data(tmp_path):
    dims, folder, layouts = small_grok(tmp_path)
    specs = dict(pb.grok_leaf_specs(dims))
    scans = [scan(path, f"ckpt-0/{path.name}") for path in sorted(folder.iterdir())]
    named, findings = name_grok_leaves(scans)
    assert findings == ()
    assert len(named) == 26
    for index, (leaf, _) in enumerate(pb.grok_leaf_specs(dims)):
        spec = pb.with_random_data(specs[leaf], index)
        file_scan = named[index]
        path = folder / f"tensor{index:05d}_000"
        if isinstance(spec, QuantizedSpec):
            weight, scales = file_scan.tensors
            assert (weight.name, scales.name) == (leaf, leaf + ":scales")
            assert weight.offset == layouts[path.name].payloads[""][0]
            assert read_array(path, weight, np.int8).tobytes() == spec.weight.data
            assert read_array(path, scales, ml_dtypes.bfloat16).tobytes() == spec.scales.data
        else:
            (array,) = file_scan.tensors
            assert array.name == leaf
            assert read_array(path, array, np.float32).tobytes() == spec.data


def test_grok_missing_and_extra_files(tmp_path):
    dims, folder, _ = small_grok(tmp_path, skip=[5, 7])
    scans = [scan(path, f"ckpt-0/{path.name}") for path in sorted(folder.iterdir())]
    named, findings = name_grok_leaves(scans)
    assert [(f.id, f.message) for f in findings] == [
        ("grok-missing-leaf", "2 leaf files are missing: tensor00005_000, tensor00007_000"),
    ]
    assert named[5].tensors[0].name == "transformer/decoder_layer_0/multi_head_attention/linear/w"  # file 6

    # 27 leaves fit no layout (2 + 12 × layers).
    extra = folder / "tensor00026_000"
    pb.write_pickle(extra, ArraySpec("f4", (16,)))
    scans = [scan(path, f"ckpt-0/{path.name}") for path in sorted(folder.iterdir())]
    _, findings = name_grok_leaves(scans)
    assert [f.id for f in findings] == ["grok-missing-leaf", "grok-leaf-count"]


def test_grok_kind_mismatch_and_shards(tmp_path):
    dims, folder, _ = small_grok(tmp_path)
    # Swap an int8 leaf and a norm: both files now hold the wrong kind for their index.
    a, b = folder / "tensor00002_000", folder / "tensor00009_000"
    a_bytes, b_bytes = a.read_bytes(), b.read_bytes()
    a.write_bytes(b_bytes)
    b.write_bytes(a_bytes)
    pb.write_grok_checkpoint(folder, dims, shard=1)
    scans = [scan(path, f"ckpt-0/{path.name}") for path in sorted(folder.iterdir())]
    named, findings = name_grok_leaves(scans)
    assert [(f.id, f.location) for f in findings] == [
        ("grok-multiple-shards", "ckpt-0"),
        ("grok-leaf-kind-mismatch", "ckpt-0/tensor00002_000"),
        ("grok-leaf-kind-mismatch", "ckpt-0/tensor00009_000"),
    ]
    assert findings[1].message == (
        "ckpt-0/tensor00002_000 is leaf transformer/decoder_layer_0/moe/linear/w: expected one "
        "QuantizedWeight8bit (int8 weight and scales), found parameter F32[16]"
    )
    shard_one = [s for s in named if s.path.endswith("_001")]
    assert shard_one[0].tensors[0].name == "language_model/in_out_embed/embeddings@001"


def test_grok_malicious_leaf_is_flagged_and_mismatched(tmp_path):
    dims, folder, _ = small_grok(tmp_path)
    (folder / "tensor00003_000").write_bytes(pb.stack_global_call("posix", "system", "true"))
    scans = [scan(path, f"ckpt-0/{path.name}") for path in sorted(folder.iterdir())]
    assert ids(scans[3]) == [("unsafe-code", "critical"), ("pickle-unsafe-call", "critical")]
    _, findings = name_grok_leaves(scans)
    assert [(f.id, f.location) for f in findings] == [("grok-leaf-kind-mismatch", "ckpt-0/tensor00003_000")]


def test_global_names_cannot_drive_a_terminal(tmp_path):
    result = scan(write(tmp_path, "esc", pb.global_call_p0("evil\x1b[2J", "x\x07", "a")))
    assert result.imports == ("evil\\x1b[2J.x\\x07",)
    assert "\x1b" not in result.findings[0].message and "\x07" not in result.findings[1].message


def test_mutated_files_never_crash_the_scanner(tmp_path):
    import random

    rng = random.Random(7)
    sd = pb.state_dict({"w": TorchTensor(TorchStorage("F32", 6, bytes(24)), (2, 3))})
    pb.write_torch_zip(tmp_path / "seed.pt", sd)
    pb.write_torch_legacy(tmp_path / "seed.bin", sd)
    seeds = [
        pickle.dumps({"a": np.arange(10, dtype=np.float32), "b": [1, 2.5, "x", (3, 4)]}, protocol=4),
        pickle.dumps({"a": np.arange(10, dtype=np.float32)}, protocol=0),
        (tmp_path / "seed.pt").read_bytes(),
        (tmp_path / "seed.bin").read_bytes(),
        pb.nested_pickle(pb.global_call_p0("os", "system", "x")),
    ]
    for index in range(400):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            if not data:
                break
            position = rng.randrange(len(data))
            if rng.random() < 0.6:
                data[position] = rng.randrange(256)
            else:
                del data[position : position + rng.randint(1, 8)]
        result = scan(write(tmp_path, "mutant", bytes(data)))
        assert not any("scanner stopped" in f.message for f in result.findings), (index, result.findings)
