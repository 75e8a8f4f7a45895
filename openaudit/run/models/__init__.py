"""One forward pass per architecture layout; ``forward_model(family)`` finds the one for a family."""

from __future__ import annotations

import importlib
from types import ModuleType

# family name (openaudit.families) -> module in this package
_MODULES = {
    "llama": "decoder", "mistral": "decoder", "mixtral": "decoder", "qwen2": "decoder", "qwen3": "decoder",
    "gemma": "decoder", "gemma2": "decoder", "gemma3": "decoder", "phi3": "decoder", "olmo2": "decoder",
    "gpt2": "gpt2", "gpt_neox": "gpt_neox", "bert": "bert", "grok1": "grok1",
}


def forward_model(family: str) -> ModuleType:
    """The module implementing ``openaudit.run.model.ForwardModel`` for ``family`` (imports jax)."""
    try:
        name = _MODULES[family]
    except KeyError:
        raise KeyError(f"no forward pass for the family {family!r}") from None
    return importlib.import_module(f"openaudit.run.models.{name}")
