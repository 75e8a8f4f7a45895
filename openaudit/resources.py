"""Locate the data that ships with openaudit (checks/, schemas/) in a wheel or a source checkout."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def data_dir(name: str) -> Path:
    """Return the folder ``name`` ("checks" or "schemas").

    A wheel carries them inside the package (``openaudit/_data``); an editable install or a checkout
    reads them from the repository root, where they are maintained.
    """
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"openaudit data folder {name!r} is missing from this installation")


def load_data_yaml(path: Path) -> object:
    """Parse one of openaudit's own YAML data files (trusted, so no bounds) with the fast C loader."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
