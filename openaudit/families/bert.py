"""BERT (``BertModel`` and its task classes): post-LayerNorm encoder with learned positions.

The expected tensors are the encoder with its pooler (what "bert-base-uncased, 110M" counts) under the
``bert.`` prefix of the pretraining checkpoints; a bare ``BertModel`` checkpoint has no prefix. Task
heads are *optional*: the released bert-base-uncased says ``BertForMaskedLM`` but stores both the
masked-LM (``cls.predictions.*``) and next-sentence (``cls.seq_relationship.*``) heads of its
pretraining, so a head is checked and counted when present and never required. The masked-LM decoder
is tied to the word embeddings and its bias to ``cls.predictions.bias``. Old checkpoints name the
LayerNorm parameters ``gamma``/``beta`` (the name normaliser maps them to ``weight``/``bias``).

The pooler is required when the declared class builds one (``BertModel``, ``BertForPreTraining``,
``BertForSequenceClassification`` …) and optional when it does not (``BertForMaskedLM``,
``BertLMHeadModel``, ``BertForTokenClassification``, ``BertForQuestionAnswering`` are built with
``add_pooling_layer=False``, so transformers saves them without one, while the original pretraining
checkpoints of bert-base-uncased keep it). Defaults are transformers' ``BertConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from openaudit.families import _hf
from openaudit.families._hf import ConfigReader
from openaudit.families.spec import ConfigError, ParameterCounts, TensorSpec, buffer, parameter

NAME = "bert"
MODEL_TYPES = ("bert",)
ARCHITECTURES = (
    "BertModel",
    "BertForMaskedLM",
    "BertForPreTraining",
    "BertForSequenceClassification",
    "BertForTokenClassification",
    "BertForQuestionAnswering",
    "BertForNextSentencePrediction",
    "BertLMHeadModel",
)
GGUF_ARCHITECTURES: tuple[str, ...] = ()

HF_KEYS: tuple[str, ...] = (
    *_hf.COMMON_KEYS,
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "max_position_embeddings",
    "type_vocab_size",
    "layer_norm_eps",
    "position_embedding_type",
    "id2label",
)

_CLASSIFIERS = ("BertForSequenceClassification", "BertForTokenClassification")
_POSITION_TYPES = ("absolute", "relative_key", "relative_key_query")


@dataclass(frozen=True)
class Config:
    family: ClassVar[str] = NAME

    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    activation: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    position_embedding_type: str = "absolute"
    tie_word_embeddings: bool = True
    num_labels: int = 2
    classifier: bool = False  # a sequence/token classification head is expected (optional)
    pad_token_ids: tuple[int, ...] = ()
    declared_dtype: str | None = None
    architectures: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"config.json: hidden_size {self.hidden_size} is not divisible by {self.num_heads} heads")
        if self.position_embedding_type not in _POSITION_TYPES:
            raise ConfigError(f"config.json: unknown position_embedding_type {self.position_embedding_type!r}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def relative_positions(self) -> bool:
        return self.position_embedding_type != "absolute"


def config_from_hf(config: Mapping[str, Any]) -> Config:
    reader = ConfigReader(config, HF_KEYS)
    labels = reader.mapping("id2label")
    if labels is not None and not 1 <= len(labels) <= 1 << 16:
        raise ConfigError("config.json: id2label must hold between 1 and 65536 labels")
    architectures = reader.architectures()
    return Config(
        vocab_size=reader.int("vocab_size", 30522, maximum=_hf.MAX_VOCAB),
        hidden_size=reader.int("hidden_size", 768),
        num_layers=reader.int("num_hidden_layers", 12, maximum=_hf.MAX_LAYERS),
        num_heads=reader.int("num_attention_heads", 12, maximum=_hf.MAX_HEADS),
        intermediate_size=reader.int("intermediate_size", 3072),
        activation=reader.str("hidden_act", "gelu"),
        max_position_embeddings=reader.int("max_position_embeddings", 512, maximum=_hf.MAX_POSITIONS),
        type_vocab_size=reader.int("type_vocab_size", 2, maximum=1 << 16),
        layer_norm_eps=reader.float("layer_norm_eps", 1e-12),
        position_embedding_type=reader.str("position_embedding_type", "absolute"),
        tie_word_embeddings=reader.bool("tie_word_embeddings", True),
        num_labels=len(labels) if labels is not None else 2,
        classifier=any(name in _CLASSIFIERS for name in architectures),
        pad_token_ids=reader.token_ids("pad_token_id"),
        declared_dtype=_hf.declared_dtype(reader),
        architectures=architectures,
    )


# Classes transformers builds with add_pooling_layer=False.
_NO_POOLER = frozenset({"BertForMaskedLM", "BertLMHeadModel", "BertForTokenClassification", "BertForQuestionAnswering"})


def builds_pooler(config: Config) -> bool:
    """Whether the declared class has a pooler (a bare config without architectures means BertModel)."""
    return not (config.architectures and all(name in _NO_POOLER for name in config.architectures))


def expected_tensors(config: Config) -> tuple[TensorSpec, ...]:
    d, ff, positions = config.hidden_size, config.intermediate_size, config.max_position_embeddings
    tied = ("cls.predictions.decoder.weight",) if config.tie_word_embeddings else ()
    specs = [
        parameter("bert.embeddings.word_embeddings.weight", config.vocab_size, d, aliases=tied),
        buffer("bert.embeddings.position_ids", 1, positions),
    ]
    if not config.relative_positions:
        specs.append(parameter("bert.embeddings.position_embeddings.weight", positions, d))
    specs.append(parameter("bert.embeddings.token_type_embeddings.weight", config.type_vocab_size, d))
    specs += [parameter("bert.embeddings.LayerNorm.weight", d), parameter("bert.embeddings.LayerNorm.bias", d)]
    for index in range(config.num_layers):
        layer = f"bert.encoder.layer.{index}"
        for name in ("query", "key", "value"):
            specs += [parameter(f"{layer}.attention.self.{name}.weight", d, d)]
            specs += [parameter(f"{layer}.attention.self.{name}.bias", d)]
        if config.relative_positions:
            specs.append(
                parameter(f"{layer}.attention.self.distance_embedding.weight", 2 * positions - 1, config.head_dim)
            )
        specs += [
            parameter(f"{layer}.attention.output.dense.weight", d, d),
            parameter(f"{layer}.attention.output.dense.bias", d),
            parameter(f"{layer}.attention.output.LayerNorm.weight", d),
            parameter(f"{layer}.attention.output.LayerNorm.bias", d),
            parameter(f"{layer}.intermediate.dense.weight", ff, d),
            parameter(f"{layer}.intermediate.dense.bias", ff),
            parameter(f"{layer}.output.dense.weight", d, ff),
            parameter(f"{layer}.output.dense.bias", d),
            parameter(f"{layer}.output.LayerNorm.weight", d),
            parameter(f"{layer}.output.LayerNorm.bias", d),
        ]
    pooler_optional = not builds_pooler(config)
    specs += [parameter("bert.pooler.dense.weight", d, d, optional=pooler_optional),
              parameter("bert.pooler.dense.bias", d, optional=pooler_optional)]
    specs += _heads(config)
    return tuple(specs)


def _heads(config: Config) -> list[TensorSpec]:
    """Task heads a checkpoint may carry; optional, so checked and counted only when present."""
    d = config.hidden_size

    def head(name: str, *shape: int, aliases: tuple[str, ...] = ()) -> TensorSpec:
        return parameter(name, *shape, optional=True, aliases=aliases)

    heads = [
        head("cls.predictions.bias", config.vocab_size, aliases=("cls.predictions.decoder.bias",)),
        head("cls.predictions.transform.dense.weight", d, d),
        head("cls.predictions.transform.dense.bias", d),
        head("cls.predictions.transform.LayerNorm.weight", d),
        head("cls.predictions.transform.LayerNorm.bias", d),
    ]
    if not config.tie_word_embeddings:
        heads.append(head("cls.predictions.decoder.weight", config.vocab_size, d))
    heads += [head("cls.seq_relationship.weight", 2, d), head("cls.seq_relationship.bias", 2)]
    if config.classifier:
        heads += [head("classifier.weight", config.num_labels, d), head("classifier.bias", config.num_labels)]
    return heads


def parameter_counts(config: Config) -> ParameterCounts:
    """The encoder, plus the pooler when the declared class builds one; task heads are not part of the size.

    A checkpoint may still store a pooler its class does not build (bert-base-uncased's pretraining
    checkpoint declares BertForMaskedLM): the architecture check then counts it as present.
    """
    d, ff, positions = config.hidden_size, config.intermediate_size, config.max_position_embeddings
    embedding = config.vocab_size * d + config.type_vocab_size * d
    layer = 4 * (d * d + d) + 2 * 2 * d + (d * ff + ff) + (ff * d + d)
    if config.relative_positions:
        embedding += config.num_layers * (2 * positions - 1) * config.head_dim
    else:
        embedding += positions * d
    total = embedding + 2 * d + config.num_layers * layer + ((d * d + d) if builds_pooler(config) else 0)
    return ParameterCounts(total, embedding, total - embedding, total, total)


def parameter_count(config: Config) -> int:
    return parameter_counts(config).total


def non_embedding_parameter_count(config: Config) -> int:
    return parameter_counts(config).non_embedding
