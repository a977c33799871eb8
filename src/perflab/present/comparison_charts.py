"""Charts of comparisons: targets against the baseline, run against run.

One colour per target (or per run); each bar is a ratio to the baseline with
its 95 % CI, on a log scale so ×2 and ×0.5 look alike; the baseline is the
line at ×1.
"""

from __future__ import annotations

import altair as alt
import polars as pl

from perflab.analyse.findings.comparison import ComparisonFinding
from perflab.analyse.findings.runs import RunComparison
from perflab.analyse.metrics import metric
from perflab.present.chart_style import HEIGHT, WIDTH, no_data


def ratio_rows(finding: ComparisonFinding) -> list[dict]:
    rows = []
    for compared in finding.metrics:
        for item in compared.targets:
            ratio = item.ratio
            value = 1.0 if ratio is None else ratio.estimate
            rows.append(
                {
                    "metric": metric(compared.metric).label,
                    "target": item.target,
                    "ratio": value,
                    "low": None if ratio is None else ratio.low,
                    "high": None if ratio is None else ratio.high,
                    "verdict": "baseline" if item.verdict is None else item.verdict.value,
                }
            )
    return [row for row in rows if row["ratio"] is not None]


def ratio_chart(rows: list[dict], title: str, colour: str = "target") -> alt.LayerChart | alt.Chart:
    """Bars of ratio to the baseline per metric, one colour per ``colour``, with CI whiskers."""
    if not rows:
        return no_data(title)
    data = pl.DataFrame(rows, schema_overrides={"low": pl.Float64, "high": pl.Float64})
    base = alt.Chart(data, title=title).encode(
        x=alt.X("metric:N", title=None, axis=alt.Axis(labelAngle=-20)),
        xOffset=alt.XOffset(f"{colour}:N"),
        color=alt.Color(f"{colour}:N", title=colour),
    )
    bars = base.mark_point(filled=True, size=90).encode(
        y=alt.Y("ratio:Q", title="ratio to the baseline (log scale)", scale=alt.Scale(type="log")),
        tooltip=[
            alt.Tooltip("metric:N"),
            alt.Tooltip(f"{colour}:N"),
            alt.Tooltip("ratio:Q", format=".3f"),
            alt.Tooltip("low:Q", format=".3f", title="CI low"),
            alt.Tooltip("high:Q", format=".3f", title="CI high"),
            alt.Tooltip("verdict:N"),
        ],
    )
    errors = base.mark_errorbar(ticks={"size": 8}, thickness=1.5).encode(
        y=alt.Y("low:Q"), y2=alt.Y2("high:Q")
    )
    one = alt.Chart(pl.DataFrame({"y": [1.0]})).mark_rule(strokeDash=[4, 4]).encode(y="y:Q")
    return (bars + errors + one).properties(width=WIDTH, height=HEIGHT)


def comparison_chart(finding: ComparisonFinding | None) -> alt.LayerChart | alt.Chart:
    title = "Targets against the baseline: ratio of each metric, ± 95% CI across trials"
    if finding is None:
        return no_data(title)
    return ratio_chart(ratio_rows(finding), f"{title} (baseline {finding.baseline})")


def run_rows(comparison: RunComparison) -> list[dict]:
    """B / A per condition and metric, with the 95 % CI of Welch's test on the trial logs."""
    rows = []
    for condition in comparison.conditions:
        for item in condition.metrics:
            if item.test.estimate is None:
                continue
            rows.append(
                {
                    "metric": metric(item.metric).label,
                    "condition": condition.condition_id,
                    "ratio": item.test.estimate,
                    "low": item.test.low,
                    "high": item.test.high,
                    "verdict": item.verdict.value,
                }
            )
    return rows


def run_ratio_chart(comparison: RunComparison) -> alt.LayerChart | alt.Chart:
    title = f"{comparison.run_b} against {comparison.run_a}: B / A per condition, ± 95% CI"
    return ratio_chart(run_rows(comparison), title, colour="condition")
