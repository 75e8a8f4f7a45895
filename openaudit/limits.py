"""Bounds for reading hostile files: deadlines, size caps and opening without following links."""

from __future__ import annotations

import json
import os
import stat
import time
from contextlib import contextmanager
from typing import BinaryIO, Iterator

from openaudit.errors import MalformedInput, ParseTimeout

# One parser of one file may not take longer than this; parsers check it in every loop.
DEFAULT_PARSE_SECONDS = 5.0
# Small text files (cards, configs, licenses, checksum lists) are read whole up to this size.
MAX_TEXT_BYTES = 8 * 1024 * 1024


class Deadline:
    """A wall-clock budget that loops poll with ``check()``."""

    __slots__ = ("_limit", "_seconds", "_counter")

    def __init__(self, seconds: float = DEFAULT_PARSE_SECONDS):
        self._seconds = seconds
        self._limit = time.monotonic() + seconds
        self._counter = 0

    def check(self) -> None:
        # time.monotonic is cheap, but tight loops poll it only every 1024 calls.
        self._counter += 1
        if self._counter & 1023 == 0 and time.monotonic() > self._limit:
            raise ParseTimeout(f"parsing took longer than {self._seconds:g} s")

    def expired(self) -> bool:
        return time.monotonic() > self._limit

    def check_now(self) -> None:
        if time.monotonic() > self._limit:
            raise ParseTimeout(f"parsing took longer than {self._seconds:g} s")


@contextmanager
def open_regular(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a regular file for reading without following a final symlink and without blocking.

    FIFOs, devices and sockets are refused *after* opening with O_NONBLOCK and checking fstat, so a
    file swapped for a FIFO between listing and reading cannot hang the audit.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise MalformedInput("unreadable-file", f"cannot open: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise MalformedInput("special-file", "not a regular file")
        handle = os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise
    with handle:
        yield handle


def read_exact(handle: BinaryIO, size: int, what: str) -> bytes:
    """Read exactly ``size`` bytes or raise MalformedInput (truncated file)."""
    data = handle.read(size)
    if data is None or len(data) != size:
        raise MalformedInput("truncated-file", f"file ends inside {what}")
    return data


def read_text_bounded(path: str | os.PathLike, limit: int = MAX_TEXT_BYTES) -> str:
    """Read a small text file (at most ``limit`` bytes), decoding invalid UTF-8 with replacements."""
    with open_regular(path) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise MalformedInput("file-too-large", f"text file larger than {limit} bytes")
    return data.decode("utf-8", errors="replace")


def load_json_bounded(data: bytes | str, what: str, *, reject_duplicates: bool = True) -> object:
    """Parse JSON from a release: bounded nesting, duplicate keys refused, errors as MalformedInput."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedInput("invalid-json", f"{what} is not valid UTF-8 (byte {exc.start})") from None
    hook = _pairs_without_duplicates if reject_duplicates else None
    try:
        return json.loads(data, object_pairs_hook=hook)
    except RecursionError:
        raise MalformedInput("invalid-json", f"{what} nests too deeply") from None
    except _DuplicateKey as exc:
        raise MalformedInput("duplicate-key", f"{what} repeats the key {exc.args[0]!r}") from None
    except ValueError as exc:
        raise MalformedInput("invalid-json", f"{what} is not valid JSON: {exc}") from None


class _DuplicateKey(Exception):
    pass


def _pairs_without_duplicates(pairs: list[tuple[str, object]]) -> dict:
    result: dict = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result
