"""What the component assessment returns: statuses, evidence, the licenses found and the whole result.

Statuses (relative to MOF's license lists in ``checks/mof.yaml``, license names normalised to SPDX ids):
``open`` (in the release under an open license), ``restricted`` (in the release under any other license,
including one openaudit does not recognise), ``closed`` (in the release with no license, or "all rights
reserved") and ``absent`` (not in the release: a link in the card is a claim and leaves it absent).
"""

from __future__ import annotations

from dataclasses import dataclass

OPEN = "open"
RESTRICTED = "restricted"
CLOSED = "closed"
ABSENT = "absent"
STATUSES = (OPEN, RESTRICTED, CLOSED, ABSENT)

# Kinds of evidence: found in the release (establishes the component), a link to it (a claim), or something
# looked at that falls short (a README that is not a model card, a checkpoint that is not a series).
FOUND = "found"
LINKED = "linked"
INSUFFICIENT = "insufficient"


@dataclass(frozen=True)
class EvidenceItem:
    """One thing a reader can follow: a file (and line), a link, with what it shows."""

    kind: str  # found | linked | insufficient
    note: str
    rule: str  # <component>/<rule>
    path: str | None = None
    line: int | None = None
    url: str | None = None

    @property
    def where(self) -> str:
        if self.url and not self.path:
            return self.url
        text = self.path or ""
        return f"{text}:{self.line}" if self.line else text

    def to_dict(self) -> dict:
        return {"kind": self.kind, "path": self.path, "line": self.line, "url": self.url, "note": self.note,
                "rule": self.rule}


@dataclass(frozen=True)
class LicenseChoice:
    """The license that covers some files: which (catalogue key), where it was read, and what MOF makes of it."""

    key: str | None  # catalogue key (the SPDX id where there is one); None: no license, or not recognised
    source: str  # a path, or "README.md:24" for a declaration
    origin: str  # own | release | <scope name>
    status: str  # open | restricted | closed
    reason: str  # why the status, in words
    name: str | None = None  # the license's full name
    declared: bool = False  # from a declaration (card, metadata), not a license text in a file

    def to_dict(self) -> dict:
        return {"license": self.key, "name": self.name, "source": self.source, "origin": self.origin,
                "status": self.status, "reason": self.reason}


@dataclass(frozen=True)
class ComponentAssessment:
    id: int
    name: str
    type: str
    status: str  # open | restricted | closed | absent
    license: str | None  # the license that decides the status (SPDX id where there is one)
    license_source: str | None
    licenses: tuple[LicenseChoice, ...]  # every distinct license covering the component's files
    evidence: tuple[EvidenceItem, ...]  # at most limits.max_evidence items, found ones first
    evidence_found: int  # how many files (or card places) established the component, in all
    sentence: str
    claimed: bool | None = None  # listed in the MOF file; None when there is no MOF file
    claim_supported: bool | None = None
    matched: tuple[tuple[str, EvidenceItem], ...] = ()  # every rule that matched, with its first item

    @property
    def present(self) -> bool:
        return self.status != ABSENT

    @property
    def linked(self) -> bool:
        return any(item.kind == LINKED for _, item in self.matched)

    @property
    def links(self) -> tuple[EvidenceItem, ...]:
        return tuple(item for _, item in self.matched if item.kind == LINKED)

    def rules_found(self) -> frozenset[str]:
        return frozenset(key for key, item in self.matched if item.kind == FOUND)

    def rule_item(self, key: str) -> EvidenceItem | None:
        return next((item for rule, item in self.matched if rule == key), None)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "status": self.status,
            "license": self.license,
            "license_source": self.license_source,
            "licenses": [choice.to_dict() for choice in self.licenses],
            "claimed": self.claimed,
            "claim_supported": self.claim_supported,
            "linked": self.linked,
            "evidence": [item.to_dict() for item in self.evidence],
            "evidence_found": self.evidence_found,
            "sentence": self.sentence,
        }


@dataclass(frozen=True)
class NormalizedLicense:
    original: str
    spdx: str | None  # None when the name is not one openaudit recognises
    source: str

    def to_dict(self) -> dict:
        return {"original": self.original, "spdx": self.spdx, "source": self.source}


@dataclass(frozen=True)
class ComponentsResult:
    components: tuple[ComponentAssessment, ...]
    release_license: LicenseChoice | None
    licenses_normalized: tuple[NormalizedLicense, ...]
    files: int  # files in the release
    weights_files: int
    card_path: str | None
    card_topics: tuple[str, ...]  # model-card topics the best card covers
    limits_hit: tuple[str, ...] = ()
    rubric_name: str = ""
    rubric_version: str = ""

    def component(self, key: int | str) -> ComponentAssessment:
        for component in self.components:
            if (component.id if isinstance(key, int) else component.name) == key:
                return component
        raise KeyError(key)


def spdx_id(key: str | None) -> str | None:
    """The SPDX id of a license catalogue key (the key itself where it has none, or is not in the catalogue)."""
    if key is None:
        return None
    from openaudit.inspect.license import catalogue

    entry = catalogue().get(key)
    return (entry.spdx or entry.key) if entry is not None else key
