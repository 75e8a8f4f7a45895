"""Hyper-parameters written as literals in a release's Python code (e.g. Grok-1's ``run.py``).

The code is parsed with ``ast`` and never run: only keyword arguments whose values are numeric literals
or arithmetic on literals (``emb_size=48 * 128``) are read. Releases without a config.json (Grok-1)
state their inference configuration this way, and the evidence points at the line.
"""

from __future__ import annotations

import ast
import operator
from dataclasses import dataclass
from typing import Iterable, Mapping

from openaudit.errors import MalformedInput
from openaudit.limits import read_text_bounded
from openaudit.release import CODE, Release

MAX_CODE_BYTES = 1024 * 1024
_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv}


@dataclass(frozen=True)
class CodeValue:
    name: str
    value: int | float | bool
    source: str  # "run.py:34"


def literal_keywords(source_text: str, path: str) -> list[CodeValue]:
    """Every ``name=<numeric literal>`` keyword argument in a Python file, in file order."""
    try:
        tree = ast.parse(source_text, filename=path)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    found: list[CodeValue] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg is None:
                    continue
                value = _evaluate(keyword.value, depth=0)
                if value is not None:
                    found.append(CodeValue(keyword.arg, value, f"{path}:{keyword.value.lineno}"))
    found.sort(key=lambda item: int(item.source.rsplit(":", 1)[1]))
    return found


def _evaluate(node: ast.AST, depth: int) -> int | float | bool | None:
    if depth > 8:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) :
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _evaluate(node.operand, depth + 1)
        return -inner if isinstance(inner, (int, float)) and not isinstance(inner, bool) else None
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _evaluate(node.left, depth + 1), _evaluate(node.right, depth + 1)
        if isinstance(left, (int, float)) and isinstance(right, (int, float)) and not isinstance(left, bool) and not isinstance(right, bool):
            if isinstance(node.op, ast.FloorDiv) and right == 0:
                return None
            if abs(left) > 1e15 or abs(right) > 1e15:
                return None
            return _OPERATORS[type(node.op)](left, right)
    return None


def code_values(release: Release, names: Iterable[str] | None = None) -> Mapping[str, CodeValue]:
    """The first literal value of each keyword name across the release's Python files."""
    wanted = set(names) if names is not None else None
    values: dict[str, CodeValue] = {}
    for entry in release.of_kind(CODE):
        if not entry.path.endswith(".py") or entry.size > MAX_CODE_BYTES:
            continue
        try:
            text = read_text_bounded(entry.location, MAX_CODE_BYTES)
        except MalformedInput:
            continue
        for item in literal_keywords(text, entry.path):
            if (wanted is None or item.name in wanted) and item.name not in values:
                values[item.name] = item
    return values
