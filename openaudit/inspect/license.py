"""Licenses: the catalogue, naming a license from a declaration, recognising one from its text, and a verdict.

- ``catalogue()`` reads ``checks/licenses.yaml`` (validated against ``schemas/licenses.schema.json``).
- ``normalize_license_id`` maps a declared id or phrase ("apache-2.0", "Apache License, Version 2.0") to a
  catalogue key.
- ``detect_license_text`` recognises a license from a file's text (see its docstring for the method).
- ``detect_in_card_section`` finds what a model card's "License" section names.
- ``license_verdict`` compares what is declared with what the files carry.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Iterable, Mapping, Sequence

from openaudit.findings import Finding, finding
from openaudit.inspect.text import html_to_text, looks_like_html, markdown_to_text, truncate
from openaudit.resources import data_dir, load_data_yaml

# --------------------------------------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class UseRestriction:
    """One clause that limits use: a field-of-use ban, a user-count cap, an incorporated policy, ..."""

    kind: str
    summary: str
    threshold: int | None = None
    url: str | None = None


@dataclass(frozen=True)
class LicenseEntry:
    """One license of ``checks/licenses.yaml``. ``None`` in an attribute means it cannot be established."""

    key: str
    name: str
    kind: str
    spdx: str | None
    hub_id: str | None
    osi_approved: bool | None
    open_data: bool | None
    non_commercial: bool | None
    copyleft: str | None
    use_restrictions: tuple[UseRestriction, ...]
    url: str
    urls: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    texts: tuple[str, ...] = ()
    notices: tuple[str, ...] = ()
    family_of: tuple[str, ...] = ()
    same_text_as: str | None = None
    incorporates: tuple[str, ...] = ()
    notes: str | None = None

    @property
    def is_family(self) -> bool:
        """A family id (Hub ``gpl``, ``cc``, ``openrail``): it names a group of licenses, not one."""
        return bool(self.family_of)

    def restriction_kinds(self) -> frozenset[str]:
        return frozenset(r.kind for r in self.use_restrictions)


@lru_cache(maxsize=1)
def catalogue() -> Mapping[str, LicenseEntry]:
    """Every license of ``checks/licenses.yaml`` by key, validated against its JSON Schema and cross-checked.

    A malformed catalogue is a defect of openaudit itself, so it raises ``ValueError`` instead of a finding.
    """
    document = load_data_yaml(data_dir("checks").joinpath("licenses.yaml"))
    return parse_catalogue(document)


def parse_catalogue(document: object) -> Mapping[str, LicenseEntry]:
    """Validate a catalogue document (parsed YAML) against the schema and cross-check it; ValueError if bad."""
    import json

    import jsonschema

    schema = json.loads(data_dir("schemas").joinpath("licenses.schema.json").read_text(encoding="utf-8"))
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(document), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        where = "/".join(str(part) for part in first.path)
        raise ValueError(f"the license catalogue does not match its schema at {where or 'top level'}: {first.message}")
    entries: dict[str, LicenseEntry] = {}
    for raw in document["licenses"]:  # type: ignore[index]
        entry = LicenseEntry(
            key=raw["key"],
            name=raw["name"],
            kind=raw["kind"],
            spdx=raw.get("spdx"),
            hub_id=raw.get("hub_id"),
            osi_approved=raw["osi_approved"],
            open_data=raw["open_data"],
            non_commercial=raw["non_commercial"],
            copyleft=raw["copyleft"],
            use_restrictions=tuple(
                UseRestriction(r["kind"], r["summary"], r.get("threshold"), r.get("url")) for r in raw["use_restrictions"]
            ),
            url=raw["url"],
            urls=tuple(raw.get("urls", ())),
            aliases=tuple(raw.get("aliases", ())),
            texts=tuple(raw.get("texts", ())),
            notices=tuple(raw.get("notices", ())),
            family_of=tuple(raw.get("family_of", ())),
            same_text_as=raw.get("same_text_as"),
            incorporates=tuple(raw.get("incorporates", ())),
            notes=raw.get("notes"),
        )
        if entry.key in entries:
            raise ValueError(f"the license catalogue defines {entry.key!r} twice")
        entries[entry.key] = entry
    _check_references(entries)
    return MappingProxyType(entries)


def _check_references(entries: Mapping[str, LicenseEntry]) -> None:
    texts_dir = data_dir("checks").joinpath("license_texts")
    for entry in entries.values():
        for other in (*entry.family_of, *entry.incorporates, *([entry.same_text_as] if entry.same_text_as else [])):
            if other not in entries:
                raise ValueError(f"license {entry.key!r} refers to {other!r}, which is not in the catalogue")
        for name in (*entry.texts, *entry.notices):
            if not texts_dir.joinpath(name).is_file():
                raise ValueError(f"license {entry.key!r} names checks/license_texts/{name}, which does not exist")
    _build_alias_index(entries)  # raises on an alias that names two licenses


# ------------------------------------------------------------------------------------------ declared ids

# Declarations that say "not one of the known licenses" rather than naming one.
_NOT_A_LICENSE = frozenset({"other", "unknown", "none", "no license", "proprietary", "custom", "n a", "na", "tbd"})
_SUFFIXES = (" license agreement", " licence agreement", " license", " licence", " agreement", " terms of use", " terms")


def _alias_form(text: str) -> str:
    """Lower-case words and numbers only: 'Apache License, Version 2.0' -> 'apache license version 2 0'.

    Letters and digits are split ('llama3.1' -> 'llama 3 1', the same as 'Llama 3.1'); '+' becomes 'plus' so
    'GPL-2.0+' and 'openrail++' keep their meaning; British 'licence' reads as 'license'.
    """
    text = unicodedata.normalize("NFKC", text).casefold().replace("+", " plus ")
    text = _LETTER_DIGIT.sub(" ", text)
    text = _NON_ALNUM.sub(" ", text).strip()
    return _LICENCE.sub("license", text)


_LETTER_DIGIT = re.compile(r"(?<=[a-z])(?=[0-9])|(?<=[0-9])(?=[a-z])")
_NON_ALNUM = re.compile(r"[^0-9a-z]+")
_LICENCE = re.compile(r"\blicence\b")


@lru_cache(maxsize=1)
def _alias_index() -> Mapping[str, str]:
    return _build_alias_index(catalogue())


def _build_alias_index(entries: Mapping[str, LicenseEntry]) -> Mapping[str, str]:
    index: dict[str, str] = {}
    for entry in entries.values():
        names = [entry.key, entry.name, *entry.aliases]
        names += [n for n in (entry.spdx, entry.hub_id) if n]
        for name in names:
            form = _alias_form(name)
            if not form:
                continue
            owner = index.setdefault(form, entry.key)
            if owner != entry.key:
                raise ValueError(f"the alias {name!r} names both {owner!r} and {entry.key!r} in the license catalogue")
    return MappingProxyType(index)


def normalize_license_id(text: str) -> str | None:
    """The catalogue key a declared id or phrase names, or None ("other", "unknown", unrecognised, expressions).

    Matching is exact on a punctuation- and case-insensitive form: 'apache-2.0', 'Apache 2.0' and
    'Apache License, Version 2.0' all give 'Apache-2.0'. When the exact form is unknown, a leading 'the' and
    a trailing 'license'/'agreement'/'terms' are dropped and the lookup is tried again. SPDX expressions
    ('MIT OR Apache-2.0') are not single licenses and give None.
    """
    if not isinstance(text, str):
        return None
    form = _alias_form(text[:300])
    if not form or form in _NOT_A_LICENSE:
        return None
    index = _alias_index()
    for candidate in _forms_to_try(form):
        key = index.get(candidate)
        if key is not None:
            return key
    return None


def _forms_to_try(form: str) -> Iterable[str]:
    yield form
    if form.startswith("the "):
        form = form[4:]
        yield form
    for suffix in _SUFFIXES:
        if form.endswith(suffix) and len(form) > len(suffix):
            yield form[: -len(suffix)].strip()


# ------------------------------------------------------------------------------------- text normalisation

SHINGLE_WORDS = 5
# Texts longer than this are cut before matching; the license is at the start of any file worth reading.
MAX_DETECT_CHARS = 1_000_000
MAX_WORDS = 120_000
# A reference is a candidate when this share of its word 5-grams is found in the text.
MIN_FULL_TEXT_RECALL = 0.6
MIN_NOTICE_RECALL = 0.8
# Candidates this close to the best are compared on the words that tell them apart.
RIVAL_MARGIN = 0.4

_WORD = re.compile(r"[^\W_]+")
# Lines that differ between two copies of one license: copyright statements and revision dates. Only a line
# that *starts* like a notice is dropped ("Copyright 2024 ...", not "copyright notice, this list ...").
_BOILERPLATE_LINE = re.compile(
    r"(?:copyright\s*(?:\(c\)|©|\d{4}|\[yyyy\]|<year>|\{yyyy\})|\(c\)\s*\d{4}|©|all rights reserved"
    r"|last\s+(?:modified|updated|revised)\b)",
    re.I,
)
# Roman numerals and single letters are list markers ("(iv)", "b."), which re-formatting changes freely.
_LIST_MARKERS = frozenset({"ii", "iii", "iv", "vi", "vii", "viii", "ix", "xi", "xii", "xiii", "xiv", "xv"})
_EQUIVALENT_WORDS = {
    "licence": "license", "licences": "licenses", "licenced": "licensed", "licencing": "licensing",
    "authorised": "authorized", "organisation": "organization", "organisations": "organizations",
    "recognised": "recognized", "behaviour": "behavior", "whilst": "while",
}


def license_words(text: str) -> list[str]:
    """The words a license is compared on: HTML and Markdown markup removed, case and accents folded,
    copyright and "Last modified" lines dropped, list markers dropped, spelling variants unified."""
    text = truncate(text, MAX_DETECT_CHARS)
    if looks_like_html(text):
        text = html_to_text(text)
    text = markdown_to_text(text)
    kept = [line for line in text.split("\n") if not _is_boilerplate_line(line)]
    folded = unicodedata.normalize("NFKD", "\n".join(kept).casefold())
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    words: list[str] = []
    for match in _WORD.finditer(folded):
        word = match.group()
        if (len(word) == 1 and not word.isdigit()) or word in _LIST_MARKERS:
            continue
        words.append(_EQUIVALENT_WORDS.get(word, word))
        if len(words) >= MAX_WORDS:
            break
    return words


def _is_boilerplate_line(line: str) -> bool:
    stripped = line.strip()
    return len(stripped) <= 200 and _BOILERPLATE_LINE.match(stripped) is not None


def _shingles(words: Sequence[str]) -> dict[int, int]:
    """Every word 5-gram of ``words`` (hashed) with the index of its first occurrence."""
    first: dict[int, int] = {}
    n = SHINGLE_WORDS
    for index, gram in enumerate(zip(*(words[i:] for i in range(n)))):
        first.setdefault(hash(gram), index)
    return first


# -------------------------------------------------------------------------------------- text detection

FULL_TEXT = "full-text"
NOTICE = "notice"
SPDX_TAG = "spdx-id"
CARD_ID = "card-id"
CARD_LINK = "card-link"
CARD_SENTENCE = "card-sentence"


@dataclass(frozen=True)
class LicenseDetection:
    """A license recognised in a file: which, how sure (0..1), how (``method``), and where (``line``: the
    1-based line, for detections in a model card)."""

    key: str
    confidence: float
    method: str
    source: str
    line: int | None = None


@dataclass(frozen=True)
class _Reference:
    key: str
    method: str
    file: str
    shingles: frozenset[int]


@lru_cache(maxsize=1)
def _references() -> tuple[_Reference, ...]:
    texts_dir = data_dir("checks").joinpath("license_texts")
    references = []
    for entry in catalogue().values():
        for method, files in ((FULL_TEXT, entry.texts), (NOTICE, entry.notices)):
            for name in files:
                words = license_words(texts_dir.joinpath(name).read_text(encoding="utf-8"))
                references.append(_Reference(entry.key, method, name, frozenset(_shingles(words))))
    return tuple(references)


@dataclass(frozen=True)
class _Candidate:
    reference: _Reference
    recall: float


def detect_license_text(text: str, *, source: str) -> LicenseDetection | None:
    """Recognise the license a file's text carries, or None.

    Method. The text is reduced to words (``license_words``: HTML to text, Markdown markup removed, case,
    accents, quotes and punctuation folded, copyright / "Last modified" lines and list markers dropped), so
    re-wrapping, Markdown or HTML rendering and headers change nothing. Its word 5-grams are compared with
    those of every reference text in ``checks/license_texts/`` (full texts and standard notices). A
    reference's *recall* is the share of its 5-grams found in the text; extra text around the license (a
    header, a NOTICE section, an appended policy) does not lower it, and a small edit costs only the few
    5-grams that span the edited words. References with a recall of at least 0.6 (0.8 for short notices)
    are candidates.

    Close relatives (BSD-2 / BSD-3, GPL / LGPL / AGPL, CC BY / BY-SA / BY-NC, Llama 3 / 3.1 / 3.2, the RAIL
    variants) share most of their text, so candidates within 0.4 of the best recall are compared pairwise
    on the 5-grams that only one of the two has: the reference whose own words are present wins. When one
    reference is contained in the other (a notice inside a full text), the larger wins if its extra text is
    there. When both are wholly present, a license that carries the other (LGPL-3.0 after GPL-3.0) wins,
    and otherwise the one that comes first in the file. The confidence is the winner's recall.

    Without a matching text, an ``SPDX-License-Identifier:`` tag names the license (confidence 1.0).
    Work is bounded: texts are cut at 1,000,000 characters and 120,000 words, and no regular expression
    can backtrack catastrophically.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    words = license_words(text)
    first = _shingles(words)
    present = frozenset(first)
    best = _best_reference(present, first) if present else None
    if best is not None:
        return LicenseDetection(best.reference.key, round(min(best.recall, 1.0), 3), best.reference.method, source)
    key = _spdx_tag(text)
    if key is not None:
        return LicenseDetection(key, 1.0, SPDX_TAG, source)
    return None


