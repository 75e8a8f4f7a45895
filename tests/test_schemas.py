"""Every JSON Schema openaudit ships is itself valid against its meta-schema; the report schema requires every section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema.validators import validator_for

from openaudit.audit import AuditOptions, audit
from openaudit.report.formats import render_json
from openaudit.report.schema import validation_errors
from openaudit.resources import data_dir
from tests.builders.safetensors_builder import write_safetensors

SCHEMAS = sorted(data_dir("schemas").glob("*.json"))


def test_there_are_schemas() -> None:
    assert {p.name for p in SCHEMAS} >= {"report.schema.json", "rubric.schema.json", "licenses.schema.json"}


@pytest.mark.parametrize("path", SCHEMAS, ids=lambda p: p.name)
def test_schema_is_valid(path) -> None:
    schema = json.loads(path.read_text())
    validator_for(schema).check_schema(schema)



@pytest.mark.parametrize("key", ["architecture", "license", "claims", "run", "openness"])
def test_report_requires_every_top_level_section(key: str, tmp_path: Path) -> None:
    write_safetensors(tmp_path / "model.safetensors", {"w": ("F32", (2, 2))})
    document = json.loads(render_json(audit(str(tmp_path), AuditOptions(hash_weights=False))))
    assert validation_errors(document) == []
    assert validation_errors({k: v for k, v in document.items() if k != key}) == [f"$: '{key}' is a required property"]
    nullable = key != "claims"  # claims is always a list; the others are null when the audit has nothing to say
    assert validation_errors({**document, key: None}) == ([] if nullable else ["$.claims: None is not of type 'array'"])
