"""Openness from evidence: MOF components, the verified and claimed MOF class, OSAID, the OSAI index, the score.

Releases are built by tests/builders: one shaped like xai-org/grok-1 (with its checkpoint in Grok's pickle
format, sparse), one fully open (tests/builders/open_release.py), and small ones written here.
"""

from __future__ import annotations

import json
import time
import shutil
from pathlib import Path

import pytest
import yaml

from openaudit.evidence import gather
from openaudit.inspect.card import find_card
from openaudit.inspect.claim_sources import collect_claims, find_mof_file
from openaudit.inspect.license_files import license_evidence
from openaudit.inspect.weights import inspect_weights, weights_kinds
from openaudit.rubric.openness import assess_openness
from openaudit.source.open import open_source
from tests.builders.grok_release import write_grok_release
from tests.builders.open_release import PARAMETERS, write_open_release

ROOT = Path(__file__).resolve().parents[1]
LICENSE_TEXTS = ROOT / "checks" / "license_texts"


def pipeline_pieces(root: Path, mof_claims=None):
    """What openaudit.audit.audit() builds, through the same public functions, in the same order."""
    release = open_source(str(root))
    weights = inspect_weights(release)
    release = release.with_kinds(weights_kinds(weights))
    card = find_card(release)
    evidence = gather(release, weights)
    mof = mof_claims or find_mof_file(release, [])
    # collect_claims takes (document, path); a bare document is for assess_openness alone.
    claims = collect_claims(release, card, weights, evidence.config_json, evidence.config_path,
                            mof if isinstance(mof, tuple) else None)
    licenses = license_evidence(release, card, claims)
    return release, card, weights, evidence.architecture, licenses, mof


def openness_of(root: Path, mof_claims=None):
    return assess_openness(*pipeline_pieces(root, mof_claims))


def statuses(openness) -> dict[str, tuple[str, str | None]]:
    return {c.name: (c.status, c.license) for c in openness.components}


@pytest.fixture(scope="module")
def grok_root(tmp_path_factory) -> Path:
    return write_grok_release(tmp_path_factory.mktemp("grok") / "grok-1", checkpoint=True)


@pytest.fixture(scope="module")
def grok(grok_root: Path):
    return openness_of(grok_root)


@pytest.fixture(scope="module")
def open_root(tmp_path_factory) -> Path:
    return write_open_release(tmp_path_factory.mktemp("open") / "tiny-open-lm")


@pytest.fixture(scope="module")
def fully_open(open_root: Path):
    return openness_of(open_root)


# ------------------------------------------------------------------------------------------------ Grok-1


def test_grok_components(grok):
    assert statuses(grok) == {
        "Model architecture": ("open", "Apache-2.0"),
        "Model parameters (Final)": ("open", "Apache-2.0"),
        "Evaluation results": ("absent", None),
        "Model card": ("absent", None),
        "Data card": ("absent", None),
        "Technical report": ("absent", None),
        "Sample model outputs": ("absent", None),
        "Training code": ("absent", None),
        "Inference code": ("open", "Apache-2.0"),
        "Evaluation code": ("absent", None),
        "Evaluation data": ("absent", None),
        "Supporting libraries and tools": ("absent", None),
        "Datasets": ("absent", None),
        "Data preprocessing code": ("absent", None),
        "Model parameters (Intermediate)": ("absent", None),
        "Research paper": ("absent", None),
        "Model metadata": ("absent", None),
    }
    assert [c.id for c in grok.components] == [9, 10, 12, 13, 14, 11, 20, 7, 8, 18, 19, 22, 15, 16, 24, 21, 17]
    assert all(c.claimed is None for c in grok.components)  # no MOF file


