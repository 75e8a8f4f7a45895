"""Validate a report (or any openaudit JSON document) against the bundled JSON Schemas."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from openaudit.resources import data_dir


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict:
    return json.loads((data_dir("schemas") / name).read_text(encoding="utf-8"))


def validation_errors(document: Any, schema_name: str = "report.schema.json") -> list[str]:
    """Every way ``document`` breaks the schema, as "json.path: message" lines (empty when valid)."""
    from jsonschema.validators import validator_for

    schema = load_schema(schema_name)
    validator = validator_for(schema)(schema)
    return [f"{error.json_path}: {error.message}" for error in sorted(validator.iter_errors(document), key=str)]
