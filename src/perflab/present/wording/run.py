"""What the run knows, in words: trials, interference, issues, ideas, storage."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from perflab.analyse.findings.bottleneck import Bottleneck
from perflab.analyse.findings.expectations import ExpectationFinding
from perflab.analyse.findings.interference import ExperimentLoad, InterferenceFinding
from perflab.analyse.findings.prompt_length import PromptLengthVerdict
from perflab.analyse.findings.runlog import Idea, RunLog
from perflab.analyse.findings.temperature import TemperatureFinding
from perflab.analyse.verdict import ALPHA, PRACTICAL, Verdict
from perflab.present.wording.answers import expectations
from perflab.present.wording.curvature import GROWING
from perflab.present.wording.numbers import (
    LISTED,
    disturbed_count,
    duration,
    num,
    workers_text,
)
from perflab.present.wording.verdicts import power_text

if TYPE_CHECKING:
    from perflab.analyse.findings import Findings


def answer_lengths(f: Findings, max_tokens: int | None, ignore_eos: bool) -> str:
    """How the measured answers ended: by themselves, or cut at max_tokens."""
    limit = "max_tokens" if max_tokens is None else f"max_tokens ({max_tokens})"
    rows = [c for c in f.conditions if c.n_ok]
    n_ok = sum(c.n_ok for c in rows)
    if not n_ok:
        return "No answer was measured."
    if ignore_eos:
        return (
            f"End-of-sequence was forbidden (ignore_eos), so every answer ran to {limit}: "
            f"{n_ok} measured answers."
        )
    if any(c.n_truncated is None for c in rows):
        return f"{n_ok} measured answers; how many were cut at max_tokens was not recorded."
    cut = sum(c.n_truncated for c in rows)
    lengths = [c.output_tokens_mean for c in rows if c.output_tokens_mean is not None]
    span = (
        f", {min(lengths):.0f}–{max(lengths):.0f} output tokens on average per condition"
        if lengths
        else ""
    )
    return (
        f"{n_ok - cut} of {n_ok} measured answers ended by themselves and {cut} were cut at "
        f"{limit}{span}."
    )


def trials_note(repeats: int) -> str:
    if repeats >= 2:
        return (
            f"Each condition ran as {repeats} independent trials, each trial a block: conditions "
            "are compared by their within-trial ratios, tested across trials (Student t, "
            f"α = {ALPHA:g}, Holm's correction over the log's verdicts). A difference is called "
            f"a change only when it is significant and at least {PRACTICAL:.0%}; equivalent only "
            f"when the test shows it within ±{PRACTICAL:.0%}; otherwise inconclusive, with the "
            "smallest effect the trials could have detected."
        )
    return (
        "Every comparison rests on one pass per condition: the spread between trials was "
        "not measured, so no verdict is either a change or equivalence (set repeats: 3)."
    )


IDEA_WHY = {
    Bottleneck.QUEUEING: "requests queue for the server",
    "slots": "requests wait for the server's slots",
    Bottleneck.UNDETERMINED: "no resource saturated: push the load further",
    Bottleneck.CPU: "the CPU is saturated",
    Bottleneck.MEMORY: "memory is short: a smaller KV cache",
    Bottleneck.IO: "disk reads: keep the model loaded",
    Bottleneck.CLIENT: "the client is busy: sample less often",
    "one_pass": "measure drift between trials so comparisons can be trusted",
    "disturbed": "other work disturbed some experiments: more trials settle them",
    "threads": "the threads suite measured it decoding faster than the next thread count",
}


def idea(i: Idea) -> str:
    why = IDEA_WHY.get(i.because, str(i.because))
    return f"{i.setting}: {i.value} — {why}"


def rerun_command(loads: list[ExperimentLoad], configfiles: str) -> str:
    """One command that measures ``loads`` again with this run's config files
    (``configfiles``: the ``--configfile`` arguments, empty for the default config)."""
    files = f" --configfile {configfiles}" if configfiles.strip() else ""
    targets = " ".join(shlex.quote(f"{load.output_dir}/metadata.json") for load in loads)
    return f"snakemake --cores 1{files} --forcerun {targets}"


def disturbed_lines(f: InterferenceFinding) -> list[str]:
    return [
        f"{e.experiment_id} disturbed: other processes used {e.cpu_pct_mean:.0f}% of one core on "
        f"average (max {num(e.cpu_pct_max, 0, '%')}; threshold {e.threshold_cpu_pct:.0f}%"
        + (f", above it {e.above_share:.0%} of the time)" if e.above_share is not None else ")")
        for e in f.disturbed
    ]


def _thresholds(f: InterferenceFinding) -> str:
    """'25%', or '25–125%' when the experiments' engines left different cores free."""
    values = sorted({round(e.threshold_cpu_pct) for e in f.experiments}) or [
        round(f.threshold_cpu_pct)
    ]
    return f"{values[0]}%" if len(values) == 1 else f"{values[0]}–{values[-1]}%"


