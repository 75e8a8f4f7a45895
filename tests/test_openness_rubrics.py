"""The openness rubrics as data: they validate, broken ones are refused with the path of the problem, the score's
formula page agrees with its YAML, `describe_rubrics` covers every criterion, and detection reads within bounds."""

from __future__ import annotations

import copy
import re
import time
from pathlib import Path

import pytest
import yaml

from openaudit.release import Release, ReleaseFile, classify
from openaudit.rubric.components import (
    assess_components,
    compile_globs,
    detection_rubric,
    detection_rubric_from_dict,
)
from openaudit.rubric.loader import RubricError, load_rubric, load_rubric_file, validate_rubric
from openaudit.rubric.openness import describe_rubrics
from openaudit.rubric.osai_index import osai_rubric, osai_rubric_from_dict
from openaudit.rubric.osaid import osaid_rubric, osaid_rubric_from_dict
from openaudit.rubric.score import score_rubric, score_rubric_from_dict

ROOT = Path(__file__).resolve().parents[1]
RUBRICS = ("mof", "components", "osaid", "osai_index", "score")


@pytest.mark.parametrize("name", RUBRICS)
def test_every_rubric_validates_against_the_schema(name):
    document = load_rubric_file(ROOT / "checks" / f"{name}.yaml")
    assert document["kind"] == name


def test_rubrics_build_with_their_criteria():
    assert len(detection_rubric().components) == 17
    assert [c.id for c in osaid_rubric().criteria] == [
        "data-information", "data-preprocessing-code", "training-code", "inference-code", "supporting-libraries",
        "model-architecture", "model-parameters"]
    assert [d.key for d in osai_rubric().dimensions] == [
        "datasources_basemodel", "datasources_endmodel", "weights_basemodel", "weights_endmodel", "trainingcode",
        "code", "hardware_architecture", "preprint", "paper", "modelcard", "datasheet", "licenses"]
    score = score_rubric()
    assert sum(c.weight for c in score.criteria) == 100
    assert dict(score.values) == {"open": 1.0, "restricted": 0.5, "closed": 0.25, "absent": 0.0}


def test_broken_rubric_file_is_rejected_naming_file_and_path(tmp_path):
    document = load_rubric("components")
    document["components"][7]["rules"][0]["card_text"] = {"patterns": ["x"]}  # two kinds of rule in one
    document["limits"]["seconds"] = 0
    path = tmp_path / "components.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    with pytest.raises(RubricError) as caught:
        load_rubric_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path} does not match rubric.schema.json")
    assert "$.components[7].rules[0]: " in message
    assert "$.limits.seconds: 0 is less than or equal to the minimum of 0" in message


def test_components_rubric_checks_what_the_schema_cannot():
    document = load_rubric("components")
    broken = copy.deepcopy(document)
    broken["components"][7]["rules"][1]["content"]["patterns"]["optimizer"] = "(unclosed"
    validate_rubric(broken)
    with pytest.raises(RubricError, match=re.escape(
            "components.yaml: $.components[7].rules[1].content.patterns.optimizer: invalid regular expression")):
        detection_rubric_from_dict(broken, "components.yaml")
    broken = copy.deepcopy(document)
    del broken["components"][-1]
    with pytest.raises(RubricError, match=r"no detection rules for MOF components \[17\]"):
        detection_rubric_from_dict(broken, "components.yaml")
    broken = copy.deepcopy(document)
    broken["license_chains"]["data"] = ["own", "release_dataset"]
    with pytest.raises(RubricError, match=r"\$\.license_chains\.data: 'release_dataset' is not own, release or a name"):
        detection_rubric_from_dict(broken, "components.yaml")


def test_criteria_rubrics_check_their_references():
    osai = load_rubric("osai_index")
    osai["criteria"][8]["open_when"][0]["rule_any"] = ["21/doi-links"]
    with pytest.raises(RubricError, match=re.escape("$.criteria[8].open_when[0].rule_any: '21/doi-links' is not a rule")):
        osai_rubric_from_dict(osai, "osai_index.yaml")
    osaid = load_rubric("osaid")
    osaid["criteria"][0]["license"] = "osi_approved | open_datum"
    with pytest.raises(RubricError, match=re.escape("$.criteria[0].license: unknown license list 'open_datum'")):
        osaid_rubric_from_dict(osaid, "osaid.yaml")
    osaid = load_rubric("osaid")
    osaid["criteria"][2]["components"] = [7, 23]
    with pytest.raises(RubricError, match=re.escape("$.criteria[2].components: [23] are not MOF component ids")):
        osaid_rubric_from_dict(osaid, "osaid.yaml")
    score = load_rubric("score")
    score["criteria"][0]["weight"] = 11
    with pytest.raises(RubricError, match=re.escape("$.criteria: the weights add up to 101, not 100")):
        score_rubric_from_dict(score, "score.yaml")
    score = load_rubric("score")
    score["criteria"][0]["wieght"] = 1
    with pytest.raises(RubricError, match=re.escape("$.criteria[0]: Additional properties are not allowed ('wieght'")):
        validate_rubric(score, "score.yaml")


