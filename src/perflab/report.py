"""Render the Day-1 learning log from the summary, the analysis and the verdict."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import jinja2
import polars as pl

from perflab import __version__

TEMPLATES = Path(__file__).parent / "templates"
PROMPT_LABELS = {
    "tiny": "Tiny",
    "short": "Short",
    "medium": "Medium",
    "long": "Long",
    "very_long": "Very long",
}
BOTTLENECK_OPTIONS = ("CPU", "Memory", "Disk I/O", "Network")
VERDICT_TO_OPTION = {"cpu": "CPU", "memory": "Memory", "io": "Disk I/O", "network": "Network"}


def fmt(value, digits: int = 2) -> str:
    """A number for the log, or 'n/a' when it was not measured."""
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    return f"{value:,.{digits}f}"


def label(prompt_name: str) -> str:
    return PROMPT_LABELS.get(prompt_name, prompt_name.replace("_", " ").capitalize())


def preview(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def suite_rows(summary: pl.DataFrame, suite: str) -> pl.DataFrame:
    return summary.filter(pl.col("suites").str.split(",").list.contains(suite))


def rows_for(summary: pl.DataFrame, suite: str, order: list, key: str) -> list[dict]:
    rows = {row[key]: row for row in suite_rows(summary, suite).to_dicts()}
    return [rows[value] | {"label": label(str(value))} for value in order if value in rows]


def epoch_text(seconds: float | None) -> str:
    if seconds is None:
        return "[TIME]"
    return dt.datetime.fromtimestamp(seconds).strftime("%H:%M:%S")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
    )
    env.globals["fmt"] = fmt
    return env


def render_log(context: dict) -> str:
    return _environment().get_template("day1-log.md.j2").render(**context)


def render_html(markdown_text: str, title: str, chart_svgs: dict[str, str]) -> str:
    """A self-contained page: the log as HTML, charts inlined as SVG."""
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables", "fenced_code"])
    for target, svg in chart_svgs.items():
        body = body.replace(f'<img alt="{target[0]}" src="{target[1]}" />', svg)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{title}</title><style>body{{font-family:sans-serif;max-width:60em;"
        "margin:2em auto;line-height:1.45}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.2em .5em}code,pre{background:#f4f4f4}"
        "svg{max-width:100%;height:auto}</style></head><body>\n"
        f"{body}\n</body></html>\n"
    )


def load_metadata(paths: list[Path]) -> list[dict]:
    return [json.loads(Path(path).read_text()) for path in paths]
