"""Train the tiny Llama bundled in ``examples/tiny-llama`` and write the whole release folder.

    python examples/make_tiny_llama.py            # trains (a few minutes on 2 CPU cores), writes the release
    python examples/make_tiny_llama.py --out DIR  # writes elsewhere

Everything is made here from committed inputs, with no network:
- the training text is ``tests/data/tiny_llama_corpus/*.txt`` (public domain; see SOURCES.md there), with
  line wrapping undone and typographic punctuation mapped to ASCII (``normalize_corpus``);
- the tokenizer is a byte-level BPE trained on that text with the ``tokenizers`` library;
- the model is a standard ``LlamaForCausalLM`` (RMSNorm, rotate-half RoPE with base 10000, grouped-query
  attention, SwiGLU MLP, float32), written as plain ``jax`` and trained with a hand-written AdamW;
- the saved tensor names and shapes are checked against ``openaudit.families.llama.expected_tensors``
  before anything is written, so the release is exactly what openaudit expects of a Llama.

The run is deterministic for a fixed seed on one machine and set of library versions (XLA's CPU kernels
may round differently elsewhere, so the bytes, and SHA256SUMS, may differ from the committed ones).
It prints the training time, the final training and held-out losses, and the perplexity of the bundled
probe text (``openaudit/run/probe_text.txt``, which is not part of the training text).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CORPUS_DIR = REPO / "tests" / "data" / "tiny_llama_corpus"
PROBE_TEXT = REPO / "openaudit" / "run" / "probe_text.txt"
DEFAULT_OUT = REPO / "examples" / "tiny-llama"

SEED = 0
SPECIAL_TOKEN = "<|endoftext|>"  # id 0: begin and end of text, and padding
# Written into config.json and generation_config.json in the layout that transformers' LlamaConfig and
# GenerationConfig of this version write (transformers itself is not used or needed).
TRANSFORMERS_FORMAT_VERSION = "4.45.2"


@dataclass(frozen=True)
class ModelShape:
    vocab_size: int = 512
    hidden_size: int = 96
    intermediate_size: int = 256
    num_layers: int = 3
    num_heads: int = 4
    num_kv_heads: int = 2
    context_length: int = 512
    tie_word_embeddings: bool = True


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 800
    batch_size: int = 8
    sequence_length: int = 256
    peak_learning_rate: float = 3e-3
    warmup_steps: int = 100
    weight_decay: float = 0.1
    clip_norm: float = 1.0
    dropout: float = 0.2  # on the residual branches while training: the corpus is small
    validation_fraction: float = 0.05


# ------------------------------------------------------------------------------------------- the text

_ASCII_PUNCTUATION = {
    "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
    "\u2014": "--", "\u2013": "-", "\u2026": "...", "\u00a0": " ",
}


def normalize_corpus(raw: str) -> str:
    """One paragraph per line: the books' hard line wrapping joined, punctuation in ASCII.

    The probe text is plain ASCII prose with one paragraph per line, so the training text is made alike.
    """
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    for typographic, plain in _ASCII_PUNCTUATION.items():
        text = text.replace(typographic, plain)
    paragraphs = []
    for block in re.split(r"\n[ \t]*\n", text):
        paragraph = " ".join(line.strip() for line in block.splitlines() if line.strip())
        if paragraph:
            paragraphs.append(re.sub(r"[ \t]+", " ", paragraph))
    return "\n".join(paragraphs) + "\n"


def probe_overlaps(probe: str, corpus: str) -> bool:
    """True when any sentence of the probe text occurs in the (normalized) training text."""
    flat = " ".join(corpus.split())
    return any(sentence in flat for sentence in re.split(r"(?<=[.!?]) ", " ".join(probe.split())))


def load_corpus(directory: Path = CORPUS_DIR) -> str:
    files = sorted(directory.glob("*.txt"))
    if not files:
        raise SystemExit(f"no training text (*.txt) in {directory}")
    return "".join(normalize_corpus(path.read_text(encoding="utf-8")) for path in files)


def train_tokenizer(text: str, vocab_size: int) -> Any:
    """A byte-level BPE (GPT-2 style pre-tokenization, no added prefix space) with one special token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[SPECIAL_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(text.splitlines(keepends=True), trainer=trainer)
    if tokenizer.get_vocab_size() != vocab_size:
        raise SystemExit(f"the BPE stopped at {tokenizer.get_vocab_size()} tokens, not {vocab_size}: too little text")
    return tokenizer


# ------------------------------------------------------------------------------------------- config


def hf_config(shape: ModelShape) -> dict[str, Any]:
    """config.json with every key (sorted) that LlamaConfig.to_json_file writes."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "head_dim": shape.hidden_size // shape.num_heads,
        "hidden_act": "silu",
        "hidden_size": shape.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": shape.intermediate_size,
        "max_position_embeddings": shape.context_length,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": shape.num_heads,
        "num_hidden_layers": shape.num_layers,
        "num_key_value_heads": shape.num_kv_heads,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "tie_word_embeddings": shape.tie_word_embeddings,
        "torch_dtype": "float32",
        "transformers_version": TRANSFORMERS_FORMAT_VERSION,
        "use_cache": True,
        "vocab_size": shape.vocab_size,
    }


def expected_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The parameters openaudit expects of this config: name -> shape (buffers and tied aliases left out)."""
    sys.path.insert(0, str(REPO))
    from openaudit.families import llama

    specs = llama.expected_tensors(llama.config_from_hf(config))
    return {spec.name: spec.shape for spec in specs if spec.is_parameter and not spec.optional}


# ------------------------------------------------------------------------------------------- model (jax)


def init_params(shape: ModelShape, seed: int) -> dict[str, np.ndarray]:
    """Normal(0, 0.02) matrices as transformers initialises Llama, RMSNorm weights at one."""
    config = hf_config(shape)
    rng = np.random.default_rng(seed)
    params = {}
    for name, tensor_shape in expected_shapes(config).items():
        if name.endswith("norm.weight"):
            params[name] = np.ones(tensor_shape, np.float32)
        else:
            params[name] = rng.normal(0.0, config["initializer_range"], tensor_shape).astype(np.float32)
    return params


def make_forward(shape: ModelShape, dropout: float = 0.0):
    """The forward pass; with ``dropout`` and a PRNG key it drops residual-branch activations (training)."""
    import jax
    import jax.numpy as jnp

    head_dim = shape.hidden_size // shape.num_heads
    groups = shape.num_heads // shape.num_kv_heads
    eps = 1e-6

    def rms_norm(x, weight):
        return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps) * weight

    def rope(x, cos, sin):  # x: [B, T, heads, head_dim]; rotate-half, as transformers' Llama
        half = head_dim // 2
        rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
        return x * cos + rotated * sin

    def drop(x, key, index):
        if key is None or dropout == 0.0:
            return x
        keep = jax.random.bernoulli(jax.random.fold_in(key, index), 1.0 - dropout, x.shape)
        return jnp.where(keep, x / (1.0 - dropout), 0.0)

    def forward(params, tokens, key=None):
        batch, length = tokens.shape
        inv_freq = 1.0 / (10000.0 ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
        angles = jnp.arange(length, dtype=jnp.float32)[:, None] * inv_freq[None, :]
        angles = jnp.concatenate([angles, angles], axis=-1)
        cos, sin = jnp.cos(angles)[None, :, None, :], jnp.sin(angles)[None, :, None, :]
        causal = jnp.tril(jnp.ones((length, length), bool))

        x = params["model.embed_tokens.weight"][tokens]
        for layer in range(shape.num_layers):
            p = f"model.layers.{layer}."
            h = rms_norm(x, params[p + "input_layernorm.weight"])
            q = (h @ params[p + "self_attn.q_proj.weight"].T).reshape(batch, length, shape.num_heads, head_dim)
            k = (h @ params[p + "self_attn.k_proj.weight"].T).reshape(batch, length, shape.num_kv_heads, head_dim)
            v = (h @ params[p + "self_attn.v_proj.weight"].T).reshape(batch, length, shape.num_kv_heads, head_dim)
            q, k = rope(q, cos, sin), rope(k, cos, sin)
            # Query head j reads kv head j // groups.
            k, v = jnp.repeat(k, groups, axis=2), jnp.repeat(v, groups, axis=2)
            scores = jnp.einsum("bthd,bshd->bhts", q, k) * head_dim**-0.5
            scores = jnp.where(causal[None, None], scores, jnp.finfo(jnp.float32).min)
            attention = jnp.einsum("bhts,bshd->bthd", jax.nn.softmax(scores, axis=-1), v)
            x = x + drop(attention.reshape(batch, length, -1) @ params[p + "self_attn.o_proj.weight"].T, key, 2 * layer)
            h = rms_norm(x, params[p + "post_attention_layernorm.weight"])
            gate = jax.nn.silu(h @ params[p + "mlp.gate_proj.weight"].T)
            x = x + drop((gate * (h @ params[p + "mlp.up_proj.weight"].T)) @ params[p + "mlp.down_proj.weight"].T, key, 2 * layer + 1)
        x = rms_norm(x, params["model.norm.weight"])
        head = params["model.embed_tokens.weight"] if shape.tie_word_embeddings else params["lm_head.weight"]
        return x @ head.T

    return forward


def make_loss(forward):
    import jax
    import jax.numpy as jnp

    def loss(params, window, key=None):  # window: [B, T + 1] token ids
        logits = forward(params, window[:, :-1], key)
        log_probs = jax.nn.log_softmax(logits, axis=-1)
        picked = jnp.take_along_axis(log_probs, window[:, 1:, None], axis=-1)
        return -jnp.mean(picked)

    return loss


def make_train_step(loss, settings: TrainSettings):
    """One AdamW step (beta 0.9/0.95, eps 1e-8), global-norm clipping, decay on matrices only."""
    import jax
    import jax.numpy as jnp

    beta1, beta2, epsilon = 0.9, 0.95, 1e-8

    def learning_rate(step):
        warm = settings.peak_learning_rate * (step + 1) / settings.warmup_steps
        progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
        cosine = 0.1 + 0.9 * 0.5 * (1 + jnp.cos(jnp.pi * jnp.clip(progress, 0.0, 1.0)))
        return jnp.where(step < settings.warmup_steps, warm, settings.peak_learning_rate * cosine)

    @jax.jit
    def step(params, moments, step_number, window, key):
        value, grads = jax.value_and_grad(loss)(params, window, key)
        norm = jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree_util.tree_leaves(grads)))
        scale = jnp.minimum(1.0, settings.clip_norm / (norm + 1e-12))
        lr = learning_rate(step_number)
        t = step_number + 1
        new_params, new_moments = {}, {}
        for name, param in params.items():
            g = grads[name] * scale
            m = beta1 * moments[name][0] + (1 - beta1) * g
            v = beta2 * moments[name][1] + (1 - beta2) * g * g
            update = (m / (1 - beta1**t)) / (jnp.sqrt(v / (1 - beta2**t)) + epsilon)
            decay = settings.weight_decay * param if param.ndim == 2 else 0.0
            new_params[name] = param - lr * (update + decay)
            new_moments[name] = (m, v)
        return new_params, new_moments, value

    return step


