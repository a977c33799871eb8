"""Render the Day-1 learning log from the findings (no judgement here).

Everything a config, a server or a model supplied is untrusted: every value
the template prints is escaped for Markdown (``markdown_escape``), and the
HTML is sanitised with nh3, which keeps no script, no event handler and no
``javascript:`` link.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import replace
from enum import Enum
from pathlib import Path

import jinja2

from perflab import __version__
from perflab.analyse.findings import Findings, load
from perflab.analyse.table_files import read_metadata_index
from perflab.config.targets import baseline, target_config
from perflab.engines import ignore_eos
from perflab.engines.launch import as_served
from perflab.engines.ollama_store import uses_tiny_model
from perflab.measure.metadata import ExperimentMetadata
from perflab.measure.provenance import EngineInfo, HostInfo
from perflab.models.names import known_name, model_label
from perflab.models.smollm2 import SMOLLM2, uses_smollm2
from perflab.present import wording
from perflab.present.log_sections import (
    Placeholder,
    bottleneck_context,
    capacity_context,
    comparison_context,
    issues_context,
    optional_sections_context,
    timeline_context,
)
from perflab.present.page import render_html

NO_METADATA = ExperimentMetadata.from_json({})  # a log without experiments

TEMPLATES = Path(__file__).parent / "templates"
PROMPT_LABELS = {
    "tiny": "Tiny",
    "short": "Short",
    "medium": "Medium",
    "long": "Long",
    "very_long": "Very long",
}
BOTTLENECK_OPTIONS = ("CPU", "Memory", "Disk I/O", "Network")
INSIGHTS = ("temperature", "concurrency", "prompt_length")  # the observations the log leads with
MARKDOWN_SPECIAL = str.maketrans(
    {
        "\\": "\\\\",
        "`": "\\`",
        "*": "\\*",
        "[": "\\[",
        "]": "\\]",
        "|": "\\|",
        "<": "&lt;",
        ">": "&gt;",
        "&": "&amp;",
        "\n": " ",
        "\r": " ",
    }
)


class Verbatim(str):
    """Text for a fenced code block: printed as is, except that it cannot close the fence."""


class OwnMarkdown(str):
    """Markdown that perflab writes around an escaped value (a verdict badge): printed as is."""


def markdown_escape(value) -> str:
    """Any value as inert Markdown text: no HTML, no link, no code span, no table cell break."""
    if value is None:
        return ""
    if isinstance(value, Placeholder | OwnMarkdown):
        return str(value)
    if isinstance(value, Verbatim):
        return str(value).replace("```", "'''").replace("~~~", "'''")
    return str(value).translate(MARKDOWN_SPECIAL)


def code_span(text: str, in_table: bool = False) -> OwnMarkdown:
    """``text`` (a command) as one Markdown code span: printed as typed, never read as
    markup nor wrapped at its hyphens. Its fence is one backtick longer than any run of
    backticks in it, padded when it starts or ends with one; in a table cell its pipes
    are escaped, as GFM reads ``\\|`` there even inside code."""
    text = str(text).replace("\r", " ").replace("\n", " ")
    if in_table:
        text = text.replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text[:1] in ("`", " ") or text[-1:] in ("`", " ") else ""
    return OwnMarkdown(f"{fence}{pad}{text}{pad}{fence}")


def label(prompt_name: str | None) -> str:
    name = prompt_name or "?"
    return PROMPT_LABELS.get(name, name.replace("_", " ").capitalize())


def preview(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def verdict(value: Enum | None, text: str = "") -> str:
    """A finding's verdict (any of its enum's values) as ``**Verdict: no effect** ``, then
    ``text`` escaped, less a leading 'No effect: ' that would say the badge again."""
    text = text or ""
    if value is None:
        return OwnMarkdown(markdown_escape(text))
    words = str(value.value).replace("_", " ")
    if text[: len(words) + 2].lower() == f"{words.lower()}: ":
        text = text[len(words) + 2 :]
        text = text[:1].upper() + text[1:]
    return OwnMarkdown(f"**Verdict: {markdown_escape(words)}** {markdown_escape(text)}")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
        finalize=markdown_escape,
    )
    env.globals.update(
        fmt=wording.num,
        measured=wording.measured,
        spread=wording.spread_text,
        metric_num=wording.metric_num,
        metric_spread=wording.metric_spread,
        failures=wording.failures,
        ci=wording.ci_note,
        label=label,
        duration=wording.duration,
        verdict=verdict,
        code=code_span,
    )
    return env


def render_template(name: str, **context) -> str:
    """Any of perflab's templates, every value escaped as in the log."""
    return single_blank_lines(_environment().get_template(name).render(**context))


