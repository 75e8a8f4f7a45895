"""Every JSON Schema openaudit ships is itself valid against its meta-schema."""

from __future__ import annotations

import json

import pytest
from jsonschema.validators import validator_for

from openaudit.resources import data_dir

SCHEMAS = sorted(data_dir("schemas").glob("*.json"))


def test_there_are_schemas() -> None:
    assert {p.name for p in SCHEMAS} >= {"report.schema.json", "rubric.schema.json", "licenses.schema.json"}


@pytest.mark.parametrize("path", SCHEMAS, ids=lambda p: p.name)
def test_schema_is_valid(path) -> None:
    schema = json.loads(path.read_text())
    validator_for(schema).check_schema(schema)
