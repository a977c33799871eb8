"""The capacity chart: latency percentiles and goodput against offered rate."""

from __future__ import annotations

import altair as alt
import polars as pl

from perflab.analyse.findings.capacity import CapacityFinding
from perflab.present.chart_style import HEIGHT, WIDTH, no_data

PERCENTILES = {"e2e_p50_s": "P50", "e2e_p95_s": "P95", "e2e_p99_s": "P99"}
RATES = {"served_rate": "served", "goodput": "goodput (met the targets)"}


def _rows(findings: tuple[CapacityFinding, ...], figures: dict[str, str]) -> list[dict]:
    return [
        {
            "offered": point.offered_rate,
            "value": getattr(point, name).mean,
            "series": f"{finding.target} {label}" if finding.target else label,
            "trials": point.trials,
        }
        for finding in findings
        for point in finding.points
        for name, label in figures.items()
        if getattr(point, name).mean is not None
    ]


def _panel(rows: list[dict], title: str, y_title: str) -> alt.Chart:
    data = pl.DataFrame(rows)
    return (
        alt.Chart(data, title=title)
        .mark_line(point=True)
        .encode(
            x=alt.X("offered:Q", title="offered rate (req/s)"),
            y=alt.Y("value:Q", title=y_title, scale=alt.Scale(zero=True)),
            color=alt.Color("series:N", title=None),
            tooltip=[
                alt.Tooltip("offered:Q", format=".2f", title="offered req/s"),
                alt.Tooltip("value:Q", format=".3f"),
                alt.Tooltip("series:N"),
                alt.Tooltip("trials:Q"),
            ],
        )
        .properties(width=WIDTH // 2 + 60, height=HEIGHT)
    )


def capacity_chart(findings: tuple[CapacityFinding, ...]) -> alt.HConcatChart | alt.Chart:
    """Left: latency from the scheduled send (P50/P95/P99); right: served and goodput."""
    title = "Latency and goodput against offered rate"
    latency = _rows(findings, PERCENTILES)
    rates = _rows(findings, RATES)
    if not latency or not rates:
        return no_data(title)
    n = sum(len(f.points) for f in findings)
    return alt.hconcat(
        _panel(latency, f"Latency from the scheduled send (s), {n} rates", "latency (s)"),
        _panel(rates, "Served and goodput (req/s)", "requests/s"),
    )