def single_blank_lines(text: str) -> str:
    """Runs of blank lines (where template tags printed nothing) as one, outside code blocks."""
    kept, fenced = [], False
    for line in text.split("\n"):
        if line.startswith(("```", "~~~")):
            fenced = not fenced
        if fenced or line.strip() or not kept or kept[-1].strip():
            kept.append(line)
    return "\n".join(kept)


def chart_links(charts_dir: Path, markdown_dir: Path) -> dict[str, str]:
    charts_dir = Path(charts_dir)
    if not charts_dir.is_dir():
        return {}
    return {
        svg.stem.removesuffix("_chart"): str(svg.relative_to(markdown_dir))
        for svg in sorted(charts_dir.glob("*.svg"))
    }


def observations(f: Findings) -> dict[str, str]:
    return {
        "prompt_length": wording.prompt_length(f.prompt_length),
        "temperature": wording.temperature(f.temperature),
        "concurrency": wording.concurrency(f.concurrency, f.capabilities.parallel_setting),
        "kv_cache": wording.kv_cache(f.kv_cache),
        "expected_tps": wording.expectations(f.expectations),
        "breakdown": wording.breakdown(f.breakdown),
        "resources": wording.bottleneck_sentence(f.bottleneck),
    }


def measured_engine(config: dict) -> dict:
    """The engine the Day-1 sections describe: the one engine, or the baseline target's
    (with targets, the top-level engine is only where their engine blocks start)."""
    return target_config(config, baseline(config))["engine"]


def build_context(
    f: Findings,
    metadata: list[ExperimentMetadata],
    config: dict,
    charts: dict[str, str],
    result_files: list[str],
    configfiles: str = "",
) -> dict:
    first = metadata[0] if metadata else NO_METADATA
    measured = measured_engine(config)
    engine = _log_engine(f, first, measured)
    words = observations(f)
    keep_alive = config["generation"]["keep_alive"]
    return (
        {
            "f": f,
            "date": dt.date.fromtimestamp(f.run.started).isoformat()
            if f.run.started
            else Placeholder("[DATE]"),
            "run": config["run"],
            "perflab_version": __version__,
            "engine": engine,
            "engine_label": f.capabilities.label,
        }
        | optional_sections_context(f)
        | {"host": _log_host(first)}
        | _model_context(config, measured)
        | {
            "answer_lengths": wording.answer_lengths(
                f, config["generation"].get("max_tokens"), ignore_eos(measured)
            ),
            "warmup_requests": config["warmup_requests"],
        }
        | timeline_context(f.run)
        | {
            "previews": {name: preview(text) for name, text in config["prompts"].items()},
            "observations": words,
            "trials_note": wording.trials_note(f.repeats),
            "interference_note": wording.interference_summary(f.interference),
        }
        | bottleneck_context(f.bottleneck, BOTTLENECK_OPTIONS)
        | issues_context(f, configfiles)
        | {
            "insights": [words[k] for k in INSIGHTS if words[k]][:3],
            "keep_alive": keep_alive,
            "cold_start": wording.cold_start(f.run, keep_alive),
            "charts": charts,
            "result_files": result_files,
            "key_findings": wording.key_findings(f),
            "provenance": Verbatim(
                provenance_text(replace(first, engine=engine), f.run.started, f.run.ended)
            ),
            "checklist": wording.checklist(f, known_name(as_served(measured))),
            "capacity": capacity_context(f),
        }
        | comparison_context(f)
    )