def _best_reference(present: frozenset[int], first: Mapping[int, int]) -> _Candidate | None:
    by_key: dict[str, _Candidate] = {}
    for reference in _references():
        if not reference.shingles:
            continue
        recall = len(reference.shingles & present) / len(reference.shingles)
        needed = MIN_FULL_TEXT_RECALL if reference.method == FULL_TEXT else MIN_NOTICE_RECALL
        if recall < needed:
            continue
        held = by_key.get(reference.key)
        # One candidate per license: its full text when that matched, else the best-matching notice.
        rank = (reference.method == FULL_TEXT, recall)
        if held is None or rank > (held.reference.method == FULL_TEXT, held.recall):
            by_key[reference.key] = _Candidate(reference, recall)
    if not by_key:
        return None
    candidates = sorted(by_key.values(), key=lambda c: (-c.recall, c.reference.key))
    rivals = [c for c in candidates if c.recall >= candidates[0].recall - RIVAL_MARGIN]
    if len(rivals) == 1:
        return rivals[0]
    wins = {id(c): 0 for c in rivals}
    for i, a in enumerate(rivals):
        for b in rivals[i + 1 :]:
            outcome = _compare(a.reference, b.reference, present, first)
            if outcome > 0:
                wins[id(a)] += 1
            elif outcome < 0:
                wins[id(b)] += 1
    return max(rivals, key=lambda c: (wins[id(c)], c.recall))


