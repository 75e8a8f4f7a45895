"""Plain text out of the documents a release ships: HTML pages, Markdown cards, hard-wrapped text files.

Everything here is generic (licenses, model cards, READMEs) and safe on hostile input: inputs are cut at a
length limit first, HTML is read by a forward-only scanner (no tree is built), and no regular expression
can backtrack catastrophically: repeated groups start with a character nothing else in them matches, and
every repeated class is bounded or excludes its own delimiter (tests feed hostile inputs to check this).
"""

from __future__ import annotations

import html
import re

from openaudit.limits import Deadline

# Documents longer than this are cut before any processing; a license or a card is far smaller.
MAX_DOCUMENT_CHARS = 2_000_000

# HTML elements whose content is never text a reader sees.
_HIDDEN_ELEMENTS = frozenset({"script", "style", "noscript", "template", "head", "svg", "iframe", "object"})
# Elements that start a new line (so words of adjacent blocks never run together).
_BLOCK_ELEMENTS = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "fieldset", "figcaption",
        "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav",
        "ol", "p", "pre", "section", "table", "tbody", "td", "tfoot", "th", "thead", "title", "tr", "ul",
    }
)


def truncate(text: str, limit: int = MAX_DOCUMENT_CHARS) -> str:
    """Cut ``text`` to ``limit`` characters (documents beyond that are not worth reading whole)."""
    return text if len(text) <= limit else text[:limit]


_HTML_DOCUMENT_START = re.compile(r"\s*(?:<\?xml[^>]{0,200}>\s*)?<(?:!doctype\s+html|html)\b", re.I)
_HTML_BLOCK_TAG = re.compile(r"<(?:body|div|p|h[1-6]|ul|ol|table|article|section|main)\b", re.I)
_MARKDOWN_HEADING_LINE = re.compile(r"^\s{0,3}#{1,6}\s", re.M)


def looks_like_html(text: str) -> bool:
    """True for an HTML page (a doctype or <html> first), or a fragment made of block tags and no Markdown headings.

    Model cards often open with a ``<div align="center">`` banner and are still Markdown; they are not HTML.
    """
    head = text[:8192]
    if _HTML_DOCUMENT_START.match(head):
        return True
    if not head.lstrip().startswith("<") or _MARKDOWN_HEADING_LINE.search(head):
        return False
    return len(_HTML_BLOCK_TAG.findall(head)) >= 3


_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_MANY_BLANK_LINES = re.compile(r"\n[ \t]*(?:\n[ \t]*){2,}")
_TAG_NAME = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]{0,40})")
_CLOSING_TAGS = {name: re.compile(rf"</{name}\b", re.I) for name in _HIDDEN_ELEMENTS}


def html_to_text(document: str, *, deadline: Deadline | None = None) -> str:
    """The visible text of an HTML page: one line per block element, scripts/styles/head dropped, entities decoded.

    A small scanner rather than ``html.parser``: every step moves forward with ``str.find`` (a tag ends at
    the next ``>``, a comment at the next ``-->``, a script at its closing tag, and an unclosed construct
    ends the document), so the work is linear in the input. The standard parser re-scans unclosed comments
    and takes minutes on a few hundred kilobytes of ``<!--``.
    """
    doc = truncate(document)
    parts: list[str] = []
    position, length, in_pre = 0, len(doc), 0

    def add_text(chunk: str) -> None:
        if chunk:
            if not in_pre:  # outside <pre>, a line break in the source is just white space
                chunk = chunk.replace("\r", " ").replace("\n", " ")
            parts.append(html.unescape(chunk))

    while position < length:
        if deadline is not None:
            deadline.check()
        lt = doc.find("<", position)
        if lt < 0:
            add_text(doc[position:])
            break
        add_text(doc[position:lt])
        if doc.startswith("<!--", lt):
            end = doc.find("-->", lt + 4)
            position = length if end < 0 else end + 3
            continue
        if doc.startswith("<![CDATA[", lt):
            end = doc.find("]]>", lt + 9)
            add_text(doc[lt + 9 : length if end < 0 else end])
            position = length if end < 0 else end + 3
            continue
        tag = _TAG_NAME.match(doc, lt)
        if tag is None:
            if doc.startswith(("<!", "<?"), lt):  # doctype, processing instruction
                end = doc.find(">", lt)
                position = length if end < 0 else end + 1
            else:
                add_text("<")
                position = lt + 1
            continue
        end = doc.find(">", tag.end())
        if end < 0:
            break
        position = end + 1
        closing, name = tag.group(1) == "/", tag.group(2).lower()
        if not closing and name in _HIDDEN_ELEMENTS and doc[end - 1] != "/":
            close = _CLOSING_TAGS[name].search(doc, position)
            if close is None:
                break
            after = doc.find(">", close.end())
            position = length if after < 0 else after + 1
            continue
        if name == "pre":
            in_pre = max(0, in_pre - 1) if closing else in_pre + 1
        if name in _BLOCK_ELEMENTS:
            parts.append("\n")
            if name == "li" and not closing:
                parts.append("- ")
    return tidy_lines("".join(parts))