def sample_windows(tokens: np.ndarray, rng: np.random.Generator, batch: int, length: int) -> np.ndarray:
    starts = rng.integers(0, len(tokens) - length - 1, size=batch)
    return np.stack([tokens[s : s + length + 1] for s in starts]).astype(np.int32)


def mean_loss(loss_fn, params, tokens: np.ndarray, length: int) -> float:
    """Average next-token loss over consecutive windows covering ``tokens``."""
    import jax.numpy as jnp

    windows = [tokens[s : s + length + 1] for s in range(0, len(tokens) - length - 1, length)]
    values = [float(loss_fn(params, jnp.asarray(np.stack([w]).astype(np.int32)))) for w in windows]
    return float(np.mean(values))


def perplexity(forward, params, ids: list[int]) -> float:
    import jax
    import jax.numpy as jnp

    tokens = jnp.asarray([ids], jnp.int32)
    log_probs = jax.nn.log_softmax(forward(params, tokens[:, :-1]), axis=-1)
    picked = jnp.take_along_axis(log_probs, tokens[:, 1:, None], axis=-1)
    return float(jnp.exp(-jnp.mean(picked)))


# ------------------------------------------------------------------------------------------- release


def apache_license_text() -> str:
    """The Apache-2.0 text as shipped in an installed Apache-licensed distribution (never retyped)."""
    for distribution in ("huggingface_hub", "jax", "ml_dtypes"):
        for file_name in ("licenses/LICENSE", "LICENSE"):
            try:
                text = importlib.metadata.distribution(distribution).read_text(file_name)
            except importlib.metadata.PackageNotFoundError:
                break
            if text and text.lstrip().startswith("Apache License") and "END OF TERMS AND CONDITIONS" in text:
                return text.lstrip("\n")
    raise SystemExit("no installed copy of the Apache-2.0 license text was found")