def test_grok_evidence_a_reader_can_follow(grok):
    architecture = grok.component("Model architecture")
    assert [(e.kind, e.path, e.line, e.note) for e in architecture.evidence] == [
        ("found", "model.py", None, "model definition")]
    assert architecture.license_source == "LICENSE.txt"
    weights = grok.component("Model parameters (Final)")
    assert [(e.path, e.note) for e in weights.evidence] == [
        ("checkpoints/ckpt-0", "readable weights: 770 pickle files, 315,684,820,992 parameters, read without unpickling")]
    inference = grok.component(8)
    assert [(e.path, e.line, e.note) for e in inference.evidence] == [
        ("run.py", None, "inference entry point"),
        ("runners.py", 20, "sampling function: sample_from_model"),
    ]
    intermediate = grok.component(24)
    assert [(e.kind, e.path) for e in intermediate.evidence] == [("insufficient", "checkpoints/ckpt-0")]
    card = grok.component("Model card")
    assert [(e.kind, e.path, e.note) for e in card.evidence] == [
        ("insufficient", "README.md", "README.md covers only 2 of the 7 model-card topics (details, license)")]


def test_grok_sentences_use_the_real_counts(grok):
    assert grok.component("Training code").sentence == (
        "Training code: not released; no training entry point or configuration found in the 779 files of the "
        "release (770 of them weights).")
    assert grok.component("Inference code").sentence == (
        "Inference code: open under Apache-2.0 (LICENSE.txt); found run.py (inference entry point) and "
        "runners.py:20 (sampling function: sample_from_model).")
    assert grok.component("Model parameters (Final)").sentence == (
        "Model parameters (Final): open under Apache-2.0 (LICENSE.txt); found checkpoints/ckpt-0 (readable weights: "
        "770 pickle files, 315,684,820,992 parameters, read without unpickling).")
    assert grok.component("Model card").sentence == (
        "Model card: not released; no model card (a card covering at least 3 of the usual topics) found in the 779 "
        "files of the release (770 of them weights); README.md covers only 2 of the 7 model-card topics (details, license).")


def test_grok_mof_class_0_with_class_iii_progress(grok):
    mof = grok.to_dict()["mof"]
    assert mof["class"] == 0
    assert mof["label"] == "Unclassified"
    assert mof["progress"] == {"1": 0, "2": 0, "3": 2 / 6 * 100}
    assert mof["progress"]["3"] == 33.33333333333333
    assert mof["claimed_class"] is None and mof["claimed_progress"] is None
    assert mof["unsupported_claims"] == [] and mof["found_not_claimed"] == []
    assert mof["licenses_normalized"] == [{"original": "text of LICENSE.txt", "spdx": "Apache-2.0", "source": "LICENSE.txt (full-text)"}]
    assert "normalised to SPDX" in mof["normalization"]
    assert mof["rubric"] == {"name": "Model Openness Framework", "version": "1.0"}
    assert mof["sentence"] == ("MOF 1.0: Unclassified from the verified components (Class III 33%, Class II 0%, "
                               "Class I 0%; 2 of the 6 Class III components open).")


def test_grok_osaid_not_conformant_naming_data_information_and_training_code(grok):
    osaid = grok.osaid
    assert osaid.conformant is False
    assert [m.name for m in osaid.missing] == [
        "Data information", "Data preprocessing code", "Training code", "Supporting libraries and tools"]
    assert osaid.missing[0].why == "none of datasets, research paper, technical report or data card is in the release"
    assert osaid.sentence == (
        "OSAID 1.0: not conformant; missing data information (none of datasets, research paper, technical report or "
        "data card is in the release), data preprocessing code, training code and supporting libraries and tools.")
    passed = {c.id: c.passed for c in osaid.criteria}
    assert passed == {"data-information": False, "data-preprocessing-code": False, "training-code": False,
                      "inference-code": True, "supporting-libraries": False, "model-architecture": True,
                      "model-parameters": True}


