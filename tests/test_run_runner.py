"""``run_release``: verdicts, probes and what the result reports, on small releases built here.

The "trained" model is ``tests/run_helpers/releases.bigram_llama``: a standard Llama checkpoint whose
weights are constructed to be a character-bigram model of the probe text, so its perplexity is known
exactly in advance (computed here from the bigram table, not from the run).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from openaudit.errors import UsageError
from openaudit.evidence import ArchitectureEvidence
from openaudit.run import probes
from openaudit.run.runner import RunOptions, RunResult, parse_bytes, run_release
from tests.run_helpers import releases as R
from tests.run_helpers.releases import open_release

REFERENCE = Path(__file__).parent / "data" / "reference"
TEXT = probes.read_probe_text()
TOKENS = 256  # RunOptions.max_probe_tokens; the bigram model's context is 512


@pytest.fixture(scope="module")
def bigram(tmp_path_factory) -> Path:
    return R.write_bigram_llama(tmp_path_factory.mktemp("bigram"), TEXT)


def run(path: Path, **options) -> RunResult:
    release, weights, architecture = open_release(path)
    return run_release(release, weights, architecture, RunOptions(**options))


# --- parse_bytes and the result's JSON --------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("2GiB", 2 << 30), ("512MiB", 512 << 20), ("1.5GB", 1_500_000_000), ("4096", 4096), ("10k", 10_000),
    ("3 TiB", 3 << 40), ("7b", 7), ("1kib", 1024),
])
def test_parse_bytes(text: str, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "GiB", "-1GiB", "2 gigabytes", "0", "1e9", "0.1"])
def test_parse_bytes_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_bytes(text)


def test_to_dict_is_json_without_non_finite_numbers() -> None:
    result = RunResult(status="fail", failures=("x",), perplexity=float("nan"), reference_max_abs_diff=float("inf"))
    data = result.to_dict()
    assert data["perplexity"] is None and data["reference_max_abs_diff"] is None
    assert "findings" not in data
    assert json.loads(json.dumps(data, allow_nan=False)) == data


# --- a trained model passes, the same weights scrambled fail ----------------------------------------------


def test_trained_model_passes_with_its_exact_perplexity(bigram: Path) -> None:
    result = run(bigram)
    assert result.status == "pass", result.failures
    assert result.failures == () and result.findings == ()
    assert (result.family, result.devices, result.processes, result.mesh) == ("llama", 1, 1, {"model": 1})
    assert result.logits_finite is True and result.deterministic is True
    assert result.tokens == TOKENS
    assert result.perplexity == pytest.approx(R.expected_perplexity(TEXT, TOKENS), rel=1e-5)
    assert (result.uniform_perplexity, result.perplexity_threshold) == (128, 12.8)
    assert result.tokenizer.startswith("tokenizer.json (tokenizers ")
    assert result.reference_max_abs_diff is None and result.encoder_check is None
    loaded = result.loaded
    assert (loaded.tensors, loaded.mode, loaded.formats, loaded.dtype) == (3 + 8 * 9, "in-memory", ("safetensors",), "float32")
    # embedding, lm_head, final norm; per layer two norms, q and o (128x128), k and v (64x128), three MLP (64x128)
    assert loaded.bytes == 4 * (2 * 128 * 128 + 128 + 8 * (2 * 128 + 2 * 128 * 128 + 2 * 64 * 128 + 3 * 64 * 128))
    assert loaded.peak_resident_weight_bytes == loaded.bytes
    assert result.peak_bytes > loaded.bytes and result.seconds > 0


def test_scrambled_weights_fail_as_near_uniform(bigram: Path, tmp_path: Path) -> None:
    tensors = R.bigram_llama_tensors(TEXT)
    order = np.random.default_rng(1).permutation(R.VOCAB)
    tensors["model.embed_tokens.weight"] = tensors["model.embed_tokens.weight"][order]
    result = run(R.write_bigram_llama(tmp_path / "scrambled", TEXT, tensors=tensors))
    # Token t now looks like token order[t]: the bigram row of order[t] predicts what follows t.
    table, ids = R.bigram_log_probs(TEXT), R.char_ids(TEXT)[:TOKENS]
    expected = math.exp(-np.mean([table[order[a], b] for a, b in zip(ids[:-1], ids[1:])]))
    assert result.status == "fail"
    assert result.perplexity == pytest.approx(expected, rel=1e-5)
    assert 64 < result.perplexity  # near the uniform 128, nowhere near the threshold 12.8
    assert [f.id for f in result.findings] == ["run-perplexity-uniform"]
    assert result.failures[0].startswith(f"perplexity {result.perplexity:,.1f} on the probe text is not far below the uniform 128")
    assert result.logits_finite is True and result.deterministic is True


def test_nan_weight_fails_as_not_finite(tmp_path: Path) -> None:
    tensors = R.bigram_llama_tensors(TEXT)
    tensors["model.layers.3.mlp.up_proj.weight"][5, 7] = np.nan
    result = run(R.write_bigram_llama(tmp_path / "nan", TEXT, tensors=tensors))
    assert result.status == "fail"
    assert result.logits_finite is False
    assert [f.id for f in result.findings] == ["run-logits-not-finite"]
    assert result.failures[0] == f"{2 * TOKENS * 128:,} output value(s) are NaN or infinite (runs: probe, repeat)"
    assert result.to_dict()["perplexity"] is None


# --- refusals, missing pieces ------------------------------------------------------------------------------


def test_unknown_family_fails_without_touching_jax(bigram: Path) -> None:
    release, weights, _ = open_release(bigram)
    unknown = ArchitectureEvidence(None, "unknown architecture: model_type 'x'", None, None, None)
    result = run_release(release, weights, unknown)
    assert (result.status, result.devices, result.loaded) == ("fail", 0, None)
    assert result.failures == ("cannot run: the architecture is unknown (unknown architecture: model_type 'x')",)
    assert [f.id for f in result.findings] == ["run-not-runnable"]


def test_architecture_mismatch_is_refused(tmp_path: Path) -> None:
    tensors = R.bigram_llama_tensors(TEXT)
    del tensors["model.layers.2.mlp.up_proj.weight"]
    result = run(R.write_bigram_llama(tmp_path / "missing", TEXT, tensors=tensors))
    assert result.status == "fail" and result.devices == 0
    assert result.failures[0].startswith("cannot run: the weights do not match the llama architecture, ")
    assert "model.layers.2.mlp.up_proj.weight" in result.failures[0]


def test_without_a_tokenizer_only_finiteness_and_determinism_are_checked(tmp_path: Path) -> None:
    result = run(R.write_bigram_llama(tmp_path / "bare", TEXT, tokenizer=False))
    assert result.status == "fail"
    assert [f.id for f in result.findings] == ["run-no-tokenizer"]
    assert (result.logits_finite, result.deterministic, result.perplexity, result.tokenizer) == (True, True, None, None)
    assert result.tokens == 32


def test_broken_tokenizer_json_is_reported(tmp_path: Path) -> None:
    folder = R.write_bigram_llama(tmp_path / "broken", TEXT)
    (folder / "tokenizer.json").write_text('{"model": {"type": "nonsense"}}')
    result = run(folder)
    assert result.status == "fail"
    assert result.failures[0].startswith("no usable tokenizer, so the probe text was not scored: tokenizer.json cannot be loaded")


def test_unknown_dtype_and_bad_reference_are_usage_errors(bigram: Path, tmp_path: Path) -> None:
    release, weights, architecture = open_release(bigram)
    with pytest.raises(UsageError, match="--dtype"):
        run_release(release, weights, architecture, RunOptions(dtype="float64"))
    np.savez(tmp_path / "bad.npz", input_ids=np.zeros((2, 3), np.int32), logits=np.zeros((2, 3, 4), np.float32))
    with pytest.raises(UsageError, match=r"input_ids must be integers of shape \(1, T\)"):
        run_release(release, weights, architecture, RunOptions(reference=str(tmp_path / "bad.npz")))
    with pytest.raises(UsageError, match="cannot read the reference"):
        run_release(release, weights, architecture, RunOptions(reference=str(tmp_path / "absent.npz")))


# --- --reference ------------------------------------------------------------------------------------------------


def test_reference_logits_are_compared() -> None:
    result = run(REFERENCE / "llama", reference=str(REFERENCE / "llama" / "reference.npz"))
    # No tokenizer in the fixture: the reference is the check, and it passes.
    assert result.status == "pass", result.failures
    assert result.reference_max_abs_diff is not None and result.reference_max_abs_diff < 1e-4
    expected = np.load(REFERENCE / "llama" / "reference.npz")["logits"]
    assert result.reference_tolerance == pytest.approx(1e-3 * float(np.abs(expected).max()))
    assert result.tokens == 20 and result.perplexity is None


def test_reference_mismatch_fails(tmp_path: Path) -> None:
    with np.load(REFERENCE / "llama" / "reference.npz") as archive:
        ids, logits = archive["input_ids"], archive["logits"]
    np.savez(tmp_path / "shifted.npz", input_ids=ids, logits=logits + np.float32(0.5))
    result = run(REFERENCE / "llama", reference=str(tmp_path / "shifted.npz"))
    assert result.status == "fail"
    assert result.reference_max_abs_diff == pytest.approx(0.5, abs=1e-4)
    assert [f.id for f in result.findings] == ["run-reference-mismatch"]
    assert result.failures[0].startswith("the logits differ from the reference ")


def test_reference_with_the_probe(bigram: Path, tmp_path: Path) -> None:
    ids = np.asarray([R.char_ids("The river runs.")], dtype=np.int32)
    table = R.bigram_log_probs(TEXT)
    np.savez(tmp_path / "ref.npz", input_ids=ids, logits=table[ids[0]][None].astype(np.float32))
    result = run(bigram, reference=str(tmp_path / "ref.npz"))
    assert result.status == "pass", result.failures
    assert result.reference_max_abs_diff < 1e-4
    assert result.perplexity == pytest.approx(R.expected_perplexity(TEXT, TOKENS), rel=1e-5)


# --- probes on their own -----------------------------------------------------------------------------------------


def test_probe_text_is_read_bounded_and_never_from_a_fifo(tmp_path: Path) -> None:
    import os
    import threading

    fifo = tmp_path / "probe.fifo"
    os.mkfifo(fifo)
    outcome: list[str] = []

    def read() -> None:  # reading a FIFO with no writer would block for ever
        try:
            probes.read_probe_text(fifo)
        except UsageError as exc:
            outcome.append(str(exc))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert outcome == [f"cannot read the probe text {fifo}: not a regular file"]

    large = tmp_path / "large.txt"
    large.write_bytes(b"a" * (probes.MAX_PROBE_TEXT_BYTES + 1))
    with pytest.raises(UsageError) as refused:
        probes.read_probe_text(large)
    assert str(refused.value) == f"the probe text {large} is larger than 1,048,576 bytes"
    linked = tmp_path / "linked.txt"
    (tmp_path / "short.txt").write_text("Hello there.")
    linked.symlink_to("short.txt")  # the user named it: a link is followed
    assert probes.read_probe_text(linked) == "Hello there."
    with pytest.raises(UsageError) as missing:
        probes.read_probe_text(tmp_path / "nope.txt")
    assert str(missing.value) == f"cannot read the probe text {tmp_path / 'nope.txt'}: cannot open: No such file or directory"


def test_perplexity_of_uniform_logits_is_the_vocabulary_size() -> None:
    assert probes.perplexity(np.zeros((7, 50), np.float32), [1, 2, 3, 4, 5, 6, 7]) == pytest.approx(50.0)


def test_perplexity_uses_each_row_for_the_next_token() -> None:
    logits = np.full((3, 4), -30.0, np.float32)
    logits[0, 2] = logits[1, 3] = 0.0  # row 0 predicts token 2, row 1 predicts token 3
    assert probes.mean_nll(logits, [0, 2, 3]) == pytest.approx(3 * math.exp(-30.0), abs=1e-12)
    assert probes.mean_nll(logits, [0, 3, 2]) == pytest.approx(30.0, abs=1e-6)


def test_masked_positions_and_accuracy() -> None:
    ids = list(range(100, 140))
    positions = probes.mask_positions(ids, {100, 139}, seed=0)
    assert len(positions) == 6 and 0 not in positions and 39 not in positions
    assert list(positions) == sorted(positions)
    logits = np.zeros((40, 200), np.float32)
    logits[np.arange(40), ids] = 1.0
    logits[positions[0], 0] = 2.0  # one wrong
    assert probes.masked_accuracy(logits, ids, positions) == pytest.approx(5 / 6)


def test_run_options_are_frozen() -> None:
    options = RunOptions()
    assert (options.dtype, options.memory_budget, options.max_probe_tokens, options.seed) == ("float32", None, 256, 0)
    with pytest.raises(AttributeError):
        options.dtype = "bfloat16"  # type: ignore[misc]
    assert replace(options, memory_budget=5).memory_budget == 5


# --- encoders -------------------------------------------------------------------------------------------------------


def _bert_with_vocabulary(tmp_path: Path) -> Path:
    """The random tiny BERT fixture with a 128-entry WordPiece vocabulary of the probe text's words."""
    import shutil
    from collections import Counter

    folder = tmp_path / "bert"
    shutil.copytree(REFERENCE / "bert", folder)
    words = Counter(word.strip(".,").lower() for word in TEXT.split())
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [w for w, _ in words.most_common(123)]
    (folder / "vocab.txt").write_text("\n".join(vocabulary) + "\n")
    return folder