def model_card(shape: ModelShape, parameters: int, probe_ppl: float) -> str:
    """The README: Hub front matter, then one paragraph per line so every claim sits on a single line."""
    head = "tied to the input embedding" if shape.tie_word_embeddings else "a separate output matrix"
    return f"""---
license: apache-2.0
language:
- en
pipeline_tag: text-generation
library_name: transformers
tags:
- llama
- tiny
- example
---

# tiny-llama

A very small Llama-architecture language model that ships with openaudit as the example release to audit. It is a real trained model, small enough to commit: it has {parameters:,} parameters, stored as float32 in `model.safetensors`.

It is a `LlamaForCausalLM` with {shape.num_layers} layers, {shape.num_heads} attention heads sharing {shape.num_kv_heads} key-value heads, an embedding size (hidden size) of {shape.hidden_size}, an MLP (intermediate) size of {shape.intermediate_size}, a vocabulary of {shape.vocab_size} tokens and a context length of {shape.context_length} tokens. The output head is {head}.

It writes English that reads like a children's book from 1900 and knows nothing else: it is a test fixture, not a useful model.

## Training

`examples/make_tiny_llama.py` in the openaudit repository trains it from scratch on CPU in a few minutes, with JAX and a hand-written AdamW, and writes every file of this folder. The tokenizer is a byte-level BPE trained by the same script on the same text.

Training data: *The Wonderful Wizard of Oz* by L. Frank Baum (1900), a public-domain book (Project Gutenberg eBook #55), committed in the openaudit repository under `tests/data/tiny_llama_corpus/` with its source recorded in `SOURCES.md` there.

## Evaluation

Perplexity on openaudit's bundled probe text (`openaudit/run/probe_text.txt`, original prose that is not part of the training text): {probe_ppl:.1f}, against {shape.vocab_size} for a uniform guess over the vocabulary.

## License

The weights, tokenizer and code are released under the Apache License 2.0 (see `LICENSE`). The training text is in the public domain.
"""