def test_grok_osai_index(grok):
    index = grok.osai_index
    assert {d.key: d.level for d in index.dimensions} == {
        "datasources_basemodel": "closed", "datasources_endmodel": "closed",
        "weights_basemodel": "open", "weights_endmodel": "open", "trainingcode": "closed",
        "code": "partial", "hardware_architecture": "partial", "preprint": "closed", "paper": "closed",
        "modelcard": "partial", "datasheet": "closed", "licenses": "partial",
    }
    assert index.total == 4.0
    assert index.score == 4 / 12
    assert dict(index.groups) == {"availability": 0.4, "documentation": 0.25, "access": 0.5}
    data = index.to_dict()
    assert data["percent"] == 33.3 and data["counts"] == {"open": 2, "partial": 4, "closed": 6}
    assert index.sentence == "European Open Source AI Index: 33.3% (4 of 12); 2 open, 4 partial, 6 closed."
    licenses = next(d for d in index.dimensions if d.key == "licenses")
    assert licenses.sentence == (
        "Licenses: partial; two of weights, code and data are under open licenses (weights open (Apache-2.0); "
        "code open (Apache-2.0); data not in the release).")
    training = next(d for d in index.dimensions if d.key == "trainingcode")
    assert training.sentence == "Training code: closed; no training code in the 779 files of the release (770 of them weights)."


def test_grok_score(grok):
    score = grok.score
    assert score.score == 31.0
    assert {p.id: p.points for p in score.parts if p.points} == {
        "model-architecture": 10.0, "final-parameters": 15.0, "inference-code": 6.0}
    assert dict(score.groups) == {"model": 25.0, "code": 6.0, "data": 0.0, "documentation": 0.0, "reproducibility": 0.0}
    assert score.sentence == ("openaudit score: 31 of 100; points from model parameters (final) 15, model architecture 10, "
                              "inference code 6.")


def test_report_dict_is_json_and_names_every_rubric(grok):
    data = json.loads(json.dumps(grok.to_dict()))
    assert set(data) == {"components", "mof", "osaid", "osai_index", "score", "release_license", "limits_hit", "rubrics"}
    assert [(r["kind"], r["name"], r["version"]) for r in data["rubrics"]] == [
        ("components", "openaudit component evidence", "1.0"),
        ("mof", "Model Openness Framework", "1.0"),
        ("osaid", "Open Source AI Definition", "1.0"),
        ("osai_index", "European Open Source AI Index", "2026-03 (12 dimensions)"),
        ("score", "openaudit openness score", "1.0"),
    ]
    component = data["components"][0]
    assert {"id", "name", "status", "license", "claimed", "evidence", "sentence"} <= set(component)
    assert data["score"]["rubric"] == {"name": "openaudit openness score", "version": "1.0"}
    assert data["osaid"]["rubric"]["version"] == "1.0"
    assert data["release_license"]["license"] == "Apache-2.0" and data["release_license"]["source"] == "LICENSE.txt"
    assert data["limits_hit"] == []


# ---------------------------------------------------------------------------------------------- fully open


def test_fully_open_release_every_component_open(fully_open):
    expected_license = {9: "Apache-2.0", 10: "Apache-2.0", 12: "Apache-2.0", 13: "Apache-2.0", 14: "ODC-By-1.0",
                        11: "Apache-2.0", 20: "Apache-2.0", 7: "Apache-2.0", 8: "Apache-2.0", 18: "Apache-2.0",
                        19: "ODC-By-1.0", 22: "Apache-2.0", 15: "ODC-By-1.0", 16: "Apache-2.0", 24: "Apache-2.0",
                        21: "Apache-2.0", 17: "Apache-2.0"}
    assert {c.id: (c.status, c.license) for c in fully_open.components} == {
        cid: ("open", license) for cid, license in expected_license.items()}
    datasets = fully_open.component("Datasets")
    assert datasets.license_source == "data/LICENSE"
    assert [e.path for e in datasets.evidence if e.kind == "found"] == ["data/train/shard-00000.jsonl", "data/train/shard-00001.jsonl"]
    assert [(e.kind, e.url) for e in datasets.evidence if e.kind == "linked"] == [
        ("linked", "https://huggingface.co/datasets/example-org/tiny-open-corpus")]
    weights = fully_open.component(10)
    assert [(e.path, e.note) for e in weights.evidence] == [
        ("model.safetensors", f"readable weights: 1 safetensors file, {PARAMETERS:,} parameters, headers read")]
    intermediate = fully_open.component(24)
    assert [(e.path, e.note) for e in intermediate.evidence] == [
        ("checkpoints/step1000", "intermediate checkpoints: step 1000 (1 weights file)"),
        ("checkpoints/step2000", "intermediate checkpoints: step 2000 (1 weights file)"),
    ]
    training = fully_open.component("Training code")
    assert [(e.path, e.line, e.note) for e in training.evidence] == [
        ("train.py", None, "training entry point"),
        ("configs/pretrain.yaml", 5, "training configuration: optimizer, learning rate, batch size, steps, warmup"),
    ]
    assert training.rules_found() == {"7/entry-point", "7/training-config", "7/training-framework"}
    results = fully_open.component("Evaluation results")
    assert [(e.path, e.line) for e in results.evidence] == [("README.md", 7), ("README.md", 47), ("eval/results.json", None)]
    assert fully_open.component("Model architecture").rule_item("9/known-config").note == (
        "complete config of a known family whose tensors match the weights (llama, match)")


