"""Build tiny random transformers models and record their float32 logits as reference fixtures.

Run by hand, once, in a separate virtualenv that has torch and transformers (the normal test run needs
neither)::

    python3.11 -m venv /work/venv-ref
    /work/venv-ref/bin/pip install torch==2.13.0 transformers safetensors numpy
    /work/venv-ref/bin/python tests/reference/make_reference_logits.py [--out tests/data/reference] [family ...]

For every family it writes ``<out>/<family>/`` with ``config.json`` and ``model.safetensors`` (float32,
as ``save_pretrained`` writes them) and ``reference.npz`` holding ``input_ids`` (1, T) int32 and
``logits`` (1, T, V) float32 from ``attn_implementation="eager"`` (bert adds ``token_type_ids`` and
``hidden_states``, the encoder's last hidden states). Each model is small (vocab 128, hidden 32, two
layers) with the family's distinctive options switched on, so that one fixture exercises every layer
kind: biases, soft-caps, sliding windows shorter than the sequence, experts, RoPE scaling.

Every parameter is re-drawn from a seeded generator after construction (transformers initialises some
norms to zeros or ones, which would hide a wrong norm formula), and the versions used are printed and
recorded by hand in ``<out>/README.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import transformers
from safetensors.torch import load_file, save_file

SEQUENCE = 20  # longer than every sliding window below (6) and than the rope-scaling thresholds
VOCAB = 128
HIDDEN = 32
LAYERS = 2
WINDOW = 6

# Gemma's RMSNorms multiply by (1 + w): their weights are drawn around 0 instead of 1.
ONE_PLUS_W_FAMILIES = ("gemma", "gemma2", "gemma3")


def _decoder(**extra: Any) -> dict[str, Any]:
    base = dict(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=32,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    base.update(extra)
    return base


def _longrope_factors(rotary_dim: int, scale: float, seed: int) -> list[float]:
    generator = np.random.default_rng(seed)
    return [round(float(v), 4) for v in 1.0 + scale * generator.random(rotary_dim // 2)]


# family -> (config class name, model class name, config kwargs, description of what is switched on)
FAMILIES: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "llama": (
        "LlamaConfig",
        "LlamaForCausalLM",
        _decoder(
            attention_bias=True,
            mlp_bias=True,
            rope_theta=10000.0,
            rope_scaling=dict(
                rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                original_max_position_embeddings=16,
            ),
        ),
        "GQA 4/2, biases on q/k/v/o and the MLP, llama3 rope scaling (all three frequency bands)",
    ),
    "mistral": (
        "MistralConfig",
        "MistralForCausalLM",
        _decoder(head_dim=16, sliding_window=WINDOW, rope_theta=1e6),
        "GQA 4/2, explicit head_dim 16 (heads * head_dim != hidden), sliding window 6 on every layer",
    ),
    "mixtral": (
        "MixtralConfig",
        "MixtralForCausalLM",
        _decoder(intermediate_size=16, num_local_experts=4, num_experts_per_tok=2, sliding_window=None),
        "4 experts, top-2 with renormalised gates, GQA 4/2",
    ),
    "qwen2": (
        "Qwen2Config",
        "Qwen2ForCausalLM",
        _decoder(
            use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1, tie_word_embeddings=True,
            rope_scaling=dict(rope_type="linear", factor=2.0),
        ),
        "q/k/v biases, tied embeddings, layer 0 full and layer 1 sliding (max_window_layers 1), linear rope",
    ),
    "qwen3": (
        "Qwen3Config",
        "Qwen3ForCausalLM",
        _decoder(
            head_dim=16, attention_bias=True,
            rope_scaling=dict(rope_type="yarn", factor=4.0, original_max_position_embeddings=16),
        ),
        "per-head q/k RMSNorm, head_dim 16, attention biases, yarn rope",
    ),
    "gemma": (
        "GemmaConfig",
        "GemmaForCausalLM",
        _decoder(
            head_dim=16, num_key_value_heads=1, hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True,
            max_position_embeddings=16, rope_scaling=dict(rope_type="dynamic", factor=2.0),
        ),
        "1 + w RMSNorms, sqrt(hidden) embedding scale, tanh GeGLU, MQA, tied, dynamic rope past 16 positions",
    ),
    "gemma2": (
        "Gemma2Config",
        "Gemma2ForCausalLM",
        _decoder(
            head_dim=16, hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True,
            query_pre_attn_scalar=24, sliding_window=WINDOW, attn_logit_softcapping=2.0,
            final_logit_softcapping=10.0, layer_types=["sliding_attention", "full_attention"],
        ),
        "sandwich norms, query_pre_attn_scalar 24, attention softcap 2, final softcap 10, layer 0 sliding",
    ),
    "gemma3": (
        "Gemma3TextConfig",
        "Gemma3ForCausalLM",
        _decoder(
            head_dim=16, hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True,
            query_pre_attn_scalar=24, sliding_window=WINDOW, layer_types=["sliding_attention", "full_attention"],
            rope_parameters={
                "full_attention": dict(rope_type="linear", factor=8.0, rope_theta=1e6),
                "sliding_attention": dict(rope_type="default", rope_theta=10000.0),
            },
        ),
        "sandwich norms, 1 + w q/k norms, local rope base 1e4 on the sliding layer, linear-scaled 1e6 on the full",
    ),
    "phi3": (
        "Phi3Config",
        "Phi3ForCausalLM",
        _decoder(
            num_key_value_heads=2, sliding_window=WINDOW, partial_rotary_factor=0.5,
            max_position_embeddings=64, original_max_position_embeddings=16,
            rope_scaling=dict(
                rope_type="longrope",
                short_factor=_longrope_factors(4, 0.5, 1),
                long_factor=_longrope_factors(4, 3.0, 2),
            ),
        ),
        "fused qkv and gate_up, partial rotary 0.5, longrope (long factors: T > 16), sliding window 6",
    ),
    "olmo2": (
        "Olmo2Config",
        "Olmo2ForCausalLM",
        _decoder(attention_bias=True),
        "post-norm layers, full-width q/k RMSNorm, attention biases",
    ),
    "gpt2": (
        "GPT2Config",
        "GPT2LMHeadModel",
        dict(vocab_size=VOCAB, n_positions=64, n_embd=HIDDEN, n_layer=LAYERS, n_head=4, n_inner=None),
        "Conv1D projections, learned positions, tied head, gelu_new",
    ),
    "gpt_neox": (
        "GPTNeoXConfig",
        "GPTNeoXForCausalLM",
        dict(
            vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=64, rotary_pct=0.5, rotary_emb_base=10000,
            use_parallel_residual=True, attention_bias=True, tie_word_embeddings=False,
        ),
        "parallel residual, partial rotary 0.5, attention biases, untied embed_out",
    ),
    "bert": (
        "BertConfig",
        "BertForMaskedLM",
        dict(
            vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=64, type_vocab_size=2,
        ),
        "post-LayerNorm encoder, token types 0 then 1, MLM head tied to the word embeddings",
    ),
}

SEEDS = {name: 1000 + index for index, name in enumerate(FAMILIES)}


def randomise(model: torch.nn.Module, family: str, seed: int) -> None:
    """Re-draw every parameter so that no weight is a constant that could hide a wrong formula."""
    generator = torch.Generator().manual_seed(seed)

    def normal(shape: torch.Size, std: float, mean: float = 0.0) -> torch.Tensor:
        return torch.randn(shape, generator=generator, dtype=torch.float32) * std + mean

    one_plus_w = family in ONE_PLUS_W_FAMILIES
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            lowered = name.lower()
            if parameter.ndim == 1:
                is_norm = "norm" in lowered or ".ln_" in lowered or lowered.startswith("ln_")
                if is_norm and lowered.endswith("weight"):
                    value = normal(parameter.shape, 0.1, 0.0 if one_plus_w and family != "bert" else 1.0)
                else:
                    value = normal(parameter.shape, 0.1)
            elif "embed" in lowered or lowered.endswith(("wte.weight", "wpe.weight")):
                value = normal(parameter.shape, 1.0)
            elif family == "gpt2" and ("c_attn" in lowered or "c_fc" in lowered or "c_proj" in lowered):
                value = normal(parameter.shape, parameter.shape[0] ** -0.5)  # Conv1D: (in, out)
            elif ".gate." in lowered or lowered.endswith("gate.weight"):
                value = normal(parameter.shape, 1.0)  # routers: spread the expert choice
            else:
                value = normal(parameter.shape, parameter.shape[-1] ** -0.5)
            parameter.copy_(value)


def build(family: str) -> tuple[torch.nn.Module, Any]:
    config_name, model_name, kwargs, _ = FAMILIES[family]
    config = getattr(transformers, config_name)(**kwargs)
    config._attn_implementation = "eager"
    torch.manual_seed(SEEDS[family])
    model = getattr(transformers, model_name)(config)
    model.set_attn_implementation("eager")
    if hasattr(model, "set_experts_implementation") and getattr(config, "num_local_experts", 0):
        model.set_experts_implementation("eager")
    model = model.to(torch.float32).eval()
    randomise(model, family, SEEDS[family])
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    return model, config


def inputs(family: str) -> dict[str, np.ndarray]:
    generator = np.random.default_rng(SEEDS[family])
    ids = generator.integers(0, VOCAB, size=(1, SEQUENCE)).astype(np.int32)
    result = {"input_ids": ids}
    if family == "bert":
        types = np.zeros((1, SEQUENCE), np.int32)
        types[:, SEQUENCE // 2 :] = 1
        result["token_type_ids"] = types
    return result


def run(model: torch.nn.Module, family: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    feed = {name: torch.from_numpy(value.astype(np.int64)) for name, value in arrays.items()}
    with torch.no_grad():
        output = model(**feed, output_hidden_states=(family == "bert"))
    result = {"logits": output.logits.to(torch.float32).numpy()}
    if family == "bert":
        result["hidden_states"] = output.hidden_states[-1].to(torch.float32).numpy()
    return result


def write(family: str, out: Path) -> dict[str, Any]:
    model, _ = build(family)
    folder = out / family
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.iterdir():
        stale.unlink()
    model.save_pretrained(folder, safe_serialization=True)
    for extra in folder.iterdir():
        if extra.name not in ("config.json", "model.safetensors"):
            extra.unlink()  # generation_config.json and the like: not needed by the tests
    arrays = inputs(family)
    outputs = run(model, family, arrays)
    np.savez_compressed(folder / "reference.npz", **arrays, **outputs)

    # The saved checkpoint must reproduce the logits when loaded back by transformers.
    reloaded = type(model).from_pretrained(folder, attn_implementation="eager", dtype=torch.float32).eval()
    if hasattr(reloaded, "set_experts_implementation") and getattr(reloaded.config, "num_local_experts", 0):
        reloaded.set_experts_implementation("eager")
    again = run(reloaded, family, arrays)
    reload_diff = float(np.max(np.abs(again["logits"] - outputs["logits"])))
    names = sorted(load_file(folder / "model.safetensors"))
    return {
        "family": family,
        "class": type(model).__name__,
        "options": FAMILIES[family][3],
        "logits_shape": list(outputs["logits"].shape),
        "logits_abs_max": float(np.max(np.abs(outputs["logits"]))),
        "reload_max_abs_diff": reload_diff,
        "tensors": len(names),
        "bytes": sum(path.stat().st_size for path in folder.iterdir()),
    }


def versions() -> str:
    import safetensors

    return (
        f"python {platform.python_version()}\n"
        f"torch {torch.__version__}\n"
        f"transformers {transformers.__version__}\n"
        f"safetensors {safetensors.__version__}\n"
        f"numpy {np.__version__}\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "data" / "reference")
    parser.add_argument("families", nargs="*", default=list(FAMILIES))
    args = parser.parse_args(argv)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    for family in args.families:
        summary = write(family, args.out)
        print(json.dumps(summary), flush=True)
        if summary["reload_max_abs_diff"] != 0.0:
            print(f"{family}: reloaded checkpoint differs by {summary['reload_max_abs_diff']}", file=sys.stderr)
            return 1
    print(versions(), end="")  # record these in <out>/README.md
    return 0


if __name__ == "__main__":
    sys.exit(main())
