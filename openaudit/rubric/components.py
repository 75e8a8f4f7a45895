"""Which of the Model Openness Framework's 17 components a release contains, under which license, and why.

The detection rules are data (``checks/components.yaml``, validated against ``schemas/rubric.schema.json``);
this module applies them to what the audit already read: the release inventory, the model card, the weights
inspection, the architecture check and the license evidence. Release files are hostile: text is read only
from the head of a file (``limits.max_bytes_per_file``), within a budget of files, bytes and seconds, lines
are cut before matching, and nothing is executed or unpickled.

Statuses (relative to MOF's license lists in ``checks/mof.yaml``, license names normalised to SPDX ids):
``open`` (in the release under an open license), ``restricted`` (in the release under any other license,
including one openaudit does not recognise), ``closed`` (in the release with no license, or "all rights
reserved") and ``absent`` (not in the release: a link in the card is a claim and leaves it absent).

Licenses, per component, follow the chain of its type in the rubric: ``own`` is a license file in the folder
of the component's files or a folder above them (below the root: ``data/LICENSE`` for ``data/train/*.jsonl``);
a scope (``release_data``/``release_document``) is a release-wide license for that content type (a root
``LICENSE-DATA`` file, or a data license among the card's declared licenses); ``release`` is the release's
license: a recognised root license file, else the card's declaration, else an unrecognised root license file.
When a component's files fall under different licenses, the least open one decides its status.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Any, Iterable, Mapping, Sequence

from openaudit.errors import MalformedInput, ParseTimeout
from openaudit.findings import Severity
from openaudit.limits import Deadline, open_regular
from openaudit.release import WEIGHTS, Release, ReleaseFile
from openaudit.rubric.loader import RubricError, load_rubric, rubric_path

OPEN = "open"
RESTRICTED = "restricted"
CLOSED = "closed"
ABSENT = "absent"
STATUSES = (OPEN, RESTRICTED, CLOSED, ABSENT)
_STATUS_RANK = {CLOSED: 0, RESTRICTED: 1, OPEN: 2}  # least open first: the worst file decides

# Kinds of evidence: found in the release (establishes the component), a link to it (a claim), or something
# looked at that falls short (a README that is not a model card, a checkpoint that is not a series).
FOUND = "found"
LINKED = "linked"
INSUFFICIENT = "insufficient"

RULE_TYPES = ("paths", "card_metadata", "card_heading", "card_text", "card_topics", "weights", "series", "architecture")
MAX_LINE_CHARS = 1000  # lines are cut before regexes run, so no line can make a pattern slow
_ALL_RIGHTS_RESERVED = re.compile(r"all\s+rights\s+reserved", re.I)
_PERMISSION_WORDS = re.compile(r"permission\s+is\s+hereby\s+granted|licen[cs]ed\s+under|you\s+may\s+(?:use|copy)|grants?\s+you", re.I)


# --------------------------------------------------------------------------------------------------------
# The rubric, as typed data


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


# --------------------------------------------------------------------------------------------------------
# Results


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

    @property
    def mof_id(self) -> str | None:
        """The id MOF compares exactly: the SPDX id, else the catalogue key, else a marker for "unrecognised"."""
        if self.status == CLOSED:
            return None
        if self.key is None:
            return "LicenseRef-unrecognised"
        return _spdx(self.key)

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


# --------------------------------------------------------------------------------------------------------
# Bounded reading


class _Reader:
    """Heads of release files, within the rubric's budget of files, bytes and seconds; cached per path."""

    def __init__(self, limits: Mapping[str, Any]):
        self.max_bytes = int(limits["max_bytes_per_file"])
        self.files_left = int(limits["max_files_read"])
        self.bytes_left = int(limits["max_total_bytes"])
        self.deadline = Deadline(float(limits["seconds"]))
        self.cache: dict[str, str | None] = {}
        self.heads: dict[str, bytes | None] = {}
        self.skipped: set[str] = set()
        self.timed_out = False

    def _budget_left(self) -> bool:
        if self.timed_out:
            return False
        try:
            self.deadline.check_now()
        except ParseTimeout:
            self.timed_out = True
            return False
        return self.files_left > 0 and self.bytes_left > 0

    def head(self, entry: ReleaseFile, size: int) -> bytes | None:
        if entry.path in self.heads:
            return self.heads[entry.path]
        data = None
        if self._budget_left():
            try:
                with open_regular(entry.location) as handle:
                    data = handle.read(size)
            except MalformedInput:
                data = None
            self.bytes_left -= len(data or b"")
        else:
            self.skipped.add(entry.path)
        self.heads[entry.path] = data
        return data

    def text(self, entry: ReleaseFile) -> str | None:
        """The head of a text file (None: unreadable, binary, or over budget)."""
        if entry.path in self.cache:
            return self.cache[entry.path]
        text = None
        if not self._budget_left():
            self.skipped.add(entry.path)
        else:
            self.files_left -= 1
            limit = min(self.max_bytes, self.bytes_left)
            try:
                with open_regular(entry.location) as handle:
                    data = handle.read(limit)
            except MalformedInput:
                data = b""
            self.bytes_left -= len(data)
            if b"\x00" not in data[:8192]:
                text = data.decode("utf-8", errors="replace")
        self.cache[entry.path] = text
        return text

    def scan_lines(self, text: str, patterns: Sequence[tuple[str, re.Pattern]]) -> dict[str, tuple[int, str]]:
        """label -> (1-based line, what matched: the pattern's group 1 or its label), first match of each."""
        found: dict[str, tuple[int, str]] = {}
        for number, line in enumerate(text.split("\n"), 1):
            if number & 63 == 0 and not self._budget_left() and self.timed_out:
                break
            line = line[:MAX_LINE_CHARS]
            for label, pattern in patterns:
                if label in found:
                    continue
                match = pattern.search(line)
                if match is not None:
                    shown = match.group(1) if pattern.groups and match.group(1) else label
                    found[label] = (number, shown)
            if len(found) == len(patterns):
                break
        return found

    def limits_hit(self) -> tuple[str, ...]:
        notes = []
        if self.timed_out:
            notes.append("the time budget for reading file contents ran out")
        if self.skipped:
            notes.append(f"{len(self.skipped)} file(s) were not read for content (budget of files, bytes or time spent)")
        return tuple(notes)