def test_fully_open_release_is_verified_class_i(fully_open):
    mof = fully_open.to_dict()["mof"]
    assert (mof["class"], mof["label"]) == (1, "Class I - Open Science Model")
    assert mof["progress"] == {"1": 100, "2": 100, "3": 100}
    # MOT's "conditional" warning, which does not stop a class: Apache-2.0 on data-typed components (final and
    # intermediate parameters, metadata), and ODC-By-1.0, which is in none of MOT's type lists (datasets, evaluation
    # data, data card). Apache-2.0 is type-appropriate for documents and code.
    assert mof["not_type_appropriate"] == [10, 14, 19, 15, 24, 17]
    assert {(n["original"], n["spdx"]) for n in mof["licenses_normalized"]} == {
        ("text of LICENSE", "Apache-2.0"), ("apache-2.0", "Apache-2.0"), ("text of data/LICENSE", "ODC-By-1.0")}


def test_fully_open_release_conforms_to_osaid_and_tops_the_index_and_score(fully_open):
    assert fully_open.osaid.conformant is True and fully_open.osaid.missing == ()
    assert fully_open.osaid.sentence == ("OSAID 1.0: conformant; data information, the complete code and the parameters "
                                         "are in the release under OSI-approved terms.")
    assert {d.key: d.level for d in fully_open.osai_index.dimensions} == {
        key: "open" for key in ("datasources_basemodel", "datasources_endmodel", "weights_basemodel", "weights_endmodel",
                                "trainingcode", "code", "hardware_architecture", "preprint", "paper", "modelcard",
                                "datasheet", "licenses")}
    assert (fully_open.osai_index.score, fully_open.osai_index.total) == (1.0, 12.0)
    assert fully_open.score.score == 100.0
    assert all(p.status == "open" and p.points == p.weight for p in fully_open.score.parts)


# ------------------------------------------------------------------------------------------------ MOF claims


def _mof_document(components: dict[str, str | None], distribution: str | None = "Apache-2.0") -> dict:
    release = {
        "name": "Grok-1", "version": "314B", "producer": "xAI",
        "license": {"distribution": {"name": distribution}} if distribution else {},
        "components": [{"name": name, "description": "claimed", **({"license": lic} if lic else {})}
                       for name, lic in components.items()],
    }
    return {"framework": {"name": "Model Openness Framework", "version": "1.0", "date": "2024-12-15"}, "release": release}


CLASS_III_CLAIMS = {"Model architecture": None, "Model parameters (Final)": None, "Evaluation results": None,
                    "Model card": None, "Data card": None, "Technical report": None}


