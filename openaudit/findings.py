"""Findings: problems the audit found, each described once as data in ``checks/findings/*.yaml``.

A finding instance carries the catalogue id, a severity, a message about this case and where it was
found. The catalogue gives every id a title and a remediation (Scorecard's checks-as-data), which the
SARIF and table outputs use; tests check that every id the code emits is in the catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Mapping

from openaudit.resources import data_dir, load_data_yaml


class Severity(str, Enum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.CRITICAL: 4, Severity.HIGH: 3, Severity.MEDIUM: 2, Severity.LOW: 1, Severity.INFO: 0}


@dataclass(frozen=True)
class FindingRule:
    """One catalogue entry: what a finding id means and what to do about it."""

    id: str
    severity: Severity
    title: str
    remediation: str


@dataclass(frozen=True)
class Finding:
    id: str
    severity: Severity
    message: str
    location: str | None = None


@lru_cache(maxsize=1)
def catalogue() -> Mapping[str, FindingRule]:
    """Every finding rule, from all ``checks/findings/*.yaml`` files; duplicate ids are an error."""
    rules: dict[str, FindingRule] = {}
    for path in sorted(data_dir("checks").joinpath("findings").glob("*.yaml")):
        entries = load_data_yaml(path) or []
        for entry in entries:
            rule = FindingRule(
                id=entry["id"],
                severity=Severity(entry["severity"]),
                title=entry["title"],
                remediation=entry["remediation"],
            )
            if rule.id in rules:
                raise ValueError(f"finding id {rule.id!r} is defined twice (second time in {path.name})")
            rules[rule.id] = rule
    return rules


def finding(rule_id: str, message: str, location: str | None = None, severity: Severity | None = None) -> Finding:
    """Build a finding for a catalogue id, with the catalogue's severity unless one is given."""
    rule = catalogue().get(rule_id)
    if rule is None:
        raise KeyError(f"finding id {rule_id!r} is not in checks/findings/*.yaml")
    return Finding(id=rule_id, severity=severity or rule.severity, message=message, location=location)
