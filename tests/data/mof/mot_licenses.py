"""Compute the license sets the Model Openness Tool evaluates with, from its two JSON files.

MOT imports ``licenses.json`` (SPDX list) and then ``mof-licenses.json`` (its additions, with a
``ContentType``), keyed on ``licenseId``: a later entry replaces an earlier one whole, so a flag that the
later entry lacks counts as false. A license is open when its entry is OSI-approved or FSF-libre, when it is
in the PHP constant ``OPEN_DATA_LICENSES`` (kept in checks/mof.yaml, it is not in these files) or when it is
``OpenMDW-1.0``. ``ContentType`` (a string or a list) decides the "type-appropriate" warning only.

tests/test_mof.py uses this to check checks/mof.yaml against the copied data; run it as a script to print
the YAML lists when the data is refreshed:  python tests/data/mof/mot_licenses.py
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def imported_licenses(folder: Path = HERE) -> dict[str, dict]:
    """licenseId -> entry, after MOT's import order (SPDX list first, MOF additions second)."""
    entries: dict[str, dict] = {}
    for name in ("licenses.json", "mof-licenses.json"):
        for entry in json.loads((folder / name).read_text(encoding="utf-8"))["licenses"]:
            entries[entry["licenseId"]] = entry
    return entries


def license_sets(folder: Path = HERE) -> dict[str, list[str]]:
    """The lists checks/mof.yaml keeps under ``licenses`` (sorted, case-sensitive order)."""
    entries = imported_licenses(folder)
    by_type: dict[str, list[str]] = {"code": [], "data": [], "document": []}
    for license_id, entry in entries.items():
        types = entry.get("ContentType") or []
        for content_type in [types] if isinstance(types, str) else types:
            by_type[content_type].append(license_id)
    return {
        "osi_approved": sorted(i for i, e in entries.items() if e.get("isOsiApproved") is True),
        "fsf_libre": sorted(i for i, e in entries.items() if e.get("isFsfLibre") is True),
        **{f"type_appropriate.{t}": sorted(ids) for t, ids in by_type.items()},
    }


def _print_yaml() -> None:
    import textwrap

    for key, ids in license_sets().items():
        print(f"{key}: ({len(ids)})")
        print(textwrap.fill(", ".join(ids), width=104, initial_indent="  [", subsequent_indent="   ",
                            break_on_hyphens=False) + "]")


if __name__ == "__main__":
    _print_yaml()
