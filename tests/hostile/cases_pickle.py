"""Cases: malicious and malformed pickles, raw, in PyTorch zip and legacy files, in Grok-1 folders."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Callable, Sequence

from tests.builders import pickle_builder as pb
from tests.hostile.blocks import (
    U64_MAX, ZipEntry, benign_array_pickle, deflate, deflate_zeros, mkfifo, raw_zip, sparse_directory_zip, symlink,
    torch_legacy_with, torch_zip_bytes,
)
from tests.hostile.payloads import CORE_PAYLOADS, PAYLOADS, payload_case
from tests.hostile.registry import Build, Workspace, add_case, in_folder


def add_pickles() -> None:
    cat = "pickle"

    def raw(name: str) -> Callable[[Workspace, bytes], Path]:
        def build(ws: Workspace, data: bytes) -> Path:
            ws.write(name, data)
            return ws.dir

        return build

    def in_torch_zip(ws: Workspace, data: bytes) -> Path:
        torch_zip_bytes(ws, obj={}, data_pkl=data)
        return ws.dir

    def single_extensionless(ws: Workspace, data: bytes) -> Path:
        return ws.write("model", data)

    def torch_legacy(ws: Workspace, data: bytes) -> Path:
        ws.write("pytorch_model.bin", torch_legacy_with(data))
        return ws.dir

    def concatenated(ws: Workspace, data: bytes) -> Path:
        ws.write("model.pkl", benign_array_pickle() + data)
        return ws.dir

    def zip_extra_member(ws: Workspace, data: bytes) -> Path:
        torch_zip_bytes(ws, extra_records=[("extra.pkl", data)])
        return ws.dir

    def in_deflated_zip(ws: Workspace, data: bytes) -> Path:
        torch_zip_bytes(ws, obj={}, data_pkl=data, compress=["data.pkl"])
        return ws.dir

    for payload in PAYLOADS:
        payload_case(cat, f"{payload.slug}/raw-model-pkl", payload, raw("model.pkl"))
        payload_case(cat, f"{payload.slug}/torch-zip-data-pkl", payload, in_torch_zip)
        # One leaf alone fits no Grok-1 layout (2 + 12 x layers files).
        payload_case("grok", f"{payload.slug}/extensionless-ckpt-leaf", payload, raw("ckpt-0/tensor00000_000"),
                     "grok-leaf-count")
    for payload in (p for p in PAYLOADS if p.slug in CORE_PAYLOADS):
        payload_case(cat, f"{payload.slug}/raw-pytorch-model-bin", payload, raw("pytorch_model.bin"))
        payload_case(cat, f"{payload.slug}/named-notes-txt", payload, raw("notes.txt"))
        payload_case(cat, f"{payload.slug}/single-extensionless-file", payload, single_extensionless)
        payload_case(cat, f"{payload.slug}/torch-legacy-main-pickle", payload, torch_legacy)
        payload_case(cat, f"{payload.slug}/after-benign-pickle", payload, concatenated, "pickle-concatenated")
        payload_case("torch-zip", f"{payload.slug}/extra-member", payload, zip_extra_member,
                     "torch-zip-extra-pickle")
        payload_case("torch-zip", f"{payload.slug}/deflated-data-pkl", payload, in_deflated_zip)

    os_system = pb.stack_global_call("os", "system", "true")
    add_case(cat, "global-name-with-escapes",
             in_folder("model.pkl", pb.stack_global_call("os\x1b[2J", "sys\x1b]0;t\x07")),
             "unsafe-code")
    add_case(cat, "nested-three-deep", in_folder("model.pkl", pb.nested_pickle(pb.nested_pickle(pb.nested_pickle(
        os_system)))), "pickle-nested", "unsafe-code", unsafe=["os.system"])
    add_case(cat, "trailing-garbage", in_folder("model.pkl", benign_array_pickle() + b"\x00garbage" * 8),
             "pickle-trailing-data")
    add_case(cat, "hundred-concatenated", in_folder("model.pkl", benign_array_pickle() * 100), "pickle-too-complex")
    add_case(cat, "unknown-opcode", in_folder("model.pkl", b"\x80\x04\xff."), "pickle-malformed")
    add_case(cat, "protocol-99", in_folder("model.pkl", b"\x80\x63N."), "pickle-malformed")
    add_case(cat, "memo-get-missing", in_folder("model.pkl", b"\x80\x04h\x07."), "pickle-malformed")
    add_case(cat, "stack-underflow", in_folder("model.pkl", b"\x80\x04R."), "pickle-malformed")
    add_case(cat, "one-million-empty-lists", in_folder("model.pkl", b"\x80\x04" + b"]" * 1_000_000 + b"."))

    def value_cap_files(ws: Workspace) -> Path:
        first = ws.write("part0.pkl", b"\x80\x04" + b"]" * 2_100_000 + b".")
        for index in range(1, 5):
            os.link(first, ws.dir / f"part{index}.pkl")  # hard links: five files, one copy on disk
        return ws.dir

    add_case(cat, "five-files-past-the-value-cap", value_cap_files, "pickle-too-complex")

    def distinct_globals(ws: Workspace) -> Path:
        first = ws.write("part0.pkl", b"".join(b"cos\nsystem%d\n0" % i for i in range(100_000)) + b"N.")
        for index in range(1, 4):
            os.link(first, ws.dir / f"part{index}.pkl")  # more names for the same bytes
        return ws.dir

    add_case(cat, "four-files-of-100k-distinct-unsafe-globals", distinct_globals, "unsafe-code", "pickle-too-complex")
    add_case(cat, "binbytes8-length-u64-max", in_folder("model.pkl", b"\x80\x04\x8e" + struct.pack("<Q", U64_MAX)),
             "pickle-truncated")
    add_case(cat, "binunicode8-length-2pow63", in_folder("model.pkl", b"\x80\x04\x8d" + struct.pack("<Q", 2**63)),
             "pickle-truncated")
    add_case(cat, "frame-length-u64-max", in_folder("model.pkl", b"\x80\x04\x95" + struct.pack("<Q", U64_MAX) + b"N."),
             "pickle-truncated")
    add_case(cat, "pickle-named-model-safetensors", in_folder("model.safetensors", pb.stack_global_call(
        "os", "system", "true")), "safetensors-header-too-large")
    add_case(cat, "array-shape-lies", in_folder("model.pkl", pb.pickle_bytes(pb.ArraySpec("f4", (2, 2), bytes(16)))
                                                .replace(b"K\x02K\x02", b"J\x00\x00\x00\x40J\x00\x00\x00\x40")),
             "pickle-array-size-mismatch")
    add_case(cat, "persistent-id-not-storage", in_folder("model.pkl", b"\x80\x02X\x04\x00\x00\x00evilQ."),
             "pickle-unsafe-persistent-id")
    add_case(cat, "out-of-band-buffer", in_folder("model.pkl", b"\x80\x05\x97."), "pickle-out-of-band-buffer")
    add_case(cat, "quantized-weight-from-os", in_folder("ckpt-0/tensor00000_000", pb.pickle_bytes(
        pb.QuantizedSpec(pb.ArraySpec("i1", (2, 2), bytes(4)), pb.ArraySpec("bfloat16", (1, 2), bytes(4)),
                         module="os"))), "unsafe-code", unsafe=["os.QuantizedWeight8bit"])


def add_torch_zip() -> None:
    cat = "torch-zip"
    os_system = pb.stack_global_call("os", "system", "true")

    def odd_archive(archive: str, *ids: str) -> Build:
        def build(ws: Workspace) -> Path:
            torch_zip_bytes(ws, obj={}, data_pkl=os_system, archive_name=archive)
            return ws.dir

        return build

    for slug, archive, ids in [
        ("archive-dotdot", "..", ("torch-zip-unsafe-name",)),
        ("archive-dotdot-deep", "../../../../tmp", ("torch-zip-unsafe-name",)),
        ("archive-empty-name", "", ("torch-zip-unsafe-name",)),
        ("archive-ansi-escapes", "arch\x1b[2J\x1b]0;t\x07", ()),
        ("archive-bidi", "archive\u202ekp.", ()),
        ("archive-unicode", "\u00fcn\u00efc\u00f6d\u00e9-\u6a21\u578b", ()),
        ("archive-long-name", "a" * 4000, ()),
        ("archive-nested-folders", "a/b/c", ("torch-zip-no-data-pkl", "torch-zip-extra-pickle")),
        ("archive-named-data-pkl", "data.pkl", ()),
        ("archive-space", " ", ()),
        ("archive-backslash", "..\\..\\evil", ()),
    ]:
        add_case(cat, f"malicious-data-pkl/{slug}", odd_archive(archive), "unsafe-code", *ids, unsafe=["os.system"])

    def zip_of(entries: Callable[[Workspace], Sequence[ZipEntry]], name: str = "pytorch_model.bin", **kwargs) -> Build:
        def build(ws: Workspace) -> Path:
            ws.write(name, raw_zip(entries(ws), **kwargs))
            return ws.dir

        return build

    benign = benign_array_pickle()
    add_case(cat, "upper-case-DATA-PKL", zip_of(lambda ws: [ZipEntry(b"archive/DATA.PKL", os_system)]),
             "torch-zip-extra-pickle", "unsafe-code", unsafe=["os.system"])
    add_case(cat, "data-pkl-at-root", zip_of(lambda ws: [ZipEntry(b"data.pkl", os_system)]), "unsafe-code",
             unsafe=["os.system"])
    add_case(cat, "data-pkl-absolute-name", zip_of(lambda ws: [ZipEntry(b"/archive/data.pkl", os_system)]),
             "torch-zip-unsafe-name", "unsafe-code", unsafe=["os.system"])
    add_case(cat, "data-pkl-nul-in-name", zip_of(lambda ws: [ZipEntry(b"archive/data.pkl\0.txt", os_system)]),
             "unsafe-code", unsafe=["os.system"])
    add_case(cat, "duplicate-data-pkl-benign-first",
             zip_of(lambda ws: [ZipEntry(b"archive/data.pkl", benign), ZipEntry(b"archive/data.pkl", os_system)]),
             "torch-zip-duplicate-member", "unsafe-code", unsafe=["os.system"])
    add_case(cat, "zip-slip-member", zip_of(lambda ws: [ZipEntry(b"archive/data.pkl", benign),
                                                        ZipEntry(b"archive/../../../etc/evil.pkl", os_system)]),
             "torch-zip-unsafe-name", "unsafe-code", unsafe=["os.system"])
    add_case(cat, "absolute-member", zip_of(lambda ws: [ZipEntry(b"archive/data.pkl", benign),
                                                        ZipEntry(b"/etc/cron.d/evil", b"* * * * * root true\n")]),
             "torch-zip-unsafe-name")
    add_case(cat, "encrypted-member", zip_of(lambda ws: [ZipEntry(b"archive/data.pkl", benign, flags=1)]),
             "torch-zip-encrypted")
    add_case(cat, "local-name-differs", zip_of(lambda ws: [ZipEntry(b"archive/data.pkl", benign,
                                                                    local_name=b"archive/evil.pkl")]),
             "torch-zip-header-mismatch")
    add_case(cat, "two-entries-one-local-header",
             zip_of(lambda ws: [ZipEntry(b"archive/data.pkl", os_system),
                                ZipEntry(b"archive/data/0", b"", header_offset=0)]),
             "unsafe-code", unsafe=["os.system"])
    add_case(cat, "member-offset-past-directory", zip_of(lambda ws: [ZipEntry(b"archive/data.pkl", benign,
                                                                              header_offset=1 << 30)]),
             "torch-zip-overlapping-members")
    add_case(cat, "stored-size-lies", zip_of(lambda ws: [ZipEntry(b"archive/data.pkl", os_system, size=1 << 30,
                                                                  compressed_size=1 << 30)]),
             "torch-zip-overlapping-members")
    add_case(cat, "eocd-count-65535", zip_of(lambda ws: [ZipEntry(b"archive/data.pkl", benign)], count=0xFFFF),
             "torch-zip-malformed")
    add_case(cat, "eocd-directory-offset-past-end", zip_of(lambda ws: [ZipEntry(b"archive/data.pkl", benign)],
                                                           cd_offset=0xFFFFFFF0), "torch-zip-malformed")
    add_case(cat, "zip64-count-2pow40", zip_of(lambda ws: [ZipEntry(b"archive/data.pkl", benign)], zip64_count=2**40),
             "torch-zip-malformed")
    add_case(cat, "zip64-100001-members-sparse-directory", lambda ws: sparse_directory_zip(ws, 100_001, 100_001 * 46),
             "torch-zip-too-many-members", "torch-zip-malformed")
    add_case(cat, "zip64-65mb-directory-sparse", lambda ws: sparse_directory_zip(ws, 10, 65 * 1024 * 1024),
             "torch-zip-too-many-members", "torch-zip-malformed")
    add_case(cat, "no-end-record", in_folder("pytorch_model.bin", b"PK\x03\x04" + bytes(26) + b"junk" * 64),
             "torch-zip-malformed")
    add_case(cat, "unknown-compression-method",
             zip_of(lambda ws: [ZipEntry(b"archive/data.pkl", os_system, method=99)]),
             "torch-zip-malformed")
    add_case(cat, "deflate-stream-corrupt", zip_of(lambda ws: [ZipEntry(b"archive/data.pkl", b"\xff" * 64, method=8,
                                                                        size=64)]),
             "torch-zip-malformed")
    # Zip bombs disguised as pytorch_model.bin.
    big = 80 * 1024 * 1024
    add_case(cat, "zip-bomb-declared-80mb", zip_of(lambda ws: [ZipEntry(b"archive/data.pkl", deflate_zeros(big),
                                                                        method=8, size=big)]), "torch-zip-bomb")
    add_case(cat, "zip-bomb-size-lies-small", zip_of(lambda ws: [ZipEntry(b"archive/data.pkl", deflate_zeros(big),
                                                                          method=8, size=1000)]), "torch-zip-bomb")
    add_case(cat, "zip-bomb-ratio", zip_of(lambda ws: [ZipEntry(b"archive/data.pkl", deflate_zeros(4 << 20), method=8,
                                                                size=4 << 20)]), "torch-zip-bomb")
    add_case(cat, "zip-bomb-extra-member",
             zip_of(lambda ws: [ZipEntry(b"archive/data.pkl", benign),
                                ZipEntry(b"archive/extra.pkl", deflate_zeros(big), method=8, size=big)]),
             "torch-zip-bomb")
    add_case(cat, "zip-bomb-declared-4gb", zip_of(lambda ws: [ZipEntry(b"archive/data.pkl", deflate(os_system),
                                                                       method=8,
                                                                       size=0xFFFFFFFE)]), "torch-zip-bomb")
    add_case(cat, "zip-bomb-named-ckpt", zip_of(lambda ws: [ZipEntry(b"archive/data.pkl", deflate_zeros(big), method=8,
                                                                     size=big)], name="model.ckpt"), "torch-zip-bomb")
    # Storages.

    def compressed_storage(ws: Workspace) -> Path:
        torch_zip_bytes(ws, compress=["data/0"])
        return ws.dir

    add_case(cat, "compressed-storage", compressed_storage, "torch-zip-compressed-storage")

    def missing_storage(ws: Workspace) -> Path:
        storage = pb.TorchStorage("F32", 4, bytes(16))
        pickled, _ = pb.torch_pickle(pb.state_dict({"w": pb.TorchTensor(storage, (2, 2))}))
        ws.write("pytorch_model.bin", raw_zip([ZipEntry(b"archive/data.pkl", pickled)]))
        return ws.dir

    add_case(cat, "missing-storage", missing_storage, "torch-missing-storage")

    def storage_too_small(ws: Workspace) -> Path:
        storage = pb.TorchStorage("F32", 1 << 30)
        pickled, _ = pb.torch_pickle(pb.state_dict({"w": pb.TorchTensor(storage, (1 << 15, 1 << 15))}))
        ws.write("pytorch_model.bin", raw_zip([ZipEntry(b"archive/data.pkl", pickled),
                                               ZipEntry(b"archive/data/0", bytes(16))]))
        return ws.dir

    add_case(cat, "storage-size-mismatch", storage_too_small, "torch-storage-size-mismatch")

    def tensor_past_storage(ws: Workspace) -> Path:
        storage = pb.TorchStorage("F32", 4, bytes(16))
        torch_zip_bytes(ws, obj=pb.state_dict({"w": pb.TorchTensor(storage, (2, 2), storage_offset=1 << 40)}))
        return ws.dir

    add_case(cat, "tensor-offset-past-storage", tensor_past_storage, "pickle-tensor-out-of-bounds")

    def pickle_in_storage(ws: Workspace) -> Path:
        torch_zip_bytes(ws, extra_records=[("data/99", os_system)])
        return ws.dir

    add_case(cat, "malicious-unreferenced-storage", pickle_in_storage, "unsafe-code", unsafe=["os.system"])

    def zip_in_zip(ws: Workspace) -> Path:
        inner = ws.dir / "inner.bin"
        torch_zip_bytes(ws, name="inner.bin", obj={}, data_pkl=os_system)
        data = inner.read_bytes()
        inner.unlink()
        torch_zip_bytes(ws, extra_records=[("inner.zip", data)])
        return ws.dir

    add_case(cat, "zip-inside-zip", zip_in_zip, "torch-zip-unexpected-member")

    def many_members(ws: Workspace) -> Path:
        ws.write("pytorch_model.bin", raw_zip([ZipEntry(b"archive/data.pkl", benign)]
                                              + [ZipEntry(f"archive/x{i}".encode(), b"") for i in range(10_000)]))
        return ws.dir

    add_case(cat, "ten-thousand-members", many_members, "torch-zip-unexpected-member")

    def npz_object_array(ws: Workspace) -> Path:
        # An .npy holding an object array is a pickle after the npy header: numpy.load(allow_pickle=True)
        # runs it. A reader of .npz files must look inside.
        header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
        header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
        npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + os_system
        ws.write("weights.npz", raw_zip([ZipEntry(b"arr_0.npy", npy)]))
        return ws.dir

    add_case(cat, "npz-object-array-pickle", npz_object_array, "unsafe-code", "npy-object-array",
             unsafe=["os.system"])


def add_npy() -> None:
    cat = "pickle"
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + pb.stack_global_call("os", "system", "true")
    add_case(cat, "npy-object-array-pickle", in_folder("embeddings.npy", npy), "unsafe-code", "npy-object-array",
             unsafe=["os.system"])


def add_grok() -> None:
    cat = "grok"
    dims = pb.GrokDims(num_layers=1, vocab_size=16, emb_size=8, ffn_size=16, num_experts=2, num_q_heads=2,
                       num_kv_heads=1, key_size=4, row_blocks=1)
    os_system = pb.stack_global_call("os", "system", "true")

    def checkpoint(edit: Callable[[Path], None], shard: int = 0) -> Build:
        def build(ws: Workspace) -> Path:
            folder = ws.dir / "ckpt-0"
            pb.write_grok_checkpoint(folder, dims, real_data=True, shard=shard)
            edit(folder)
            return ws.dir

        return build

    add_case(cat, "valid-tiny-checkpoint", checkpoint(lambda folder: None))
    add_case(cat, "one-leaf-replaced-by-payload",
             checkpoint(lambda folder: (folder / "tensor00003_000").write_bytes(os_system)),
             "unsafe-code", "grok-leaf-kind-mismatch", unsafe=["os.system"])
    add_case(cat, "payload-leaf-beside-valid-leaves",
             checkpoint(lambda folder: (folder / "tensor00014_000").write_bytes(os_system)),
             "unsafe-code", "grok-leaf-count", unsafe=["os.system"])
    add_case(cat, "leaf-missing", checkpoint(lambda folder: (folder / "tensor00005_000").unlink()), "grok-missing-leaf")
    add_case(cat, "leaf-truncated", checkpoint(lambda folder: os.truncate(folder / "tensor00002_000", 40)),
             "pickle-truncated")
    add_case(cat, "leaves-swapped", checkpoint(lambda folder: _swap(folder / "tensor00000_000",
                                                                    folder / "tensor00002_000")),
             "grok-leaf-kind-mismatch")
    add_case(cat, "second-host-shard", checkpoint(lambda folder: pb.write_grok_checkpoint(folder, dims, shard=1)),
             "grok-multiple-shards")
    add_case(cat, "leaf-is-fifo", checkpoint(lambda folder: ((folder / "tensor00001_000").unlink(),
                                                             mkfifo(folder / "tensor00001_000"))), "special-file",
             "grok-missing-leaf")
    add_case(cat, "leaf-links-outside", checkpoint(lambda folder: ((folder / "tensor00001_000").unlink(),
                                                                   symlink(folder / "tensor00001_000", "/etc/passwd"))),
             "path-escape", "grok-missing-leaf")
    add_case(cat, "leaf-array-shape-lies", in_folder("ckpt-0/tensor00000_000", pb.pickle_bytes(
        pb.ArraySpec("f4", (2, 2), bytes(16))).replace(b"K\x02K\x02", b"J\x00\x00\x00\x40J\x00\x00\x00\x40")),
             "pickle-array-size-mismatch")


def _swap(a: Path, b: Path) -> None:
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
