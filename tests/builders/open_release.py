"""A small, fully open model release, for openness tests: every MOF component is there, under open licenses.

Laid out the way open-science releases (OLMo, Pythia, Amber) publish: a tiny Llama-style model in safetensors
with its config, two intermediate checkpoints, training code with a configuration, data preprocessing code, a
training corpus and evaluation data under ODC-By (their own ``data/LICENSE``) with a datasheet, evaluation
code and results (also as ``model-index`` in the card), a paper and a technical report as real (tiny) PDFs,
sample outputs, a supporting library, and Apache-2.0 for the rest. Prose and code are openaudit's own.

The tensor list is written out here (not taken from openaudit's family code) so that the architecture check
is tested against an independent layout: Llama with hidden 64, 2 layers, 4 heads of which 2 key/value heads,
MLP 128, vocabulary 256, untied head: 106,816 parameters.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.builders.safetensors_builder import write_safetensors

ROOT = Path(__file__).resolve().parents[2]
LICENSE_TEXTS = ROOT / "checks" / "license_texts"

HIDDEN, LAYERS, HEADS, KV_HEADS, MLP, VOCAB = 64, 2, 4, 2, 128, 256
HEAD_DIM = HIDDEN // HEADS
PARAMETERS = 106_816

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": HIDDEN,
    "intermediate_size": MLP,
    "num_attention_heads": HEADS,
    "num_key_value_heads": KV_HEADS,
    "num_hidden_layers": LAYERS,
    "vocab_size": VOCAB,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
}


def llama_tensors(dtype: str = "F32") -> dict[str, tuple[str, tuple[int, ...]]]:
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {"model.embed_tokens.weight": (dtype, (VOCAB, HIDDEN))}
    for layer in range(LAYERS):
        prefix = f"model.layers.{layer}"
        tensors[f"{prefix}.input_layernorm.weight"] = (dtype, (HIDDEN,))
        tensors[f"{prefix}.self_attn.q_proj.weight"] = (dtype, (HEADS * HEAD_DIM, HIDDEN))
        tensors[f"{prefix}.self_attn.k_proj.weight"] = (dtype, (KV_HEADS * HEAD_DIM, HIDDEN))
        tensors[f"{prefix}.self_attn.v_proj.weight"] = (dtype, (KV_HEADS * HEAD_DIM, HIDDEN))
        tensors[f"{prefix}.self_attn.o_proj.weight"] = (dtype, (HIDDEN, HEADS * HEAD_DIM))
        tensors[f"{prefix}.post_attention_layernorm.weight"] = (dtype, (HIDDEN,))
        tensors[f"{prefix}.mlp.gate_proj.weight"] = (dtype, (MLP, HIDDEN))
        tensors[f"{prefix}.mlp.up_proj.weight"] = (dtype, (MLP, HIDDEN))
        tensors[f"{prefix}.mlp.down_proj.weight"] = (dtype, (HIDDEN, MLP))
    tensors["model.norm.weight"] = (dtype, (HIDDEN,))
    tensors["lm_head.weight"] = (dtype, (VOCAB, HIDDEN))
    return tensors


def tiny_pdf(title: str) -> bytes:
    """A valid one-page PDF 1.4 (catalog, pages, page, font, content stream) with a correct xref table."""
    text = title.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n".encode() + b"0000000000 65535 f \n"
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


README = """---
license: apache-2.0
language: [en]
datasets:
  - example-org/tiny-open-corpus
pipeline_tag: text-generation
model-index:
  - name: tiny-open-lm
    results:
      - task: {type: text-generation}
        dataset: {name: Tiny HellaSwag, type: example-org/tiny-hellaswag}
        metrics:
          - {type: accuracy, value: 0.31}
      - task: {type: text-generation}
        dataset: {name: Tiny ARC, type: example-org/tiny-arc}
        metrics:
          - {type: accuracy, value: 0.27}
---

# tiny-open-lm

A 107-thousand-parameter Llama-style language model, released with everything used to make it.

## Model details

- Architecture: decoder-only transformer, 2 layers, hidden size 64, 4 attention heads (2 key/value heads)
- Parameters: 106,816
- Trained on 8 A100 GPUs for 2 GPU-hours.

## Uses

Research on training dynamics; not for production use.

## Limitations

The model is tiny and its outputs are often wrong.

## How to use

Run `python generate.py --prompt "Once upon a time"`.

## Training

`python train.py --config configs/pretrain.yaml` reproduces the run; `scripts/preprocess.py` builds the corpus.
Intermediate checkpoints are in `checkpoints/`.

## Evaluation

| Benchmark | Accuracy |
|---|---|
| Tiny HellaSwag | 0.31 |
| Tiny ARC | 0.27 |

## License

Code, weights and documents: Apache-2.0. Data: ODC-By 1.0 (see data/LICENSE).

## Citation

Paper: https://arxiv.org/abs/2402.00838 (published as https://doi.org/10.18653/v1/2024.acl-long.841).
"""

TRAIN_PY = '''"""Pre-train tiny-open-lm (written for openaudit's tests)."""

import argparse

import torch
from torch.optim import AdamW

from tiny_lib.model import TinyLlama


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="configs/pretrain.yaml")
    args = parser.parse_args()
    model = TinyLlama()
    optimizer = AdamW(model.parameters(), lr=3e-4)
    for step in range(2000):
        loss = model.loss(step)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


