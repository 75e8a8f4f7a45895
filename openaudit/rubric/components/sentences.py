"""Each component's sentence: one quotable line from its evidence, and the phrases it is made of."""

from __future__ import annotations

from typing import Sequence

from openaudit.rubric.components.results import (
    ABSENT,
    INSUFFICIENT,
    LINKED,
    OPEN,
    RESTRICTED,
    ComponentAssessment,
    EvidenceItem,
    LicenseChoice,
)
from openaudit.rubric.components.rules import ComponentRules


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def files_phrase(files: int, weights_files: int) -> str:
    """"the 779 files of the release (770 of them weights)"."""
    text = f"the {_plural(files, 'file')} of the release" if files != 1 else "the 1 file of the release"
    if weights_files and weights_files != files:
        text += f" ({weights_files} of them weights)"
    return text


def _found_phrase(found: Sequence[EvidenceItem]) -> str:
    shown = [f"{item.where} ({item.note})" if item.where else item.note for item in found[:2]]
    if len(found) > 2:
        return f"{shown[0]}, {shown[1]} and {len(found) - 2} more"
    return " and ".join(shown)


def _license_phrase(choice: LicenseChoice) -> str:
    where = f"declared in {choice.source}" if choice.declared else choice.source
    return f"{choice.key or 'an unrecognised license'} ({where})"


def component_sentence(component: ComponentAssessment, rules: ComponentRules, found: Sequence[EvidenceItem],
                       others: Sequence[EvidenceItem], files: int, weights_files: int,
                       deciding: LicenseChoice | None) -> str:
    """One quotable sentence from the evidence, for example "Training code: not released; no training entry
    point or configuration found in the 14 files of the release"."""
    name = component.name
    if component.status == ABSENT:
        text = f"{name}: not released; {rules.absent} in {files_phrase(files, weights_files)}"
        links = [item for item in others if item.kind == LINKED]
        short = [item for item in others if item.kind == INSUFFICIENT]
        if links:
            targets = ", ".join(item.url or item.note for item in links[:3])
            more = f" and {len(links) - 3} more" if len(links) > 3 else ""
            text += f"; {links[0].path or 'the card'} links {targets}{more}, which the release does not contain (a link is a claim)"
        if short:
            text += f"; {short[0].note}"
        return text + "."
    found_text = _found_phrase(found)
    if component.status == OPEN:
        return f"{name}: open under {_license_phrase(deciding)}; found {found_text}."
    if component.status == RESTRICTED:
        license_name = deciding.name or deciding.key or "a license openaudit does not recognise"
        return f"{name}: released under {license_name} ({deciding.source}), which is not open: {deciding.reason}; found {found_text}."
    return f"{name}: released without a license; found {found_text}."
