"""`openaudit classify FILE.yml`: the CLI prints exactly what the Model Openness Tool computes, for every
conformance file (``expected_results.json`` is the tool's own API output for them)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from openaudit.cli import main
from openaudit.inspect.safe_yaml import load_yaml_bounded

MOF_DATA = Path(__file__).resolve().parent / "data" / "mof"
FILES = sorted(p for p in MOF_DATA.glob("*.yml") if p.name != "mof.settings.yml")


def expected_by_name() -> dict[str, dict]:
    text = re.sub(r",(\s*[}\]])", r"\1", (MOF_DATA / "expected_results.json").read_text())  # trailing commas
    return {model["release"]["name"]: model["classification"] for model in json.loads(text)["models"]}


def test_there_are_27_conformance_files() -> None:
    assert len(FILES) == 27 == len(expected_by_name())


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem[:40])
def test_classify_json_is_the_tools_own_result(path: Path, capsys) -> None:
    assert main(["classify", str(path), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    name = load_yaml_bounded(path.read_text(), path.name)["release"]["name"]
    expected = expected_by_name()[name]
    assert {"class": result["class"], "label": result["label"], "progress": result["progress"]} == expected
    assert result["rubric"] == {"name": "Model Openness Framework", "version": "1.0"}


def test_classify_table_and_errors(tmp_path: Path, capsys) -> None:
    path = next(p for p in FILES if p.name.startswith("Class3R"))
    assert main(["classify", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("MOF: Class 3") and "Class II (Open Tooling): 60.00%" in out
    assert main(["classify", str(tmp_path / "missing.yml")]) == 2
    bad = tmp_path / "bad.yml"
    bad.write_text("a: [1\n")
    assert main(["classify", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
