"""Sharded checkpoints: ``*.safetensors.index.json`` / ``pytorch_model.bin.index.json`` against the shards.

The index is a claim about the shards: its ``weight_map`` must name files of the release (never a path
that leaves it), every tensor it lists must be in the shard it names, every tensor of the shards must be
listed, and ``metadata.total_size`` (the sum of tensor data bytes) must equal what the headers say.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Mapping, Sequence

from openaudit.errors import MalformedInput
from openaudit.findings import Finding, finding
from openaudit.inspect.tensors import WeightsFileScan
from openaudit.limits import load_json_bounded, open_regular
from openaudit.release import Release, ReleaseFile

MAX_INDEX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ShardIndex:
    path: str
    weight_map: Mapping[str, str]  # tensor name -> release path of the shard
    total_size: int | None
    total_parameters: int | None
    shards: tuple[str, ...]


@dataclass(frozen=True)
class IndexCheck:
    index: ShardIndex | None
    findings: tuple[Finding, ...]
    observed_total_size: int | None
    # Weights files in the index's folder, of its format, that its weight_map never names. Whether that is
    # a problem depends on the other indexes and on copies of the model, so inspect_weights decides.
    unlisted: tuple[str, ...] = ()


def is_index(path: str) -> bool:
    return path.lower().endswith(".index.json") and (".safetensors" in path.lower() or ".bin" in path.lower())


def index_format(path: str) -> str:
    """The weights format of the shards an index describes (``*.safetensors.index.json`` or ``*.bin.index.json``)."""
    return "safetensors" if ".safetensors" in path.lower() else "pickle"


def read_index(entry: ReleaseFile, release: Release) -> tuple[ShardIndex | None, list[Finding]]:
    findings: list[Finding] = []
    try:
        with open_regular(entry.location) as handle:
            data = handle.read(MAX_INDEX_BYTES + 1)
        if len(data) > MAX_INDEX_BYTES:
            raise MalformedInput("file-too-large", f"index larger than {MAX_INDEX_BYTES} bytes")
        document = load_json_bounded(data, entry.path)
    except MalformedInput as exc:
        return None, [finding(exc.finding_id, str(exc), entry.path)]
    if not isinstance(document, dict) or not isinstance(document.get("weight_map"), dict):
        return None, [finding("index-malformed", "the index has no weight_map object", entry.path)]
    metadata = document.get("metadata") if isinstance(document.get("metadata"), dict) else {}
    base = posixpath.dirname(entry.path)
    weight_map: dict[str, str] = {}
    for tensor, shard in document["weight_map"].items():
        if not isinstance(shard, str):
            findings.append(finding("index-malformed", f"weight_map entry for {tensor!r} is not a file name", entry.path))
            continue
        target = _inside(base, shard)
        if target is None:
            findings.append(
                finding("path-escape", f"weight_map sends {tensor!r} to {shard!r}, outside the release; not opened", entry.path)
            )
            continue
        weight_map[tensor] = target
    shards = tuple(sorted(set(weight_map.values())))
    for shard in shards:
        if release.file(shard) is None:
            findings.append(finding("index-missing-shard", f"the index names {shard}, which the release lacks", entry.path))
    return (
        ShardIndex(entry.path, weight_map, _count(metadata, "total_size", entry.path, findings),
                   _count(metadata, "total_parameters", entry.path, findings), shards),
        findings,
    )


def check_index(entry: ReleaseFile, release: Release, scans: Mapping[str, WeightsFileScan]) -> IndexCheck:
    """Compare one index with the headers of the shards it names (``scans`` keyed by release path)."""
    index, findings = read_index(entry, release)
    if index is None:
        return IndexCheck(None, tuple(findings), None)
    located: dict[str, str] = {}
    observed_bytes = 0
    complete = True
    for shard in index.shards:
        scan = scans.get(shard)
        if scan is None:
            complete = False
            if release.file(shard) is not None:
                findings.append(finding("index-shard-not-weights",
                                        f"the index names {shard}, which is not a weights file openaudit could read; "
                                        "the tensors it maps there cannot be loaded", entry.path))
            continue
        complete = complete and scan.complete
        for tensor in scan.tensors:
            observed_bytes += tensor.nbytes or 0
            located.setdefault(tensor.name, shard)
    for tensor, shard in sorted(index.weight_map.items()):
        if shard not in scans:
            continue
        actual = located.get(tensor)
        if actual is None:
            findings.append(finding("index-tensor-missing", f"the index puts {tensor!r} in {shard}, which does not hold it", entry.path))
        elif actual != shard:
            findings.append(finding("index-wrong-shard", f"the index puts {tensor!r} in {shard}, but it is in {actual}", entry.path))
    for tensor, shard in sorted(located.items()):
        if tensor not in index.weight_map:
            findings.append(finding("index-tensor-unlisted", f"{shard} holds {tensor!r}, which the index does not list", entry.path))
    observed = observed_bytes if complete else None
    if index.total_size is not None and observed is not None and index.total_size != observed:
        findings.append(
            finding(
                "index-total-size-mismatch",
                f"metadata.total_size says {index.total_size:,} bytes; the shards hold {observed:,} bytes of tensor data",
                entry.path,
            )
        )
    base = posixpath.dirname(entry.path)
    fmt = index_format(entry.path)
    unlisted = tuple(sorted(path for path, scan in scans.items()
                            if posixpath.dirname(path) == base and scan.format == fmt and path not in index.shards))
    return IndexCheck(index, tuple(findings), observed, unlisted)


def _inside(base: str, name: str) -> str | None:
    if not name or name.startswith("/") or "\\" in name or "\x00" in name or (len(name) > 1 and name[1] == ":"):
        return None
    joined = posixpath.normpath(posixpath.join(base, name))
    if joined == ".." or joined.startswith("../") or ".." in name.split("/"):
        return None
    return joined


def _count(metadata: Mapping[str, object], key: str, path: str, findings: list[Finding]) -> int | None:
    """``metadata[key]`` as a non-negative integer (a string of digits is accepted); None when absent or null.

    Any other value ("abc", 1e400, -1, true, 12.5) is a claim that cannot be checked: a finding, not silence.
    """
    value = metadata.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 30:
        return int(value)
    shown = repr(value) if isinstance(value, (str, float, bool)) and len(repr(value)) <= 60 else type(value).__name__
    findings.append(finding("index-malformed", f"metadata.{key} is {shown}, not a non-negative integer; not checked", path))
    return None


def shard_paths(indexes: Sequence[IndexCheck]) -> set[str]:
    return {shard for check in indexes if check.index for shard in check.index.shards}
