"""The Model Openness Framework (MOF) class of a release, computed exactly as the Model Openness Tool does.

The rubric (components, classes, license lists) is data in ``checks/mof.yaml``; this module is the
algorithm of MOT's ``ModelEvaluator.php`` (lfai/model_openness_tool @ 8b5d30e), quirks included, so that
``classify_mot_file`` gives MOT's class and progress figures for any MOT YAML file:

1. License of a listed component: its own ``license`` if the entry has one (the value ``unlicensed``, or a
   value PHP finds empty, "" or "0", means "explicitly none" and does not fall back), else the release's
   global license for the component's type (``release.license.code|data|document.name``), else
   ``release.license.distribution.name``, else none.
2. For each class k = 3, 2, 1, over the components that k requires (cumulatively): not listed -> missing;
   open license -> included (also when the license is not type-appropriate: that is only a warning);
   no license -> unlicensed; any other string -> invalid. Optional components are sorted the same way but
   never count towards progress. A license is open when its id, compared exactly, is OSI-approved or
   FSF-libre in MOT's license list, is in MOT's open-data list, or is OpenMDW-1.0.
3. Substitution (MOF 1.1): if the technical report is not included at Class III and the research paper is
   listed at all, the report leaves every missing list and the paper, with its Class I status, joins the
   Class III and II lists.
4. Progress of class k: walking i = 3 down to k with cumulative required totals (6, 10, 14), if a class
   i > k has fewer included than its total the progress is 0; otherwise it is included_k / total_k * 100
   (Class I needs one component fewer when the paper is included and the report is not), capped at 100.
5. The class is the most open k whose progress is exactly 100.0; 0 (unclassified) when there is none.

``classify_components`` applies the same rules to components whose presence and license an audit
verified (no global licenses: each component carries its own).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Sequence

from openaudit.errors import MalformedInput
from openaudit.rubric.loader import RubricError, load_rubric, rubric_path

CLASSES = (3, 2, 1)  # evaluation order: least demanding first, as MOT walks them
UNCLASSIFIED = 0
COMPONENT_TYPES = ("code", "data", "document", "model")
MOT_FILE_MAX_BYTES = 1024 * 1024

# Component statuses in the result (MOT's evaluation lists, in words a report can show).
OPEN = "open"  # MOT: included / optional
INVALID = "invalid"  # a license string that is not an open license id
UNLICENSED = "unlicensed"  # listed, with no license at any level
ABSENT = "absent"  # not listed (MOT: missing, for a required component)


class MotFileError(MalformedInput):
    """A YAML document that is not a Model Openness Tool model file (or has a field MOT could not use)."""

    def __init__(self, message: str):
        super().__init__("invalid-mof-file", message)


# --------------------------------------------------------------------------------------------------------
# The rubric, as typed data


@dataclass(frozen=True)
class MofComponent:
    id: int
    name: str
    type: str
    required_for: tuple[int, ...]
    optional_for: tuple[int, ...]
    description: str = ""

    @property
    def required(self) -> bool:
        return bool(self.required_for)

    @property
    def classes(self) -> tuple[int, ...]:
        """Every class that lists the component, required or optional."""
        return self.required_for or self.optional_for


@dataclass(frozen=True)
class MofRubric:
    name: str
    version: str
    components: tuple[MofComponent, ...]
    labels: Mapping[int, str]  # class number (0 = unclassified) -> MOT's label
    substitutions: tuple[tuple[int, int], ...]  # (component, replaced_by)
    unlicensed: str
    osi_approved: frozenset[str]
    fsf_libre: frozenset[str]
    open_data: frozenset[str]
    also_open: frozenset[str]
    type_appropriate: Mapping[str, frozenset[str]]

    def component(self, key: int | str) -> MofComponent:
        """A component by MOF id (int) or exact MOF name (str)."""
        for component in self.components:
            if (component.id if isinstance(key, int) else component.name) == key:
                return component
        raise KeyError(f"no MOF component {key!r}")

    def by_name(self, name: str) -> MofComponent | None:
        return next((c for c in self.components if c.name == name), None)

    def required_ids(self, mof_class: int) -> tuple[int, ...]:
        """Component ids class ``mof_class`` requires, cumulatively (MOT: 6, 10, 14 for classes 3, 2, 1)."""
        return tuple(c.id for c in self.components if mof_class in c.required_for)

    def optional_ids(self, mof_class: int) -> tuple[int, ...]:
        return tuple(c.id for c in self.components if mof_class in c.optional_for)

    def open_because(self, license_id: str) -> str | None:
        """Why MOT counts ``license_id`` as open ("osi-approved", "fsf-libre", "open-data", "listed"), or None."""
        if license_id in self.osi_approved:
            return "osi-approved"
        if license_id in self.fsf_libre:
            return "fsf-libre"
        if license_id in self.open_data:
            return "open-data"
        if license_id in self.also_open:
            return "listed"
        return None

    def is_open(self, license_id: str) -> bool:
        return self.open_because(license_id) is not None

    def is_type_appropriate(self, license_id: str, component_type: str) -> bool:
        return license_id in self.type_appropriate.get(component_type, frozenset())


@lru_cache(maxsize=1)
def mof_rubric() -> MofRubric:
    """checks/mof.yaml as a MofRubric (loaded, schema-checked and consistency-checked once)."""
    return rubric_from_dict(load_rubric("mof"), str(rubric_path("mof")))


def rubric_from_dict(data: Mapping[str, Any], where: str = "<mof rubric>") -> MofRubric:
    """Build a MofRubric from a schema-valid ``kind: mof`` rubric, checking what the schema cannot."""
    if data.get("kind") != "mof":
        raise RubricError(f"{where}: kind is {data.get('kind')!r}, expected 'mof'")
    components = tuple(
        MofComponent(
            id=entry["id"],
            name=entry["name"],
            type=entry["type"],
            required_for=tuple(sorted(entry["required_for"], reverse=True)),
            optional_for=tuple(sorted(entry.get("optional_for", ()), reverse=True)),
            description=entry.get("description", ""),
        )
        for entry in data["components"]
    )
    labels = {entry["class"]: entry["label"] for entry in data["classes"]}
    labels[UNCLASSIFIED] = data["unclassified"]["label"]
    licenses = data["licenses"]
    rubric = MofRubric(
        name=data["name"],
        version=data["version"],
        components=components,
        labels=MappingProxyType(labels),
        substitutions=tuple((s["component"], s["replaced_by"]) for s in data.get("substitutions", ())),
        unlicensed=licenses["unlicensed"],
        osi_approved=frozenset(licenses["osi_approved"]),
        fsf_libre=frozenset(licenses["fsf_libre"]),
        open_data=frozenset(licenses["open_data"]),
        also_open=frozenset(licenses["also_open"]),
        type_appropriate=MappingProxyType({t: frozenset(ids) for t, ids in licenses["type_appropriate"].items()}),
    )
    _check_consistency(rubric, where)
    return rubric


def _check_consistency(rubric: MofRubric, where: str) -> None:
    def fail(message: str) -> None:
        raise RubricError(f"{where}: {message}")

    if sorted(c for c in rubric.labels if c != UNCLASSIFIED) != sorted(CLASSES):
        fail(f"classes must be exactly {sorted(CLASSES)}")
    for attribute in ("id", "name"):
        values = [getattr(c, attribute) for c in rubric.components]
        repeated = sorted({v for v in values if values.count(v) > 1}, key=str)
        if repeated:
            fail(f"component {attribute}s repeat: {repeated}")
    for index, component in enumerate(rubric.components):
        if bool(component.required_for) == bool(component.optional_for):
            fail(f"$.components[{index}] ({component.name}) needs exactly one non-empty list of "
                 "required_for / optional_for")
        # Classes are cumulative: whatever Class N lists, every more open class (N-1 ... 1) lists too.
        if sorted(component.classes) != list(range(1, max(component.classes) + 1)):
            fail(f"$.components[{index}] ({component.name}) lists classes {list(component.classes)}; "
                 "classes are cumulative, so this must be [N, ..., 1]")
    for mof_class in CLASSES:
        if not rubric.required_ids(mof_class):
            fail(f"class {mof_class} requires no component")
    ids = {c.id for c in rubric.components}
    for replaced, by in rubric.substitutions:
        if replaced not in ids or by not in ids:
            fail(f"substitution {replaced} -> {by} names an unknown component")
        if not (rubric.component(replaced).required and rubric.component(by).required):
            fail(f"substitution {replaced} -> {by}: both components must be required")


# --------------------------------------------------------------------------------------------------------
# Inputs and results


@dataclass(frozen=True)
class ComponentEvidence:
    """What an audit established about one MOF component: does it exist, and under which license id?

    ``license`` is an SPDX id (or any string; only MOT's open ids count), or None when the component has
    no license. Any object with these two attributes, or a mapping with these two keys, is accepted too.
    """

    present: bool
    license: str | None = None


@dataclass(frozen=True)
class ComponentResult:
    """One MOF component as the classification saw it, so that a report can say why."""

    id: int
    name: str
    type: str
    required_for: tuple[int, ...]
    optional_for: tuple[int, ...]
    included: bool  # listed in the MOT file / present in the evidence
    license: str | None  # the license that applies, after falling back to global licenses
    license_source: str | None  # "component", "release.license.<type>", "release.license.distribution"
    license_open: bool
    open_because: str | None  # "osi-approved", "fsf-libre", "open-data", "listed"
    type_appropriate: bool  # MOT warns (but still counts) when an open license is not type-appropriate
    status: str  # open | invalid | unlicensed | absent
    counts_for: tuple[int, ...]  # classes in whose "included" (or optional) list MOT put the component
    substitutes_for: int | None = None  # the component this one stood in for (research paper -> report)
    substituted_by: int | None = None

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "required_for": list(self.required_for),
            "optional_for": list(self.optional_for),
            "included": self.included,
            "license": self.license,
            "license_source": self.license_source,
            "license_open": self.license_open,
            "open_because": self.open_because,
            "type_appropriate": self.type_appropriate,
            "status": self.status,
            "counts_for": list(self.counts_for),
            "substitutes_for": self.substitutes_for,
            "substituted_by": self.substituted_by,
        }


@dataclass(frozen=True)
class MofClassification:
    mof_class: int  # 0 = unclassified, else 1, 2 or 3 (1 is the most open)
    progress: Mapping[str, float]  # "1", "2", "3" -> percent, the unrounded float MOT reports
    components: tuple[ComponentResult, ...]
    label: str
    rubric_name: str
    rubric_version: str
    ignored_components: tuple[str, ...] = ()  # names in the file that are not MOF component names

    @property
    def total_progress(self) -> float:
        """MOT's getTotalProgress: the mean of the three progress figures (summed from class 3 down)."""
        return sum(self.progress[str(k)] for k in CLASSES) / 3

    @property
    def not_type_appropriate(self) -> tuple[int, ...]:
        """Open components whose license does not suit their type (MOT's "conditional" warning)."""
        return tuple(c.id for c in self.components if c.status == OPEN and not c.type_appropriate)

    def to_dict(self) -> dict:
        return {
            "class": self.mof_class,
            "label": self.label,
            "progress": {key: _json_number(self.progress[key]) for key in ("1", "2", "3")},
            "components": [component.to_dict() for component in self.components],
            "not_type_appropriate": list(self.not_type_appropriate),
            "ignored_components": list(self.ignored_components),
            "rubric": {"name": self.rubric_name, "version": self.rubric_version},
        }


def _json_number(value: float) -> int | float:
    # MOT's API writes whole percentages as integers (0, 60, 100) and the others as full floats.
    return int(value) if value.is_integer() else value


# --------------------------------------------------------------------------------------------------------
# Entry points


def classify_mot_file(path: str | os.PathLike) -> MofClassification:
    """Classify a Model Openness Tool YAML file (``models/*.yml``); MalformedInput if it is not one."""
    from openaudit.inspect.safe_yaml import load_yaml_bounded
    from openaudit.limits import read_text_bounded

    text = read_text_bounded(path, limit=MOT_FILE_MAX_BYTES)
    document = load_yaml_bounded(text, os.fspath(path))
    try:
        return classify_mot(document)
    except MotFileError as exc:
        raise MotFileError(f"{os.fspath(path)}: {exc}") from None


def classify_mot(document: Mapping[str, Any]) -> MofClassification:
    """Classify a parsed MOT YAML document (``{"framework": ..., "release": {...}}``)."""
    rubric = mof_rubric()
    release = document.get("release") if isinstance(document, Mapping) else None
    if not isinstance(release, Mapping):
        raise MotFileError("not a Model Openness Tool file: no `release` mapping at the top level")
    entries = release.get("components")
    if not isinstance(entries, list):
        raise MotFileError("release.components must be a list of components")

    listed: list[int] = []
    own_licenses: dict[int, str] = {}
    ignored: list[str] = []
    for index, entry in enumerate(entries):
        where = f"release.components[{index}]"
        if not isinstance(entry, Mapping):
            raise MotFileError(f"{where} must be a mapping with a `name`")
        name = entry.get("name")
        if not isinstance(name, str):
            raise MotFileError(f"{where}.name must be a string")
        component = rubric.by_name(name)
        if component is None:
            # MOT's importer would silently map an unknown name onto some component; we skip it and say so.
            ignored.append(name)
            continue
        if component.id not in listed:
            listed.append(component.id)
        license_id = entry.get("license")
        if license_id is None:  # no key, or `license:` with no value: the global licenses apply
            continue
        if not isinstance(license_id, str):
            raise MotFileError(f"{where}.license must be a string, not {type(license_id).__name__}")
        # A repeated component keeps the last license given (MOT keys its licenses by component id).
        own_licenses[component.id] = "" if license_id == rubric.unlicensed else license_id

    return _evaluate(rubric, listed, own_licenses, _global_licenses(release.get("license")), tuple(ignored))


def classify_components(components: Mapping[int | str, Any]) -> MofClassification:
    """Apply MOT's rules to verified components.

    ``components`` maps a MOF component id (int, e.g. 10) or its exact MOF name ("Model parameters (Final)")
    to a :class:`ComponentEvidence` (or any object or mapping with ``present`` and ``license``). Components
    not in the mapping, or with ``present=False``, are absent. A present component with ``license=None``
    is unlicensed: there is no release-wide license to fall back to, the evidence is per component.
    """
    rubric = mof_rubric()
    listed: list[int] = []
    own_licenses: dict[int, str] = {}
    for key, evidence in components.items():
        try:
            component = rubric.component(key)
        except KeyError:
            raise ValueError(f"{key!r} is not a MOF component id or name") from None
        present, license_id = _evidence_fields(evidence)
        if not present:
            continue
        if license_id is not None and not isinstance(license_id, str):
            raise TypeError(f"license of MOF component {key!r} must be a string or None")
        if component.id not in listed:
            listed.append(component.id)
        own_licenses[component.id] = "" if license_id in (None, rubric.unlicensed) else license_id
    return _evaluate(rubric, listed, own_licenses, {}, ())


def _evidence_fields(evidence: Any) -> tuple[bool, Any]:
    if isinstance(evidence, Mapping):
        return bool(evidence.get("present")), evidence.get("license")
    return bool(getattr(evidence, "present")), getattr(evidence, "license", None)


def _global_licenses(value: Any) -> dict[str, str]:
    """``release.license`` -> {"distribution"|type: name}, keeping only names PHP does not find empty."""
    found: dict[str, str] = {}
    if not isinstance(value, Mapping):
        return found  # MOT reads name offsets of a non-mapping as empty
    for key in ("distribution", *COMPONENT_TYPES):
        entry = value.get(key)
        if not isinstance(entry, Mapping):
            continue
        name = entry.get("name")
        if name is None:
            continue
        if not isinstance(name, str):
            raise MotFileError(f"release.license.{key}.name must be a string, not {type(name).__name__}")
        if _php_truthy(name):
            found[key] = name
    return found


def _php_truthy(text: str) -> bool:
    # PHP's empty() and ?: treat "" and "0" as empty; MOT uses both on license names.
    return text not in ("", "0")


# --------------------------------------------------------------------------------------------------------
# The evaluation (ModelEvaluator::evaluate, getProgress, getClassification)


@dataclass
class _ClassLists:
    missing: list[int]
    included: list[int]
    invalid: list[int]
    unlicensed: list[int]
    optional: list[int]

    def status_of(self, component_id: int) -> str | None:
        # getComponentStatus: the first list holding the id, in this order.
        for status in ("included", "invalid", "unlicensed"):
            if component_id in getattr(self, status):
                return status
        return None


def _evaluate(
    rubric: MofRubric,
    listed: Sequence[int],
    own_licenses: Mapping[int, str],
    global_licenses: Mapping[str, str],
    ignored: tuple[str, ...],
) -> MofClassification:
    resolved = {cid: _resolve_license(rubric.component(cid), own_licenses, global_licenses) for cid in listed}

    def sort_into(lists: _ClassLists, component_ids: Iterable[int], open_list: list[int], required: bool) -> None:
        for cid in component_ids:
            if cid not in resolved:
                if required:
                    lists.missing.append(cid)
                continue
            license_id = resolved[cid][0] or rubric.unlicensed
            if rubric.is_open(license_id):
                open_list.append(cid)
            elif license_id == rubric.unlicensed:
                lists.unlicensed.append(cid)
            else:
                lists.invalid.append(cid)

    evaluation: dict[int, _ClassLists] = {}
    for mof_class in CLASSES:
        lists = _ClassLists([], [], [], [], [])
        sort_into(lists, rubric.required_ids(mof_class), lists.included, required=True)
        sort_into(lists, rubric.optional_ids(mof_class), lists.optional, required=False)
        evaluation[mof_class] = lists

    substituted = _apply_substitutions(rubric, evaluation)
    progress = {str(k): _progress(rubric, evaluation, k) for k in (1, 2, 3)}
    mof_class = UNCLASSIFIED
    for k in CLASSES:  # the last class at exactly 100.0 in the walk 3, 2, 1 is the most open one
        if progress[str(k)] == 100.0:
            mof_class = k

    results = []
    for component in rubric.components:
        license_id, source = resolved.get(component.id, (None, None))
        effective = license_id or rubric.unlicensed
        included = component.id in resolved
        if not included:
            status = ABSENT
        elif rubric.is_open(effective):
            status = OPEN
        elif effective == rubric.unlicensed:
            status, license_id = UNLICENSED, None
        else:
            status = INVALID
        results.append(
            ComponentResult(
                id=component.id,
                name=component.name,
                type=component.type,
                required_for=component.required_for,
                optional_for=component.optional_for,
                included=included,
                license=license_id,
                license_source=source,
                license_open=status == OPEN,
                open_because=rubric.open_because(effective) if included else None,
                type_appropriate=license_id is not None and rubric.is_type_appropriate(license_id, component.type),
                status=status,
                counts_for=tuple(
                    k for k in CLASSES
                    if component.id in evaluation[k].included or component.id in evaluation[k].optional
                ),
                substitutes_for=next((r for r, b in substituted if b == component.id), None),
                substituted_by=next((b for r, b in substituted if r == component.id), None),
            )
        )
    return MofClassification(
        mof_class=mof_class,
        progress=MappingProxyType(progress),
        components=tuple(results),
        label=rubric.labels[mof_class],
        rubric_name=rubric.name,
        rubric_version=rubric.version,
        ignored_components=ignored,
    )


def _resolve_license(
    component: MofComponent, own_licenses: Mapping[int, str], global_licenses: Mapping[str, str]
) -> tuple[str | None, str | None]:
    """(license, where it came from) by MOT's resolveLicense; (None, source) for an explicit "none"."""
    if component.id in own_licenses:
        value = own_licenses[component.id]
        return (value if _php_truthy(value) else None), "component"
    for key in (component.type, "distribution"):
        if key in global_licenses:
            return global_licenses[key], f"release.license.{key}"
    return None, None


def _apply_substitutions(rubric: MofRubric, evaluation: dict[int, _ClassLists]) -> list[tuple[int, int]]:
    """handleTechnicalReportOmission, for each (component, replaced_by) pair of the rubric.

    For MOF: when the technical report (11) is not included at Class III and the research paper (21) has any
    status at Class I, 11 leaves every missing list and 21 joins Classes III and II with that status.
    """
    applied = []
    for replaced, by in rubric.substitutions:
        replaced_entry = max(rubric.component(replaced).required_for)
        by_entry = max(rubric.component(by).required_for)
        if evaluation[replaced_entry].status_of(replaced) == "included":
            continue
        status = evaluation[by_entry].status_of(by)
        if status is None:
            continue
        for lists in evaluation.values():
            if replaced in lists.missing:
                lists.missing.remove(replaced)
        for k in CLASSES:
            if k > by_entry:
                getattr(evaluation[k], status).append(by)
        applied.append((replaced, by))
    return applied


def _progress(rubric: MofRubric, evaluation: Mapping[int, _ClassLists], mof_class: int) -> float:
    """getProgress: 0 while a less demanding class is short, else included / required * 100, capped."""
    total = included = 0
    current = CLASSES[0]
    while current >= mof_class:
        total = len(rubric.required_ids(current))
        included = len(evaluation[current].included)
        if included < total:
            break
        current -= 1
    if current > mof_class:
        return 0.0
    lists = evaluation[mof_class]
    for replaced, by in rubric.substitutions:
        # Where both are required (Class I), an included paper without an included report lowers the bar by one.
        if replaced in rubric.required_ids(mof_class) and by in rubric.required_ids(mof_class):
            if lists.status_of(replaced) != "included" and lists.status_of(by) == "included":
                total -= 1
    return float(min((included / total) * 100, 100))
