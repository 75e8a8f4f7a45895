"""Load openness rubrics (``checks/<name>.yaml``) and validate them against ``schemas/rubric.schema.json``.

Rubrics are openaudit's own data, not release input, so a broken one is a defect of the installation: it
raises :class:`RubricError` naming the file and the JSON path of the first problems, instead of surfacing
later as a KeyError deep inside an evaluator.
"""

from __future__ import annotations

import copy
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from openaudit.errors import OpenAuditError
from openaudit.resources import data_dir

SCHEMA_FILE = "rubric.schema.json"
# Rubric names are file stems under checks/; the pattern also keeps a name from walking out of the folder.
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# Our rubrics are small; a bigger file is not one of them.
_MAX_RUBRIC_BYTES = 2 * 1024 * 1024
_MAX_REPORTED_ERRORS = 5


class RubricError(OpenAuditError, ValueError):
    """A rubric file is missing, is not YAML, or breaks the rubric schema."""


def load_rubric(name: str) -> dict:
    """The validated rubric ``checks/<name>.yaml`` (for example ``"mof"``), as a fresh dict.

    Parsing and validation happen once per process; each call returns a deep copy so that a caller
    cannot change what the next caller sees.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise RubricError(f"invalid rubric name {name!r}: expected a file stem such as 'mof'")
    return copy.deepcopy(_load_cached(name))


def rubric_path(name: str) -> Path:
    return data_dir("checks") / f"{name}.yaml"


def load_rubric_file(path: str | Path) -> dict:
    """Read and validate one rubric file (not cached): for rubrics outside checks/ and for tests."""
    path = Path(path)
    return _validated(_read_yaml(path), str(path))


def validate_rubric(document: object, where: str = "<rubric>") -> None:
    """Raise RubricError when ``document`` breaks the rubric schema; ``where`` names it in the message."""
    problems = sorted(_validator().iter_errors(document), key=_error_order)
    if problems:
        lines = [f"{_json_path(error.absolute_path)}: {error.message}" for error in problems[:_MAX_REPORTED_ERRORS]]
        more = len(problems) - _MAX_REPORTED_ERRORS
        if more > 0:
            lines.append(f"... and {more} more")
        raise RubricError(f"{where} does not match {SCHEMA_FILE}:\n  " + "\n  ".join(lines))


@lru_cache(maxsize=None)
def _load_cached(name: str) -> dict:
    path = rubric_path(name)
    if not path.is_file():
        raise RubricError(f"no rubric named {name!r} (expected {path})")
    return _validated(_read_yaml(path), str(path))


def _validated(document: object, where: str) -> dict:
    validate_rubric(document, where)
    assert isinstance(document, dict)  # the schema requires an object
    return document


def _read_yaml(path: Path) -> object:
    import yaml

    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_RUBRIC_BYTES + 1)
    except OSError as exc:
        raise RubricError(f"cannot read rubric {path}: {exc.strerror or exc}") from None
    if len(data) > _MAX_RUBRIC_BYTES:
        raise RubricError(f"rubric {path} is larger than {_MAX_RUBRIC_BYTES} bytes")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(data.decode("utf-8"), Loader=loader)
    except UnicodeDecodeError as exc:
        raise RubricError(f"rubric {path} is not UTF-8 (byte {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RubricError(f"rubric {path}{where} is not valid YAML: {problem}") from None


@lru_cache(maxsize=1)
def _validator():
    from jsonschema import Draft202012Validator

    schema_path = data_dir("schemas") / SCHEMA_FILE
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    # The schema itself is checked against its meta-schema by the tests (tests/test_schemas.py), not on
    # every run: that check costs more than validating every rubric.
    return Draft202012Validator(schema)


def _error_order(error) -> tuple:
    # Deepest-first would hide "missing key" errors at the top; path order reads like the file.
    return (tuple(str(part) for part in error.absolute_path), error.message)


def _json_path(parts: Iterable[object]) -> str:
    """``$.components[3].type`` for the path ["components", 3, "type"]."""
    text = "$"
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.match(r"^[A-Za-z_][A-Za-z0-9_-]*$", str(part)):
            text += f".{part}"
        else:
            text += f"[{json.dumps(str(part))}]"
    return text