def _compare(a: _Reference, b: _Reference, present: frozenset[int], first: Mapping[int, int]) -> int:
    """> 0 when the text is ``a`` rather than ``b``, < 0 for ``b``, judged on the 5-grams only one of them has."""
    only_a = a.shingles - b.shingles
    only_b = b.shingles - a.shingles
    found_a = only_a & present
    found_b = only_b & present
    share_a = len(found_a) / len(only_a) if only_a else None
    share_b = len(found_b) / len(only_b) if only_b else None
    if share_a is None and share_b is None:
        return 0
    if share_b is None:  # b's text lies inside a's: a when a's own words are there
        return 1 if share_a >= 0.5 else -1
    if share_a is None:
        return -1 if share_b >= 0.5 else 1
    if abs(share_a - share_b) > 0.05:
        return 1 if share_a > share_b else -1
    entries = catalogue()
    if b.key in entries[a.key].incorporates:
        return 1
    if a.key in entries[b.key].incorporates:
        return -1
    start_a = min((first[h] for h in found_a), default=len(first))
    start_b = min((first[h] for h in found_b), default=len(first))
    return 1 if start_a <= start_b else -1


_SPDX_TAG = re.compile(r"SPDX-License-Identifier:[ \t]*([^\s*/#]{1,100}(?:[ \t]+(?:OR|AND|WITH)[ \t]+[^\s*/#]{1,100}){0,5})")