def test_score_page_agrees_with_the_yaml():
    page = (ROOT / "checks" / "score.md").read_text(encoding="utf-8")
    rows = {}
    for line in page.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[3].isdigit():
            rows[cells[1]] = int(cells[3])
    assert rows == {c.name: c.weight for c in score_rubric().criteria}
    groups = dict(re.findall(r"^\| ([A-Z][\w ]+?) \((\d+)\)", page, re.M))
    assert {name: int(points) for name, points in groups.items()} == {
        name: weight for name, weight in score_rubric().groups.values()}
    for status, value in score_rubric().values.items():
        assert re.search(rf"\| `{status}` +\|.*\| {value:g} +\|", page), status


def test_describe_rubrics_lists_every_criterion():
    rows = describe_rubrics()
    kinds = [row["kind"] for row in rows]
    detection_rules = sum(len(c.rules) for c in detection_rubric().components)
    assert (kinds.count("components"), kinds.count("mof"), kinds.count("osaid"), kinds.count("osai_index"),
            kinds.count("score")) == (detection_rules, 17, 7, 12, 16)
    assert all(row["checks"] and row["scoring"] and row["rubric"] and row["version"] for row in rows)
    by_id = {(row["kind"], row["id"]): row for row in rows}
    assert by_id[("mof", "7")]["scoring"].startswith("required for Class II, Class I")
    assert by_id[("osaid", "data-information")]["checks"] == (
        "Datasets or Research paper or Technical report or Data card in the release under osi_approved | open_data")
    assert by_id[("osai_index", "licenses")]["checks"].startswith("open when at least 3 of these areas open (weights: Model parameters (Final)")
    assert by_id[("score", "paper-or-report")]["checks"] == "status of Research paper or Technical report (the best of them)"
    assert by_id[("score", "training-code")]["scoring"] == (
        "12 points x value (open 1, restricted 0.5, closed 0.25, absent 0); score = sum of points, 0-100")
    assert by_id[("components", "24/checkpoint-series")]["checks"].startswith("at least 2 checkpoints numbered by")


@pytest.mark.parametrize("pattern, path, matches", [
    ("train*.py", "train.py", True),
    ("train*.py", "scripts/train_lm.py", True),
    ("train*.py", "scripts/pretrain.py", False),
    ("**/data/**", "data/train/a.jsonl", True),
    ("**/data/**", "corpus/data/a.jsonl", True),
    ("**/data/**", "metadata/a.jsonl", False),
    ("**/eval/**/*.py", "eval/run.py", True),
    ("**/eval/**/*.py", "src/eval/tasks/run.py", True),
    ("config.json", "sub/config.json", True),
    ("LICEN[CS]E*", "Licence.md", True),
    ("**/*/__init__.py", "__init__.py", False),
    ("**/*/__init__.py", "pkg/__init__.py", True),
])
def test_globs(pattern, path, matches):
    assert bool(compile_globs([pattern]).search(path)) is matches


def _release(root: Path) -> Release:
    files = tuple(ReleaseFile(p.relative_to(root).as_posix(), p, p.stat().st_size, classify(p.relative_to(root).as_posix()))
                  for p in sorted(root.rglob("*")) if p.is_file())
    return Release(root, "directory", files)


def test_content_reads_stay_within_the_budget(tmp_path):
    root = tmp_path / "release"
    root.mkdir()
    # A line long enough to make a backtracking pattern slow, and a match placed after the bytes that are read.
    (root / "a_hostile.py").write_text("def " + "sample" * 200_000 + "x\n")
    (root / "b_late.py").write_text("#" * 300_000 + "\nimport optax\n")
    for index in range(5):
        (root / f"util_{index}.py").write_text("import optax\n")
    document = load_rubric("components")
    document["limits"]["max_files_read"] = 4
    rubric = detection_rubric_from_dict(document, "components.yaml")
    started = time.monotonic()
    result = assess_components(_release(root), None, None, None, None, rubric)
    assert time.monotonic() - started < 5
    training = result.component("Training code")
    assert [e.path for e in training.evidence] == ["util_0.py", "util_1.py"]  # b_late.py: the import is past the head
    assert result.limits_hit == ("3 file(s) were not read for content (budget of files, bytes or time spent)",)
    assert result.component("Inference code").status == "absent"  # the hostile line is cut, not matched