def interference_summary(f: InterferenceFinding) -> str:
    if not f.measured:
        return "Interference from other processes was not measured in this run."
    if not f.disturbed:
        return (
            f"No experiment was disturbed: other processes stayed under {_thresholds(f)} "
            "of one core on average in every experiment (the cores the engine left free "
            "plus an eighth of those it used)."
        )
    return (
        f"{disturbed_count(f.disturbed, len(f.experiments))} by other work (above "
        f"{_thresholds(f)} of one core; {LISTED})."
    )


def storage(run: RunLog) -> str:
    s = run.storage
    if s.free_gb is None:
        return f"free disk space could not be read at {s.path}"
    verdict = "enough" if s.enough else "not enough"
    return f"{s.free_gb:,.1f} GB free where results are written: {verdict} for the ~{s.needed_gb:g} GB Day 2 needs"


def _why_inconclusive(disturbed: tuple[str, ...], one_pass: bool, reason=None) -> str:
    if disturbed:
        return " (rests on disturbed experiments)"
    if reason is not None:
        return f" ({reason.value.replace('_', ' ')})"
    return " (one pass per condition)" if one_pass else ""


def _verdict_detail(test: Verdict) -> str:
    """'detects ±4 % at 80 % power'; an inconclusive test says why first."""
    why = test.reason.value.replace("_", " ")
    return f"{why}, {power_text(test)}" if not test.conclusive else power_text(test)


def _verdict_line(name: str, outcome: str, test: Verdict | None) -> str:
    """'temperature: equivalent (detects ±4 % at 80 % power)'; inconclusive ones say why."""
    if test is None:
        return f"{name}: {outcome}"
    return f"{name}: {outcome} ({_verdict_detail(test)})"


def _temperature_line(heat: TemperatureFinding) -> str:
    """One comparison: as any verdict. Several: each named with its own outcome, so a
    'changed' run never carries the detail of another temperature's inconclusive test."""
    outcome = "length only" if heat.length_only else heat.verdict.value
    if len(heat.speed) == 1:
        return _verdict_line("temperature", outcome, heat.speed[0])
    reference, others = heat.conditions[0], heat.conditions[1:]
    each = "; ".join(
        f"{c.temperature:g} against {reference.temperature:g}: {v.outcome.value}, "
        f"{_verdict_detail(v)}"
        for c, v in zip(others, heat.speed)
    )
    return f"temperature: {outcome} ({each})"


def _speed_line(e: ExpectationFinding) -> str:
    """'Measured decode speed is 49.5 tok/s over 29 output tokens per request (n=9)'."""
    if e.actual_tps is None or e.output_tokens_mean is None:
        return expectations(e).split(" (", 1)[0]
    return (
        f"Measured decode speed is {e.actual_tps:.1f} tok/s over "
        f"{e.output_tokens_mean:.0f} output tokens per request (n={e.n})"
    )


def _prompt_range(length) -> str:
    """' over 38–382 prompt tokens', beside a prefill rate."""
    tokens = [p.prompt_tokens_mean for p in length.points if p.prompt_tokens_mean is not None]
    return f" over {min(tokens):,.0f}–{max(tokens):,.0f} prompt tokens" if tokens else ""


