"""Altair charts: one pure function per figure, saved as SVG, PNG and offline HTML.

Every ``*_chart`` function takes a Polars DataFrame (the summary, the requests
or the resource samples), returns an Altair chart and never raises on empty or
incomplete input: it returns a "no data" text chart instead. Titles carry the
units and n.
"""

from __future__ import annotations

import re
from pathlib import Path

import altair as alt
import polars as pl

from perflab.analysis import BREAKDOWN_PARTS, suite_rows

WIDTH = 480
HEIGHT = 300
GOLDEN = 0.6180339887  # deterministic jitter: k·φ mod 1 spreads points evenly
EXTERNAL_SCRIPT = re.compile(r"<script[^>]*\bsrc\s*=\s*[\"']?(https?:)?//", re.IGNORECASE)


def _no_data(title: str) -> alt.Chart:
    return (
        alt.Chart(pl.DataFrame({"text": ["no data in this run"]}), title=title)
        .mark_text(size=14)
        .encode(text=alt.Text("text:N"))
        .properties(width=WIDTH, height=60)
    )


def _has(frame: pl.DataFrame, *columns: str) -> bool:
    return all(column in frame.columns for column in columns)


def _ensure(frame: pl.DataFrame, *columns: str) -> pl.DataFrame:
    """``frame`` with every missing column of ``columns`` added as nulls."""
    missing = [c for c in columns if c not in frame.columns]
    return frame.with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in missing)


def _measured(frame: pl.DataFrame, *columns: str) -> pl.DataFrame:
    """Rows where every one of ``columns`` is present, not null and not NaN."""
    if not _has(frame, *columns):
        return frame.clear().select()
    return frame.filter(
        pl.all_horizontal(pl.col(c).is_not_null() & pl.col(c).cast(pl.Float64).is_not_nan())
        for c in columns
    )


def _prompt_order(frame: pl.DataFrame, tokens_column: str) -> list[str]:
    """Prompt names from the shortest prompt to the longest (else first-seen order)."""
    if tokens_column in frame.columns:
        return (
            frame.group_by("prompt_name")
            .agg(pl.col(tokens_column).mean())
            .sort(tokens_column, "prompt_name", nulls_last=True)["prompt_name"]
            .to_list()
        )
    return frame["prompt_name"].unique(maintain_order=True).to_list()


def latency_distribution_chart(requests: pl.DataFrame) -> alt.LayerChart | alt.Chart:
    """Box plot and jittered points of e2e_s per prompt, basic suite, measured ok requests."""
    title = "End-to-end latency per prompt, basic suite (s)"
    if not _has(requests, "prompt_name", "e2e_s", "is_warmup", "status", "suites"):
        return _no_data(title)
    ok = requests.filter(~pl.col("is_warmup") & (pl.col("status") == "ok"))
    data = _measured(suite_rows(ok, "basic"), "e2e_s")
    if data.is_empty():
        return _no_data(title)
    order = _prompt_order(data, "prompt_tokens")
    data = data.select(
        "prompt_name",
        "e2e_s",
        ((pl.int_range(pl.len()).over("prompt_name") * GOLDEN) % 1.0).alias("jitter"),
    )
    title = f"{title}, n={data.height} requests over {len(order)} prompts"
    base = alt.Chart(data, title=title).encode(
        x=alt.X(
            "prompt_name:N",
            title="prompt (shortest first)",
            sort=order,
            axis=alt.Axis(labelAngle=0),
        ),
        y=alt.Y("e2e_s:Q", title="end-to-end latency (s)", scale=alt.Scale(zero=False)),
    )
    box = base.mark_boxplot(extent="min-max", opacity=0.5)
    points = base.mark_circle(size=12, opacity=0.4).encode(
        xOffset=alt.XOffset("jitter:Q", scale=alt.Scale(domain=[-1.0, 2.0])),
        tooltip=[alt.Tooltip("prompt_name:N"), alt.Tooltip("e2e_s:Q", format=".4f")],
    )
    return (box + points).properties(width=WIDTH, height=HEIGHT)