def test_claimed_class_above_verified_names_each_unsupported_claim(grok_root):
    document = _mof_document(CLASS_III_CLAIMS)
    openness = openness_of(grok_root, (document, "grok-1.mof.yml"))
    mof = openness.to_dict()["mof"]
    assert (mof["class"], mof["claimed_class"]) == (0, 3)
    assert mof["claimed_label"] == "Class III - Open Model"
    assert mof["claimed_progress"] == {"1": 0, "2": 60, "3": 100}  # MOT: 6 of Class II's 10 are claimed
    assert mof["claims_file"] == "grok-1.mof.yml"
    assert [(u["name"], u["claimed_license"]) for u in mof["unsupported_claims"]] == [
        ("Evaluation results", "Apache-2.0"), ("Model card", "Apache-2.0"), ("Data card", "Apache-2.0"),
        ("Technical report", "Apache-2.0")]
    assert mof["unsupported_claims"][0]["why"] == (
        "not in the release: no evaluation results (model-index metadata, result tables or result files) found in "
        "the 779 files of the release (770 of them weights)")
    assert mof["found_not_claimed"] == [{"id": 8, "name": "Inference code", "status": "open", "license": "Apache-2.0"}]
    by_name = {c.name: (c.claimed, c.claim_supported) for c in openness.components}
    assert by_name["Model architecture"] == (True, True)
    assert by_name["Data card"] == (True, False)
    assert by_name["Inference code"] == (False, None)
    assert by_name["Training code"] == (False, None)
    assert mof["sentence"] == (
        "MOF 1.0: Unclassified from the verified components (Class III 33%, Class II 0%, Class I 0%; 2 of the 6 Class III "
        "components open); grok-1.mof.yml claims Class III - Open Model, but the release does not support 4 claimed "
        "components (Evaluation results, Model card, Data card, Technical report).")
    assert {"original": "Apache-2.0", "spdx": "Apache-2.0", "source": "grok-1.mof.yml#release.license.distribution"} in mof["licenses_normalized"]


def test_claims_as_a_bare_document_and_as_a_file_in_the_release(tmp_path, grok_root):
    document = _mof_document({"Model architecture": "Apache 2.0", "Training code": "Apache-2.0"}, distribution=None)
    bare = openness_of(grok_root, document).mof
    # MOT compares ids exactly: "Apache 2.0" is not an open license id, so the file as written claims nothing open.
    assert (bare.claimed_class, bare.claimed.progress["3"]) == (0, 0.0)
    assert bare.claims_file is None
    assert [u.name for u in bare.unsupported_claims] == ["Training code"]
    assert ("Apache 2.0", "Apache-2.0") in {(n.original, n.spdx) for n in bare.licenses_normalized}

    root = tmp_path / "grok-with-mof"
    shutil.copytree(grok_root, root, ignore=shutil.ignore_patterns("ckpt-0"))
    (root / "mof.yml").write_text(yaml.safe_dump(_mof_document(CLASS_III_CLAIMS)))
    in_release = openness_of(root).mof
    assert (in_release.mof_class, in_release.claimed_class, in_release.claims_file) == (0, 3, "mof.yml")
    # Without the checkpoint, the final parameters are not in the release: one more unsupported claim.
    assert [u.name for u in in_release.unsupported_claims] == [
        "Model parameters (Final)", "Evaluation results", "Model card", "Data card", "Technical report"]


def test_claim_of_an_open_license_under_a_restrictive_one_is_unsupported(tmp_path):
    root = tmp_path / "restricted"
    root.mkdir()
    shutil.copyfile(LICENSE_TEXTS / "llama2.txt", root / "LICENSE")
    (root / "model.py").write_text("class Transformer:\n    pass\n")
    (root / "generate.py").write_text("def generate(prompt):\n    return prompt\n")
    openness = openness_of(root, _mof_document({"Model architecture": "Apache-2.0", "Inference code": None}, distribution="MIT"))
    architecture = openness.component("Model architecture")
    assert (architecture.status, architecture.license, architecture.claimed, architecture.claim_supported) == (
        "restricted", "llama2", True, False)
    assert architecture.sentence.startswith(
        "Model architecture: released under Llama 2 Community License Agreement (LICENSE), which is not open: restricts use: ")
    assert [(u.name, u.claimed_license, u.why) for u in openness.mof.unsupported_claims] == [
        ("Model architecture", "Apache-2.0",
         "in the release under llama2, which MOF does not count as open; the file claims Apache-2.0"),
        ("Inference code", "MIT", "in the release under llama2, which MOF does not count as open; the file claims MIT"),
    ]
    assert openness.osaid.conformant is False
    assert next(m for m in openness.osaid.missing if m.id == "inference-code").why == (
        "inference code is under llama2, not on the list")


# ------------------------------------------------------------------------------------ statuses and licenses


