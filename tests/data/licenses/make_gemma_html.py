"""Write ``gemma.html``: the real Gemma Terms of Use text (``gemma.txt``) inside a documentation-site page.

The page served at https://ai.google.dev/gemma/terms could not be fetched for this corpus (no network, and no
stored copy of its HTML was found), so this script renders the verbatim terms text the way such a page is
built: a <head> with scripts and styles, a navigation bar with many links, a breadcrumb, the terms as
<h1>/<h2>/<h3>/<p>/<ol> elements with entities and inline links, a "Last modified" line, and a footer. It
tests that detection survives page chrome and markup; it is not a copy of Google's HTML.

Run from the repository root: ``python tests/data/licenses/make_gemma_html.py``.
"""

from __future__ import annotations

import html
import pathlib
import re

HERE = pathlib.Path(__file__).resolve().parent

HEAD = """<!doctype html>
<html lang="en" dir="ltr">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Gemma Terms of Use &nbsp;|&nbsp; Google AI for Developers</title>
  <link rel="stylesheet" href="/_static/css/app.css">
  <style>
    body { font-family: "Google Sans", Roboto, sans-serif; }
    .devsite-article-body h2 { margin-top: 40px; }
  </style>
  <script>
    window.dataLayer = window.dataLayer || [];
    function gtag(){dataLayer.push(arguments);}
    gtag('js', new Date()); gtag('config', 'G-XXXXXXXXXX');
    var licenseText = "Apache License Version 2.0 MIT License GNU General Public License";
  </script>
</head>
<body class="devsite-doc-page">
<header class="devsite-top-section">
  <nav class="devsite-tabs" aria-label="Product navigation">
    <ul>
      <li><a href="/gemini-api/docs">Gemini API</a></li>
      <li><a href="/gemma">Gemma</a></li>
      <li><a href="/edge">Google AI Edge</a></li>
      <li><a href="/responsible">Responsible AI</a></li>
      <li><a href="/community">Community</a></li>
    </ul>
  </nav>
  <div class="devsite-search"><input type="search" placeholder="Search" aria-label="Search"></div>
</header>
<div class="devsite-main-content">
<nav class="devsite-book-nav" aria-label="Side menu">
  <ul>
    <li><a href="/gemma/docs">Overview</a></li>
    <li><a href="/gemma/docs/get_started">Get started</a></li>
    <li><a href="/gemma/docs/model_card">Model card</a></li>
    <li><a href="/gemma/prohibited_use_policy">Prohibited use policy</a></li>
    <li><a href="/gemma/terms">Terms of use</a></li>
  </ul>
</nav>
<article class="devsite-article">
<div class="devsite-breadcrumb-list"><a href="/">Home</a> &gt; <a href="/gemma">Gemma</a> &gt; <span>Terms</span></div>
<div class="devsite-article-body clearfix">
"""

FOOT = """</div>
<devsite-thumb-rating position="footer"></devsite-thumb-rating>
<p class="devsite-content-footer">Except as otherwise noted, the content of this page is licensed under the
<a href="https://creativecommons.org/licenses/by/4.0/">Creative Commons Attribution 4.0 License</a>, and code
samples are licensed under the <a href="https://www.apache.org/licenses/LICENSE-2.0">Apache 2.0 License</a>.</p>
</article>
</div>
<footer class="devsite-footer">
  <ul>
    <li><a href="https://policies.google.com/terms">Terms</a></li>
    <li><a href="https://policies.google.com/privacy">Privacy</a></li>
    <li><a href="/support">Manage cookies</a></li>
  </ul>
</footer>
<script src="/_static/js/app.js" defer></script>
</body>
</html>
"""

_SECTION = re.compile(r"^Section \d+:")
_SUBSECTION = re.compile(r"^\d\.\d+\b")
_NUMBERED = re.compile(r"^(\d+)\. (.*)$")
_LINKABLE = re.compile(r"ai\.google\.dev/gemma/(?:terms|prohibited_use_policy)")


def _inline(text: str) -> str:
    escaped = html.escape(text, quote=False).replace('"', "&quot;")
    return _LINKABLE.sub(lambda m: f'<a href="https://{m.group()}">{m.group()}</a>', escaped)


def render(terms: str) -> str:
    paragraphs = [p.strip() for p in terms.split("\n\n") if p.strip()]
    body: list[str] = []
    in_list = False
    for index, paragraph in enumerate(paragraphs):
        lines = paragraph.split("\n")
        numbered = _NUMBERED.match(paragraph)
        if numbered and not _SUBSECTION.match(paragraph):
            if not in_list:
                body.append("<ol>")
                in_list = True
            body.append(f"  <li>{_inline(numbered.group(2))}</li>")
            continue
        if in_list:
            body.append("</ol>")
            in_list = False
        if index == 0:
            body.append(f'<h1 class="devsite-page-title">{_inline(paragraph)}</h1>')
            continue
        if paragraph.startswith("Last modified:"):
            body.append(f"<p><em>{_inline(paragraph)}</em></p>")
            continue
        for line in lines:
            if _SECTION.match(line):
                body.append(f'<h2 id="{line.split(":")[0].lower().replace(" ", "-")}">{_inline(line)}</h2>')
            elif _SUBSECTION.match(line) and len(line) < 60:
                body.append(f"<h3>{_inline(line)}</h3>")
            else:
                body.append(f"<p>{_inline(line)}</p>")
    if in_list:
        body.append("</ol>")
    return HEAD + "\n".join(body) + "\n" + FOOT


def main() -> None:
    terms = (HERE / "gemma.txt").read_text(encoding="utf-8")
    (HERE / "gemma.html").write_text(render(terms), encoding="utf-8", newline="\n")


if __name__ == "__main__":
    main()