def _spdx_tag(text: str) -> str | None:
    match = _SPDX_TAG.search(text[:65536])
    if match is None:
        return None
    value = match.group(1).strip("()")
    if re.search(r"\s(?:OR|AND|WITH)\s", value):
        return None  # an expression names several licenses; the caller sees it in the file
    return normalize_license_id(value)


# ------------------------------------------------------------------------------------------- model cards

_CARD_HEADING = re.compile(r"\b(?:licen[cs](?:e|es|ing)|terms\s+of\s+use)\b", re.I)
_ATX = re.compile(r"^\s{0,3}(#{1,6})[ \t]+(.{0,200}?)[ \t#]*$")
_SETEXT = re.compile(r"^\s{0,3}(=+|-+)\s*$")
_FENCE_LINE = re.compile(r"^\s{0,3}(?:`{3,}|~{3,})")
_FIELD = re.compile(r"^\s*licen[cs]e(?:\s+name)?\s*:\s*(\S.{0,300})$", re.I)
_URL = re.compile(r"https?://[^\s<>()\[\]\"'`]{1,500}", re.I)
_UNDER = re.compile(
    r"\b(?:licen[cs]ed|released|distributed|available|provided|published|governed|covered|subject)"
    r"(?:[ \t]{1,5}(?:to|by))?[ \t]{1,5}under[ \t]{1,5}(?:the[ \t]{1,5})?(?:terms[ \t]{1,5}of[ \t]{1,5}(?:the[ \t]{1,5})?)?"
    r"([^.;:()\n]{1,160})",
    re.I,
)
_PREFIX_STOP = re.compile(r"\s(?:and|or|which|with|for|that|as|in|on|,)\s", re.I)
MAX_CARD_SECTION_LINES = 2_000
_MAX_HEADING_CHARS = 300
_FULL_TEXT_MIN_WORDS = 150


