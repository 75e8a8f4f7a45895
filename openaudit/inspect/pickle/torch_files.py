"""PyTorch checkpoint containers, read without torch and without unpickling.

- The zip format (``torch.save`` since 1.6): a zip whose members all lie in one top-level folder,
  ``<folder>/data.pkl`` (the pickle, with tensors as persistent ids ``('storage', <class>, key,
  location, numel)``), ``<folder>/data/<key>`` (raw storages, stored uncompressed and 64-byte aligned
  by caffe2's PyTorchStreamWriter), plus ``version``, ``byteorder`` and a few dot-files. torch reads
  the folder name from the archive's first member; storage offsets come from each member's local
  file header (PyTorchStreamReader::getRecordOffset does the same).
- The legacy format (``_use_new_zipfile_serialization=False`` and torch < 1.6): five pickles one after
  another (magic number, protocol version 1001, sys info, the object, the sorted storage keys), then
  for each key an 8-byte little-endian element count and the raw storage bytes.

The zip directory is parsed by hand so that every size and count is bounded by the file: no member is
decompressed beyond ``MAX_PICKLE_INFLATE`` bytes, and none is extracted.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Callable

from openaudit.inspect.pickle import npy
from openaudit.inspect.pickle.machine import PickleResult, ScanContext, walk_pickle
from openaudit.inspect.pickle.opcodes import ByteRange
from openaudit.inspect.pickle.sniff import sniff_pickle, walk_remaining_pickles
from openaudit.inspect.pickle.tensor_records import collect_tensors
from openaudit.inspect.pickle.values import Dct, Lst, StorageRef
from openaudit.inspect.tensors import DTYPE_BITS, TensorRecord, WeightsFileScan

MAX_MEMBERS = 100_000
MAX_CENTRAL_DIRECTORY_BYTES = 64 * 1024 * 1024
# A compressed pickle member is inflated up to this size and no further.
MAX_PICKLE_INFLATE = 64 * 1024 * 1024
# Above this compression ratio a member is a decompression bomb (torch.save does not compress at all).
MAX_COMPRESSION_RATIO = 100
# Members smaller than this are read to sniff for pickles and to read version/byteorder records.
SNIFF_BYTES = 64

_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")  # 30 bytes
_CENTRAL_HEADER = struct.Struct("<IHHHHHHIIIHHHHHII")  # 46 bytes
_EOCD = struct.Struct("<IHHHHIIH")  # 22 bytes
_ZIP64_LOCATOR = struct.Struct("<IIQI")  # 20 bytes
_ZIP64_EOCD = struct.Struct("<IQHHIIQQQQ")  # 56 bytes
_LOCAL_SIG, _CENTRAL_SIG, _EOCD_SIG = 0x04034B50, 0x02014B50, 0x06054B50
_ZIP64_LOCATOR_SIG, _ZIP64_EOCD_SIG = 0x07064B50, 0x06064B50
_STORED, _DEFLATED = 0, 8
ZIP_MAGIC = b"PK\x03\x04"

# Records torch.save / PyTorchStreamWriter write besides data.pkl and data/<key>.
_KNOWN_RECORDS = frozenset(
    {"version", ".data/version", "byteorder", ".format_version", ".storage_alignment", ".data/serialization_id"}
)


@dataclass(frozen=True)
class ZipMember:
    name: str
    flags: int
    method: int
    compressed_size: int
    size: int
    header_offset: int
    data_offset: int

    @property
    def stored(self) -> bool:
        return self.method == _STORED

    @property
    def data_end(self) -> int:
        return self.data_offset + self.compressed_size


class _ZipError(Exception):
    pass


# ---------------------------------------------------------------------------------------------------
# The zip directory.


def read_zip_members(handle: BinaryIO, file_size: int, ctx: ScanContext) -> list[ZipMember]:
    """Every member of the zip, with data offsets from the local headers; structural problems become findings.

    Raises _ZipError when the directory itself cannot be read.
    """
    cd_offset, cd_size, count = _find_central_directory(handle, file_size)
    if count > MAX_MEMBERS:
        ctx.add("torch-zip-too-many-members", f"the archive declares {count:,} members; only {MAX_MEMBERS:,} are read")
        count = MAX_MEMBERS
    if cd_size > MAX_CENTRAL_DIRECTORY_BYTES:
        ctx.add("torch-zip-too-many-members", f"the central directory is {cd_size:,} bytes")
        cd_size = MAX_CENTRAL_DIRECTORY_BYTES
    handle.seek(cd_offset)
    directory = handle.read(cd_size)
    if len(directory) != cd_size:
        raise _ZipError("the central directory runs past the end of the file")
    members: list[ZipMember] = []
    position = 0
    for _ in range(count):
        ctx.deadline.check()
        if position + _CENTRAL_HEADER.size > len(directory):
            raise _ZipError("the central directory ends inside an entry")
        fields = _CENTRAL_HEADER.unpack_from(directory, position)
        if fields[0] != _CENTRAL_SIG:
            raise _ZipError(f"bad central directory entry signature at byte {cd_offset + position}")
        flags, method = fields[3], fields[4]
        compressed, size = fields[8], fields[9]
        name_length, extra_length, comment_length = fields[10], fields[11], fields[12]
        header_offset = fields[16]
        start = position + _CENTRAL_HEADER.size
        end = start + name_length + extra_length + comment_length
        if end > len(directory):
            raise _ZipError("a central directory entry runs past the directory")
        raw_name = directory[start : start + name_length]
        extra = directory[start + name_length : start + name_length + extra_length]
        size, compressed, header_offset = _apply_zip64(extra, size, compressed, header_offset)
        position = end
        name = _decode_name(raw_name, flags)
        member = _read_local_header(handle, file_size, cd_offset, name, raw_name, flags, method, compressed, size,
                                    header_offset, ctx)
        if member is not None:
            members.append(member)
    _check_layout(members, cd_offset, ctx)
    return members


def _find_central_directory(handle: BinaryIO, file_size: int) -> tuple[int, int, int]:
    # Most archives have no comment: try a small tail before the largest one a comment allows.
    # The zip64 locator sits just before the end record, so the tail must hold it too.
    largest = _EOCD.size + 0xFFFF + _ZIP64_LOCATOR.size
    for tail_size in (min(file_size, 4096), min(file_size, largest)):
        handle.seek(file_size - tail_size)
        tail = handle.read(tail_size)
        position = _end_record_position(tail)
        if position >= _ZIP64_LOCATOR.size or tail_size == file_size:
            break
    if position < 0:
        raise _ZipError("no end-of-central-directory record")
    eocd_offset = file_size - tail_size + position
    _, disk, cd_disk, _, count, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, position)
    if disk or cd_disk:
        raise _ZipError("multi-disk archives are not supported")
    limit = eocd_offset
    locator_at = position - _ZIP64_LOCATOR.size
    if locator_at >= 0 and struct.unpack_from("<I", tail, locator_at)[0] == _ZIP64_LOCATOR_SIG:
        _, _, zip64_offset, _ = _ZIP64_LOCATOR.unpack_from(tail, locator_at)
        if zip64_offset + _ZIP64_EOCD.size > eocd_offset:
            raise _ZipError("the zip64 end record lies outside the file")
        handle.seek(zip64_offset)
        record = handle.read(_ZIP64_EOCD.size)
        if len(record) != _ZIP64_EOCD.size or struct.unpack_from("<I", record)[0] != _ZIP64_EOCD_SIG:
            raise _ZipError("bad zip64 end-of-central-directory record")
        fields = _ZIP64_EOCD.unpack(record)
        count, cd_size, cd_offset = fields[7], fields[8], fields[9]
        limit = zip64_offset
    if cd_offset + cd_size > limit:
        raise _ZipError("the central directory lies outside the file")
    if count * _CENTRAL_HEADER.size > cd_size:
        raise _ZipError(f"{count} members cannot fit a {cd_size}-byte central directory")
    return cd_offset, cd_size, count


def _end_record_position(tail: bytes) -> int:
    """The last end-of-central-directory record whose comment ends exactly at the end of the file."""
    position = tail.rfind(b"PK\x05\x06")
    while position >= 0:
        if position + _EOCD.size <= len(tail):
            comment_length = _EOCD.unpack_from(tail, position)[7]
            if position + _EOCD.size + comment_length == len(tail):
                return position
        position = tail.rfind(b"PK\x05\x06", 0, position)
    return -1


def _apply_zip64(extra: bytes, size: int, compressed: int, header_offset: int) -> tuple[int, int, int]:
    position = 0
    while position + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, position)
        body = extra[position + 4 : position + 4 + length]
        if tag == 0x0001:
            values = [struct.unpack_from("<Q", body, index)[0] for index in range(0, len(body) - 7, 8)]
            if size == 0xFFFFFFFF and values:
                size = values.pop(0)
            if compressed == 0xFFFFFFFF and values:
                compressed = values.pop(0)
            if header_offset == 0xFFFFFFFF and values:
                header_offset = values.pop(0)
            break
        position += 4 + length
    return size, compressed, header_offset


def _decode_name(raw: bytes, flags: int) -> str:
    from openaudit.release import printable

    if flags & 0x800:
        return printable(raw.decode("utf-8", "surrogateescape"))
    return printable(raw.decode("cp437"))


def _read_local_header(handle: BinaryIO, file_size: int, cd_offset: int, name: str, raw_name: bytes, flags: int,
                       method: int, compressed: int, size: int, header_offset: int,
                       ctx: ScanContext) -> ZipMember | None:
    if header_offset + _LOCAL_HEADER.size > cd_offset:
        ctx.add("torch-zip-overlapping-members", f"member {name!r} starts outside the archive data",
                key=("outside", name))
        return None
    handle.seek(header_offset)
    header = handle.read(_LOCAL_HEADER.size)
    fields = _LOCAL_HEADER.unpack(header)
    if fields[0] != _LOCAL_SIG:
        ctx.add("torch-zip-malformed", f"member {name!r} has no local file header at byte {header_offset}",
                key=("local", name))
        return None
    name_length, extra_length = fields[9], fields[10]
    local_name = handle.read(name_length)
    if local_name != raw_name or fields[3] != method:
        ctx.add(
            "torch-zip-header-mismatch",
            f"member {name!r}: the local header says {local_name[:80]!r} (method {fields[3]}), the central "
            f"directory {raw_name[:80]!r} (method {method})",
            key=("mismatch", name),
        )
    data_offset = header_offset + _LOCAL_HEADER.size + name_length + extra_length
    if data_offset + compressed > cd_offset:
        ctx.add("torch-zip-overlapping-members",
                f"member {name!r} ({compressed} bytes at byte {data_offset}) runs into the central directory",
                key=("outside", name))
        return None
    return ZipMember(name, flags, method, compressed, size, header_offset, data_offset)


def _check_layout(members: list[ZipMember], cd_offset: int, ctx: ScanContext) -> None:
    names: dict[str, int] = {}
    for member in members:
        names[member.name] = names.get(member.name, 0) + 1
        if _unsafe_name(member.name):
            ctx.add("torch-zip-unsafe-name", f"member {member.name!r} would be extracted outside its folder",
                    key=("name", member.name))
        if member.flags & 0x1:
            ctx.add("torch-zip-encrypted", f"member {member.name!r} is encrypted", key=("encrypted", member.name))
    for name, count in names.items():
        if count > 1:
            ctx.add("torch-zip-duplicate-member", f"the archive holds {count} members named {name!r}",
                    key=("duplicate", name))
    ordered = sorted(members, key=lambda m: m.header_offset)
    for before, after in zip(ordered, ordered[1:]):
        if after.header_offset < before.data_end:
            ctx.add(
                "torch-zip-overlapping-members",
                f"members {before.name!r} and {after.name!r} overlap (bytes {after.header_offset}–{before.data_end})",
                key=("overlap", before.name, after.name),
            )


def _unsafe_name(name: str) -> bool:
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or (len(normalized) > 1 and normalized[1] == ":"):
        return True
    return ".." in normalized.split("/")


# ---------------------------------------------------------------------------------------------------
# Reading members safely.


def _member_head(handle: BinaryIO, member: ZipMember, size: int = SNIFF_BYTES) -> bytes | None:
    """The first bytes of a member's uncompressed content, or None if it cannot be read cheaply."""
    if member.stored:
        handle.seek(member.data_offset)
        return handle.read(min(size, member.size))
    if member.method == _DEFLATED:
        handle.seek(member.data_offset)
        inflater = zlib.decompressobj(-15)
        try:
            return inflater.decompress(handle.read(min(member.compressed_size, 4096)), size)
        except zlib.error:
            return None
    return None


