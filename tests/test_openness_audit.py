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