def detect_in_card_section(markdown: str, source: str) -> list[LicenseDetection]:
    """What a model card says its license is, read from its "License" sections and ``License:`` fields.

    A section is a heading whose text mentions "license", "licensing" or "terms of use", up to the next
    heading of the same or a higher level. In it (and on any ``License: ...`` line of the card) each line is
    read for: a link to a known license address (method ``card-link``); a sentence such as "licensed under
    the Apache 2.0 license" (``card-sentence``); a line that is itself an id or a name, e.g. "apache-2.0" or
    "Llama 2 Community License" (``card-id``). A section that holds a whole license text is also matched as
    text (``full-text``). Each detection carries the 1-based line number in ``markdown``; one per license
    and line. YAML front matter is skipped (the card's ``license:`` metadata is read elsewhere).
    """
    lines = truncate(markdown).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    start = _front_matter_end(lines)
    detections: list[LicenseDetection] = []
    seen: set[tuple[str, int]] = set()

    def add(found: Iterable[LicenseDetection]) -> None:
        for detection in found:
            marker = (detection.key, detection.line or 0)
            if marker not in seen:
                seen.add(marker)
                detections.append(detection)

    headings = _headings(lines, start)
    in_section = [False] * len(lines)
    for position, (line_index, body_start, level, title) in enumerate(headings):
        if not _CARD_HEADING.search(title):
            continue
        end = len(lines)
        for later_index, _, later_level, _ in headings[position + 1 :]:
            if later_level <= level:
                end = later_index
                break
        body = range(body_start, min(end, body_start + MAX_CARD_SECTION_LINES))
        section_text = "\n".join(lines[i] for i in body)
        if len(section_text.split()) >= _FULL_TEXT_MIN_WORDS:
            # A whole license text in the section: reported at its first line, ahead of what that line names.
            full = detect_license_text(section_text, source=source)
            if full is not None and full.method in (FULL_TEXT, NOTICE):
                first_line = next((i for i in body if lines[i].strip()), body_start)
                add([LicenseDetection(full.key, full.confidence, full.method, source, first_line + 1)])
        for i in body:
            in_section[i] = True
            add(_detect_in_line(lines[i], source, i + 1))
    fenced = _fenced_lines(lines, start)
    for i in range(start, len(lines)):
        if in_section[i] or fenced[i]:
            continue
        field = _FIELD.match(markdown_to_text(lines[i]).strip())
        if field is not None:
            add(_detect_in_line(lines[i], source, i + 1))
    detections.sort(key=lambda d: (d.line or 0, d.key))
    return detections


