"""The findings catalogue is data: every file parses, ids are unique and well-formed, and every id the
code emits is defined."""

from __future__ import annotations

import re
from pathlib import Path

from openaudit.findings import Severity, catalogue
from openaudit.resources import data_dir, load_data_yaml

ROOT = Path(__file__).resolve().parents[1]


def test_every_catalogue_file_parses_and_ids_are_unique() -> None:
    seen: dict[str, str] = {}
    for path in sorted(data_dir("checks").joinpath("findings").glob("*.yaml")):
        entries = load_data_yaml(path)
        assert isinstance(entries, list), path.name
        for entry in entries:
            assert set(entry) == {"id", "severity", "title", "remediation"}, (path.name, entry)
            assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", entry["id"]), entry["id"]
            assert entry["id"] not in seen, f"{entry['id']} in {seen.get(entry['id'])} and {path.name}"
            Severity(entry["severity"])
            seen[entry["id"]] = path.name
    assert set(catalogue()) == set(seen)


def test_every_finding_id_in_the_code_is_in_the_catalogue() -> None:
    """Literal ids passed to finding(...) / MalformedInput(...) anywhere in the package are defined."""
    pattern = re.compile(r"""(?:finding|MalformedInput|_finding|add)\(\s*["']([a-z0-9]+(?:-[a-z0-9]+)+)["']""")
    used: dict[str, str] = {}
    for path in (ROOT / "openaudit").rglob("*.py"):
        for match in pattern.finditer(path.read_text(encoding="utf-8")):
            used.setdefault(match.group(1), str(path.relative_to(ROOT)))
    missing = {name: where for name, where in used.items() if name not in catalogue()}
    assert used, "the pattern found no finding ids at all"
    assert missing == {}
