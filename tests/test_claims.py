"""Claims: extraction from every source, verdicts, the parameter-label rules, and architecture checks of
real (tiny, transformers-saved) checkpoints for every family, through the whole audit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from openaudit.audit import AuditOptions, audit
from openaudit.evidence import ArchitectureEvidence, Evidence
from openaudit.families import registry
from openaudit.inspect.claims import Claim, claims_from_config, claims_from_prose, labels_in_name, parse_size_label
from openaudit.inspect.tensor_names import canonical
from openaudit.report.formats import render_json, render_table
from openaudit.report.schema import validation_errors
from openaudit.verify import Counts, verify_claims
from tests.builders.grok_release import README_VARIANTS, write_grok_release

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "data" / "reference"
CONFIGS = ROOT / "tests" / "data" / "configs"
FAMILIES = sorted(p.name for p in REFERENCE.iterdir() if (p / "config.json").exists())


def report(source: Path, **options) -> dict:
    document = json.loads(render_json(audit(str(source), AuditOptions(hash_weights=False, **options))))
    assert validation_errors(document) == []
    return document


# -- architecture through the audit ------------------------------------------------------------------------

def copy_reference(family: str, tmp_path: Path) -> Path:
    release = tmp_path / family
    shutil.copytree(REFERENCE / family, release)
    (release / "reference.npz").unlink()
    return release


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_matches_its_own_weights_and_counts_agree(family: str, tmp_path: Path) -> None:
    document = report(copy_reference(family, tmp_path))
    arch = document["architecture"]
    assert (arch["family"], arch["status"]) == (family, "match"), arch["mismatches"]
    assert arch["expected_parameters"] == arch["observed_parameters"]
    stored = load_file(str(REFERENCE / family / "model.safetensors"))
    tied_copies = {m["tensor"] for m in arch["mismatches"] if m["kind"] == "tied-duplicate"}
    buffers = {b["name"] for b in document["weights"]["buffers"]}
    expected = sum(v.size for k, v in stored.items() if k not in tied_copies and k not in buffers)
    assert arch["expected_parameters"] == expected
    assert document["weights"]["parameters"]["total"] == expected  # tied copies are counted once
    assert {t["name"] for t in document["weights"]["tied_copies"]} == tied_copies


def tamper(release: Path, change) -> dict:
    tensors = load_file(str(release / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(release / "model.safetensors"))
    return report(release)["architecture"]


def layer_tensor(tensors: dict, index: int = 1) -> str:
    return sorted(name for name in tensors if f"layers.{index}." in name or f"h.{index}." in name or f"layer.{index}." in name)[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_a_removed_layer_tensor_is_named(family: str, tmp_path: Path) -> None:
    removed: list[str] = []

    def remove(tensors: dict) -> None:
        removed.append(layer_tensor(tensors))
        del tensors[removed[0]]

    arch = tamper(copy_reference(family, tmp_path), remove)
    assert arch["status"] == "mismatch"
    named = [(m["kind"], canonical(m["tensor"])) for m in arch["mismatches"]]
    assert named == [("missing", canonical(removed[0])), ("count", "parameters")]


@pytest.mark.parametrize("family", FAMILIES)
def test_a_transposed_matrix_is_named(family: str, tmp_path: Path) -> None:
    chosen: list[str] = []

    def transpose(tensors: dict) -> None:
        name = next(n for n in sorted(tensors) if tensors[n].ndim == 2 and tensors[n].shape[0] != tensors[n].shape[1]
                    and (".layers." in n or ".h." in n or "layer." in n or "layers." in n))
        chosen.append(name)
        tensors[name] = np.ascontiguousarray(tensors[name].T)

    arch = tamper(copy_reference(family, tmp_path), transpose)
    assert arch["status"] == "mismatch"
    shape_mismatches = [m for m in arch["mismatches"] if m["kind"] == "shape"]
    assert [m["tensor"] for m in shape_mismatches] == chosen


@pytest.mark.parametrize("family", FAMILIES)
def test_a_changed_vocabulary_in_the_config_names_the_embedding(family: str, tmp_path: Path) -> None:
    release = copy_reference(family, tmp_path)
    config = json.loads((release / "config.json").read_text())
    config["vocab_size"] = config["vocab_size"] + 3
    (release / "config.json").write_text(json.dumps(config))
    document = report(release)
    arch = document["architecture"]
    assert arch["status"] == "mismatch"
    named = {m["tensor"] for m in arch["mismatches"] if m["kind"] == "shape"}
    assert any("embed" in name or "wte" in name or "word_embeddings" in name for name in named), named
    vocab = [c for c in document["claims"] if c["subject"] == "vocab_size"]
    assert vocab and vocab[0]["status"] == "unverifiable"
    assert "architecture-mismatch" in {f["id"] for f in document["findings"]}


# -- published counts from the public configs ----------------------------------------------------------------

@pytest.mark.parametrize(
    ("config", "total", "non_embedding"),
    [
        ("meta-llama--Llama-2-7b-hf.json", 6_738_415_616, None),
        ("mistralai--Mistral-7B-v0.1.json", 7_241_732_096, None),
        ("mistralai--Mixtral-8x7B-v0.1.json", 46_702_792_704, None),
        ("Qwen--Qwen2.5-7B.json", 7_615_616_512, None),
        ("google--gemma-7b.json", 8_537_680_896, 7_751_248_896),
    ],
)
def test_published_counts_from_public_configs(config: str, total: int, non_embedding: int | None) -> None:
    detection = registry.detect_from_hf_config(json.loads((CONFIGS / config).read_text()))
    counts = detection.module.parameter_counts(detection.config)
    assert counts.total == total
    if non_embedding is not None:
        assert counts.non_embedding == non_embedding


def test_grok1_published_counts() -> None:
    from openaudit.families import grok1

    counts = grok1.parameter_counts(grok1.GROK1)
    assert counts.total == 315_684_820_992
    assert grok1.layers_parameter_count(grok1.GROK1) == 314_879_508_480


# -- parameter-label rules -----------------------------------------------------------------------------------

def counts_of(config: str) -> Counts:
    detection = registry.detect_from_hf_config(json.loads((CONFIGS / config).read_text()))
    c = detection.module.parameter_counts(detection.config)
    experts = getattr(detection.config, "num_experts", None) or None
    return Counts(c.total, c.non_embedding, c.one_expert_path if experts else None, experts)


NO_EVIDENCE = Evidence(ArchitectureEvidence(None, "", None, None, None), {}, None, None)


def label_verdict(label: str, counts: Counts):
    (verdict,) = verify_claims([Claim("size_label", label, label, "name")], NO_EVIDENCE, counts)
    return verdict


def test_size_labels_verified_by_rounding_or_three_digit_truncation() -> None:
    assert label_verdict("7b", counts_of("meta-llama--Llama-2-7b-hf.json")).status == "verified"
    assert label_verdict("7B", counts_of("mistralai--Mistral-7B-v0.1.json")).status == "verified"
    qwen = label_verdict("7B", counts_of("Qwen--Qwen2.5-7B.json"))
    assert (qwen.status, qwen.reason.split(" (")[0]) == ("verified", "the non-embedding count 6,525,621,760")
    grok = label_verdict("314B", Counts(315_684_820_992, 314_879_514_624))
    assert grok.status == "verified"
    assert grok.reason == "the non-embedding count 314,879,514,624 (314.88B) truncated is 314B (total 315,684,820,992)"
    assert label_verdict("316B", Counts(315_684_820_992, 314_879_514_624)).status == "verified"
    assert label_verdict("315B", Counts(315_684_820_992, None)).status == "verified"  # 315.68 truncated


def test_gemma_7b_label_undercounts() -> None:
    verdict = label_verdict("7b", counts_of("google--gemma-7b.json"))
    assert verdict.status == "contradicted"
    assert verdict.reason == (
        "the label undercounts the 8.54B parameters (8,537,680,896; 7.75B without embeddings) by 1.54B (22%)"
    )


def test_one_digit_labels_are_not_truncated() -> None:
    llama = counts_of("meta-llama--Llama-2-7b-hf.json")  # 6.74B, 6.48B without embeddings
    assert label_verdict("6B", llama).status == "verified"  # the non-embedding count rounds to 6
    assert label_verdict("5B", llama).status == "contradicted"
    assert label_verdict("6.7B", llama).status == "verified"
    assert label_verdict("6.8B", llama).status == "contradicted"  # two digits: rounding only


def test_mixture_label_counts_one_expert_path() -> None:
    counts = counts_of("mistralai--Mixtral-8x7B-v0.1.json")
    verdict = label_verdict("8x7B", counts)
    assert verdict.status == "verified"
    assert verdict.reason == (
        "8 experts; one expert path is 7,242,780,672 (7.24B, rounded); 46,702,792,704 (46.70B) in all"
    )
    assert label_verdict("4x7B", counts).status == "contradicted"
    assert label_verdict("8x22B", counts).status == "contradicted"


def test_labels_in_names() -> None:
    assert [(l.canonical, l.experts) for l in labels_in_name("Mixtral-8x7B-v0.1")] == [("8x7B", 8)]
    assert [l.canonical for l in labels_in_name("gemma-3-270m-it")] == ["270M"]
    assert [l.canonical for l in labels_in_name("Qwen2.5-0.5B")] == ["0.5B"]
    assert labels_in_name("Phi-3-mini-4k-instruct") == [] and labels_in_name("grok-1") == []
    assert parse_size_label("314 billion").canonical == "314B"


# -- extraction -----------------------------------------------------------------------------------------------

def test_prose_extraction_reads_wrapped_paragraphs_and_tables() -> None:
    text = ("The network stacks 24 decoder\nblocks with a hidden size of 2,048 and 16 attention heads,\n"
            "of which 4 are shared as key/value heads.\n\n| Vocabulary size | 32k |\n| Context length | 4,096 |\n"
            "```\nlayers: 99\n```\nIt has 1.1 billion parameters and is released under the MIT License.\n")
    found = {(c.subject, c.claimed, c.source) for c in claims_from_prose(text, "README.md", 10)}
    assert found == {
        ("layers", 24, "README.md:10"), ("hidden_size", 2048, "README.md:10"), ("attention_heads", 16, "README.md:10"),
        ("kv_heads", 4, "README.md:10"), ("vocab_size", 32768, "README.md:14"), ("context_length", 4096, "README.md:15"),
        ("parameters", "1.1B", "README.md:19"), ("license", "MIT", "README.md:19"),
    }


def test_config_claims_name_their_key() -> None:
    config = json.loads((CONFIGS / "mistralai--Mixtral-8x7B-v0.1.json").read_text())
    claims = {(c.subject, c.claimed, c.source) for c in claims_from_config(config, "config.json")}
    assert ("experts", 8, "config.json#num_local_experts") in claims
    assert ("experts_per_token", 2, "config.json#num_experts_per_tok") in claims
    assert ("architecture", "MixtralForCausalLM", "config.json#architectures") in claims


# -- the Grok-1-shaped release ----------------------------------------------------------------------------------

GROK_SPEC = {
    "parameters": "314B", "experts": 8, "experts_per_token": 2, "layers": 64, "attention_heads": 48, "kv_heads": 8,
    "hidden_size": 6144, "vocab_size": 131072, "context_length": 8192, "license": "Apache-2.0",
}


@pytest.fixture(scope="module")
def grok_release(tmp_path_factory) -> Path:
    return write_grok_release(tmp_path_factory.mktemp("grok") / "grok-1")


@pytest.mark.parametrize("variant", sorted(README_VARIANTS))
def test_grok_release_specification_is_extracted_and_verified(grok_release: Path, variant: str) -> None:
    (grok_release / "README.md").write_text(README_VARIANTS[variant])
    document = report(grok_release)
    assert (document["architecture"]["family"], document["architecture"]["status"]) == ("grok1", "match")
    claims = {c["subject"]: c for c in document["claims"]}
    assert {subject: claims[subject]["claimed"] for subject in GROK_SPEC} == GROK_SPEC
    assert {subject: claims[subject]["status"] for subject in GROK_SPEC} == dict.fromkeys(GROK_SPEC, "verified")
    assert claims["experts_per_token"]["reason"].startswith("matches run.py:")
    assert document["license"]["detected"] == "Apache-2.0"
    assert (document["license"]["status"], document["license"]["osi_approved"]) == ("consistent", True)
    assert document["weights"]["parameters"]["total"] == 315_684_820_992


def test_declared_apache_next_to_llama2_text_is_a_conflict(tmp_path: Path) -> None:
    release = copy_reference("llama", tmp_path)
    (release / "README.md").write_text("---\nlicense: apache-2.0\n---\n# A model\n")
    shutil.copyfile(ROOT / "tests" / "data" / "licenses" / "llama2.txt", release / "LICENSE")
    document = report(release)
    assert (document["license"]["status"], document["license"]["detected"]) == ("conflict", "llama2")
    claim = next(c for c in document["claims"] if c["subject"] == "license")
    assert (claim["status"], claim["observed"]) == ("contradicted", "llama2")
    assert "license-conflict" in {f["id"] for f in document["findings"]}
    table = render_table(audit(str(release), AuditOptions(hash_weights=False)))
    assert "CONFLICT" in table and "✗" in table


# -- precision: ordinary model-card prose that is not a claim about this release ------------------------------

@pytest.mark.parametrize(
    "text",
    [
        "Llama 2 is a collection of models ranging in scale from 7 billion to 70 billion parameters.",
        "Qwen2.5 is released in sizes ranging from 0.5 to 72 billion parameters.",
        "We compare with GPT-3 (175B parameters) and PaLM (540B parameters).",
        "We release 7B, 13B and 34B parameter models.",
        "Compared with Llama 2 70B parameters, it is faster.",
        "Release date: April 18, 2024 (context window update on May 2, 2024).",
        "| Long context (LongBench v2) | 41.3 |",
        "In this context, 12 annotators rated the outputs.",
        "Out-of-context examples: 2024 prompts",
        "We fine-tuned with 8 layers frozen.",
        "Depth: 2 rounds of RLHF",
        "| Layers | 18 | 28 |",
        "This model is not licensed under the MIT license.",
        "Training used a batch size of 4M tokens with a sequence length of 2048.",
        "Model size: 7.24B params and a model size of 3.5 GB on disk.",
    ],
)
def test_prose_that_is_not_about_this_release_gives_no_number(text: str) -> None:
    claims = [(c.subject, c.claimed) for c in claims_from_prose(text, "README.md")]
    assert [c for c in claims if c[0] != "parameters" or c[1] != "7.24B"] == []


def test_a_license_named_for_another_work_is_not_this_release_s() -> None:
    text = ("Unlike Llama, which is licensed under the Llama 2 Community License, this model is released under "
            "the Apache License, Version 2.0.")
    assert [(c.subject, c.claimed) for c in claims_from_prose(text, "README.md")] == [("license", "Apache-2.0")]


@pytest.mark.parametrize(
    ("name", "labels"),
    [
        ("stablelm-2-1_6b", ["1.6B"]),
        ("TinyLlama-1.1B-intermediate-step-1431k-3T", ["1.1B"]),
        ("Llama-3-8B-1M-context", ["8B"]),
        ("ckpt_step_2m", []),
        ("Meta-Llama-3.1-405B-Instruct", ["405B"]),
    ],
)
def test_only_the_model_size_in_a_name_is_a_label(name: str, labels: list[str]) -> None:
    assert [label.canonical for label in labels_in_name(name)] == labels


def test_pathological_digit_runs_are_read_in_linear_time() -> None:
    import time

    text = ("1" * 3999 + "\n") * 40 + "It has 48 attention heads.\n"
    started = time.perf_counter()
    claims = claims_from_prose(text, "README.md")
    assert time.perf_counter() - started < 1.0
    assert [(c.subject, c.claimed) for c in claims] == [("attention_heads", 48)]


def test_prose_extraction_stops_at_its_time_limit(monkeypatch) -> None:
    from openaudit.inspect import claims as module

    monkeypatch.setattr(module, "PROSE_SECONDS", 0.0)
    assert module.claims_from_prose("It has 48 attention heads.\n", "README.md") == []


def test_a_license_in_a_comparison_is_not_this_release_s() -> None:
    text = "We compare with GPT-2 (124M parameters), which is released under the MIT license."
    assert claims_from_prose(text, "README.md") == []


def test_real_card_wordings() -> None:
    mistral = ("The Mistral-7B-v0.1 Large Language Model (LLM) is a pretrained generative text model with 7 billion "
               "parameters.\nMistral-7B-v0.1 outperforms Llama 2 13B on all benchmarks we tested.\n")
    assert [(c.subject, c.claimed) for c in claims_from_prose(mistral, "README.md")] == [("parameters", "7B")]
    qwen = "- Number of Attention Heads (GQA): 28 for Q and 4 for KV\n"
    assert sorted((c.subject, c.claimed) for c in claims_from_prose(qwen, "README.md")) == [
        ("attention_heads", 28), ("kv_heads", 4)]
