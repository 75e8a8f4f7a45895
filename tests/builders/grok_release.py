"""A release laid out like the public xai-org/grok-1 repository, for claims and openness tests.

The prose and code here are openaudit's own words: the README states Grok-1's published specification
and license the way a release might, with a choice of phrasings (so extraction is tested on more than
one wording); the Python files are short stand-ins that carry what a reader of the real repository
would find (the configuration literals of run.py, a model definition, a checkpoint loader). The
checkpoint is written in Grok-1's own pickle format with its real shapes and sparse data.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.builders.pickle_builder import GROK1, GrokDims, write_grok_checkpoint

ROOT = Path(__file__).resolve().parents[2]

README_VARIANTS = {
    # A specification list, in the spirit of the original README.
    "list": """# Grok-1

Example JAX code to load and sample from the open weights of Grok-1, a large language model.

## Specification

* **Parameters:** 314B
* **Architecture:** Mixture of 8 Experts (MoE)
* **Experts used:** 2 experts used per token
* **Layers:** 64
* **Attention heads:** 48 for queries, 8 for keys/values
* **Embedding size:** 6,144
* **Tokenizer:** SentencePiece tokenizer with 131,072 tokens
* **Extras:** rotary position embeddings (RoPE), activation sharding, 8-bit quantization
* **Maximum sequence length (context):** 8,192 tokens

## Downloading the weights

Fetch the checkpoint into `checkpoints/ckpt-0` and run `python run.py`. The model is large: a machine
with enough GPU memory is needed to run it.

## License

The code and the Grok-1 weights in this release are licensed under the Apache 2.0 license. The license
covers the source files of this repository and the model weights of Grok-1.
""",
    # The same facts as running prose.
    "prose": """# Grok-1 open weights

Grok-1 is a 314 billion parameter mixture-of-experts model. Each of its 64 transformer layers routes
every token to 2 of its 8 experts. Attention uses 48 query heads and 8 key/value heads over a model
dimension of 6144. Text is split by a SentencePiece tokenizer with a vocabulary of 131,072 entries, and
the model reads a context window of 8k tokens.

Weights and code are released under the Apache License, Version 2.0.
""",
    # A table, as some model cards have.
    "table": """# Grok-1

| Property | Value |
|---|---|
| Total parameters | 314B |
| Number of experts | 8 |
| Active experts per token | 2 |
| Number of layers | 64 |
| Query heads | 48 |
| KV heads | 8 |
| Hidden size | 6144 |
| Vocabulary size | 131072 |
| Context length | 8192 |

License: Apache-2.0
""",
}

RUN_PY = '''"""Sample from Grok-1 (a stand-in for the release's run.py, written for openaudit's tests)."""

from model import LanguageModelConfig, TransformerConfig
from runners import InferenceRunner, ModelRunner, sample_from_model

CKPT_PATH = "./checkpoints/"


def main():
    grok_1_model = LanguageModelConfig(
        vocab_size=128 * 1024,
        pad_token=0,
        eos_token=2,
        sequence_len=8192,
        embedding_init_scale=1.0,
        output_multiplier_scale=0.5773502691896257,
        embedding_multiplier_scale=78.38367176906169,
        model=TransformerConfig(
            emb_size=48 * 128,
            widening_factor=8,
            key_size=128,
            num_q_heads=48,
            num_kv_heads=8,
            num_layers=64,
            attn_output_multiplier=0.08838834764831845,
            shard_activations=True,
            num_experts=8,
            num_selected_experts=2,
        ),
    )
    runner = InferenceRunner(
        runner=ModelRunner(model=grok_1_model, bs_per_device=0.125, checkpoint_path=CKPT_PATH),
        name="local",
        load=CKPT_PATH,
        tokenizer_path="./tokenizer.model",
        local_mesh_config=(1, 8),
        between_hosts_config=(1, 1),
    )
    runner.initialize()
    gen = runner.run()
    print(sample_from_model(gen, "The answer to life the universe and everything is of course", max_len=100))


if __name__ == "__main__":
    main()
'''

MODEL_PY = '''"""The Grok-1 transformer (a stand-in for the release's model.py, written for openaudit's tests).

