"""Which family is this? From config.json, GGUF metadata or a Grok-1 checkpoint; "unknown" said plainly.

Every ``detect_*`` returns a ``Detection``: the family name (None when unknown), the parsed config
when the family and its config could be read, and a sentence saying why. Nothing here raises on bad
input: an invalid config becomes a Detection with ``config`` None and the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Mapping, Sequence

from openaudit.errors import MalformedInput
from openaudit.families import (
    bert,
    gemma,
    gemma2,
    gemma3,
    gpt2,
    gpt_neox,
    grok1,
    llama,
    mistral,
    mixtral,
    olmo2,
    phi3,
    qwen2,
    qwen3,
)
from openaudit.families.compare import ArchitectureCheck, compare
from openaudit.inspect.pickle import grok_layout
from openaudit.inspect.tensors import PARAMETER, TensorRecord

# Families configured from a Hugging Face config.json, in a fixed order.
HF_FAMILIES: tuple[ModuleType, ...] = (
    llama,
    mistral,
    mixtral,
    qwen2,
    qwen3,
    gemma,
    gemma2,
    gemma3,
    phi3,
    olmo2,
    gpt2,
    gpt_neox,
    bert,
)
FAMILIES: Mapping[str, ModuleType] = {module.NAME: module for module in (*HF_FAMILIES, grok1)}

_BY_MODEL_TYPE = {model_type: module for module in HF_FAMILIES for model_type in module.MODEL_TYPES}
_BY_ARCHITECTURE = {name: module for module in HF_FAMILIES for name in module.ARCHITECTURES}
# Third-party Grok-1 ports rename every tensor; only the official layout is known here.
_GROK_PORT_TYPES = ("grok", "grok-1", "grok1")

# llama.cpp ``general.architecture`` values whose metadata gives a full config.
_GGUF_CONFIGURABLE: Mapping[str, ModuleType] = {
    "qwen2": qwen2,
    "qwen3": qwen3,
    "gemma": gemma,
    "phi3": phi3,
    "olmo2": olmo2,
}
# Known to llama.cpp but not configurable from its metadata alone (or named differently there).
_GGUF_KNOWN_ONLY: Mapping[str, str] = {
    "gemma2": "gemma2",
    "gemma3": "gemma3",
    "gpt2": "gpt2",
    "gptneox": "gpt_neox",
    "bert": "bert",
    "grok": "grok1",
}

_GROK_FILE = re.compile(r"^tensor(\d{5})_(\d{3})$")


@dataclass(frozen=True)
class Detection:
    """The family (None: unknown), its parsed config (None: not readable) and why."""

    family: str | None
    reason: str
    config: Any = None
    ignore_prefixes: tuple[str, ...] = ()

    @property
    def module(self) -> ModuleType | None:
        return FAMILIES.get(self.family) if self.family else None


def detect_from_hf_config(config: Mapping[str, Any]) -> Detection:
    """The family a config.json names through ``model_type`` (first) or ``architectures``."""
    if not isinstance(config, Mapping):
        return Detection(None, "config.json is not a JSON object")
    model_type = config.get("model_type")
    architectures = config.get("architectures")
    names = [name for name in architectures if isinstance(name, str)] if isinstance(architectures, list) else []
    by_architecture = next((_BY_ARCHITECTURE[name] for name in names if name in _BY_ARCHITECTURE), None)
    if isinstance(model_type, str) and model_type.lower() in _GROK_PORT_TYPES:
        return Detection(
            None,
            f"model_type {model_type!r} is a third-party port of Grok-1 with its own tensor names; "
            "only the official checkpoint layout (xai-org/grok-1) is known",
        )
    module = _BY_MODEL_TYPE.get(model_type) if isinstance(model_type, str) else None
    if module is not None:
        reason = f"model_type {model_type!r}"
        if by_architecture is not None and by_architecture is not module:
            reason += f" (architectures name {names[0]!r}, a {by_architecture.NAME} class; model_type decides)"
    elif by_architecture is not None:
        module = by_architecture
        reason = f"architectures {names!r}" + (
            f" (model_type {model_type!r} is not a known family)" if model_type is not None else ""
        )
    else:
        shown = f"model_type {model_type!r}" if model_type is not None else "no model_type"
        return Detection(
            None,
            f"unknown architecture: {shown} and architectures {names!r} match none of "
            f"{', '.join(sorted(FAMILIES))}",
        )
    ignore = gemma3.MULTIMODAL_PREFIXES if module is gemma3 and gemma3.is_multimodal(config) else ()
    return _parse(module, lambda: module.config_from_hf(config), reason, ignore)


def detect_from_gguf(metadata: Mapping[str, Any], tensors: Sequence[TensorRecord] = ()) -> Detection:
    """The family of a GGUF file from ``general.architecture`` (Llama with experts is Mixtral)."""
    arch = metadata.get("general.architecture") if isinstance(metadata, Mapping) else None
    if not isinstance(arch, str):
        return Detection(None, "GGUF metadata has no general.architecture")
    reason = f"GGUF general.architecture {arch!r}"
    if arch == "llama":
        experts = metadata.get("llama.expert_count") or 0
        module = mixtral if experts else llama
        if experts:
            reason += " with llama.expert_count (a Mixtral-style mixture of experts)"
        return _parse(module, lambda: module.config_from_gguf(metadata, tensors), reason)
    module = _GGUF_CONFIGURABLE.get(arch)
    if module is not None:
        return _parse(module, lambda: module.config_from_gguf(metadata, tensors), reason)
    if arch in _GGUF_KNOWN_ONLY:
        return Detection(
            _GGUF_KNOWN_ONLY[arch],
            f"{reason}: the family is known, but openaudit does not build its config from GGUF metadata",
        )
    return Detection(None, f"unknown architecture: {reason} matches none of {', '.join(sorted(FAMILIES))}")


def detect_from_grok_checkpoint(file_names: Sequence[str]) -> Detection:
    """A Grok-1 checkpoint directory from its file names (``tensorNNNNN_HHH``, one file per leaf).

    770 leaves is Grok-1's layout with 64 layers, so its published config applies. Another count that
    fits the layout is Grok-shaped, but its widths must be read from the tensors
    (``grok1.config_from_tensors``).
    """
    leaves: set[int] = set()
    for name in file_names:
        match = _GROK_FILE.match(name.rsplit("/", 1)[-1])
        if match:
            leaves.add(int(match.group(1)))
    if not leaves:
        return Detection(None, "no tensorNNNNN_HHH files: not a Grok-1 checkpoint")
    count = len(leaves)
    if leaves != set(range(count)):
        return Detection(None, f"Grok-style files, but the leaf numbers are not 0..{count - 1} without gaps")
    layers = grok_layout.layers_for_leaf_count(count)
    if layers is None:
        return Detection(None, f"{count} Grok-style leaf files fit no Grok-1 layout (2 + 12 per layer)")
    if layers == grok1.GROK1.num_layers:
        return Detection(grok1.NAME, f"{count} leaf files: Grok-1's layout with {layers} layers", grok1.GROK1)
    return Detection(
        grok1.NAME,
        f"{count} leaf files: a Grok-1-shaped model with {layers} layers; its widths come from the tensors",
    )


def detect_from_tensors(records: Sequence[TensorRecord], key_size: int = grok1.GROK1.key_size) -> Detection:
    """A Grok-1-layout checkpoint recognised from its leaf names, with its config read off the shapes.

    The shapes give heads x key_size, not the two apart: ``key_size`` (Grok-1's 128) splits them.
    """
    names = {record.name for record in records if record.role == PARAMETER}
    layers = grok_layout.layers_for_leaf_count(len(names))
    if layers is None or names != set(grok_layout.leaf_paths(layers)):
        return Detection(None, "the tensor names are not Grok-1's leaf layout")
    return _parse(
        grok1, lambda: grok1.config_from_tensors(records, key_size), f"Grok-1 leaf names for {layers} layers"
    )


def check_architecture(detection: Detection, records: Sequence[TensorRecord]) -> ArchitectureCheck | None:
    """Compare the records with the detected family's expected tensors (None without a config)."""
    module = detection.module
    if module is None or detection.config is None:
        return None
    return compare(module.expected_tensors(detection.config), records, ignore_prefixes=detection.ignore_prefixes)


def _parse(module: ModuleType, build: Any, reason: str, ignore: tuple[str, ...] = ()) -> Detection:
    try:
        config = build()
    except MalformedInput as error:
        return Detection(module.NAME, f"{reason}, but the config cannot be used: {error}", None, ignore)
    return Detection(module.NAME, reason, config, ignore)