def _inflate_bounded(handle: BinaryIO, member: ZipMember, ctx: ScanContext) -> bytes | None:
    """A deflated member's content, never more than MAX_PICKLE_INFLATE bytes."""
    if _is_bomb(member, ctx):
        return None
    if member.method != _DEFLATED:
        ctx.add("torch-zip-malformed", f"member {member.name!r} uses compression method {member.method}",
                key=("method", member.name))
        return None
    inflater = zlib.decompressobj(-15)
    output = bytearray()
    handle.seek(member.data_offset)
    left = member.compressed_size
    try:
        while left > 0:
            ctx.deadline.check_now()
            chunk = handle.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)
            output += inflater.decompress(chunk, MAX_PICKLE_INFLATE + 1 - len(output))
            if len(output) > MAX_PICKLE_INFLATE or inflater.unconsumed_tail:
                ctx.add("torch-zip-bomb", f"member {member.name!r} inflates past {MAX_PICKLE_INFLATE:,} bytes",
                        key=("bomb", member.name))
                return None
    except zlib.error as exc:
        ctx.add("torch-zip-malformed", f"member {member.name!r} does not inflate: {exc}", key=("inflate", member.name))
        return None
    if len(output) != member.size:
        ctx.add("torch-zip-header-mismatch",
                f"member {member.name!r} inflates to {len(output)} bytes, not the {member.size} it declares",
                key=("inflated-size", member.name))
    return bytes(output)


