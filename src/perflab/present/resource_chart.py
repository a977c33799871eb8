"""The resource timeline: CPU and memory over the sustained-load run, from the
sampler's files, averaged into time bins so the chart's data stays small."""

from __future__ import annotations

from pathlib import Path

import altair as alt
import polars as pl

from perflab.present.chart_style import WIDTH, no_data

MAX_TIMELINE_POINTS = 1000  # resource samples are averaged into at most this many bins


def _has(frame: pl.DataFrame, *columns: str) -> bool:
    return all(column in frame.columns for column in columns)


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
        return no_data(title)
    data = samples.filter(pl.col("t").is_not_null()).sort("t")
    cpu, memory = _present(data, CPU_SERIES), _present(data, MEMORY_SERIES)
    if data.is_empty() or not (cpu or memory):
        return no_data(title)
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


def read_samples(paths: list[Path]) -> pl.DataFrame:
    frames = [
        pl.read_ndjson(path).select(pl.exclude("cpu_per_core", "server_pids"))
        for path in paths
        if Path(path).stat().st_size
    ]
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def downsample(samples: pl.DataFrame, points: int = MAX_TIMELINE_POINTS) -> pl.DataFrame:
    """At most ``points`` rows: samples averaged over equal spans of time."""
    if samples.height <= points or "t" not in samples.columns:
        return samples
    start, end = samples["t"].min(), samples["t"].max()
    width = (end - start) / points or 1.0
    numeric = [c for c, kind in samples.schema.items() if kind.is_numeric() and c != "t"]
    return (
        samples.with_columns(((pl.col("t") - start) / width).floor().alias("bin"))
        .group_by("bin")
        .agg(pl.col("t").min(), *[pl.col(c).mean() for c in numeric])
        .sort("t")
        .drop("bin")
    )
