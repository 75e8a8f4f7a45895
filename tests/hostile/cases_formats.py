"""Cases: empty and truncated files, safetensors headers and offsets, GGUF headers and counts."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from tests.builders import gguf_builder as gb
from tests.builders import pickle_builder as pb
from tests.hostile.blocks import (
    GOOD_HEADER, U64_MAX, gguf_file, raw_kv, small_state_dict, st_bytes, torch_zip_bytes, valid_gguf_parts,
    valid_safetensors,
)
from tests.hostile.registry import Build, Workspace, add_case, in_folder, single_file


def add_empty_and_truncated() -> None:
    cat = "empty-truncated"
    add_case(cat, "safetensors-empty-in-folder", in_folder("model.safetensors", b""), "empty-weights-file")
    add_case(cat, "safetensors-empty-single-file", single_file("model.safetensors", b""), "empty-weights-file")
    add_case(cat, "gguf-empty", in_folder("model.gguf", b""), "empty-weights-file")
    add_case(cat, "pytorch-bin-empty", in_folder("pytorch_model.bin", b""), "empty-weights-file")
    add_case(cat, "pickle-empty", single_file("model.pkl", b""), "empty-weights-file")
    add_case(cat, "index-empty", in_folder("model.safetensors.index.json", b""), "invalid-json")
    add_case(cat, "card-empty", in_folder("README.md", b""))
    add_case(cat, "folder-empty", lambda ws: ws.dir)

    full = valid_safetensors()
    header_end = 8 + struct.unpack("<Q", full[:8])[0]
    for cut, ids in [(1, ("safetensors-too-small",)), (7, ("safetensors-too-small",)),
                     (8, ("safetensors-header-out-of-bounds",)),
                     (header_end // 2, ("safetensors-header-out-of-bounds",)),
                     (header_end - 1, ("safetensors-header-out-of-bounds",)),
                     (header_end, ("safetensors-truncated-data",)),
                     (header_end + 30, ("safetensors-truncated-data",)),
                     (len(full) - 1, ("safetensors-truncated-data",))]:
        add_case(cat, f"safetensors-cut-at-{cut}", in_folder("model.safetensors", full[:cut]), *ids)

    gguf, data_start = valid_gguf_parts()
    for cut, ids in [(2, ("truncated-file",)), (4, ("truncated-file",)), (12, ("truncated-file",)),
                     (24, ("gguf-length-exceeds-file",)), (60, ("gguf-length-exceeds-file",)),
                     (data_start - 40, ("truncated-file",)),
                     (data_start, ("gguf-tensor-data-beyond-file",)),
                     (data_start + 100, ("gguf-tensor-data-beyond-file",))]:
        add_case(cat, f"gguf-cut-at-{cut}", in_folder("model.gguf", gguf[:cut]), *ids)

    array = pb.pickle_bytes(pb.ArraySpec("f4", (4, 4), bytes(64)))
    for cut in (1, 2, 20, len(array) // 2, len(array) - 1):
        add_case(cat, f"pickle-cut-at-{cut}", in_folder("model.pkl", array[:cut]), "pickle-truncated")

    def torch_zip_cut(fraction: float) -> Build:
        def build(ws: Workspace) -> Path:
            path = torch_zip_bytes(ws)
            data = path.read_bytes()
            path.write_bytes(data[: int(len(data) * fraction)])
            return ws.dir

        return build

    for percent in (10, 50, 99):
        add_case(cat, f"torch-zip-cut-at-{percent}pct", torch_zip_cut(percent / 100), "torch-zip-malformed")
    add_case(cat, "torch-zip-only-magic", in_folder("pytorch_model.bin", b"PK\x03\x04"), "torch-zip-malformed")

    def legacy_cut(keep: int) -> Build:
        def build(ws: Workspace) -> Path:
            path = ws.dir / "pytorch_model.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            pb.write_torch_legacy(path, small_state_dict())
            data = path.read_bytes()
            path.write_bytes(data[:keep])
            return ws.dir

        return build

    add_case(cat, "torch-legacy-cut-in-storage", legacy_cut(-8), "torch-legacy-malformed")
    add_case(cat, "torch-legacy-cut-after-magic", legacy_cut(12), "pickle-truncated")


def add_safetensors() -> None:
    cat = "safetensors"

    def st(slug: str, header, *ids: str, data_len: int = 0, declared: int | None = None, size: int | None = None,
           name: str = "model.safetensors") -> None:
        add_case(cat, slug, in_folder(name, st_bytes(header, data_len, declared=declared), size=size), *ids)

    entry = GOOD_HEADER["w"]
    # Header lengths.
    st("header-length-u64-max", "{}", "safetensors-header-too-large", declared=U64_MAX)
    st("header-length-2pow63", "{}", "safetensors-header-too-large", declared=2**63)
    st("header-length-limit-plus-1", "{}", "safetensors-header-too-large", declared=100_000_001)
    st("header-length-limit-short-file", "{}", "safetensors-header-out-of-bounds", declared=100_000_000)
    st("header-length-limit-sparse-nul", b"", "safetensors-invalid-json", declared=100_000_000,
       size=8 + 100_000_000)
    st("header-length-past-file-by-1", json.dumps(GOOD_HEADER), "safetensors-header-out-of-bounds",
       declared=len(json.dumps(GOOD_HEADER)) + 1)
    st("header-length-zero", b"", "safetensors-invalid-json")
    # Encoding and JSON.
    st("header-not-utf8", b'{"w\xff\xfe":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
       "safetensors-header-not-utf8", data_len=4)
    st("header-latin1-name", '{"caf\u00e9":1}'.encode("latin-1"), "safetensors-header-not-utf8")
    st("header-deeply-nested-arrays", b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
       "safetensors-header-too-deep")
    st("header-deeply-nested-objects", b'{"a":' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}",
       "safetensors-header-too-deep")
    st("header-is-array", b"[]", "safetensors-header-not-object")
    st("header-is-null", b"null", "safetensors-header-not-object")
    st("header-is-string", b'"weights"', "safetensors-header-not-object")
    st("header-is-number", b"12345678", "safetensors-header-not-object")
    st("header-nan", b'{"__metadata__":{"a":NaN}}', "safetensors-nonstandard-json")
    st("header-infinity-literal", b'{"w":{"dtype":"F32","shape":[1e999],"data_offsets":[0,4]}}',
       "safetensors-nonstandard-json", data_len=4)
    st("header-lone-surrogate", b'{"w\\ud800":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
       "safetensors-nonstandard-json", data_len=4)
    st("header-leading-whitespace", b"  " + json.dumps(GOOD_HEADER).encode(), "safetensors-header-leading-whitespace",
       data_len=16)
    st("header-nul-padding", json.dumps(GOOD_HEADER).encode() + b"\0" * 6, "safetensors-invalid-json", data_len=16)
    st("header-tab-padding", json.dumps(GOOD_HEADER).encode() + b"\t\n  ", "safetensors-nonspace-padding",
       data_len=16)
    st("header-truncated-json", b'{"w":{"dtype":"F32"', "safetensors-invalid-json")
    st("header-too-complex", b'{"x":"' + b"," * 4_000_100 + b'"}', "safetensors-header-too-complex")
    # Entries.
    st("dtype-unknown-F128", {"w": {**entry, "dtype": "F128"}}, "safetensors-unknown-dtype", data_len=16)
    st("dtype-lowercase-float32", {"w": {**entry, "dtype": "float32"}}, "safetensors-unknown-dtype", data_len=16)
    st("dtype-empty-string", {"w": {**entry, "dtype": ""}}, "safetensors-unknown-dtype", data_len=16)
    st("dtype-with-escape", {"w": {**entry, "dtype": "F32\x1b[2J"}}, "safetensors-unknown-dtype", data_len=16)
    st("dtype-not-string", {"w": {**entry, "dtype": 32}}, "safetensors-invalid-entry", data_len=16)
    st("entry-missing-offsets", {"w": {"dtype": "F32", "shape": [2, 2]}}, "safetensors-invalid-entry", data_len=16)
    st("entry-is-list", {"w": ["F32", [2, 2], [0, 16]]}, "safetensors-invalid-entry", data_len=16)
    st("entry-is-string", {"w": "F32"}, "safetensors-invalid-entry")
    st("entry-unknown-field", {"w": {**entry, "extra": "x"}}, "safetensors-unknown-field", data_len=16)
    st("entry-offsets-three-values", {"w": {**entry, "data_offsets": [0, 8, 16]}}, "safetensors-invalid-entry",
       data_len=16)
    st("shape-not-list", {"w": {**entry, "shape": 4}}, "safetensors-invalid-entry", data_len=16)
    st("shape-negative", b'{"w":{"dtype":"F32","shape":[-2,-2],"data_offsets":[0,16]}}',
       "safetensors-negative-integer", data_len=16)
    st("shape-minus-zero", b'{"w":{"dtype":"F32","shape":[-0,4],"data_offsets":[0,0]}}',
       "safetensors-negative-integer")
    st("shape-float", b'{"w":{"dtype":"F32","shape":[2.0,2],"data_offsets":[0,16]}}', "safetensors-non-integer",
       data_len=16)
    st("shape-string", {"w": {**entry, "shape": ["2", "2"]}}, "safetensors-non-integer", data_len=16)
    st("shape-bool", {"w": {**entry, "shape": [True, 4]}}, "safetensors-non-integer", data_len=16)
    st("shape-2pow64", {"w": {**entry, "shape": [2**64]}}, "safetensors-integer-too-large", data_len=16)
    st("shape-5000-digits", b'{"w":{"dtype":"F32","shape":[' + b"9" * 5000 + b'],"data_offsets":[0,16]}}',
       "safetensors-integer-too-large", data_len=16)
    st("shape-product-overflows-u64", {"w": {**entry, "shape": [2**32, 2**32, 2], "data_offsets": [0, 0]}},
       "safetensors-shape-overflow")
    st("shape-bits-overflow-u64", {"w": {**entry, "dtype": "F64", "shape": [2**61], "data_offsets": [0, 0]}},
       "safetensors-shape-overflow")
    st("shape-u64-max-dims", {"w": {**entry, "shape": [U64_MAX, U64_MAX], "data_offsets": [0, 0]}},
       "safetensors-shape-overflow")
    st("shape-zero-times-huge", {"w": {**entry, "shape": [0, U64_MAX], "data_offsets": [0, 0]}})
    st("partial-byte-F4", {"w": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}, "safetensors-partial-byte",
       data_len=2)
    st("size-mismatch", {"w": {**entry, "data_offsets": [0, 12]}}, "safetensors-size-mismatch", data_len=12)
    # Offsets.
    two = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
           "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}
    st("offsets-overlap", two, "safetensors-offset-overlap", data_len=12)
    st("offsets-same-range", {"a": two["a"], "b": {**two["a"]}}, "safetensors-offset-overlap", data_len=8)
    st("offsets-gap", {"a": two["a"], "b": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]}},
       "safetensors-offset-gap", data_len=24)
    st("offsets-reversed", {"w": {**entry, "data_offsets": [16, 0]}}, "safetensors-reversed-offsets", data_len=16)
    st("offsets-past-end", {"w": {**entry, "shape": [1024], "data_offsets": [0, 4096]}},
       "safetensors-truncated-data", data_len=16)
    st("offsets-u64-max", {"w": {**entry, "data_offsets": [0, U64_MAX]}}, "safetensors-size-mismatch", data_len=16)
    st("offsets-begin-u64-max", {"w": {**entry, "data_offsets": [U64_MAX, U64_MAX]}}, "safetensors-offset-gap")
    st("offsets-negative", b'{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[-16,0]}}',
       "safetensors-negative-integer")
    st("offsets-2pow64", {"w": {**entry, "data_offsets": [0, 2**64]}}, "safetensors-integer-too-large", data_len=16)
    st("trailing-data", GOOD_HEADER, "safetensors-trailing-data", data_len=4096)
    st("huge-declared-tensor-sparse", {"w": {"dtype": "BF16", "shape": [131072, 6144], "data_offsets":
                                             [0, 131072 * 6144 * 2]}},
       size=8 + len(json.dumps({"w": {"dtype": "BF16", "shape": [131072, 6144],
                                      "data_offsets": [0, 131072 * 6144 * 2]}}, separators=(",", ":")))
       + 131072 * 6144 * 2)
    # Duplicates.
    st("duplicate-tensor-identical", b'{"w":' + json.dumps(entry).encode() + b',"w":' + json.dumps(entry).encode()
       + b"}", "safetensors-duplicate-key", data_len=16)
    st("duplicate-tensor-conflicting", b'{"w":' + json.dumps(entry).encode()
       + b',"w":{"dtype":"I32","shape":[4],"data_offsets":[0,16]}}', "safetensors-conflicting-duplicate-key",
       data_len=16)
    st("duplicate-metadata", b'{"__metadata__":{"a":"1"},"__metadata__":{"a":"2"},"w":'
       + json.dumps(entry).encode() + b"}", "safetensors-duplicate-field", data_len=16)
    st("duplicate-field-in-entry", b'{"w":{"dtype":"F32","dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}',
       "safetensors-duplicate-field", data_len=16)
    st("duplicate-metadata-key", b'{"__metadata__":{"format":"pt","format":"tf"},"w":' + json.dumps(entry).encode()
       + b"}", "safetensors-conflicting-duplicate-key", data_len=16)
    # Metadata.
    st("metadata-not-map", {"__metadata__": ["a"], **GOOD_HEADER}, "safetensors-invalid-metadata", data_len=16)
    st("metadata-int-value", {"__metadata__": {"n": 1}, **GOOD_HEADER}, "safetensors-invalid-metadata", data_len=16)
    st("metadata-null", {"__metadata__": None, **GOOD_HEADER}, "safetensors-null-metadata", data_len=16)
    st("metadata-256kb-string", {"__metadata__": {"note": "x" * (1 << 18)}, **GOOD_HEADER}, data_len=16)
    # Alignment and scale.
    st("misaligned-unpadded-header", b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
       "safetensors-misaligned-tensor", data_len=4)
    st("misaligned-after-int8", {"a": {"dtype": "I8", "shape": [1], "data_offsets": [0, 1]},
                                 "b": {"dtype": "F32", "shape": [1], "data_offsets": [1, 5]}},
       "safetensors-misaligned-tensor", data_len=5)
    many = {f"t{i}": {"dtype": "F32", "shape": [1], "data_offsets": [4 * i + 1, 4 * i + 5]} for i in range(2000)}
    many["pad"] = {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}
    st("misaligned-2000-tensors", many, "safetensors-misaligned-tensor", data_len=8001)
    scalars = {f"layer.{i}.scale": {"dtype": "F32", "shape": [], "data_offsets": [4 * i, 4 * i + 4]}
               for i in range(10_000)}
    st("ten-thousand-tensors", scalars, data_len=40_000)
    st("tensor-name-64kb", {"w" * (1 << 16): entry}, data_len=16)
    st("tensor-name-ansi-escapes", {"\x1b[2J\x1b]0;pwned\x07w": entry}, data_len=16)
    st("tensor-name-bidi", {"model.\u202eweight": entry}, data_len=16)
    # Sniffed by content whatever the name.
    st("offsets-gap-named-dat", {"w": {**entry, "data_offsets": [8, 24]}}, "safetensors-offset-gap", data_len=24,
       name="weights.dat")
    st("bad-header-extensionless", {"w": {**entry, "data_offsets": [8, 24]}}, "safetensors-offset-gap",
       data_len=24, name="model")
    add_case(cat, "single-file-u64-max-header", single_file("model.safetensors", st_bytes("{}", declared=U64_MAX)),
             "safetensors-header-too-large")


def add_gguf() -> None:
    cat = "gguf"

    def gg(slug: str, data: bytes, *ids: str, size: int | None = None, name: str = "model.gguf") -> None:
        add_case(cat, slug, in_folder(name, data, size=size), *ids)

    arch = ("general.architecture", "llama")
    gg("bad-magic", gguf_file(magic=b"GGUX"), "gguf-bad-magic")
    gg("zero-bytes-named-gguf", bytes(64), "gguf-bad-magic")
    gg("version-1", gguf_file(version=1), "gguf-unsupported-version")
    gg("version-u32-max", gguf_file(version=0xFFFFFFFF), "gguf-unsupported-version")
    gg("big-endian-version", gguf_file(version=0x03000000), "gguf-big-endian")
    gg("version-2", gguf_file(version=2), "gguf-legacy-version")
    gg("tensor-count-u64-max", gguf_file(tensor_count=U64_MAX), "gguf-length-exceeds-file")
    gg("kv-count-u64-max", gguf_file(kv_count=U64_MAX), "gguf-length-exceeds-file")
    gg("both-counts-2pow63", gguf_file(kv=(), tensor_count=2**63, kv_count=2**63), "gguf-length-exceeds-file")
    gg("kv-count-over-limit-sparse", gguf_file(kv=(), kv_count=65_537), "gguf-too-many-entries",
       size=24 + 65_537 * 13 + 64)
    gg("tensor-count-over-limit-sparse", gguf_file(kv=(), tensor_count=(1 << 20) + 1), "gguf-too-many-entries",
       size=24 + ((1 << 20) + 1) * 24 + 64)
    gg("kv-count-at-limit-of-empty-keys-sparse", gguf_file(kv=(), kv_count=65_536), "gguf-invalid-key",
       size=24 + 65_536 * 13)
    gg("key-length-u64-max", gguf_file(kv=(), kv_count=1, tail=struct.pack("<Q", U64_MAX) + bytes(16)),
       "gguf-length-exceeds-file")
    gg("key-length-70000-sparse", gguf_file(kv=(), kv_count=1, tail=struct.pack("<Q", 70_000)),
       "gguf-invalid-key", size=100_000)
    gg("key-empty", gguf_file(kv=(arch, ("", gb.u32(1)))), "gguf-invalid-key")
    gg("key-duplicate", gguf_file(kv=(arch, ("general.architecture", "gpt2"))), "gguf-duplicate-key")
    gg("key-not-utf8", gguf_file(kv=(arch, (b"general.\xff\xfe", gb.u32(1)))), "gguf-invalid-utf8")
    gg("key-ansi-escapes", gguf_file(kv=(arch, ("general.\x1b[2J\x1b]0;t\x07", "x"))))
    gg("value-not-utf8", gguf_file(kv=(arch, ("general.name", gb.string(b"\xc3\x28\xff")))), "gguf-invalid-utf8")
    gg("value-ansi-escapes", gguf_file(kv=(arch, ("general.name", "\x1b[2J\x1b]0;pwned\x07"))))
    gg("string-length-u64-max", gguf_file(kv=(arch,), kv_count=2,
                                          tail=raw_kv("general.name", 8, struct.pack("<Q", U64_MAX))),
       "gguf-length-exceeds-file")
    gg("string-over-1mib-sparse", gguf_file(kv=(arch,), kv_count=2,
                                            tail=raw_kv("general.name", 8, struct.pack("<Q", (1 << 20) + 1))),
       "gguf-value-not-kept", size=(1 << 20) + 512)
    gg("value-type-13", gguf_file(kv=(arch,), kv_count=2, tail=raw_kv("x", 13, b"\0" * 8)),
       "gguf-unknown-value-type")
    gg("value-type-u32-max", gguf_file(kv=(arch,), kv_count=2, tail=raw_kv("x", 0xFFFFFFFF, b"\0" * 8)),
       "gguf-unknown-value-type")
    gg("array-element-type-unknown", gguf_file(kv=(arch,), kv_count=2,
                                               tail=raw_kv("x", 9, struct.pack("<IQ", 99, 1) + b"\0" * 8)),
       "gguf-unknown-value-type")
    gg("array-count-2pow63", gguf_file(kv=(arch,), kv_count=2, tail=raw_kv("x", 9, struct.pack("<IQ", 0, 2**63))),
       "gguf-length-exceeds-file")
    gg("array-of-strings-count-u64-max",
       gguf_file(kv=(arch,), kv_count=2, tail=raw_kv("x", 9, struct.pack("<IQ", 8, U64_MAX))),
       "gguf-length-exceeds-file")
    gg("array-1m-empty-strings-sparse",
       gguf_file(kv=(arch,), kv_count=2, tail=raw_kv("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 1 << 20))),
       size=200 + 8 * (1 << 20))

    def huge_string_arrays(ws: Workspace) -> Path:
        for index in range(4):
            ws.write(f"model-{index}.gguf", gguf_file(kv=(arch,), kv_count=2, tail=raw_kv(
                "tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 1 << 25))), size=200 + 8 * (1 << 25))
        return ws.dir

    add_case(cat, "four-files-of-32m-empty-strings-sparse", huge_string_arrays, "gguf-too-many-entries")

    def zero_tensor_infos(ws: Workspace) -> Path:
        # 2**20 tensor infos of 24 zero bytes: empty name, no dims, F32, offset 0; a sparse hole does it.
        for index in range(4):
            ws.write(f"model-{index}.gguf", gguf_file(kv=(), tensor_count=1 << 20), size=24 + 24 * (1 << 20))
        return ws.dir

    # Four files, here and in the other timing cases: each file has its own 5 s wall-clock deadline, so
    # four of them exceed either 5 s of CPU or the 20 s watchdog, however busy the machine is.
    add_case(cat, "four-files-of-1m-zero-tensor-infos-sparse", zero_tensor_infos, "gguf-too-many-entries")
    gg("array-16m-uint8-sparse",
       gguf_file(kv=(arch,), kv_count=2, tail=raw_kv("x", 9, struct.pack("<IQ", 0, 1 << 24))),
       size=200 + (1 << 24))
    nested = gb.array(gb.UINT8, [1])
    for _ in range(10):
        nested = gb.array(gb.ARRAY, [nested])
    gg("array-nested-11-deep", gguf_file(kv=(arch, ("x", nested))), "gguf-array-too-deep")
    gg("alignment-zero", gguf_file(kv=(arch, ("general.alignment", gb.u32(0)))), "gguf-bad-alignment")
    gg("alignment-seven", gguf_file(kv=(arch, ("general.alignment", gb.u32(7)))), "gguf-bad-alignment")
    gg("alignment-is-string", gguf_file(kv=(arch, ("general.alignment", "32"))), "gguf-bad-alignment")
    gg("no-architecture", gguf_file(kv=(("general.name", "x"),)), "gguf-missing-architecture")
    f32 = gb.F32
    gg("tensor-name-64-bytes", gguf_file(tensors=[("t" * 64, (8,), f32, 0)], data=32), "gguf-tensor-name-too-long")
    gg("tensor-name-length-u64-max", gguf_file(tensor_count=1, tail=struct.pack("<Q", U64_MAX) + bytes(24)),
       "gguf-length-exceeds-file")
    gg("tensor-name-not-utf8", gguf_file(tensors=[(b"tok\xff", (8,), f32, 0)], data=32), "gguf-invalid-utf8")
    gg("tensor-five-dims", gguf_file(tensors=[("t", (1, 1, 1, 1, 1), f32, 0)], data=32), "gguf-too-many-dims")
    gg("tensor-dims-u32-max", gguf_file(tensor_count=1, tail=gb.encode_string("t") + struct.pack("<I", 0xFFFFFFFF)
                                        + bytes(16)), "gguf-length-exceeds-file")
    gg("tensor-type-removed-4", gguf_file(tensors=[("t", (32,), 4, 0)], data=32), "gguf-unknown-ggml-type")
    gg("tensor-type-u32-max", gguf_file(tensors=[("t", (8,), 0xFFFFFFFF, 0)], data=32), "gguf-unknown-ggml-type")
    gg("tensor-dims-overflow", gguf_file(tensors=[("t", (2**62, 4), f32, 0)], data=32), "gguf-tensor-size-overflow")
    gg("tensor-dim-u64-max", gguf_file(tensors=[("t", (U64_MAX,), f32, 0)], data=32), "gguf-tensor-size-overflow")
    gg("tensor-row-not-block-multiple", gguf_file(tensors=[("t", (33,), gb.Q4_0, 0)], data=64),
       "gguf-row-not-block-multiple")
    gg("tensor-duplicate", gguf_file(tensors=[("t", (8,), f32, 0), ("t", (8,), f32, 32)], data=64),
       "gguf-duplicate-tensor")
    gg("tensor-misaligned", gguf_file(tensors=[("t", (8,), f32, 4)], data=64), "gguf-tensor-misaligned")
    gg("tensor-overlap", gguf_file(tensors=[("a", (16,), f32, 0), ("b", (16,), f32, 32)], data=96),
       "gguf-tensor-overlap")
    gg("tensor-data-beyond-file", gguf_file(tensors=[("t", (8,), f32, 2**40)], data=32),
       "gguf-tensor-data-beyond-file")
    gg("tensor-offset-u64-max", gguf_file(tensors=[("t", (8,), f32, U64_MAX - 31)], data=32),
       "gguf-tensor-data-beyond-file")
    gg("tensor-huge-shape-sparse", gguf_file(tensors=[("t", (6144, 131072), gb.BF16, 0)]),
       size=2 * 6144 * 131072 + 256)
    gg("trailing-data", gguf_file(tensors=[("t", (8,), f32, 0)], data=4096), "gguf-trailing-data")
    gg("tensor-name-ansi-escapes", gguf_file(tensors=[("\x1b[2J\x1b]0;t\x07", (8,), f32, 0)], data=32))
    gg("gguf-named-bin", gguf_file(tensor_count=U64_MAX), "gguf-length-exceeds-file", name="pytorch_model.bin")
    gg("gguf-extensionless", gguf_file(kv_count=U64_MAX), "gguf-length-exceeds-file", name="weights")
    add_case(cat, "single-file-bad-counts",
             single_file("model.gguf", gguf_file(tensor_count=U64_MAX, kv_count=U64_MAX)),
             "gguf-length-exceeds-file")