def _is_bomb(member: ZipMember, ctx: ScanContext) -> bool:
    ratio = member.size / max(member.compressed_size, 1)
    if member.size > MAX_PICKLE_INFLATE or (member.size > 1 << 20 and ratio > MAX_COMPRESSION_RATIO):
        ctx.add(
            "torch-zip-bomb",
            f"member {member.name!r} declares {member.size:,} bytes from {member.compressed_size:,} compressed "
            f"(ratio {ratio:,.0f}); it was not inflated",
            key=("bomb", member.name),
        )
        return True
    return False


def _inflate_prefix(handle: BinaryIO, member: ZipMember, size: int) -> bytes | None:
    """The first ``size`` bytes (or fewer) of a deflated member, inflating no more than that."""
    inflater = zlib.decompressobj(-15)
    output = bytearray()
    handle.seek(member.data_offset)
    left = member.compressed_size
    try:
        while left > 0 and len(output) < size:
            chunk = handle.read(min(left, 1 << 16))
            if not chunk:
                break
            left -= len(chunk)
            output += inflater.decompress(chunk, size - len(output))
            if inflater.unconsumed_tail:
                break  # ``size`` bytes are out; the rest is not wanted
    except zlib.error:
        return None
    return bytes(output)


def _scan_npy_member(handle: BinaryIO, member: ZipMember, ctx: ScanContext) -> None:
    """An ``.npy`` member (an ``.npz`` array): walked as a pickle when its dtype holds objects or cannot be
    read. A numeric array's header is all that is read; a compressed one is not inflated past it."""
    if not member.stored and member.method == _DEFLATED:
        prefix = _inflate_prefix(handle, member, npy.PREAMBLE_BYTES + npy.MAX_HEADER_BYTES)
        if prefix is not None and not npy.may_hold_pickle(prefix):
            return
    _walk_member(handle, member, ctx, npy.walk_npy)


