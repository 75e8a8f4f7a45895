""".npy files and .npz members: object arrays are pickles and are scanned; numeric arrays are told apart by
their header alone. Nothing here unpickles a scanned file (the fixture below refuses it) and nothing is
loaded with numpy.load; numpy only writes the fixtures, as numpy.save does."""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from openaudit.inspect.pickle import npy
from openaudit.inspect.pickle.npy import ARRAY, PICKLE, UNKNOWN, parse_header, scan_npy_file
from openaudit.inspect.pickle.opcodes import READ_CHUNK
from openaudit.inspect.pickle.scan import scan_pickle_file
from tests.builders import pickle_builder as pb

OS_SYSTEM = pb.stack_global_call("os", "system", "true")


@pytest.fixture(autouse=True)
def no_unpickling(monkeypatch):
    """Any unpickling while a test scans is a failure (numpy.save's pickle.dump still works)."""
    import _pickle

    def refuse(*args, **kwargs):
        raise AssertionError("the scanner must never unpickle")

    for module in (pickle, _pickle):
        for name in ("load", "loads", "Unpickler"):
            monkeypatch.setattr(module, name, refuse)


def saved(array: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    """What numpy.save writes (object arrays pickled with protocol 3, as numpy does)."""
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, version=version, allow_pickle=True)
    return buffer.getvalue()


def npy_bytes(header: str | bytes, payload: bytes = b"", version: tuple[int, int] = (1, 0)) -> bytes:
    """A hand-made .npy: any header text, padded as numpy pads it (to 64 bytes with a final newline)."""
    raw = header.encode("latin-1") if isinstance(header, str) else header
    length_format = "<H" if version == (1, 0) else "<I"
    preamble = 8 + struct.calcsize(length_format)
    raw += b" " * (-(preamble + len(raw) + 1) % 64) + b"\n"
    return b"\x93NUMPY" + bytes(version) + struct.pack(length_format, len(raw)) + raw + payload


def object_header(descr: str = "'|O'") -> str:
    return "{'descr': " + descr + ", 'fortran_order': False, 'shape': (1,), }"


def scan_file(tmp_path: Path, data: bytes, name: str = "array.npy"):
    path = tmp_path / name
    path.write_bytes(data)
    return scan_npy_file(path, name, path.stat().st_size)


def ids(scan) -> list[str]:
    return [item.id for item in scan.findings]


# --- headers that numpy writes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("array", "descr", "shape", "fortran"),
    [
        (np.zeros((3, 4), np.float32), "<f4", (3, 4), False),
        (np.zeros((), bool), "|b1", (), False),
        (np.array(["ab"]), "<U2", (1,), False),
        (np.zeros(2, "datetime64[ns]"), "<M8[ns]", (2,), False),
        (np.zeros(2, [("a", "<f4"), ("b", "<i4", (2,))]), [("a", "<f4"), ("b", "<i4", (2,))], (2,), False),
        (np.asfortranarray(np.zeros((2, 3))), "<f8", (2, 3), True),
    ],
)
def test_numpy_headers_of_numeric_arrays(array, descr, shape, fortran):
    data = saved(array)
    header = parse_header(data)
    assert (header.version, header.payload, header.descr, header.shape, header.fortran_order) == (
        (1, 0), ARRAY, descr, shape, fortran)
    assert header.data_offset == len(data) - array.nbytes == 128
    assert header.problem is None


def test_numpy_headers_of_versions_2_and_3():
    two = parse_header(saved(np.zeros(3, np.int16), version=(2, 0)))
    assert (two.version, two.data_offset, two.descr, two.payload) == ((2, 0), 128, "<i2", ARRAY)
    three = parse_header(saved(np.zeros(3, [("ä", "<f4")]), version=(3, 0)))  # UTF-8 field names
    assert (three.version, three.descr, three.payload) == ((3, 0), [("ä", "<f4")], ARRAY)


def test_numpy_headers_of_object_arrays():
    assert parse_header(saved(np.array([1, "a", None], dtype=object))).payload == PICKLE
    # One object field is enough: numpy pickles the whole array.
    structured = parse_header(saved(np.zeros(2, [("a", "<f4"), ("b", object)])))
    assert (structured.payload, structured.descr) == (PICKLE, [("a", "<f4"), ("b", "|O")])


