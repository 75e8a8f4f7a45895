"""`openaudit rubric` lists every criterion of every rubric, and every audit report names its rubrics."""

from __future__ import annotations

import json

from openaudit.cli import main
from openaudit.rubric.loader import load_rubric


def test_rubric_lists_every_criterion(capsys) -> None:
    assert main(["rubric", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_rubric: dict[str, int] = {}
    for row in rows:
        assert set(row) == {"rubric", "version", "kind", "id", "name", "checks", "scoring"}
        assert row["checks"] and row["scoring"]
        by_rubric[row["kind"]] = by_rubric.get(row["kind"], 0) + 1
    assert by_rubric["mof"] == len(load_rubric("mof")["components"]) == 17
    assert by_rubric["score"] == len(load_rubric("score")["criteria"])
    assert by_rubric["osai_index"] == 12
    assert set(by_rubric) == {"components", "mof", "osaid", "osai_index", "score"}


def test_rubric_table(capsys) -> None:
    assert main(["rubric"]) == 0
    out = capsys.readouterr().out
    assert "Model Openness Framework 1.0 (17 criteria)" in out
    assert "openaudit openness score" in out