def write_release(out: Path, shape: ModelShape, params: dict[str, np.ndarray], tokenizer: Any, probe_ppl: float) -> None:
    from safetensors.numpy import save_file

    out.mkdir(parents=True, exist_ok=True)
    config = hf_config(shape)
    tensors = {name: np.ascontiguousarray(value, np.float32) for name, value in sorted(params.items())}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "model.safetensors").chmod(0o644)  # safetensors creates the file readable by its owner only
    write_json(out / "config.json", config)
    write_json(
        out / "generation_config.json",
        {"_from_model_config": True, "bos_token_id": 0, "eos_token_id": 0, "transformers_version": TRANSFORMERS_FORMAT_VERSION},
    )
    tokenizer.save(str(out / "tokenizer.json"))
    write_json(
        out / "tokenizer_config.json",
        {
            "add_prefix_space": False,
            "bos_token": SPECIAL_TOKEN,
            "clean_up_tokenization_spaces": False,
            "eos_token": SPECIAL_TOKEN,
            "model_max_length": shape.context_length,
            "pad_token": SPECIAL_TOKEN,
            "tokenizer_class": "PreTrainedTokenizerFast",
            "unk_token": SPECIAL_TOKEN,
        },
    )
    parameters = sum(int(value.size) for value in tensors.values())
    (out / "README.md").write_text(model_card(shape, parameters, probe_ppl), encoding="utf-8")
    (out / "LICENSE").write_text(apache_license_text(), encoding="utf-8")
    digest = hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
    (out / "SHA256SUMS").write_text(f"{digest}  model.safetensors\n", encoding="utf-8")


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="release folder to write")
    parser.add_argument("--steps", type=int, default=TrainSettings.steps, help="fewer for a quick trial run")
    args = parser.parse_args(argv)

    import jax
    import jax.numpy as jnp

    jax.config.update("jax_platforms", "cpu")
    shape, settings = ModelShape(), TrainSettings(steps=args.steps)

    text = load_corpus()
    probe = PROBE_TEXT.read_text(encoding="utf-8")
    if probe_overlaps(probe, text):
        raise SystemExit("the probe text must not be part of the training text")
    tokenizer = train_tokenizer(text, shape.vocab_size)
    tokens = np.asarray(tokenizer.encode(text).ids, np.int32)
    split = int(len(tokens) * (1 - settings.validation_fraction))
    train_tokens, held_out = tokens[:split], tokens[split:]
    probe_ids = tokenizer.encode(probe).ids
    if len(probe_ids) > shape.context_length:
        raise SystemExit(f"the probe text is {len(probe_ids)} tokens, longer than the context")
    print(f"corpus: {len(text):,} characters, {len(tokens):,} tokens; probe: {len(probe_ids)} tokens", flush=True)

    config = hf_config(shape)
    expected = expected_shapes(config)
    params = {name: jnp.asarray(value) for name, value in init_params(shape, SEED).items()}
    moments = {name: (jnp.zeros_like(value), jnp.zeros_like(value)) for name, value in params.items()}
    forward = make_forward(shape)
    loss_fn = jax.jit(make_loss(forward))
    step = make_train_step(make_loss(make_forward(shape, settings.dropout)), settings)
    rng = np.random.default_rng(SEED)
    dropout_key = jax.random.PRNGKey(SEED)

    started = time.perf_counter()
    recent: list[float] = []
    for number in range(settings.steps):
        window = jnp.asarray(sample_windows(train_tokens, rng, settings.batch_size, settings.sequence_length))
        key = jax.random.fold_in(dropout_key, number)
        params, moments, value = step(params, moments, jnp.asarray(number, jnp.float32), window, key)
        recent = (recent + [float(value)])[-50:]
        if (number + 1) % 100 == 0:
            held = mean_loss(loss_fn, params, held_out, settings.sequence_length)
            elapsed = time.perf_counter() - started
            print(f"step {number + 1:5d}  training loss {np.mean(recent):.3f}  held-out {held:.3f}  {elapsed:6.1f}s", flush=True)
    seconds = time.perf_counter() - started

    final = {name: np.asarray(value, np.float32) for name, value in params.items()}
    actual = {name: value.shape for name, value in final.items()}
    if actual != expected:
        raise SystemExit(f"tensor layout differs from openaudit's Llama: {sorted(set(actual) ^ set(expected))}")
    held_out_loss = mean_loss(loss_fn, params, held_out, settings.sequence_length)
    probe_ppl = perplexity(forward, params, probe_ids)
    print(f"trained {settings.steps} steps in {seconds:.1f}s (held-out evaluations included)")
    print(f"final training loss (mean of last 50 steps): {np.mean(recent):.4f}")
    print(f"held-out loss: {held_out_loss:.4f} (perplexity {math.exp(held_out_loss):.1f})")
    print(f"probe perplexity: {probe_ppl:.2f} (uniform guess: {shape.vocab_size})")
    write_release(args.out, shape, final, tokenizer, probe_ppl)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