@pytest.mark.parametrize(
    ("descr", "payload"),
    [
        ("'O'", PICKLE), ("'<O'", PICKLE), ("'|O8'", PICKLE), ("'object'", PICKLE),
        ("'\\x4f'", PICKLE),  # escapes are decoded as Python would: this is 'O'
        ("u'|O'", PICKLE),  # Python 2 prefixes
        ("[('a', ('|O', (2,)))]", PICKLE),  # a sub-array of objects inside a structured dtype
        ("('<f4', (2, 2))", ARRAY), ("'f'", ARRAY), ("'<V2'", ARRAY), ("'|S0'", ARRAY),
        ("'i4,O'", UNKNOWN), ("'float32'", UNKNOWN), ("42", UNKNOWN), ("[]", UNKNOWN), ("[('a',)]", UNKNOWN),
    ],
)
def test_dtypes_with_and_without_objects(descr, payload):
    assert parse_header(npy_bytes(object_header(descr))).payload == payload


def test_python_2_headers_with_long_integers():
    header = parse_header(npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (3L, 4L), }"))
    assert (header.payload, header.shape) == (ARRAY, (3, 4))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{'descr': '|' 'O', 'fortran_order': False, 'shape': (1,)}", "expected '}' at character 14"),
        ("{'descr': '<f4', 'descr': '|O', 'fortran_order': False, 'shape': (1,)}", "the key 'descr' appears twice"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} # '|O'", "unexpected text at character 56"),
        ("{'descr': chr(79), 'fortran_order': False, 'shape': (1,)}", "unexpected text at character 10"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (0x10,)}", "unexpected text at character 51"),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}", "unexpected text at character 51"),
        ("{'descr': '\\117', 'fortran_order': False, 'shape': (1,)}", "the escape \\1 in a string"),
        ("[" * 40 + "]" * 40, "literals nest more than 32 levels deep"),
    ],
)
def test_headers_that_are_not_plain_literals_are_unknown(text, problem):
    # What Python's literal_eval may read differently (concatenation, a repeated key of which the last wins,
    # octal escapes) or not at all: the data is then scanned as a pickle.
    header = parse_header(npy_bytes(text))
    assert header.payload == UNKNOWN
    assert header.problem == f"the header is not a plain dict literal: {problem}"


def test_header_keys_and_fields_that_numpy_refuses_are_problems():
    header = parse_header(npy_bytes("{'descr': '<f4', 'fortran_order': 1, 'shape': [2], 'x': 0}"))
    assert header.payload == ARRAY
    assert header.problem == ("the header has the keys ['descr', 'fortran_order', 'shape', 'x'], not descr, "
                              "fortran_order and shape; fortran_order is not a bool; shape is not a tuple of integers")
    assert parse_header(npy_bytes("{'shape': (1,)}")).problem == "the header has no 'descr' key"


def test_preambles_numpy_refuses():
    with pytest.raises(Exception) as caught:
        parse_header(b"\x93NUMPY\x04\x00\x10\x00" + b" " * 16)
    assert str(caught.value) == "unknown .npy format version 4.0"
    with pytest.raises(Exception) as caught:
        parse_header(npy_bytes(object_header())[:50])
    assert str(caught.value) == "the file ends inside the 118-byte .npy header"


# --- scanning files -----------------------------------------------------------------------------------


def test_object_array_with_a_malicious_pickle(tmp_path):
    data = npy_bytes(object_header(), OS_SYSTEM)
    scan = scan_file(tmp_path, data, "embeddings.npy")
    assert (scan.format, scan.container, scan.complete, scan.tensors) == ("pickle", "npy", True, ())
    assert ids(scan) == ["npy-object-array", "unsafe-code", "pickle-unsafe-call"]
    assert scan.findings[0].message == (
        "the array (dtype '|O', shape [1]) holds Python objects: its data, from byte 128, is a pickle that "
        "numpy.load(allow_pickle=True) runs; it was scanned as one")
    assert scan.findings[1].message.startswith("imports os.system at byte 142:")
    assert scan.imports == ("os.system",)


def test_object_array_written_by_numpy_imports_only_numpy(tmp_path):
    scan = scan_file(tmp_path, saved(np.array([1, "a", None], dtype=object)))
    assert ids(scan) == ["npy-object-array"]
    multiarray = np.ndarray.__reduce__(np.zeros(1))[0].__module__  # numpy._core.multiarray on numpy 2
    assert scan.imports == (f"{multiarray}._reconstruct", "numpy.ndarray", "numpy.dtype")
    assert scan.complete


def test_unreadable_header_scans_the_data_as_a_pickle(tmp_path):
    scan = scan_file(tmp_path, npy_bytes(object_header("'|' 'O'"), OS_SYSTEM))
    assert ids(scan) == ["npy-malformed", "unsafe-code", "pickle-unsafe-call"]
    assert scan.findings[0].message == (
        "the header is not a plain dict literal: expected '}' at character 14; the data from byte 128 was scanned "
        "as a pickle, in case a reader that accepts the header unpickles it")


