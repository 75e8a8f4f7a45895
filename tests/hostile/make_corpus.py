"""Build a corpus of malformed and hostile model releases, deterministically.

Every case is a small folder (or a single file) that ``openaudit audit`` must survive: it must end with a
report (exit 0) or a clear usage error (exit 2), never a traceback, a hang or unbounded memory, and it
must report what is wrong with the finding ids listed in the case. Large declared sizes are sparse
holes: the corpus declares about 4 GB and takes about 25 MB of disk, no case more than 4 MB.

    python tests/hostile/make_corpus.py OUTDIR      # build it to look at by hand

``recipes()`` lists the cases without touching the disk (the tests parametrize over it);
``build_corpus(root)`` writes every case under ``root`` and returns the :class:`Case` list. The cases
themselves are in ``cases_*.py`` beside this file (their building blocks in ``blocks.py``, the pickle
payloads in ``payloads.py``); README.md says what the corpus covers.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as a script: make ``tests.hostile`` and ``tests.builders`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.hostile import cases_filesystem, cases_formats, cases_metadata, cases_pickle  # noqa: E402
from tests.hostile.registry import RECIPES, Case, Recipe, Workspace  # noqa: E402

__all__ = ["Case", "Recipe", "build_case", "build_corpus", "canary_folder", "case_folder", "recipes"]

_SECTIONS = (
    cases_formats.add_empty_and_truncated, cases_formats.add_safetensors, cases_formats.add_gguf,
    cases_pickle.add_pickles, cases_pickle.add_npy, cases_pickle.add_torch_zip, cases_metadata.add_shard_index,
    cases_metadata.add_model_card, cases_filesystem.add_links_and_special_files, cases_filesystem.add_file_names,
    cases_metadata.add_checksums, cases_pickle.add_grok, cases_filesystem.add_hf_cache, cases_filesystem.add_combined,
)


def recipes() -> tuple[Recipe, ...]:
    """Every case of the corpus, in a fixed order, without writing anything."""
    if not RECIPES:
        for section in _SECTIONS:
            section()
        names = [recipe.name for recipe in RECIPES]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise AssertionError(f"duplicate case names: {duplicates}")
    return tuple(RECIPES)


def case_folder(root: Path, name: str) -> Path:
    return root / "cases" / name


def canary_folder(root: Path) -> Path:
    """Where file-creating payloads point: outside every release, and existing, so that an unpickler
    that ran one would succeed in creating its file."""
    return root / "canaries"


def build_case(root: Path, recipe: Recipe) -> Case:
    folder = case_folder(root, recipe.name)
    folder.mkdir(parents=True, exist_ok=False)
    canaries = canary_folder(root)
    canaries.mkdir(parents=True, exist_ok=True)
    canary = canaries / (recipe.name.replace("/", "__") + ".created")
    source = recipe.build(Workspace(folder, canary))
    return Case(
        name=recipe.name,
        category=recipe.category,
        source=source,
        expected_ids=recipe.expected_ids,
        unsafe_globals=recipe.unsafe_globals,
        exit_code=recipe.exit_code,
        hash=recipe.hash,
        must_not_exist=(canary,) if recipe.canary else (),
        known_failure=recipe.known_failure,
        forbidden_ids=recipe.forbidden_ids,
    )


def build_corpus(root: Path) -> list[Case]:
    """Write every case under ``root`` (which must not hold an earlier corpus) and return them."""
    root = Path(root)
    return [build_case(root, recipe) for recipe in recipes()]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python tests/hostile/make_corpus.py OUTDIR", file=sys.stderr)
        return 2
    root = Path(args[0])
    if (root / "cases").exists():
        print(f"{root} already holds a corpus; pick an empty folder", file=sys.stderr)
        return 2
    cases = build_corpus(root)
    manifest = [
        {"name": case.name, "category": case.category,
         "source": os.fsencode(case.source).decode("utf-8", "backslashreplace"),
         "expected_ids": list(case.expected_ids), "unsafe_globals": list(case.unsafe_globals),
         "forbidden_ids": list(case.forbidden_ids), "exit_code": case.exit_code, "hash": case.hash,
         "known_failure": case.known_failure}
        for case in cases
    ]
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    counts: dict[str, int] = {}
    for case in cases:
        counts[case.category] = counts.get(case.category, 0) + 1
    for category, count in sorted(counts.items()):
        print(f"{category:20} {count}")
    print(f"{'total':20} {len(cases)}  (manifest: {root / 'manifest.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