def _front_matter_end(lines: Sequence[str]) -> int:
    if lines and lines[0].strip() == "---":
        for i in range(1, min(len(lines), 5_000)):
            if lines[i].strip() in ("---", "..."):
                return i + 1
    return 0


def _fenced_lines(lines: Sequence[str], start: int) -> list[bool]:
    fenced = [False] * len(lines)
    inside = False
    for i in range(start, len(lines)):
        if _FENCE_LINE.match(lines[i]):
            inside = not inside
            fenced[i] = True
        else:
            fenced[i] = inside
    return fenced


def _headings(lines: Sequence[str], start: int) -> list[tuple[int, int, int, str]]:
    """(line index, first body line index, level, text) of every ATX and setext heading outside fenced code."""
    fenced = _fenced_lines(lines, start)
    found = []
    for i in range(start, len(lines)):
        if fenced[i]:
            continue
        atx = _ATX.match(lines[i]) if len(lines[i]) <= _MAX_HEADING_CHARS else None
        if atx is not None:
            found.append((i, i + 1, len(atx.group(1)), atx.group(2)))
            continue
        setext = _SETEXT.match(lines[i])
        if setext is not None and i > start and lines[i - 1].strip() and not fenced[i - 1]:
            if len(lines[i - 1]) <= _MAX_HEADING_CHARS and not _ATX.match(lines[i - 1]):
                level = 1 if setext.group(1).startswith("=") else 2
                found.append((i - 1, i + 1, level, lines[i - 1].strip()))
    found.sort()
    return found


def _detect_in_line(line: str, source: str, number: int) -> list[LicenseDetection]:
    found: list[LicenseDetection] = []
    for url in _URL.findall(line[:4000]):
        key = license_from_url(url)
        if key is not None:
            found.append(LicenseDetection(key, 0.95, CARD_LINK, source, number))
    text = markdown_to_text(line[:4000]).strip()
    for match in _UNDER.finditer(text):
        key = license_at_start(match.group(1))
        if key is not None:
            found.append(LicenseDetection(key, 0.9, CARD_SENTENCE, source, number))
    value = text
    field = _FIELD.match(text)
    if field is not None:
        value = field.group(1)
    value = value.strip(" \t-*:.")
    if value and len(value) <= 100:
        key = normalize_license_id(value)
        if key is not None:
            found.append(LicenseDetection(key, 0.9, CARD_ID, source, number))
    return found


def license_at_start(phrase: str) -> str | None:
    """The license named at the start of ``phrase`` ("Apache 2.0 license, which ..."), or None: the longest
    prefix of up to ten words, before any "and", "or", "which", "with", ..., that is a known id or name."""
    phrase = _PREFIX_STOP.split(phrase[:400], maxsplit=1)[0]
    words = phrase.split()[:10]
    for size in range(len(words), 0, -1):
        key = normalize_license_id(" ".join(words[:size]))
        if key is not None:
            return key
    return None


_CC_PATH = re.compile(r"^creativecommons\.org/licenses/([a-z-]{2,12})/(\d\.\d)(?:/[a-z]{2})?$")
_ID_PATHS = (
    re.compile(r"^opensource\.org/licenses?/([A-Za-z0-9.+-]{1,64})$"),
    re.compile(r"^spdx\.org/licenses/([A-Za-z0-9.+-]{1,64})$"),
    re.compile(r"^choosealicense\.com/licenses/([A-Za-z0-9.+-]{1,64})$"),
)


