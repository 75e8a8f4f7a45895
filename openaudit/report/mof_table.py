"""A Model Openness Tool classification for people: the class, the three progress figures, each component."""

from __future__ import annotations

import io

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from openaudit.release import printable

_STATUS_STYLE = {"open": "green", "invalid": "yellow", "unlicensed": "red", "absent": "dim"}


def render_classification(result) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=120, color_system=None)
    label = f"Class {result.mof_class}" if result.mof_class else "Unclassified"
    console.print(Text(f"MOF: {label} ({result.label})  —  {result.rubric_name} {result.rubric_version}"))
    for key, name in (("3", "Class III (Open Model)"), ("2", "Class II (Open Tooling)"), ("1", "Class I (Open Science)")):
        console.print(Text(f"  {name}: {result.progress[key]:.2f}% of its components open"))
    table = Table(box=box.SIMPLE_HEAVY)
    for column in ("Component", "Status", "License", "Counts for"):
        table.add_column(column)
    for component in result.components:
        counts = ", ".join(f"Class {c}" for c in component.counts_for) or "—"
        table.add_row(Text(component.name), Text(component.status, style=_STATUS_STYLE.get(component.status, "")),
                      Text(printable(component.license or "—")), Text(counts))
    console.print(table)
    return buffer.getvalue()
