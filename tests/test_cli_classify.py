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


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("date: 2024-13-45\n", "ValueError: month must be in 1..12"),
        ("at: 2024-01-01 25:00:00\n", "ValueError: hour must be in 0..23"),
        ("n: !!int abc\n", "ValueError: invalid literal for int() with base 10: 'abc'"),
        ("n: !!float abc\n", "ValueError: could not convert string to float: 'abc'"),
        ("t: !!timestamp x\n", "AttributeError: 'NoneType' object has no attribute 'groupdict'"),
    ],
)
def test_yaml_values_that_cannot_be_built_are_malformed_input(text: str, problem: str) -> None:
    from openaudit.errors import MalformedInput

    with pytest.raises(MalformedInput) as raised:
        load_yaml_bounded(text, "f.yml")
    assert (raised.value.finding_id, str(raised.value)) == (
        "invalid-yaml", f"f.yml is not valid YAML: a value cannot be built ({problem})")


def test_yaml_integers_too_large_to_print_are_malformed_input() -> None:
    from openaudit.errors import MalformedInput
    from openaudit.inspect.safe_yaml import load_yaml_bounded

    with pytest.raises(MalformedInput) as caught:
        load_yaml_bounded("license: 0x" + "f" * 5000, "README.md front matter")
    assert (caught.value.finding_id, str(caught.value)) == (
        "invalid-yaml", "README.md front matter holds an integer of 20,000 bits")
