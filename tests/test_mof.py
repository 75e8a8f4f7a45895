"""MOF classification: parity with the Model Openness Tool, its quirks, verified components, rubric loading."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml

from openaudit.errors import MalformedInput
from openaudit.rubric.loader import RubricError, load_rubric, load_rubric_file, validate_rubric
from openaudit.rubric.mof import (
    ComponentEvidence,
    MotFileError,
    classify_components,
    classify_mot,
    classify_mot_file,
    mof_rubric,
    rubric_from_dict,
)

DATA = Path(__file__).parent / "data" / "mof"
MOT_FILES = sorted(p for p in DATA.glob("*.yml") if p.name != "mof.settings.yml")

# Type-appropriate open licenses, one per MOF content type, for hand-made releases.
OPEN_BY_TYPE = {"code": "MIT", "data": "CDLA-Permissive-2.0", "document": "CC-BY-4.0"}
CLASS_III = [9, 10, 12, 13, 14, 11]
CLASS_II_EXTRA = [7, 8, 18, 19]
CLASS_I_EXTRA = [15, 16, 24, 21]


def _expected_results() -> dict[str, dict]:
    text = (DATA / "expected_results.json").read_text(encoding="utf-8")
    models = json.loads(re.sub(r",(\s*[}\]])", r"\1", text))["models"]  # MOT left trailing commas in
    return {model["release"]["name"]: model["classification"] for model in models}


def _mot_document(components: dict[int, str | None], license: dict | None = None) -> dict:
    """A MOT model document listing ``components`` (id -> component license, None for no `license` key)."""
    entries = []
    for cid, component_license in components.items():
        entry = {"name": mof_rubric().component(cid).name, "description": "test"}
        if component_license is not None:
            entry["license"] = component_license
        entries.append(entry)
    return {
        "framework": {"name": "Model Openness Framework", "version": "1.0", "date": "2024-12-15"},
        "release": {"name": "test", "producer": "test", "license": license or {}, "components": entries},
    }


def _open_licensed(ids) -> dict[int, str]:
    return {cid: OPEN_BY_TYPE[mof_rubric().component(cid).type] for cid in ids}


def _progress(result) -> dict[str, float]:
    return dict(result.progress)


def _component(result, cid):
    return next(c for c in result.components if c.id == cid)


# ------------------------------------------------------------------------------------------------------
# Conformance: MOT's own 27 test files


def test_every_expected_result_has_exactly_one_file():
    names = [yaml.safe_load(path.read_text(encoding="utf-8"))["release"]["name"] for path in MOT_FILES]
    assert len(MOT_FILES) == 27
    assert sorted(names) == sorted(_expected_results())


@pytest.mark.parametrize("path", MOT_FILES, ids=lambda p: p.stem)
def test_mot_conformance_file(path):
    name = yaml.safe_load(path.read_text(encoding="utf-8"))["release"]["name"]
    expected = _expected_results()[name]

    result = classify_mot_file(path)

    assert result.mof_class == expected["class"]
    assert result.label == expected["label"]
    for key in ("1", "2", "3"):
        assert result.progress[key] == float(expected["progress"][key])  # exact float, no tolerance
    # Same JSON numbers as MOT's API, integers included (0, 60, 100).
    assert json.dumps(result.to_dict()["progress"], sort_keys=True) == json.dumps(expected["progress"], sort_keys=True)
    # The file name's class-III figure is still current (its class-I/II figures are from an older MOT).
    class_iii_in_name = int(re.search(r"C3_(\d+)%", path.name).group(1))
    assert round(result.progress["3"]) == class_iii_in_name


def test_mot_conformance_class_counts():
    classes = [classify_mot_file(path).mof_class for path in MOT_FILES]
    assert {c: classes.count(c) for c in (0, 1, 2, 3)} == {0: 21, 1: 2, 2: 2, 3: 2}


def test_mot_conformance_specific_figures():
    result = classify_mot_file(DATA / "Class2RTestFile_C1_77%-C2_100%-C3_100%_11C_1G_11L_11V_0I_11T.yml")
    assert (result.mof_class, _progress(result)) == (2, {"1": 76.92307692307693, "2": 100.0, "3": 100.0})
    result = classify_mot_file(DATA / "OnlyGlobalLicense_C1_87%-C2_91%-C3_83%_15C_3G_0L_15V_0I_15T.yml")
    assert (result.mof_class, _progress(result)) == (0, {"1": 0.0, "2": 0.0, "3": 83.33333333333334})


# ------------------------------------------------------------------------------------------------------
# checks/mof.yaml against MOT's data files


def test_rubric_components_match_mot_settings():
    settings = yaml.safe_load((DATA / "mof.settings.yml").read_text(encoding="utf-8"))["components"]
    rubric = mof_rubric()
    assert len(rubric.components) == len(settings) == 17
    for entry in settings:
        component = rubric.component(entry["id"])
        assert component.name == entry["name"]
        assert component.type == entry["content_type"]
        assert component.required is entry["required"]
        assert component.classes == tuple(range(entry["class"], 0, -1))
    assert [len(rubric.required_ids(k)) for k in (3, 2, 1)] == [6, 10, 14]
    assert rubric.optional_ids(1) == (20, 22, 17)


def test_rubric_license_lists_match_mot_import():
    spec = importlib.util.spec_from_file_location("mot_licenses", DATA / "mot_licenses.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = module.license_sets(DATA)
    rubric = load_rubric("mof")["licenses"]
    assert rubric["osi_approved"] == expected["osi_approved"]
    assert rubric["fsf_libre"] == expected["fsf_libre"]
    for content_type in ("code", "data", "document"):
        assert rubric["type_appropriate"][content_type] == expected[f"type_appropriate.{content_type}"]
    assert len(set(rubric["osi_approved"]) | set(rubric["fsf_libre"])) == 199
    assert len(rubric["open_data"]) == 31
    assert rubric["also_open"] == ["OpenMDW-1.0"]


# ------------------------------------------------------------------------------------------------------
# Quirks of MOT's rules


def test_license_ids_match_exactly():
    for spelling, status in [("Apache-2.0", "open"), ("Apache 2.0", "invalid"), ("apache-2.0", "invalid"),
                             ("Apache-2.0 AND MIT", "invalid"), ("MIT license", "invalid")]:
        result = classify_mot(_mot_document({9: spelling}))
        component = _component(result, 9)
        assert (component.status, component.license_open, component.license) == (status, status == "open", spelling)
        assert _progress(result)["3"] == (16.666666666666664 if status == "open" else 0.0)  # (1 / 6) * 100


def test_pddl_is_not_open_but_odc_pddl_is():
    result = classify_mot(_mot_document({10: "PDDL-1.0"}))
    params = _component(result, 10)
    # PDDL-1.0 is a MOF data license (type-appropriate) and still not open: the PHP list says ODC-PDDL-1.0.
    assert (params.status, params.license_open, params.type_appropriate) == ("invalid", False, True)
    assert _component(classify_mot(_mot_document({10: "ODC-PDDL-1.0"})), 10).status == "open"
    for offered_but_closed in ("C-UDA-1.0", "CC-PDDC", "FreeBSD-DOC", "MulanPSL-1.0"):
        assert not mof_rubric().is_open(offered_but_closed)
    assert mof_rubric().open_because("OpenMDW-1.0") == "listed"


def test_research_paper_replaces_technical_report():
    components = _open_licensed([9, 10, 12, 13, 14, 21])
    result = classify_mot(_mot_document(components))
    # The paper joins Class II as well: 6 of 10 (MOT's Class3RTestFile shows the same 60).
    assert (result.mof_class, _progress(result)) == (3, {"1": 0.0, "2": 60.0, "3": 100.0})
    paper, report = _component(result, 21), _component(result, 11)
    assert paper.counts_for == (3, 2, 1) and paper.substitutes_for == 11
    assert report.status == "absent" and report.substituted_by == 21

    # A technical report under a license that is not open is ignored once the paper is open.
    result = classify_mot(_mot_document({**components, 11: "Proprietary"}))
    assert (result.mof_class, _progress(result)["3"]) == (3, 100.0)
    assert _component(result, 11).status == "invalid"

    # Class I then needs 13 components instead of 14.
    result = classify_mot(_mot_document(_open_licensed(CLASS_III[:-1] + CLASS_II_EXTRA + CLASS_I_EXTRA)))
    assert (result.mof_class, _progress(result)) == (1, {"1": 100.0, "2": 100.0, "3": 100.0})


def test_without_report_or_paper_class_iii_is_short():
    result = classify_mot(_mot_document(_open_licensed([9, 10, 12, 13, 14] + CLASS_II_EXTRA)))
    assert (result.mof_class, _progress(result)) == (0, {"1": 0.0, "2": 0.0, "3": 83.33333333333334})


def test_component_license_overrides_global_license_per_type():
    release_license = {
        "distribution": {"name": "Apache-2.0"},
        "document": {"name": "CC-BY-4.0"},
        "data": {"name": "LicenseRef-Custom"},
    }
    result = classify_mot(_mot_document({9: None, 10: None, 13: None, 14: "unlicensed", 12: "CC0-1.0"},
                                        release_license))
    sources = {c.id: (c.license, c.license_source, c.status) for c in result.components if c.included}
    assert sources == {
        9: ("Apache-2.0", "release.license.distribution", "open"),  # no code license: distribution applies
        10: ("LicenseRef-Custom", "release.license.data", "invalid"),  # the data license beats distribution
        13: ("CC-BY-4.0", "release.license.document", "open"),
        14: (None, "component", "unlicensed"),  # explicitly unlicensed: no fallback to the globals
        12: ("CC0-1.0", "component", "open"),
    }
    assert _progress(result)["3"] == 50.0


def test_php_empty_license_names_fall_through():
    # PHP's empty() finds "0" empty: the distribution license applies instead of a data license "0".
    result = classify_mot(_mot_document({10: None}, {"data": {"name": "0"}, "distribution": {"name": "MIT"}}))
    assert (_component(result, 10).license, _component(result, 10).status) == ("MIT", "open")
    result = classify_mot(_mot_document({10: ""}, {"distribution": {"name": "MIT"}}))
    assert _component(result, 10).status == "unlicensed"


def test_open_license_of_the_wrong_type_counts_with_a_warning():
    result = classify_mot(_mot_document({10: "CC-BY-4.0", 9: "MIT"}))
    params = _component(result, 10)
    assert (params.status, params.type_appropriate, params.counts_for) == ("open", False, (3, 2, 1))
    assert result.not_type_appropriate == (10,)
    assert _progress(result)["3"] == pytest.approx(100 / 3) and _progress(result)["3"] == 33.33333333333333


def test_class_ii_progress_once_class_iii_is_met():
    result = classify_mot(_mot_document(_open_licensed(CLASS_III + [7, 8])))
    assert (result.mof_class, _progress(result)) == (3, {"1": 0.0, "2": 80.0, "3": 100.0})
    assert result.to_dict()["progress"] == {"1": 0, "2": 80, "3": 100}
    assert result.label == "Class III - Open Model"


def test_optional_components_never_count():
    result = classify_mot(_mot_document(_open_licensed([20, 22, 17])))
    assert (result.mof_class, _progress(result)) == (0, {"1": 0.0, "2": 0.0, "3": 0.0})
    assert _component(result, 17).counts_for == (1,)


def test_unknown_component_names_are_ignored_and_reported():
    document = _mot_document({9: "MIT"})
    document["release"]["components"].append({"name": "Model weights", "license": "MIT"})
    result = classify_mot(document)
    assert result.ignored_components == ("Model weights",)
    assert result.to_dict()["ignored_components"] == ["Model weights"]
    assert _progress(result)["3"] == 16.666666666666664


# ------------------------------------------------------------------------------------------------------
# classify_components: the same rules over verified evidence


def test_classify_components_class_i():
    evidence = {cid: ComponentEvidence(True, license) for cid, license in
                _open_licensed(CLASS_III + CLASS_II_EXTRA + CLASS_I_EXTRA).items()}
    evidence["Model metadata"] = ComponentEvidence(True, "CDLA-Permissive-2.0")  # names work as keys too
    result = classify_components(evidence)
    assert (result.mof_class, _progress(result)) == (1, {"1": 100.0, "2": 100.0, "3": 100.0})
    assert result.label == "Class I - Open Science Model"
    assert result.not_type_appropriate == ()
    assert [c.status for c in result.components].count("open") == 15


def test_classify_components_grok1_like():
    grok = {
        9: ComponentEvidence(present=True, license="Apache-2.0"),  # model architecture (JAX code)
        10: ComponentEvidence(present=True, license="Apache-2.0"),  # final parameters
        8: ComponentEvidence(present=True, license="Apache-2.0"),  # inference code
        7: ComponentEvidence(present=False),  # no training code
        15: ComponentEvidence(present=False),  # no data
    }
    result = classify_components(grok)
    assert result.mof_class == 0
    assert _progress(result) == {"1": 0.0, "2": 0.0, "3": 33.33333333333333}  # 2 of 6, as MOT says for Grok-1
    params = _component(result, 10)
    # MOT types parameters as data; Apache-2.0 is open but not a data license: counted, with a warning.
    assert (params.status, params.type_appropriate, params.counts_for) == ("open", False, (3, 2, 1))
    assert _component(result, 8).counts_for == (2, 1)
    assert _component(result, 7).status == "absent"
    assert result.to_dict()["class"] == 0


def test_classify_components_inputs():
    result = classify_components({9: {"present": True, "license": None}, 10: {"present": True, "license": "MIT"}})
    assert (_component(result, 9).status, _component(result, 10).status) == ("unlicensed", "open")
    with pytest.raises(ValueError, match="not a MOF component"):
        classify_components({99: ComponentEvidence(True, "MIT")})


def test_to_dict_shape():
    result = classify_components({9: ComponentEvidence(True, "MIT")})
    data = result.to_dict()
    assert set(data) == {"class", "label", "progress", "components", "not_type_appropriate",
                         "ignored_components", "rubric"}
    assert data["rubric"] == {"name": "Model Openness Framework", "version": "1.0"}
    assert [c["id"] for c in data["components"]] == [9, 10, 12, 13, 14, 11, 20, 7, 8, 18, 19, 22, 15, 16, 24,
                                                     21, 17]
    assert data["components"][0] == {
        "id": 9, "name": "Model architecture", "type": "code", "required_for": [3, 2, 1], "optional_for": [],
        "included": True, "license": "MIT", "license_source": "component", "license_open": True,
        "open_because": "osi-approved", "type_appropriate": True, "status": "open", "counts_for": [3, 2, 1],
        "substitutes_for": None, "substituted_by": None,
    }
    json.dumps(data)  # plain JSON types only


# ------------------------------------------------------------------------------------------------------
# MOT files are read safely


def test_invalid_yaml_is_malformed_input(tmp_path):
    path = tmp_path / "broken.yml"
    path.write_text("release: [unclosed\n", encoding="utf-8")
    with pytest.raises(MalformedInput) as caught:
        classify_mot_file(path)
    assert caught.value.finding_id == "invalid-yaml"


def test_yaml_code_tags_are_refused(tmp_path):
    path = tmp_path / "hostile.yml"
    path.write_text("release: !!python/object/apply:os.system ['true']\n", encoding="utf-8")
    with pytest.raises(MalformedInput) as caught:
        classify_mot_file(path)
    assert caught.value.finding_id == "yaml-code-tag"


def test_oversized_file_is_refused(tmp_path):
    path = tmp_path / "big.yml"
    path.write_bytes(b"#" * (1024 * 1024 + 1))
    with pytest.raises(MalformedInput) as caught:
        classify_mot_file(path)
    assert caught.value.finding_id == "file-too-large"


@pytest.mark.parametrize(
    "document, where",
    [
        ([1, 2], "no `release` mapping"),
        ({"release": {"name": "x"}}, "release.components must be a list"),
        ({"release": {"components": ["Model card"]}}, "release.components[0] must be a mapping"),
        ({"release": {"components": [{"name": 7}]}}, "release.components[0].name must be a string"),
        ({"release": {"components": [{"name": "Model card", "license": 2.0}]}},
         "release.components[0].license must be a string"),
        ({"release": {"components": [], "license": {"code": {"name": ["MIT"]}}}},
         "release.license.code.name must be a string"),
    ],
)
def test_not_a_mot_file(tmp_path, document, where):
    path = tmp_path / "model.yml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    with pytest.raises(MotFileError) as caught:
        classify_mot_file(path)
    assert caught.value.finding_id == "invalid-mof-file"
    assert str(caught.value).startswith(f"{path}: ")
    assert where in str(caught.value)


# ------------------------------------------------------------------------------------------------------
# Rubric loading and the rubric schema


def test_load_rubric_returns_independent_copies():
    first = load_rubric("mof")
    first["components"].clear()
    assert len(load_rubric("mof")["components"]) == 17


def test_load_rubric_refuses_bad_names():
    with pytest.raises(RubricError, match="invalid rubric name"):
        load_rubric("../mof")
    with pytest.raises(RubricError, match="no rubric named 'nonexistent'"):
        load_rubric("nonexistent")


def test_rubric_breaking_the_schema_names_file_and_path(tmp_path):
    document = load_rubric("mof")
    document["components"][3]["type"] = "weights"
    del document["licenses"]["open_data"]
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    with pytest.raises(RubricError) as caught:
        load_rubric_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path} does not match rubric.schema.json")
    assert "$.components[3].type: 'weights' is not one of" in message
    assert "$.licenses: 'open_data' is a required property" in message


def test_rubric_with_unknown_key_is_refused():
    document = load_rubric("mof")
    document["componets"] = []
    with pytest.raises(RubricError, match=r"\$: Additional properties are not allowed \('componets'"):
        validate_rubric(document, "typo.yaml")


def test_rubric_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("kind: mof\nname: [x\n", encoding="utf-8")
    with pytest.raises(RubricError, match=r"bad.yaml line \d+ is not valid YAML"):
        load_rubric_file(path)


def test_mof_rubric_consistency_is_checked():
    document = load_rubric("mof")
    document["components"][0]["required_for"] = [3]  # classes are cumulative: [3, 2, 1]
    validate_rubric(document)  # the schema allows it ...
    with pytest.raises(RubricError, match=r"components\[0\] \(Model architecture\) lists classes \[3\]"):
        rubric_from_dict(document, "mof.yaml")  # ... the rubric builder does not


@pytest.mark.parametrize("kind", ["osaid", "osai_index", "score"])
def test_schema_fits_criteria_rubrics(kind):
    document = {
        "kind": kind,
        "name": "Example framework",
        "version": "1.0",
        "source": {"url": "https://example.org/framework"},
        "scale": {"levels": [{"id": "open", "value": 1}, {"id": "partial", "value": 0.5},
                             {"id": "closed", "value": 0}]},
        "groups": [{"id": "availability", "name": "Availability"}],
        "criteria": [
            {"id": "weights", "name": "Model weights", "group": "availability", "components": [10],
             "rule": "all", "license": "osi_approved", "weight": 1, "levels": {"partial": "gated download"}},
        ],
        "aggregate": {"method": "mean", "range": [0, 1]},
        "formula": "mean of the criteria values",
        "licenses": {"osi_approved": ["MIT", "Apache-2.0"]},
    }
    validate_rubric(document)
    broken = copy.deepcopy(document)
    broken["criteria"][0]["wieght"] = 1
    with pytest.raises(RubricError, match=r"\$\.criteria\[0\]: Additional properties are not allowed"):
        validate_rubric(broken)
