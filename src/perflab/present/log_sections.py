"""The parts of the Day-1 log's template context that each stand for one section."""

from __future__ import annotations

import datetime as dt

from perflab.analyse.findings import Findings
from perflab.analyse.findings.bottleneck import BottleneckFinding
from perflab.analyse.findings.runlog import RunLog
from perflab.analyse.metrics import metric
from perflab.present import wording
from perflab.present.wording import comparison as comparison_words
from perflab.present.wording import threads as threads_words


class Placeholder(str):
    """The template's own blank for the person to fill in (``[TIME]``): printed as is."""


def epoch_text(seconds: float | None) -> str:
    if seconds is None:
        return Placeholder("[TIME]")
    return dt.datetime.fromtimestamp(seconds).strftime("%H:%M:%S")


def optional_sections_context(f: Findings) -> dict:
    """The sections a run may lack: llama-bench beside perflab, threads, roofline, GPU."""
    return {
        "peer_lines": wording.peer(f.peer) if f.peer else [],
        "threads_rows": threads_words.rows(f.threads) if f.threads else [],
        "threads_lines": threads_words.lines(f.threads) if f.threads else [],
        "roofline_lines": wording.roofline(f.roofline) if f.roofline else [],
        "placement": wording.placement(f.placement) if f.placement else None,
        "gpu_line": wording.gpu(f.resources),
        "kv_memory": wording.kv_memory(f.kv_memory),
    }


def timeline_context(run: RunLog) -> dict:
    """The run's status, its hands-on time and when each stage started and ended."""
    return {
        "status": wording.status(run),
        "hours": None if run.hands_on_s is None else run.hands_on_s / 3600,
        "total_time": wording.total_time(run),
        "setup_started": epoch_text(run.setup_started),
        "setup_completed": epoch_text(run.setup_ended),
        "setup_notes": wording.setup_notes(run),
        "basic_started": epoch_text(run.basic_span[0]),
        "basic_completed": epoch_text(run.basic_span[1]),
        "advanced_started": epoch_text(run.advanced_span[0]),
        "advanced_completed": epoch_text(run.advanced_span[1]),
    }


def bottleneck_context(found: BottleneckFinding, options: tuple[str, ...]) -> dict:
    notes = (wording.NOTES.get(found.primary), wording.disturbed_caveat(found))
    return {
        "bottleneck_option": wording.LOG_OPTIONS.get(found.primary),
        "bottleneck_note": "; ".join(n for n in notes if n),
        "bottleneck_options": options,
        "bottleneck_evidence": wording.bottleneck_evidence(found),
    }


def issues_context(f: Findings, configfiles: str) -> dict:
    """What to try next, what went wrong and how to rerun it, and the disk it used."""
    return {
        "ideas": [wording.idea(i) for i in f.run.ideas],
        "technical_issues": wording.technical_issues(f, configfiles),
        "solutions": wording.solutions(f),
        "issues_encountered": wording.issues_encountered(f),
        "rerun_disturbed": wording.rerun_disturbed(f, configfiles),
        "storage": wording.storage(f.run),
    }


def capacity_context(f: Findings) -> dict:
    """The capacity section: one line per offered rate, then the answer per target."""
    rows = [
        {
            "rate": wording.num(point.offered_rate, 2),
            "target": finding.target,
            "text": wording.rate_line(point),
        }
        for finding in f.capacity
        for point in finding.points
    ]
    return {
        "rows": rows,
        "answers": [wording.capacity(finding) for finding in f.capacity],
        "note": wording.open_loop_note(f.capabilities) if f.capacity else None,
    }


def comparison_context(f: Findings) -> dict:
    if f.comparison is None:
        return {
            "comparison_rows": [],
            "comparison_sizes": [],
            "comparison_points": [],
            "comparison_headline": [],
            "comparison_capacity": [],
        }
    points = [
        (
            metric(m.metric).label,
            comparison_words.point_rows(f.comparison, m),
        )
        for m in f.comparison.metrics
    ]
    return {
        "comparison_rows": comparison_words.rows(f.comparison),
        "comparison_sizes": comparison_words.sizes(f.comparison),
        "comparison_points": points,
        "comparison_headline": comparison_words.headline(f.comparison),
        "comparison_capacity": wording.capacity_comparison(f.capacity),
    }
