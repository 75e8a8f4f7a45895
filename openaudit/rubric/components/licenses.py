"""Which license covers a component's files: the license chains of ``checks/components.yaml``.

Licenses, per component, follow the chain of its type in the rubric: ``own`` is a license file in the folder
of the component's files or a folder above them (below the root: ``data/LICENSE`` for ``data/train/*.jsonl``);
a scope (``release_data``/``release_document``) is a release-wide license for that content type (a root
``LICENSE-DATA`` file, or a data license among the card's declared licenses); ``release`` is the release's
license: a recognised root license file, else the card's declaration, else an unrecognised root license file.
Each license found is judged against MOF's license lists: open, restricted (and why) or closed.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Sequence

from openaudit.errors import MalformedInput
from openaudit.release import Release, ReleaseFile
from openaudit.rubric.components.reader import BoundedReader
from openaudit.rubric.components.results import (
    CLOSED,
    OPEN,
    RESTRICTED,
    LicenseChoice,
    NormalizedLicense,
    spdx_id,
)
from openaudit.rubric.components.rules import DetectionRubric

# A license file openaudit does not recognise is closed when it reserves all rights and grants nothing.
_ALL_RIGHTS_RESERVED = re.compile(r"all\s+rights\s+reserved", re.I)
_PERMISSION_WORDS = re.compile(r"permission\s+is\s+hereby\s+granted|licen[cs]ed\s+under|you\s+may\s+(?:use|copy)|grants?\s+you", re.I)


class LicenseResolver:
    """Which license covers a path, following the rubric's chains."""

    def __init__(self, release: Release, card, licenses, rubric: DetectionRubric, reader: BoundedReader,
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
            self.normalized.append(NormalizedLicense(f"text of {entry.path}", spdx_id(best.key), f"{entry.path} ({best.method})"))
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
            self.normalized.append(NormalizedLicense(value[:200], spdx_id(key) if key else None, source))
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


def _choice_for_key(key: str, source: str, origin: str, *, declared: bool) -> LicenseChoice:
    from openaudit.inspect.license import catalogue
    from openaudit.rubric.mof import mof_rubric

    entry = catalogue().get(key)
    name = entry.name if entry is not None else key
    spdx = spdx_id(key)
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
