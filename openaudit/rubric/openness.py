"""How open a release is, from evidence: MOF components, the MOF class (verified, and claimed by a MOF file),
the OSAID 1.0 verdict, the European Open Source AI Index and openaudit's own score.

``assess_openness`` takes what the audit pipeline already built (the release inventory, the model card, the
weights inspection, the architecture evidence, the license evidence and an optional MOF file) and returns an
``Openness`` whose ``to_dict()`` is the report's ``openness`` block. ``describe_rubrics`` lists every criterion
of every rubric for ``openaudit rubric``.

The verified MOF class applies the Model Openness Tool's own rules (``openaudit.rubric.mof``) to the components
the audit found, with license names normalised to SPDX ids first (MOT compares ids exactly, so "apache-2.0"
in a card would otherwise not count). The claimed class is MOT's algorithm on the MOF file exactly as written.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

from openaudit.findings import Finding, finding
from openaudit.rubric.components import (
    ABSENT,
    CLOSED,
    OPEN,
    ComponentAssessment,
    ComponentsResult,
    NormalizedLicense,
    assess_components,
    detection_rubric,
    files_phrase,
    spdx_id,
)
from openaudit.rubric.mof import CLASSES, MofClassification, MotFileError, classify_components, classify_mot, mof_rubric
from openaudit.rubric.osai_index import CONDITIONS, OsaiResult, assess_osai_index, osai_rubric
from openaudit.rubric.osaid import OsaidResult, assess_osaid, osaid_rubric
from openaudit.rubric.score import ScoreResult, assess_score, score_rubric

UNRECOGNISED_LICENSE = "LicenseRef-unrecognised"  # what MOF is given for a license openaudit cannot name
NORMALIZATION_NOTE = ("license names were normalised to SPDX ids (checks/licenses.yaml) before MOF's exact, "
                      "case-sensitive matching")
_ROMAN = {0: "0", 1: "I", 2: "II", 3: "III"}


@dataclass(frozen=True)
class UnsupportedClaim:
    id: int
    name: str
    claimed_license: str | None
    why: str

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "claimed_license": self.claimed_license, "why": self.why}


@dataclass(frozen=True)
class MofResult:
    verified: MofClassification
    claimed: MofClassification | None
    claims_file: str | None
    claims_error: str | None
    unsupported_claims: tuple[UnsupportedClaim, ...]
    found_not_claimed: tuple[ComponentAssessment, ...]
    licenses_normalized: tuple[NormalizedLicense, ...]
    sentence: str

    @property
    def mof_class(self) -> int:
        return self.verified.mof_class

    @property
    def claimed_class(self) -> int | None:
        return self.claimed.mof_class if self.claimed is not None else None

    def to_dict(self) -> dict:
        verified = self.verified.to_dict()
        claimed = self.claimed.to_dict() if self.claimed is not None else None
        return {
            "class": self.verified.mof_class,
            "label": self.verified.label,
            "progress": verified["progress"],
            "total_progress": _number(self.verified.total_progress),
            "claimed_class": self.claimed_class,
            "claimed_label": self.claimed.label if self.claimed is not None else None,
            "claimed_progress": claimed["progress"] if claimed is not None else None,
            "claims_file": self.claims_file,
            "claims_error": self.claims_error,
            "unsupported_claims": [item.to_dict() for item in self.unsupported_claims],
            "found_not_claimed": [{"id": c.id, "name": c.name, "status": c.status, "license": c.license}
                                  for c in self.found_not_claimed],
            "not_type_appropriate": list(self.verified.not_type_appropriate),
            "licenses_normalized": [item.to_dict() for item in self.licenses_normalized],
            "normalization": NORMALIZATION_NOTE,
            "sentence": self.sentence,
            "rubric": {"name": self.verified.rubric_name, "version": self.verified.rubric_version},
        }


@dataclass(frozen=True)
class Openness:
    components: tuple[ComponentAssessment, ...]
    mof: MofResult
    osaid: OsaidResult
    osai_index: OsaiResult
    score: ScoreResult
    rubrics: tuple[Mapping[str, str], ...]
    release_license: Mapping[str, Any] | None
    limits_hit: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()  # for the report's findings (an invalid MOF file), not part of to_dict

    def component(self, key: int | str) -> ComponentAssessment:
        for component in self.components:
            if (component.id if isinstance(key, int) else component.name) == key:
                return component
        raise KeyError(key)

    def to_dict(self) -> dict:
        return {
            "components": [c.to_dict() for c in self.components],
            "mof": self.mof.to_dict(),
            "osaid": self.osaid.to_dict(),
            "osai_index": self.osai_index.to_dict(),
            "score": self.score.to_dict(),
            "release_license": dict(self.release_license) if self.release_license is not None else None,
            "limits_hit": list(self.limits_hit),
            "rubrics": [dict(r) for r in self.rubrics],
        }


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


# --------------------------------------------------------------------------------------------------------


def assess_openness(release, card, weights, architecture, licenses, mof_claims=None) -> Openness:
    """Score a release's openness from the evidence the audit gathered.

    ``mof_claims`` is a Model Openness Tool file: ``(document, path)`` as ``find_mof_file`` and
    ``load_mof_claims_file`` return it, or the parsed document alone, or None.
    """
    document, claims_path = _claims_input(mof_claims)
    found = assess_components(release, card, weights, architecture, licenses, claims_file=claims_path)
    verified = classify_components({c.id: {"present": c.present, "license": mof_license(c)} for c in found.components})
    normalized = list(found.licenses_normalized)
    claimed = None
    claims_error = None
    findings: list[Finding] = []
    components = found.components
    if document is not None:
        normalized += _claims_normalizations(document, claims_path or "MOF file")
        try:
            claimed = classify_mot(document)
        except MotFileError as exc:
            claims_error = str(exc)
            findings.append(finding("invalid-mof-file", f"the Model Openness Tool file is not valid: {claims_error}; "
                                    "its claimed MOF class is not computed", claims_path or "MOF file"))
    unsupported: list[UnsupportedClaim] = []
    found_not_claimed: list[ComponentAssessment] = []
    if claimed is not None:
        components, unsupported, found_not_claimed = _compare_claims(found, claimed)
    mof = MofResult(
        verified=verified,
        claimed=claimed,
        claims_file=claims_path,
        claims_error=claims_error,
        unsupported_claims=tuple(unsupported),
        found_not_claimed=tuple(found_not_claimed),
        licenses_normalized=tuple(dict.fromkeys(normalized)),
        sentence=_mof_sentence(verified, claimed, claims_path, unsupported, found),
    )
    components_result = replace(found, components=components)
    return Openness(
        components=components,
        mof=mof,
        osaid=assess_osaid(components_result),
        osai_index=assess_osai_index(components_result, card),
        score=assess_score(components_result),
        rubrics=tuple(used_rubrics()),
        release_license=found.release_license.to_dict() if found.release_license is not None else None,
        limits_hit=found.limits_hit,
        findings=tuple(findings),
    )


def mof_license(component: ComponentAssessment) -> str | None:
    """The license id MOF is given: the SPDX id; a marker for a license openaudit does not recognise (which MOF
    then counts as invalid); None for a component without a license."""
    if component.status in (ABSENT, CLOSED):
        return None
    return component.license or UNRECOGNISED_LICENSE


def _claims_input(mof_claims) -> tuple[Mapping[str, Any] | None, str | None]:
    if mof_claims is None:
        return None, None
    if isinstance(mof_claims, tuple) and len(mof_claims) == 2:
        return mof_claims[0], str(mof_claims[1])
    if isinstance(mof_claims, Mapping):
        return mof_claims, None
    raise TypeError("mof_claims must be (document, path), a document mapping, or None")


def _claims_normalizations(document: Mapping[str, Any], path: str) -> list[NormalizedLicense]:
    from openaudit.inspect.license import normalize_license_id

    found = []
    release = document.get("release") if isinstance(document.get("release"), Mapping) else {}
    licenses = release.get("license") if isinstance(release.get("license"), Mapping) else {}
    for kind, value in licenses.items():
        if isinstance(kind, str) and isinstance(value, Mapping) and isinstance(value.get("name"), str) and value["name"]:
            key = normalize_license_id(value["name"])
            found.append(NormalizedLicense(value["name"][:200], spdx_id(key), f"{path}#release.license.{kind[:100]}"))
    components = release.get("components")
    for entry in components if isinstance(components, list) else ():  # any type: the file is the release's
        if isinstance(entry, Mapping) and isinstance(entry.get("license"), str) and isinstance(entry.get("name"), str):
            key = normalize_license_id(entry["license"])
            found.append(NormalizedLicense(entry["license"][:200], spdx_id(key),
                                           f"{path}#release.components[{entry['name'][:100]}]"))
    return found


def _compare_claims(found: ComponentsResult, claimed: MofClassification):
    by_id = {c.id: c for c in claimed.components}
    components = []
    unsupported = []
    not_claimed = []
    phrase = files_phrase(found.files, found.weights_files)
    detection = detection_rubric()
    for component in found.components:
        claim = by_id[component.id]
        if not claim.included:
            components.append(replace(component, claimed=False, claim_supported=None))
            if component.present:
                not_claimed.append(component)
            continue
        why = None
        if not component.present:
            why = f"not in the release: {detection.component(component.id).absent} in {phrase}"
            if component.linked:
                why += "; the card only links it"
        elif claim.license_open and component.status != OPEN:
            ours = component.license or "no license"
            why = f"in the release under {ours}, which MOF does not count as open; the file claims {claim.license}"
        components.append(replace(component, claimed=True, claim_supported=why is None))
        if why is not None:
            unsupported.append(UnsupportedClaim(component.id, component.name, claim.license, why))
    return tuple(components), unsupported, not_claimed


def _progress_text(classification: MofClassification) -> str:
    return ", ".join(f"Class {_ROMAN[k]} {classification.progress[str(k)]:.0f}%" for k in CLASSES)


def _mof_sentence(verified: MofClassification, claimed: MofClassification | None, claims_path: str | None,
                  unsupported: Sequence[UnsupportedClaim], found: ComponentsResult) -> str:
    rubric = mof_rubric()
    met = [c for c in found.components if c.status == OPEN and c.id in rubric.required_ids(3)]
    text = (f"MOF {verified.rubric_version}: {verified.label} from the verified components "
            f"({_progress_text(verified)}; {len(met)} of the {len(rubric.required_ids(3))} Class III components open)")
    if claimed is not None:
        where = claims_path or "the MOF file"
        text += f"; {where} claims {claimed.label}"
        if unsupported:
            names = ", ".join(item.name for item in unsupported[:4]) + (f" and {len(unsupported) - 4} more" if len(unsupported) > 4 else "")
            text += f", but the release does not support {len(unsupported)} claimed component{'s' if len(unsupported) != 1 else ''} ({names})"
    return text + "."


# --------------------------------------------------------------------------------------------------------
# Rubrics, for reports and `openaudit rubric`


def used_rubrics() -> list[dict]:
    """Name, version and kind of every rubric an openness assessment uses."""
    detection = detection_rubric()
    mof = mof_rubric()
    return [
        {"kind": "components", "name": detection.name, "version": detection.version, "file": "checks/components.yaml"},
        {"kind": "mof", "name": mof.name, "version": mof.version, "file": "checks/mof.yaml"},
        {"kind": "osaid", "name": osaid_rubric().name, "version": osaid_rubric().version, "file": "checks/osaid.yaml"},
        {"kind": "osai_index", "name": osai_rubric().name, "version": osai_rubric().version, "file": "checks/osai_index.yaml"},
        {"kind": "score", "name": score_rubric().name, "version": score_rubric().version, "file": "checks/score.yaml"},
    ]


def _condition_words(condition: Mapping[str, Any]) -> str:
    parts = []
    mof = mof_rubric()

    def names(ids) -> str:
        return ", ".join(mof.component(cid).name for cid in ids)

    for key, argument in condition.items():
        if key in ("open", "open_any", "present", "present_any", "linked_any"):
            quantifier = ("any of" if key.endswith("_any") else "all of") if len(argument) > 1 else ""
            verb = {"open": "open", "open_any": "open", "present": "in the release", "present_any": "in the release",
                    "linked_any": "linked from the card"}[key]
            parts.append(f"{quantifier + ' ' if quantifier else ''}{names(argument)} {verb}")
        elif key == "present_count":
            parts.append(f"at least {argument['min']} of {names(argument['of'])} in the release")
        elif key == "rule_any":
            parts.append("found by rule " + " or ".join(argument))
        elif key == "card":
            parts.append("a model card exists" if argument else "no model card")
        elif key == "card_topics_min":
            parts.append(f"the card covers at least {argument} model-card topics")
        elif key == "card_matches":
            parts.append(f"a card line matches /{argument}/")
        elif key == "card_metadata":
            parts.append(f"card metadata has `{argument}`")
        elif key == "areas_open":
            areas = "; ".join(f"{area}: {names(ids)}" for area, ids in argument["areas"].items())
            parts.append(f"at least {argument['min']} of these areas open ({areas})")
        else:
            parts.append(CONDITIONS.get(key, key))
    return " and ".join(parts)


def _rule_words(rule) -> str:
    spec = rule.spec
    if rule.type == "paths":
        text = "files " + ", ".join(spec["paths"][:6]) + (" ..." if len(spec["paths"]) > 6 else "")
        if spec.get("kinds"):
            text += f" of kind {'/'.join(spec['kinds'])}"
        if spec.get("magic"):
            text += f" starting with {spec['magic']!r}"
        if spec.get("content"):
            labels = ", ".join(spec["content"]["patterns"])
            text += f" containing at least {spec['content'].get('min_distinct', 1)} of: {labels}"
        return text
    if rule.type == "card_metadata":
        return f"model card metadata `{spec['key']}` ({spec.get('shape', 'present')})"
    if rule.type == "card_heading":
        text = f"a model card section whose heading matches /{spec['pattern']}/"
        if spec.get("requires"):
            text += f" and holds a line matching /{spec['requires']}/"
        if spec.get("min_chars"):
            text += f" with at least {spec['min_chars']} characters"
        return text
    if rule.type == "card_text":
        return "model card lines matching " + " or ".join(f"/{p}/" for p in spec["patterns"])
    if rule.type == "card_topics":
        return f"a model card covering at least {spec['min']} of the topics {', '.join(spec['topics'])}"
    if rule.type == "weights":
        return ("readable weights: every file parsed completely, more than zero parameters, no finding of severity "
                f"{spec.get('reject_severity', 'critical')} or worse; not an intermediate checkpoint")
    if rule.type == "series":
        return f"at least {spec['min_distinct']} checkpoints numbered by /{spec['pattern']}/"
    if rule.type == "architecture":
        return "the architecture check: " + "/".join(spec["status"]) + (" with the config in the release" if spec.get("config_in_release") else "")
    return rule.type


def describe_rubrics() -> list[dict]:
    """Every criterion of every rubric: which rubric, what it checks, how it scores."""
    rows: list[dict] = []
    mof = mof_rubric()
    detection = detection_rubric()
    for component in detection.components:
        for rule in component.rules:
            rows.append({
                "rubric": detection.name, "version": detection.version, "kind": "components",
                "id": rule.key, "name": f"{component.name}: {rule.id}",
                "checks": _rule_words(rule),
                "scoring": ("a link: recorded as a claim, the component stays absent" if rule.linked
                            else f"a match puts {component.name} in the release; its license follows the {component.chain} chain"),
            })
    for component in mof.components:
        if component.required:
            scoring = "required for " + ", ".join(f"Class {_ROMAN[k]}" for k in component.required_for)
        else:
            scoring = "optional in " + ", ".join(f"Class {_ROMAN[k]}" for k in component.optional_for) + "; never counts towards progress"
        rows.append({
            "rubric": mof.name, "version": mof.version, "kind": "mof", "id": str(component.id), "name": component.name,
            "checks": f"{component.name} is in the release under a license MOF counts as open ({component.type})",
            "scoring": scoring + "; a class is met at 100% of its required components, cumulatively from Class III",
        })
    osaid = osaid_rubric()
    for criterion in osaid.criteria:
        names = " or ".join if criterion.rule == "any" else " and ".join
        rows.append({
            "rubric": osaid.name, "version": osaid.version, "kind": "osaid", "id": criterion.id, "name": criterion.name,
            "checks": f"{names([mof.component(c).name for c in criterion.components])} in the release under {criterion.license}",
            "scoring": "pass or fail; " + ("required: conformance needs every required criterion to pass" if criterion.required else "optional"),
        })
    osai = osai_rubric()
    values = ", ".join(f"{level} {value:g}" for level, value, _ in osai.levels)
    for dimension in osai.dimensions:
        best, middle = osai.levels[0][0], osai.levels[1][0]
        checks = f"{best} when " + " or ".join(_condition_words(c) for c in dimension.open_when)
        if dimension.partial_when:
            checks += f"; {middle} when " + " or ".join(_condition_words(c) for c in dimension.partial_when)
        checks += f"; else {osai.levels[2][0]}"
        rows.append({
            "rubric": osai.name, "version": osai.version, "kind": "osai_index", "id": dimension.key, "name": dimension.name,
            "checks": checks,
            "scoring": f"{values}; the index is the mean of the {len(osai.dimensions)} dimensions ({osai.groups.get(dimension.group, dimension.group)})",
        })
    score = score_rubric()
    statuses = ", ".join(f"{status} {value:g}" for status, value in score.values.items())
    for criterion in score.criteria:
        rows.append({
            "rubric": score.name, "version": score.version, "kind": "score", "id": criterion.id, "name": criterion.name,
            "checks": "status of " + (" or ".join if criterion.rule == "any" else " and ".join)(mof.component(c).name for c in criterion.components)
                      + (" (the best of them)" if criterion.rule == "any" and len(criterion.components) > 1 else ""),
            "scoring": f"{criterion.weight:g} points x value ({statuses}); score = sum of points, 0-{score.maximum:g}",
        })
    return rows
