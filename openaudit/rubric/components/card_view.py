"""The model card as the detectors see it: lines, the YAML front matter, and the sections under headings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from openaudit.rubric.components.reader import MAX_LINE_CHARS


@dataclass(frozen=True)
class Heading:
    index: int  # 0-based line index
    level: int
    text: str  # cleaned, lower-case


_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*)$")  # the closing #s are stripped in Python (no backtracking)
MAX_HEADING_CHARS = 200
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_MARKUP = re.compile(r"[*_`]+|\[([^\]]*)\]\([^)]*\)")


class CardView:
    """A model card's lines (cut to bound the work), where its front matter ends, and its headings outside code fences."""

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

    def _headings(self) -> list[Heading]:
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
                found.append(Heading(index, len(match.group(1)), text))
        return found

    def section(self, heading: Heading) -> list[str]:
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
