"""Render the Day-1 learning log from the summary, the analysis and the verdict."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import jinja2
import polars as pl

from perflab import __version__
from perflab.analysis import suite_rows

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
    for src, svg in chart_svgs.items():
        pattern = rf'<img alt="[^"]*" src="{re.escape(src)}"\s*/?>'
        body = re.sub(pattern, svg.replace("\\", "\\\\"), body)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{title}</title><style>body{{font-family:sans-serif;max-width:60em;"
        "margin:2em auto;line-height:1.45}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.2em .5em}code,pre{background:#f4f4f4}"
        "svg{max-width:100%;height:auto}</style></head><body>\n"
        f"{body}\n</body></html>\n"
    )


def load_metadata(path: Path) -> list[dict]:
    """Every experiment's metadata, from the run's metadata.json (keyed by experiment id)."""
    return list(json.loads(Path(path).read_text()).values())


def _get(result, key: str, default=None):
    if result is None:
        return default
    if isinstance(result, dict):
        return result.get(key, default)
    return getattr(result, key, default)


def resources_row(summary: pl.DataFrame, metadata: dict[str, dict]) -> dict | None:
    rows = suite_rows(summary, "resources").to_dicts()
    if not rows:
        return None
    row = rows[0]
    return row | metadata[row["experiment_id"]].get("resources", {})


def concurrency_points(rows: list[dict]) -> list[dict]:
    return [
        {
            "workers": row["workers"],
            "req_per_s": row["req_per_s"],
            "e2e_mean_s": row["e2e_mean_s"],
            "ttft_mean_s": row["ttft_mean_s"],
            "queue_s_mean": row["queue_mean_s"],
        }
        for row in rows
    ]


def bottleneck_section(resources: dict | None, concurrency: list[dict], engine: dict, host: dict):
    from perflab.verdict import decide, suggest_optimizations

    embedded = engine["engine"] == "llamacpp"
    usable = (engine.get("n_threads") if embedded else None) or host["logical_cores"]
    verdict = decide(
        resources or {},
        usable_cores=usable,
        concurrency=concurrency_points(concurrency),
        model_size_gb=engine.get("model_size_gb"),
        embedded=embedded,
    )
    primary = VERDICT_TO_OPTION.get(verdict.verdict)
    note = {
        "queueing": "queueing: the server serializes requests",
        "client": "the benchmark client itself",
        "undetermined": "undetermined from these measurements",
    }.get(verdict.verdict)
    return {
        "primary": primary,
        "options": BOTTLENECK_OPTIONS,
        "note": note,
        "verdict": verdict.verdict,
        "evidence": "; ".join(verdict.evidence) + ".",
        "optimizations": "; ".join(suggest_optimizations(verdict.verdict)) + ".",
        "secondary": verdict.secondary,
    }


def verdict_sentence(bottleneck: dict) -> str:
    if bottleneck["verdict"] == "undetermined":
        return f"The data cannot decide a bottleneck. Evidence: {bottleneck['evidence']}"
    secondary = ", ".join(bottleneck["secondary"])
    also = f" (also: {secondary})" if secondary else ""
    return f"Primary bottleneck: {bottleneck['verdict']}{also}. Evidence: {bottleneck['evidence']}"


def chart_links(charts_dir: Path, markdown_dir: Path) -> dict[str, str]:
    charts_dir = Path(charts_dir)
    if not charts_dir.is_dir():
        return {}
    return {
        svg.stem.removesuffix("_chart"): str(svg.relative_to(markdown_dir))
        for svg in sorted(charts_dir.glob("*.svg"))
    }


def build_context(
    summary: pl.DataFrame,
    metadata: list[dict],
    config: dict,
    charts: dict[str, str],
    result_files: list[str],
) -> dict:
    from perflab import analysis

    by_id = {m["experiment"]["id"]: m for m in metadata}
    first = metadata[0]
    engine = {"model_digest": None, "model_sha256": None, "engine_version": None} | first["engine"]
    host = first["host"]
    basic = rows_for(summary, "basic", config["suites"]["basic"]["prompts"], "prompt_name")
    for row in basic:
        row["prompt_preview"] = preview(config["prompts"][row["prompt_name"]])
    lengths = rows_for(
        summary, "prompt_length", config["suites"]["prompt_length"]["prompts"], "prompt_name"
    )
    temperatures = sorted(
        suite_rows(summary, "temperature").to_dicts(), key=lambda r: r["temperature"]
    )
    concurrency = sorted(suite_rows(summary, "concurrency").to_dicts(), key=lambda r: r["workers"])
    resources = resources_row(summary, by_id)
    expected = tuple(config["expected_tps"])
    tps = analysis.expected_vs_actual_tps(summary, expected)
    breakdown = analysis.latency_breakdown(summary)
    bottleneck = bottleneck_section(resources, concurrency, engine, host)
    observations = {
        "prompt_length": _get(analysis.prompt_length_scaling(summary), "sentence", "n/a"),
        "temperature": _get(analysis.temperature_effect(summary), "sentence", "n/a"),
        "concurrency": _get(analysis.concurrency_scaling(summary), "sentence", "n/a"),
        "expected_tps": _get(tps, "sentence", "n/a"),
        "breakdown": _get(breakdown, "sentence", "n/a"),
        "resources": verdict_sentence(bottleneck),
    }
    starts = [m["run"]["started"] for m in metadata]
    ends = [m["run"]["ended"] for m in metadata]
    basic_meta = [by_id[r["experiment_id"]]["run"] for r in basic]
    advanced_meta = [m["run"] for m in metadata if set(m["experiment"]["suites"]) - {"basic"}]
    n_errors = int(summary["n_errors"].sum())
    tiny = None
    if engine["engine"] == "llamacpp" and not config["engine"]["model_path"]:
        tiny = ", ".join(f"{k}={v}" for k, v in config["tiny_model"].items())
    return {
        "date": dt.date.fromtimestamp(min(starts)).isoformat(),
        "run": config["run"],
        "perflab_version": __version__,
        "engine": engine,
        "engine_label": "Ollama" if engine["engine"] == "ollama" else "llama.cpp",
        "host": host,
        "tiny_model": tiny,
        "warmup_requests": config["warmup_requests"],
        "status": "✅ Completed"
        if n_errors == 0
        else f"🟡 In Progress ({n_errors} failed requests)",
        "basic_started": epoch_text(min((m["started"] for m in basic_meta), default=None)),
        "basic_completed": epoch_text(max((m["ended"] for m in basic_meta), default=None)),
        "basic_note": f"{sum(r['n_ok'] for r in basic)} measured requests over {len(basic)} prompts",
        "advanced_started": epoch_text(min((m["started"] for m in advanced_meta), default=None)),
        "advanced_completed": epoch_text(max((m["ended"] for m in advanced_meta), default=None)),
        "n_experiments": summary.height,
        "n_measured": int(summary["n_requests"].sum()),
        "n_errors": n_errors,
        "checklist": checklist(engine, summary),
        "issues_encountered": issues_encountered(summary),
        "basic": basic,
        "prompt_length": lengths,
        "temperature": temperatures,
        "concurrency": concurrency,
        "resources": resources,
        "observations": observations,
        "bottleneck": bottleneck,
        "expected_tps": expected,
        "actual_tps": _get(tps, "actual_tps"),
        "breakdown": {
            "ttft_percent": _get(breakdown, "ttft_percent"),
            "decode_percent": _get(breakdown, "decode_percent"),
        },
        "insights": [o for o in observations.values() if o and o != "n/a"][:3],
        "cold_load_s": cold_load(engine, summary),
        "keep_alive": config["generation"]["keep_alive"],
        "charts": charts,
        "result_files": result_files,
        "key_findings": _get(tps, "sentence", ""),
        "provenance": provenance_text(first, min(starts), max(ends)),
        "all_rows": summary.to_dicts(),
    }


def cold_load(engine: dict, summary: pl.DataFrame) -> float | None:
    """Model load paid before measuring: llama.cpp loads in-process, Ollama reports it."""
    if engine.get("load_s") is not None:
        return engine["load_s"]
    loads = summary["cold_load_s"].drop_nulls()
    return float(loads.max()) if len(loads) and loads.max() > 0 else None


def checklist(engine: dict, summary: pl.DataFrame) -> list[tuple[str, bool]]:
    ollama = engine["engine"] == "ollama"
    served = summary["n_ok"].sum() > 0
    return [
        (
            "Ollama installed"
            if ollama
            else "Ollama installed (not needed: embedded llama.cpp engine)",
            ollama,
        ),
        (
            f"{engine['model']} model downloaded" if ollama else f"{engine['model']} model built",
            True,
        ),
        ("Python environment created", True),
        ("Dependencies installed", True),
        ("Test inference successful", bool(served)),
        ("Benchmark scripts ready", True),
    ]


def issues_encountered(summary: pl.DataFrame) -> list[str]:
    failed = summary.filter(pl.col("n_errors") > 0)
    return [
        f"{row['experiment_id']}: {row['n_errors']} of {row['n_requests']} requests failed "
        f"({row['error_classes']})"
        for row in failed.to_dicts()
    ]


def provenance_text(metadata: dict, started: float, ended: float) -> str:
    engine, host = metadata["engine"], metadata["host"]
    lines = [
        f"engine       {engine['engine']} {engine.get('engine_version')}  host {engine.get('host', 'in-process')}",
        f"model        {engine['model']}  digest/sha256 {engine.get('model_digest') or engine.get('model_sha256')}",
        f"model detail {json.dumps(engine.get('model_details', {}), sort_keys=True)}",
        f"machine      {host['cpu_model']}, {host['logical_cores']} logical / {host['physical_cores']} physical cores, {host['ram_gb']:.1f} GB RAM, {host['platform']}",
        f"software     perflab {metadata['perflab_version']} (git {host.get('git_commit')}), python {host['python']}, {json.dumps(host['packages'], sort_keys=True)}",
        f"run          {dt.datetime.fromtimestamp(started).isoformat(timespec='seconds')} → {dt.datetime.fromtimestamp(ended).isoformat(timespec='seconds')}, config hash {metadata['config_hash']}",
    ]
    return "\n".join(lines)


def write_log(
    summary_path,
    metadata_path,
    charts_dir,
    result_files,
    config: dict,
    markdown_path,
    html_path,
) -> None:
    from perflab.records import write_text_atomic

    markdown_path, html_path = Path(markdown_path), Path(html_path)
    summary = pl.read_parquet(summary_path)
    metadata = load_metadata(metadata_path)
    charts = chart_links(Path(charts_dir), markdown_path.parent)
    context = build_context(summary, metadata, config, charts, [str(p) for p in result_files])
    text = render_log(context)
    write_text_atomic(markdown_path, text)
    svgs = {path: (markdown_path.parent / path).read_text() for path in charts.values()}
    write_text_atomic(html_path, render_html(text, f"Day 1 log — {config['run']}", svgs))
