"""The audit pipeline end to end: sources, inventory, weights totals, checksums, report, exit codes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from openaudit.audit import AuditOptions, audit
from openaudit.report.formats import render_json, render_table
from openaudit.report.schema import validation_errors
from tests.builders.grok_shapes import TOTAL_PARAMETERS, grok_bf16_tensors
from tests.builders.pickle_builder import write_grok_checkpoint
from tests.builders.safetensors_builder import write_safetensors, write_sharded

ROOT = Path(__file__).resolve().parents[1]


def report_dict(source: Path, **options) -> dict:
    document = json.loads(render_json(audit(str(source), AuditOptions(**options))))
    assert validation_errors(document) == []
    return document


def finding_ids(document: dict) -> list[str]:
    return sorted(item["id"] for item in document["findings"])


@pytest.fixture
def small_release(tmp_path: Path) -> Path:
    release = tmp_path / "release"
    release.mkdir()
    rng = np.random.default_rng(0)
    write_safetensors(
        release / "model.safetensors",
        {
            "embed.weight": rng.standard_normal((16, 8)).astype(np.float32),
            "layers.0.attn.weight": rng.standard_normal((8, 8)).astype(np.float32),
            "position_ids": np.arange(16, dtype=np.int64)[None, :],
            "layers.0.rotary_emb.inv_freq": np.ones(4, dtype=np.float32),
        },
    )
    (release / "config.json").write_text('{"model_type": "toy"}')
    (release / "tokenizer.json").write_text("{}")
    (release / "README.md").write_text("---\nlicense: apache-2.0\n---\n# Toy\n")
    (release / "LICENSE").write_text("Apache License\nVersion 2.0, January 2004\n")
    (release / "train.py").write_text("print('train')\n")
    (release / "data").mkdir()
    (release / "data" / "train.jsonl").write_text('{"text": "hello"}\n')
    (release / "paper.pdf").write_bytes(b"%PDF-1.4\n")
    (release / "notes.bin2").write_bytes(b"\x00\x01")
    return release


def test_inventory_classifies_every_file_with_its_size(small_release: Path) -> None:
    document = report_dict(small_release)
    kinds = {entry["path"]: (entry["kind"], entry["bytes"]) for entry in document["release"]["files"]}
    assert {path: kind for path, (kind, _) in kinds.items()} == {
        "LICENSE": "license",
        "README.md": "model_card",
        "config.json": "config",
        "data/train.jsonl": "data",
        "model.safetensors": "weights",
        "notes.bin2": "other",
        "paper.pdf": "docs",
        "tokenizer.json": "tokenizer",
        "train.py": "code",
    }
    assert kinds["config.json"][1] == len('{"model_type": "toy"}')
    assert document["release"]["total_bytes"] == sum(size for _, size in kinds.values())
    assert document["release"]["by_kind"]["weights"] == 1


def test_parameters_exclude_buffers_and_elements_count_everything(small_release: Path) -> None:
    weights = report_dict(small_release)["weights"]
    assert weights["format"] == "safetensors"
    assert weights["parameters"] == {"total": 16 * 8 + 8 * 8, "by_dtype": {"F32": 192}}
    assert weights["elements"] == 192 + 16 + 4
    assert sorted((b["name"], b["elements"]) for b in weights["buffers"]) == [
        ("layers.0.rotary_emb.inv_freq", 4),
        ("position_ids", 16),
    ]
    assert weights["files"][0]["tensors"] == 4


def test_checksums_verified_mismatch_unpublished_and_skipped(small_release: Path) -> None:
    digest = hashlib.sha256((small_release / "model.safetensors").read_bytes()).hexdigest()
    (small_release / "SHA256SUMS").write_text(f"{digest}  model.safetensors\n")
    entry = report_dict(small_release)["weights"]["files"][0]
    assert (entry["sha256"], entry["checksum"], entry["checksum_source"]) == (digest, "verified", "SHA256SUMS:1")

    (small_release / "SHA256SUMS").write_text(f"{'0' * 64} *model.safetensors\n")
    document = report_dict(small_release)
    assert document["weights"]["files"][0]["checksum"] == "mismatch"
    assert "checksum-mismatch" in finding_ids(document)

    (small_release / "SHA256SUMS").unlink()
    assert report_dict(small_release)["weights"]["files"][0]["checksum"] == "unpublished"
    skipped = report_dict(small_release, hash_weights=False)["weights"]["files"][0]
    assert (skipped["sha256"], skipped["checksum"]) == (None, "skipped")


def test_checksums_from_sha256_file_and_card_table(small_release: Path) -> None:
    digest = hashlib.sha256((small_release / "model.safetensors").read_bytes()).hexdigest()
    (small_release / "model.safetensors.sha256").write_text(digest + "\n")
    assert report_dict(small_release)["weights"]["files"][0]["checksum_source"] == "model.safetensors.sha256:1"
    (small_release / "model.safetensors.sha256").unlink()
    card = small_release / "README.md"
    card.write_text(card.read_text() + f"\n| file | sha256 |\n|---|---|\n| `model.safetensors` | `{digest}` |\n")
    entry = report_dict(small_release)["weights"]["files"][0]
    assert (entry["checksum"], entry["checksum_source"]) == ("verified", "README.md:8")


def test_huggingface_cache_snapshot_verifies_blob_names_offline(tmp_path: Path) -> None:
    repo = tmp_path / "hub" / "models--acme--toy"
    blobs, snapshot = repo / "blobs", repo / "snapshots" / "0123abcd"
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    staging = tmp_path / "model.safetensors"
    write_safetensors(staging, {"w": np.ones((2, 2), np.float32)})
    digest = hashlib.sha256(staging.read_bytes()).hexdigest()
    staging.rename(blobs / digest)
    (snapshot / "model.safetensors").symlink_to(f"../../blobs/{digest}")
    (blobs / ("f" * 40)).write_text('{"model_type": "toy"}')  # git-sha1 named blob of a small file
    (snapshot / "config.json").symlink_to(f"../../blobs/{'f' * 40}")

    for source in (repo, snapshot):
        document = report_dict(source)
        assert document["source"]["kind"] == "hf-cache"
        assert (document["source"]["repo_id"], document["source"]["revision"]) == ("acme/toy", "0123abcd")
        entry = document["weights"]["files"][0]
        assert (entry["checksum"], entry["checksum_source"]) == ("verified", "hf-cache blob name")

    # a corrupted blob no longer matches its name
    data = bytearray((blobs / digest).read_bytes())
    data[-1] ^= 0xFF
    (blobs / digest).write_bytes(bytes(data))
    assert report_dict(snapshot)["weights"]["files"][0]["checksum"] == "mismatch"


def test_links_out_of_the_release_and_special_files_are_findings(tmp_path: Path) -> None:
    release = tmp_path / "release"
    release.mkdir()
    write_safetensors(release / "model.safetensors", {"w": ("F32", (2, 2))})
    (release / "passwd.safetensors").symlink_to("/etc/passwd")
    (release / "up").symlink_to("..")
    (release / "loop").symlink_to("loop")
    os.mkfifo(release / "fifo.safetensors")
    (release / "weights.bin").mkdir()
    document = report_dict(release)
    assert finding_ids(document) == sorted(
        ["path-escape", "path-escape", "symlink-loop", "special-file", "directory-named-like-weights", "license-unknown"]
    )
    assert [entry["path"] for entry in document["release"]["files"]] == ["model.safetensors"]


def test_a_single_weights_file_is_a_source(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    write_safetensors(path, {"w": ("BF16", (3, 5))})
    document = report_dict(path)
    assert document["source"]["kind"] == "file"
    assert document["weights"]["parameters"]["total"] == 15


def test_alternate_copies_are_counted_once(small_release: Path) -> None:
    write_safetensors(small_release / "model-fp16.safetensors",
                      {"embed.weight": ("F16", (16, 8)), "layers.0.attn.weight": ("F16", (8, 8))})
    document = report_dict(small_release)
    assert document["weights"]["parameters"]["total"] == 192
    assert "alternate-weights-copy" in finding_ids(document)


def test_shard_index_total_size_and_weight_map_are_checked(tmp_path: Path) -> None:
    index_path = write_sharded(tmp_path, {f"layer.{i}.weight": (4, 4) for i in range(6)}, 3, "F32")
    assert report_dict(tmp_path)["weights"]["indexes"] == [
        {"path": "model.safetensors.index.json", "shards": 3, "tensors": 6, "total_size": 384, "observed_total_size": 384}
    ]
    index = json.loads(index_path.read_text())
    index["metadata"]["total_size"] = 999
    index["weight_map"]["layer.0.weight"] = "model-00002-of-00003.safetensors"
    index["weight_map"]["layer.9.weight"] = "../outside.safetensors"
    del index["weight_map"]["layer.5.weight"]
    index_path.write_text(json.dumps(index))
    assert finding_ids(report_dict(tmp_path)) == [
        "claim-contradicted", "index-tensor-unlisted", "index-total-size-mismatch", "index-wrong-shard", "license-unknown",
        "path-escape",
    ]


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "openaudit", *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_exit_codes_and_streams(small_release: Path, tmp_path: Path) -> None:
    missing = run_cli("audit", str(tmp_path / "nope"))
    assert (missing.returncode, missing.stdout) == (2, "")
    assert "source not found" in missing.stderr
    assert run_cli("audit").returncode == 2
    assert run_cli("audit", str(small_release), "--format", "nonsense").returncode == 2

    ok = run_cli("audit", str(small_release), "--format", "json")
    assert ok.returncode == 0 and ok.stderr == ""
    assert json.loads(ok.stdout)["tool"]["name"] == "openaudit"

    (small_release / "SHA256SUMS").write_text(f"{'0' * 64}  model.safetensors\n")
    gated = run_cli("audit", str(small_release), "--format", "json", "--fail-on", "checksum-mismatch")
    assert gated.returncode == 1
    assert "gate failed" in gated.stderr
    assert run_cli("audit", str(small_release), "--format", "json", "--fail-on", "critical").returncode == 1
    assert run_cli("audit", str(small_release), "--format", "json", "--no-hash", "--fail-on", "critical").returncode == 0

    out = tmp_path / "report.json"
    written = run_cli("audit", str(small_release), "--no-hash", "--format", "json", "-o", str(out))
    assert (written.returncode, written.stdout) == (0, "")
    assert validation_errors(json.loads(out.read_text())) == []


def test_table_shows_the_totals_and_escapes_names(small_release: Path) -> None:
    (small_release / "evil\x1b[2Jname.txt").write_text("x")
    text = render_table(audit(str(small_release), AuditOptions(hash_weights=False)))
    assert "\x1b" not in text
    assert "evil\\x1b[2Jname.txt" in text
    assert "192" in text and "suspicious-file-name" in text


def test_grok1_shapes_as_sharded_bf16_safetensors_audit_header_only_in_under_two_seconds(tmp_path: Path) -> None:
    write_sharded(tmp_path, grok_bf16_tensors(), 17, "BF16")
    code = (
        "import sys, json, time; from openaudit.cli import main; "
        f"rc = main(['audit', {str(tmp_path)!r}, '--no-hash', '--format', 'json', '-o', {str(tmp_path / 'r.json')!r}]); "
        "print(json.dumps({'rc': rc, 'jax': 'jax' in sys.modules}))"
    )
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    elapsed = time.perf_counter() - start
    assert json.loads(result.stdout) == {"rc": 0, "jax": False}
    assert elapsed < 2.0, f"header-only audit took {elapsed:.2f} s"
    weights = json.loads((tmp_path / "r.json").read_text())["weights"]
    assert TOTAL_PARAMETERS == 315_684_820_992
    assert (weights["tensors"], weights["parameters"]["total"]) == (770, 315_684_820_992)
    assert weights["indexes"][0]["total_size"] == weights["indexes"][0]["observed_total_size"] == 2 * 315_684_820_992


def test_grok1_pickle_checkpoint_counts_the_same_without_reading_data(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints" / "ckpt-0"
    folder.mkdir(parents=True)
    write_grok_checkpoint(folder)
    assert sum(f.stat().st_blocks * 512 for f in folder.iterdir()) < 64 * 1024 * 1024  # sparse: data never written
    document = report_dict(tmp_path, hash_weights=False)
    weights = document["weights"]
    assert weights["format"] == "pickle"
    assert weights["parameters"] == {"total": 315_684_820_992, "by_dtype": {"F32": 810_031_104, "I8": 314_874_789_888}}
    assert len(weights["files"]) == 770
    assert not [f for f in document["findings"] if f["severity"] in ("critical", "high")]
    imports = {name for entry in weights["files"] for name in entry["imports"]}
    assert "__main__.QuantizedWeight8bit" in imports


def test_an_audit_wide_scan_budget_stops_and_says_what_was_not_read(small_release: Path) -> None:
    from openaudit.inspect.weights import inspect_weights
    from openaudit.source.open import open_source

    inspection = inspect_weights(open_source(str(small_release)), budget_seconds=0.0)
    assert inspection.scans == ()
    (item,) = [f for f in inspection.findings if f.id == "scan-budget-exhausted"]
    assert item.location == "LICENSE"
    assert "9 file(s) were not read" in item.message


# -- review fixes: cache links, tied copies, shard indexes, the card read once, YAML values ------------------


def test_hf_cache_snapshot_that_leaves_the_repository_is_refused(tmp_path: Path) -> None:
    from openaudit.errors import UsageError

    hub = tmp_path / "hub"
    outside = hub / "outside" / "rev1"
    outside.mkdir(parents=True)
    write_safetensors(outside / "model.safetensors", {"w": ("F32", (2, 2))})
    repo = hub / "models--a--b"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("rev1\n")
    (repo / "snapshots").symlink_to("../outside")

    with pytest.raises(UsageError) as refused:
        audit(str(repo))
    assert str(refused.value) == (f"{repo}/snapshots is a link (to ../outside); the snapshot would leave the cached "
                                  "repository, so it is not followed")
    typed = repo / "snapshots" / "rev1"
    with pytest.raises(UsageError) as refused:
        audit(str(typed))
    assert str(refused.value) == (f"the snapshot {typed} resolves to {outside}, outside the cached repository {repo}; "
                                  "it is not followed")

    # a real snapshots folder whose revision is a link out of the repository
    (repo / "snapshots").unlink()
    (repo / "snapshots").mkdir()
    (repo / "snapshots" / "rev1").symlink_to("../../outside/rev1")
    with pytest.raises(UsageError) as refused:
        audit(str(typed))
    assert str(refused.value) == (f"the snapshot {typed} resolves to {outside}, outside the cached repository {repo}; "
                                  "it is not followed")
    with pytest.raises(UsageError) as refused:
        audit(str(repo))
    assert str(refused.value) == (f"{repo} holds 0 snapshots and no usable refs/main; name one of "
                                  f"{repo}/snapshots/<revision> (1 linked snapshot is never followed)")
    missing = run_cli("audit", str(repo))
    assert (missing.returncode, missing.stdout) == (2, "")


def tiny_llama(folder: Path, *, tied: bool, lm_head: bool) -> Path:
    """A one-layer Llama (vocab 16, hidden 8, MLP 16): 792 parameters without lm_head, which adds 128."""
    folder.mkdir()
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8, "intermediate_size": 16,
              "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": 16,
              "max_position_embeddings": 32, "rms_norm_eps": 1e-5, "tie_word_embeddings": tied}
    (folder / "config.json").write_text(json.dumps(config))
    layer = "model.layers.0."
    shapes = {"model.embed_tokens.weight": (16, 8), "model.norm.weight": (8,),
              **{layer + f"self_attn.{p}_proj.weight": (8, 8) for p in "qkvo"},
              layer + "mlp.gate_proj.weight": (16, 8), layer + "mlp.up_proj.weight": (16, 8),
              layer + "mlp.down_proj.weight": (8, 16), layer + "input_layernorm.weight": (8,),
              layer + "post_attention_layernorm.weight": (8,)}
    if lm_head:
        shapes["lm_head.weight"] = (16, 8)
    write_safetensors(folder / "model.safetensors", {name: ("F32", shape) for name, shape in shapes.items()})
    return folder


def test_a_stored_tied_copy_is_not_counted_as_parameters(tmp_path: Path) -> None:
    document = report_dict(tiny_llama(tmp_path / "tied", tied=True, lm_head=True), hash_weights=False)
    weights = document["weights"]
    assert (document["architecture"]["status"], document["architecture"]["observed_parameters"]) == ("match", 792)
    assert weights["parameters"] == {"total": 792, "by_dtype": {"F32": 792}}
    assert weights["files"][0]["parameters"] == 792
    assert weights["tied_copies"] == [{"name": "lm_head.weight", "file": "model.safetensors", "elements": 128}]
    assert weights["elements"] == 920
    tied = [f for f in document["findings"] if f["id"] == "tied-duplicate"]
    assert tied == [{"id": "tied-duplicate", "severity": "info", "location": "model.safetensors:lm_head.weight",
                     "message": "lm_head.weight is a stored copy of the tied embedding (tied to model.embed_tokens.weight); "
                                "counted once"}]
    final = next(c for c in document["openness"]["components"] if c["name"] == "Model parameters (Final)")
    assert [item["note"] for item in final["evidence"]] == ["readable weights: 1 safetensors file, 792 parameters, headers read"]

    untied = report_dict(tiny_llama(tmp_path / "untied", tied=False, lm_head=True), hash_weights=False)["weights"]
    assert (untied["parameters"]["total"], untied["tied_copies"], untied["elements"]) == (920, [], 920)


def test_shard_index_names_unlisted_and_non_weights_files(tmp_path: Path) -> None:
    index_path = write_sharded(tmp_path, {f"layer.{i}.weight": (4, 4) for i in range(4)}, 2, "F32")
    write_safetensors(tmp_path / "model-extra.safetensors", {"extra.weight": ("F32", (4, 4))})
    document = report_dict(tmp_path, hash_weights=False)
    unlisted = [f for f in document["findings"] if f["id"] == "index-shard-unlisted"]
    assert unlisted == [{
        "id": "index-shard-unlisted", "severity": "high", "location": "model.safetensors.index.json",
        "message": "model-extra.safetensors holds weights beside the index, which never names it; loaders that follow "
                   "the index do not read it, and openaudit counts its tensors"}]
    assert document["weights"]["parameters"]["total"] == 5 * 16

    # a whole second copy of the model beside the shards is an alternate, not an unlisted shard
    (tmp_path / "model-extra.safetensors").unlink()
    write_safetensors(tmp_path / "consolidated.safetensors", {f"layer.{i}.weight": ("F32", (4, 4)) for i in range(4)})
    document = report_dict(tmp_path, hash_weights=False)
    assert "index-shard-unlisted" not in finding_ids(document)
    assert "alternate-weights-copy" in finding_ids(document)
    (tmp_path / "consolidated.safetensors").unlink()

    index = json.loads(index_path.read_text())
    index["weight_map"]["notes.weight"] = "notes.txt"
    index_path.write_text(json.dumps(index))
    (tmp_path / "notes.txt").write_text("not weights\n")
    not_weights = [f for f in report_dict(tmp_path, hash_weights=False)["findings"] if f["id"] == "index-shard-not-weights"]
    assert not_weights == [{
        "id": "index-shard-not-weights", "severity": "high", "location": "model.safetensors.index.json",
        "message": "the index names notes.txt, which is not a weights file openaudit could read; the tensors it maps "
                   "there cannot be loaded"}]

    index_path.write_text('{"weight_map": [1]}')  # no weight_map object: nothing to compare, and no crash
    malformed = [(f["id"], f["message"]) for f in report_dict(tmp_path, hash_weights=False)["findings"]
                 if f["id"].startswith("index-")]
    assert malformed == [("index-malformed", "the index has no weight_map object")]


@pytest.mark.parametrize(
    ("written", "shown"),
    [('"abc"', "'abc'"), ("1e400", "inf"), ("-1", "int"), ("true", "True"), ("12.5", "12.5"), ("[1]", "list")],
)
def test_shard_index_total_size_that_is_not_a_count_is_malformed(tmp_path: Path, written: str, shown: str) -> None:
    index_path = write_sharded(tmp_path, {f"layer.{i}.weight": (4, 4) for i in range(2)}, 1, "F32")
    index = json.loads(index_path.read_text())
    text = json.dumps({"metadata": {"total_size": "SLOT"}, "weight_map": index["weight_map"]})
    index_path.write_text(text.replace('"SLOT"', written))
    document = report_dict(tmp_path, hash_weights=False)
    malformed = [f for f in document["findings"] if f["id"] == "index-malformed"]
    assert malformed == [{"id": "index-malformed", "severity": "high", "location": "model.safetensors.index.json",
                          "message": f"metadata.total_size is {shown}, not a non-negative integer; not checked"}]
    assert document["weights"]["indexes"][0]["total_size"] is None


def test_the_model_card_is_read_once(small_release: Path, monkeypatch) -> None:
    from openaudit.inspect import checksums

    digest = hashlib.sha256((small_release / "model.safetensors").read_bytes()).hexdigest()
    card = small_release / "README.md"
    card.write_text(card.read_text() + f"\n| `model.safetensors` | `{digest}` |\n")
    (small_release / "SHA256SUMS").write_text(f"{digest}  model.safetensors\n")
    read: list[str] = []
    original = checksums.read_text_bounded

    def recording(path, *args, **kwargs):
        read.append(Path(path).name)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(checksums, "read_text_bounded", recording)
    entry = report_dict(small_release)["weights"]["files"][0]
    assert read == ["SHA256SUMS"]
    assert (entry["checksum"], entry["checksum_source"]) == ("verified", "README.md:6")


def test_a_card_whose_front_matter_holds_an_impossible_date_is_a_finding(small_release: Path) -> None:
    (small_release / "README.md").write_text("---\nlicense: apache-2.0\ndate: 2024-13-45\n---\n# Toy\n")
    document = report_dict(small_release, hash_weights=False)
    invalid = [f for f in document["findings"] if f["id"] == "invalid-yaml"]
    assert invalid == [{"id": "invalid-yaml", "severity": invalid[0]["severity"], "location": "README.md",
                        "message": "README.md front matter is not valid YAML: a value cannot be built "
                                   "(ValueError: month must be in 1..12)"}]
