"""Evidence: what the audit established about a release, each fact with where it came from.

The architecture comes first: the family is detected from config.json, GGUF metadata or a Grok-1
checkpoint, its expected tensors are compared with the weights, and — when they match — the config's
hyper-parameters are confirmed by the weights' shapes. Facts the weights cannot show (context length,
experts used per token) are taken from the configuration the inference code reads (config.json, GGUF
metadata, or literals in the release's Python code such as Grok-1's ``run.py``) and marked as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from openaudit.families import registry
from openaudit.families.compare import ArchitectureCheck
from openaudit.families.spec import ParameterCounts
from openaudit.findings import Finding, finding
from openaudit.inspect import claims as subjects
from openaudit.inspect.code_config import CodeValue, code_values
from openaudit.inspect.tensors import TensorRecord
from openaudit.inspect.weights import WeightsInspection
from openaudit.limits import load_json_bounded, read_text_bounded
from openaudit.errors import MalformedInput
from openaudit.release import Release

# Subjects whose value the weights' shapes show (given the family's layout).
MEASURABLE = frozenset({subjects.HIDDEN_SIZE, subjects.LAYERS, subjects.ATTENTION_HEADS, subjects.KV_HEADS,
                        subjects.HEAD_DIM, subjects.VOCAB_SIZE, subjects.INTERMEDIATE_SIZE, subjects.EXPERTS})

# Literal keyword names in inference code, per subject (Grok-1 run.py, common JAX/PyTorch configs).
CODE_NAMES: Mapping[str, tuple[str, ...]] = {
    subjects.EXPERTS_PER_TOKEN: ("num_selected_experts", "num_experts_per_tok", "experts_per_token", "top_k"),
    subjects.CONTEXT_LENGTH: ("sequence_len", "max_seq_len", "max_sequence_length", "context_length", "max_position_embeddings"),
    subjects.HEAD_DIM: ("key_size", "head_dim"),
}


@dataclass(frozen=True)
class Observation:
    """An observed value. ``measured`` is True when the weights themselves show it."""

    value: Any
    source: str
    measured: bool
    origin: str | None = None  # the file the value was read from, when not from the weights


@dataclass(frozen=True)
class ArchitectureEvidence:
    family: str | None
    reason: str
    config_source: str | None
    check: ArchitectureCheck | None
    counts: ParameterCounts | None  # by formula from the config; equal to the weights' when status is match
    config: Any = None

    @property
    def status(self) -> str:
        if self.check is None:
            return "unknown"
        return self.check.status

    def tied_copy_keys(self) -> frozenset[tuple[str, str]]:
        """(file, tensor name) of the stored copies of tied tensors, which are not parameters of their own.

        Only when the check matched: the tie is then the family's and the shapes confirm it.
        """
        if self.status != "match":
            return frozenset()
        return frozenset((record.file, record.name) for record in self.check.tied_copies)


@dataclass(frozen=True)
class Evidence:
    architecture: ArchitectureEvidence
    observations: Mapping[str, Observation]
    config_json: Mapping[str, Any] | None
    config_path: str | None
    findings: tuple[Finding, ...] = field(default=())


def gather(release: Release, weights: WeightsInspection) -> Evidence:
    findings: list[Finding] = []
    config_json, config_path = _read_config(release, findings)
    # Literal hyper-parameters in the release's Python code, read once (ast, never run).
    code = code_values(release, {name for names in CODE_NAMES.values() for name in names})
    architecture = _architecture(weights, config_json, config_path, code)
    observations = _observations(architecture, code)
    if architecture.check is not None:
        tied_to = {m.tensor: m.expected for m in architecture.check.mismatches if m.kind == "tied-duplicate"}
        for record in architecture.check.tied_copies:
            findings.append(finding("tied-duplicate", f"{record.name} is a stored copy of the tied embedding "
                                    f"({tied_to.get(record.name)}); counted once", f"{record.file}:{record.name}"))
    return Evidence(architecture, observations, config_json, config_path, tuple(findings))


def _read_config(release: Release, findings: list[Finding]) -> tuple[Mapping[str, Any] | None, str | None]:
    entry = release.file("config.json")
    if entry is None:
        return None, None
    try:
        document = load_json_bounded(read_text_bounded(entry.location, 4 * 1024 * 1024), "config.json")
    except MalformedInput as exc:
        findings.append(finding(exc.finding_id, str(exc), "config.json"))
        return None, "config.json"
    if not isinstance(document, dict):
        findings.append(finding("invalid-json", "config.json is not a JSON object", "config.json"))
        return None, "config.json"
    return document, "config.json"


def _primary_records(weights: WeightsInspection, fmt: str | None = None, path: str | None = None) -> list[TensorRecord]:
    files = {scan.path for scan in weights.primary_scans if (fmt is None or scan.format == fmt) and (path is None or scan.path == path)}
    return [tensor for tensor in weights.tensors if tensor.file in files]


def _architecture(weights: WeightsInspection, config_json, config_path, code: Mapping[str, CodeValue]) -> ArchitectureEvidence:
    if config_json is not None:
        detection = registry.detect_from_hf_config(config_json)
        records = [t for t in _primary_records(weights) if not _is_gguf(weights, t.file)]
        source = config_path
    else:
        gguf_scan = next((scan for scan in weights.primary_scans if scan.format == "gguf"), None)
        grok = registry.detect_from_tensors(weights.tensors) if weights.tensors else None
        if gguf_scan is not None:
            records = _primary_records(weights, path=gguf_scan.path)
            detection = registry.detect_from_gguf(gguf_scan.metadata, records)
            source = f"{gguf_scan.path} (GGUF metadata)"
        elif grok is not None and grok.family is not None:
            key_size = code.get("key_size")
            if key_size is not None and isinstance(key_size.value, int) and key_size.value > 0:
                grok = registry.detect_from_tensors(weights.tensors, key_size.value)
            detection, records, source = grok, list(weights.tensors), "the checkpoint's leaf names and shapes"
        else:
            reason = "no config.json, GGUF metadata or known checkpoint layout" if weights.tensors else "the release holds no weights"
            return ArchitectureEvidence(None, reason, None, None, None)
    check = registry.check_architecture(detection, records) if records else None
    counts = detection.module.parameter_counts(detection.config) if detection.module and detection.config is not None else None
    return ArchitectureEvidence(detection.family, detection.reason, source, check, counts, detection.config)


def _is_gguf(weights: WeightsInspection, path: str) -> bool:
    scan = weights.scan_of(path)
    return scan is not None and scan.format == "gguf"


def spec_values(config: Any) -> dict[str, Any]:
    """A family config's hyper-parameters under openaudit's subject names (any family's field names)."""

    def first(*names: str) -> Any:
        for name in names:
            value = getattr(config, name, None)
            if value is not None:
                return value
        return None

    hidden = first("hidden_size", "n_embd", "emb_size")
    heads = first("num_heads", "n_head", "num_q_heads")
    head_dim = first("head_dim", "key_size")
    if head_dim is None and hidden and heads:
        head_dim = hidden // heads
    intermediate = first("intermediate_size", "n_inner")
    if intermediate is None and hasattr(config, "ffn_size"):
        intermediate = config.ffn_size
    if intermediate is None and getattr(config, "n_embd", None):
        intermediate = 4 * config.n_embd
    experts = first("num_experts")
    values = {
        subjects.HIDDEN_SIZE: hidden,
        subjects.LAYERS: first("num_layers", "n_layer"),
        subjects.ATTENTION_HEADS: heads,
        subjects.KV_HEADS: first("num_kv_heads") or heads,
        subjects.HEAD_DIM: head_dim,
        subjects.VOCAB_SIZE: first("vocab_size"),
        subjects.INTERMEDIATE_SIZE: intermediate,
        subjects.CONTEXT_LENGTH: first("max_position_embeddings", "n_positions", "sequence_len"),
        subjects.EXPERTS: experts if experts else None,
        subjects.EXPERTS_PER_TOKEN: first("num_experts_per_tok", "num_selected_experts") if experts else None,
    }
    return {key: value for key, value in values.items() if value is not None and not isinstance(value, bool)}


def _observations(architecture: ArchitectureEvidence, code: Mapping[str, CodeValue]) -> dict[str, Observation]:
    observations: dict[str, Observation] = {}
    if architecture.config is not None:
        values = spec_values(architecture.config)
        matched = architecture.status == "match"
        from_checkpoint = architecture.config_source == "the checkpoint's leaf names and shapes"
        for subject, value in values.items():
            if subject in MEASURABLE and matched:
                if from_checkpoint:
                    source = "the checkpoint's tensor shapes"
                    if subject in (subjects.ATTENTION_HEADS, subjects.KV_HEADS, subjects.HEAD_DIM):
                        key = code.get("key_size")
                        source += f" with key size {architecture.config.key_size}" + (f" from {key.source}" if key else " (Grok-1's published key size)")
                else:
                    source = f"{architecture.config_source}, confirmed by the weights' tensor shapes"
                observations[subject] = Observation(value, source, True)
            elif subject not in MEASURABLE and not from_checkpoint:
                observations[subject] = Observation(
                    value, f"{architecture.config_source} (the configuration inference code reads; not visible in the weights)",
                    False, (architecture.config_source or "").split(" ")[0])
    for subject, names in CODE_NAMES.items():
        if subject in observations:
            continue
        for name in names:
            item: CodeValue | None = code.get(name)
            if item is not None and isinstance(item.value, int) and not isinstance(item.value, bool):
                observations[subject] = Observation(
                    item.value, f"{item.source} ({name}={item.value} in the inference code; not visible in the weights)",
                    False, item.source.rsplit(":", 1)[0])
                break
    return observations