def prompt_length_chart(summary: pl.DataFrame) -> alt.LayerChart | alt.Chart:
    """Mean TTFT and mean latency against mean prompt tokens, with least-squares lines."""
    title = "TTFT and latency against prompt length (s)"
    rows = _measured(
        suite_rows(summary, "prompt_length"), "prompt_tokens_mean", "ttft_mean_s", "e2e_mean_s"
    )
    if rows.is_empty():
        return _no_data(title)
    rows = _ensure(rows, "prompt_name", "n_ok")
    data = rows.unpivot(
        on=["ttft_mean_s", "e2e_mean_s"],
        index=["prompt_name", "prompt_tokens_mean", "n_ok"],
        variable_name="metric",
        value_name="seconds",
    ).with_columns(
        pl.col("metric").replace({"ttft_mean_s": "mean TTFT", "e2e_mean_s": "mean latency"})
    )
    base = alt.Chart(data, title=f"{title}, {rows.height} prompt lengths").encode(
        x=alt.X("prompt_tokens_mean:Q", title="prompt tokens (mean)"),
        y=alt.Y("seconds:Q", title="seconds"),
        color=alt.Color("metric:N", title=None, sort=["mean TTFT", "mean latency"]),
    )
    points = base.mark_point(filled=True, size=60).encode(
        tooltip=[
            alt.Tooltip("prompt_name:N", title="prompt"),
            alt.Tooltip("metric:N"),
            alt.Tooltip("prompt_tokens_mean:Q", format=".0f", title="prompt tokens"),
            alt.Tooltip("seconds:Q", format=".4f"),
            alt.Tooltip("n_ok:Q", title="n"),
        ]
    )
    fit = base.transform_regression(
        "prompt_tokens_mean", "seconds", groupby=["metric"], method="linear"
    ).mark_line(strokeDash=[4, 3])
    return (points + fit).properties(width=WIDTH, height=HEIGHT)


def temperature_chart(summary: pl.DataFrame) -> alt.LayerChart | alt.Chart:
    """Mean latency ± 95 % CI per temperature, labelled with the mean output length."""
    title = "Latency by temperature, mean ± 95% CI (s)"
    rows = _measured(suite_rows(summary, "temperature"), "temperature", "e2e_mean_s")
    if rows.is_empty():
        return _no_data(title)
    rows = _ensure(rows, "e2e_ci95_s", "tps_mean", "output_tokens_mean", "n_ok")
    ci = pl.col("e2e_ci95_s").fill_null(0.0).fill_nan(0.0)
    data = rows.select(
        "temperature",
        "e2e_mean_s",
        (pl.col("e2e_mean_s") - ci).alias("low"),
        (pl.col("e2e_mean_s") + ci).alias("high"),
        "tps_mean",
        "output_tokens_mean",
        "n_ok",
    ).with_columns(
        pl.format("{} tok", pl.col("output_tokens_mean").round(0).cast(pl.Int64)).alias("label")
    )
    n = int(data["n_ok"].sum() or 0)
    base = alt.Chart(
        data,
        title=f"{title}, {data.height} temperatures, n={n}; labels: mean output tokens",
    ).encode(x=alt.X("temperature:O", title="temperature", axis=alt.Axis(labelAngle=0)))
    means = base.mark_point(filled=True, size=80).encode(
        y=alt.Y("e2e_mean_s:Q", title="mean latency (s)", scale=alt.Scale(zero=False)),
        tooltip=[
            alt.Tooltip("temperature:O"),
            alt.Tooltip("e2e_mean_s:Q", format=".4f", title="mean latency (s)"),
            alt.Tooltip("low:Q", format=".4f", title="CI low (s)"),
            alt.Tooltip("high:Q", format=".4f", title="CI high (s)"),
            alt.Tooltip("tps_mean:Q", format=".1f", title="decode tok/s"),
            alt.Tooltip("output_tokens_mean:Q", format=".0f", title="output tokens"),
            alt.Tooltip("n_ok:Q", title="n"),
        ],
    )
    errors = base.mark_errorbar(ticks={"size": 14}, thickness=1.5).encode(
        y=alt.Y("low:Q", title="mean latency (s)"), y2=alt.Y2("high:Q")
    )
    labels = base.mark_text(dy=-10).encode(y=alt.Y("high:Q"), text=alt.Text("label:N"))
    return (means + errors + labels).properties(width=WIDTH, height=HEIGHT)


