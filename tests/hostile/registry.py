"""The corpus registry: what a case is, where it is built, and the list every section adds to."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence


@dataclass(frozen=True)
class Case:
    """One hostile input and what openaudit must say about it.

    ``source`` is what to audit (a folder or a file). ``expected_ids`` must all appear among the report's
    finding ids; ``unsafe_globals`` must each be named in a finding's message (pickles). ``exit_code`` is
    0 (a report) or 2 (a usage error: the source does not exist or is not a folder or regular file).
    ``forbidden_ids`` must not appear (a finding that would misdescribe the input).
    ``hash`` asks the test to audit with hashing on (checksum cases). ``must_not_exist`` are files a
    payload would create if the release were unpickled. ``known_failure`` names an openaudit bug that
    the case exposes (the test is an expected failure until it is fixed).
    """

    name: str
    category: str
    source: Path
    expected_ids: tuple[str, ...] = ()
    unsafe_globals: tuple[str, ...] = ()
    exit_code: int = 0
    hash: bool = False
    must_not_exist: tuple[Path, ...] = ()
    known_failure: str | None = None
    forbidden_ids: tuple[str, ...] = ()


class Workspace:
    """Where one case is built: its own empty folder, and a canary path outside every release."""

    def __init__(self, folder: Path, canary: Path):
        self.dir = folder
        self.canary = canary

    def write(self, relative: str | bytes, data: bytes = b"", *, size: int | None = None) -> Path:
        """Write ``data`` at ``relative`` (bytes for non-UTF-8 names); ``size`` extends it with a sparse hole."""
        path = self.dir / (os.fsdecode(relative) if isinstance(relative, bytes) else relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
            if size is not None:
                handle.truncate(size)
        return path

    def text(self, relative: str, text: str) -> Path:
        return self.write(relative, text.encode("utf-8"))


Build = Callable[[Workspace], Path]


@dataclass(frozen=True)
class Recipe:
    name: str
    category: str
    build: Build
    expected_ids: tuple[str, ...] = ()
    unsafe_globals: tuple[str, ...] = ()
    exit_code: int = 0
    hash: bool = False
    canary: bool = False
    known_failure: str | None = None
    forbidden_ids: tuple[str, ...] = ()


RECIPES: list[Recipe] = []


def add_case(category: str, slug: str, build: Build, *ids: str, unsafe: Sequence[str] = (), exit_code: int = 0,
             hash: bool = False, canary: bool = False, known_failure: str | None = None,
             forbidden: Sequence[str] = ()) -> None:
    RECIPES.append(Recipe(f"{category}/{slug}", category, build, tuple(ids), tuple(unsafe), exit_code, hash,
                          canary, known_failure, tuple(forbidden)))


def in_folder(name: str | bytes, content: Callable[[Workspace], bytes] | bytes, size: int | None = None) -> Build:
    """A release folder holding one file ``name`` with ``content`` (sparse up to ``size``)."""

    def build(ws: Workspace) -> Path:
        data = content(ws) if callable(content) else content
        ws.write(name, data, size=size)
        return ws.dir

    return build


def single_file(name: str, content: Callable[[Workspace], bytes] | bytes, size: int | None = None) -> Build:
    """One file, audited on its own."""

    def build(ws: Workspace) -> Path:
        data = content(ws) if callable(content) else content
        return ws.write(name, data, size=size)

    return build
