"""License catalogue, declared-id normalisation, detection from text, model-card sections and verdicts."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import textwrap
import time

import pytest
import yaml

from openaudit.findings import catalogue as finding_catalogue
from openaudit.inspect import license as lic
from openaudit.inspect.license import (
    LicenseDetection,
    catalogue,
    detect_in_card_section,
    detect_license_text,
    license_at_start,
    license_from_url,
    license_verdict,
    normalize_license_id,
    parse_catalogue,
    verdict_findings,
)
from openaudit.inspect.text import html_to_text, looks_like_html, markdown_to_text, unwrap_paragraphs
from openaudit.resources import data_dir

CORPUS = pathlib.Path(__file__).parent / "data" / "licenses"

# Every license text of the corpus and the key it must be detected as (SOURCES.md says where each came from).
EXPECTED = {
    "AGPL-3.0.txt": "AGPL-3.0-only",
    "Apache-2.0.txt": "Apache-2.0",
    "Apache-2.0-no-appendix.txt": "Apache-2.0",
    "Apache-2.0-notice.txt": "Apache-2.0",
    "BSD-2-Clause.txt": "BSD-2-Clause",
    "BSD-3-Clause.txt": "BSD-3-Clause",
    "CC-BY-3.0.txt": "CC-BY-3.0",
    "CC-BY-4.0.txt": "CC-BY-4.0",
    "CC-BY-NC-4.0.txt": "CC-BY-NC-4.0",
    "CC-BY-NC-SA-4.0.txt": "CC-BY-NC-SA-4.0",
    "CC-BY-ND-4.0.txt": "CC-BY-ND-4.0",
    "CC-BY-SA-4.0.txt": "CC-BY-SA-4.0",
    "CC0-1.0.txt": "CC0-1.0",
    "GPL-2.0.txt": "GPL-2.0-only",
    "GPL-3.0.txt": "GPL-3.0-only",
    "LGPL-3.0.txt": "LGPL-3.0-only",
    "MIT.txt": "MIT",
    "MPL-2.0.txt": "MPL-2.0",
    "ODC-By-1.0.txt": "ODC-By-1.0",
    "apple-amlr.txt": "apple-amlr",
    "bigscience-bloom-rail-1.0.txt": "bigscience-bloom-rail-1.0",
    "bigscience-openrail-m.txt": "bigscience-openrail-m",
    "creativeml-openrail-m.txt": "creativeml-openrail-m",
    "deepseek.txt": "deepseek",
    "gemma.txt": "gemma",
    "llama2.txt": "llama2",
    "llama3.txt": "llama3",
    "llama3.1.txt": "llama3.1",
    "llama3.2.txt": "llama3.2",
    "llama3.3.txt": "llama3.3",
    "llama4.txt": "llama4",
    "openrail++.txt": "openrail++",
    "openrail-m.txt": "openrail-m",
    "tongyi-qianwen.txt": "tongyi-qianwen",
}
NOT_LICENSE_TEXTS = {"SOURCES.md", "gemma.html", "make_gemma_html.py"}


def corpus(name: str) -> str:
    return (CORPUS / name).read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------- transforms


def rewrap(text: str, width: int) -> str:
    return "\n\n".join(textwrap.fill(p, width) for p in unwrap_paragraphs(text).split("\n\n"))


_URL = re.compile(r"https?://[^\s<>()\"']+[^\s<>()\"'.,;]")
_EMPHASIS_WORDS = re.compile(r"\b(License|Licensor|Agreement|Model|Software|Work|Materials|Gemma)\b")


def to_markdown(text: str) -> str:
    """Render a plain license as Markdown: a title heading, section headings, list items, bold and italic
    words, and links; words keep their order."""
    out = []
    for index, paragraph in enumerate(unwrap_paragraphs(text).split("\n\n")):
        paragraph = _URL.sub(lambda m: f"[{m.group()}]({m.group()})", paragraph)
        paragraph = _EMPHASIS_WORDS.sub(r"**\1**", paragraph)
        words = paragraph.split(" ")
        if len(words) > 12:
            words[5] = f"_{words[5]}_"
        paragraph = " ".join(words)
        if index == 0:
            out.append(f"# {paragraph}")
        elif re.match(r"\d+\.\s", paragraph) and len(paragraph) < 90:
            out.append(f"## {paragraph}")
        elif re.match(r"\(?[a-z]\)|[a-z]\.\s", paragraph):
            out.append(f"- {paragraph}")
        else:
            out.append(paragraph)
    return "\n\n".join(out) + "\n"


def to_html(text: str) -> str:
    paragraphs = unwrap_paragraphs(text).split("\n\n")
    body = [f"<h1>{paragraphs[0]}</h1>"] + [
        f"<p>{p.replace('&', '&amp;').replace('<', '&lt;')}</p>" for p in paragraphs[1:]
    ]
    return (
        "<!DOCTYPE html><html><head><title>License</title><style>p{margin:0}</style>"
        "<script>var x = 'MIT License';</script></head><body><nav><a href='/'>Home</a></nav>"
        + "\n".join(body)
        + "<footer>&copy; Example</footer></body></html>"
    )


def with_header_and_footer(text: str) -> str:
    header = "Copyright (c) 2024 Example Labs, Inc. All rights reserved.\nLast modified: 1 January 2024\n\n"
    footer = "\n\nQuestions about this license: legal@example.com\nLast updated 2024-06-01\n"
    return header + text + footer


def with_small_edits(text: str) -> str:
    """Replace one word in every 120 with a word no license uses (typos, local edits)."""
    words = text.split(" ")
    return " ".join("xyzzy" if i % 120 == 60 else w for i, w in enumerate(words))


VARIANTS = {
    "original": lambda t: t,
    "width-30": lambda t: rewrap(t, 30),
    "width-72": lambda t: rewrap(t, 72),
    "width-140": lambda t: rewrap(t, 140),
    "joined-paragraphs": unwrap_paragraphs,
    "one-line": lambda t: " ".join(t.split()),
    "markdown": to_markdown,
    "html": to_html,
    "header-footer": with_header_and_footer,
    "small-edits": with_small_edits,
}


# ------------------------------------------------------------------------------------------- catalogue


def test_catalogue_validates_against_its_schema():
    import jsonschema

    document = yaml.safe_load(data_dir("checks").joinpath("licenses.yaml").read_text(encoding="utf-8"))
    schema = json.loads(data_dir("schemas").joinpath("licenses.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(document)) == []
    assert len(catalogue()) == len(document["licenses"])


def test_catalogue_entries_are_frozen():
    entry = catalogue()["MIT"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.osi_approved = False  # type: ignore[misc]


def _minimal_document(**overrides) -> dict:
    entry = {
        "key": "Example-1.0",
        "name": "Example License",
        "kind": "code",
        "osi_approved": True,
        "open_data": False,
        "non_commercial": False,
        "copyleft": "none",
        "use_restrictions": [],
        "url": "https://example.org/license",
    }
    entry.update(overrides)
    return {"version": 1, "licenses": [entry]}


def test_parse_catalogue_accepts_a_minimal_entry():
    entries = parse_catalogue(_minimal_document())
    assert entries["Example-1.0"].osi_approved is True
    assert entries["Example-1.0"].use_restrictions == ()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"kind": "weights"}, "kind"),
        ({"osi_approved": "yes"}, "osi_approved"),
        ({"use_restrictions": [{"kind": "vibes", "summary": "x"}]}, "use_restrictions/0/kind"),
        ({"texts": ["missing-file.txt"]}, "missing-file.txt"),
        ({"family_of": ["Nope-1.0"]}, "Nope-1.0"),
    ],
)
def test_parse_catalogue_rejects_bad_entries(overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_catalogue(_minimal_document(**overrides))


def test_parse_catalogue_rejects_an_alias_that_names_two_licenses():
    document = _minimal_document(aliases=["Example License 1"])
    document["licenses"].append(dict(document["licenses"][0], key="Other-1.0", name="Other", aliases=["example-license-1"]))
    with pytest.raises(ValueError, match="names both 'Example-1.0' and 'Other-1.0'"):
        parse_catalogue(document)


def test_catalogue_rejects_a_document_without_licenses():
    with pytest.raises(ValueError, match="top level"):
        parse_catalogue({"version": 1})


def test_key_entries_have_exactly_the_right_attributes():
    c = catalogue()
    apache = c["Apache-2.0"]
    assert (apache.kind, apache.spdx, apache.hub_id) == ("code", "Apache-2.0", "apache-2.0")
    assert (apache.osi_approved, apache.open_data, apache.non_commercial, apache.copyleft) == (True, False, False, "none")
    assert apache.use_restrictions == ()
    assert (c["MIT"].osi_approved, c["MIT"].copyleft) == (True, "none")
    assert (c["GPL-3.0-only"].copyleft, c["LGPL-3.0-only"].copyleft, c["AGPL-3.0-only"].copyleft) == ("strong", "weak", "network")
    assert c["BSD-3-Clause-Clear"].osi_approved is False

    cc_by = c["CC-BY-4.0"]
    assert (cc_by.kind, cc_by.osi_approved, cc_by.open_data, cc_by.non_commercial, cc_by.copyleft) == (
        "content", False, True, False, "none")
    assert (c["CC-BY-SA-4.0"].open_data, c["CC-BY-SA-4.0"].copyleft) == (True, "strong")
    nc = c["CC-BY-NC-4.0"]
    assert (nc.non_commercial, nc.open_data, nc.osi_approved) == (True, False, False)
    assert c["CC-BY-ND-4.0"].restriction_kinds() == {"no-derivatives"}
    assert (c["CC0-1.0"].open_data, c["ODC-By-1.0"].open_data, c["ODC-By-1.0"].kind) == (True, True, "data")
    assert (c["CDLA-Permissive-2.0"].open_data, c["ODbL-1.0"].copyleft) == (True, "strong")

    llama2 = c["llama2"]
    assert (llama2.kind, llama2.osi_approved, llama2.open_data, llama2.non_commercial) == ("model", False, False, False)
    assert llama2.restriction_kinds() == {"user-cap", "acceptable-use-policy", "output-use"}
    [cap] = [r for r in llama2.use_restrictions if r.kind == "user-cap"]
    assert cap.threshold == 700_000_000
    [aup] = [r for r in llama2.use_restrictions if r.kind == "acceptable-use-policy"]
    assert aup.url == "https://ai.meta.com/llama/use-policy"
    assert c["llama3"].restriction_kinds() == {"user-cap", "acceptable-use-policy", "output-use", "naming"}
    assert c["llama3.1"].restriction_kinds() == {"user-cap", "acceptable-use-policy", "naming"}
    assert c["llama3.2"].restriction_kinds() == {"user-cap", "acceptable-use-policy", "territory", "naming"}
    assert c["tongyi-qianwen"].restriction_kinds() == {"user-cap", "output-use"}
    assert [r.threshold for r in c["tongyi-qianwen"].use_restrictions if r.kind == "user-cap"] == [100_000_000]
    assert c["gemma"].restriction_kinds() == {"acceptable-use-policy", "flow-down", "output-use", "remote-control"}
    assert c["bigscience-bloom-rail-1.0"].restriction_kinds() == {"field-of-use", "flow-down", "remote-control"}
    assert "field-of-use" in c["deepseek"].restriction_kinds()
    assert (c["apple-amlr"].non_commercial, c["mistral-research"].non_commercial) == (True, True)
    assert c["openrail"].family_of == (
        "openrail-m", "bigscience-openrail-m", "creativeml-openrail-m", "openrail++", "bigcode-openrail-m")
    assert c["GPL-3.0-or-later"].same_text_as == "GPL-3.0-only"


def test_no_model_license_is_osi_approved_and_open_data_follows_the_mof_list():
    c = catalogue()
    assert [e.key for e in c.values() if e.kind == "model" and e.osi_approved] == []
    open_data = sorted(e.key for e in c.values() if e.open_data)
    assert open_data == sorted([
        "CC-BY-2.0", "CC-BY-2.5", "CC-BY-3.0", "CC-BY-4.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "CC0-1.0",
        "CDLA-Permissive-1.0", "CDLA-Permissive-2.0", "CDLA-Sharing-1.0", "GFDL-1.3-only", "ODC-By-1.0",
        "ODbL-1.0", "OpenMDW-1.0", "OpenMDW-1.1", "PDDL-1.0",
    ])


# ------------------------------------------------------------------------------------- normalize_license_id

# The license ids the Hugging Face Hub accepts (shared/reference/model-cards-and-hub.md §1.4, verbatim).
HUB_IDS = (
    "apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0 "
    "bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc "
    "cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 "
    "cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 "
    "cdla-sharing-1.0 cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 "
    "eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c "
    "ms-pl apple-ascl apple-amlr mpl-2.0 odc-by odbl openmdw-1.0 openmdw-1.1 openrail++ osl-3.0 postgresql "
    "ofl-1.1 ncsa unlicense zlib pddl lgpl-lr deepfloyd-if-license fair-noncommercial-research-license llama2 "
    "llama3 llama3.1 llama3.2 llama3.3 llama4 grok2-community gemma"
).split()


def test_every_hub_id_names_the_entry_that_carries_it():
    by_hub_id = {e.hub_id: e.key for e in catalogue().values() if e.hub_id}
    assert sorted(by_hub_id) == sorted(HUB_IDS)
    for hub_id in HUB_IDS:
        assert normalize_license_id(hub_id) == by_hub_id[hub_id], hub_id


@pytest.mark.parametrize(
    "declared, key",
    [
        ("apache-2.0", "Apache-2.0"),
        ("Apache 2.0", "Apache-2.0"),
        ("Apache-2.0", "Apache-2.0"),
        ("Apache License, Version 2.0", "Apache-2.0"),
        ("Apache License 2.0", "Apache-2.0"),
        ("the Apache 2.0 license", "Apache-2.0"),
        ("Apache Licence 2.0", "Apache-2.0"),
        ("  APACHE_2.0 ", "Apache-2.0"),
        ("MIT", "MIT"),
        ("MIT License", "MIT"),
        ("The MIT License", "MIT"),
        ("BSD 3-Clause License", "BSD-3-Clause"),
        ("bsd-2-clause", "BSD-2-Clause"),
        ("GPLv3", "GPL-3.0-only"),
        ("GNU General Public License v3.0", "GPL-3.0-only"),
        ("GPL-2.0+", "GPL-2.0-or-later"),
        ("LGPL-3.0-or-later", "LGPL-3.0-or-later"),
        ("AGPL-3.0", "AGPL-3.0-only"),
        ("CC BY 4.0", "CC-BY-4.0"),
        ("CC BY-NC 4.0", "CC-BY-NC-4.0"),
        ("Creative Commons Attribution-NonCommercial-ShareAlike 4.0 International", "CC-BY-NC-SA-4.0"),
        ("cc-by-nc-sa-4.0", "CC-BY-NC-SA-4.0"),
        ("odc-by", "ODC-By-1.0"),
        ("Llama 2 Community License Agreement", "llama2"),
        ("LLAMA 2 COMMUNITY LICENSE AGREEMENT", "llama2"),
        ("Meta Llama 3 Community License", "llama3"),
        ("llama-3.1", "llama3.1"),
        ("Llama 3.3", "llama3.3"),
        ("Gemma Terms of Use", "gemma"),
        ("BigScience RAIL License v1.0", "bigscience-bloom-rail-1.0"),
        ("BigScience OpenRAIL-M", "bigscience-openrail-m"),
        ("CreativeML OpenRAIL-M", "creativeml-openrail-m"),
        ("OpenRAIL++", "openrail++"),
        ("OpenRAIL", "openrail"),
        ("OpenRAIL-M", "openrail-m"),
        ("deepseek-license", "deepseek"),
        ("tongyi-qianwen", "tongyi-qianwen"),
        ("MRL", "mistral-research"),
        ("Apple Machine Learning Research Model License", "apple-amlr"),
        ("other", None),
        ("unknown", None),
        ("Other", None),
        ("", None),
        ("MIT OR Apache-2.0", None),
        ("my very own license", None),
    ],
)
def test_normalize_license_id(declared, key):
    assert normalize_license_id(declared) == key


def test_normalize_license_id_refuses_non_strings():
    assert normalize_license_id(None) is None  # type: ignore[arg-type]
    assert normalize_license_id(["mit"]) is None  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- text detection


def test_the_corpus_is_exactly_the_expected_texts():
    files = {p.name for p in CORPUS.iterdir() if p.is_file()}
    assert files == set(EXPECTED) | NOT_LICENSE_TEXTS


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_corpus_text_is_detected_as_its_key(name):
    detection = detect_license_text(corpus(name), source=name)
    assert detection is not None
    assert (detection.key, detection.source) == (EXPECTED[name], name)
    assert detection.method == ("notice" if name == "Apache-2.0-notice.txt" else "full-text")
    assert detection.confidence >= 0.85


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_corpus_text_survives_rewrapping_markdown_html_headers_and_edits(variant):
    transform = VARIANTS[variant]
    wrong = {}
    for name, key in EXPECTED.items():
        detection = detect_license_text(transform(corpus(name)), source=name)
        if detection is None or detection.key != key:
            wrong[name] = detection and detection.key
    assert wrong == {}


def test_gemma_html_page_is_detected_as_gemma():
    page = corpus("gemma.html")
    assert looks_like_html(page)
    detection = detect_license_text(page, source="gemma.html")
    assert detection is not None
    assert (detection.key, detection.method) == ("gemma", "full-text")
    assert detection.confidence >= 0.9


def test_gemma_html_is_what_its_script_writes():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_gemma_html", CORPUS / "make_gemma_html.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    assert module.render(corpus("gemma.txt")) == corpus("gemma.html")


@pytest.mark.parametrize(
    "family",
    [
        ["BSD-2-Clause.txt", "BSD-3-Clause.txt", "MIT.txt"],
        ["GPL-2.0.txt", "GPL-3.0.txt", "LGPL-3.0.txt", "AGPL-3.0.txt"],
        ["CC-BY-4.0.txt", "CC-BY-SA-4.0.txt", "CC-BY-NC-4.0.txt", "CC-BY-NC-SA-4.0.txt", "CC-BY-ND-4.0.txt", "CC-BY-3.0.txt"],
        ["llama2.txt", "llama3.txt", "llama3.1.txt", "llama3.2.txt", "llama3.3.txt", "llama4.txt"],
        ["openrail-m.txt", "bigscience-openrail-m.txt", "bigscience-bloom-rail-1.0.txt", "creativeml-openrail-m.txt",
         "openrail++.txt", "deepseek.txt"],
    ],
)
def test_close_relatives_are_told_apart_with_a_clear_margin(family):
    references = {ref.key: ref for ref in lic._references() if ref.method == "full-text"}
    assert len({EXPECTED[name] for name in family}) == len(family)
    for name in family:
        key = EXPECTED[name]
        detection = detect_license_text(corpus(name), source=name)
        assert detection is not None and detection.key == key
        present = frozenset(lic._shingles(lic.license_words(corpus(name))))
        for other in (EXPECTED[n] for n in family if EXPECTED[n] != key):
            # On the 5-grams only one of the two references has, the text's own license is found almost
            # whole and the relative's almost not at all.
            own = references[key].shingles - references[other].shingles
            theirs = references[other].shingles - references[key].shingles
            assert len(own & present) / len(own) >= 0.9, (name, other)
            assert len(theirs & present) / len(theirs) <= 0.1, (name, other)


def test_apache_with_a_notice_appended_and_a_notice_file_alone():
    notice = (
        "Example Model\nCopyright 2024 The Example Authors\n\n"
        "This product includes software developed at\nThe Apache Software Foundation (http://www.apache.org/).\n"
    )
    with_notice = detect_license_text(corpus("Apache-2.0.txt") + "\n\n" + notice, source="LICENSE")
    assert (with_notice.key, with_notice.method) == ("Apache-2.0", "full-text")
    assert detect_license_text(notice, source="NOTICE") is None


def test_two_licenses_in_one_file():
    lgpl_then_gpl = detect_license_text(corpus("LGPL-3.0.txt") + "\n" + corpus("GPL-3.0.txt"), source="COPYING")
    assert lgpl_then_gpl.key == "LGPL-3.0-only"  # the LGPL carries the GPL it supplements
    mit_then_apache = detect_license_text(corpus("MIT.txt") + "\n" + corpus("Apache-2.0.txt"), source="LICENSE")
    assert mit_then_apache.key == "MIT"  # the first license is the file's own, the rest is bundled
    apache_then_mit = detect_license_text(corpus("Apache-2.0.txt") + "\n" + corpus("MIT.txt"), source="LICENSE")
    assert apache_then_mit.key == "Apache-2.0"


def test_gpl_or_later_notice_in_a_source_header():
    header = (
        "/* frobnicate.c\n * Copyright (C) 2021 Jane Doe\n *\n"
        " * This program is free software: you can redistribute it and/or modify\n"
        " * it under the terms of the GNU General Public License as published by\n"
        " * the Free Software Foundation, either version 3 of the License, or\n"
        " * (at your option) any later version.\n *\n"
        " * This program is distributed in the hope that it will be useful,\n"
        " * but WITHOUT ANY WARRANTY; without even the implied warranty of\n"
        " * MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the\n"
        " * GNU General Public License for more details.\n *\n"
        " * You should have received a copy of the GNU General Public License\n"
        " * along with this program.  If not, see <https://www.gnu.org/licenses/>.\n */\n"
    )
    detection = detect_license_text(header, source="frobnicate.c")
    assert (detection.key, detection.method) == ("GPL-3.0-or-later", "notice")


@pytest.mark.parametrize(
    "text, key",
    [
        ("# SPDX-License-Identifier: Apache-2.0\nimport jax\n", "Apache-2.0"),
        ("// SPDX-License-Identifier: MIT\n", "MIT"),
        ("# SPDX-License-Identifier: MIT OR Apache-2.0\n", None),
        ("# SPDX-License-Identifier: LicenseRef-proprietary\n", None),
    ],
)
def test_spdx_identifier_tags(text, key):
    detection = detect_license_text(text, source="model.py")
    assert (detection and detection.key) == key
    if key is not None:
        assert (detection.method, detection.confidence) == ("spdx-id", 1.0)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\n",
        "This model was trained on a lot of text and is very good at answering questions.",
        "All rights reserved. Do not redistribute.",
        "x" * 10_000,
    ],
)
def test_texts_that_are_not_licenses(text):
    assert detect_license_text(text, source="README.md") is None


def test_a_mangled_license_is_not_forced_into_a_match():
    words = corpus("MIT.txt").split()
    assert detect_license_text(" ".join(reversed(words)), source="LICENSE") is None


@pytest.mark.parametrize(
    "hostile",
    [
        "[" * 300_000,
        "<" * 300_000 + "a" * 1000,
        "*_" * 200_000,
        "<div " + "a=" * 200_000,
        "<!--" * 100_000,
        "](" * 200_000,
        "\\" * 400_000,
        ("word " * 400_000),
        "<html>" + "<p>" * 200_000,
        "<!doctype html>" + "<!--" * 100_000,
        "<!doctype html>" + "<![CDATA[" * 100_000,
        "<!doctype html>" + "<a " * 100_000,
        "<!doctype html><script>" + "x" * 500_000,
        "# " + " " * 100_000 + "x" * 300,
        "licensed" + " " * 4_000 + "x",
        "|" + "-" * 200_000 + "x",
        "x\n" + "=" * 200_000 + "y",
    ],
)
def test_hostile_inputs_finish_quickly(hostile):
    start = time.monotonic()
    detect_license_text(hostile, source="LICENSE")
    detect_in_card_section("## License\n" + hostile[:500_000], source="README.md")
    assert time.monotonic() - start < 10.0


def test_long_texts_are_cut_and_the_license_at_the_start_still_counts():
    long_text = corpus("Apache-2.0.txt") + "\n" + ("unrelated release notes line\n" * 200_000)
    start = time.monotonic()
    detection = detect_license_text(long_text, source="LICENSE")
    assert detection.key == "Apache-2.0"
    assert time.monotonic() - start < 10.0


# ------------------------------------------------------------------------------------------- text helpers


def test_html_to_text_drops_scripts_styles_and_head_and_keeps_blocks_apart():
    page = (
        "<!doctype html><html><head><title>T</title><style>p{}</style></head><body>"
        "<script>var hidden = 1;</script><h1>Title</h1><p>One &amp; two</p><ul><li>a</li><li>b</li></ul>"
        "<pre>x\n y</pre></body></html>"
    )
    assert html_to_text(page) == "Title\n\nOne & two\n\n- a\n\n- b\n\nx\ny"


def test_markdown_to_text_keeps_words_and_line_numbers():
    markdown = (
        "# Title #\n"
        "Some **bold**, _italic_ and `code` with a [link](https://example.org \"t\") and ![img](a.png).\n"
        "> quoted\n"
        "- bullet\n"
        "1. numbered\n"
        "| a | b |\n|---|---|\n"
        "[ref]: https://example.org\n"
        "snake_case_name stays, \\*escaped star\\*\n"
        "<div align=\"center\">html</div>\n"
    )
    assert markdown_to_text(markdown).split("\n") == [
        "Title",
        "Some bold, italic and code with a link and img.",
        "quoted",
        "bullet",
        "1. numbered",
        "  a   b  ",
        "",
        "",
        "snake_case_name stays, *escaped star*",
        " html ",
        "",
    ]


def test_looks_like_html():
    assert looks_like_html("<!DOCTYPE html><html></html>")
    assert looks_like_html("  <html lang='en'><body><p>x</p></body></html>")
    assert looks_like_html("<div><p>a</p><p>b</p></div>")
    assert not looks_like_html('<div align="center">\n\n# Model card\n\n<p>x</p><p>y</p>\n</div>')
    assert not looks_like_html("MIT License\n\nCopyright <year> <holder>")


# ------------------------------------------------------------------------------------------- model cards

CARD = """---
license: apache-2.0
tags: [license]
---
# Example-7B