def test_encoder_gets_a_masked_token_check(tmp_path: Path) -> None:
    from openaudit.run.tokenize import find_tokenizer

    folder = _bert_with_vocabulary(tmp_path)
    result = run(folder, reference=str(folder / "reference.npz"))
    # Random weights restore almost no masked token: the check fails; the reference still agrees.
    assert result.status == "fail"
    assert [f.id for f in result.findings] == ["run-encoder-check-failed"]
    release, weights, _ = open_release(folder)
    ids = find_tokenizer(release, weights).tokenizer.encode(TEXT)[:64]  # the fixture's 64 positions
    ordinary = sum(1 for i in ids if i > 4)
    check = result.encoder_check
    assert check["kind"] == "masked-token accuracy" and check["masked"] == round(0.15 * ordinary)
    assert check["accuracy"] < 0.25 and check["passed"] is False and check["threshold"] == 0.25
    assert result.perplexity is None and result.uniform_perplexity is None
    assert result.reference_max_abs_diff < 1e-4  # token_type_ids from the reference reach the embedding
    assert result.tokenizer == "vocab.txt (WordPiece, lower-cased)"


def test_encoder_without_a_mask_token_or_reference_fails(tmp_path: Path) -> None:
    result = run(REFERENCE / "bert")
    assert result.status == "fail"
    assert [f.id for f in result.findings] == ["run-no-tokenizer", "run-encoder-check-failed"]


