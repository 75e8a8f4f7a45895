"""Loading for the run: sharding rules, every stored dtype, Grok-1 int8, GGUF, streaming, tokenizers."""

from __future__ import annotations

import io
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from openaudit.run import model as contract
from openaudit.run import probes, sharding
from openaudit.run.dequant import dequantize_int8
from openaudit.run.runner import RunOptions, execute, plan_run, run_release
from openaudit.run.tokenize import derive_merges, find_tokenizer, tokenizer_from_gguf
from openaudit.limits import Deadline
from tests.run_helpers import releases as R
from tests.run_helpers.releases import open_release

TEXT = probes.read_probe_text()
IDS = np.asarray([R.char_ids(TEXT[:96])], dtype=np.int32)


def outputs(path: Path, ids: np.ndarray = IDS, **options) -> tuple[np.ndarray, object]:
    release, weights, architecture = open_release(path)
    opts = RunOptions(**options)
    model, plan = plan_run(weights, architecture, opts)
    run = execute(release, architecture, model, plan, [ids], opts)
    return run.outputs[0], run


@pytest.fixture(scope="module")
def noisy(tmp_path_factory) -> Path:
    """The bigram Llama with small random layers: every layer changes the logits."""
    return R.write_bigram_llama(tmp_path_factory.mktemp("noisy"), TEXT, layer_scale=0.002)


# --- sharding rules -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, shape, spec", [
    ("layers.0.self_attn.q_proj.weight", (32, 64), P("model")),
    ("layers.0.self_attn.k_proj.weight", (16, 64), P("model")),
    ("layers.0.self_attn.o_proj.weight", (64, 32), P(None, "model")),
    ("layers.0.mlp.gate_proj.weight", (96, 64), P("model")),
    ("layers.0.mlp.down_proj.weight", (64, 96), P(None, "model")),
    ("layers.1.block_sparse_moe.experts.3.w2.weight", (64, 96), P(None, "model")),
    ("layers.1.block_sparse_moe.gate.weight", (8, 64), P()),
    ("layers.0.input_layernorm.weight", (64,), P()),
    ("layers.0.self_attn.q_proj.bias", (32,), P()),
    ("embed_tokens.weight", (128, 64), P("model")),
    ("embed_tokens.weight", (100, 64), P(None, "model")),  # 100 rows do not divide: the hidden dimension
    ("lm_head.weight", (100, 60), P()),  # neither divides: replicated
    ("layers.0.self_attn.q_proj.weight", (36, 64), P()),  # heads do not divide: replicated, not split elsewhere
    ("h.0.attn.c_attn.weight", (64, 192), P(None, "model")),  # GPT-2 Conv1D (in, out)
    ("h.0.mlp.c_proj.weight", (256, 64), P("model")),
    ("layers.0.attention.query_key_value.weight", (192, 64), P("model")),
    ("encoder.layer.0.attention.output.dense.weight", (64, 64), P(None, "model")),
    ("encoder.layer.0.output.dense.weight", (64, 256), P(None, "model")),
    ("encoder.layer.0.intermediate.dense.weight", (256, 64), P("model")),
    ("transformer/decoder_layer_0/moe/linear_1/w", (8, 48, 32), P("model")),  # experts
    ("transformer/decoder_layer_0/moe/linear_1/w:scales", (8, 8, 32), P("model")),
    ("transformer/decoder_layer_0/multi_head_attention/query/w:scales", (1, 32), P(None, "model")),
    ("transformer/decoder_layer_0/multi_head_attention/linear/w:scales", (8, 32), P("model")),
    ("transformer/decoder_layer_0/router/w", (32, 8), P()),
    ("something.new", (24, 40), P(None, "model")),  # no rule: the last axis
])
def test_partition_specs_on_eight_devices(name: str, shape: tuple, spec: P) -> None:
    assert sharding.partition_spec(name, shape, 8) == spec


def test_one_device_replicates_everything() -> None:
    assert sharding.partition_spec("layers.0.self_attn.q_proj.weight", (32, 64), 1) == P()