# --------------------------------------------------------------------------------------------------------
# The model card, as lines and sections


@dataclass(frozen=True)
class _Heading:
    index: int  # 0-based line index
    level: int
    text: str  # cleaned, lower-case


_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*)$")  # the closing #s are stripped in Python (no backtracking)
MAX_HEADING_CHARS = 200
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_MARKUP = re.compile(r"[*_`]+|\[([^\]]*)\]\([^)]*\)")


class _CardView:
    def __init__(self, path: str, text: str, metadata: Mapping[str, Any]):
        self.path = path
        self.metadata = metadata
        self.lines = [line[:MAX_LINE_CHARS * 4] for line in text.split("\n")]
        self.front_matter_end = self._front_matter_end()
        self.headings = self._headings()

    def _front_matter_end(self) -> int:
        if not self.lines or self.lines[0].strip() != "---":
            return 0
        for index in range(1, len(self.lines)):
            if self.lines[index].strip() == "---":
                return index + 1
        return 0

    def _headings(self) -> list[_Heading]:
        found = []
        fenced = False
        for index in range(self.front_matter_end, len(self.lines)):
            line = self.lines[index]
            if _FENCE.match(line):
                fenced = not fenced
                continue
            if fenced:
                continue
            match = _ATX.match(line)
            if match:
                raw = match.group(2)[:MAX_HEADING_CHARS].rstrip(" \t#\r")
                text = _MARKUP.sub(lambda m: m.group(1) or "", raw).strip().lower()
                found.append(_Heading(index, len(match.group(1)), text))
        return found

    def section(self, heading: _Heading) -> list[str]:
        end = len(self.lines)
        for other in self.headings:
            if other.index > heading.index and other.level <= heading.level:
                end = other.index
                break
        return self.lines[heading.index + 1:end]

    def metadata_line(self, key: str) -> int | None:
        pattern = re.compile(rf"^{re.escape(key)}\s*:")
        for index in range(1, max(self.front_matter_end - 1, 1)):
            if pattern.match(self.lines[index]):
                return index + 1
        return None


# --------------------------------------------------------------------------------------------------------
# Detection


@dataclass
class _Found:
    items: list[EvidenceItem] = field(default_factory=list)

    def add(self, item: EvidenceItem) -> None:
        if item not in self.items:
            self.items.append(item)


