"""Building blocks for hostile files: raw safetensors, GGUF and zip layouts, pickles, special files."""

from __future__ import annotations

import json
import os
import pickle
import socket
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tests.builders import gguf_builder as gb
from tests.builders import pickle_builder as pb
from tests.builders import safetensors_builder as stb
from tests.hostile.registry import Workspace

U64_MAX = 2**64 - 1

GOOD_HEADER = {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}


def st_bytes(header: bytes | str | dict, data_len: int = 0, *, declared: int | None = None) -> bytes:
    """An 8-byte length, the header as given (a dict is dumped compactly) and ``data_len`` zero bytes."""
    if isinstance(header, dict):
        header = json.dumps(header, separators=(",", ":"), ensure_ascii=False)
    if isinstance(header, str):
        header = header.encode("utf-8")
    length = len(header) if declared is None else declared
    return struct.pack("<Q", length) + header + bytes(data_len)


def small_safetensors() -> bytes:
    """A valid one-tensor file (``w``, F32 [2, 2]) with its header padded as the official writer pads it."""
    plan = stb.layout({"w": ("F32", (2, 2))})
    return plan.prefix() + bytes(plan.data_len)


def valid_safetensors() -> bytes:
    """A valid three-tensor file laid out by the official writer's rules, with zero data."""
    plan = stb.layout({"a.weight": ("F32", (4, 4)), "b.bias": ("F16", (8,)), "c.ids": ("I64", (3,))},
                      {"format": "pt"})
    return plan.prefix() + bytes(plan.data_len)


def valid_gguf_parts() -> tuple[bytes, int]:
    """A valid GGUF v3 file (metadata + two tensors, zero data) and its data-section offset."""
    pairs = [("general.architecture", "llama"), ("general.name", "tiny"), ("llama.block_count", gb.u32(1))]
    head = gb.encode_header(2, len(pairs)) + b"".join(gb.encode_kv(k, v) for k, v in pairs)
    head += gb.encode_tensor_info("token_embd.weight", (8, 4), gb.F32, 0)
    head += gb.encode_tensor_info("output_norm.weight", (8,), gb.F32, 128)
    data_start = len(head) + (-len(head) % 32)
    return head + bytes(data_start - len(head)) + bytes(160), data_start


def gguf_file(kv: Sequence[tuple[str | bytes, object]] = (("general.architecture", "llama"),),
              tensors: Sequence[tuple[str | bytes, Sequence[int], int, int]] = (), *, data: int = 0,
              tensor_count: int | None = None, kv_count: int | None = None, version: int = 3,
              magic: bytes = b"GGUF", tail: bytes = b"") -> bytes:
    """A GGUF file from raw pieces: counts may lie; ``data`` zero bytes follow the 32-aligned header."""
    head = gb.encode_header(len(tensors) if tensor_count is None else tensor_count,
                            len(kv) if kv_count is None else kv_count, version=version, magic=magic)
    head += b"".join(gb.encode_kv(key, value) for key, value in kv)
    head += b"".join(gb.encode_tensor_info(name, dims, kind, offset) for name, dims, kind, offset in tensors)
    head += tail
    if data:
        head += bytes(-len(head) % 32) + bytes(data)
    return head


def raw_kv(key: str, value_type: int, payload: bytes) -> bytes:
    """A metadata pair with any type tag and payload (for unknown types and lying lengths)."""
    return gb.encode_string(key) + struct.pack("<I", value_type) + payload


def benign_array_pickle() -> bytes:
    return pb.pickle_bytes(pb.ArraySpec("f4", (2, 2), bytes(16)))


def small_state_dict() -> object:
    storage = pb.TorchStorage("F32", 4, bytes(16))
    return pb.state_dict({"w": pb.TorchTensor(storage, (2, 2))})


def torch_zip_bytes(ws: Workspace, name: str = "pytorch_model.bin", **kwargs) -> Path:
    path = ws.dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pb.write_torch_zip(path, kwargs.pop("obj", small_state_dict()), **kwargs)
    return path


