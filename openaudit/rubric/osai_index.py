"""The European Open Source AI Index's dimensions, each open / partial / closed from the verified evidence.

The dimensions and what decides their level are data (``checks/osai_index.yaml``): a dimension is at the best
level when any of its ``open_when`` conditions holds, else at the middle level when any ``partial_when``
condition holds, else at the worst. A condition is a mapping whose keys must all hold (see ``CONDITIONS``).
Totals are computed as the index computes them: open 1, partial 0.5, closed 0; the score is the mean over the
dimensions (0..1), each category the mean of its dimensions, and the sum (0..N) as the original index had it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Mapping, Sequence

from openaudit.rubric.components import (
    ABSENT,
    LINKED,
    MAX_LINE_CHARS,
    OPEN,
    ComponentAssessment,
    ComponentsResult,
    EvidenceItem,
    FOUND,
    files_phrase,
)
from openaudit.rubric.loader import RubricError, load_rubric, rubric_path
from openaudit.rubric.osaid import check_components_known

# Condition keys and what they test, in words (for `openaudit rubric`).
CONDITIONS: Mapping[str, str] = {
    "open": "every listed component is in the release under an open license",
    "open_any": "one of the listed components is in the release under an open license",
    "present": "every listed component is in the release (any license)",
    "present_any": "one of the listed components is in the release",
    "present_count": "at least `min` of the listed components are in the release",
    "linked_any": "the card links one of the listed components (not in the release)",
    "rule_any": "one of the named detection rules found something in the release",
    "card": "a model card file exists",
    "card_topics_min": "the model card covers at least this many topics",
    "card_matches": "a line of the model card matches the pattern",
    "card_metadata": "the card's metadata has the key",
    "areas_open": "at least `min` areas are open (an area is open when one of its components is in the release and all of its components that are there are open)",
}


@dataclass(frozen=True)
class Dimension:
    id: str
    key: str
    name: str
    group: str
    components: tuple[int, ...]
    open_when: tuple[Mapping[str, Any], ...]
    partial_when: tuple[Mapping[str, Any], ...]
    levels: Mapping[str, str]  # level id -> what it means for this dimension


@dataclass(frozen=True)
class OsaiRubric:
    name: str
    version: str
    levels: tuple[tuple[str, float, str], ...]  # (id, value, symbol), best first
    groups: Mapping[str, str]
    dimensions: tuple[Dimension, ...]
    formula: str


@lru_cache(maxsize=1)
def osai_rubric() -> OsaiRubric:
    return osai_rubric_from_dict(load_rubric("osai_index"), str(rubric_path("osai_index")))


def osai_rubric_from_dict(data: Mapping[str, Any], where: str = "<osai_index rubric>") -> OsaiRubric:
    from openaudit.rubric.components import detection_rubric

    if data.get("kind") != "osai_index":
        raise RubricError(f"{where}: kind is {data.get('kind')!r}, expected 'osai_index'")
    check_components_known(data, where)
    levels = tuple((level["id"], float(level["value"]), level.get("symbol", "")) for level in data["scale"]["levels"]) \
        if data.get("scale") else ()
    if len(levels) != 3:
        raise RubricError(f"{where}: $.scale.levels: the index grades on three levels (open, partial, closed)")
    detection = detection_rubric()
    dimensions = []
    for index, entry in enumerate(data["criteria"]):
        at = f"$.criteria[{index}]"
        if not entry.get("open_when"):
            raise RubricError(f"{where}: {at}.open_when: a dimension needs the conditions of its best level")
        if not entry.get("group"):
            raise RubricError(f"{where}: {at}.group: every dimension belongs to a group")
        for which in ("open_when", "partial_when"):
            for i, condition in enumerate(entry.get(which, ())):
                for rule in condition.get("rule_any", ()):
                    if detection.rule(rule) is None:
                        raise RubricError(f"{where}: {at}.{which}[{i}].rule_any: {rule!r} is not a rule of checks/components.yaml")
                if "card_matches" in condition:
                    try:
                        re.compile(condition["card_matches"])
                    except re.error as exc:
                        raise RubricError(f"{where}: {at}.{which}[{i}].card_matches: invalid regular expression: {exc}") from None
        dimensions.append(Dimension(
            id=entry["id"],
            key=entry.get("key", entry["id"]),
            name=entry["name"],
            group=entry["group"],
            components=tuple(entry.get("components", ())),
            open_when=tuple(entry["open_when"]),
            partial_when=tuple(entry.get("partial_when", ())),
            levels=dict(entry.get("levels") or {}),
        ))
    return OsaiRubric(data["name"], data["version"], levels, {g["id"]: g["name"] for g in data.get("groups", ())},
                      tuple(dimensions), data.get("formula", ""))


# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DimensionResult:
    id: str
    key: str
    name: str
    group: str
    level: str
    value: float
    evidence: tuple[EvidenceItem, ...]
    because: str  # what decided the level, in words
    sentence: str

    def to_dict(self) -> dict:
        return {"id": self.id, "key": self.key, "name": self.name, "group": self.group, "class": self.level,
                "value": self.value, "because": self.because, "evidence": [e.to_dict() for e in self.evidence],
                "sentence": self.sentence}


@dataclass(frozen=True)
class OsaiResult:
    dimensions: tuple[DimensionResult, ...]
    score: float  # mean of the values, 0..1
    total: float  # sum of the values, 0..len(dimensions)
    groups: Mapping[str, float]  # group id -> mean of its dimensions
    sentence: str
    rubric_name: str
    rubric_version: str

    @property
    def percent(self) -> float:
        return round(self.score * 100, 1)

    def to_dict(self) -> dict:
        return {
            "dimensions": [d.to_dict() for d in self.dimensions],
            "score": self.score,
            "percent": self.percent,
            "sum": self.total,
            "groups": dict(self.groups),
            "counts": {level: sum(1 for d in self.dimensions if d.level == level) for level in ("open", "partial", "closed")},
            "sentence": self.sentence,
            "rubric": {"name": self.rubric_name, "version": self.rubric_version},
        }


class _Facts:
    """What conditions look at: the components, and the model card's lines, metadata and topics."""

    def __init__(self, components: ComponentsResult, card):
        self.components = {c.id: c for c in components.components}
        self.result = components
        self.card = card
        self.card_lines = [line[:MAX_LINE_CHARS] for line in card.text.split("\n")] if card is not None else []

    def component(self, cid: int) -> ComponentAssessment:
        return self.components[cid]