def test_a_component_without_any_license_is_closed(tmp_path):
    root = tmp_path / "unlicensed"
    root.mkdir()
    (root / "model.py").write_text("class Transformer:\n    pass\n")
    component = openness_of(root).component("Model architecture")
    assert (component.status, component.license, component.licenses) == ("closed", None, ())
    assert component.sentence == "Model architecture: released without a license; found model.py (model definition)."
    assert openness_of(root).to_dict()["mof"]["progress"] == {"1": 0, "2": 0, "3": 0}


def test_all_rights_reserved_is_closed_and_an_unknown_license_is_restricted(tmp_path):
    root = tmp_path / "reserved"
    root.mkdir()
    (root / "LICENSE").write_text("Copyright 2024 Example Corp.\nAll rights reserved.\n")
    (root / "model.py").write_text("class Transformer:\n    pass\n")
    component = openness_of(root).component(9)
    assert (component.status, component.license_source) == ("closed", "LICENSE")
    (root / "LICENSE").write_text("The Example Model License\n\nYou may use this model for research on Tuesdays.\n")
    component = openness_of(root).component(9)
    assert (component.status, component.license) == ("restricted", None)
    assert "LICENSE is a license openaudit does not recognise" in component.sentence


def test_declared_license_is_normalised_to_spdx_when_no_file_carries_one(tmp_path):
    root = tmp_path / "declared"
    root.mkdir()
    (root / "README.md").write_text("---\nlicense: mit\n---\n# A model\n")
    (root / "run.py").write_text("print('hi')\n")
    openness = openness_of(root)
    inference = openness.component("Inference code")
    assert (inference.status, inference.license, inference.license_source) == ("open", "MIT", "README.md (metadata license)")
    assert inference.sentence == ("Inference code: open under MIT (declared in README.md (metadata license)); "
                                  "found run.py (inference entry point).")
    assert {"original": "mit", "spdx": "MIT", "source": "README.md (metadata license)"} in openness.to_dict()["mof"]["licenses_normalized"]


def test_a_data_license_in_the_card_covers_data_and_the_worst_file_license_decides(tmp_path):
    root = tmp_path / "mixed"
    (root / "data").mkdir(parents=True)
    (root / "corpus").mkdir()
    (root / "README.md").write_text("---\nlicense: [apache-2.0, odc-by]\n---\n# A model\n")
    shutil.copyfile(LICENSE_TEXTS / "Apache-2.0.txt", root / "LICENSE")
    (root / "data" / "part-0.jsonl").write_text('{"text": "a"}\n')
    (root / "corpus" / "part-1.jsonl").write_text('{"text": "b"}\n')
    shutil.copyfile(LICENSE_TEXTS / "CC-BY-NC-4.0.txt", root / "corpus" / "LICENSE")
    datasets = openness_of(root).component("Datasets")
    assert [(c.key, c.source, c.origin, c.status) for c in datasets.licenses] == [
        ("CC-BY-NC-4.0", "corpus/LICENSE", "own", "restricted"),
        ("ODC-By-1.0", "README.md (metadata license)", "release_data", "open"),
    ]
    assert (datasets.status, datasets.license, datasets.license_source) == ("restricted", "CC-BY-NC-4.0", "corpus/LICENSE")
    assert "which is not open: non-commercial use only" in datasets.sentence