def tidy_lines(text: str) -> str:
    """Collapse runs of spaces, trim every line, and keep at most one blank line between paragraphs."""
    lines = (_SPACES.sub(" ", line).strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return _MANY_BLANK_LINES.sub("\n\n", "\n".join(lines)).strip("\n")


# --- Markdown ------------------------------------------------------------------------------------------------

_FENCE = re.compile(r"^\s{0,3}(?:`{3,}|~{3,})")
_ATX_HEADING = re.compile(r"^\s{0,3}#{1,6}(?:\s+|$)")
_SETEXT_UNDERLINE = re.compile(r"^\s{0,3}(?:=+|-+)\s*$")
_THEMATIC_BREAK = re.compile(r"^\s{0,3}(?:(?:\*\s*){3,}|(?:_\s*){3,})$")
_BLOCKQUOTE = re.compile(r"^\s{0,3}(?:>\s?)+")
_BULLET = re.compile(r"^(\s{0,12})[-*+]\s+")
_LINK_DEFINITION = re.compile(r"^\s{0,3}\[[^\]\n]{1,300}\]:\s+\S+")
_IMAGE_OR_LINK = re.compile(r"!?\[([^\[\]\n]{0,1000})\]\([ \t]{0,20}<?[^()\s<>\n]{0,2000}>?(?:[ \t]{1,20}\"[^\"\n]{0,300}\")?[ \t]{0,20}\)")
_REFERENCE_LINK = re.compile(r"!?\[([^\[\]\n]{0,1000})\]\[[^\[\]\n]{0,300}\]")
_AUTOLINK = re.compile(r"<((?:https?|ftp|mailto):[^<>\s]{1,2000})>", re.I)
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]{0,30}(?:\s[^<>\n]{0,1000})?/?>")
_BACKSLASH_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>~<\"'])")
_EMPHASIS_RUN = re.compile(r"\*{1,3}|~~")
_UNDERSCORE_EMPHASIS = re.compile(r"(?<![A-Za-z0-9])_{1,3}|_{1,3}(?![A-Za-z0-9])")
_INLINE_CODE = re.compile(r"`{1,3}")
_ESCAPE_BASE = 0xF0000  # supplementary private-use plane: never in real text
_ESCAPED = re.compile("[\U000F0000-\U000F007F]")


def markdown_to_text(markdown: str) -> str:
    """The prose of a Markdown document: markup removed, link texts kept (targets dropped), code kept as text.

    Headings, list bullets, block quotes, tables, emphasis, inline HTML, images and link definitions lose their
    syntax; the words stay in order and line structure is preserved, so line numbers still match the source.
    Ordered-list numbers are kept because in legal text they are content ("1. Definitions").
    """
    out: list[str] = []
    for line in truncate(markdown).replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        out.append(_markdown_line_to_text(line))
    return html.unescape(_strip_html_comments("\n".join(out)))


def _markdown_line_to_text(line: str) -> str:
    if _FENCE.match(line) or _SETEXT_UNDERLINE.match(line) or _THEMATIC_BREAK.match(line):
        return ""
    if _is_table_rule(line) or _LINK_DEFINITION.match(line):
        return ""
    if _ATX_HEADING.match(line):
        line = _without_closing_hashes(_ATX_HEADING.sub("", line, count=1))
    line = _BLOCKQUOTE.sub("", line, count=1)
    line = _BULLET.sub(r"\1", line, count=1)
    line = _IMAGE_OR_LINK.sub(r"\1", line)
    line = _REFERENCE_LINK.sub(r"\1", line)
    line = _AUTOLINK.sub(r"\1", line)
    line = _HTML_TAG.sub(" ", line)
    # Escaped characters hide in the private-use area while markup is removed, so "\*" stays a literal star.
    line = _BACKSLASH_ESCAPE.sub(lambda m: chr(_ESCAPE_BASE + ord(m.group(1))), line)
    line = _EMPHASIS_RUN.sub("", line)
    line = _UNDERSCORE_EMPHASIS.sub("", line)
    line = _INLINE_CODE.sub("", line)
    if "|" in line and line.count("|") >= 2:
        line = line.replace("|", " ")
    return _ESCAPED.sub(lambda m: chr(ord(m.group()) - _ESCAPE_BASE), line)


def _is_table_rule(line: str) -> bool:
    """A Markdown table's delimiter row, such as ``|---|:--:|``."""
    stripped = line.strip()
    return "-" in stripped and "|" in stripped and not stripped.strip("|-: \t")


def _without_closing_hashes(heading: str) -> str:
    """'Title ##' -> 'Title' (an ATX heading's optional closing sequence)."""
    stripped = heading.rstrip()
    without = stripped.rstrip("#")
    if without != stripped and (not without or without[-1] in " \t"):
        return without.rstrip()
    return heading


def _strip_html_comments(text: str) -> str:
    """Remove ``<!-- ... -->`` with two ``find`` calls per comment (an unclosed comment runs to the end)."""
    if "<!--" not in text:
        return text
    parts: list[str] = []
    position = 0
    while True:
        start = text.find("<!--", position)
        if start < 0:
            parts.append(text[position:])
            break
        parts.append(text[position:start])
        end = text.find("-->", start + 4)
        if end < 0:
            break
        # Keep the comment's line breaks so that line numbers stay right.
        parts.append("\n" * text.count("\n", start, end))
        position = end + 3
    return "".join(parts)


def unwrap_paragraphs(text: str) -> str:
    """Join hard-wrapped lines: every paragraph (lines between blank lines) becomes one line."""
    paragraphs: list[str] = []
    current: list[str] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        stripped = line.strip()
        if stripped:
            current.append(stripped)
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return "\n\n".join(paragraphs)
