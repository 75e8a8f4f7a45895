"""Small releases for the run tests, written from scratch in a temporary folder.

``bigram_llama``: a standard Llama checkpoint (config.json, model.safetensors, tokenizer.json) whose
weights are *constructed*, not trained, to be a character-bigram language model of a text, so that a
"trained" model exists without minutes of training. With one character per token, vocabulary = width
= V and the embedding of token t is ``c·e_t``: RMSNorm turns it into ``sqrt(V)·e_t`` (norm weights 1),
so ``lm_head[:, t] = log P(next | t) / sqrt(V)`` makes the logits exactly the bigram log-probabilities,
provided the layers add nothing (``layer_scale=0``: o_proj and down_proj are zero, so each residual
branch is exactly 0). With ``layer_scale > 0`` the layers are random and small: a real forward pass
(for the device, streaming and distributed comparisons) that still predicts the text well.

``tiny_grok``: a Grok-1 checkpoint folder in the official layout (one raw pickle per leaf, int8
weights with bfloat16 scales), with a ``run.py`` whose ``key_size`` lets openaudit read its shapes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import ml_dtypes
import numpy as np

from tests.builders.safetensors_builder import write_safetensors

CHARS = tuple(chr(code) for code in range(32, 127)) + ("\n",)
UNK = "<unk>"
VOCAB = 128  # <unk>, 96 characters, unused ids up to a multiple of 8 (so every weight shards 8 ways)
EMBED_SCALE = 8.0
SMOOTHING = 0.1


def char_vocab() -> dict[str, int]:
    vocab = {UNK: 0}
    vocab.update({char: index + 1 for index, char in enumerate(CHARS)})
    for index in range(len(vocab), VOCAB):
        vocab[f"<unused{index}>"] = index
    return vocab


def char_ids(text: str) -> list[int]:
    vocab = char_vocab()
    return [vocab.get(char, 0) for char in text]


def write_char_tokenizer(path: Path) -> None:
    """tokenizer.json: a BPE without merges over single characters (one token per character)."""
    from tokenizers import Tokenizer, models

    Tokenizer(models.BPE(char_vocab(), [], unk_token=UNK)).save(str(path))


def bigram_log_probs(text: str) -> np.ndarray:
    """(V, V) float64: row t is log P(next | t), add-SMOOTHING estimated from ``text``."""
    ids = char_ids(text)
    counts = np.full((VOCAB, VOCAB), SMOOTHING)
    for current, following in zip(ids[:-1], ids[1:]):
        counts[current, following] += 1
    return np.log(counts / counts.sum(axis=1, keepdims=True))


def expected_perplexity(text: str, tokens: int) -> float:
    """The bigram model's perplexity on the first ``tokens`` characters of ``text``."""
    ids = char_ids(text)[:tokens]
    log_probs = bigram_log_probs(text)
    nll = -np.mean([log_probs[a, b] for a, b in zip(ids[:-1], ids[1:])])
    return float(np.exp(nll))


@dataclass(frozen=True)
class Shape:
    layers: int = 8
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 64


def bigram_llama_config(shape: Shape = Shape()) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": VOCAB,
        "hidden_size": VOCAB,
        "intermediate_size": shape.intermediate,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.kv_heads,
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "hidden_act": "silu",
        "torch_dtype": "float32",
    }


def bigram_llama_tensors(text: str, shape: Shape = Shape(), layer_scale: float = 0.0, seed: int = 0) -> dict[str, np.ndarray]:
    """Hugging Face names -> float32 arrays (see the module docstring)."""
    rng = np.random.default_rng(seed)
    d, head_dim = VOCAB, VOCAB // shape.heads
    tensors = {
        "model.embed_tokens.weight": (EMBED_SCALE * np.eye(VOCAB)).astype(np.float32),
        "model.norm.weight": np.ones(d, np.float32),
        "lm_head.weight": (bigram_log_probs(text).T / math.sqrt(VOCAB)).astype(np.float32),
    }

    def random(*dims: int, scale: float) -> np.ndarray:
        return (scale * rng.standard_normal(dims)).astype(np.float32)

    for index in range(shape.layers):
        prefix = f"model.layers.{index}."
        tensors.update({
            prefix + "input_layernorm.weight": np.ones(d, np.float32),
            prefix + "post_attention_layernorm.weight": np.ones(d, np.float32),
            prefix + "self_attn.q_proj.weight": random(shape.heads * head_dim, d, scale=0.1),
            prefix + "self_attn.k_proj.weight": random(shape.kv_heads * head_dim, d, scale=0.1),
            prefix + "self_attn.v_proj.weight": random(shape.kv_heads * head_dim, d, scale=0.1),
            prefix + "self_attn.o_proj.weight": random(d, shape.heads * head_dim, scale=layer_scale),
            prefix + "mlp.gate_proj.weight": random(shape.intermediate, d, scale=0.1),
            prefix + "mlp.up_proj.weight": random(shape.intermediate, d, scale=0.1),
            prefix + "mlp.down_proj.weight": random(d, shape.intermediate, scale=layer_scale),
        })
    return tensors


