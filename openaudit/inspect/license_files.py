"""Which licenses a release carries (license files, NOTICE files, terms pages, the card's license section)
and which it declares (card metadata, sentences, GGUF metadata, a MOF file)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from openaudit.errors import MalformedInput
from openaudit.findings import Finding, finding
from openaudit.inspect import claims as c
from openaudit.inspect.card import ModelCard
from openaudit.inspect.claims import Claim
from openaudit.inspect.license import (
    FULL_TEXT,
    NOTICE,
    LicenseDetection,
    LicenseVerdict,
    detect_in_card_section,
    detect_license_text,
    license_verdict,
    verdict_findings,
)
from openaudit.limits import read_text_bounded
from openaudit.release import LICENSE, Release

MAX_LICENSE_FILES = 32


@dataclass(frozen=True)
class LicenseEvidence:
    verdict: LicenseVerdict
    detected: tuple[LicenseDetection, ...]  # license texts found in files
    declared: tuple[tuple[str | None, str], ...]  # (key or None, source)
    findings: tuple[Finding, ...]


def license_evidence(release: Release, card: ModelCard | None, claims: Sequence[Claim]) -> LicenseEvidence:
    findings: list[Finding] = []
    detected: list[LicenseDetection] = []
    # A license file in a subfolder (data/LICENSE) covers that folder: it is a component's license, which the
    # openness assessment reads, not a statement about the whole release.
    for entry in [e for e in release.of_kind(LICENSE) if "/" not in e.path][:MAX_LICENSE_FILES]:
        try:
            text = read_text_bounded(entry.location, 2 * 1024 * 1024)
        except MalformedInput as exc:
            findings.append(finding(exc.finding_id, str(exc), entry.path))
            continue
        detection = detect_license_text(text, source=entry.path)
        if detection is not None:
            detected.append(detection)
    declared: list[tuple[str | None, str]] = []
    for claim in claims:
        if claim.subject == c.LICENSE:
            key = claim.claimed if isinstance(claim.claimed, str) and claim.claimed != "other" else None
            declared.append((key, claim.source))
    if card is not None:
        for detection in detect_in_card_section(card.text, card.path):
            source = f"{card.path}:{detection.line}" if detection.line else card.path
            if detection.method in (FULL_TEXT, NOTICE):
                detected.append(detection)
            elif not any(key == detection.key and src.startswith(card.path) for key, src in declared):
                declared.append((detection.key, source))
    verdict = license_verdict(declared, detected)
    findings.extend(verdict_findings(verdict, "license"))
    return LicenseEvidence(verdict, tuple(detected), tuple(declared), tuple(findings))