class _Detector:
    def __init__(self, release: Release, card, weights, architecture, rubric: DetectionRubric):
        self.release = release
        self.card = card
        self.weights = weights
        self.architecture = architecture
        self.rubric = rubric
        self.reader = _Reader(rubric.limits)
        self.card_view = _CardView(card.path, card.text, card.metadata) if card is not None else None
        self.max_links = int(rubric.limits["max_links"])
        self.series = self._series_groups()
        self.best_card_topics: tuple[str, ...] = ()

    # ---- files
    def _candidates(self, rule: DetectionRule) -> list[ReleaseFile]:
        chosen = []
        for entry in self.release.files:
            if rule.kinds is not None and entry.kind not in rule.kinds:
                continue
            if not rule.paths.search(entry.path):
                continue
            if rule.exclude is not None and rule.exclude.search(entry.path):
                continue
            chosen.append(entry)
        return chosen

    def rule_paths(self, rule: DetectionRule) -> list[EvidenceItem]:
        items = []
        for entry in self._candidates(rule):
            if rule.magic is not None:
                head = self.reader.head(entry, len(rule.magic))
                if head != rule.magic:
                    continue
            if not rule.content:
                items.append(EvidenceItem(FOUND, rule.note, rule.key, entry.path))
                continue
            text = self.reader.text(entry)
            if text is None:
                continue
            matched = self.reader.scan_lines(text, rule.content)
            if len(matched) < rule.min_distinct:
                continue
            first_line = min(line for line, _ in matched.values())
            shown = ", ".join(value for _, value in sorted(matched.values()))
            items.append(EvidenceItem(FOUND, f"{rule.note}: {shown}", rule.key, entry.path, first_line))
        return items

    # ---- card
    def rule_card_metadata(self, rule: DetectionRule) -> list[EvidenceItem]:
        view = self.card_view
        if view is None:
            return []
        key = rule.spec["key"]
        value = view.metadata.get(key)
        line = view.metadata_line(key)
        shape = rule.spec.get("shape", "present")
        kind = LINKED if rule.linked else FOUND
        if shape == "model-index-results":
            results, metrics = _model_index_counts(value)
            if metrics == 0:
                return []
            return [EvidenceItem(kind, f"{rule.note}: {metrics} metric(s) in {results} result(s)", rule.key, view.path, line)]
        if shape == "id-list":
            ids = [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
            template = rule.spec.get("url")
            items = []
            for identifier in ids[: self.max_links]:
                identifier = identifier.strip()[:200]
                if not identifier:
                    continue
                url = template.replace("{id}", identifier) if template else None
                note = f"{rule.note} ({identifier})" + (", linked, not in the release" if rule.linked else "")
                items.append(EvidenceItem(kind, note, rule.key, view.path, line, url))
            return items
        if value in (None, "", [], {}):
            return []
        return [EvidenceItem(kind, rule.note, rule.key, view.path, line)]

    def rule_card_heading(self, rule: DetectionRule) -> list[EvidenceItem]:
        view = self.card_view
        if view is None:
            return []
        heading_pattern = rule.regexes[0]
        requires = rule.regexes[1] if len(rule.regexes) > 1 else None
        min_chars = int(rule.spec.get("min_chars", 0))
        items = []
        for heading in view.headings:
            if not heading_pattern.search(heading.text):
                continue
            body = view.section(heading)
            if requires is not None and not any(requires.search(line) for line in body):
                continue
            if sum(len(line.strip()) for line in body) < min_chars:
                continue
            kind = LINKED if rule.linked else FOUND
            items.append(EvidenceItem(kind, f"{rule.note} (\"{heading.text[:80]}\")", rule.key, view.path, heading.index + 1))
        return items

    def rule_card_text(self, rule: DetectionRule) -> list[EvidenceItem]:
        view = self.card_view
        if view is None:
            return []
        template = rule.spec.get("url")
        seen: set[str] = set()
        items = []
        for index, line in enumerate(view.lines):
            line = line[:MAX_LINE_CHARS * 2]
            for pattern in rule.regexes:
                for match in pattern.finditer(line):
                    value = (match.group(1) if pattern.groups else match.group(0)).rstrip(".,;:")
                    url = template.replace("{1}", value) if template else (value if value.startswith("http") else None)
                    dedupe = (url or value).lower()
                    if dedupe in seen:
                        continue
                    seen.add(dedupe)
                    if len(items) >= self.max_links:
                        return items
                    kind = LINKED if rule.linked else FOUND
                    note = f"{rule.note} ({value})" + (", linked, not in the release" if rule.linked else "")
                    items.append(EvidenceItem(kind, note, rule.key, view.path, index + 1, url))
        return items

    def rule_card_topics(self, rule: DetectionRule) -> list[EvidenceItem]:
        candidates: list[_CardView] = [self.card_view] if self.card_view is not None else []
        if rule.paths is not None:
            from openaudit.inspect.card import parse_card

            for entry in self.release.files:
                if entry.kind == WEIGHTS or not rule.paths.search(entry.path):
                    continue
                if self.card_view is not None and entry.path == self.card_view.path:
                    continue
                text = self.reader.text(entry)
                if text is not None:
                    parsed = parse_card(text, entry.path)
                    candidates.append(_CardView(entry.path, text, parsed.metadata))
        best: tuple[int, _CardView, list[str]] | None = None
        for view in candidates:
            covered = _topics_covered(view, rule)
            if best is None or len(covered) > best[0]:
                best = (len(covered), view, covered)
        if best is None:
            return []
        count, view, covered = best
        self.best_card_topics = tuple(covered)
        total = len(rule.topics)
        shown = ", ".join(covered) if covered else "none"
        if count >= int(rule.spec["min"]):
            return [EvidenceItem(FOUND, f"{rule.note} covering {count} of {total} topics ({shown})", rule.key, view.path)]
        return [EvidenceItem(INSUFFICIENT, f"{view.path} covers only {count} of the {total} model-card topics ({shown})",
                             rule.key, view.path)]

    # ---- weights
    def _series_groups(self) -> dict[tuple[str, str], dict[int, list[str]]]:
        """Weights files grouped by checkpoint series (folder or file stem numbered by a series rule)."""
        pattern = next((r.regexes[0] for c in self.rubric.components for r in c.rules if r.type == "series"), None)
        groups: dict[tuple[str, str], dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
        if pattern is None or self.weights is None:
            return {}
        for scan in self.weights.scans:
            parts = scan.path.split("/")
            segments = parts[:-1] + [PurePosixPath(parts[-1]).stem]
            for index, segment in enumerate(segments):
                match = pattern.match(segment[:200])
                if match is None:
                    continue
                prefix = "/".join(parts[:index])
                groups[(prefix, segment[: match.start(1)].lower())][int(match.group(1)[:18])].append(scan.path)
                break
        return {key: dict(steps) for key, steps in groups.items()}

    def _series_folder(self, key: tuple[str, str], step: int) -> str:
        paths = self.series[key][step]
        prefix = key[0]
        first = paths[0][len(prefix) + 1:] if prefix else paths[0]
        top = first.split("/")[0]
        return f"{prefix}/{top}" if prefix else top

    def rule_series(self, rule: DetectionRule) -> list[EvidenceItem]:
        min_distinct = int(rule.spec["min_distinct"])
        incomplete = {scan.path for scan in self.weights.scans if not scan.complete} if self.weights else set()
        items = []
        for key, steps in sorted(self.series.items()):
            readable = {step: paths for step, paths in steps.items() if not (set(paths) & incomplete)}
            if len(readable) >= min_distinct:
                for step in sorted(readable):
                    files = len(readable[step])
                    items.append(EvidenceItem(FOUND, f"{rule.note}: step {step} ({files} weights file{'s' if files != 1 else ''})",
                                              rule.key, self._series_folder(key, step)))
            else:
                only = ", ".join(self._series_folder(key, step) for step in sorted(steps))
                items.append(EvidenceItem(INSUFFICIENT, f"{only}: {len(readable)} readable checkpoint(s), not a series of "
                                                        f"{min_distinct} or more", rule.key, only.split(", ")[0]))
        return items

    def _series_paths(self, min_distinct: int) -> tuple[set[str], list[str]]:
        """(every weights path in a real series, the paths of the latest checkpoint of the longest series)."""
        in_series: set[str] = set()
        latest: list[str] = []
        longest = 0
        for steps in self.series.values():
            if len(steps) < min_distinct:
                continue
            for paths in steps.values():
                in_series.update(paths)
            if len(steps) > longest:
                longest, latest = len(steps), steps[max(steps)]
        return in_series, latest

    def rule_weights(self, rule: DetectionRule) -> list[EvidenceItem]:
        from openaudit.inspect.tensors import PARAMETER

        weights = self.weights
        if weights is None or not weights.scans:
            return []
        spec = rule.spec
        series_rule = next((r for c in self.rubric.components for r in c.rules if r.type == "series"), None)
        in_series, latest = (self._series_paths(int(series_rule.spec["min_distinct"])) if series_rule and spec.get("exclude_series")
                             else (set(), []))
        chosen = [s for s in weights.primary_scans if s.path not in in_series]
        if not chosen:
            chosen = [s for s in weights.scans if s.path not in in_series]
        if not chosen:
            chosen = [s for s in weights.scans if s.path in set(latest)]
        if not chosen:
            chosen = list(weights.primary_scans)
        chosen_paths = {s.path for s in chosen}
        reject = spec.get("reject_severity")
        reject_rank = Severity(reject).rank if reject else None
        problems: list[EvidenceItem] = []
        if spec.get("require_complete", True):
            for scan in chosen:
                if not scan.complete:
                    problems.append(EvidenceItem(INSUFFICIENT, f"{scan.path} could not be read completely", rule.key, scan.path))
        if reject_rank is not None:
            flagged: dict[str, str] = {}
            for item in weights.findings:
                if item.location in chosen_paths and item.severity.rank >= reject_rank and item.location not in flagged:
                    flagged[item.location] = item.id
            for path, finding_id in sorted(flagged.items()):
                problems.append(EvidenceItem(INSUFFICIENT, f"{path}: {finding_id} ({reject} or worse)", rule.key, path))
        primaries = {s.path for s in weights.primary_scans}
        if chosen_paths <= primaries:
            parameters = sum(t.elements for t in weights.tensors if t.role == PARAMETER and t.file in chosen_paths)
        else:
            parameters = sum(t.elements for s in chosen for t in s.tensors if t.role == PARAMETER)
        if parameters < int(spec.get("min_parameters", 1)):
            problems.append(EvidenceItem(INSUFFICIENT, f"the weights hold {parameters:,} parameters", rule.key, chosen[0].path))
        if problems:
            return problems[: int(self.rubric.limits["max_evidence"])]
        by_folder: dict[str, list] = defaultdict(list)
        for scan in chosen:
            by_folder[scan.path.rpartition("/")[0]].append(scan)
        items = []
        for folder, scans in sorted(by_folder.items()):
            formats = sorted({s.format for s in scans})
            count = len(scans)
            folder_params = (sum(t.elements for t in weights.tensors if t.role == PARAMETER and t.file in {s.path for s in scans})
                             if chosen_paths <= primaries else
                             sum(t.elements for s in scans for t in s.tensors if t.role == PARAMETER))
            where = scans[0].path if count == 1 else (folder or ".")
            how = "read without unpickling" if "pickle" in formats else "headers read"
            items.append(EvidenceItem(FOUND, f"{rule.note}: {count} {'/'.join(formats)} file{'s' if count != 1 else ''}, "
                                             f"{folder_params:,} parameters, {how}", rule.key, where))
        return items

    def rule_architecture(self, rule: DetectionRule) -> list[EvidenceItem]:
        architecture = self.architecture
        if architecture is None or architecture.status not in rule.spec["status"]:
            return []
        source = architecture.config_source or ""
        path = next((f.path for f in self.release.files if source == f.path or source.startswith(f.path + " ")), None)
        if rule.spec.get("config_in_release") and path is None:
            return []
        return [EvidenceItem(FOUND, f"{rule.note} ({architecture.family}, {architecture.status})", rule.key, path)]

    def run(self, rule: DetectionRule) -> list[EvidenceItem]:
        items = getattr(self, f"rule_{rule.type}")(rule)
        if rule.linked:
            items = [replace(item, kind=LINKED) if item.kind == FOUND else item for item in items]
        return items


def _model_index_counts(value: Any) -> tuple[int, int]:
    """(results, metrics) of a model-index block; (0, 0) unless it has the Hub's shape."""
    results = metrics = 0
    if not isinstance(value, list):
        return 0, 0
    for model in value[:100]:
        if not isinstance(model, Mapping) or not isinstance(model.get("results"), list):
            continue
        for result in model["results"][:1000]:
            if isinstance(result, Mapping) and isinstance(result.get("metrics"), list):
                found = sum(1 for m in result["metrics"][:1000] if isinstance(m, Mapping) and "value" in m)
                if found:
                    results += 1
                    metrics += found
    return results, metrics


def _topics_covered(view: _CardView, rule: DetectionRule) -> list[str]:
    covered = []
    metadata_topics = rule.spec.get("metadata") or {}
    for name, pattern in rule.topics:
        if any(pattern.search(h.text) for h in view.headings):
            covered.append(name)
            continue
        if any(topic == name and view.metadata.get(key) not in (None, "", [], {}) for key, topic in metadata_topics.items()):
            covered.append(name)
    return covered


# --------------------------------------------------------------------------------------------------------
# Licenses


class _Licenses:
    """Which license covers a path, following the rubric's chains."""

    def __init__(self, release: Release, card, licenses, rubric: DetectionRubric, reader: _Reader,
                 claims_file: str | None = None):
        self.release = release
        self.card = card
        self.evidence = licenses
        self.claims_file = claims_file
        self.rubric = rubric
        self.reader = reader
        self.normalized: list[NormalizedLicense] = []
        self._file_cache: dict[str, LicenseChoice] = {}
        self.scope_files = {name: files for name, (files, _) in rubric.scopes.items()}
        self.release_choice = self._release_choice()
        self.scope_choices = {name: self._scope_choice(name) for name in rubric.scopes}
        self.own_by_folder = self._own_files()

    # ---- reading license files
    def file_choice(self, entry: ReleaseFile, origin: str) -> LicenseChoice:
        cached = self._file_cache.get(entry.path)
        if cached is None:
            cached = self._read_license_file(entry)
            self._file_cache[entry.path] = cached
        return replace(cached, origin=origin)

    def _read_license_file(self, entry: ReleaseFile) -> LicenseChoice:
        from openaudit.inspect.license import detect_license_text
        from openaudit.limits import read_text_bounded

        detections = [d for d in (self.evidence.detected if self.evidence else ()) if d.source == entry.path]
        text = None
        if not detections:
            try:
                text = read_text_bounded(entry.location, 2 * 1024 * 1024)
            except MalformedInput:
                text = None
            detection = detect_license_text(text, source=entry.path) if text is not None else None
            detections = [detection] if detection is not None else []
        if detections:
            best = max(detections, key=lambda d: d.confidence)
            self.normalized.append(NormalizedLicense(f"text of {entry.path}", _spdx(best.key), f"{entry.path} ({best.method})"))
            return _choice_for_key(best.key, entry.path, "", declared=False)
        if text is not None and _ALL_RIGHTS_RESERVED.search(text[:20000]) and not _PERMISSION_WORDS.search(text[:20000]):
            return LicenseChoice(None, entry.path, "", CLOSED, f"{entry.path} reserves all rights")
        return LicenseChoice(None, entry.path, "", RESTRICTED, f"{entry.path} is a license openaudit does not recognise")

    def _root_license_files(self, pattern: re.Pattern | None, exclude_scopes: bool) -> list[ReleaseFile]:
        found = []
        for entry in self.release.files:
            if "/" in entry.path or pattern is None or not pattern.search(entry.path):
                continue
            if exclude_scopes and any(files is not None and files.search(entry.path) for files in self.scope_files.values()):
                continue
            found.append(entry)
        return found

    def _release_choice(self) -> LicenseChoice | None:
        unrecognised = None
        for entry in self._root_license_files(self.rubric.release_files, exclude_scopes=True):
            choice = self.file_choice(entry, "release")
            if choice.key is not None:
                return choice
            unrecognised = unrecognised or choice
        declared = self._declared()
        if declared:
            key, source = declared[0]
            return _choice_for_key(key, source, "release", declared=True)
        return unrecognised

    def _declared(self) -> list[tuple[str, str]]:
        """Declared catalogue keys with their sources, card metadata first; records each normalisation."""
        from openaudit.inspect.license import normalize_license_id

        declared: list[tuple[str, str]] = []
        metadata = self.card.metadata if self.card is not None else {}
        values = metadata.get("license")
        for value in ([values] if isinstance(values, str) else values if isinstance(values, list) else []):
            if not isinstance(value, str):
                continue
            key = normalize_license_id(value)
            source = f"{self.card.path} (metadata license)"
            self.normalized.append(NormalizedLicense(value[:200], _spdx(key) if key else None, source))
            if key is not None:
                declared.append((key, source))
        if self.evidence is not None:
            for key, source in self.evidence.declared:
                # A MOF file's licenses are claims about the release, not its license: they are checked, not used.
                if self.claims_file is not None and source.startswith(f"{self.claims_file}#"):
                    continue
                if key is not None and (key, source) not in declared and not any(k == key for k, _ in declared):
                    declared.append((key, source))
        return declared

    def _scope_choice(self, name: str) -> LicenseChoice | None:
        from openaudit.inspect.license import catalogue

        files, kinds = self.rubric.scopes[name]
        for entry in self._root_license_files(files, exclude_scopes=False):
            return self.file_choice(entry, name)
        entries = catalogue()
        for key, source in self._declared():
            entry = entries.get(key)
            if entry is not None and entry.kind in kinds:
                return _choice_for_key(key, source, name, declared=True)
        return None

    def _own_files(self) -> dict[str, ReleaseFile]:
        own: dict[str, ReleaseFile] = {}
        for entry in self.release.files:
            folder, _, name = entry.path.rpartition("/")
            if folder and self.rubric.own_files.search(name) and folder not in own:
                own[folder] = entry
        return own

    def own_choice(self, path: str) -> LicenseChoice | None:
        folder = path if self.release.file(path) is None else path.rpartition("/")[0]
        while folder:
            entry = self.own_by_folder.get(folder)
            if entry is not None:
                return self.file_choice(entry, "own")
            folder = folder.rpartition("/")[0]
        return None

    def for_path(self, path: str, chain: Sequence[str]) -> LicenseChoice | None:
        for step in chain:
            if step == "own":
                choice = self.own_choice(path)
            elif step == "release":
                choice = self.release_choice
            else:
                choice = self.scope_choices.get(step)
            if choice is not None:
                return choice
        return None


def _spdx(key: str | None) -> str | None:
    if key is None:
        return None
    from openaudit.inspect.license import catalogue

    entry = catalogue().get(key)
    return (entry.spdx or entry.key) if entry is not None else key


def _choice_for_key(key: str, source: str, origin: str, *, declared: bool) -> LicenseChoice:
    from openaudit.inspect.license import catalogue
    from openaudit.rubric.mof import mof_rubric

    entry = catalogue().get(key)
    name = entry.name if entry is not None else key
    spdx = _spdx(key)
    why = mof_rubric().open_because(spdx)
    if why is not None:
        reason = {"osi-approved": "OSI-approved", "fsf-libre": "FSF free", "open-data": "an open data license",
                  "listed": "open under MOF's rules"}[why]
        return LicenseChoice(spdx, source, origin, OPEN, reason, name, declared)
    if entry is not None and entry.non_commercial:
        reason = "non-commercial use only"
    elif entry is not None and entry.use_restrictions:
        reason = "restricts use: " + "; ".join(sorted({r.kind for r in entry.use_restrictions}))
    elif entry is not None and entry.is_family:
        reason = "names a family of licenses, not one license"
    else:
        reason = "not an open license in MOF's lists"
    return LicenseChoice(spdx, source, origin, RESTRICTED, reason, name, declared)


# --------------------------------------------------------------------------------------------------------
# Entry point


def assess_components(release: Release, card, weights, architecture, licenses,
                      rubric: DetectionRubric | None = None, *, claims_file: str | None = None) -> ComponentsResult:
    """Every MOF component of ``release``: status, license and evidence (see the module docstring).

    ``claims_file`` is the path of a MOF file whose license declarations (which the license evidence lists
    among the release's declarations) must not count as the release's license.
    """
    rubric = rubric or detection_rubric()
    detector = _Detector(release, card, weights, architecture, rubric)
    license_resolver = _Licenses(release, card, licenses, rubric, detector.reader, claims_file)
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


# --------------------------------------------------------------------------------------------------------
# Words


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