# --- dtypes -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stored", [ml_dtypes.bfloat16, np.float16, ml_dtypes.float8_e4m3fn, np.float64])
def test_every_stored_float_dtype_runs_as_its_exact_float32_values(tmp_path: Path, stored) -> None:
    tensors = R.bigram_llama_tensors(TEXT, layer_scale=0.002)
    # Layer weights in the stored dtype; the float32 twin holds exactly the values that dtype can represent.
    narrow = {k: (v.astype(stored) if ".layers." in k else v) for k, v in tensors.items()}
    twin = {k: v.astype(np.float32) for k, v in narrow.items()}
    low = R.write_bigram_llama(tmp_path / "low", TEXT, tensors=narrow, tokenizer=False)
    high = R.write_bigram_llama(tmp_path / "high", TEXT, tensors=twin, tokenizer=False)
    (low_logits, run), (high_logits, _) = outputs(low), outputs(high)
    assert {entry.dtype for entry in run.plan.entries} == {np.dtype(np.float32)}
    np.testing.assert_allclose(low_logits, high_logits, rtol=0, atol=1e-6)


def test_bfloat16_compute(noisy: Path) -> None:
    high, _ = outputs(noisy)
    low, run = outputs(noisy, dtype="bfloat16")
    assert {entry.dtype for entry in run.plan.entries} == {np.dtype(ml_dtypes.bfloat16)}
    assert run.loaded_bytes == sum(e.nbytes for e in run.plan.entries)
    assert np.abs(low - high).max() <= probes.reference_limit("bfloat16", float(np.abs(high).max()))
    assert np.abs(low - high).max() > 1e-4  # it really computed in bfloat16


# --- Grok-1 int8 ----------------------------------------------------------------------------------------------


def test_grok_int8_weights_reach_the_devices_as_stored(tmp_path: Path) -> None:
    leaves = R.write_tiny_grok(tmp_path / "grok")
    ids = np.array([[5, 9, 1, 17, 3, 30, 22, 8, 47, 2]], dtype=np.int32)
    logits, run = outputs(tmp_path / "grok", ids)
    dtypes = {entry.name: entry.dtype for entry in run.plan.entries}
    assert dtypes["transformer/decoder_layer_1/moe/linear_1/w"] == np.int8
    assert dtypes["transformer/decoder_layer_1/moe/linear_1/w:scales"] == ml_dtypes.bfloat16
    assert dtypes["language_model/in_out_embed/embeddings"] == np.float32
    assert "grok-int8" in run.plan.methods and run.plan.formats == ("pickle",)
    assert run.loaded_tensors == 2 + 2 * (12 + 7)

    # Independently: dequantize in numpy (float32) and run the forward pass on plain float weights.
    from openaudit.run.models import grok1

    _, _, architecture = open_release(tmp_path / "grok")
    floats = {}
    for name, value in leaves.items():
        if name.endswith(":scales"):
            continue
        scales = leaves.get(name + ":scales")
        floats[name] = jnp.asarray(dequantize_int8(value, scales) if scales is not None else value)
    forward = jax.jit(lambda params, tokens: contract.forward(grok1, architecture.config, params, tokens))
    expected = forward(floats, jnp.asarray(ids))
    np.testing.assert_allclose(logits, np.asarray(expected), rtol=0, atol=1e-5)


# --- GGUF ------------------------------------------------------------------------------------------------------


def test_gguf_float32_gives_the_safetensors_logits(noisy: Path, tmp_path: Path) -> None:
    (tmp_path / "gguf").mkdir()
    R.write_bigram_llama_gguf(tmp_path / "gguf" / "model.gguf", TEXT, layer_scale=0.002)
    gguf_logits, run = outputs(tmp_path / "gguf")
    safetensors_logits, _ = outputs(noisy)
    assert run.plan.formats == ("gguf",)
    # q/k rows were permuted for llama.cpp's RoPE and un-permuted on loading: exactly the same model.
    np.testing.assert_array_equal(gguf_logits, safetensors_logits)


def test_gguf_q8_0_is_dequantized_and_runs(noisy: Path, tmp_path: Path) -> None:
    (tmp_path / "q8").mkdir()
    R.write_bigram_llama_gguf(tmp_path / "q8" / "model.gguf", TEXT, layer_scale=0.002,
                              quantized=("attn_q.weight", "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"))
    quantized, run = outputs(tmp_path / "q8")
    reference, _ = outputs(noisy)
    assert {e.record.dtype for e in run.plan.entries} == {"F32", "Q8_0"}
    difference = float(np.abs(quantized - reference).max())
    assert 0 < difference < 0.05  # Q8_0 rounding, nothing structural

    release, weights, architecture = open_release(tmp_path / "q8")
    result = run_release(release, weights, architecture)
    assert result.status == "pass", result.failures
    assert result.tokenizer == "model.gguf embedded vocabulary (llama: SentencePiece BPE (merges from scores))"
    assert result.loaded.formats == ("gguf",) and "gguf" in result.loaded.methods
    assert result.perplexity < result.perplexity_threshold


