"""Openness through the whole audit and the CLI: the Grok-1-shaped release, a fully open release, and a
Model Openness Tool file passed with --claims."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from openaudit.cli import main
from openaudit.report.schema import validation_errors
from tests.builders.grok_release import write_grok_release
from tests.builders.open_release import write_open_release


def audit_json(capsys, *args: str) -> dict:
    assert main(["audit", *args, "--no-hash", "--format", "json"]) in (0, 1)
    document = json.loads(capsys.readouterr().out)
    assert validation_errors(document) == []
    return document


@pytest.fixture(scope="module")
def grok(tmp_path_factory) -> Path:
    return write_grok_release(tmp_path_factory.mktemp("grok") / "grok-1")


def test_grok_release_openness(grok: Path, capsys) -> None:
    openness = audit_json(capsys, str(grok))["openness"]
    status = {c["name"]: (c["status"], c["license"]) for c in openness["components"]}
    for name in ("Model architecture", "Model parameters (Final)", "Inference code"):
        assert status[name] == ("open", "Apache-2.0")
    for name in ("Training code", "Datasets", "Data card", "Technical report", "Evaluation results"):
        assert status[name] == ("absent", None)
    assert (openness["mof"]["class"], openness["mof"]["progress"]) == (0, {"1": 0, "2": 0, "3": 33.33333333333333})
    assert openness["osaid"]["conformant"] is False
    missing = {item["name"] for item in openness["osaid"]["missing"]}
    assert {"Data information", "Training code"} <= missing
    training = next(c for c in openness["components"] if c["name"] == "Training code")
    assert training["sentence"] == (
        "Training code: not released; no training entry point or configuration found in the 779 files of the "
        "release (770 of them weights).")


def test_fully_open_release_is_class_one(tmp_path: Path, capsys) -> None:
    document = audit_json(capsys, str(write_open_release(tmp_path / "open")))
    assert document["openness"]["mof"]["class"] == 1
    assert {c["status"] for c in document["openness"]["components"]} == {"open"}
    assert document["openness"]["osaid"]["conformant"] is True
    assert document["openness"]["score"]["value"] == 100
    assert document["license"]["status"] == "consistent"


def test_claims_file_above_the_evidence(grok: Path, tmp_path: Path, capsys) -> None:
    claims = {
        "framework": {"name": "Model Openness Framework", "version": "1.0", "date": "2024-12-15"},
        "release": {
            "name": "Grok-1", "license": {"distribution": {"name": "Apache-2.0"}},
            "components": [{"name": n, "description": "claimed"} for n in (
                "Model architecture", "Model parameters (Final)", "Evaluation results", "Model card", "Data card",
                "Technical report")],
        },
    }
    path = tmp_path / "grok.mof.yml"
    path.write_text(yaml.safe_dump(claims))
    mof = audit_json(capsys, str(grok), "--claims", str(path))["openness"]["mof"]
    assert (mof["class"], mof["claimed_class"]) == (0, 3)
    assert [u["name"] for u in mof["unsupported_claims"]] == [
        "Evaluation results", "Model card", "Data card", "Technical report"]
    assert main(["audit", str(grok), "--no-hash", "--format", "json", "--claims", str(tmp_path / "nope.yml")]) == 2


# -- a MOF file of the release with values of the wrong type -----------------------------------------------

MOF_HEAD = "framework:\n  name: Model Openness Framework\nrelease:\n  name: x\n"


@pytest.mark.parametrize(
    ("release_body", "error"),
    [
        ("  components: 5\n", "release.components must be a list of components"),
        ("  components: 'abc'\n", "release.components must be a list of components"),
        ("  license: [1]\n  components:\n    - name: 5\n      license: {a: 1}\n    - 7\n",
         "release.components[0].name must be a string"),
        ("  license:\n    code: {name: 5}\n  components: []\n", "release.license.code.name must be a string, not int"),
        ("  license: 'MIT'\n  components:\n    - name: Model parameters (Final)\n      license: 5\n",
         "release.components[0].license must be a string, not int"),
    ],
)
def test_a_mof_file_of_wrong_types_is_a_finding_not_a_crash(tmp_path: Path, capsys, release_body: str, error: str) -> None:
    from tests.builders.safetensors_builder import write_safetensors

    release = tmp_path / "release"
    release.mkdir()
    write_safetensors(release / "model.safetensors", {"w": ("F32", (2, 2))})
    (release / "mof.yml").write_text(MOF_HEAD + release_body)
    document = audit_json(capsys, str(release))
    assert document["openness"]["mof"]["claims_error"] == error
    assert [f for f in document["findings"] if f["id"] == "invalid-mof-file"] == [{
        "id": "invalid-mof-file", "severity": "medium", "location": "mof.yml",
        "message": f"the Model Openness Tool file is not valid: {error}; its claimed MOF class is not computed"}]

    # the same file named with --claims is bad usage, as `openaudit classify` says
    assert main(["audit", str(release), "--no-hash", "--format", "json", "--claims", str(release / "mof.yml")]) == 2
    assert capsys.readouterr().err == f"openaudit: --claims {release / 'mof.yml'}: {error}\n"
    assert main(["classify", str(release / "mof.yml")]) == 2
    assert capsys.readouterr().err == f"openaudit: {release / 'mof.yml'}: {error}\n"


def test_a_file_naming_the_framework_without_a_release_mapping_is_a_finding(tmp_path: Path, capsys) -> None:
    release = tmp_path / "release"
    release.mkdir()
    (release / "mof.yml").write_text("framework: {name: Model Openness Framework}\nrelease: [1, 2]\n")
    document = audit_json(capsys, str(release))
    assert [f for f in document["findings"] if f["id"] == "invalid-mof-file"] == [{
        "id": "invalid-mof-file", "severity": "medium", "location": "mof.yml",
        "message": "the file names an openness framework but has no `release` mapping; its claims are not read"}]


@pytest.mark.parametrize(
    "document",
    [
        5, "x", [1], {"release": 5}, {"release": {"name": 5, "license": [1], "components": 5}},
        {"release": {"license": {5: {"name": "MIT"}, "code": "MIT", "data": {"name": 5}}, "components": "abc"}},
        {"release": {"components": [7, None, {"name": 5}, {"name": "Model parameters (Final)", "license": 5}]}},
    ],
)
def test_claims_from_mof_skips_every_value_of_the_wrong_type(document) -> None:
    from openaudit.inspect.claim_sources import claims_from_mof

    assert claims_from_mof(document, "mof.yml") == []


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"framework": {"name": "Model Openness Framework"}, "release": {}}, True),
        ({"framework": {"name": 5}, "release": {}}, False),
        ({"framework": {"name": ["openness"]}, "release": {}}, False),
        ({"framework": "Model Openness Framework", "release": {}}, False),
        ({"framework": {"name": "Model Openness Framework"}, "release": [1]}, False),
        ([{"framework": {"name": "Model Openness Framework"}}], False),
        (None, False),
    ],
)
def test_is_mof_document_on_wrong_types(document, expected: bool) -> None:
    from openaudit.inspect.claim_sources import is_mof_document

    assert is_mof_document(document) is expected