def _url_form(url: str) -> str:
    form = url.strip().lower()
    form = re.sub(r"^[a-z]{2,8}://", "", form)
    form = form.split("#", 1)[0].split("?", 1)[0]
    if form.startswith("www."):
        form = form[4:]
    form = form.rstrip("/.,;")
    for suffix in ("/index.html", "/index", ".html", ".htm", ".txt", ".php"):
        if form.endswith(suffix):
            form = form[: -len(suffix)]
    form = re.sub(r"/(?:legalcode|deed)(?:\.[a-z]{2}(?:-[a-z]{2,4})?)?$", "", form)
    return form.rstrip("/")


@lru_cache(maxsize=1)
def _url_index() -> Mapping[str, str]:
    index: dict[str, str] = {}
    for entry in catalogue().values():
        for url in (entry.url, *entry.urls):
            index.setdefault(_url_form(url), entry.key)
    return MappingProxyType(index)


def license_from_url(url: str) -> str | None:
    """The catalogue key of a link to a license text (apache.org, creativecommons.org, opensource.org, spdx.org,
    the Llama and Gemma terms pages, ...), or None."""
    form = _url_form(url[:600])
    key = _url_index().get(form)
    if key is not None:
        return key
    cc = _CC_PATH.match(form)
    if cc is not None:
        return normalize_license_id(f"CC-{cc.group(1)}-{cc.group(2)}")
    if form.startswith("creativecommons.org/publicdomain/zero/1.0"):
        return "CC0-1.0"
    for pattern in _ID_PATHS:
        match = pattern.match(form)
        if match is not None:
            return normalize_license_id(match.group(1))
    return None


# ------------------------------------------------------------------------------------------------ verdict

CONSISTENT = "consistent"
CONFLICT = "conflict"
UNDECLARED = "undeclared"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class LicenseVerdict:
    """Declared licenses against the licenses found in files.

    ``declared`` holds the catalogue keys declared (in order, without repeats); ``unresolved`` the sources
    whose declaration names no known license (``license: other``, a custom name).
    """

    status: str
    declared: tuple[str, ...]
    detected: tuple[LicenseDetection, ...]
    osi_approved: bool | None
    reason: str
    unresolved: tuple[str, ...] = ()


def license_verdict(
    declared: Sequence[tuple[str | None, str]], detected: Sequence[LicenseDetection]
) -> LicenseVerdict:
    """Compare declarations (``(key or None, source)``) with detections from license files and card text.

    Rules, in order:
    - two licenses *agree* when they are the same key, share a text (GPL-3.0-or-later and GPL-3.0-only), or
      one is a family id whose members include the other (Hub ``gpl`` and GPL-3.0-only);
    - **conflict** when two sources declare different sets of licenses (the card says apache-2.0, the README
      says MIT), or when a license found in the files agrees with no declared license (a card declaring
      apache-2.0 next to a Llama 2 license text). Declaring several licenses in one place (dual licensing)
      is not a conflict, and a declared license without a text in the files is only unconfirmed;
    - **consistent** when something is declared and nothing contradicts it (an Apache-2.0 declaration with an
      Apache LICENSE plus a NOTICE file: a NOTICE names no other license);
    - **undeclared** when files carry a license but no source declares a known one;
    - **unknown** when no license is declared or found at all.
    ``osi_approved`` is True when every license involved is OSI-approved, False when any is not, and None when
    that cannot be established (nothing identified, or a family id whose members differ).
    """
    entries = catalogue()
    by_source: dict[str, list[str]] = {}
    declared_keys: list[str] = []
    unresolved: list[str] = []
    for key, source in declared:
        if key is None or key not in entries:
            if source not in unresolved:
                unresolved.append(source)
            continue
        by_source.setdefault(source, [])
        if key not in by_source[source]:
            by_source[source].append(key)
        if key not in declared_keys:
            declared_keys.append(key)
    detected = tuple(detected)
    detected_keys = list(dict.fromkeys(d.key for d in detected if d.key in entries))
    involved = [*declared_keys, *(k for k in detected_keys if k not in declared_keys)]
    osi = _all_osi(involved)

    def verdict(status: str, reason: str) -> LicenseVerdict:
        return LicenseVerdict(status, tuple(declared_keys), detected, osi, reason, tuple(unresolved))

    if not declared_keys and not detected_keys:
        reason = "no license is declared and no license text was recognised"
        if unresolved:
            reason = f"the license declared in {', '.join(unresolved)} is not one openaudit can identify, and no license text was recognised"
        return verdict(UNKNOWN, reason)
    if not declared_keys:
        found = ", ".join(f"{d.key} ({d.source})" for d in detected if d.key in entries)
        reason = f"files carry {found} but nothing declares a license"
        if unresolved:
            reason = f"files carry {found}; the declaration in {', '.join(unresolved)} names no known license"
        return verdict(UNDECLARED, reason)
    sources = list(by_source.items())
    for (source_a, keys_a), (source_b, keys_b) in zip(sources, sources[1:]):
        if not _same_set(keys_a, keys_b):
            return verdict(
                CONFLICT, f"{source_a} declares {', '.join(keys_a)} but {source_b} declares {', '.join(keys_b)}"
            )
    for detection in detected:
        if detection.key in entries and not any(_agree(detection.key, key) for key in declared_keys):
            return verdict(
                CONFLICT,
                f"{detection.source} carries {detection.key} ({detection.method}), "
                f"which the declared {', '.join(declared_keys)} does not cover",
            )
    if detected_keys:
        return verdict(CONSISTENT, f"declared {', '.join(declared_keys)}; the files carry {', '.join(detected_keys)}")
    return verdict(CONSISTENT, f"declared {', '.join(declared_keys)}; no license text in the files confirms it")


