"""`openaudit rubric` for people: every criterion of every rubric, grouped by rubric."""

from __future__ import annotations

import io
from itertools import groupby

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text


def render_rubrics(rows: list[dict]) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=140, color_system=None)
    for (rubric, version), items in groupby(rows, key=lambda row: (row["rubric"], row["version"])):
        items = list(items)
        table = Table(title=f"{rubric} {version} ({len(items)} criteria)", title_justify="left", box=box.SIMPLE_HEAVY)
        table.add_column("Criterion", no_wrap=True)
        table.add_column("Checks", overflow="fold")
        table.add_column("Scores", overflow="fold")
        for row in items:
            table.add_row(Text(row["name"]), Text(row["checks"]), Text(row["scoring"]))
        console.print(table)
    return buffer.getvalue()
