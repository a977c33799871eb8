"""The log as one self-contained HTML page.

The Markdown is parsed as CommonMark with GitHub's tables and task lists (what
GitHub shows for the same file), then sanitised with nh3, which keeps only the
tags and attributes this renderer emits: no script, no event handler, no
``javascript:`` link, no class a value could choose. Only after sanitising are
perflab's own pieces put in: the charts (SVG written by vl-convert from the
findings) and the status icons, so nothing from a config, a server or a model
passes around the sanitiser.
"""

from __future__ import annotations

import html
import re
from functools import cache
from pathlib import Path

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.anchors import anchors_plugin
from mdit_py_plugins.tasklists import tasklists_plugin

URL_SCHEMES = {"http", "https", "mailto"}
VERDICT_LABEL = "Verdict: "
TOC_LEVEL = 2
STYLE = (Path(__file__).parent / "templates" / "page.css").read_text()

TAGS = {
    *("h1", "h2", "h3", "h4", "h5", "h6", "p", "blockquote", "hr", "br"),
    *("ul", "ol", "li", "input", "pre", "code", "em", "strong", "s", "a", "img"),
    *("table", "thead", "tbody", "tr", "th", "td", "nav"),
}
ATTRIBUTES = {
    **{f"h{level}": {"id"} for level in range(1, 7)},
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "ol": {"start"},
    "input": {"type", "checked"},
    "th": {"style"},
    "td": {"style"},
}
CLASSES = {
    "ul": {"contains-task-list", "toc"},
    "ol": {"contains-task-list"},
    "li": {"task-list-item"},
    "input": {"task-list-item-checkbox"},
    "nav": {"toc"},
}
VERDICT_CLASS = re.compile(r"verdict(-[a-z0-9]+)*")
ALIGN = re.compile(r"text-align:(left|center|right)")

# The seed's status marks, drawn as shapes so that no emoji font is needed
# (round, so that they do not read as the task list's square checkboxes).
ICONS = {
    "✅": (
        "complete",
        '<circle cx="8" cy="8" r="7.5" fill="#1a7f37"/>'
        '<path d="M4.3 8.4l2.5 2.5 4.9-5" fill="none" stroke="#fff" stroke-width="2"/>',
    ),
    "🟡": ("partial", '<circle cx="8" cy="8" r="7.5" fill="#d4a72c"/>'),
    "⬜": (
        "not yet",
        '<circle cx="8" cy="8" r="6.75" fill="#fff" stroke="#6e7781" stroke-width="1.5"/>',
    ),
    "❌": (
        "failed",
        '<circle cx="8" cy="8" r="7.5" fill="#cf222e"/>'
        '<path d="M5.2 5.2l5.6 5.6M10.8 5.2l-5.6 5.6" stroke="#fff" stroke-width="2"/>',
    ),
}
CHART = re.compile(r"<p>\s*<img ([^>]*)>\s*</p>")


@cache
def parser() -> MarkdownIt:
    """CommonMark (no raw HTML) with GFM tables and task lists, headings with ids."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table").enable("strikethrough")
    md.use(tasklists_plugin)  # checkboxes rendered disabled
    md.use(anchors_plugin, min_level=1, max_level=4)
    md.core.ruler.push("verdict_badges", _verdict_badges)
    return md


def _verdict_badges(state) -> None:
    """``**Verdict: no effect**`` becomes a badge reading "no effect"."""
    for token in state.tokens:
        children = token.children or []
        for opening, text, closing in zip(children, children[1:], children[2:], strict=False):
            if (
                opening.type == "strong_open"
                and closing.type == "strong_close"
                and text.type == "text"
                and text.content.startswith(VERDICT_LABEL)
            ):
                value = text.content.removeprefix(VERDICT_LABEL).strip()
                opening.attrSet("class", f"verdict {verdict_class(value)}")
                text.content = value


def verdict_class(value: str) -> str:
    """Any verdict value as a CSS class: ``no_effect`` and "no effect" are ``verdict-no-effect``."""
    return "verdict-" + ("-".join(re.findall(r"[a-z0-9]+", value.lower())) or "none")


def _keep_attribute(tag: str, name: str, value: str) -> str | None:
    if name == "class":
        allowed = CLASSES.get(tag, set())
        kept = [
            c
            for c in value.split()
            if c in allowed or (tag == "strong" and VERDICT_CLASS.fullmatch(c))
        ]
        return " ".join(kept) or None
    if name == "style":
        return value if ALIGN.fullmatch(value) else None
    if tag == "input" and name == "type":
        return value if value == "checkbox" else None
    return value


def sanitise(body: str) -> str:
    attributes = {tag: names | {"class"} for tag, names in ATTRIBUTES.items()}
    for tag in CLASSES.keys() | {"strong"}:
        attributes.setdefault(tag, set()).add("class")
    return nh3.clean(
        body,
        tags=TAGS,
        attributes=attributes,
        attribute_filter=_keep_attribute,
        url_schemes=URL_SCHEMES,
        set_tag_attribute_values={"input": {"disabled": "disabled"}},
    )


def contents(tokens: list[Token]) -> list[tuple[str, str]]:
    """(anchor, text) of every second-level heading, in order."""
    return [
        (opening.attrGet("id"), inline.content)
        for opening, inline in zip(tokens, tokens[1:], strict=False)
        if opening.type == "heading_open" and opening.tag == f"h{TOC_LEVEL}"
    ]


def contents_html(entries: list[tuple[str, str]]) -> str:
    items = "".join(
        f'<li><a href="#{html.escape(anchor)}">{html.escape(text)}</a></li>'
        for anchor, text in entries
    )
    return f'<nav class="toc"><strong>Contents</strong><ul class="toc">{items}</ul></nav>\n'


def icon(mark: str) -> str:
    name, shape = ICONS[mark]
    return (
        f'<svg class="icon" viewBox="0 0 16 16" width="16" height="16" role="img" '
        f'aria-label="{name}">{shape}</svg>'
    )


def _chart(match: re.Match, chart_svgs: dict[str, str]) -> str:
    attributes = dict(re.findall(r'(\w+)="([^"]*)"', match[1]))
    svg = chart_svgs.get(html.unescape(attributes.get("src", "")))
    if svg is None:
        return match[0]
    caption = attributes.get("alt", "")
    return f'<figure class="chart">{svg}<figcaption>{caption}</figcaption></figure>'


def render_body(markdown_text: str, chart_svgs: dict[str, str]) -> str:
    md = parser()
    tokens = md.parse(markdown_text)
    body = md.renderer.render(tokens, md.options, {})
    entries = contents(tokens)
    if entries:  # after the title and its notes, before the first section
        at = body.find(f"<h{TOC_LEVEL} ")
        body = body[:at] + contents_html(entries) + body[at:]
    body = sanitise(body)
    body = CHART.sub(lambda match: _chart(match, chart_svgs), body)
    for mark in ICONS:
        body = body.replace(mark, icon(mark))
    return body


def render_html(markdown_text: str, title: str, chart_svgs: dict[str, str]) -> str:
    """A self-contained page: the log as sanitised HTML, charts inlined as SVG."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n"
        f"{render_body(markdown_text, chart_svgs)}\n</body></html>\n"
    )
