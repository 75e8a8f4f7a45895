"""`openaudit audit --run` through the CLI on the bundled trained example: pass, streamed, gated, refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from openaudit.cli import main
from openaudit.report.schema import validation_errors

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tiny-llama"


def run_json(capsys, *args: str) -> tuple[int, dict]:
    code = main(["audit", *args, "--no-hash", "--format", "json"])
    document = json.loads(capsys.readouterr().out)
    assert validation_errors(document) == []
    return code, document


def test_example_passes_in_memory_and_streamed_with_the_same_perplexity(capsys) -> None:
    code, in_memory = run_json(capsys, str(EXAMPLE), "--run")
    assert code == 0
    run = in_memory["run"]
    assert (run["status"], run["logits_finite"], run["deterministic"], run["loaded"]["mode"]) == ("pass", True, True, "in-memory")
    assert run["perplexity"] < run["uniform_perplexity"] / 10
    code, streamed = run_json(capsys, str(EXAMPLE), "--run", "--memory-budget", "400KB", "--fail-on", "run-fail")
    assert code == 0 and streamed["run"]["loaded"]["mode"] == "streamed"
    assert abs(streamed["run"]["perplexity"] - run["perplexity"]) < 1e-4


def test_shuffled_weights_fail_the_probe_and_the_gate(tmp_path: Path, capsys) -> None:
    release = tmp_path / "shuffled"
    shutil.copytree(EXAMPLE, release)
    (release / "SHA256SUMS").unlink()
    tensors = load_file(str(release / "model.safetensors"))
    rng = np.random.default_rng(0)
    shuffled = {name: value[rng.permutation(value.shape[0])] if value.ndim == 2 else value for name, value in tensors.items()}
    save_file(shuffled, str(release / "model.safetensors"))
    code, document = run_json(capsys, str(release), "--run", "--fail-on", "run-fail")
    assert code == 1
    assert document["run"]["status"] == "fail"
    assert document["run"]["perplexity"] > document["run"]["uniform_perplexity"] / 10
    assert any("perplexity" in reason for reason in document["run"]["failures"])


def test_run_flags_need_run_and_budgets_must_parse(capsys) -> None:
    assert main(["audit", str(EXAMPLE), "--memory-budget", "2GiB"]) == 2
    assert main(["audit", str(EXAMPLE), "--run", "--memory-budget", "lots"]) == 2
    assert "--memory-budget" in capsys.readouterr().err


def test_a_format_from_the_environment_is_checked(monkeypatch, capsys) -> None:
    monkeypatch.setenv("OPENAUDIT_FORMAT", "xml")
    assert main(["audit", str(EXAMPLE), "--no-hash"]) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "openaudit: OPENAUDIT_FORMAT='xml' is not a report format; use one of table, json\n")
    monkeypatch.setenv("OPENAUDIT_FORMAT", "json")
    assert main(["audit", str(EXAMPLE), "--no-hash"]) == 0
    assert json.loads(capsys.readouterr().out)["tool"]["name"] == "openaudit"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--num-processes", "2"], "--num-processes and --process-id need --coordinator HOST:PORT"),
        (["--process-id", "1"], "--num-processes and --process-id need --coordinator HOST:PORT"),
        (["--coordinator", "h:1"], "--coordinator needs --num-processes and --process-id"),
        (["--coordinator", "h:1", "--num-processes", "2"], "--coordinator needs --num-processes and --process-id"),
        (["--coordinator", "h:1", "--process-id", "0"], "--coordinator needs --num-processes and --process-id"),
        (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"], "--process-id 2 is not in 0..1"),
        (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "-1"], "--process-id -1 is not in 0..1"),
        (["--coordinator", "h:1", "--num-processes", "0", "--process-id", "0"], "--num-processes must be at least 1, not 0"),
        (["--coordinator", "nohost", "--num-processes", "2", "--process-id", "0"],
         "--coordinator must be HOST:PORT, not 'nohost'"),
    ],
)
def test_incomplete_or_inconsistent_multi_host_flags_are_bad_usage(flags: list[str], message: str, capsys) -> None:
    assert main(["audit", str(EXAMPLE), "--no-hash", "--run", *flags]) == 2
    assert capsys.readouterr().err == f"openaudit: {message}\n"


def test_header_only_audit_has_no_run_section(capsys) -> None:
    code, document = run_json(capsys, str(EXAMPLE))
    assert (code, document["run"]) == (0, None)


def test_a_hostile_tokenizer_is_a_failed_run_not_a_crash(tmp_path: Path, capsys) -> None:
    """A tokenizer.json whose pre-tokenizer regex backtracks without end is contained in its child process."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    release = tmp_path / "hostile-tokenizer"
    shutil.copytree(EXAMPLE, release)
    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(pattern=Regex(r"(?:\w+\s?)+\d"), behavior="isolated")
    (release / "tokenizer.json").write_text(tokenizer.to_str())
    code, document = run_json(capsys, str(release), "--run")
    assert code == 0
    assert document["run"]["status"] == "fail"
    assert "run-tokenizer-unreadable" in {f["id"] for f in document["findings"]}
    assert "Traceback" not in capsys.readouterr().err