def _names(facts: _Facts, ids: Sequence[int]) -> str:
    return ", ".join(facts.component(cid).name.lower() for cid in ids)


def _license_text(component: ComponentAssessment) -> str:
    return f"{component.name.lower()} under {component.license}" if component.license else f"{component.name.lower()} without a license"


def _check_open(facts: _Facts, ids: Sequence[int]) -> tuple[bool, str]:
    ok = all(facts.component(cid).status == OPEN for cid in ids)
    return ok, "; ".join(_license_text(facts.component(cid)) for cid in ids) if ok else ""


def _check_open_any(facts: _Facts, ids: Sequence[int]) -> tuple[bool, str]:
    hits = [facts.component(cid) for cid in ids if facts.component(cid).status == OPEN]
    return bool(hits), "; ".join(_license_text(c) for c in hits)


def _check_present(facts: _Facts, ids: Sequence[int]) -> tuple[bool, str]:
    components = [facts.component(cid) for cid in ids]
    ok = all(c.status != ABSENT for c in components)
    return ok, "; ".join(f"{c.name.lower()} {c.status}" + (f" ({c.license})" if c.license else "") for c in components) if ok else ""


def _check_present_any(facts: _Facts, ids: Sequence[int]) -> tuple[bool, str]:
    hits = [facts.component(cid) for cid in ids if facts.component(cid).status != ABSENT]
    return bool(hits), "; ".join(f"{c.name.lower()} in the release ({c.status})" for c in hits)


def _check_present_count(facts: _Facts, spec: Mapping[str, Any]) -> tuple[bool, str]:
    hits = [facts.component(cid) for cid in spec["of"] if facts.component(cid).status != ABSENT]
    return len(hits) >= spec["min"], f"{len(hits)} of {len(spec['of'])} in the release ({', '.join(c.name.lower() for c in hits) or 'none'})"


def _check_linked_any(facts: _Facts, ids: Sequence[int]) -> tuple[bool, str]:
    links = [item for cid in ids for item in facts.component(cid).links]
    return bool(links), ("linked, not in the release: " + ", ".join(item.url or item.note for item in links[:3])) if links else ""


def _check_rule_any(facts: _Facts, keys: Sequence[str]) -> tuple[bool, str]:
    for key in keys:
        item = facts.component(int(key.split("/")[0])).rule_item(key)
        if item is not None and item.kind in (FOUND, LINKED):
            return True, f"{item.where} ({item.note})" if item.where else item.note
    return False, ""


def _check_card(facts: _Facts, wanted: bool) -> tuple[bool, str]:
    exists = facts.card is not None
    if not exists:
        return not wanted, "no model card"
    topics = facts.result.card_topics
    return wanted, f"{facts.card.path} covers {len(topics)} model-card topics ({', '.join(topics) or 'none'})"


