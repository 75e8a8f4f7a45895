"""Collect every claim a release makes about itself, from every place it makes them."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Mapping

from openaudit.errors import MalformedInput
from openaudit.findings import Finding, finding
from openaudit.inspect import claims as c
from openaudit.inspect.card import ModelCard, parse_card
from openaudit.inspect.claims import Claim
from openaudit.inspect.safe_yaml import load_yaml_bounded
from openaudit.inspect.weights import WeightsInspection
from openaudit.limits import read_text_bounded
from openaudit.release import DOCS, MODEL_CARD, Release

MAX_PROSE_FILES = 8


def collect_claims(
    release: Release,
    card: ModelCard | None,
    weights: WeightsInspection,
    config_json: Mapping[str, Any] | None,
    config_path: str | None,
    mof: tuple[Mapping[str, Any], str] | None = None,
) -> list[Claim]:
    found: list[Claim] = []
    if card is not None:
        found += c.claims_from_front_matter(card.metadata, card.path)
        found += c.claims_from_prose(card.body, card.path, card.body_first_line)
        title = c.card_title(card.body)
        if title is not None:
            found += c.claims_from_name(title[0], f"{card.path}:{card.body_first_line + title[1]}")
    for entry in _other_prose(release, card):
        try:
            text = read_text_bounded(entry.location, 2 * 1024 * 1024)
        except MalformedInput:
            continue
        parsed = parse_card(text, entry.path)
        found += c.claims_from_prose(parsed.body, entry.path, parsed.body_first_line)
    if release.repo_id:
        found += c.claims_from_name(release.repo_id, "repository name")
    elif release.source_kind == "directory":
        found += c.claims_from_name(release.root.name, "folder name")
    for scan in weights.primary_scans:
        if scan.format == "gguf":
            found += c.claims_from_gguf(scan.metadata, scan.path)
            if not scan.metadata.get("general.size_label"):
                found += c.claims_from_name(PurePosixPath(scan.path).stem, f"file name {scan.path}")
    if config_json is not None and config_path is not None:
        found += c.claims_from_config(config_json, config_path)
    for check in weights.indexes:
        if check.index is None:
            continue
        if check.index.total_size is not None:
            found.append(Claim(c.TOTAL_SIZE, check.index.total_size, f"total_size: {check.index.total_size}",
                               f"{check.index.path}#metadata.total_size"))
        if check.index.total_parameters is not None:
            found.append(Claim(c.PARAMETERS, check.index.total_parameters, f"total_parameters: {check.index.total_parameters}",
                               f"{check.index.path}#metadata.total_parameters"))
    if mof is not None:
        found += claims_from_mof(*mof)
    return c.unique(found)


def _other_prose(release: Release, card: ModelCard | None):
    """Top-level Markdown besides the card (MODEL_CARD.md next to README.md, a specs.md …)."""
    chosen = []
    for entry in release.of_kind(MODEL_CARD, DOCS):
        if "/" in entry.path or not entry.path.lower().endswith((".md", ".markdown", ".txt", ".rst")):
            continue
        if card is not None and entry.path == card.path:
            continue
        chosen.append(entry)
    return chosen[:MAX_PROSE_FILES]


def claims_from_mof(document: object, path: str) -> list[Claim]:
    """Claims of a Model Openness Tool file: the release's name (size label) and its licenses.

    The file comes from the release: any value may have any type, and one of the wrong type is skipped
    (``classify_mot`` reports the file as invalid; the claims that are well formed still count).
    """
    from openaudit.inspect.license import normalize_license_id

    release = _mapping(document.get("release")) if isinstance(document, Mapping) else {}
    found: list[Claim] = []
    name = release.get("name")
    if isinstance(name, str):
        found += c.claims_from_name(name, f"{path}#release.name")
    for kind, value in _mapping(release.get("license")).items():
        if isinstance(kind, str) and isinstance(value, Mapping) and isinstance(value.get("name"), str):
            found.append(Claim(c.LICENSE, normalize_license_id(value["name"]) or value["name"],
                               f"license.{kind}: {value['name']}", f"{path}#release.license.{kind}"))
    for component in mof_components(release):
        if component.get("name") == "Model parameters (Final)":
            value = component.get("license")
            if isinstance(value, str) and value:
                found.append(Claim(c.LICENSE, normalize_license_id(value) or value,
                                   f"Model parameters (Final) license: {value}", f"{path}#components[Model parameters (Final)]"))
    return found


def mof_components(release: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The entries of ``release.components`` that are mappings (none when it is not a list)."""
    components = release.get("components")
    if not isinstance(components, list):
        return []
    return [entry for entry in components if isinstance(entry, Mapping)]


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def names_openness_framework(document: object) -> bool:
    """The document says it is written for an openness framework (``framework.name``)."""
    if not isinstance(document, Mapping):
        return False
    framework = document.get("framework")
    name = framework.get("name") if isinstance(framework, Mapping) else None
    return isinstance(name, str) and "openness" in name.lower()


def is_mof_document(document: object) -> bool:
    return names_openness_framework(document) and isinstance(document.get("release"), Mapping)


def find_mof_file(release: Release, findings: list[Finding]) -> tuple[Mapping[str, Any], str] | None:
    """A Model Openness Tool YAML file inside the release, if there is one."""
    for entry in release.files:
        if not entry.path.lower().endswith((".yml", ".yaml")) or entry.size > 1024 * 1024:
            continue
        try:
            text = read_text_bounded(entry.location, 1024 * 1024)
        except MalformedInput:
            continue
        if "framework" not in text or "release" not in text:
            continue
        try:
            document = load_yaml_bounded(text, entry.path)
        except MalformedInput as exc:
            findings.append(finding(exc.finding_id, str(exc), entry.path))
            continue
        if is_mof_document(document):
            return document, entry.path
        if names_openness_framework(document):
            findings.append(finding("invalid-mof-file", "the file names an openness framework but has no `release` "
                                    "mapping; its claims are not read", entry.path))
    return None


def load_mof_claims_file(path: str) -> tuple[Mapping[str, Any], str]:
    """The ``--claims FILE.yml`` a user names; raises UsageError when it is missing or not a MOF file."""
    from openaudit.errors import UsageError

    try:
        text = read_text_bounded(path, 1024 * 1024)
        document = load_yaml_bounded(text, path)
    except MalformedInput as exc:
        raise UsageError(f"--claims {path}: {exc}") from None
    if not is_mof_document(document):
        raise UsageError(f"--claims {path}: not a Model Openness Tool file (needs framework and release)")
    from openaudit.rubric.mof import MotFileError, classify_mot

    try:
        classify_mot(document)  # the same checks as `openaudit classify`: a file it rejects is bad usage here too
    except MotFileError as exc:
        raise UsageError(f"--claims {path}: {exc}") from None
    return document, path
