"""Run the pipeline: source -> release -> inspect -> evidence -> verify -> score -> Report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from openaudit import __version__
from openaudit.findings import Finding
from openaudit.inspect.card import find_card
from openaudit.inspect.checksums import published_checksums, verify_checksums
from openaudit.inspect.weights import WeightsInspection, inspect_weights, weights_kinds
from openaudit.progress import byte_progress
from openaudit.release import KINDS, Release
from openaudit.report import model
from openaudit.source.open import open_source


@dataclass(frozen=True)
class AuditOptions:
    hash_weights: bool = True
    show_progress: bool = False
    hash_workers: int = 4


def audit(source: str, options: AuditOptions = AuditOptions()) -> model.Report:
    """Audit a release and return the Report. Raises UsageError if the source does not exist."""
    release = open_source(source)
    weights = inspect_weights(release)
    release = release.with_kinds(weights_kinds(weights))
    card = find_card(release)

    weight_entries = [release.file(scan.path) for scan in weights.scans]
    published, checksum_findings = published_checksums(release)
    with byte_progress("sha256", sum(e.size for e in weight_entries), options.show_progress and options.hash_weights) as advance:
        checksums, mismatch_findings = verify_checksums(
            weight_entries, published, compute=options.hash_weights, workers=options.hash_workers, progress=advance
        )

    findings: list[Finding] = [*release.findings, *weights.findings, *checksum_findings, *mismatch_findings]
    if card is not None:
        findings.extend(card.findings)
    return model.Report(
        schema_version=model.SCHEMA_VERSION,
        tool=model.ToolInfo("openaudit", __version__),
        source=model.SourceInfo(release.source_kind, release.display_root or str(release.root), release.repo_id, release.revision),
        release=_release_summary(release),
        weights=_weights_summary(release, weights, checksums),
        findings=tuple(sorted(findings, key=lambda f: (-f.severity.rank, f.id, f.location or ""))),
    )


def _release_summary(release: Release) -> model.ReleaseSummary:
    files = tuple(model.InventoryFile(f.path, f.kind, f.size) for f in release.files)
    counts = Counter(f.kind for f in release.files)
    return model.ReleaseSummary(files, sum(f.size for f in release.files), {kind: counts[kind] for kind in KINDS if counts[kind]})


def _weights_summary(release: Release, weights: WeightsInspection, checksums) -> model.Weights:
    per_file_params: Counter[str] = Counter()
    per_file_tensors: Counter[str] = Counter()
    for tensor in weights.tensors:
        per_file_tensors[tensor.file] += 1
        if tensor.role == "parameter":
            per_file_params[tensor.file] += tensor.elements
    files = []
    for scan in weights.scans:
        entry = release.file(scan.path)
        check = checksums[scan.path]
        files.append(
            model.WeightsFile(
                path=scan.path, format=scan.format, container=scan.container, bytes=entry.size,
                tensors=per_file_tensors[scan.path], parameters=per_file_params[scan.path],
                sha256=check.sha256, checksum=check.status, checksum_source=check.source,
                complete=scan.complete, imports=scan.imports,
            )
        )
    indexes = tuple(
        model.ShardIndexSummary(c.index.path, len(c.index.shards), len(c.index.weight_map), c.index.total_size, c.observed_total_size)
        for c in weights.indexes
        if c.index is not None
    )
    return model.Weights(
        format=weights.format,
        files=tuple(files),
        tensors=len(weights.tensors),
        parameters=model.Parameters(weights.parameters, weights.parameters_by_dtype()),
        buffers=tuple(model.Buffer(b.name, b.file, b.dtype, b.shape, b.elements, b.reason) for b in weights.buffers),
        elements=weights.elements,
        indexes=indexes,
        metadata={scan.path: dict(scan.metadata) for scan in weights.scans if scan.metadata},
    )