def torch_legacy_with(payload: bytes) -> bytes:
    """A legacy torch.save file whose main pickle (the 4th) is ``payload``."""
    sys_info = dict(protocol_version=1001, little_endian=True, type_sizes=dict(short=2, int=4, long=8))
    return (pickle.dumps(pb.TORCH_MAGIC_NUMBER, protocol=2) + pickle.dumps(1001, protocol=2)
            + pickle.dumps(sys_info, protocol=2) + payload + pickle.dumps([], protocol=2))


@dataclass(frozen=True)
class ZipEntry:
    """One member of a hand-made zip; every size and offset may lie."""

    name: bytes
    payload: bytes
    method: int = 0
    flags: int = 0
    size: int | None = None  # uncompressed size declared (default: len of the inflated payload)
    compressed_size: int | None = None
    crc: int = 0
    local_name: bytes | None = None  # a different name in the local header
    header_offset: int | None = None  # a different offset in the central directory


def raw_zip(entries: Sequence[ZipEntry], *, count: int | None = None, cd_offset: int | None = None,
            zip64_count: int | None = None) -> bytes:
    """A zip laid out by hand: local headers and payloads, the central directory, the end record."""
    out = bytearray()
    central = bytearray()
    for entry in entries:
        offset = len(out)
        size = entry.size if entry.size is not None else len(entry.payload)
        stored = entry.compressed_size if entry.compressed_size is not None else len(entry.payload)
        local = entry.local_name if entry.local_name is not None else entry.name
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, entry.flags, entry.method, 0, 0, entry.crc,
                           stored, size, len(local), 0) + local + entry.payload
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, entry.flags, entry.method, 0, 0, entry.crc,
                               stored, size, len(entry.name), 0, 0, 0, 0, 0,
                               offset if entry.header_offset is None else entry.header_offset) + entry.name
    directory_offset = len(out)
    out += central
    total = len(entries) if count is None else count
    if zip64_count is not None:
        zip64_at = len(out)
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, zip64_count, zip64_count, len(central),
                           directory_offset)
        out += struct.pack("<IIQI", 0x07064B50, 0, zip64_at, 1)
        total = 0xFFFF
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, min(total, 0xFFFF), min(total, 0xFFFF), len(central),
                       directory_offset if cd_offset is None else cd_offset, 0)
    return bytes(out)


def sparse_directory_zip(ws: Workspace, count: int, directory_bytes: int) -> Path:
    """A zip64 archive whose end records declare ``count`` members in a central directory of
    ``directory_bytes`` bytes that is a sparse hole of zeros."""
    path = ws.dir / "pytorch_model.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    member = b"archive/data.pkl"
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, 0, 0, 0, len(member), 0) + member
    with open(path, "wb") as handle:
        handle.write(local)
        directory_offset = handle.tell()
        handle.seek(directory_bytes, os.SEEK_CUR)
        zip64_at = handle.tell()
        handle.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, directory_bytes,
                                 directory_offset))
        handle.write(struct.pack("<IIQI", 0x07064B50, 0, zip64_at, 1))
        handle.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))
    return ws.dir


def deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def deflate_zeros(count: int) -> bytes:
    """Raw deflate of ``count`` zero bytes, streamed so that no ``count``-byte buffer is built."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    parts = []
    left = count
    while left > 0:
        parts.append(compressor.compress(chunk[: min(left, len(chunk))]))
        left -= min(left, len(chunk))
    parts.append(compressor.flush())
    return b"".join(parts)


def yaml_card(front_matter: str, body: str = "# Model\n\nA model.\n") -> bytes:
    return f"---\n{front_matter}\n---\n{body}".encode("utf-8")


def mkfifo(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)


def symlink(path: Path, target: str | Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


def unix_socket(path: Path) -> None:
    """Bind a UNIX socket at ``path`` (relative bind: socket paths are limited to ~108 bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    here = os.getcwd()
    os.chdir(path.parent)
    try:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path.name)
        server.close()  # the socket file stays behind, which is all the case needs
    finally:
        os.chdir(here)