# --- streaming ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefetch", [True, False])
def test_streamed_run_gives_the_in_memory_logits(noisy: Path, prefetch: bool) -> None:
    in_memory, whole = outputs(noisy)
    budget = whole.plan.nbytes // 4
    streamed, run = outputs(noisy, memory_budget=budget, prefetch=prefetch)
    assert (whole.streamed, run.streamed, run.stats.mode, run.stats.layers) == (False, True, "streamed", 8)
    assert np.abs(streamed - in_memory).max() <= 1e-5
    # At most two layers (plus the globals that embed and head need together: none here) at once.
    assert run.stats.peak_resident_weight_bytes <= budget
    assert run.stats.peak_resident_weight_bytes <= 2 * whole.plan.largest_layer_bytes + 2 * 128 * 128 * 4
    assert run.loaded_bytes == whole.loaded_bytes


def test_streamed_run_reports_its_mode_and_budget(noisy: Path) -> None:
    release, weights, architecture = open_release(noisy)
    result = run_release(release, weights, architecture, RunOptions(memory_budget=700_000))
    assert result.status == "pass", result.failures
    assert (result.loaded.mode, result.loaded.memory_budget, result.loaded.notes) == ("streamed", 700_000, ())
    assert result.loaded.peak_resident_weight_bytes <= 700_000
    tight = run_release(release, weights, architecture, RunOptions(memory_budget=100_000))
    assert tight.loaded.notes == ("two layers' weights exceed the memory budget, so the streamed run held more than the budget",)


# --- tokenizers ----------------------------------------------------------------------------------------------------


def _sentencepiece_model() -> bytes:
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TEXT.splitlines()), model_writer=model, vocab_size=300, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, minloglevel=2,
        normalization_rule_name="identity", remove_extra_whitespaces=False,  # as Llama's tokenizer.model
    )
    return model.getvalue()


SAMPLES = TEXT.splitlines()[:6] + ["Hello wörld, zebra quixotic!", "  two  spaces", "ünïcödé ☃ 42"]


def test_gguf_llama_vocabulary_tokenizes_as_sentencepiece() -> None:
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_proto=_sentencepiece_model())
    size = processor.get_piece_size()
    metadata = {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": [processor.id_to_piece(i) for i in range(size)],
        "tokenizer.ggml.scores": [processor.get_score(i) for i in range(size)],
        "tokenizer.ggml.unknown_token_id": 0,
        "tokenizer.ggml.bos_token_id": 1,
    }
    tokenizer = tokenizer_from_gguf(metadata, "m.gguf")
    for sample in SAMPLES:
        assert tokenizer.encode(sample) == [1] + processor.encode(sample), sample


def test_derived_merges_rank_by_the_merged_piece_score() -> None:
    tokens = ["a", "b", "c", "ab", "bc", "abc"]
    scores = [0.0, 0.0, 0.0, -2.0, -1.0, -3.0]
    assert derive_merges(tokens, scores, Deadline()) == [("b", "c"), ("a", "b"), ("a", "bc"), ("ab", "c")]


def test_gguf_gpt2_vocabulary() -> None:
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = sorted(ByteLevel.alphabet())
    tokens = alphabet + ["Ġt", "Ġth", "he", "Ġthe"]
    metadata = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": tokens,
                "tokenizer.ggml.merges": ["Ġ t", "Ġt h", "h e", "Ġth e"]}
    tokenizer = tokenizer_from_gguf(metadata, "m.gguf")
    ids = tokenizer.encode("a the")
    assert [tokens[i] for i in ids] == ["a", "Ġthe"]