## Model Details

- **Developed by:** Example Labs
- **License:** cc-by-nc-4.0
- **Finetuned from model:** meta-llama/Llama-2-7b-hf

```
## License
This fenced line is code, not a heading: licensed under the MIT License.
```

## License

This model is licensed under the Apache 2.0 license.
The weights are also available under [Llama 2 Community License](https://ai.meta.com/llama/license/).
apache-2.0

### Third-party data

Some images are [CC BY-NC-SA 4.0](https://creativecommons.org/licenses/by-nc-sa/4.0/deed.en).

## Citation

Released under the MIT license, but this section is not about licensing.
"""


def test_detect_in_card_section_reads_sections_fields_links_and_sentences():
    found = [(d.key, d.method, d.line) for d in detect_in_card_section(CARD, "README.md")]
    assert found == [
        ("CC-BY-NC-4.0", "card-id", 10),
        ("Apache-2.0", "card-sentence", 20),
        ("llama2", "card-link", 21),
        ("Apache-2.0", "card-id", 22),
        ("CC-BY-NC-SA-4.0", "card-link", 26),
    ]
    assert all(d.source == "README.md" for d in detect_in_card_section(CARD, "README.md"))


def test_detect_in_card_section_setext_heading_and_full_text():
    card = "Intro\n=====\n\nLicense\n-------\n\n" + corpus("llama2.txt") + "\nOther\n-----\nApache 2.0\n"
    found = detect_in_card_section(card, "README.md")
    full = [d for d in found if d.method == "full-text"]
    assert [(d.key, d.line) for d in full] == [("llama2", 7)]
    assert "Apache-2.0" not in {d.key for d in found}


def test_detect_in_card_section_without_a_license_section():
    assert detect_in_card_section("# Model\n\nIt works well.\n\n## Usage\n\npip install it\n", "README.md") == []


@pytest.mark.parametrize(
    "url, key",
    [
        ("https://www.apache.org/licenses/LICENSE-2.0", "Apache-2.0"),
        ("http://www.apache.org/licenses/LICENSE-2.0.html", "Apache-2.0"),
        ("https://creativecommons.org/licenses/by/4.0/", "CC-BY-4.0"),
        ("https://creativecommons.org/licenses/by-nc/4.0/legalcode.en", "CC-BY-NC-4.0"),
        ("https://creativecommons.org/licenses/by-sa/3.0/deed.de", "CC-BY-SA-3.0"),
        ("https://creativecommons.org/publicdomain/zero/1.0/", "CC0-1.0"),
        ("https://opensource.org/licenses/MIT", "MIT"),
        ("https://spdx.org/licenses/BSD-3-Clause.html", "BSD-3-Clause"),
        ("https://choosealicense.com/licenses/gpl-3.0/", "GPL-3.0-only"),
        ("https://ai.google.dev/gemma/terms", "gemma"),
        ("https://llama.meta.com/llama3/license/", "llama3"),
        ("https://huggingface.co/spaces/bigscience/license", "bigscience-bloom-rail-1.0"),
        ("https://example.com/license", None),
    ],
)
def test_license_from_url(url, key):
    assert license_from_url(url) == key


@pytest.mark.parametrize(
    "phrase, key",
    [
        ("the Apache License, Version 2.0, which permits commercial use", "Apache-2.0"),
        ("CC BY-NC 4.0 and the Llama 2 Community License", "CC-BY-NC-4.0"),
        ("Llama 3.1 Community License. See LICENSE.", "llama3.1"),
        ("a custom commercial license", None),
    ],
)
def test_license_at_start(phrase, key):
    assert license_at_start(phrase) == key


# ------------------------------------------------------------------------------------------------ verdict


def detection(key: str, source: str = "LICENSE", method: str = "full-text") -> LicenseDetection:
    return LicenseDetection(key=key, confidence=1.0, method=method, source=source)


def test_verdict_consistent_with_apache_license_and_notice_file():
    detected = [detect_license_text(corpus("Apache-2.0.txt"), source="LICENSE")]
    notice = detect_license_text("This product includes software developed by Example.\n", source="NOTICE")
    assert notice is None
    verdict = license_verdict([(normalize_license_id("apache-2.0"), "README.md (metadata)")], detected)
    assert (verdict.status, verdict.declared, verdict.osi_approved) == ("consistent", ("Apache-2.0",), True)
    assert verdict.detected == tuple(detected)
    assert verdict.reason == "declared Apache-2.0; the files carry Apache-2.0"
    assert verdict_findings(verdict) == []


def test_verdict_conflict_apache_card_with_llama2_text():
    detected = [detect_license_text(corpus("llama2.txt"), source="LICENSE")]
    verdict = license_verdict([("Apache-2.0", "README.md (metadata)")], detected)
    assert (verdict.status, verdict.osi_approved) == ("conflict", False)
    assert verdict.reason == "LICENSE carries llama2 (full-text), which the declared Apache-2.0 does not cover"
    assert [f.id for f in verdict_findings(verdict)] == ["license-conflict", "license-use-restrictions"]


def test_verdict_conflict_between_two_declarations():
    verdict = license_verdict([("MIT", "README.md (metadata)"), ("Apache-2.0", "README.md:40")], [])
    assert verdict.status == "conflict"
    assert verdict.reason == "README.md (metadata) declares MIT but README.md:40 declares Apache-2.0"


def test_verdict_undeclared_and_unknown():
    undeclared = license_verdict([], [detection("MIT")])
    assert (undeclared.status, undeclared.declared, undeclared.osi_approved) == ("undeclared", (), True)
    assert undeclared.reason == "files carry MIT (LICENSE) but nothing declares a license"
    assert [f.id for f in verdict_findings(undeclared)] == ["license-undeclared"]

    unknown = license_verdict([], [])
    assert (unknown.status, unknown.osi_approved) == ("unknown", None)
    assert [f.id for f in verdict_findings(unknown)] == ["license-unknown"]

    other = license_verdict([(normalize_license_id("other"), "README.md (metadata)")], [])
    assert (other.status, other.unresolved) == ("unknown", ("README.md (metadata)",))
    assert [f.id for f in verdict_findings(other)] == ["license-unknown", "license-unrecognized"]

    other_with_text = license_verdict([(None, "README.md (metadata)")], [detection("llama3.1")])
    assert (other_with_text.status, other_with_text.osi_approved) == ("undeclared", False)


def test_verdict_agreement_through_shared_texts_families_and_dual_licensing():
    assert license_verdict([("GPL-3.0-or-later", "card")], [detection("GPL-3.0-only")]).status == "consistent"
    family = license_verdict([("gpl", "card")], [detection("GPL-3.0-only")])
    assert (family.status, family.osi_approved) == ("consistent", True)
    assert [f.id for f in verdict_findings(family)] == ["license-family-id"]
    assert license_verdict([("gpl", "card")], [detection("MIT")]).status == "conflict"
    assert license_verdict([("GPL-2.0-only", "card")], [detection("GPL-3.0-only")]).status == "conflict"
    dual = license_verdict(
        [("MIT", "card"), ("Apache-2.0", "card")], [detection("MIT", "LICENSE-MIT"), detection("Apache-2.0", "LICENSE-APACHE")]
    )
    assert (dual.status, dual.declared) == ("consistent", ("MIT", "Apache-2.0"))
    cc = license_verdict([("cc", "card")], [detection("CC-BY-4.0")])
    assert (cc.status, cc.osi_approved) == ("consistent", False)


def test_verdict_declared_without_a_text_is_consistent_but_unconfirmed():
    verdict = license_verdict([("CC-BY-NC-4.0", "card")], [])
    assert (verdict.status, verdict.osi_approved) == ("consistent", False)
    assert verdict.reason == "declared CC-BY-NC-4.0; no license text in the files confirms it"
    assert [f.id for f in verdict_findings(verdict)] == ["license-unconfirmed", "license-non-commercial"]


def test_every_license_finding_id_is_in_the_findings_catalogue():
    ids = {rule for rule in finding_catalogue() if rule.startswith("license-")}
    assert ids == {
        "license-conflict", "license-undeclared", "license-unknown", "license-unconfirmed",
        "license-unrecognized", "license-family-id", "license-non-commercial", "license-use-restrictions",
    }


def test_reference_texts_are_all_used_and_parse():
    names = {p.name for p in data_dir("checks").joinpath("license_texts").glob("*.txt")}
    used = {n for e in catalogue().values() for n in (*e.texts, *e.notices)}
    assert names == used
    assert all(ref.shingles for ref in lic._references())