def _walk_member(handle: BinaryIO, member: ZipMember, ctx: ScanContext,
                 walk: Callable[[ByteRange, ScanContext], list[PickleResult]] | None = None) -> list[PickleResult]:
    """Walk every pickle in a member (stored: in place in the file; deflated: a bounded copy); ``walk``
    reads the member (every pickle one after another by default)."""
    walk = walk or _walk_all
    saved_where = ctx.where
    ctx.where = f" (zip member {member.name})"
    try:
        if member.stored:
            if member.size != member.compressed_size:
                ctx.add("torch-zip-header-mismatch",
                        f"stored member {member.name!r} declares {member.size} bytes but stores {member.compressed_size}",
                        key=("stored-size", member.name))
            end = member.data_offset + min(member.size, member.compressed_size)
            return walk(ByteRange(handle, member.data_offset, end), ctx)
        data = _inflate_bounded(handle, member, ctx)
        if data is None:
            return []
        saved_offsets = ctx.file_offsets
        ctx.file_offsets = False
        try:
            return walk(ByteRange.of_bytes(data), ctx)
        finally:
            ctx.file_offsets = saved_offsets
    finally:
        ctx.where = saved_where


def _walk_all(source: ByteRange, ctx: ScanContext) -> list[PickleResult]:
    first = walk_pickle(source, ctx)
    results = [first]
    if first.complete:
        more, _ = walk_remaining_pickles(source, ctx)
        results.extend(more)
    return results


