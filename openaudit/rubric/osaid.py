"""The Open Source AI Definition 1.0 verdict: conformant or not, with the missing pieces named.

The criteria are data (``checks/osaid.yaml``): each names MOF components, whether all or any of them must be
there (``rule``), and the license list their licenses must be in. A criterion passes when its components are
in the release (status other than absent) under a license in that list; the release conforms when every
required criterion passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, Sequence

from openaudit.rubric.components import ABSENT, ComponentAssessment, ComponentsResult
from openaudit.rubric.loader import RubricError, load_rubric, rubric_path

ANY_LICENSE = "any"
MOF_LIST_NAMES = ("osi_approved", "fsf_libre", "open_data", "also_open")


@dataclass(frozen=True)
class Criterion:
    id: str
    name: str
    group: str | None
    components: tuple[int, ...]
    rule: str  # all | any
    license: str  # the expression as written
    licenses: frozenset[str] | None  # None: any license
    required: bool
    description: str


@dataclass(frozen=True)
class OsaidRubric:
    name: str
    version: str
    criteria: tuple[Criterion, ...]
    groups: Mapping[str, str]
    formula: str


@lru_cache(maxsize=1)
def osaid_rubric() -> OsaidRubric:
    return osaid_rubric_from_dict(load_rubric("osaid"), str(rubric_path("osaid")))


def resolve_license_list(expression: str, named: Mapping[str, Sequence[str]], where: str) -> frozenset[str] | None:
    """The license ids of ``a | b``: names under the rubric's ``licenses``, MOF's lists (checks/mof.yaml),
    ``open`` (every id MOF counts as open) or ``any`` (None: no constraint)."""
    from openaudit.rubric.mof import mof_rubric

    mof = mof_rubric()
    ids: set[str] = set()
    for name in (part.strip() for part in expression.split("|")):
        if name == ANY_LICENSE:
            return None
        if name in named:
            ids.update(named[name])
        elif name == "open":
            ids.update(mof.osi_approved | mof.fsf_libre | mof.open_data | mof.also_open)
        elif name in MOF_LIST_NAMES:
            ids.update(getattr(mof, name))
        else:
            raise RubricError(f"{where}: unknown license list {name!r} (define it under `licenses`, or use "
                              f"{', '.join(MOF_LIST_NAMES)}, open or any)")
    return frozenset(ids)


def check_components_known(data: Mapping[str, Any], where: str) -> None:
    """Every criterion names MOF components that exist, and groups that the rubric defines."""
    from openaudit.rubric.mof import mof_rubric

    known = {c.id for c in mof_rubric().components}
    groups = {g["id"] for g in data.get("groups", ())}
    ids = [c["id"] for c in data["criteria"]]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise RubricError(f"{where}: $.criteria: ids repeat: {repeated}")
    for index, criterion in enumerate(data["criteria"]):
        unknown = [cid for cid in criterion.get("components", ()) if cid not in known]
        if unknown:
            raise RubricError(f"{where}: $.criteria[{index}].components: {unknown} are not MOF component ids")
        if criterion.get("group") is not None and criterion["group"] not in groups:
            raise RubricError(f"{where}: $.criteria[{index}].group: {criterion['group']!r} is not a group of the rubric")


def osaid_rubric_from_dict(data: Mapping[str, Any], where: str = "<osaid rubric>") -> OsaidRubric:
    if data.get("kind") != "osaid":
        raise RubricError(f"{where}: kind is {data.get('kind')!r}, expected 'osaid'")
    check_components_known(data, where)
    named = data.get("licenses") or {}
    criteria = []
    for index, entry in enumerate(data["criteria"]):
        at = f"{where}: $.criteria[{index}]"
        if not entry.get("components"):
            raise RubricError(f"{at}.components: an OSAID criterion needs MOF components")
        expression = entry.get("license", ANY_LICENSE)
        criteria.append(Criterion(
            id=entry["id"],
            name=entry["name"],
            group=entry.get("group"),
            components=tuple(entry["components"]),
            rule=entry.get("rule", "all"),
            license=expression,
            licenses=resolve_license_list(expression, named, f"{at}.license"),
            required=entry.get("required", True),
            description=entry.get("description", ""),
        ))
    return OsaidRubric(data["name"], data["version"], tuple(criteria),
                       {g["id"]: g["name"] for g in data.get("groups", ())}, data.get("formula", ""))


# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OsaidCriterionResult:
    id: str
    name: str
    passed: bool
    why: str
    absent: bool = False  # every component of the criterion is missing from the release

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "passed": self.passed, "why": self.why, "absent": self.absent}


@dataclass(frozen=True)
class OsaidResult:
    conformant: bool
    missing: tuple[OsaidCriterionResult, ...]  # the failing required criteria, named, with why
    criteria: tuple[OsaidCriterionResult, ...]
    sentence: str
    rubric_name: str
    rubric_version: str

    def to_dict(self) -> dict:
        return {
            "conformant": self.conformant,
            "missing": [item.to_dict() for item in self.missing],
            "criteria": [item.to_dict() for item in self.criteria],
            "sentence": self.sentence,
            "rubric": {"name": self.rubric_name, "version": self.rubric_version},
        }


def _component_passes(component: ComponentAssessment, licenses: frozenset[str] | None) -> tuple[bool, str]:
    if component.status == ABSENT:
        return False, f"{component.name.lower()} not in the release"
    if licenses is None:
        return True, f"{component.name.lower()} in the release"
    if component.license is not None and component.license in licenses:
        return True, f"{component.name.lower()} under {component.license}"
    if component.license is None:
        return False, f"{component.name.lower()} has no license"
    return False, f"{component.name.lower()} is under {component.license}, not on the list"


def assess_osaid(components: ComponentsResult, rubric: OsaidRubric | None = None) -> OsaidResult:
    rubric = rubric or osaid_rubric()
    by_id = {c.id: c for c in components.components}
    results = []
    for criterion in rubric.criteria:
        outcomes = [_component_passes(by_id[cid], criterion.licenses) for cid in criterion.components]
        passed = any(ok for ok, _ in outcomes) if criterion.rule == "any" else all(ok for ok, _ in outcomes)
        if passed:
            why = "; ".join(text for ok, text in outcomes if ok)
        elif criterion.rule == "any":
            names = [by_id[cid].name.lower() for cid in criterion.components]
            absent = all(by_id[cid].status == ABSENT for cid in criterion.components)
            why = (f"none of {_join(names, 'or')} is in the release" if absent
                   else "; ".join(text for _, text in outcomes))
        else:
            why = "; ".join(text for ok, text in outcomes if not ok)
        absent = all(by_id[cid].status == ABSENT for cid in criterion.components)
        results.append(OsaidCriterionResult(criterion.id, criterion.name, passed, why, absent))
    required = {c.id for c in rubric.criteria if c.required}
    missing = tuple(r for r in results if not r.passed and r.id in required)
    conformant = not missing
    return OsaidResult(conformant, missing, tuple(results), _sentence(conformant, missing, rubric), rubric.name, rubric.version)


def _join(words: Sequence[str], last: str = "and") -> str:
    words = list(words)
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} {last} {words[-1]}"


def _sentence(conformant: bool, missing: Sequence[OsaidCriterionResult], rubric: OsaidRubric) -> str:
    title = f"OSAID {rubric.version}"
    if conformant:
        return f"{title}: conformant; data information, the complete code and the parameters are in the release under OSI-approved terms."
    # A piece that is simply not there is named; one that is there on the wrong terms says why.
    # A single component that is simply not there is named; anything else says why.
    parts = [item.name.lower() if item.absent and not item.why.startswith("none of") else f"{item.name.lower()} ({item.why})"
             for item in missing]
    return f"{title}: not conformant; missing {_join(parts)}."