def test_release_tokenizers_are_found_in_order(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    release, weights, _ = open_release(tmp_path)
    assert find_tokenizer(release, weights).tokenizer is None
    assert find_tokenizer(release, weights).problems == (
        "the release has no tokenizer (tokenizer.json, GGUF vocabulary, SentencePiece model or vocab files)",)

    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "river", "##s", ","]))
    release, weights, _ = open_release(tmp_path)
    found = find_tokenizer(release, weights).tokenizer
    assert (found.description, found.mask_id) == ("vocab.txt (WordPiece, lower-cased)", 4)
    assert found.encode("The rivers, the") == [2, 5, 6, 7, 8, 5, 3]

    (tmp_path / "tokenizer.model").write_bytes(_sentencepiece_model())
    release, weights, _ = open_release(tmp_path)
    found = find_tokenizer(release, weights).tokenizer
    assert found.description.startswith("tokenizer.model (SentencePiece ") and found.vocab_size == 300
    assert found.encode("A river")[0] == 1  # BOS

    R.write_char_tokenizer(tmp_path / "tokenizer.json")
    release, weights, _ = open_release(tmp_path)
    found = find_tokenizer(release, weights).tokenizer
    assert found.source == "tokenizer.json" and found.encode("Ab") == R.char_ids("Ab")


def test_broken_tokenizers_are_problems_not_errors(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("not json")
    (tmp_path / "tokenizer.model").write_bytes(b"\x00garbage")
    release, weights, _ = open_release(tmp_path)
    search = find_tokenizer(release, weights)
    assert search.tokenizer is None
    # both native parsers run in a child process, which reports the parser's own error
    assert search.problems[0].startswith("tokenizer.json cannot be loaded: Exception:")
    assert search.problems[1].startswith("tokenizer.model cannot be loaded: ")


# --- the two host paths give the same arrays -------------------------------------------------------------------------


@pytest.mark.parametrize("stored", [np.float32, ml_dtypes.bfloat16])
def test_cpu_and_accelerator_host_paths_load_the_same_values(tmp_path: Path, stored) -> None:
    """The CPU path (aligned views aliased, other parts read with pread) and the accelerator path
    (views handed to make_array_from_callback) give identical arrays, sharded or not."""
    from openaudit.run.loader import Loader
    from openaudit.run.sharding import make_mesh

    tensors = {k: v.astype(stored) for k, v in R.bigram_llama_tensors(TEXT, R.Shape(layers=2), 0.01).items()}
    folder = R.write_bigram_llama(tmp_path / "m", TEXT, R.Shape(layers=2), tensors=tensors, tokenizer=False)
    release, weights, architecture = open_release(folder)
    _, plan = plan_run(weights, architecture)
    mesh = make_mesh()
    loaded = [Loader(release, plan, mesh, architecture.config, cpu_path=flag, touch=True).load(plan.entries)
              for flag in (True, False)]
    assert loaded[0].keys() == loaded[1].keys() == {e.name for e in plan.entries}
    for name, array in loaded[0].items():
        assert array.dtype == np.float32
        np.testing.assert_array_equal(np.asarray(array), np.asarray(loaded[1][name]))
        np.testing.assert_array_equal(np.asarray(array), tensors["lm_head.weight" if name == "lm_head.weight" else "model." + name].astype(np.float32))


def test_streamed_tied_embedding_is_kept_only_when_it_fits_the_budget(tmp_path: Path) -> None:
    """Grok-1 ties its embedding (read by embed and head). Beside two layers within the budget it stays
    resident; under a tighter budget it is freed after embed and read again for head. Same logits."""
    R.write_tiny_grok(tmp_path / "grok")
    ids = np.array([[5, 9, 1, 17, 3, 30, 22, 8]], dtype=np.int32)
    whole, run = outputs(tmp_path / "grok", ids)
    embedding = 48 * 32 * 4
    roomy = 2 * run.plan.largest_layer_bytes + embedding + 16  # below the weights (streams), above 2 layers + embedding
    assert roomy < run.plan.nbytes
    kept, kept_run = outputs(tmp_path / "grok", ids, memory_budget=roomy)
    reread, reread_run = outputs(tmp_path / "grok", ids, memory_budget=run.plan.nbytes // 4)
    assert kept_run.streamed and reread_run.streamed
    assert kept_run.loaded_bytes == run.plan.nbytes
    assert reread_run.loaded_bytes == run.plan.nbytes + embedding
    assert np.abs(kept - whole).max() <= 1e-5 and np.abs(reread - whole).max() <= 1e-5