# ---------------------------------------------------------------------------------------------------
# The zip container.


def sniff_torch_zip(head: bytes) -> bool:
    """A zip whose first member lies in a folder, as torch.save writes (``<name>/data.pkl`` first)."""
    if len(head) < 30 or not head.startswith(ZIP_MAGIC):
        return False
    name_length = struct.unpack_from("<H", head, 26)[0]
    name = head[30 : 30 + name_length]
    return b"/" in name


def scan_torch_zip(handle: BinaryIO, path: str, size: int, ctx: ScanContext) -> WeightsFileScan:
    """Scan a zip that may be a torch.save archive: every pickle-like member, tensors from data.pkl."""
    from openaudit.errors import ParseTimeout
    from openaudit.findings import finding

    tensors: list[TensorRecord] = []
    metadata: dict[str, object] = {}
    complete = True
    container = "pytorch-zip"
    try:
        members = read_zip_members(handle, size, ctx)
        metadata["zip_members"] = len(members)
        tensors, complete, torch_like = _scan_members(handle, members, ctx, metadata)
        container = "pytorch-zip" if torch_like else "zip"
    except _ZipError as exc:
        ctx.add("torch-zip-malformed", f"the zip directory cannot be read: {exc}")
        complete = False
    except ParseTimeout as exc:
        ctx.findings.append(finding("parse-timeout", f"{exc}{ctx.where}", path))
        complete = False
    return WeightsFileScan(
        path=path, format="pickle", container=container, tensors=tuple(tensors), metadata=metadata,
        imports=tuple(ctx.imports), findings=tuple(ctx.findings), complete=complete,
    )


def _scan_members(handle: BinaryIO, members: list[ZipMember], ctx: ScanContext,
                  metadata: dict[str, object]) -> tuple[list[TensorRecord], bool, bool]:
    """Tensors from data.pkl, whether every pickle walked completely, and whether this is a torch archive."""
    by_name: dict[str, ZipMember] = {}
    for member in members:
        by_name.setdefault(member.name, member)  # the first of duplicates, as a linear reader finds it
    if not members:
        return [], True, False
    folder = members[0].name.split("/", 1)[0] if "/" in members[0].name else None
    main_name = f"{folder}/data.pkl" if folder is not None else None
    main = by_name.get(main_name) if main_name else None
    torch_like = main is not None or any(member.name.endswith("/data.pkl") for member in members)
    if torch_like:
        if folder is not None:
            metadata["archive_name"] = folder
        if main is None:
            ctx.add("torch-zip-no-data-pkl",
                    "torch.load reads <folder>/data.pkl from the folder of the first member; this archive has none"
                    if folder is not None else "the first member of the archive is not inside a folder")

    complete = True
    tensors: list[TensorRecord] = []
    if main is not None:
        results = _walk_member(handle, main, ctx)
        complete = all(result.complete for result in results)
        if len(results) > 1:
            ctx.add("pickle-trailing-data", f"{main.name} holds {len(results)} pickles; torch.load reads the first")
        root = results[0].root if results else None

        def locate(storage: StorageRef) -> tuple[int | None, int] | None:
            return _locate_zip_storage(by_name, folder or "", storage, ctx)

        tensors = collect_tensors(root, ctx.path, ctx, locate) if results and results[0].complete else []
    referenced = {f"{folder}/data/{key}" for key in ctx.storages}
    for member in members:
        ctx.deadline.check()
        if member is main:
            continue
        _scan_other_member(handle, member, folder, referenced, ctx, metadata, torch_like)
    return tensors, complete, torch_like


