"""Altair charts: one pure function per figure, saved as SVG, PNG and offline HTML.

Every ``*_chart`` function takes a finding (or pre-aggregated data: latency
quantiles per prompt, resource samples binned in time), so a chart's size does
not grow with the number of requests. It returns an Altair chart and never
raises on empty or incomplete input: it returns a "no data" text chart
instead. Titles carry the units and n.
"""

from __future__ import annotations

from pathlib import Path

import altair as alt
import polars as pl

from perflab.analyse.findings.basic import BasicFinding
from perflab.analyse.findings.breakdown import phase_seconds
from perflab.analyse.findings.concurrency import ConcurrencyFinding
from perflab.analyse.findings.prompt_length import PromptLengthFinding
from perflab.analyse.findings.statistics import LinearFit
from perflab.analyse.findings.temperature import TemperatureFinding
from perflab.analyse.metrics import metric
from perflab.present.chart_style import HEIGHT, WIDTH, no_data, save_chart
from perflab.present.resource_chart import downsample, read_samples, resource_timeline_chart

QUANTILES = {"min": 0.0, "q1": 0.25, "median": 0.5, "q3": 0.75, "max": 1.0}


def latency_quantiles(requests: pl.LazyFrame) -> pl.DataFrame:
    """Per basic-suite prompt: n and the quantiles of e2e_s over measured ok requests.

    Aggregated lazily, so the chart's data stays one row per prompt however
    many requests there are.
    """
    names = requests.collect_schema().names()
    if not all(c in names for c in ("prompt_name", "e2e_s", "is_warmup", "status", "suites")):
        return pl.DataFrame()
    ok = requests.filter(
        ~pl.col("is_warmup")
        & (pl.col("status") == "ok")
        & pl.col("e2e_s").is_not_null()
        & pl.col("suites").str.split(",").list.contains(pl.lit("basic"))
    )
    tokens = pl.col("prompt_tokens").mean() if "prompt_tokens" in names else pl.lit(None)
    return (
        ok.group_by("prompt_name")
        .agg(
            pl.len().alias("n"),
            tokens.alias("prompt_tokens"),
            *[
                pl.col("e2e_s").quantile(q, interpolation="linear").alias(k)
                for k, q in QUANTILES.items()
            ],
        )
        .sort("prompt_tokens", "prompt_name", nulls_last=True)
        .collect()
    )


def latency_distribution_chart(quantiles: pl.DataFrame) -> alt.LayerChart | alt.Chart:
    """Box plot (min–max whiskers, quartile box, median tick) of e2e_s per basic prompt."""
    title = "End-to-end latency per prompt, basic suite (s)"
    if quantiles.is_empty() or "median" not in quantiles.columns:
        return no_data(title)
    order = quantiles["prompt_name"].to_list()
    n = int(quantiles["n"].sum())
    title = f"{title}, n={n} requests over {len(order)} prompts"
    base = alt.Chart(quantiles, title=title).encode(
        x=alt.X("prompt_name:N", title="prompt (shortest first)", sort=order,
                axis=alt.Axis(labelAngle=0)),
    )  # fmt: skip
    tooltip = [alt.Tooltip("prompt_name:N"), alt.Tooltip("n:Q")] + [
        alt.Tooltip(f"{k}:Q", format=".4f") for k in QUANTILES
    ]
    whiskers = base.mark_rule().encode(
        y=alt.Y("min:Q", title=metric("e2e").axis_title, scale=alt.Scale(zero=False)),
        y2="max:Q",
    )
    box = base.mark_bar(size=28, opacity=0.5).encode(y="q1:Q", y2="q3:Q", tooltip=tooltip)
    median = base.mark_tick(size=28, thickness=2, color="black").encode(y="median:Q")
    return (whiskers + box + median).properties(width=WIDTH, height=HEIGHT)


def _line(fit: LinearFit, low: float, high: float, metric: str) -> list[dict]:
    if fit.slope is None:
        return []
    return [
        {"tokens": x, "seconds": fit.intercept + fit.slope * x, "metric": metric}
        for x in (low, high)
    ]


