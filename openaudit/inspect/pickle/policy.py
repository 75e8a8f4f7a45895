"""Which globals a pickle may import: the allow-list and severities of ``checks/pickle_globals.yaml``.

A global on the allow-list (numpy's array constructors, PyTorch's tensor rebuilders, Grok-1's
``QuantizedWeight8bit``…) is safe to import; any other is reported, at the severity of the worst rule
its dotted path (or an attribute chain inside it, or the Python 3 name the unpickler maps it to) matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

from openaudit.findings import Severity


@dataclass(frozen=True)
class GlobalPolicy:
    allow: frozenset[str]
    critical: tuple[str, ...]
    high: tuple[str, ...]

    def severity(self, module: str, name: str) -> Severity | None:
        """None for an allowed global, else the severity of importing it."""
        return _classify(self, module, name)

    def is_allowed(self, module: str, name: str) -> bool:
        return self.severity(module, name) is None

    def _rule_severity(self, candidate: str) -> Severity | None:
        if _matches(candidate, self.critical):
            return Severity.CRITICAL
        if _matches(candidate, self.high):
            return Severity.HIGH
        return None


@lru_cache(maxsize=4096)
def _classify(policy: GlobalPolicy, module: str, name: str) -> Severity | None:
    # Cached: a state dict calls the same few globals once per tensor.
    names = compat_names(module, name)
    if any(full in policy.allow for full in names):
        return None
    worst = Severity.MEDIUM
    for full in names:
        for candidate in _chain_candidates(full, len(module.split("."))):
            level = policy._rule_severity(candidate)
            if level is not None and level.rank > worst.rank:
                worst = level
        if _has_dunder_attribute(full, len(module.split("."))):
            worst = Severity.CRITICAL
    return worst


def _matches(candidate: str, rules: tuple[str, ...]) -> bool:
    for rule in rules:
        if rule.endswith(".*"):
            prefix = rule[:-2]
            if candidate == prefix or candidate.startswith(prefix + "."):
                return True
        elif candidate == rule:
            return True
    return False


def _chain_candidates(full: str, module_parts: int) -> Iterator[str]:
    """The dotted path itself, then every attribute suffix of its name part.

    ``numpy`` + ``testing.os.system`` reaches ``os.system`` through attributes, so the suffix
    ``os.system`` is classified too. Suffixes of the *module* path are not: ``mypkg.types`` is a
    module of its own, not the standard ``types``.
    """
    yield full
    parts = full.split(".")
    for start in range(module_parts + 1, len(parts)):
        yield ".".join(parts[start:])


def _has_dunder_attribute(full: str, module_parts: int) -> bool:
    parts = full.split(".")[module_parts:]
    return any(len(part) > 4 and part.startswith("__") and part.endswith("__") for part in parts)


def compat_names(module: str, name: str) -> list[str]:
    """The global as written, plus the Python 3 name the unpickler maps a Python 2 name to."""
    import _compat_pickle

    names = [f"{module}.{name}"]
    mapped = _compat_pickle.NAME_MAPPING.get((module, name))
    if mapped is None and module in _compat_pickle.IMPORT_MAPPING:
        mapped = (_compat_pickle.IMPORT_MAPPING[module], name)
    if mapped is not None:
        names.append(f"{mapped[0]}.{mapped[1]}")
    return names


@lru_cache(maxsize=1)
def global_policy() -> GlobalPolicy:
    """The policy in ``checks/pickle_globals.yaml``."""
    from openaudit.resources import data_dir, load_data_yaml

    document = load_data_yaml(data_dir("checks").joinpath("pickle_globals.yaml"))
    return GlobalPolicy(
        allow=frozenset(document.get("allow") or ()),
        critical=tuple(document.get("critical") or ()),
        high=tuple(document.get("high") or ()),
    )


def severity_reason(severity: Severity) -> str:
    """Why importing or calling a global of this severity is reported, in words."""
    if severity is Severity.CRITICAL:
        return "loading the file can run arbitrary code"
    if severity is Severity.HIGH:
        return "a builtin or interpreter facility that no weights file needs"
    return "not on the allow-list of array-building constructs"