def write_bigram_llama(folder: Path, text: str, shape: Shape = Shape(), layer_scale: float = 0.0, *,
                       tensors: dict[str, np.ndarray] | None = None, tokenizer: bool = True, **config) -> Path:
    """The release folder; ``config`` items override config.json's."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({**bigram_llama_config(shape), **config}, indent=1))
    write_safetensors(folder / "model.safetensors", tensors if tensors is not None else bigram_llama_tensors(text, shape, layer_scale))
    if tokenizer:
        write_char_tokenizer(folder / "tokenizer.json")
    return folder


# --- Grok-1 ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GrokShape:
    vocab: int = 48
    embed: int = 32
    key_size: int = 8
    q_heads: int = 4
    kv_heads: int = 2
    layers: int = 2
    experts: int = 8
    ffn: int = 48  # Grok-1's ffn_size(32, widening 2.0)


def grok_leaves(shape: GrokShape = GrokShape(), seed: int = 0) -> dict[str, np.ndarray]:
    """Leaf name -> array; quantized leaves as int8 ``name`` and bfloat16 ``name:scales``."""
    from openaudit.inspect.pickle.grok_layout import leaf_paths

    rng = np.random.default_rng(seed)
    d, ffn, experts = shape.embed, shape.ffn, shape.experts
    q, kv = shape.q_heads * shape.key_size, shape.kv_heads * shape.key_size
    quantized = {
        "moe/linear/w": ((experts, d, ffn), (experts, 1, ffn), 0.006),
        "moe/linear_1/w": ((experts, ffn, d), (experts, 8, d), 0.006),
        "moe/linear_v/w": ((experts, d, ffn), (experts, 1, ffn), 0.006),
        "multi_head_attention/key/w": ((d, kv), (1, kv), 0.012),
        "multi_head_attention/linear/w": ((q, d), (8, d), 0.008),
        "multi_head_attention/query/w": ((d, q), (1, q), 0.012),
        "multi_head_attention/value/w": ((d, kv), (1, kv), 0.01),
    }
    leaves: dict[str, np.ndarray] = {}
    for path in leaf_paths(shape.layers):
        leaf = path.split("/", 2)[2] if path.startswith("transformer/") else path
        if path == "language_model/in_out_embed/embeddings":
            leaves[path] = rng.normal(0.0, 0.15, (shape.vocab, d)).astype(np.float32)
        elif leaf in quantized:
            weight_shape, scale_shape, size = quantized[leaf]
            leaves[path] = rng.integers(-127, 128, weight_shape, dtype=np.int8)
            leaves[path + ":scales"] = (size * rng.uniform(0.5, 2.0, scale_shape)).astype(ml_dtypes.bfloat16)
        elif leaf == "router/w":
            leaves[path] = rng.normal(0.0, 0.3, (d, experts)).astype(np.float32)
        else:  # the RMSNorm scales
            leaves[path] = (1.0 + 0.2 * rng.normal(size=d)).astype(np.float32)
    return leaves


def write_tiny_grok(folder: Path, shape: GrokShape = GrokShape(), seed: int = 0) -> dict[str, np.ndarray]:
    """``checkpoints/ckpt-0/tensorNNNNN_000`` pickles plus ``run.py``; returns the leaves written."""
    from openaudit.inspect.pickle.grok_layout import leaf_paths
    from tests.builders.pickle_builder import ArraySpec, QuantizedSpec, write_pickle

    leaves = grok_leaves(shape, seed)
    checkpoint = folder / "checkpoints" / "ckpt-0"
    checkpoint.mkdir(parents=True, exist_ok=True)

    def spec(array: np.ndarray) -> ArraySpec:
        dtype = "bfloat16" if array.dtype == ml_dtypes.bfloat16 else array.dtype.str.lstrip("<|")
        return ArraySpec(dtype, tuple(array.shape), np.ascontiguousarray(array).tobytes())

    for index, path in enumerate(leaf_paths(shape.layers)):
        value = leaves[path]
        scales = leaves.get(path + ":scales")
        item = QuantizedSpec(spec(value), spec(scales)) if scales is not None else spec(value)
        write_pickle(checkpoint / f"tensor{index:05d}_000", item)
    (folder / "run.py").write_text(
        "CKPT_PATH = './checkpoints/'\n"
        f"config = TransformerConfig(emb_size={shape.embed}, key_size={shape.key_size}, "
        f"num_q_heads={shape.q_heads}, num_kv_heads={shape.kv_heads}, num_layers={shape.layers})\n"
    )
    return leaves


# --- opening -----------------------------------------------------------------------------------------


def open_release(path: Path | str):
    """(release, weights inspection, architecture evidence), as the audit pipeline makes them."""
    from openaudit.evidence import gather
    from openaudit.inspect.weights import inspect_weights, weights_kinds
    from openaudit.source.open import open_source

    release = open_source(str(path))
    weights = inspect_weights(release)
    release = release.with_kinds(weights_kinds(weights))
    return release, weights, gather(release, weights).architecture


# --- GGUF --------------------------------------------------------------------------------------------

_GGUF_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def write_bigram_llama_gguf(path: Path, text: str, shape: Shape = Shape(), layer_scale: float = 0.0,
                            quantized: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The bigram Llama as llama.cpp writes it: GGUF names, q/k rows permuted for its RoPE, the
    vocabulary embedded as a SentencePiece ("llama") tokenizer (space as U+2581). Layer tensors whose
    GGUF name ends with one of ``quantized`` are stored as Q8_0. Returns the Hugging Face tensors."""
    from openaudit.run.dequant import quantize_with_gguf
    from openaudit.run.models.decoder import llama_cpp_permute
    from tests.builders import gguf_builder as G

    tensors = bigram_llama_tensors(text, shape, layer_scale)
    specs = [
        G.TensorSpec("token_embd.weight", G.F32, (VOCAB, VOCAB), tensors["model.embed_tokens.weight"].tobytes()),
        G.TensorSpec("output_norm.weight", G.F32, (VOCAB,), tensors["model.norm.weight"].tobytes()),
        G.TensorSpec("output.weight", G.F32, (VOCAB, VOCAB), tensors["lm_head.weight"].tobytes()),
    ]
    for index in range(shape.layers):
        for hf, gguf in _GGUF_LAYER_NAMES.items():
            value = tensors[f"model.layers.{index}.{hf}"]
            if gguf == "attn_q.weight":
                value = llama_cpp_permute(value, shape.heads)
            elif gguf == "attn_k.weight":
                value = llama_cpp_permute(value, shape.kv_heads)
            name = f"blk.{index}.{gguf}"
            if gguf.endswith(quantized) and quantized:
                specs.append(G.TensorSpec(name, G.Q8_0, value.shape, quantize_with_gguf(value, "Q8_0").tobytes()))
            else:
                specs.append(G.TensorSpec(name, G.F32, value.shape, np.ascontiguousarray(value).tobytes()))
    pieces = [UNK] + ["\u2581" if char == " " else char for char in CHARS] + [f"<unused{i}>" for i in range(len(CHARS) + 1, VOCAB)]
    metadata = {
        "general.architecture": "llama",
        "general.name": "bigram",
        "llama.context_length": G.u32(512),
        "llama.embedding_length": G.u32(VOCAB),
        "llama.block_count": G.u32(shape.layers),
        "llama.feed_forward_length": G.u32(shape.intermediate),
        "llama.attention.head_count": G.u32(shape.heads),
        "llama.attention.head_count_kv": G.u32(shape.kv_heads),
        "llama.attention.layer_norm_rms_epsilon": G.f32(1e-6),
        "llama.rope.freq_base": G.f32(10000.0),
        "tokenizer.ggml.model": G.string("llama"),
        "tokenizer.ggml.tokens": G.array(G.STRING, pieces),
        "tokenizer.ggml.scores": G.array(G.FLOAT32, [0.0] * VOCAB),
        "tokenizer.ggml.unknown_token_id": G.u32(0),
        "tokenizer.ggml.add_bos_token": G.boolean(False),
    }
    G.write_gguf(path, metadata, specs)
    return tensors


