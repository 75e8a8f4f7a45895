"""The detection rules of ``checks/components.yaml`` as typed data: which rules find which MOF component.

The rules are validated against ``schemas/rubric.schema.json`` and compiled here once (globs and regexes),
with the checks the schema cannot make: every MOF component exactly once, regexes that compile, chains that
name known scopes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Mapping

from openaudit.rubric.loader import RubricError, load_rubric, rubric_path

RULE_TYPES = ("paths", "card_metadata", "card_heading", "card_text", "card_topics", "weights", "series", "architecture")


@dataclass(frozen=True)
class DetectionRule:
    id: str
    component: int
    type: str  # one of RULE_TYPES
    note: str
    linked: bool
    spec: Mapping[str, Any]  # the rule's own block (paths rules: the whole rule)
    paths: re.Pattern | None = None
    exclude: re.Pattern | None = None
    kinds: frozenset[str] | None = None
    magic: bytes | None = None
    content: tuple[tuple[str, re.Pattern], ...] = ()
    min_distinct: int = 1
    regexes: tuple[re.Pattern, ...] = ()  # card_text patterns; card_heading pattern and `requires`
    topics: tuple[tuple[str, re.Pattern], ...] = ()

    @property
    def key(self) -> str:
        """``<component id>/<rule id>``: how other rubrics refer to this rule."""
        return f"{self.component}/{self.id}"


@dataclass(frozen=True)
class ComponentRules:
    id: int
    name: str  # the MOF name
    type: str  # the MOF content type
    chain: str
    noun: str
    absent: str
    rules: tuple[DetectionRule, ...]


@dataclass(frozen=True)
class DetectionRubric:
    name: str
    version: str
    limits: Mapping[str, Any]
    release_files: re.Pattern
    own_files: re.Pattern
    scopes: Mapping[str, tuple[re.Pattern | None, frozenset[str]]]  # name -> (root files, card license kinds)
    chains: Mapping[str, tuple[str, ...]]
    components: tuple[ComponentRules, ...]

    def component(self, component_id: int) -> ComponentRules:
        return next(c for c in self.components if c.id == component_id)

    def rule(self, key: str) -> DetectionRule | None:
        component_id, _, rule_id = key.partition("/")
        for component in self.components:
            if str(component.id) == component_id:
                return next((r for r in component.rules if r.id == rule_id), None)
        return None


@lru_cache(maxsize=1)
def detection_rubric() -> DetectionRubric:
    """``checks/components.yaml`` as a DetectionRubric (loaded, validated and compiled once)."""
    return detection_rubric_from_dict(load_rubric("components"), str(rubric_path("components")))


def detection_rubric_from_dict(data: Mapping[str, Any], where: str = "<components rubric>") -> DetectionRubric:
    """Build a DetectionRubric from a schema-valid ``kind: components`` document, checking what the schema cannot
    (every MOF component exactly once, regexes that compile, chains that name known scopes)."""
    from openaudit.rubric.mof import mof_rubric

    def fail(path: str, message: str) -> RubricError:
        return RubricError(f"{where}: {path}: {message}")

    if data.get("kind") != "components":
        raise RubricError(f"{where}: kind is {data.get('kind')!r}, expected 'components'")
    mof = mof_rubric()
    scopes: dict[str, tuple[re.Pattern | None, frozenset[str]]] = {}
    for name, scope in (data.get("license_scopes") or {}).items():
        files = scope.get("files")
        scopes[name] = (compile_globs(files) if files else None, frozenset(scope.get("card_license_kinds", ())))
    chains = {kind: tuple(steps) for kind, steps in data["license_chains"].items()}
    for kind, steps in chains.items():
        for step in steps:
            if step not in ("own", "release") and step not in scopes:
                raise fail(f"$.license_chains.{kind}", f"{step!r} is not own, release or a name under license_scopes")
    components = []
    seen: set[int] = set()
    for index, entry in enumerate(data["components"]):
        at = f"$.components[{index}]"
        try:
            mof_component = mof.component(entry["id"])
        except KeyError:
            raise fail(f"{at}.id", f"{entry['id']} is not a MOF component id") from None
        if entry["id"] in seen:
            raise fail(f"{at}.id", f"component {entry['id']} is listed twice")
        seen.add(entry["id"])
        rule_ids = [rule["id"] for rule in entry["rules"]]
        if len(set(rule_ids)) != len(rule_ids):
            raise fail(f"{at}.rules", "rule ids repeat")
        rules = tuple(_compile_rule(rule, entry["id"], f"{at}.rules[{i}]", fail) for i, rule in enumerate(entry["rules"]))
        components.append(ComponentRules(entry["id"], mof_component.name, mof_component.type, entry["chain"],
                                         entry["noun"], entry["absent"], rules))
    missing = sorted(c.id for c in mof.components if c.id not in seen)
    if missing:
        raise fail("$.components", f"no detection rules for MOF components {missing}")
    order = {c.id: i for i, c in enumerate(mof.components)}
    release_license = data["release_license"]
    return DetectionRubric(
        name=data["name"],
        version=data["version"],
        limits=dict(data["limits"]),
        release_files=compile_globs(release_license["files"]),
        own_files=compile_globs(release_license.get("own_files") or release_license["files"]),
        scopes=scopes,
        chains=chains,
        components=tuple(sorted(components, key=lambda c: order[c.id])),
    )


def _compile_rule(rule: Mapping[str, Any], component: int, at: str, fail) -> DetectionRule:
    rule_type = next(t for t in RULE_TYPES if t in rule)

    def regex(pattern: str, path: str) -> re.Pattern:
        try:
            return re.compile(pattern, re.I)
        except re.error as exc:
            raise fail(path, f"invalid regular expression: {exc}") from None

    fields: dict[str, Any] = {}
    spec = rule[rule_type]
    if rule_type == "paths":
        spec = rule
        fields["paths"] = compile_globs(rule["paths"])
        if rule.get("exclude"):
            fields["exclude"] = compile_globs(rule["exclude"])
        if rule.get("kinds"):
            fields["kinds"] = frozenset(rule["kinds"])
        if rule.get("magic"):
            fields["magic"] = rule["magic"].encode("latin-1")
        content = rule.get("content")
        if content:
            fields["content"] = tuple((label, regex(p, f"{at}.content.patterns.{label}")) for label, p in content["patterns"].items())
            fields["min_distinct"] = content.get("min_distinct", 1)
            if fields["min_distinct"] > len(fields["content"]):
                raise fail(f"{at}.content.min_distinct", "is larger than the number of patterns")
    elif rule_type == "card_text":
        fields["regexes"] = tuple(regex(p, f"{at}.card_text.patterns[{i}]") for i, p in enumerate(spec["patterns"]))
    elif rule_type == "card_heading":
        fields["regexes"] = (regex(spec["pattern"], f"{at}.card_heading.pattern"),) + (
            (regex(spec["requires"], f"{at}.card_heading.requires"),) if spec.get("requires") else ()
        )
    elif rule_type == "card_topics":
        fields["topics"] = tuple((name, regex(p, f"{at}.card_topics.topics.{name}")) for name, p in spec["topics"].items())
        if spec["min"] > len(fields["topics"]):
            raise fail(f"{at}.card_topics.min", "is larger than the number of topics")
        unknown = sorted(set((spec.get("metadata") or {}).values()) - set(spec["topics"]))
        if unknown:
            raise fail(f"{at}.card_topics.metadata", f"names topics that are not defined: {unknown}")
        if spec.get("paths"):
            fields["paths"] = compile_globs(spec["paths"])
    elif rule_type == "series":
        fields["regexes"] = (regex(spec["pattern"], f"{at}.series.pattern"),)
        if fields["regexes"][0].groups < 1:
            raise fail(f"{at}.series.pattern", "needs a group for the step number")
    return DetectionRule(id=rule["id"], component=component, type=rule_type, note=rule["note"],
                         linked=bool(rule.get("linked")), spec=spec, **fields)


def glob_regex(pattern: str) -> str:
    """The regex of one glob (see checks/components.yaml): `*`/`?` inside a folder, `**/` across folders; a
    pattern without `/` matches the file name at any depth."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
            continue
        if pattern.startswith("/**", i) and i + 3 == len(pattern):
            out.append("(?:/.*)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        char = pattern[i]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and "]" in pattern[i + 2:]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1:end]
            body = ("^" + body[1:]) if body.startswith("!") else body
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
            continue
        else:
            out.append(re.escape(char))
        i += 1
    return ("^" if "/" in pattern else "(?:^|/)") + "".join(out) + "$"


def compile_globs(patterns: Iterable[str]) -> re.Pattern:
    return re.compile("|".join(f"(?:{glob_regex(p)})" for p in patterns), re.I)
