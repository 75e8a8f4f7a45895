"""Checksums: what the release publishes, and sha256 of every weights file, streamed in parallel."""

from __future__ import annotations

import hashlib
import posixpath
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

from openaudit.errors import MalformedInput
from openaudit.findings import Finding, finding
from openaudit.limits import open_regular, read_text_bounded
from openaudit.release import CHECKSUMS, MODEL_CARD, Release, ReleaseFile

if TYPE_CHECKING:
    from openaudit.inspect.card import ModelCard

VERIFIED = "verified"
MISMATCH = "mismatch"
UNPUBLISHED = "unpublished"
SKIPPED = "skipped"  # --no-hash: nothing was computed

_CHUNK = 8 * 1024 * 1024
_HEX64 = r"[0-9a-fA-F]{64}"
# "<hex>  name", "<hex> *name" (sha256sum), "name: <hex>", "| name | <hex> |" (card tables, lists).
_GNU_LINE = re.compile(rf"^\s*({_HEX64})\s+\*?(\S.*?)\s*$")
_BSD_LINE = re.compile(rf"^\s*SHA256\s*\((.+?)\)\s*=\s*({_HEX64})\s*$", re.I)
_HEX_ANYWHERE = re.compile(rf"(?<![0-9a-fA-F])({_HEX64})(?![0-9a-fA-F])")
_FILE_TOKEN = re.compile(r"[`'\"]?([\w./-]+\.[\w-]+|[\w./-]*tensor\d{5}_\d{3})[`'\"]?")


@dataclass(frozen=True)
class PublishedChecksum:
    sha256: str
    source: str  # where it was published: "SHA256SUMS:3", "README.md:41", "hf-cache blob name"


@dataclass(frozen=True)
class FileChecksum:
    path: str
    sha256: str | None
    status: str  # verified | mismatch | unpublished | skipped
    source: str | None


def published_checksums(release: Release, card: ModelCard | None = None) -> tuple[dict[str, PublishedChecksum], tuple[Finding, ...]]:
    """Every sha256 the release publishes for its own files, keyed by release path.

    ``card`` is the model card the audit already read: its text is used rather than reading the file again
    (a card that could not be read has its finding on the card already).
    """
    published: dict[str, PublishedChecksum] = {}
    findings: list[Finding] = []

    def add(path: str, digest: str, source: str) -> None:
        digest = digest.lower()
        earlier = published.get(path)
        if earlier is not None and earlier.sha256 != digest:
            findings.append(
                finding("conflicting-checksums", f"{earlier.source} and {source} publish different sha256 values", path)
            )
            return
        published.setdefault(path, PublishedChecksum(digest, source))

    for entry in release.files:
        if entry.published_sha256:
            add(entry.path, entry.published_sha256, "hf-cache blob name")
    for entry in release.of_kind(CHECKSUMS, MODEL_CARD):
        if card is not None and entry.path == card.path:
            text = card.text
        else:
            try:
                text = read_text_bounded(entry.location)
            except MalformedInput as exc:
                findings.append(finding(exc.finding_id, str(exc), entry.path))
                continue
        base = posixpath.dirname(entry.path)
        for line_number, name, digest in _checksum_lines(text, entry, release):
            target = _resolve(base, name)
            if target is None:
                findings.append(
                    finding("path-escape", f"checksum list names {name!r}, which leaves the release", f"{entry.path}:{line_number}")
                )
            elif release.file(target) is not None:
                add(target, digest, f"{entry.path}:{line_number}")
    return published, tuple(findings)


def _checksum_lines(text: str, entry: ReleaseFile, release: Release) -> Iterable[tuple[int, str, str]]:
    lone_name = entry.path[: -len(".sha256")] if entry.path.lower().endswith(".sha256") else None
    for number, line in enumerate(text.splitlines()[:100_000], start=1):
        if (match := _GNU_LINE.match(line)) is not None:
            yield number, match.group(2), match.group(1)
        elif (match := _BSD_LINE.match(line)) is not None:
            yield number, match.group(1), match.group(2)
        elif (match := _HEX_ANYWHERE.search(line)) is not None:
            names = [token for token in _FILE_TOKEN.findall(line.replace(match.group(1), " ")) if "." in token or "tensor" in token]
            if names:
                yield number, names[0], match.group(1)
            elif lone_name is not None:
                yield number, posixpath.basename(lone_name), match.group(1)


def _resolve(base: str, name: str) -> str | None:
    """The release path a checksum list names, or None if it leaves the release."""
    name = name.strip().replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return None
    joined = posixpath.normpath(posixpath.join(base, name.removeprefix("./")))
    if joined == ".." or joined.startswith("../"):
        return None
    return joined


def sha256_file(entry: ReleaseFile, on_bytes: Callable[[int], None] | None = None) -> str:
    """Stream a file through sha256 (hashlib releases the GIL, so threads hash files in parallel)."""
    digest = hashlib.sha256()
    with open_regular(entry.location) as handle:
        buffer = bytearray(_CHUNK)
        view = memoryview(buffer)
        while True:
            count = handle.readinto(buffer)
            if not count:
                break
            digest.update(view[:count])
            if on_bytes is not None:
                on_bytes(count)
    return digest.hexdigest()


def verify_checksums(
    files: Iterable[ReleaseFile],
    published: Mapping[str, PublishedChecksum],
    *,
    compute: bool,
    workers: int = 4,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, FileChecksum], tuple[Finding, ...]]:
    """Hash ``files`` (unless ``compute`` is False) and compare with what the release publishes."""
    files = list(files)
    results: dict[str, FileChecksum] = {}
    findings: list[Finding] = []
    if not compute:
        for entry in files:
            known = published.get(entry.path)
            results[entry.path] = FileChecksum(entry.path, None, SKIPPED, known.source if known else None)
        return results, ()

    def work(entry: ReleaseFile) -> tuple[ReleaseFile, str | None, str | None]:
        try:
            return entry, sha256_file(entry, progress), None
        except MalformedInput as exc:
            return entry, None, str(exc)
        except OSError as exc:
            return entry, None, exc.strerror or str(exc)

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(files)))) as pool:
        for entry, digest, error in pool.map(work, files):
            known = published.get(entry.path)
            if digest is None:
                findings.append(finding("unreadable-file", f"cannot hash: {error}", entry.path))
                results[entry.path] = FileChecksum(entry.path, None, SKIPPED, known.source if known else None)
            elif known is None:
                results[entry.path] = FileChecksum(entry.path, digest, UNPUBLISHED, None)
            elif known.sha256 == digest:
                results[entry.path] = FileChecksum(entry.path, digest, VERIFIED, known.source)
            else:
                results[entry.path] = FileChecksum(entry.path, digest, MISMATCH, known.source)
                findings.append(
                    finding(
                        "checksum-mismatch",
                        f"sha256 is {digest}, but {known.source} publishes {known.sha256}",
                        entry.path,
                    )
                )
    return results, tuple(findings)
