"""Altair charts: one pure function per figure, saved as SVG, PNG and offline HTML."""

from __future__ import annotations

import json
from pathlib import Path

import altair as alt
import polars as pl

from perflab.analysis import suite_rows

WIDTH = 480
BREAKDOWN_PARTS = ("queue", "load", "prefill", "decode")


def _no_data(title: str) -> alt.Chart:
    return (
        alt.Chart(pl.DataFrame({"text": ["no data in this run"]}), title=title)
        .mark_text(size=14)
        .encode(text=alt.Text("text:N"))
        .properties(width=WIDTH, height=60)
    )


def _measured_ok(requests: pl.DataFrame) -> pl.DataFrame:
    return requests.filter(~pl.col("is_warmup") & (pl.col("status") == "ok"))


def latency_distribution_chart(requests: pl.DataFrame) -> alt.Chart:
    title = "End-to-end latency per prompt, basic suite (s)"
    data = suite_rows(_measured_ok(requests), "basic").select("prompt_name", "e2e_s")
    if data.is_empty():
        return _no_data(title)
    title = f"{title}, n={data.height} requests"
    base = alt.Chart(data, title=title).encode(
        x=alt.X("prompt_name:N", title="prompt", sort=["short", "medium", "long"]),
    )
    box = base.mark_boxplot(extent="min-max", opacity=0.5).encode(
        y=alt.Y("e2e_s:Q", title="latency (s)")
    )
    points = (
        base.mark_circle(size=12, opacity=0.4)
        .encode(y=alt.Y("e2e_s:Q"), xOffset=alt.XOffset("jitter:Q"))
        .transform_calculate(jitter="random()")
    )
    return (box + points).properties(width=WIDTH, height=300)


def prompt_length_chart(summary: pl.DataFrame) -> alt.LayerChart | alt.Chart:
    title = "TTFT and latency against prompt length (s)"
    rows = suite_rows(summary, "prompt_length").drop_nulls("prompt_tokens_mean")
    if rows.is_empty():
        return _no_data(title)
    data = rows.unpivot(
        on=["ttft_mean_s", "e2e_mean_s"],
        index=["prompt_name", "prompt_tokens_mean", "n_ok"],
        variable_name="metric",
        value_name="seconds",
    ).with_columns(
        pl.col("metric").replace({"ttft_mean_s": "mean TTFT", "e2e_mean_s": "mean latency"})
    )
    base = alt.Chart(data, title=f"{title}, {rows.height} prompt lengths").encode(
        x=alt.X("prompt_tokens_mean:Q", title="prompt tokens"),
        y=alt.Y("seconds:Q", title="seconds"),
        color=alt.Color("metric:N", title=None),
    )
    points = base.mark_point(filled=True, size=60).encode(
        tooltip=[
            alt.Tooltip("prompt_name:N"),
            alt.Tooltip("prompt_tokens_mean:Q", format=".0f"),
            alt.Tooltip("seconds:Q", format=".4f"),
            alt.Tooltip("n_ok:Q", title="n"),
        ]
    )
    fit = base.transform_regression("prompt_tokens_mean", "seconds", groupby=["metric"]).mark_line(
        strokeDash=[4, 3]
    )
    return (points + fit).properties(width=WIDTH, height=300)


def temperature_chart(summary: pl.DataFrame) -> alt.LayerChart | alt.Chart:
    title = "Latency by temperature, mean ± 95% CI (s)"
    rows = suite_rows(summary, "temperature").with_columns(
        (pl.col("e2e_mean_s") - pl.col("e2e_ci95_s").fill_null(0)).alias("low"),
        (pl.col("e2e_mean_s") + pl.col("e2e_ci95_s").fill_null(0)).alias("high"),
    )
    if rows.is_empty():
        return _no_data(title)
    base = alt.Chart(rows, title=title).encode(x=alt.X("temperature:O", title="temperature"))
    bars = base.mark_bar(opacity=0.7).encode(
        y=alt.Y("e2e_mean_s:Q", title="mean latency (s)"),
        tooltip=[
            alt.Tooltip("temperature:O"),
            alt.Tooltip("e2e_mean_s:Q", format=".4f"),
            alt.Tooltip("tps_mean:Q", format=".1f", title="decode tok/s"),
            alt.Tooltip("output_tokens_mean:Q", format=".0f", title="output tokens"),
            alt.Tooltip("n_ok:Q", title="n"),
        ],
    )
    errors = base.mark_rule().encode(y=alt.Y("low:Q"), y2=alt.Y2("high:Q"))
    labels = base.mark_text(dy=-8).encode(
        y=alt.Y("high:Q"),
        text=alt.Text("output_tokens_mean:Q", format=".0f"),
    )
    return (bars + errors + labels).properties(
        width=WIDTH, height=300, title=f"{title}; labels: output tokens"
    )


def concurrency_chart(summary: pl.DataFrame) -> alt.LayerChart | alt.Chart:
    title = "Throughput against latency by concurrent workers"
    rows = suite_rows(summary, "concurrency").sort("workers")
    if rows.is_empty():
        return _no_data(title)
    base = alt.Chart(rows, title=title).encode(
        x=alt.X("e2e_mean_s:Q", title="mean latency (s)"),
        y=alt.Y("req_per_s:Q", title="throughput (req/s)"),
    )
    line = base.mark_line(point=True).encode(order=alt.Order("workers:O"))
    labels = (
        base.mark_text(dx=8, align="left")
        .encode(text=alt.Text("label:N"))
        .transform_calculate(label="datum.workers + ' worker(s)'")
    )
    return (line + labels).properties(width=WIDTH, height=300)