def key_findings(f: Findings) -> list[str]:
    """One line per finding, for the commit message; an inconclusive one says why."""
    lines = [_speed_line(f.expectations)]
    length = f.prompt_length
    if length.verdict is not None:
        grows = length.verdict in GROWING
        prefill = (
            f", prefill ≈ {length.prefill_tps:,.0f} tok/s{_prompt_range(length)}"
            if grows and length.prefill_tps
            else ""
        )
        why = (
            _why_inconclusive(length.disturbed, False, length.reason)
            if length.verdict == PromptLengthVerdict.INCONCLUSIVE
            else ""
        )
        lines.append(f"prompt length: {length.verdict.value}{prefill}{why}")
    heat = f.temperature
    if heat.verdict is not None:
        lines.append(_temperature_line(heat))
    if f.concurrency.verdict is not None:
        unsettled = (
            " (inconclusive: disturbed experiments)"
            if f.concurrency.disturbed
            else " (inconclusive: speed-up beyond the workers)"
            if f.concurrency.beyond_workers_at is not None
            else ""
        )
        line = _verdict_line("concurrency", f.concurrency.verdict.value, f.concurrency.test)
        lines.append(f"{line}, knee at {workers_text(f.concurrency.knee_workers)}{unsettled}")
    kv = f.kv_cache
    if kv.verdict is not None:
        outcome = "reuse faster" if kv.reuse_faster else kv.verdict.value
        lines.append(_verdict_line("kv cache", outcome, kv.test))
    caveat = " (rests on disturbed experiments)" if f.bottleneck.disturbed else ""
    lines.append(f"bottleneck: {f.bottleneck.primary.value}{caveat}")
    if f.interference.disturbed:
        count = disturbed_count(f.interference.disturbed, len(f.interference.experiments))
        lines.append(f"{count} (the log's Technical Issues lists them)")
    return lines


SETUP_STEPS = {
    "model_fetch": "model download (pip) and sha256 check",
    "model_build": "model build",
    "preflight": "pre-flight check (engine, model and one timed request)",
}


def setup_notes(run: RunLog) -> str:
    """What the setup jobs took, from their benchmark files; then the model loads."""
    steps = [
        f"{SETUP_STEPS.get(s.name, s.name)} {duration(s.seconds)}"
        + (f" (peak memory {s.max_rss_mb:,.0f} MB)" if s.max_rss_mb else "")
        for s in run.setup
    ]
    timed = (
        "; ".join(steps) if steps else "setup jobs not timed (they ran before perflab timed them)"
    )
    loads = [f"model load {num(run.model_load_s, 3, ' s')} in-process"] if run.model_load_s else []
    if run.cold_load_s is not None:
        loads.append(f"cold start {num(run.cold_load_s, 3, ' s')}, paid by {cold_payer(run)}")
    return f"{timed}; {'; '.join(loads) or 'no model load observed'}."


def cold_payer(run: RunLog) -> str:
    if run.cold_source in (None, "preflight"):
        return "the pre-flight check's timed request"
    return f"the warm-up request of {run.cold_source}"


def cold_account(run: RunLog) -> str:
    if run.cold_in_process:
        return "the embedded engine opening the GGUF, in-process"
    return "the server's own load time"


def cold_wait(run: RunLog) -> str:
    if run.cold_ttft_s is None:
        return ""
    if run.cold_in_process:
        return f"; its first token came {num(run.cold_ttft_s, 3, ' s')} after the open began"
    return f"; that request waited {num(run.cold_ttft_s, 3, ' s')} for its first token"


def cold_start(run: RunLog, keep_alive) -> str:
    """The Day-1 log's cold start: the server's account of the load, the client's wait."""
    if run.cold_load_s is not None:
        return (
            f"the model load took {num(run.cold_load_s, 3, ' s')} ({cold_account(run)}) "
            f"before the first request, {cold_payer(run)}{cold_wait(run)}; excluded "
            f"from every statistic above; keep_alive {keep_alive}"
        )
    if run.model_load_s is not None:
        return (
            f"the model load took {num(run.model_load_s, 3, ' s')} in-process before "
            "measuring (not in any statistic above)"
        )
    return "not observed: the model was already loaded"