def test_integer_weights_without_scales_are_refused(tmp_path: Path) -> None:
    tensors = R.bigram_llama_tensors(TEXT)
    tensors["model.layers.0.mlp.up_proj.weight"] = np.ones((64, 128), np.int8)
    release, weights, architecture = open_release(R.write_bigram_llama(tmp_path / "int8", TEXT, tensors=tensors))
    assert architecture.status == "mismatch"  # the architecture check already refuses it ...
    assert run_release(release, weights, architecture).failures[0].startswith("cannot run: the weights do not match")
    # ... and loading refuses it too, whatever the check said.
    result = run_release(release, weights, replace(architecture, check=None))
    assert result.status == "fail"
    assert [f.id for f in result.findings] == ["tensor-unsupported-dtype"]
    assert result.failures == ("cannot load the weights: model.layers.0.mlp.up_proj.weight is stored as I8 without "
                               "quantization scales openaudit can apply",)


def test_bare_decoder_without_its_head_cannot_show_its_perplexity(tmp_path: Path) -> None:
    tensors = R.bigram_llama_tensors(TEXT)
    del tensors["lm_head.weight"]
    release, weights, architecture = open_release(
        R.write_bigram_llama(tmp_path / "bare", TEXT, tensors=tensors, architectures=["LlamaModel"]))
    assert architecture.status == "match"
    result = run_release(release, weights, architecture)
    assert result.status == "fail"
    assert [f.id for f in result.findings] == ["run-no-output-head"]
    assert result.perplexity is None and result.logits_finite is True
    assert result.failures == ("the checkpoint has no output head (neither its own nor tied embeddings): its output "
                               "is hidden states, so perplexity cannot be measured",)
