"""Output formats: one function per format, registered by name (``FORMAT_BY_NAME``)."""

from __future__ import annotations

import json
from typing import Callable

from openaudit.report.model import Report, to_jsonable


def render_json(report: Report) -> str:
    return json.dumps(to_jsonable(report), indent=2, ensure_ascii=False) + "\n"


def render_table(report: Report) -> str:
    from openaudit.report.table import render

    return render(report)


FORMAT_BY_NAME: dict[str, Callable[[Report], str]] = {
    "table": render_table,
    "json": render_json,
}
