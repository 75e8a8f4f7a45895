"""``run_release`` on the bundled trained model ``examples/tiny-llama`` (made by examples/make_tiny_llama.py).

Its own tests (tests/test_tiny_llama.py) check the release with an independent numpy forward pass; here
openaudit's run path must give it a pass, and the same weights with the embedding rows shuffled a fail.
Skipped until the release is committed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from openaudit.run.runner import RunOptions, run_release
from tests.builders.safetensors_builder import write_safetensors
from tests.run_helpers.releases import open_release

RELEASE = Path(__file__).resolve().parents[1] / "examples" / "tiny-llama"
pytestmark = pytest.mark.skipif(not (RELEASE / "model.safetensors").is_file(), reason="examples/tiny-llama is not built")
VOCAB = json.loads((RELEASE / "config.json").read_text())["vocab_size"] if (RELEASE / "config.json").is_file() else 0


def _run(path: Path):
    release, weights, architecture = open_release(path)
    return run_release(release, weights, architecture, RunOptions())


def test_the_trained_model_passes() -> None:
    result = _run(RELEASE)
    assert result.status == "pass", result.failures
    assert (result.family, result.uniform_perplexity, result.perplexity_threshold) == ("llama", VOCAB, VOCAB / 10)
    assert 1.0 < result.perplexity < VOCAB / 10
    assert result.tokenizer.startswith("tokenizer.json (tokenizers ")
    assert result.logits_finite is True and result.deterministic is True


def test_shuffled_rows_fail(tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    copy = tmp_path / "shuffled"
    shutil.copytree(RELEASE, copy)
    tensors = load_file(str(copy / "model.safetensors"))
    name = next(n for n in tensors if n.endswith("embed_tokens.weight"))
    tensors[name] = tensors[name][np.random.default_rng(0).permutation(tensors[name].shape[0])]
    (copy / "model.safetensors").unlink()
    write_safetensors(copy / "model.safetensors", tensors)
    for checksums in copy.glob("SHA256SUMS*"):
        checksums.unlink()
    result = _run(copy)
    assert result.status == "fail"
    assert [f.id for f in result.findings] == ["run-perplexity-uniform"]
    assert result.perplexity > VOCAB / 10