def test_header_longer_than_openaudit_reads(tmp_path):
    # Version 2.0 allows a 4 GiB header; past MAX_HEADER_BYTES it is not read and the data is scanned.
    length = npy.MAX_HEADER_BYTES + 64
    path = tmp_path / "long.npy"
    with open(path, "wb") as handle:
        handle.write(b"\x93NUMPY\x02\x00" + struct.pack("<I", length) + b"{")
        handle.seek(12 + length)
        handle.write(OS_SYSTEM)
    scan = scan_npy_file(path, "long.npy", path.stat().st_size)
    assert ids(scan) == ["npy-malformed", "unsafe-code", "pickle-unsafe-call"]
    assert scan.findings[0].message.startswith(
        "the header is 65,599 bytes long; openaudit reads at most 65,535; the data from byte 65611 was scanned")


def test_numeric_arrays_are_not_weights_and_only_their_header_is_read(tmp_path, monkeypatch):
    path = tmp_path / "embeddings.npy"
    path.write_bytes(saved(np.ones((512, 512), np.float32)))  # 1 MiB of data
    counts: list[int] = []
    real_open = npy.open_regular

    class Counting:
        def __init__(self, handle):
            self._handle = handle

        def read(self, size=-1):
            data = self._handle.read(size)
            counts.append(len(data))
            return data

        def __getattr__(self, name):
            return getattr(self._handle, name)

    @contextmanager
    def counting_open(location):
        with real_open(location) as handle:
            yield Counting(handle)

    monkeypatch.setattr(npy, "open_regular", counting_open)
    assert scan_npy_file(path, "embeddings.npy", path.stat().st_size) is None
    assert sum(counts) == READ_CHUNK  # one window: the 128-byte header and a little more


@pytest.mark.parametrize("data", [b"\x93NUMPY\x04\x00" + bytes(100), npy_bytes(object_header(), OS_SYSTEM)[:60],
                                  b"\x93NUM"])
def test_files_numpy_refuses_are_not_scanned(tmp_path, data):
    assert scan_file(tmp_path, data) is None


def test_object_header_without_data(tmp_path):
    scan = scan_file(tmp_path, npy_bytes(object_header()))
    assert ids(scan) == ["npy-object-array"]


# --- .npz members -------------------------------------------------------------------------------------


def write_npz(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_npz_member_holding_an_object_array(tmp_path, compression):
    path = write_npz(tmp_path / "weights.npz", {"w.npy": saved(np.zeros(4, np.float32)),
                                               "arr_0.npy": npy_bytes(object_header(), OS_SYSTEM)}, compression)
    scan = scan_pickle_file(path, "weights.npz", path.stat().st_size)
    assert (scan.format, scan.container) == ("pickle", "zip")
    assert ids(scan) == ["npy-object-array", "unsafe-code", "pickle-unsafe-call"]
    assert all(item.message.endswith("(zip member arr_0.npy)") for item in scan.findings)
    assert scan.imports == ("os.system",)


def test_npz_written_by_numpy_with_numeric_arrays_gives_nothing(tmp_path):
    # savez_compressed of zeros compresses about 1000:1; the members are not inflated past their headers,
    # so nothing looks like a zip bomb.
    path = tmp_path / "weights.npz"
    np.savez_compressed(path, embed=np.zeros((1024, 1024), np.float32), bias=np.arange(8))
    scan = scan_pickle_file(path, "weights.npz", path.stat().st_size)
    assert (scan.findings, scan.imports, scan.complete) == ((), (), True)


def test_npz_written_by_numpy_with_an_object_array(tmp_path):
    path = tmp_path / "mixed.npz"
    np.savez(path, names=np.array(["a", None], dtype=object), values=np.ones(3))
    scan = scan_pickle_file(path, "mixed.npz", path.stat().st_size)
    assert ids(scan) == ["npy-object-array"]
    assert scan.findings[0].message.endswith("(zip member names.npy)")


# --- in the audit -------------------------------------------------------------------------------------


def test_audit_scans_object_npy_files_by_content_and_leaves_numeric_ones_out(tmp_path):
    from openaudit.inspect.weights import inspect_weights
    from openaudit.source.open import open_source

    (tmp_path / "embeddings.npy").write_bytes(saved(np.ones((4, 4), np.float32)))
    (tmp_path / "notes.bin").write_bytes(npy_bytes(object_header(), OS_SYSTEM))  # named like a pickle
    weights = inspect_weights(open_source(str(tmp_path)))
    assert [(scan.path, scan.format, scan.container) for scan in weights.scans] == [("notes.bin", "pickle", "npy")]
    assert [item.id for item in weights.findings] == ["npy-object-array", "unsafe-code", "pickle-unsafe-call"]