if __name__ == "__main__":
    main()
'''

PRETRAIN_YAML = """# The pre-training run of tiny-open-lm.
model: configs/model.json
data:
  train: data/train
optimizer: adamw
learning_rate: 3.0e-4
batch_size: 32
max_steps: 2000
warmup_steps: 100
checkpoint_every: 1000
"""

GENERATE_PY = '''"""Sample from tiny-open-lm (written for openaudit's tests)."""

from tiny_lib.model import TinyLlama


def generate(prompt: str, max_new_tokens: int = 32) -> str:
    model = TinyLlama.from_pretrained(".")
    return model.complete(prompt, max_new_tokens)


if __name__ == "__main__":
    print(generate("Once upon a time"))
'''

PREPROCESS_PY = '''"""Build the training corpus: deduplicate, filter and shard (written for openaudit's tests)."""


def keep(line: str) -> bool:
    return 20 <= len(line) <= 2000


def main():
    seen = set()
    with open("raw.txt") as source:
        for line in source:
            if keep(line) and line not in seen:
                seen.add(line)
'''

EVAL_PY = '''"""Evaluate tiny-open-lm on the bundled evaluation sets (written for openaudit's tests)."""

import json


def accuracy(answers, gold):
    return sum(a == g for a, g in zip(answers, gold)) / len(gold)


def main():
    with open("data/eval/tiny-hellaswag.jsonl") as handle:
        items = [json.loads(line) for line in handle]
    print(accuracy([item["label"] for item in items], [item["label"] for item in items]))
'''

TINY_LIB_MODEL = '''"""The model and its tokenizer (a supporting library, written for openaudit's tests)."""


class TinyLlama:
    """Decoder-only transformer with grouped-query attention."""
'''

DATASHEET = """# Datasheet: tiny-open-corpus

## Motivation

Built to train tiny-open-lm in the open, so that every step can be reproduced.

## Composition

Two shards of short English sentences (JSON Lines, one document per line) and a small evaluation set.

## Collection process

Sentences written for the release; no personal data.

## Preprocessing

`scripts/preprocess.py` removes duplicates and lines shorter than 20 or longer than 2,000 characters.

## Distribution

ODC-By 1.0 (data/LICENSE).
"""


def write_open_release(root: Path) -> Path:
    """Write the release into ``root`` and return it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "README.md").write_text(README)
    shutil.copyfile(LICENSE_TEXTS / "Apache-2.0.txt", root / "LICENSE")
    (root / "config.json").write_text(json.dumps(CONFIG, indent=2))
    (root / "generation_config.json").write_text(json.dumps({"max_new_tokens": 32, "do_sample": False}))
    tensors = llama_tensors()
    write_safetensors(root / "model.safetensors", tensors, metadata={"format": "pt"})
    for step in (1000, 2000):
        folder = root / "checkpoints" / f"step{step}"
        folder.mkdir(parents=True)
        write_safetensors(folder / "model.safetensors", tensors, metadata={"format": "pt", "step": str(step)})

    (root / "train.py").write_text(TRAIN_PY)
    (root / "configs").mkdir()
    (root / "configs" / "pretrain.yaml").write_text(PRETRAIN_YAML)
    (root / "generate.py").write_text(GENERATE_PY)
    (root / "scripts").mkdir()
    (root / "scripts" / "preprocess.py").write_text(PREPROCESS_PY)
    (root / "eval").mkdir()
    (root / "eval" / "run_eval.py").write_text(EVAL_PY)
    (root / "eval" / "results.json").write_text(json.dumps({"tiny-hellaswag": {"accuracy": 0.31}, "tiny-arc": {"accuracy": 0.27}}, indent=2))
    (root / "tiny_lib").mkdir()
    (root / "tiny_lib" / "__init__.py").write_text('"""Supporting library of tiny-open-lm."""\n')
    (root / "tiny_lib" / "model.py").write_text(TINY_LIB_MODEL)

    data = root / "data"
    (data / "train").mkdir(parents=True)
    (data / "eval").mkdir()
    shutil.copyfile(LICENSE_TEXTS / "ODC-By-1.0.txt", data / "LICENSE")
    (data / "README.md").write_text(DATASHEET)
    for shard in range(2):
        lines = [json.dumps({"text": f"Sentence {shard}-{i} of the tiny open corpus."}) for i in range(5)]
        (data / "train" / f"shard-{shard:05d}.jsonl").write_text("\n".join(lines) + "\n")
    (data / "eval" / "tiny-hellaswag.jsonl").write_text(
        "\n".join(json.dumps({"context": f"Question {i}", "label": i % 4}) for i in range(4)) + "\n"
    )

    (root / "paper").mkdir()
    (root / "paper" / "tiny-open-lm.pdf").write_bytes(tiny_pdf("tiny-open-lm: a fully open tiny language model"))
    (root / "docs").mkdir()
    (root / "docs" / "technical_report.pdf").write_bytes(tiny_pdf("tiny-open-lm technical report"))
    (root / "samples").mkdir()
    (root / "samples" / "generations.jsonl").write_text(
        json.dumps({"prompt": "Once upon a time", "completion": "there was a tiny model."}) + "\n"
    )
    return root