def _text_key(key: str) -> str:
    entry = catalogue()[key]
    return entry.same_text_as or key


def _agree(a: str, b: str) -> bool:
    if _text_key(a) == _text_key(b):
        return True
    entries = catalogue()
    members_a = {_text_key(k) for k in entries[a].family_of}
    members_b = {_text_key(k) for k in entries[b].family_of}
    return _text_key(b) in members_a or _text_key(a) in members_b or bool(members_a & members_b)


def _same_set(keys_a: Sequence[str], keys_b: Sequence[str]) -> bool:
    return all(any(_agree(a, b) for b in keys_b) for a in keys_a) and all(
        any(_agree(b, a) for a in keys_a) for b in keys_b
    )


def _all_osi(keys: Sequence[str]) -> bool | None:
    if not keys:
        return None
    values = [catalogue()[key].osi_approved for key in keys]
    if any(value is False for value in values):
        return False
    if any(value is None for value in values):
        return None
    return True


# ----------------------------------------------------------------------------------------------- findings


def verdict_findings(verdict: LicenseVerdict, location: str | None = None) -> list[Finding]:
    """Findings (ids in ``checks/findings/license.yaml``) for a verdict and the licenses it involves."""
    entries = catalogue()
    out: list[Finding] = []
    if verdict.status == CONFLICT:
        out.append(finding("license-conflict", verdict.reason, location))
    elif verdict.status == UNDECLARED:
        out.append(finding("license-undeclared", verdict.reason, location))
    elif verdict.status == UNKNOWN:
        out.append(finding("license-unknown", verdict.reason, location))
    elif verdict.status == CONSISTENT and not verdict.detected:
        out.append(finding("license-unconfirmed", verdict.reason, location))
    for source in verdict.unresolved:
        out.append(finding("license-unrecognized", f"the license declared in {source} is not one openaudit knows", source))
    keys = [*verdict.declared, *dict.fromkeys(d.key for d in verdict.detected if d.key not in verdict.declared)]
    for key in keys:
        entry = entries.get(key)
        if entry is None:
            continue
        if entry.is_family:
            out.append(
                finding(
                    "license-family-id",
                    f"{key} names a family of licenses ({', '.join(entry.family_of)}), not one license",
                    location,
                )
            )
        if entry.non_commercial:
            out.append(finding("license-non-commercial", f"{entry.name} forbids commercial use", location))
        restricted = sorted(entry.restriction_kinds() - {"no-derivatives"})
        if restricted and not entry.non_commercial:
            out.append(
                finding(
                    "license-use-restrictions",
                    f"{entry.name} restricts use: {'; '.join(r.summary for r in entry.use_restrictions)}",
                    location,
                )
            )
    return out
