"""Reading hyper-parameters from an untrusted config.json (or GGUF metadata) with transformers' defaults.

Every family declares the keys it reads (``HF_KEYS``); ``ConfigReader`` refuses to read any other, so
the declaration cannot drift from the code. Values are type-checked and bounded: a hostile config must
not make ``expected_tensors`` allocate millions of specs or compute with booleans posing as integers.
"""

from __future__ import annotations

import math
from typing import Any, Collection, Mapping, Sequence

from openaudit.families.spec import ConfigError

# Upper bounds well beyond any released model, low enough to keep the spec lists small.
MAX_WIDTH = 1 << 20  # hidden, intermediate, head_dim
MAX_VOCAB = 1 << 24
MAX_LAYERS = 4096
MAX_HEADS = 4096
MAX_EXPERTS = 4096
MAX_POSITIONS = 1 << 26
# layers x experts bounds the number of per-expert tensor specs (three per expert and layer).
MAX_EXPERT_SLOTS = 1 << 16
MAX_ROPE_ITEMS = 64
MAX_ROPE_LIST = 1 << 16

_MISSING = object()


class ConfigReader:
    """Typed access to a config mapping, limited to the keys a family declared."""

    def __init__(self, config: Mapping[str, Any], keys: Collection[str], where: str = "config.json"):
        if not isinstance(config, Mapping):
            raise ConfigError(f"{where} is not a JSON object")
        self._config = config
        self._keys = frozenset(keys)
        self._where = where

    def _lookup(self, key: str) -> Any:
        if key not in self._keys:
            raise RuntimeError(f"key {key!r} is read but not declared in the family's key list")
        return self._config.get(key, _MISSING)

    def has(self, key: str) -> bool:
        value = self._lookup(key)
        return value is not _MISSING and value is not None

    def raw(self, key: str, default: Any = None) -> Any:
        value = self._lookup(key)
        return default if value is _MISSING or value is None else value

    def int(self, key: str, default: Any = _MISSING, *, minimum: int = 1, maximum: int = MAX_WIDTH) -> int:
        """A required integer; JSON null or absence gives ``default`` (an error when there is none)."""
        value = self._lookup(key)
        if value is _MISSING or value is None:
            if default is _MISSING:
                raise ConfigError(f"{self._where}: {key} is missing")
            return default
        return check_int(value, key, minimum, maximum, self._where)

    def optional_int(
        self, key: str, default: int | None = None, *, minimum: int = 1, maximum: int = MAX_POSITIONS
    ) -> int | None:
        """An integer that may be disabled: absent gives ``default``, JSON null gives None."""
        value = self._lookup(key)
        if value is _MISSING:
            return default
        if value is None:
            return None
        return check_int(value, key, minimum, maximum, self._where)

    def float(self, key: str, default: float) -> float:
        value = self._lookup(key)
        if value is _MISSING or value is None:
            return default
        return check_float(value, key, self._where)

    def optional_float(self, key: str, default: float | None = None) -> float | None:
        value = self._lookup(key)
        if value is _MISSING:
            return default
        if value is None:
            return None
        return check_float(value, key, self._where)

    def bool(self, key: str, default: bool) -> bool:
        value = self._lookup(key)
        if value is _MISSING or value is None:
            return default
        if not isinstance(value, bool):
            raise ConfigError(f"{self._where}: {key} must be true or false, not {_show(value)}")
        return value

    def str(self, key: str, default: str | None) -> str | None:
        value = self._lookup(key)
        if value is _MISSING or value is None:
            return default
        if not isinstance(value, str) or len(value) > 256:
            raise ConfigError(f"{self._where}: {key} must be a short string, not {_show(value)}")
        return value

    def token_ids(self, key: str) -> tuple[int, ...]:
        """bos/eos/pad ids: an integer, a list of integers, or null."""
        value = self._lookup(key)
        if value is _MISSING or value is None:
            return ()
        items = value if isinstance(value, list) else [value]
        if len(items) > 64:
            raise ConfigError(f"{self._where}: {key} lists more than 64 token ids")
        return tuple(check_int(item, key, 0, MAX_VOCAB, self._where) for item in items)

    def architectures(self) -> tuple[str, ...]:
        value = self._lookup("architectures")
        if value is _MISSING or value is None:
            return ()
        if not isinstance(value, list) or len(value) > 16 or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{self._where}: architectures must be a short list of class names")
        return tuple(value)

    def mapping(self, key: str) -> Mapping[str, Any] | None:
        value = self._lookup(key)
        if value is _MISSING or value is None:
            return None
        if not isinstance(value, Mapping):
            raise ConfigError(f"{self._where}: {key} must be an object")
        return value