A decoder-only mixture-of-experts transformer: tied input/output embeddings, rotary attention with
grouped query heads and capped logits, eight experts per layer of which two are used per token.
"""

from dataclasses import dataclass


@dataclass
class TransformerConfig:
    emb_size: int
    key_size: int
    num_q_heads: int
    num_kv_heads: int
    num_layers: int
    widening_factor: float = 4.0
    attn_output_multiplier: float = 1.0
    shard_activations: bool = False
    num_experts: int = -1
    num_selected_experts: int = -1


@dataclass
class LanguageModelConfig:
    model: TransformerConfig
    vocab_size: int
    pad_token: int
    eos_token: int
    sequence_len: int
    embedding_init_scale: float = 1.0
    embedding_multiplier_scale: float = 1.0
    output_multiplier_scale: float = 1.0


class MultiHeadAttention:
    """Queries, keys and values; rotary embeddings; logits capped at 30 * tanh(x / 30)."""


class MoELayer:
    """A router picks the two most probable of eight gated-GELU experts for each token."""


class DecoderLayer:
    """RMSNorm before and after attention and before and after the mixture of experts."""
'''

RUNNERS_PY = '''"""Loading and sampling (a stand-in for the release's runners.py, written for openaudit's tests)."""


class ModelRunner:
    def __init__(self, model, bs_per_device, checkpoint_path):
        self.model, self.bs_per_device, self.checkpoint_path = model, bs_per_device, checkpoint_path


class InferenceRunner:
    def __init__(self, runner, name, load, tokenizer_path, local_mesh_config, between_hosts_config):
        self.runner, self.name, self.load = runner, name, load

    def initialize(self):
        """Build the mesh, restore the checkpoint and compile the sampling step."""

    def run(self):
        """A generator that answers prompts."""


def sample_from_model(server, prompt, max_len=100, temperature=0.01):
    """Greedy-ish sampling of ``max_len`` tokens after ``prompt``."""
'''

CHECKPOINT_PY = '''"""Restore a checkpoint (a stand-in for the release's checkpoint.py, written for openaudit's tests).

The checkpoint is one pickle file per parameter leaf, ``tensor{index:05d}_{shard:03d}``, in the order
JAX flattens the parameter tree. Restoring it unpickles every file, so it runs whatever the files say:
openaudit reads them without unpickling.
"""

import pickle
from dataclasses import dataclass


@dataclass
class QuantizedWeight8bit:
    weight: object
    scales: object


def fast_unpickle(path):
    with open(path, "rb") as handle:
        return pickle.load(handle)
'''


def write_tokenizer_model(path: Path) -> None:
    """A small real SentencePiece model (the real one has 131,072 pieces; this one is tiny)."""
    import io

    import sentencepiece as spm

    text = (ROOT / "openaudit" / "run" / "probe_text.txt")
    sentences = text.read_text().split(".") if text.exists() else []
    sentences = [s.strip() for s in sentences if s.strip()] or ["the river cuts a valley through the hills"] * 50
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences * 4), model_writer=model, vocab_size=64, model_type="unigram",
        character_coverage=1.0, minloglevel=2, hard_vocab_limit=False,
    )
    path.write_bytes(model.getvalue())


def write_grok_release(root: Path, *, readme: str = "list", dims: GrokDims = GROK1, checkpoint: bool = True) -> Path:
    """Write the release into ``root`` and return it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "README.md").write_text(README_VARIANTS[readme])
    shutil.copyfile(ROOT / "checks" / "license_texts" / "Apache-2.0.txt", root / "LICENSE.txt")
    (root / "run.py").write_text(RUN_PY)
    (root / "model.py").write_text(MODEL_PY)
    (root / "runners.py").write_text(RUNNERS_PY)
    (root / "checkpoint.py").write_text(CHECKPOINT_PY)
    (root / "requirements.txt").write_text("dm_haiku==0.0.12\njax[cuda12-pip]==0.4.25\nnumpy==1.26.4\nsentencepiece==0.2.0\n")
    write_tokenizer_model(root / "tokenizer.model")
    (root / "checkpoints").mkdir(exist_ok=True)
    (root / "checkpoints" / "README.md").write_text("Place the checkpoint in ckpt-0.\n")
    if checkpoint:
        write_grok_checkpoint(root / "checkpoints" / "ckpt-0", dims)
    return root
