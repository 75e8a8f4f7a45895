"""What a family says about a checkpoint before any weight is read: tensor specs and parameter counts."""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from openaudit.errors import MalformedInput
from openaudit.inspect.tensors import BUFFER, PARAMETER

# Finding id for a config.json (or GGUF metadata) whose values no model could have. The catalogue entry
# lives in checks/findings/ (see the families report); callers turn ConfigError into that finding.
CONFIG_FINDING_ID = "architecture-config-invalid"


class ConfigError(MalformedInput):
    """A config value is missing, of the wrong type, or out of any plausible range."""

    def __init__(self, message: str):
        super().__init__(CONFIG_FINDING_ID, message)


@dataclass(frozen=True)
class TensorSpec:
    """One tensor a checkpoint of the family holds, named as in the family's Hugging Face checkpoints.

    ``shape`` is in row-major (numpy/PyTorch) order. ``role`` is "parameter" or "buffer"; buffers (rotary
    ``inv_freq``, causal-mask ``attn.bias``, ``position_ids``) may be stored or not and never count.
    ``optional`` parameters (task heads a pretraining checkpoint carries but the declared class does not
    use) may be absent; when present they are checked and counted. ``aliases`` are other names under
    which the *same* tensor may also be stored because it is tied (``lm_head.weight`` when the word
    embeddings are tied): such a copy is a duplicate, not a parameter.
    """

    name: str
    shape: tuple[int, ...]
    role: str = PARAMETER
    optional: bool = False
    aliases: tuple[str, ...] = ()

    @property
    def elements(self) -> int:
        return prod(self.shape)

    @property
    def is_parameter(self) -> bool:
        return self.role == PARAMETER


def parameter(name: str, *shape: int, optional: bool = False, aliases: tuple[str, ...] = ()) -> TensorSpec:
    return TensorSpec(name, tuple(shape), PARAMETER, optional, aliases)


def buffer(name: str, *shape: int) -> TensorSpec:
    return TensorSpec(name, tuple(shape), BUFFER, True)


def counted_parameters(specs: tuple[TensorSpec, ...] | list[TensorSpec]) -> int:
    """Elements of the required parameters: what ``parameter_count`` must equal."""
    return sum(spec.elements for spec in specs if spec.is_parameter and not spec.optional)


@dataclass(frozen=True)
class ParameterCounts:
    """Counts computed by formula from a config.

    ``embedding`` is every embedding matrix (input, untied output head, learned positions and token
    types); ``non_embedding = total - embedding`` (norms, including the final one, stay in it, as in
    the Pythia and Qwen model cards). For a mixture of experts, ``active`` is what one token uses
    (top-k experts per layer) and ``one_expert_path`` the model with one expert per layer; for a dense
    model both equal ``total``.
    """

    total: int
    embedding: int
    non_embedding: int
    active: int
    one_expert_path: int