def has_lm_head(architectures: Sequence[str]) -> bool:
    """A bare base-model class (``LlamaModel``, ``GPT2Model``) has no output head; a task class has one."""

    def bare(name: str) -> bool:
        return name.endswith("Model") and "For" not in name and "LMHead" not in name

    return not architectures or not all(bare(name) for name in architectures)


def check_int(value: Any, key: str, minimum: int, maximum: int, where: str = "config.json") -> int:
    # bool is an int subclass in Python; JSON true is not a width.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: {key} must be an integer, not {_show(value)}")
    if not minimum <= value <= maximum:
        raise ConfigError(f"{where}: {key} = {value} is outside [{minimum}, {maximum}]")
    return value


def check_float(value: Any, key: str, where: str = "config.json") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: {key} must be a number, not {_show(value)}")
    result = float(value)
    if not math.isfinite(result):
        raise ConfigError(f"{where}: {key} must be finite")
    return result


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


RopeScaling = tuple[tuple[str, Any], ...]


def freeze_rope(value: Mapping[str, Any] | None, key: str = "rope_scaling") -> RopeScaling | None:
    """A rope scaling dict as a hashable, sorted tuple of items (lists become tuples).

    Like transformers' ``rope_config_validation``, a legacy ``type`` key is copied to ``rope_type``.
    ``rope_type: default`` means no scaling and gives None.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping) or len(value) > MAX_ROPE_ITEMS:
        raise ConfigError(f"config.json: {key} must be a small object")
    items: dict[str, Any] = {}
    for name, item in value.items():
        if not isinstance(name, str):
            raise ConfigError(f"config.json: {key} has a non-string key")
        items[name] = _freeze_value(item, f"{key}.{name}")
    if "rope_type" not in items and "type" in items:
        items["rope_type"] = items["type"]
    items.pop("rope_theta", None)  # transformers 5 keeps the base inside rope_parameters
    if items.get("rope_type", "default") == "default" and set(items) <= {"rope_type", "type"}:
        return None
    return tuple(sorted(items.items()))


def _freeze_value(value: Any, key: str) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return check_float(value, key) if isinstance(value, float) else value
    if isinstance(value, list):
        if len(value) > MAX_ROPE_LIST:
            raise ConfigError(f"config.json: {key} is too long")
        return tuple(check_float(item, key) for item in value)
    raise ConfigError(f"config.json: {key} has an unsupported value {_show(value)}")


def read_rope(reader: ConfigReader, default_theta: float) -> tuple[float, RopeScaling | None]:
    """(rope base, scaling) from ``rope_theta``/``rope_scaling`` or transformers 5 ``rope_parameters``."""
    parameters = reader.mapping("rope_parameters")
    if parameters is not None and "rope_theta" in parameters:
        theta = check_float(parameters["rope_theta"], "rope_parameters.rope_theta")
        return _positive(theta, "rope_parameters.rope_theta"), freeze_rope(parameters, "rope_parameters")
    theta = _positive(reader.float("rope_theta", default_theta), "rope_theta")
    return theta, freeze_rope(reader.mapping("rope_scaling"))


def _positive(value: float, key: str) -> float:
    if value <= 0:
        raise ConfigError(f"config.json: {key} must be positive")
    return value


def declared_dtype(reader: ConfigReader) -> str | None:
    """``torch_dtype`` (``dtype`` since transformers 4.56): what the checkpoint says it stores."""
    return reader.str("dtype", None) or reader.str("torch_dtype", None)


# Keys every family may read through the helpers above.
COMMON_KEYS: tuple[str, ...] = (
    "architectures",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "torch_dtype",
    "dtype",
    "tie_word_embeddings",
)
ROPE_KEYS: tuple[str, ...] = ("rope_theta", "rope_scaling", "rope_parameters")
