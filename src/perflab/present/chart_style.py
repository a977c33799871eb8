"""What every chart shares: its size, the chart shown when there is no data, and
how a chart is saved (SVG, PNG and an HTML page that renders offline)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import altair as alt
import polars as pl

WIDTH = 680  # the log page is about 990 px wide: drawn near its size, text stays legible
HEIGHT = 320
# Text is laid out with the metrics of the font vl-convert measures it in: naming
# DejaVu Sans (the widest common sans-serif, which the log page asks for too) makes that
# the font the browser draws, so titles and legends fit; without it vl-convert measures
# Liberation Sans and a browser's wider default font runs past the chart's edge.
FONT = "DejaVu Sans, sans-serif"
TITLE_CHARS = 80  # a longer title is broken into lines: one line would be wider than the chart
EXTERNAL_SCRIPT = re.compile(r"<script[^>]*\bsrc\s*=\s*[\"']?(https?:)?//", re.IGNORECASE)


def no_data(title: str) -> alt.Chart:
    return (
        alt.Chart(pl.DataFrame({"text": ["no data in this run"]}), title=title)
        .mark_text(size=14)
        .encode(text=alt.Text("text:N"))
        .properties(width=WIDTH, height=60)
    )


def inert(value):
    """Every string of a chart spec with '<' and '>' replaced by look-alikes.

    The offline HTML embeds the spec in a script element, where a value such as
    '</script>' would end it; no Vega-Lite string needs the real characters.
    """
    if isinstance(value, str):
        return value.replace("<", "\u2039").replace(">", "\u203a")
    if isinstance(value, dict):
        return {key: inert(item) for key, item in value.items()}
    if isinstance(value, list):
        return [inert(item) for item in value]
    return value


def _lines(title):
    if isinstance(title, str) and len(title) > TITLE_CHARS:
        return textwrap.wrap(title, TITLE_CHARS)
    if isinstance(title, dict) and "text" in title:
        return title | {"text": _lines(title["text"])}
    return title


def wrapped_titles(value):
    """Every title longer than TITLE_CHARS in a chart spec as lines (Vega draws a list so);
    the data is left as it is."""
    if isinstance(value, dict):
        return {
            key: _lines(item)
            if key == "title"
            else item
            if key in ("data", "datasets")
            else wrapped_titles(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [wrapped_titles(item) for item in value]
    return value


def laid_out(spec: dict) -> dict:
    """The spec in the page's font with its long titles wrapped."""
    spec = wrapped_titles(spec)
    return spec | {"config": spec.get("config", {}) | {"font": FONT}}


def save_chart(chart, stem: Path) -> dict[str, Path]:
    """Write stem.svg, stem.png (2× scale) and a stem.html that renders offline.

    The HTML inlines the Vega libraries (vl-convert bundles them); a file that
    would still load a script from the network is an error. Text from the data
    cannot close the HTML's script element (``inert``).
    """
    chart = alt.Chart.from_dict(laid_out(inert(chart.to_dict())))
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = {suffix: stem.with_name(f"{stem.name}.{suffix}") for suffix in ("svg", "png", "html")}
    chart.save(paths["svg"])
    chart.save(paths["png"], scale_factor=2)
    chart.save(paths["html"], inline=True)
    if EXTERNAL_SCRIPT.search(paths["html"].read_text()):
        raise RuntimeError(f"{paths['html']} loads a script from the network")
    return paths