def concurrency_chart(summary: pl.DataFrame) -> alt.LayerChart | alt.Chart:
    """Throughput (req/s) against mean latency, one labelled point per worker count."""
    title = "Throughput (req/s) against mean latency (s) by concurrent workers"
    rows = _measured(suite_rows(summary, "concurrency"), "workers", "req_per_s", "e2e_mean_s")
    if rows.is_empty():
        return _no_data(title)
    data = (
        _ensure(rows, "n_ok")
        .sort("workers")
        .select(
            "workers",
            "req_per_s",
            "e2e_mean_s",
            "n_ok",
            pl.when(pl.col("workers") == 1)
            .then(pl.lit("1 worker"))
            .otherwise(pl.format("{} workers", pl.col("workers")))
            .alias("label"),
        )
    )
    n = int(data["n_ok"].sum() or 0)
    base = alt.Chart(
        data, title=f"{title}, {data['workers'].n_unique()} worker counts, n={n}"
    ).encode(
        x=alt.X("e2e_mean_s:Q", title="mean latency (s)"),
        y=alt.Y("req_per_s:Q", title="throughput (req/s)", scale=alt.Scale(zero=True)),
    )
    line = base.mark_line(point=True).encode(
        order=alt.Order("workers:O"),
        tooltip=[
            alt.Tooltip("workers:O"),
            alt.Tooltip("req_per_s:Q", format=".2f", title="req/s"),
            alt.Tooltip("e2e_mean_s:Q", format=".4f", title="mean latency (s)"),
            alt.Tooltip("n_ok:Q", title="n"),
        ],
    )
    labels = base.mark_text(dy=-12, align="center").encode(text=alt.Text("label:N"))
    return (line + labels).properties(width=WIDTH, height=HEIGHT)


CPU_SERIES = {
    "cpu_percent": "system CPU (% of all cores)",
    "server_cpu_percent": "server CPU (% of one core)",
    "client_cpu_percent": "client CPU (% of one core)",
}
MEMORY_SERIES = {
    "mem_used_gb": "system memory used",
    "server_rss_gb": "server RSS",
    "swap_used_gb": "swap used",
}


def _present(data: pl.DataFrame, series: dict[str, str]) -> list[str]:
    """The columns of ``series`` that ``data`` has with at least one value."""
    return [c for c in series if c in data.columns and data[c].null_count() < data.height]


def _series_chart(data: pl.DataFrame, series: dict[str, str], y_title: str, title: str):
    """Lines over elapsed time, one per column of ``series`` with values in ``data``."""
    long = (
        data.select("elapsed_s", *[pl.col(c).cast(pl.Float64) for c in _present(data, series)])
        .unpivot(index="elapsed_s", variable_name="series", value_name="value")
        .drop_nulls("value")
        .with_columns(pl.col("series").replace(series))
    )
    return (
        alt.Chart(long, title=title)
        .mark_line()
        .encode(
            x=alt.X("elapsed_s:Q", title="elapsed (s)"),
            y=alt.Y("value:Q", title=y_title),
            color=alt.Color("series:N", title=None, sort=list(series.values())),
            tooltip=[
                alt.Tooltip("series:N"),
                alt.Tooltip("elapsed_s:Q", format=".1f"),
                alt.Tooltip("value:Q", format=".2f"),
            ],
        )
        .properties(width=WIDTH, height=160)
    )


def resource_timeline_chart(samples: pl.DataFrame) -> alt.VConcatChart | alt.Chart:
    """CPU % (system, server, client) and memory GB over the sustained-load run."""
    title = "Resources during sustained load"
    if "t" not in samples.columns:
        return _no_data(title)
    data = samples.filter(pl.col("t").is_not_null()).sort("t")
    cpu, memory = _present(data, CPU_SERIES), _present(data, MEMORY_SERIES)
    if data.is_empty() or not (cpu or memory):
        return _no_data(title)
    if _has(data, "client_cpu_percent", "server_cpu_percent") and data["client_cpu_percent"].equals(
        data["server_cpu_percent"]
    ):
        # embedded engine: client and server are one process, one line says it all
        data = data.drop("client_cpu_percent")
        cpu = _present(data, CPU_SERIES)
    data = data.with_columns((pl.col("t") - pl.col("t").min()).alias("elapsed_s"))
    span = f"{data.height} samples over {data['elapsed_s'].max():.0f} s"
    panels = []
    if cpu:
        panels.append(_series_chart(data, CPU_SERIES, "CPU (%)", f"{title}: CPU (%), {span}"))
    if memory:
        memory_title = f"Memory (GB), {span}" if cpu else f"{title}: memory (GB), {span}"
        panels.append(_series_chart(data, MEMORY_SERIES, "GB", memory_title))
    return alt.vconcat(*panels).resolve_scale(color="independent")