def prompt_length_chart(finding: PromptLengthFinding) -> alt.LayerChart | alt.Chart:
    """Mean TTFT and mean latency against mean prompt tokens, with the findings' lines."""
    title = "TTFT and latency against prompt length (s)"
    points = finding.points
    if not points:
        return no_data(title)
    data = pl.DataFrame(
        [
            {
                "prompt": p.prompt_name,
                "tokens": p.prompt_tokens_mean,
                "seconds": getattr(p, figure).mean,
                "metric": metric,
                "n": p.n_ok,
            }
            for p in points
            for figure, metric in (("ttft", "mean TTFT"), ("e2e", "mean latency"))
        ]
    )
    low, high = points[0].prompt_tokens_mean, points[-1].prompt_tokens_mean
    lines = _line(finding.ttft_fit, low, high, "mean TTFT")
    lines += _line(finding.e2e_fit, low, high, "mean latency")
    x = alt.X("tokens:Q", title="prompt tokens (mean)")
    y = alt.Y("seconds:Q", title="seconds")
    color = alt.Color("metric:N", title=None, sort=["mean TTFT", "mean latency"])
    chart = (
        alt.Chart(data, title=f"{title}, {len(points)} prompt lengths")
        .mark_point(filled=True, size=60)
        .encode(
            x=x,
            y=y,
            color=color,
            tooltip=[
                alt.Tooltip("prompt:N"),
                alt.Tooltip("metric:N"),
                alt.Tooltip("tokens:Q", format=".0f", title="prompt tokens"),
                alt.Tooltip("seconds:Q", format=".4f"),
                alt.Tooltip("n:Q"),
            ],
        )
    )
    if lines:
        fit = alt.Chart(pl.DataFrame(lines)).mark_line(strokeDash=[4, 3])
        chart = chart + fit.encode(x=x, y=y, color=color)
    return chart.properties(width=WIDTH, height=HEIGHT)


def _interval_rows(items, figure: str) -> list[dict]:
    rows = []
    for c in items:
        s = getattr(c, figure)
        low, high = s.interval or (None, None)
        row = {"mean": s.mean, "low": low, "high": high, "n": c.n_ok, "trials": c.trials}
        # no time is below 0 s: a wide CI's bar stops there (the tooltip keeps its bound)
        rows.append(row | {"bar_low": None if low is None else max(low, 0.0)})
    return rows


def temperature_chart(finding: TemperatureFinding) -> alt.LayerChart | alt.Chart:
    """Mean latency ± 95 % CI per temperature, labelled with the mean output length."""
    title = "Latency by temperature, mean ± 95% CI (s)"
    items = finding.conditions
    if not items:
        return no_data(title)
    data = pl.DataFrame(
        [
            row
            | {
                "temperature": c.temperature,
                "tps": c.tps.mean,
                "output_tokens": c.output_tokens_mean,
                "label": "n/a"
                if c.output_tokens_mean is None
                else f"{c.output_tokens_mean:.0f} tok",
            }
            for c, row in zip(items, _interval_rows(items, "e2e"))
        ]
    )
    n = sum(c.n_ok for c in items)
    base = alt.Chart(
        data,
        title=f"{title}, {len(items)} temperatures, n={n}; labels: mean output tokens",
    ).encode(x=alt.X("temperature:O", title="temperature", axis=alt.Axis(labelAngle=0)))
    means = base.mark_point(filled=True, size=80).encode(
        y=alt.Y("mean:Q", title="mean latency (s)", scale=alt.Scale(zero=False)),
        tooltip=[
            alt.Tooltip("temperature:O"),
            alt.Tooltip("mean:Q", format=".4f", title="mean latency (s)"),
            alt.Tooltip("low:Q", format=".4f", title="CI low (s)"),
            alt.Tooltip("high:Q", format=".4f", title="CI high (s)"),
            alt.Tooltip("tps:Q", format=".1f", title="decode tok/s"),
            alt.Tooltip("output_tokens:Q", format=".0f", title="output tokens"),
            alt.Tooltip("n:Q"),
            alt.Tooltip("trials:Q"),
        ],
    )
    errors = base.mark_errorbar(ticks={"size": 14}, thickness=1.5).encode(
        y=alt.Y("bar_low:Q", title="mean latency (s)"), y2=alt.Y2("high:Q")
    )
    labels = base.mark_text(dy=-10).encode(y=alt.Y("high:Q"), text=alt.Text("label:N"))
    return (means + errors + labels).properties(width=WIDTH, height=HEIGHT)