def _check_card_topics_min(facts: _Facts, minimum: int) -> tuple[bool, str]:
    topics = facts.result.card_topics
    return len(topics) >= minimum, f"the card covers {len(topics)} topics ({', '.join(topics) or 'none'})"


def _check_card_matches(facts: _Facts, pattern: str) -> tuple[bool, str]:
    regex = _regex(pattern)
    for number, line in enumerate(facts.card_lines, 1):
        if regex.search(line):
            excerpt = line.strip()[:80]
            return True, f"{facts.card.path}:{number} \"{excerpt}\""
    return False, ""


def _check_card_metadata(facts: _Facts, key: str) -> tuple[bool, str]:
    if facts.card is None:
        return False, ""
    value = facts.card.metadata.get(key)
    return value not in (None, "", [], {}), f"{facts.card.path} metadata {key}"


def _check_areas_open(facts: _Facts, spec: Mapping[str, Any]) -> tuple[bool, str]:
    opened = 0
    parts = []
    for area, ids in spec["areas"].items():
        present = [facts.component(cid) for cid in ids if facts.component(cid).status != ABSENT]
        if not present:
            parts.append(f"{area} not in the release")
            continue
        closed = [c for c in present if c.status != OPEN]
        if closed:
            parts.append(f"{area} not all open ({', '.join(f'{c.name.lower()}: {c.license or c.status}' for c in closed[:2])})")
            continue
        opened += 1
        licenses = sorted({c.license for c in present if c.license})
        parts.append(f"{area} open ({', '.join(licenses)})")
    return opened >= spec["min"], "; ".join(parts)


_CHECKS: Mapping[str, Callable[[_Facts, Any], tuple[bool, str]]] = {
    "open": _check_open,
    "open_any": _check_open_any,
    "present": _check_present,
    "present_any": _check_present_any,
    "present_count": _check_present_count,
    "linked_any": _check_linked_any,
    "rule_any": _check_rule_any,
    "card": _check_card,
    "card_topics_min": _check_card_topics_min,
    "card_matches": _check_card_matches,
    "card_metadata": _check_card_metadata,
    "areas_open": _check_areas_open,
}
assert set(_CHECKS) == set(CONDITIONS)


@lru_cache(maxsize=64)
def _regex(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.I)


def holds(facts: _Facts, condition: Mapping[str, Any]) -> tuple[bool, str]:
    """(every key of the condition holds, what showed it)."""
    details = []
    for key, argument in condition.items():
        ok, detail = _CHECKS[key](facts, argument)
        if not ok:
            return False, ""
        if detail:
            details.append(detail)
    return True, "; ".join(details)


def assess_osai_index(components: ComponentsResult, card, rubric: OsaiRubric | None = None) -> OsaiResult:
    rubric = rubric or osai_rubric()
    facts = _Facts(components, card)
    (best, best_value, _), (middle, middle_value, _), (worst, worst_value, _) = rubric.levels
    results = []
    for dimension in rubric.dimensions:
        level, value, because = worst, worst_value, ""
        for candidate, candidate_value, conditions in ((best, best_value, dimension.open_when),
                                                       (middle, middle_value, dimension.partial_when)):
            decided = next((detail for ok, detail in (holds(facts, c) for c in conditions) if ok), None)
            if decided is not None:
                level, value, because = candidate, candidate_value, decided
                break
        evidence = tuple(item for cid in dimension.components for item in facts.component(cid).evidence
                         if item.kind in (FOUND, LINKED))[:6]
        results.append(DimensionResult(dimension.id, dimension.key, dimension.name, dimension.group, level, value,
                                       evidence, because, _sentence(dimension, level, because, facts, components)))
    values = [r.value for r in results]
    score = sum(values) / len(values) if values else 0.0
    groups = {}
    for group in rubric.groups:
        members = [r.value for r in results if r.group == group]
        if members:
            groups[group] = sum(members) / len(members)
    counts = {level: sum(1 for r in results if r.level == level) for level in (best, middle, worst)}
    sentence = (f"{rubric.name}: {score * 100:.1f}% ({sum(values):g} of {len(values)}); "
                f"{counts[best]} open, {counts[middle]} partial, {counts[worst]} closed.")
    return OsaiResult(tuple(results), score, sum(values), groups, sentence, rubric.name, rubric.version)


def _sentence(dimension: Dimension, level: str, because: str, facts: _Facts, components: ComponentsResult) -> str:
    meaning = dimension.levels.get(level, level)
    if because:
        return f"{dimension.name}: {level}; {meaning} ({because})."
    return f"{dimension.name}: {level}; {meaning} in {files_phrase(components.files, components.weights_files)}."