CPU_SERIES = {
    "cpu_percent": "system CPU (% of all cores)",
    "server_cpu_percent": "server CPU (% of one core)",
}
MEMORY_SERIES = {"mem_used_gb": "system memory used", "server_rss_gb": "server RSS"}


def _series_chart(data: pl.DataFrame, series: dict[str, str], y_title: str, title: str):
    """Lines over elapsed time, one per column of ``series`` present in ``data``."""
    long = data.unpivot(
        on=[column for column in series if column in data.columns],
        index="elapsed_s",
        variable_name="series",
        value_name="value",
    ).with_columns(pl.col("series").replace(series))
    return (
        alt.Chart(long, title=title)
        .mark_line()
        .encode(
            x=alt.X("elapsed_s:Q", title="elapsed (s)"),
            y=alt.Y("value:Q", title=y_title),
            color=alt.Color("series:N", title=None),
        )
        .properties(width=WIDTH, height=160)
    )


def resource_timeline_chart(samples: pl.DataFrame) -> alt.VConcatChart | alt.Chart:
    title = "Resources during sustained load"
    if samples.is_empty():
        return _no_data(title)
    data = samples.with_columns((pl.col("t") - pl.col("t").min()).alias("elapsed_s"))
    return alt.vconcat(
        _series_chart(data, CPU_SERIES, "CPU (%)", f"{title}: CPU, {data.height} samples"),
        _series_chart(data, MEMORY_SERIES, "GB", "Memory (GB)"),
    ).resolve_scale(color="independent")


def latency_breakdown_chart(summary: pl.DataFrame) -> alt.Chart:
    title = "Where the time goes: mean latency by phase (s)"
    rows = suite_rows(summary, "basic")
    if rows.is_empty():
        rows = summary
    if rows.is_empty():
        return _no_data(title)
    parts = [p for p in BREAKDOWN_PARTS if rows[f"{p}_mean_s"].null_count() < rows.height]
    if parts:
        phases = rows.select(
            "prompt_name",
            *[pl.col(f"{p}_mean_s").fill_null(0).alias(p) for p in parts],
            (
                pl.col("e2e_mean_s")
                - pl.sum_horizontal(*[pl.col(f"{p}_mean_s").fill_null(0) for p in parts])
            )
            .clip(lower_bound=0)
            .alias("other"),
        )
        columns = [*parts, "other"]
    else:
        phases = rows.select(
            "prompt_name",
            pl.col("ttft_mean_s").alias("ttft"),
            (pl.col("e2e_mean_s") - pl.col("ttft_mean_s")).alias("after first token"),
        )
        columns = ["ttft", "after first token"]
    data = phases.unpivot(
        on=columns, index="prompt_name", variable_name="phase", value_name="seconds"
    )
    return (
        alt.Chart(data, title=title)
        .mark_bar()
        .encode(
            x=alt.X("prompt_name:N", title="prompt", sort=["short", "medium", "long"]),
            y=alt.Y("seconds:Q", title="seconds", stack="zero"),
            color=alt.Color("phase:N", sort=columns, title="phase"),
            order=alt.Order("phase_order:Q"),
            tooltip=[alt.Tooltip("phase:N"), alt.Tooltip("seconds:Q", format=".4f")],
        )
        .transform_calculate(phase_order=f"indexof({json.dumps(columns)}, datum.phase)")
        .properties(width=WIDTH, height=300)
    )


def save_chart(chart, stem: Path) -> dict[str, Path]:
    """Write stem.svg, stem.png and a stem.html that renders offline."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = {suffix: stem.with_suffix(f".{suffix}") for suffix in ("svg", "png", "html")}
    chart.save(paths["svg"])
    chart.save(paths["png"], scale_factor=2)
    chart.save(paths["html"], inline=True)
    return paths


def read_samples(paths: list[Path]) -> pl.DataFrame:
    frames = [
        pl.read_ndjson(path).select(pl.exclude("cpu_per_core", "server_pids"))
        for path in paths
        if Path(path).stat().st_size
    ]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def resource_samples(summary: pl.DataFrame, samples_paths: list[Path]) -> pl.DataFrame:
    """The samples of the resources suite's experiment."""
    ids = set(suite_rows(summary, "resources")["experiment_id"])
    return read_samples([p for p in samples_paths if Path(p).parent.name in ids])


def render_charts(summary_path, requests_path, samples_paths, out_dir) -> dict[str, dict]:
    summary = pl.read_parquet(summary_path)
    requests = pl.read_parquet(requests_path)
    charts = {
        "latency_distribution": latency_distribution_chart(requests),
        "prompt_length": prompt_length_chart(summary),
        "temperature": temperature_chart(summary),
        "concurrency": concurrency_chart(summary),
        "resource_timeline": resource_timeline_chart(resource_samples(summary, samples_paths)),
        "latency_breakdown": latency_breakdown_chart(summary),
    }
    return {name: save_chart(chart, Path(out_dir) / name) for name, chart in charts.items()}