def concurrency_chart(finding: ConcurrencyFinding) -> alt.LayerChart | alt.Chart:
    """Throughput (req/s) against mean latency, one labelled point per worker count."""
    throughput = metric("req_per_s")
    title = f"{throughput.label} against mean latency (s) by concurrent workers"
    if not finding.points:
        return no_data(title)
    data = pl.DataFrame(
        [
            {
                "workers": p.workers,
                "req_per_s": p.condition.req_per_s.mean,
                "e2e_mean_s": p.condition.e2e.mean,
                "n": p.condition.n_ok,
                "label": f"{p.workers} worker" if p.workers == 1 else f"{p.workers} workers",
            }
            for p in finding.points
        ]
    )
    n = int(data["n"].sum())
    knee = f", knee at {finding.knee_workers}" if finding.knee_workers else ""
    if finding.verdict is not None and not finding.trusted:
        knee += " (inconclusive: other work disturbed the run)"
    base = alt.Chart(data, title=f"{title}, {data.height} worker counts, n={n}{knee}").encode(
        x=alt.X("e2e_mean_s:Q", title="mean latency (s)"),
        y=alt.Y("req_per_s:Q", title=throughput.axis_title, scale=alt.Scale(zero=True)),
    )
    line = base.mark_line(point=True).encode(
        order=alt.Order("workers:O"),
        tooltip=[
            alt.Tooltip("workers:O"),
            alt.Tooltip("req_per_s:Q", format=f".{throughput.digits}f", title=throughput.unit),
            alt.Tooltip("e2e_mean_s:Q", format=".4f", title="mean latency (s)"),
            alt.Tooltip("n:Q"),
        ],
    )
    labels = base.mark_text(dy=-12, align="center").encode(text=alt.Text("label:N"))
    return (line + labels).properties(width=WIDTH, height=HEIGHT)


def latency_breakdown_chart(finding: BasicFinding) -> alt.Chart:
    """Stacked mean seconds per phase for each basic prompt."""
    title = "Where the time goes: mean latency by phase (s)"
    items = [c for c in finding.prompts if c.e2e.mean is not None]
    if not items:
        return no_data(title)
    rows = []
    for c in items:
        seconds = phase_seconds(c)
        if not seconds and c.ttft.mean is not None:
            seconds = {
                "time to first token": c.ttft.mean,
                "after first token": max(0.0, c.e2e.mean - c.ttft.mean),
            }
        seconds = seconds or {"total": c.e2e.mean}
        rows += [
            {"prompt": c.condition_id, "phase": phase, "seconds": value, "rank": rank}
            for rank, (phase, value) in enumerate(seconds.items())
        ]
    data = pl.DataFrame(rows)
    phases = data["phase"].unique(maintain_order=True).to_list()
    n = sum(c.n_ok for c in items)
    return (
        alt.Chart(data, title=f"{title}, {len(items)} prompts, n={n}")
        .mark_bar()
        .encode(
            x=alt.X(
                "prompt:N",
                title="prompt",
                sort=[c.condition_id for c in items],
                axis=alt.Axis(labelAngle=0),
            ),
            y=alt.Y("seconds:Q", title="mean latency (s)", stack="zero"),
            color=alt.Color("phase:N", sort=phases, title="phase"),
            order=alt.Order("rank:Q"),
            tooltip=[
                alt.Tooltip("prompt:N"),
                alt.Tooltip("phase:N"),
                alt.Tooltip("seconds:Q", format=".4f"),
            ],
        )  # fmt: skip
        .properties(width=WIDTH, height=HEIGHT)
    )


def render_charts(findings_path, requests_path, samples_paths, out_dir) -> dict[str, dict]:
    from perflab.analyse.findings import load

    findings = load(findings_path)
    resources_id = findings.resources.experiment_id if findings.resources else None
    samples = read_samples([p for p in samples_paths if Path(p).parent.name == resources_id])
    requests = pl.scan_parquet(requests_path)
    if findings.comparison is not None:  # the Day-1 charts show the baseline target
        requests = requests.filter(pl.col("target") == findings.comparison.baseline)
    charts = {
        "latency_distribution": latency_distribution_chart(latency_quantiles(requests)),
        "prompt_length": prompt_length_chart(findings.prompt_length),
        "temperature": temperature_chart(findings.temperature),
        "concurrency": concurrency_chart(findings.concurrency),
        "resource_timeline": resource_timeline_chart(downsample(samples)),
        "latency_breakdown": latency_breakdown_chart(findings.basic),
    }
    if findings.capacity:
        from perflab.present.capacity_chart import capacity_chart

        charts["capacity"] = capacity_chart(findings.capacity)
    if findings.comparison is not None:
        from perflab.present.comparison_charts import comparison_chart

        charts["comparison"] = comparison_chart(findings.comparison)
    return {name: save_chart(chart, Path(out_dir) / name) for name, chart in charts.items()}