def latency_breakdown_chart(summary: pl.DataFrame) -> alt.Chart:
    """Stacked mean seconds per phase for each basic prompt (each experiment if no basic)."""
    title = "Where the time goes: mean latency by phase (s)"
    rows = suite_rows(summary, "basic")
    if rows.is_empty():
        rows = summary
    rows = _measured(rows, "e2e_mean_s")
    if rows.is_empty():
        return _no_data(title)
    by_prompt = "prompt_name" in rows.columns and rows["prompt_name"].n_unique() == rows.height
    key = "prompt_name" if by_prompt else "experiment_id"
    if key not in rows.columns:
        return _no_data(title)
    parts = [
        p
        for p in BREAKDOWN_PARTS
        if f"{p}_mean_s" in rows.columns and rows[f"{p}_mean_s"].null_count() < rows.height
    ]
    if parts:
        known = [pl.col(f"{p}_mean_s").fill_null(0.0) for p in parts]
        phases = rows.select(
            key,
            *[value.alias(p) for p, value in zip(parts, known)],
            (pl.col("e2e_mean_s") - pl.sum_horizontal(known)).clip(lower_bound=0).alias("other"),
        )
        columns = [*parts, "other"]
    elif "ttft_mean_s" in rows.columns:
        phases = rows.select(
            key,
            pl.col("ttft_mean_s").fill_null(0.0).alias("time to first token"),
            (pl.col("e2e_mean_s") - pl.col("ttft_mean_s").fill_null(0.0))
            .clip(lower_bound=0)
            .alias("after first token"),
        )
        columns = ["time to first token", "after first token"]
    else:
        phases = rows.select(key, pl.col("e2e_mean_s").alias("total"))
        columns = ["total"]
    order = _prompt_order(rows, "prompt_tokens_mean") if by_prompt else rows[key].to_list()
    data = phases.unpivot(
        on=columns, index=key, variable_name="phase", value_name="seconds"
    ).with_columns(pl.col("phase").replace_strict(columns, list(range(len(columns)))).alias("rank"))
    n = int(rows["n_ok"].sum() or 0) if "n_ok" in rows.columns else 0
    label = "prompt" if by_prompt else "experiment"
    return (
        alt.Chart(data, title=f"{title}, {rows.height} {label}s, n={n}")
        .mark_bar()
        .encode(
            x=alt.X(
                f"{key}:N",
                title=label,
                sort=order,
                axis=alt.Axis(labelAngle=0 if by_prompt else -30),
            ),
            y=alt.Y("seconds:Q", title="mean latency (s)", stack="zero"),
            color=alt.Color("phase:N", sort=columns, title="phase"),
            order=alt.Order("rank:Q"),
            tooltip=[
                alt.Tooltip(f"{key}:N", title=label),
                alt.Tooltip("phase:N"),
                alt.Tooltip("seconds:Q", format=".4f"),
            ],
        )
        .properties(width=WIDTH, height=HEIGHT)
    )


def save_chart(chart, stem: Path) -> dict[str, Path]:
    """Write stem.svg, stem.png (2× scale) and a stem.html that renders offline.

    The HTML inlines the Vega libraries (vl-convert bundles them); a file that
    would still load a script from the network is an error.
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = {suffix: stem.with_name(f"{stem.name}.{suffix}") for suffix in ("svg", "png", "html")}
    chart.save(paths["svg"])
    chart.save(paths["png"], scale_factor=2)
    chart.save(paths["html"], inline=True)
    if EXTERNAL_SCRIPT.search(paths["html"].read_text()):
        raise RuntimeError(f"{paths['html']} loads a script from the network")
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
