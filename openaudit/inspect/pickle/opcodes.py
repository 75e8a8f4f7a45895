"""The pickle byte stream: which opcodes exist and what argument each takes, and a bounded reader.

A pickle is a program for a stack machine; this module knows its instruction set (pickletools' names
and argument kinds) and reads a byte range of a file through a small window, skipping large payloads
with a seek so that a 3 GB array costs nothing. What the opcodes *do* is :mod:`.machine`'s business.
"""

from __future__ import annotations

import io
import struct
from typing import BinaryIO

# ---------------------------------------------------------------------------------------------------
# What is read of an argument. A crafted pickle can describe anything; these bound what is kept.

# Payloads up to this size are read (names, dict keys, small arrays); larger ones are skipped.
INLINE_PAYLOAD_BYTES = 4096
# Strings longer than this are skipped and kept as opaque text (tensor names are short).
MAX_TEXT_BYTES = 64 * 1024
# Protocol-0 lines (GLOBAL names, INT, STRING…) longer than this are malformed.
MAX_LINE_BYTES = 64 * 1024
# Integers wider than this many bytes (LONG1/LONG4) are kept opaque.
MAX_LONG_BYTES = 64
# The reader fetches this much around small reads; Grok-1 leaves need about 300 bytes of opcodes.
READ_CHUNK = 2048

PROTOCOL_MAX = 5

# ---------------------------------------------------------------------------------------------------
# Opcode table (pickletools names). Argument kinds:
#   ""          no argument
#   u1 u2 u4 u8 unsigned little-endian integers; i4 signed
#   long1 long4 length-prefixed little-endian two's complement integers
#   b1 b4 b8    length-prefixed byte payloads (b4 of BINSTRING is a signed length)
#   t1 t4 t8    length-prefixed UTF-8 text
#   f8          big-endian double
#   nl_*        newline-terminated protocol-0 arguments

OPCODES: dict[int, tuple[str, str]] = {
    ord("("): ("MARK", ""),
    ord("."): ("STOP", ""),
    ord("0"): ("POP", ""),
    ord("1"): ("POP_MARK", ""),
    ord("2"): ("DUP", ""),
    ord("F"): ("FLOAT", "nl_float"),
    ord("I"): ("INT", "nl_int"),
    ord("J"): ("BININT", "i4"),
    ord("K"): ("BININT1", "u1"),
    ord("L"): ("LONG", "nl_long"),
    ord("M"): ("BININT2", "u2"),
    ord("N"): ("NONE", ""),
    ord("P"): ("PERSID", "nl_ascii"),
    ord("Q"): ("BINPERSID", ""),
    ord("R"): ("REDUCE", ""),
    ord("S"): ("STRING", "nl_string"),
    ord("T"): ("BINSTRING", "bs4"),
    ord("U"): ("SHORT_BINSTRING", "bs1"),
    ord("V"): ("UNICODE", "nl_unicode"),
    ord("X"): ("BINUNICODE", "t4"),
    ord("a"): ("APPEND", ""),
    ord("b"): ("BUILD", ""),
    ord("c"): ("GLOBAL", "nl_global"),
    ord("d"): ("DICT", ""),
    ord("}"): ("EMPTY_DICT", ""),
    ord("e"): ("APPENDS", ""),
    ord("g"): ("GET", "nl_int"),
    ord("h"): ("BINGET", "u1"),
    ord("i"): ("INST", "nl_global"),
    ord("j"): ("LONG_BINGET", "u4"),
    ord("l"): ("LIST", ""),
    ord("]"): ("EMPTY_LIST", ""),
    ord("o"): ("OBJ", ""),
    ord("p"): ("PUT", "nl_int"),
    ord("q"): ("BINPUT", "u1"),
    ord("r"): ("LONG_BINPUT", "u4"),
    ord("s"): ("SETITEM", ""),
    ord("t"): ("TUPLE", ""),
    ord(")"): ("EMPTY_TUPLE", ""),
    ord("u"): ("SETITEMS", ""),
    ord("G"): ("BINFLOAT", "f8"),
    # protocol 2
    0x80: ("PROTO", "u1"),
    0x81: ("NEWOBJ", ""),
    0x82: ("EXT1", "u1"),
    0x83: ("EXT2", "u2"),
    0x84: ("EXT4", "i4"),
    0x85: ("TUPLE1", ""),
    0x86: ("TUPLE2", ""),
    0x87: ("TUPLE3", ""),
    0x88: ("NEWTRUE", ""),
    0x89: ("NEWFALSE", ""),
    0x8A: ("LONG1", "long1"),
    0x8B: ("LONG4", "long4"),
    # protocol 3
    ord("B"): ("BINBYTES", "b4"),
    ord("C"): ("SHORT_BINBYTES", "b1"),
    # protocol 4
    0x8C: ("SHORT_BINUNICODE", "t1"),
    0x8D: ("BINUNICODE8", "t8"),
    0x8E: ("BINBYTES8", "b8"),
    0x8F: ("EMPTY_SET", ""),
    0x90: ("ADDITEMS", ""),
    0x91: ("FROZENSET", ""),
    0x92: ("NEWOBJ_EX", ""),
    0x93: ("STACK_GLOBAL", ""),
    0x94: ("MEMOIZE", ""),
    0x95: ("FRAME", "u8"),
    # protocol 5
    0x96: ("BYTEARRAY8", "ba8"),
    0x97: ("NEXT_BUFFER", ""),
    0x98: ("READONLY_BUFFER", ""),
}

