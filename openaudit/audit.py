"""Run the pipeline: source -> release -> inspect -> evidence -> verify -> score -> Report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from openaudit import __version__
from openaudit.evidence import ArchitectureEvidence, gather
from openaudit.findings import Finding, finding
from openaudit.inspect.card import find_card
from openaudit.inspect.checksums import published_checksums, verify_checksums
from openaudit.inspect.claim_sources import collect_claims, find_mof_file, load_mof_claims_file
from openaudit.inspect.license_files import LicenseEvidence, license_evidence
from openaudit.inspect.tensors import PARAMETER
from openaudit.inspect.weights import WeightsInspection, inspect_weights, weights_kinds
from openaudit.progress import byte_progress
from openaudit.release import KINDS, Release
from openaudit.report import model
from openaudit.source.open import open_source
from openaudit.verify import CONTRADICTED, Counts, verify_claims

if TYPE_CHECKING:
    from openaudit.run.runner import RunOptions


@dataclass(frozen=True)
class AuditOptions:
    hash_weights: bool = True
    show_progress: bool = False
    hash_workers: int = 4
    claims_file: str | None = None  # a Model Openness Tool YAML file (--claims)
    run: "RunOptions | None" = None  # --run: load the weights with JAX and run them (imports jax)


def audit(source: str, options: AuditOptions = AuditOptions()) -> model.Report:
    """Audit a release and return the Report. Raises UsageError if the source does not exist."""
    mof_claims = load_mof_claims_file(options.claims_file) if options.claims_file else None
    release = open_source(source)
    weights = inspect_weights(release)
    release = release.with_kinds(weights_kinds(weights))
    card = find_card(release)
    findings: list[Finding] = [*release.findings, *weights.findings]
    if card is not None:
        findings.extend(card.findings)

    weight_entries = [release.file(scan.path) for scan in weights.scans]
    published, checksum_findings = published_checksums(release, card)
    with byte_progress("sha256", sum(e.size for e in weight_entries), options.show_progress and options.hash_weights) as advance:
        checksums, mismatch_findings = verify_checksums(
            weight_entries, published, compute=options.hash_weights, workers=options.hash_workers, progress=advance
        )
    findings += [*checksum_findings, *mismatch_findings]

    evidence = gather(release, weights)
    findings.extend(evidence.findings)
    mof = mof_claims or find_mof_file(release, findings)
    claims = collect_claims(release, card, weights, evidence.config_json, evidence.config_path, mof)
    licenses = license_evidence(release, card, claims)
    findings.extend(licenses.findings)
    verdicts = verify_claims(
        claims, evidence, _counts(weights, evidence.architecture),
        licenses_detected=[(d.key, d.source) for d in licenses.detected],
        total_sizes={check.index.path: check.observed_total_size for check in weights.indexes if check.index},
    )
    findings.extend(
        finding("claim-contradicted", f"{v.subject}: the release says {v.claimed}; {v.reason}", v.source)
        for v in verdicts if v.status == CONTRADICTED
    )
    from openaudit.rubric.openness import assess_openness

    openness = assess_openness(release, card, weights, evidence.architecture, licenses, mof)
    findings.extend(openness.findings)
    run_result = None
    if options.run is not None:
        from openaudit.run.runner import run_release

        run_result = run_release(release, weights, evidence.architecture, options.run)
        findings.extend(run_result.findings)
    if evidence.architecture.status == "mismatch":
        hard = evidence.architecture.check.hard_mismatches
        findings.append(finding("architecture-mismatch",
                                f"the weights are not a {evidence.architecture.family} model with this config: "
                                f"{len(hard)} differences, first {hard[0].kind} {hard[0].tensor}",
                                evidence.architecture.config_source))

    return model.Report(
        schema_version=model.SCHEMA_VERSION,
        tool=model.ToolInfo("openaudit", __version__),
        source=model.SourceInfo(release.source_kind, release.display_root or str(release.root), release.repo_id, release.revision),
        release=_release_summary(release),
        weights=_weights_summary(release, weights, checksums, evidence.architecture),
        findings=tuple(sorted(cap_findings(findings), key=lambda f: (-f.severity.rank, f.id, f.location or ""))),
        architecture=_architecture_summary(evidence.architecture),
        license=_license_summary(licenses),
        claims=tuple(model.ClaimResult(v.subject, v.claimed, v.observed, v.status, v.source, v.reason, v.text) for v in verdicts),
        openness=openness.to_dict(),
        run=run_result.to_dict() if run_result is not None else None,
    )


MAX_FINDINGS_PER_KIND = 20
MAX_LISTED_IMPORTS = 200  # globals listed per pickle file in the report (all are counted)


def cap_findings(findings: list[Finding]) -> list[Finding]:
    """At most ``MAX_FINDINGS_PER_KIND`` findings of one id per file, then one that counts the rest.

    A hostile file can produce a finding per opcode or per member; a reader needs the first few and the
    count, and a report must stay small enough to read and to parse.
    """
    kept: list[Finding] = []
    counts: Counter[tuple[str, str]] = Counter()
    first: dict[tuple[str, str], Finding] = {}
    for item in findings:
        key = (item.id, (item.location or "").split(":", 1)[0])
        counts[key] += 1
        if counts[key] <= MAX_FINDINGS_PER_KIND:
            kept.append(item)
            first.setdefault(key, item)
    for key, count in counts.items():
        if count > MAX_FINDINGS_PER_KIND:
            sample = first[key]
            kept.append(Finding(sample.id, sample.severity,
                                f"… and {count - MAX_FINDINGS_PER_KIND:,} more findings like this one in the same file",
                                key[1] or None))
    return kept


def _counts(weights: WeightsInspection, architecture: ArchitectureEvidence) -> Counts:
    """What the weights hold. With a matching architecture the count excludes tied copies and includes the
    optional tensors present (a pooler, task heads), and the family splits it into embedding and the rest."""
    if architecture.status == "match" and architecture.counts is not None:
        counts, observed = architecture.counts, architecture.check.observed_parameters
        experts = getattr(architecture.config, "num_experts", None) or None
        return Counts(observed, observed - counts.embedding, counts.one_expert_path if experts else None, experts)
    return Counts(weights.parameters if weights.tensors else None)


def _architecture_summary(architecture: ArchitectureEvidence) -> model.Architecture:
    check = architecture.check
    counts = architecture.counts
    return model.Architecture(
        family=architecture.family,
        status=architecture.status,
        reason=architecture.reason,
        config_source=architecture.config_source,
        expected_parameters=check.expected_parameters if check else (counts.total if counts is not None else None),
        observed_parameters=check.observed_parameters if check else None,
        mismatches=tuple(model.Mismatch(m.kind, m.tensor, m.expected, m.observed) for m in check.mismatches) if check else (),
        counts=model.ParameterCounts(counts.total, counts.embedding, counts.non_embedding, counts.active, counts.one_expert_path)
        if counts is not None else None,
    )


def _license_summary(licenses: LicenseEvidence) -> model.License:
    from openaudit.inspect.license import catalogue

    verdict = licenses.verdict
    entries = catalogue()
    keys = [*verdict.declared, *(d.key for d in licenses.detected)]
    terms = []
    for key in dict.fromkeys(keys):
        entry = entries.get(key)
        if entry is not None:
            terms.append(model.LicenseTerms(entry.key, entry.name, entry.osi_approved, entry.open_data, entry.non_commercial,
                                            tuple(r.summary for r in entry.use_restrictions)))
    return model.License(
        declared=verdict.declared,
        detected=licenses.detected[0].key if licenses.detected else None,
        status=verdict.status,
        osi_approved=verdict.osi_approved,
        reason=verdict.reason,
        detections=tuple(model.LicenseDetected(d.key, d.source, d.method, round(d.confidence, 3), d.line) for d in licenses.detected),
        declarations=tuple({"license": key, "source": source} for key, source in licenses.declared),
        terms=tuple(terms),
    )


def _release_summary(release: Release) -> model.ReleaseSummary:
    files = tuple(model.InventoryFile(f.path, f.kind, f.size) for f in release.files)
    counts = Counter(f.kind for f in release.files)
    return model.ReleaseSummary(files, sum(f.size for f in release.files), {kind: counts[kind] for kind in KINDS if counts[kind]})


def _weights_summary(release: Release, weights: WeightsInspection, checksums,
                     architecture: ArchitectureEvidence) -> model.Weights:
    tied_keys = architecture.tied_copy_keys()
    # A tied copy stored in a buffer's role is already listed under buffers; only parameters are moved.
    tied = [t for t in weights.tensors if t.role == PARAMETER and (t.file, t.name) in tied_keys]
    per_file_params: Counter[str] = Counter()
    per_file_tensors: Counter[str] = Counter()
    by_dtype: Counter[str] = Counter()
    for tensor in weights.tensors:
        per_file_tensors[tensor.file] += 1
        if tensor.role == PARAMETER and (tensor.file, tensor.name) not in tied_keys:
            per_file_params[tensor.file] += tensor.elements
            by_dtype[tensor.dtype] += tensor.elements
    files = []
    for scan in weights.scans:
        entry = release.file(scan.path)
        check = checksums[scan.path]
        files.append(
            model.WeightsFile(
                path=scan.path, format=scan.format, container=scan.container, bytes=entry.size,
                tensors=per_file_tensors[scan.path] if scan.path not in weights.alternates else len(scan.tensors),
                parameters=per_file_params[scan.path],
                sha256=check.sha256, checksum=check.status, checksum_source=check.source,
                complete=scan.complete, imports=scan.imports[:MAX_LISTED_IMPORTS], imports_total=len(scan.imports),
                copy="alternate" if scan.path in weights.alternates else "primary",
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
        parameters=model.Parameters(sum(by_dtype.values()), dict(sorted(by_dtype.items()))),
        buffers=tuple(model.Buffer(b.name, b.file, b.dtype, b.shape, b.elements, b.reason) for b in weights.buffers),
        elements=weights.elements,
        tied_copies=tuple(model.TiedCopy(t.name, t.file, t.elements) for t in tied),
        indexes=indexes,
        metadata={scan.path: dict(scan.metadata) for scan in weights.scans if scan.metadata},
    )
