"""openaudit's openness score, 0-100: points per MOF component, earned by its verified status.

The numbers are data (``checks/score.yaml``) and the formula is written out in ``checks/score.md``:
``score = sum over criteria of weight x value(status)``, with the status values of the rubric's scale (open 1,
restricted 0.5, closed 0.25, absent 0); a criterion over several components (``rule: any``) takes the best
value among them. The weights add up to the top of ``aggregate.range`` (100), which loading checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping

from openaudit.rubric.components import STATUSES, ComponentsResult
from openaudit.rubric.loader import RubricError, load_rubric, rubric_path
from openaudit.rubric.osaid import check_components_known


@dataclass(frozen=True)
class ScoreCriterion:
    id: str
    name: str
    group: str
    components: tuple[int, ...]
    rule: str  # all (worst value) | any (best value)
    weight: float


@dataclass(frozen=True)
class ScoreRubric:
    name: str
    version: str
    values: Mapping[str, float]  # status -> value
    groups: Mapping[str, tuple[str, float]]  # id -> (name, weight)
    criteria: tuple[ScoreCriterion, ...]
    maximum: float
    formula: str


@lru_cache(maxsize=1)
def score_rubric() -> ScoreRubric:
    return score_rubric_from_dict(load_rubric("score"), str(rubric_path("score")))


def score_rubric_from_dict(data: Mapping[str, Any], where: str = "<score rubric>") -> ScoreRubric:
    if data.get("kind") != "score":
        raise RubricError(f"{where}: kind is {data.get('kind')!r}, expected 'score'")
    check_components_known(data, where)
    levels = {level["id"]: float(level["value"]) for level in (data.get("scale") or {}).get("levels", ())}
    if set(levels) != set(STATUSES):
        raise RubricError(f"{where}: $.scale.levels: needs exactly the statuses {list(STATUSES)}, has {sorted(levels)}")
    aggregate = data.get("aggregate") or {}
    if aggregate.get("method") != "weighted_sum" or "range" not in aggregate:
        raise RubricError(f"{where}: $.aggregate: the score is a weighted_sum with a range")
    low, high = aggregate["range"]
    criteria = []
    for index, entry in enumerate(data["criteria"]):
        at = f"{where}: $.criteria[{index}]"
        if not entry.get("components") or "weight" not in entry or not entry.get("group"):
            raise RubricError(f"{at}: a score criterion needs components, a group and a weight")
        criteria.append(ScoreCriterion(entry["id"], entry["name"], entry["group"], tuple(entry["components"]),
                                       entry.get("rule", "all"), float(entry["weight"])))
    total = sum(c.weight for c in criteria)
    if abs(total - (high - low)) > 1e-9:
        raise RubricError(f"{where}: $.criteria: the weights add up to {total:g}, not {high - low:g}")
    groups = {}
    for group in data.get("groups", ()):
        members = sum(c.weight for c in criteria if c.group == group["id"])
        if "weight" in group and abs(group["weight"] - members) > 1e-9:
            raise RubricError(f"{where}: $.groups: {group['id']} weighs {group['weight']:g} but its criteria add up to {members:g}")
        groups[group["id"]] = (group["name"], members)
    return ScoreRubric(data["name"], data["version"], levels, groups, tuple(criteria), float(high), data.get("formula", ""))


@dataclass(frozen=True)
class ScorePart:
    id: str
    name: str
    group: str
    weight: float
    status: str
    value: float
    points: float

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "group": self.group, "weight": self.weight, "status": self.status,
                "value": self.value, "points": self.points}


@dataclass(frozen=True)
class ScoreResult:
    score: float  # rounded to one decimal
    maximum: float
    parts: tuple[ScorePart, ...]
    groups: Mapping[str, float]  # group id -> points earned
    formula: str
    sentence: str
    rubric_name: str
    rubric_version: str

    def to_dict(self) -> dict:
        return {"value": self.score, "max": self.maximum, "parts": [p.to_dict() for p in self.parts],
                "groups": dict(self.groups), "formula": self.formula, "sentence": self.sentence,
                "rubric": {"name": self.rubric_name, "version": self.rubric_version}}


def assess_score(components: ComponentsResult, rubric: ScoreRubric | None = None) -> ScoreResult:
    rubric = rubric or score_rubric()
    by_id = {c.id: c for c in components.components}
    parts = []
    for criterion in rubric.criteria:
        statuses = [by_id[cid].status for cid in criterion.components]
        pick = max if criterion.rule == "any" else min
        status = pick(statuses, key=lambda s: rubric.values[s])
        value = rubric.values[status]
        parts.append(ScorePart(criterion.id, criterion.name, criterion.group, criterion.weight, status, value,
                               criterion.weight * value))
    raw = sum(p.points for p in parts)
    score = round(raw, 1)
    groups = {group: sum(p.points for p in parts if p.group == group) for group in rubric.groups}
    earned = [p for p in parts if p.points > 0]
    if earned:
        listed = ", ".join(f"{p.name.lower()} {p.points:g}" for p in sorted(earned, key=lambda p: -p.points)[:4])
        more = f" and {len(earned) - 4} more" if len(earned) > 4 else ""
        detail = f"points from {listed}{more}"
    else:
        detail = "no component of the release earned points"
    sentence = f"openaudit score: {score:g} of {rubric.maximum:g}; {detail}."
    return ScoreResult(score, rubric.maximum, tuple(parts), groups, rubric.formula, sentence, rubric.name, rubric.version)
