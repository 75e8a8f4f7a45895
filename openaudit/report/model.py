"""The Report: frozen dataclasses that every output format renders. Key paths are a public contract
(see schemas/report.schema.json); add fields, never rename them."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, Mapping

from openaudit.findings import Finding

SCHEMA_VERSION = "1.0"


@dataclass(frozen=True)
class ToolInfo:
    name: str
    version: str


@dataclass(frozen=True)
class SourceInfo:
    kind: str  # directory | file | hf-cache | hub
    path: str
    repo_id: str | None = None
    revision: str | None = None


@dataclass(frozen=True)
class InventoryFile:
    path: str
    kind: str
    bytes: int


@dataclass(frozen=True)
class ReleaseSummary:
    files: tuple[InventoryFile, ...]
    total_bytes: int
    by_kind: Mapping[str, int]


@dataclass(frozen=True)
class WeightsFile:
    path: str
    format: str
    container: str
    bytes: int
    tensors: int
    parameters: int
    sha256: str | None
    checksum: str  # verified | mismatch | unpublished | skipped
    checksum_source: str | None
    complete: bool
    imports: tuple[str, ...] = ()  # the globals a pickle would import (the first 200)
    imports_total: int = 0
    copy: str = "primary"  # primary | alternate (another copy of the model, not counted in the totals)


@dataclass(frozen=True)
class Buffer:
    name: str
    file: str
    dtype: str
    shape: tuple[int, ...]
    elements: int
    reason: str


@dataclass(frozen=True)
class TiedCopy:
    """A stored copy of a tied tensor: stored (in ``elements``), not a parameter of its own."""

    name: str
    file: str
    elements: int


@dataclass(frozen=True)
class Parameters:
    total: int
    by_dtype: Mapping[str, int]


@dataclass(frozen=True)
class ShardIndexSummary:
    path: str
    shards: int
    tensors: int
    total_size: int | None
    observed_total_size: int | None


@dataclass(frozen=True)
class Weights:
    format: str  # safetensors | gguf | pickle | mixed | none
    files: tuple[WeightsFile, ...]
    tensors: int
    parameters: Parameters
    buffers: tuple[Buffer, ...]
    elements: int
    tied_copies: tuple[TiedCopy, ...] = ()
    indexes: tuple[ShardIndexSummary, ...] = ()
    metadata: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Mismatch:
    kind: str  # missing | unexpected | shape | dtype-role | count | tied-duplicate | extra-buffer
    tensor: str
    expected: str | None
    observed: str | None


@dataclass(frozen=True)
class ParameterCounts:
    total: int
    embedding: int
    non_embedding: int
    active: int
    one_expert_path: int


@dataclass(frozen=True)
class Architecture:
    family: str | None
    status: str  # match | mismatch | unknown
    reason: str
    config_source: str | None
    expected_parameters: int | None
    observed_parameters: int | None
    mismatches: tuple[Mismatch, ...] = ()
    counts: ParameterCounts | None = None


@dataclass(frozen=True)
class LicenseDetected:
    key: str
    source: str
    method: str
    confidence: float
    line: int | None = None


@dataclass(frozen=True)
class LicenseTerms:
    key: str
    name: str
    osi_approved: bool | None
    open_data: bool | None
    non_commercial: bool
    use_restrictions: tuple[str, ...]


@dataclass(frozen=True)
class License:
    declared: tuple[str, ...]
    detected: str | None  # the license the files carry (first detection), as an SPDX id or AI license key
    status: str  # consistent | conflict | undeclared | unknown
    osi_approved: bool | None
    reason: str
    detections: tuple[LicenseDetected, ...] = ()
    declarations: tuple[Mapping[str, Any], ...] = ()
    terms: tuple[LicenseTerms, ...] = ()


@dataclass(frozen=True)
class ClaimResult:
    subject: str
    claimed: Any
    observed: Any
    status: str  # verified | contradicted | unverifiable
    source: str
    reason: str
    text: str = ""


@dataclass(frozen=True)
class Report:
    schema_version: str
    tool: ToolInfo
    source: SourceInfo
    release: ReleaseSummary
    weights: Weights
    findings: tuple[Finding, ...]
    architecture: Architecture | None = None
    license: License | None = None
    claims: tuple[ClaimResult, ...] = ()
    run: Any = None
    openness: Mapping[str, Any] | None = None  # openaudit.rubric.openness.Openness.to_dict()


def to_jsonable(value: Any) -> Any:
    """Dataclasses, enums, tuples and mappings to plain JSON values, keeping field order."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value
