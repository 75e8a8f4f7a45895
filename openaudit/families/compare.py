"""Does a checkpoint hold the tensors its architecture implies? Names, shapes, roles and the count.

``compare`` matches the observed tensor records to a family's expected specs after name normalisation
(wrapper prefixes, legacy LayerNorm names; GGUF names when the file is GGUF), then reports every
difference. Quantisation scales are ignored; buffers may be present or absent; optional task heads are
counted when present; a stored copy of a tied tensor is reported as a *soft* "tied-duplicate", as is
an observed buffer the family does not list ("extra-buffer"): neither makes the status "mismatch".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from openaudit.families import naming
from openaudit.families.spec import TensorSpec
from openaudit.inspect.tensor_names import canonical
from openaudit.inspect.tensors import BUFFER, INTEGER_DTYPES, PARAMETER, SCALE, TensorRecord

MISSING = "missing"
UNEXPECTED = "unexpected"
SHAPE = "shape"
DTYPE_ROLE = "dtype-role"
COUNT = "count"
TIED_DUPLICATE = "tied-duplicate"
EXTRA_BUFFER = "extra-buffer"
SOFT_KINDS = frozenset({TIED_DUPLICATE, EXTRA_BUFFER})


@dataclass(frozen=True)
class Mismatch:
    """One difference. ``tensor`` is the name as stored (observed) or as expected when it is missing;
    ``expected``/``observed`` describe the two sides ("[4096, 11008]", "parameter", "I64 buffer")."""

    kind: str
    tensor: str
    expected: str | None
    observed: str | None

    @property
    def soft(self) -> bool:
        return self.kind in SOFT_KINDS


@dataclass(frozen=True)
class ArchitectureCheck:
    """The verdict: "match" when no hard mismatch remains and the parameter counts agree.

    ``expected_parameters`` counts the required parameters plus the optional ones that are present;
    ``observed_parameters`` counts the stored tensors that play a parameter's part (buffers, scales
    and tied duplicates excluded). ``ignored`` is how many records were set aside (scales, prefixes
    outside the family such as a vision tower). ``naming`` is "hf" or "gguf".
    """

    status: str
    mismatches: tuple[Mismatch, ...]
    expected_parameters: int
    observed_parameters: int
    ignored: int = 0
    naming: str = "hf"
    tied_copies: tuple[TensorRecord, ...] = ()  # the stored records of the "tied-duplicate" mismatches

    @property
    def hard_mismatches(self) -> tuple[Mismatch, ...]:
        return tuple(item for item in self.mismatches if not item.soft)


def describe_shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(size) for size in shape) + "]"


def compare(
    expected: Sequence[TensorSpec],
    observed: Sequence[TensorRecord],
    *,
    ignore_prefixes: Iterable[str] = (),
) -> ArchitectureCheck:
    """Compare a family's expected tensors with a checkpoint's records.

    ``ignore_prefixes`` (canonical names) sets aside tensors outside the family, e.g. Gemma 3's
    ``vision_tower.`` when only the text model is checked.
    """
    ignore = tuple(ignore_prefixes)
    kept: list[TensorRecord] = []
    ignored = 0
    for record in observed:
        if record.role == SCALE or (ignore and canonical(record.name).startswith(ignore)):
            ignored += 1
        else:
            kept.append(record)
    gguf = naming.is_gguf_naming(record.name for record in kept)
    specs = naming.to_gguf(expected) if gguf else tuple(expected)

    by_name: dict[str, TensorRecord] = {}
    duplicates: list[TensorRecord] = []
    for record in kept:
        key = canonical(record.name)
        if key in by_name:
            duplicates.append(record)
        else:
            by_name[key] = record

    mismatches: list[Mismatch] = []
    tied_copies: list[TensorRecord] = []
    used: set[str] = set()
    expected_count = observed_count = 0
    for spec in specs:
        key = canonical(spec.name)
        alias_keys = [canonical(alias) for alias in spec.aliases]
        record = by_name.get(key)
        stored_as = key
        if record is None:
            # A tied tensor may be stored only under its alias (e.g. only lm_head.weight).
            stored_as = next((alias for alias in alias_keys if alias in by_name), key)
            record = by_name.get(stored_as)
        if record is None:
            if spec.is_parameter and not spec.optional:
                expected_count += spec.elements
                mismatches.append(Mismatch(MISSING, spec.name, describe_shape(spec.shape), None))
            continue
        used.add(stored_as)
        if spec.is_parameter:
            expected_count += spec.elements
            observed_count += record.elements
        mismatches.extend(_check(spec, record))
        for alias in alias_keys:
            duplicate = by_name.get(alias)
            if duplicate is None or alias == stored_as:
                continue
            used.add(alias)
            if tuple(duplicate.shape) != spec.shape:
                mismatches.append(
                    Mismatch(SHAPE, duplicate.name, describe_shape(spec.shape), describe_shape(duplicate.shape))
                )
            else:
                mismatches.append(
                    Mismatch(TIED_DUPLICATE, duplicate.name, f"tied to {spec.name}", describe_shape(duplicate.shape))
                )
                tied_copies.append(duplicate)

    for key, record in by_name.items():
        if key in used:
            continue
        if record.role == BUFFER:
            mismatches.append(Mismatch(EXTRA_BUFFER, record.name, None, describe_shape(record.shape)))
            continue
        observed_count += record.elements
        mismatches.append(Mismatch(UNEXPECTED, record.name, None, describe_shape(record.shape)))
    for record in duplicates:
        if record.role == PARAMETER:
            observed_count += record.elements
        mismatches.append(Mismatch(UNEXPECTED, record.name, None, describe_shape(record.shape)))

    if expected_count != observed_count:
        mismatches.append(Mismatch(COUNT, "parameters", f"{expected_count:,}", f"{observed_count:,}"))
    hard = any(not item.soft for item in mismatches)
    return ArchitectureCheck(
        status="mismatch" if hard else "match",
        mismatches=tuple(mismatches),
        expected_parameters=expected_count,
        observed_parameters=observed_count,
        ignored=ignored,
        naming="gguf" if gguf else "hf",
        tied_copies=tuple(tied_copies),
    )


def _check(spec: TensorSpec, record: TensorRecord) -> list[Mismatch]:
    found: list[Mismatch] = []
    if tuple(record.shape) != spec.shape:
        found.append(Mismatch(SHAPE, record.name, describe_shape(spec.shape), describe_shape(record.shape)))
    if spec.is_parameter:
        # A parameter stored as a buffer, or as integers that no scale dequantises, is not a weight.
        unscaled_integers = record.dtype in INTEGER_DTYPES and record.pairs_with is None
        if record.role != PARAMETER or unscaled_integers:
            found.append(Mismatch(DTYPE_ROLE, record.name, PARAMETER, f"{record.dtype} {record.role}"))
    return found