# --- big random models (benchmarks) ------------------------------------------------------------------


@dataclass(frozen=True)
class LlamaSize:
    layers: int = 8
    hidden: int = 1024
    intermediate: int = 2816
    heads: int = 16
    kv_heads: int = 4
    vocab: int = 4096
    context: int = 2048

    @property
    def layer_parameters(self) -> int:
        head_dim = self.hidden // self.heads
        attention = 2 * self.hidden * self.hidden + 2 * self.hidden * self.kv_heads * head_dim
        return attention + 3 * self.hidden * self.intermediate + 2 * self.hidden

    @property
    def parameters(self) -> int:
        return self.layers * self.layer_parameters + 2 * self.vocab * self.hidden + self.hidden


def llama_size_for(total_bytes: int, bytes_per_parameter: int, base: LlamaSize = LlamaSize()) -> LlamaSize:
    """``base`` with as many layers as make about ``total_bytes`` (at least one)."""
    globals_bytes = (2 * base.vocab * base.hidden + base.hidden) * bytes_per_parameter
    layers = max(1, round((total_bytes - globals_bytes) / (base.layer_parameters * bytes_per_parameter)))
    return LlamaSize(layers, base.hidden, base.intermediate, base.heads, base.kv_heads, base.vocab, base.context)


def write_random_llama(folder: Path, size: LlamaSize, dtype: str = "F32", seed: int = 0) -> Path:
    """A Llama release of random N(0, 0.02) weights (norms 1), written tensor by tensor (never all in
    memory), with the character tokenizer when the vocabulary has room for it."""
    from tests.builders.safetensors_builder import layout

    numpy_type = {"F32": np.float32, "BF16": ml_dtypes.bfloat16, "F16": np.float16}[dtype]
    head_dim = size.hidden // size.heads
    shapes: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (size.vocab, size.hidden),
        "model.norm.weight": (size.hidden,),
        "lm_head.weight": (size.vocab, size.hidden),
    }
    for index in range(size.layers):
        prefix = f"model.layers.{index}."
        shapes.update({
            prefix + "input_layernorm.weight": (size.hidden,),
            prefix + "post_attention_layernorm.weight": (size.hidden,),
            prefix + "self_attn.q_proj.weight": (size.heads * head_dim, size.hidden),
            prefix + "self_attn.k_proj.weight": (size.kv_heads * head_dim, size.hidden),
            prefix + "self_attn.v_proj.weight": (size.kv_heads * head_dim, size.hidden),
            prefix + "self_attn.o_proj.weight": (size.hidden, size.heads * head_dim),
            prefix + "mlp.gate_proj.weight": (size.intermediate, size.hidden),
            prefix + "mlp.up_proj.weight": (size.intermediate, size.hidden),
            prefix + "mlp.down_proj.weight": (size.hidden, size.intermediate),
        })
    plan = layout({name: (dtype, shape) for name, shape in shapes.items()})
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with open(folder / "model.safetensors", "wb") as handle:
        handle.write(plan.prefix())
        for name, (begin, _) in sorted(plan.offsets.items(), key=lambda item: item[1][0]):
            handle.seek(plan.data_start + begin)
            shape = shapes[name]
            if len(shape) == 1:
                values = np.ones(shape, np.float32)
            else:
                values = rng.standard_normal(shape, dtype=np.float32)
                values *= 0.02
            handle.write(values.astype(numpy_type).tobytes())
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": size.vocab,
        "hidden_size": size.hidden, "intermediate_size": size.intermediate, "num_hidden_layers": size.layers,
        "num_attention_heads": size.heads, "num_key_value_heads": size.kv_heads,
        "max_position_embeddings": size.context, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "tie_word_embeddings": False, "hidden_act": "silu",
        "torch_dtype": {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}[dtype],
    }
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    if size.vocab >= VOCAB:
        write_char_tokenizer(folder / "tokenizer.json")
    return folder
