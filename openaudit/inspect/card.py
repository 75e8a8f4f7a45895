"""The model card: YAML front matter (Hugging Face layout) and the Markdown body, with line numbers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

from openaudit.errors import MalformedInput
from openaudit.findings import Finding, finding
from openaudit.inspect.safe_yaml import load_yaml_bounded
from openaudit.limits import read_text_bounded
from openaudit.release import MODEL_CARD, Release

# The block huggingface_hub recognises (repocard.REGEX_YAML_BLOCK).
_FRONT_MATTER = re.compile(r"^(\s*---(?:\r\n|\r|\n))([\S\s]*?)((?:\r\n|\r|\n)---[ \t]*(\r\n|\n|$))")


@dataclass(frozen=True)
class ModelCard:
    """A parsed card. ``body_first_line`` is the 1-based line of the file where ``body`` starts."""

    path: str
    metadata: Mapping[str, object]
    body: str
    body_first_line: int
    text: str
    findings: tuple[Finding, ...] = field(default=())


def parse_card(text: str, path: str) -> ModelCard:
    """Split a card into metadata and body; bad metadata is a finding and leaves the metadata empty."""
    match = _FRONT_MATTER.match(text)
    if match is None:
        return ModelCard(path, {}, text, 1, text)
    findings: list[Finding] = []
    metadata: Mapping[str, object] = {}
    try:
        loaded = load_yaml_bounded(match.group(2), f"{path} front matter")
    except MalformedInput as exc:
        findings.append(finding(exc.finding_id, str(exc), path))
    else:
        if isinstance(loaded, dict):
            metadata = {str(key): value for key, value in loaded.items()}
        elif loaded is not None:
            findings.append(finding("card-metadata-not-a-mapping", "the card's front matter is not a mapping", path))
    body = text[match.end():]
    first_line = text.count("\n", 0, match.end()) + 1
    return ModelCard(path, metadata, body, first_line, text, tuple(findings))


def find_card(release: Release) -> ModelCard | None:
    """The release's model card (README.md at the root, or another card-named file), parsed."""
    cards = sorted(release.of_kind(MODEL_CARD), key=lambda f: (f.path.lower() != "readme.md", f.path))
    if not cards:
        return None
    entry = cards[0]
    try:
        text = read_text_bounded(entry.location)
    except MalformedInput as exc:
        return ModelCard(entry.path, {}, "", 1, "", (finding(exc.finding_id, str(exc), entry.path),))
    return parse_card(text, entry.path)