# Opcodes that can begin a pickle without a PROTO header: protocol 0/1 ones, and protocol 2+ ones that
# need no stack (the unpickler accepts a protocol-4 stream whose PROTO was left out).
PROTO0_FIRST = frozenset(
    [ord(c) for c in "(cNIJKLMFGSTUVX]})iplqdtBC"] + [0x88, 0x89, 0x8A, 0x8B, 0x8C, 0x8D, 0x8E, 0x8F, 0x95, 0x96]
)

FIXED_INT = {kind: struct.Struct(fmt) for kind, fmt in (("u1", "<B"), ("u2", "<H"), ("u4", "<I"), ("i4", "<i"),
                                                         ("u8", "<Q"))}
BIG_ENDIAN_DOUBLE = struct.Struct(">d")


# ---------------------------------------------------------------------------------------------------
# Reading a byte range without reading its payloads.


class PickleTruncated(Exception):
    """The region ends inside an opcode."""


class PickleMalformed(Exception):
    """The opcode stream is invalid where an unpickler would stop."""


class ByteRange:
    """Reads ``[start, end)`` of a seekable binary handle through a small window.

    Small reads are served from a window of ``READ_CHUNK`` bytes; ``skip`` moves past a payload with
    no read at all, so a 3 GB array costs nothing. ``bytes_read`` counts what came from the handle.
    ``window`` and ``window_start`` are read directly by the machine's hot loop (one call fewer per opcode).
    """

    __slots__ = ("handle", "start", "end", "pos", "window", "window_start", "bytes_read")

    def __init__(self, handle: BinaryIO, start: int, end: int):
        self.handle = handle
        self.start = start
        self.end = end
        self.pos = start
        self.window = b""
        self.window_start = start
        self.bytes_read = 0

    @classmethod
    def of_bytes(cls, data: bytes) -> "ByteRange":
        return cls(io.BytesIO(data), 0, len(data))

    def remaining(self) -> int:
        return self.end - self.pos

    def read(self, size: int) -> bytes:
        if size > self.end - self.pos:
            raise PickleTruncated
        offset = self.pos - self.window_start
        if offset < 0 or offset + size > len(self.window):
            self._fill(size)
            offset = 0
        self.pos += size
        return self.window[offset : offset + size]

    def unpack(self, fmt: struct.Struct) -> tuple:
        """``fmt`` unpacked at the current position: straight from the window when it holds the bytes."""
        size = fmt.size
        offset = self.pos - self.window_start
        if 0 <= offset and offset + size <= len(self.window):  # the window never extends past ``end``
            self.pos += size
            return fmt.unpack_from(self.window, offset)
        return fmt.unpack(self.read(size))

    def peek(self, size: int) -> bytes:
        size = min(size, self.end - self.pos)
        start = self.pos
        data = self.read(size)
        self.pos = start
        return data

    def skip(self, size: int) -> None:
        if size > self.end - self.pos:
            raise PickleTruncated
        self.pos += size

    def readline(self, limit: int = MAX_LINE_BYTES) -> bytes:
        """Bytes up to and including the next newline (protocol-0 arguments).

        Searched in the window first: a protocol-0 pickle is mostly short lines, and refilling the window
        for each one (as a fixed-size peek would) costs two system calls a line.
        """
        collected = bytearray()
        while True:
            offset = self.pos - self.window_start
            if not 0 <= offset < len(self.window):
                if self.pos >= self.end:
                    raise PickleTruncated
                self._fill(1)
                offset = 0
            window = self.window
            cut = window.find(b"\n", offset)
            end = cut + 1 if cut >= 0 else len(window)
            collected += window[offset:end]
            self.pos += end - offset
            if len(collected) > limit + 1:  # the line and its newline
                raise PickleMalformed(f"a protocol-0 line is longer than {limit} bytes")
            if cut >= 0:
                return bytes(collected)

    def _fill(self, size: int) -> None:
        want = min(max(size, READ_CHUNK), self.end - self.pos)
        self.handle.seek(self.pos)
        parts = []
        got = 0
        while got < want:
            part = self.handle.read(want - got)
            if not part:
                break
            parts.append(part)
            got += len(part)
        self.bytes_read += got
        self.window = b"".join(parts)
        self.window_start = self.pos
        if got < size:
            # The handle is shorter than the size we were told: the file shrank or lied.
            raise PickleTruncated