def _locate_zip_storage(by_name: dict[str, ZipMember], folder: str, storage: StorageRef,
                        ctx: ScanContext) -> tuple[int | None, int] | None:
    name = f"{folder}/data/{storage.key}"
    member = by_name.get(name)
    if member is None:
        ctx.add("torch-missing-storage", f"storage {storage.key!r} ({name}) is not in the archive",
                key=("missing", storage.key))
        return None
    itemsize = (DTYPE_BITS.get(storage.dtype or "", 0) // 8) or None
    if itemsize is not None and member.size != storage.numel * itemsize:
        ctx.add(
            "torch-storage-size-mismatch",
            f"storage {storage.key!r} holds {member.size} bytes; its pickle declares {storage.numel} × {itemsize}",
            key=("size", storage.key),
        )
    if not member.stored:
        ctx.add("torch-zip-compressed-storage", f"storage {name} is compressed (method {member.method})",
                key=("compressed", name))
        return None, member.size
    return member.data_offset, member.size


def _scan_other_member(handle: BinaryIO, member: ZipMember, folder: str | None, referenced: set[str],
                       ctx: ScanContext, metadata: dict[str, object], torch_like: bool) -> None:
    """Sniff every member for pickles; in a torch archive, also note members torch.save never writes.

    A zip that is no torch archive (a dataset, an npz) yields findings only for the pickles it hides,
    object-dtype ``.npy`` members included.
    """
    if member.name in referenced:
        if not member.stored:
            ctx.add("torch-zip-compressed-storage", f"storage {member.name} is compressed (method {member.method})",
                    key=("compressed", member.name))
        return
    relative = member.name[len(folder) + 1 :] if folder is not None and member.name.startswith(folder + "/") else None
    if relative in _KNOWN_RECORDS and member.size <= SNIFF_BYTES:
        head = _member_head(handle, member) or b""
        _record_metadata(relative, head, ctx, metadata)
        return
    head = _member_head(handle, member)  # bounded: at most 4 KiB read, 64 bytes inflated
    lower = member.name.lower()
    if head is not None and npy.is_npy(head):
        _scan_npy_member(handle, member, ctx)  # an object array's data is a pickle
    elif (head is not None and sniff_pickle(head)) or lower.endswith((".pkl", ".pickle")):
        ctx.add("torch-zip-extra-pickle", f"member {member.name!r} is a pickle; it was scanned too",
                key=("extra", member.name))
        _walk_member(handle, member, ctx)
        return
    if not torch_like:
        return
    if relative is not None and relative.startswith("data/") and relative[5:].isdigit():
        ctx.add("torch-zip-unexpected-member", f"storage member {member.name!r} is not used by data.pkl",
                key=("unexpected", member.name))
        return
    ctx.add("torch-zip-unexpected-member", f"member {member.name!r} is not one torch.save writes",
            key=("unexpected", member.name))


def _record_metadata(relative: str, head: bytes, ctx: ScanContext, metadata: dict[str, object]) -> None:
    text = head.decode("ascii", "replace").strip()
    keys = {"version": "version", ".data/version": "version", "byteorder": "byteorder",
            ".format_version": "format_version", ".storage_alignment": "storage_alignment"}
    key = keys.get(relative)
    if key is None:
        return
    metadata[key] = text
    if key == "byteorder" and text != "little":
        ctx.add("pickle-big-endian", f"the archive's storages are stored in {text!r} byte order")


# ---------------------------------------------------------------------------------------------------
# The legacy container.

# The first pickle of a legacy file is this number.
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001


def is_legacy_magic(value: object) -> bool:
    """Whether a file's first pickle evaluates to the legacy format's magic number."""
    return isinstance(value, int) and not isinstance(value, bool) and value == TORCH_LEGACY_MAGIC


def scan_torch_legacy(source: ByteRange, size: int, ctx: ScanContext,
                      first: PickleResult) -> tuple[str, list[TensorRecord], dict, bool]:
    """The rest of a legacy file whose first pickle was the magic number."""
    metadata: dict[str, object] = {}
    parts: list[PickleResult] = [first]
    for _ in range(4):
        result = walk_pickle(source, ctx)
        parts.append(result)
        if not result.complete:
            ctx.add("torch-legacy-malformed", f"the legacy file ends after {len(parts) - 1} of its 5 pickles")
            return "pytorch-legacy", [], metadata, False
    _, protocol, sys_info, main, keys = parts
    if protocol.root != LEGACY_PROTOCOL_VERSION:
        ctx.add("torch-legacy-malformed", f"protocol version is {protocol.root!r}, not {LEGACY_PROTOCOL_VERSION}")
    metadata["legacy_protocol_version"] = protocol.root if isinstance(protocol.root, int) else None
    little = _sys_info_little_endian(sys_info.root)
    metadata["little_endian"] = little
    if little is False:
        ctx.add("pickle-big-endian", "the legacy file was written on a big-endian machine")
    storage_keys = _string_list(keys.root)
    if storage_keys is None:
        ctx.add("torch-legacy-malformed", "the storage-key pickle is not a list of strings")
        return "pytorch-legacy", [], metadata, False
    offsets, complete = _legacy_storage_offsets(source, size, storage_keys, ctx)

    def locate(storage: StorageRef) -> tuple[int | None, int] | None:
        located = offsets.get(storage.key)
        if located is None:
            ctx.add("torch-missing-storage", f"storage {storage.key!r} is not in the file", key=("missing", storage.key))
        return located

    tensors = collect_tensors(main.root, ctx.path, ctx, locate)
    return "pytorch-legacy", tensors, metadata, complete


def _legacy_storage_offsets(source: ByteRange, size: int, keys: list[str],
                            ctx: ScanContext) -> tuple[dict[str, tuple[int, int]], bool]:
    offsets: dict[str, tuple[int, int]] = {}
    for key in keys:
        ctx.deadline.check()
        storage = ctx.storages.get(key)
        itemsize = (DTYPE_BITS.get(storage.dtype or "", 0) // 8) if storage is not None else 0
        if storage is None or not itemsize:
            ctx.add("torch-legacy-malformed", f"storage key {key!r} has no storage of a known type in the pickle")
            return offsets, False
        if source.remaining() < 8:
            ctx.add("torch-legacy-malformed", f"the file ends before storage {key!r}")
            return offsets, False
        count = struct.unpack("<q", source.read(8))[0]
        nbytes = count * itemsize
        if count < 0 or nbytes > source.remaining():
            ctx.add("torch-legacy-malformed", f"storage {key!r} declares {count} elements, past the end of the file")
            return offsets, False
        if count != storage.numel:
            ctx.add("torch-storage-size-mismatch",
                    f"storage {key!r} holds {count} elements; its pickle declares {storage.numel}",
                    key=("size", key))
        offsets[key] = (source.pos, nbytes)
        source.skip(nbytes)
    if source.remaining() > 0:
        ctx.add("pickle-trailing-data", f"{source.remaining()} bytes follow the last storage")
    return offsets, True


def _sys_info_little_endian(root: object) -> bool | None:
    if isinstance(root, Dct):
        for key, value in root.pairs:
            if key == "little_endian" and isinstance(value, bool):
                return value
    return None


def _string_list(root: object) -> list[str] | None:
    if isinstance(root, Lst) and all(isinstance(item, str) for item in root.items):
        return list(root.items)
    return None