def test_links_in_the_card_are_claims_not_components(tmp_path):
    root = tmp_path / "linked"
    root.mkdir()
    (root / "README.md").write_text(
        "---\nlicense: apache-2.0\ndatasets:\n- allenai/dolma\n---\n# A model\n\n"
        "Read the paper: https://arxiv.org/abs/2402.00838v2 and see "
        "https://huggingface.co/datasets/allenai/dolma.\nThe training code is at https://github.com/allenai/OLMo.\n"
        "Checkpoints: `AutoModel.from_pretrained(name, revision=\"step1000-tokens4B\")`.\n"
    )
    openness = openness_of(root)
    paper = openness.component("Research paper")
    assert paper.status == "absent" and paper.linked
    assert [(e.kind, e.path, e.line, e.url) for e in paper.evidence] == [
        ("linked", "README.md", 8, "https://arxiv.org/abs/2402.00838")]
    assert paper.sentence == (
        "Research paper: not released; no research paper found in the 1 file of the release; README.md links "
        "https://arxiv.org/abs/2402.00838, which the release does not contain (a link is a claim).")
    datasets = openness.component("Datasets")
    assert datasets.status == "absent"
    assert [(e.line, e.url) for e in datasets.evidence] == [(3, "https://huggingface.co/datasets/allenai/dolma")]
    assert [e.url for e in openness.component("Training code").evidence] == ["https://github.com/allenai/OLMo"]
    assert [e.note for e in openness.component(24).evidence] == [
        "intermediate checkpoint published as a revision (step1000-tokens4B), linked, not in the release"]
    levels = {d.key: (d.level, d.because) for d in openness.osai_index.dimensions}
    assert levels["preprint"] == ("partial", "linked, not in the release: https://arxiv.org/abs/2402.00838")
    assert levels["trainingcode"][0] == "partial"
    assert levels["datasources_basemodel"][0] == "partial"
    assert openness.score.score == 0.0
    assert openness.osaid.missing[0].why == "none of datasets, research paper, technical report or data card is in the release"


def test_unreadable_weights_are_not_final_parameters(tmp_path):
    root = tmp_path / "broken"
    root.mkdir()
    (root / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": ")
    component = openness_of(root).component("Model parameters (Final)")
    assert component.status == "absent"
    assert [(e.kind, e.path) for e in component.evidence] == [("insufficient", "model.safetensors")]
    assert component.evidence[0].note == "model.safetensors could not be read completely"


def test_a_mof_file_in_the_release_does_not_license_it(tmp_path):
    root = tmp_path / "claims-only"
    root.mkdir()
    (root / "model.py").write_text("class Transformer:\n    pass\n")
    (root / "mof.yml").write_text(yaml.safe_dump(_mof_document({"Model architecture": "MIT"}, distribution="Apache-2.0")))
    openness = openness_of(root)
    architecture = openness.component("Model architecture")
    assert (architecture.status, architecture.claimed, architecture.claim_supported) == ("closed", True, False)
    assert [u.why for u in openness.mof.unsupported_claims] == [
        "in the release under no license, which MOF does not count as open; the file claims MIT"]
    assert (openness.mof.mof_class, openness.mof.claimed_class) == (0, 0)
    assert openness.mof.verified.progress["3"] == 0.0 and openness.mof.claimed.progress["3"] == 1 / 6 * 100


def test_weights_only_in_a_checkpoint_series_take_the_latest_as_final(tmp_path):
    from tests.builders.open_release import CONFIG, llama_tensors
    from tests.builders.safetensors_builder import write_safetensors

    root = tmp_path / "series"
    for step in (500, 1000, 1500):
        folder = root / f"stage1-step{step}"
        folder.mkdir(parents=True)
        write_safetensors(folder / "model.safetensors", llama_tensors())
    (root / "config.json").write_text(json.dumps(CONFIG))
    openness = openness_of(root)
    final = openness.component("Model parameters (Final)")
    assert [(e.path, e.note) for e in final.evidence] == [
        ("stage1-step1500/model.safetensors", f"readable weights: 1 safetensors file, {PARAMETERS:,} parameters, headers read")]
    intermediate = openness.component(24)
    assert [e.path for e in intermediate.evidence] == ["stage1-step500", "stage1-step1000", "stage1-step1500"]
    assert (final.status, intermediate.status) == ("closed", "closed")


def test_hostile_card_headings_are_cut(tmp_path):
    root = tmp_path / "hostile-card"
    root.mkdir()
    lines = ["# " + "[" * 3000 + " #" * 500, "## " + "# " * 3000 + "x"] * 300
    (root / "README.md").write_text("\n".join(lines) + "\n## Evaluation\n\n| a | b |\n")
    started = time.monotonic()
    openness = openness_of(root)
    assert time.monotonic() - started < 10
    assert [(e.path, e.line) for e in openness.component("Evaluation results").evidence] == [("README.md", 601)]