def _log_engine(f: Findings, first: ExperimentMetadata, measured: dict) -> EngineInfo:
    """The engine as the log names it: the findings' engine and the model's label."""
    given = first.engine
    return replace(given, engine=given.engine or f.engine, model=model_label(measured, given.model))


def _log_host(first: ExperimentMetadata) -> HostInfo:
    return replace(
        first.host, cpu_model=first.host.cpu_model or "unknown", os=first.host.os or "unknown"
    )


def _model_context(config: dict, measured: dict) -> dict:
    """The tiny model's settings and the SmolLM2 note, when the run served them."""
    served = as_served(measured)
    tiny = None
    if uses_tiny_model(served):
        tiny = ", ".join(f"{k}={v}" for k, v in config["tiny_model"].items())
    return {
        "tiny_model": tiny,
        "smollm2": SMOLLM2 if uses_smollm2(served) else None,
    }


def _iso(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return dt.datetime.fromtimestamp(seconds).isoformat(timespec="seconds")


def provenance_text(
    metadata: ExperimentMetadata, started: float | None, ended: float | None
) -> str:
    engine, host = metadata.engine, metadata.host
    packages = json.dumps(host.packages, sort_keys=True)
    details = json.dumps(engine.model_details or {}, sort_keys=True)
    lines = [
        f"engine       {engine.engine} {engine.engine_version}  host {engine.host or 'in-process'}",
        f"model        {engine.model}  digest/sha256 {engine.model_id}",
        f"model detail {details}",
        f"machine      {host.cpu_model}, {host.logical_cores} logical / {host.physical_cores} physical cores, {host.ram_gb} GB RAM, {host.platform}",
        f"software     perflab {metadata.perflab_version} (git {host.git_commit}), python {host.python}, {packages}",
        f"run          {_iso(started)} → {_iso(ended)}, config hash {metadata.config_hash}",
    ]
    return "\n".join(lines)


def write_log(
    findings_path,
    metadata_path,
    charts_dir,
    result_files,
    config: dict,
    markdown_path,
    html_path,
    configfiles: str = "",
) -> None:
    from perflab.config.targets import baseline, target_config
    from perflab.core.records import write_text_atomic

    markdown_path, html_path = Path(markdown_path), Path(html_path)
    findings = load(findings_path)
    metadata = read_metadata_index(metadata_path)
    chosen = baseline(config)
    if chosen is not None:  # the Day-1 sections describe the baseline target
        metadata = [m for m in metadata if m.experiment.get("target") == chosen]
        config = target_config(config, chosen)
    charts = chart_links(Path(charts_dir), markdown_path.parent)
    context = build_context(
        findings, metadata, config, charts, [str(p) for p in result_files], configfiles
    )
    text = render_template("day1-log.md.j2", **context)
    write_text_atomic(markdown_path, text)
    svgs = {path: (markdown_path.parent / path).read_text() for path in charts.values()}
    write_text_atomic(html_path, render_html(text, f"Day 1 log — {config['run']}", svgs))


def write_comparison(findings_path, charts_dir, config: dict, markdown_path) -> None:
    """``reports/<run>/comparison.md``: the targets side by side, per metric and per point."""
    from perflab.core.records import write_text_atomic

    markdown_path = Path(markdown_path)
    findings = load(findings_path)
    context = {
        "f": findings,
        "run": config["run"],
        "perflab_version": __version__,
        "charts": chart_links(Path(charts_dir), markdown_path.parent),
    } | comparison_context(findings)
    text = render_template("comparison.md.j2", **context)
    write_text_atomic(markdown_path, text)
