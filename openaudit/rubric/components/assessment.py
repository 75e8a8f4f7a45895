"""Which of the Model Openness Framework's 17 components a release contains, under which license, and why.

The detection rules are data (``checks/components.yaml``, :mod:`.rules`); ``assess_components`` applies
them to what the audit already read: the release inventory, the model card, the weights inspection, the
architecture check and the license evidence (:mod:`.detectors`), finds the license of each component's
files (:mod:`.licenses`) and decides its status (:mod:`.results`): when a component's files fall under
different licenses, the least open one decides. Each component gets a sentence (:mod:`.sentences`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from openaudit.release import WEIGHTS, Release
from openaudit.rubric.components.detectors import Detector
from openaudit.rubric.components.licenses import LicenseResolver
from openaudit.rubric.components.results import (
    ABSENT,
    CLOSED,
    FOUND,
    LINKED,
    OPEN,
    RESTRICTED,
    ComponentAssessment,
    ComponentsResult,
    EvidenceItem,
    LicenseChoice,
)
from openaudit.rubric.components.rules import DetectionRubric, detection_rubric
from openaudit.rubric.components.sentences import component_sentence

_STATUS_RANK = {CLOSED: 0, RESTRICTED: 1, OPEN: 2}  # least open first: the worst file decides


def assess_components(release: Release, card, weights, architecture, licenses,
                      rubric: DetectionRubric | None = None, *, claims_file: str | None = None) -> ComponentsResult:
    """Every MOF component of ``release``: status, license and evidence (see the module docstring).

    ``claims_file`` is the path of a MOF file whose license declarations (which the license evidence lists
    among the release's declarations) must not count as the release's license.
    """
    rubric = rubric or detection_rubric()
    detector = Detector(release, card, weights, architecture, rubric)
    license_resolver = LicenseResolver(release, card, licenses, rubric, detector.reader, claims_file)
    file_count = len(release.files)
    weights_files = sum(1 for f in release.files if f.kind == WEIGHTS)
    max_evidence = int(rubric.limits["max_evidence"])
    assessed = []
    for component in rubric.components:
        items: list[EvidenceItem] = []
        matched: dict[str, EvidenceItem] = {}
        for rule in component.rules:
            for item in detector.run(rule):
                matched.setdefault(item.rule, item)
                if item not in items:
                    items.append(item)
        # One item per file (or link): two rules finding train.py are one piece of evidence.
        card_path = card.path if card is not None else None
        found = _one_per_place([item for item in items if item.kind == FOUND], card_path)
        others = _one_per_place([item for item in items if item.kind != FOUND], card_path)
        chain = rubric.chains[component.chain]
        choices: list[LicenseChoice | None] = []
        if found:
            for path in dict.fromkeys(item.path or (card.path if card is not None else "") for item in found):
                choices.append(license_resolver.for_path(path, chain))
        status, deciding, distinct = _decide(found, choices)
        shown = (found + others)[:max_evidence]
        assessment = ComponentAssessment(
            id=component.id,
            name=component.name,
            type=component.type,
            status=status,
            license=deciding.key if deciding is not None else None,
            license_source=deciding.source if deciding is not None else None,
            licenses=distinct,
            evidence=tuple(shown),
            evidence_found=len(found),
            sentence="",
            matched=tuple(matched.items()),
        )
        assessed.append(replace(assessment, sentence=component_sentence(assessment, component, found, others,
                                                                        file_count, weights_files, deciding)))
    normalized = tuple(dict.fromkeys(license_resolver.normalized))
    return ComponentsResult(
        components=tuple(assessed),
        release_license=license_resolver.release_choice,
        licenses_normalized=normalized,
        files=file_count,
        weights_files=weights_files,
        card_path=card.path if card is not None else None,
        card_topics=detector.best_card_topics,
        limits_hit=detector.reader.limits_hit(),
        rubric_name=rubric.name,
        rubric_version=rubric.version,
    )


def _one_per_place(items: Sequence[EvidenceItem], card_path: str | None) -> list[EvidenceItem]:
    """One item per file, per place in the card (its line), per link."""
    kept: dict[tuple, EvidenceItem] = {}
    for item in items:
        if item.kind == LINKED:
            key: tuple = ("link", (item.url or item.note).lower())
        elif item.path is not None and item.path == card_path:
            key = ("card", item.line)
        else:
            key = ("file", item.path or item.note)
        kept.setdefault(key, item)
    return list(kept.values())


def _decide(found: Sequence[EvidenceItem], choices: Sequence[LicenseChoice | None]
            ) -> tuple[str, LicenseChoice | None, tuple[LicenseChoice, ...]]:
    if not found:
        return ABSENT, None, ()
    if any(choice is None for choice in choices):
        return CLOSED, None, tuple(dict.fromkeys(c for c in choices if c is not None))
    distinct = tuple(dict.fromkeys(choices))
    deciding = min(distinct, key=lambda c: _STATUS_RANK[c.status])
    return deciding.status, deciding, distinct