def total_time(run: RunLog) -> str:
    """'0.05 hours (3 min: setup 40 s + measurement 2 min, first experiment to last)'."""
    hours = num(None if run.hands_on_s is None else run.hands_on_s / 3600, 2)
    if run.setup_s is None:
        return f"{hours} hours of measurement ({duration(run.total_s)}, first experiment to last)"
    return (
        f"{hours} hours ({duration(run.hands_on_s)}: setup {duration(run.setup_s)} + "
        f"measurement {duration(run.total_s)}, first experiment to last)"
    )


def status(run: RunLog) -> str:
    if run.n_errors:
        return f"🟡 In Progress ({run.n_errors} failed requests)"
    return "✅ Completed"


def checklist(f: Findings, model: str) -> list[tuple[str, bool]]:
    """The setup checklist: (item, done)."""
    in_process = f.capabilities.in_process
    return [
        (
            "Ollama installed (not needed: the engine runs in-process)"
            if in_process
            else "Ollama installed",
            not in_process,
        ),
        (f"{model} model ready", True),
        ("Python environment created", True),
        ("Dependencies installed", True),
        ("Test inference successful", f.run.n_requests > f.run.n_errors),
        ("Benchmark scripts ready", True),
    ]


@dataclass(frozen=True)
class IssueRow:
    """One row of the Technical Issues table."""

    issue: str
    solution: str
    prevention: str
    command: str | None = None  # a shell command the solution runs, printed as code


def _error_rows(f: Findings) -> list[IssueRow]:
    """Failed requests by error class (else by condition)."""
    if f.run.errors:
        return [
            IssueRow(
                f"{e.count} request(s) failed with {e.error_class} in {', '.join(e.experiments)}",
                "see the error column of requests.parquet; rerun after fixing the cause",
                "perflab validate the config; check the server with perflab preflight",
            )
            for e in f.run.errors
        ]
    return [
        IssueRow(
            f"{c.condition_id}: {c.n_errors} of {c.n_requests} requests failed ({c.error_classes})",
            "see the error column of requests.parquet",
            "",
        )
        for c in f.run.failed
    ]


def technical_issues(f: Findings, configfiles: str) -> list[IssueRow]:
    """Failed requests by error class (else by condition), then disturbed experiments."""
    return _error_rows(f) + [
        IssueRow(
            line,
            "re-measure:",
            "run on an idle machine; repeats: 2 or more lets trials settle it",
            rerun_command([load], configfiles),
        )
        for load, line in zip(f.interference.disturbed, disturbed_lines(f.interference))
    ]


def issues_encountered(f: Findings) -> list[str]:
    """The setup checklist's issues: failed requests, then the disturbed experiments
    counted (the Technical Issues table lists them, once)."""
    lines = [row.issue for row in _error_rows(f)]
    if f.interference.disturbed:
        count = disturbed_count(f.interference.disturbed, len(f.interference.experiments))
        lines.append(f"{count} by other work on the machine ({LISTED})")
    return lines


def solutions(f: Findings) -> list[str]:
    """The fixes of the issues, each once; the disturbed experiments' command is the
    one under the Technical Issues table."""
    lines = list(dict.fromkeys(row.solution for row in _error_rows(f)))
    if f.interference.disturbed:
        lines.append(
            f"re-measure the {disturbed_count(f.interference.disturbed)} when the machine is "
            "quieter: the command under Challenges Faced, Technical Issues measures them all again"
        )
    return lines


def rerun_disturbed(f: Findings, configfiles: str) -> str | None:
    """One command that measures every disturbed experiment again; None: none was."""
    if not f.interference.disturbed:
        return None
    return rerun_command(list(f.interference.disturbed), configfiles)
