"""Reading release files for the detectors: the heads of files, within the rubric's budget.

Release files are hostile: text is read only from the head of a file (``limits.max_bytes_per_file`` of
``checks/components.yaml``), within a budget of files, bytes and seconds, and lines are cut before
matching. Nothing is executed or unpickled.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from openaudit.errors import MalformedInput, ParseTimeout
from openaudit.limits import Deadline, open_regular
from openaudit.release import ReleaseFile

MAX_LINE_CHARS = 1000  # lines are cut before regexes run, so no line can make a pattern slow


class BoundedReader:
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
