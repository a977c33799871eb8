"""Every sentence of the log: findings in, words out. No judgement here —
only the verdicts and figures the findings computed, put into words."""

from __future__ import annotations

from perflab.findings import Findings
from perflab.findings.bottleneck import Bottleneck, BottleneckFinding, Check, Missing
from perflab.findings.breakdown import BreakdownFinding
from perflab.findings.concurrency import (
    ConcurrencyFinding,
    ConcurrencyVerdict,
    QueueSource,
)
from perflab.findings.expectations import ExpectationFinding, Position
from perflab.findings.frame import Condition, Spread
from perflab.findings.interference import ExperimentLoad, InterferenceFinding
from perflab.findings.kv_cache import KvCacheFinding, KvCacheVerdict
from perflab.findings.prompt_length import (
    MIN_FIT_POINTS,
    PromptLengthFinding,
    PromptLengthReason,
    PromptLengthVerdict,
)
from perflab.findings.runlog import Idea, RunLog
from perflab.findings.temperature import (
    TemperatureFinding,
    TemperatureReason,
    TemperatureVerdict,
)

NA = "n/a"


def num(value, digits: int = 2, unit: str = "") -> str:
    """A number with its unit, or 'n/a' (no unit) when it was not measured."""
    if value is None or (isinstance(value, float) and value != value):
        return NA
    return f"{value:,.{digits}f}{unit}"


def measured(condition: Condition, value, digits: int = 3, unit: str = "") -> str:
    """Like ``num``, but says why when every request of the condition failed."""
    if condition.all_failed:
        return f"{NA}: all {condition.n_requests} failed"
    return num(value, digits, unit)


def workers_text(count: int) -> str:
    return f"{count} worker" if count == 1 else f"{count} workers"


def spread_text(s: Spread, digits: int = 3, unit: str = " s") -> str:
    """'1.234 s ± 0.010 (3 trials: 1.220–1.250)' or '… (one pass)'."""
    if s.mean is None:
        return NA
    text = f"{s.mean:,.{digits}f}{unit}"
    if s.ci95 is not None:
        text += f" ± {s.ci95:,.{digits}f}"
    if s.between_trials:
        text += f" ({s.trials} trials: {s.low:,.{digits}f}–{s.high:,.{digits}f})"
    return text


def trials_note(repeats: int) -> str:
    if repeats >= 2:
        return (
            f"Each condition ran as {repeats} independent trials; a difference is called an "
            "effect only when it exceeds the 95% CI of the trial means."
        )
    return (
        "Every comparison rests on one pass per condition: drift between experiments was "
        "not measured, so no speed effect is claimed from it (set repeats: 3 to measure it)."
    )


def _disturbed_note(ids: tuple[str, ...]) -> str:
    return (
        f" It rests on disturbed experiment(s) {', '.join(ids)} (other work on the machine; "
        "see Technical Issues), which one pass cannot settle: inconclusive."
    )


def _fit_words(slope: float, r2: float) -> str:
    per_token_ms = slope * 1000
    verb = "grows" if per_token_ms >= 0 else "falls"
    return f"{verb} by {abs(per_token_ms):.3f} ms per prompt token (R² {r2:.2f}"


def prompt_length(f: PromptLengthFinding) -> str:
    cached = (
        f" Left out of the fit: {', '.join(f.excluded_cached)} (prompt cache reused)."
        if f.excluded_cached
        else ""
    )
    if f.verdict is None:
        return f"Fewer than 2 prompt lengths with successful requests ({len(f.points)}): no scaling to report.{cached}"
    fit, e2e = f.ttft_fit, f.e2e_fit
    verdict = {
        PromptLengthVerdict.LINEAR: "Linear",
        PromptLengthVerdict.SUPERLINEAR: "Faster than linear",
        PromptLengthVerdict.FLAT: "Flat",
        PromptLengthVerdict.INCONCLUSIVE: "Inconclusive",
    }[f.verdict]
    text = f"{verdict}: TTFT {_fit_words(fit.slope, fit.r2)}, {fit.n} prompt lengths)"
    text += f": prefill ≈ {f.prefill_tps:,.0f} tok/s" if f.prefill_tps else ": no prefill cost seen"
    if e2e.slope is not None:
        text += f"; end-to-end latency {_fit_words(e2e.slope, e2e.r2)})"
    short, long = f.points[0], f.points[-1]
    text += (
        f". From {short.prompt_tokens_mean:.0f} to {long.prompt_tokens_mean:.0f} prompt tokens, "
        f"TTFT went from {spread_text(short.ttft)} to {spread_text(long.ttft)} and mean latency "
        f"from {spread_text(short.e2e)} to {spread_text(long.e2e)}."
    )
    if f.reason == PromptLengthReason.TOO_FEW_POINTS:
        text += (
            f" Only {fit.n} points (fewer than {MIN_FIT_POINTS}): a line through 2 points always "
            "fits, so treat it as a rough indication."
        )
    elif f.reason == PromptLengthReason.POOR_FIT:
        text += (
            f" The fit is poor (R² {fit.r2:.2f}): TTFT is not linear in prompt length at these "
            "sizes, or noise dominates."
        )
    elif f.reason == PromptLengthReason.DISTURBED:
        text += _disturbed_note(f.disturbed)
    elif f.verdict == PromptLengthVerdict.FLAT:
        text += (
            f" Prompt length adds only {f.ttft_rise_s * 1000:.1f} ms over the whole range: "
            "prefill is cheap here, or a prompt cache served the prompts."
        )
    lengths = [p.output_tokens_mean for p in f.points if p.output_tokens_mean is not None]
    if lengths and f.same_output_length:
        text += (
            f" Output length is the same at every prompt length ({sum(lengths) / len(lengths):.0f} "
            "tokens), so the growth is prefill work."
        )
    elif lengths:
        text += (
            f" Output length varies from {min(lengths):.0f} to {max(lengths):.0f} tokens, "
            "which also moves end-to-end latency."
        )
    return text + cached


def _truncation(f: TemperatureFinding) -> str:
    if not f.truncated:
        return ""
    cut = "; ".join(f"{c.temperature:g}: {c.n_truncated} of {c.n_ok}" for c in f.truncated)
    why = (
        " so output length, not speed, explains the latency difference"
        if f.verdict == TemperatureVerdict.LENGTH_ONLY
        else ""
    )
    return (
        f" Answers were cut at max_tokens ({cut}),{why}."
        if why
        else f" Answers were cut at max_tokens ({cut})."
    )


def temperature(f: TemperatureFinding) -> str:
    if f.verdict is None:
        return "Fewer than 2 temperatures were measured: no comparison."
    listing = "; ".join(
        f"{c.temperature:g}: {spread_text(c.e2e)}, {spread_text(c.tps, 1, ' tok/s')}, "
        f"{num(c.output_tokens_mean, 0, ' output tokens')}, n={c.n_ok}"
        for c in f.conditions
    )
    slow, fast = f.slowest, f.fastest
    if f.verdict == TemperatureVerdict.NO_EFFECT:
        text = (
            "No: no latency difference beyond the spread of the measurements "
            f"(largest {f.latency_difference:.1%})"
        )
    elif f.verdict == TemperatureVerdict.LENGTH_ONLY:
        text = (
            f"Only through output length: temperature {slow.temperature:g} takes "
            f"{1 + f.latency_difference:.2f}× as long as {fast.temperature:g} because it writes "
            f"{num(slow.output_tokens_mean, 0)} vs {num(fast.output_tokens_mean, 0)} tokens; "
            "decode speed per token is the same within its spread"
        )
    elif f.verdict == TemperatureVerdict.SPEED_EFFECT:
        text = (
            f"Yes: temperature {slow.temperature:g} is {1 + f.latency_difference:.2f}× slower "
            f"than {fast.temperature:g}, beyond the spread of the trials"
        )
    elif f.reason == TemperatureReason.ONE_PASS:
        text = (
            f"Inconclusive: latency differs by {f.latency_difference:.1%} ({slow.temperature:g} "
            f"slowest, {fast.temperature:g} fastest), but with one pass per temperature drift "
            "between experiments could explain it"
        )
    else:
        text = "Inconclusive"
    text += f" ({listing})."
    if f.reason == TemperatureReason.DISTURBED:
        text += _disturbed_note(f.disturbed)
    return text + _truncation(f)


def concurrency(f: ConcurrencyFinding, setting: str | None) -> str:
    if f.verdict is None:
        return (
            "The concurrency suite needs at least two worker counts with successful requests: "
            "no comparison."
        )
    base, most = f.points[0], f.points[-1]
    at_knee = next(p for p in f.points if p.workers == f.knee_workers)
    hint = f" ({setting})" if setting else ""
    if f.verdict == ConcurrencyVerdict.SERIAL:
        text = (
            f"No: throughput stayed flat from {base.workers} to {most.workers} workers "
            f"(×{f.peak_speedup:.2f} at best): the server serializes requests, running one at "
            f"a time{hint}, so extra requests only queue"
        )
    elif f.verdict == ConcurrencyVerdict.SCALES:
        text = (
            f"Yes: throughput grew ×{most.speedup:.2f} from {base.workers} to {most.workers} "
            "workers and was still growing: the server runs requests in parallel"
        )
    else:
        text = (
            f"Up to {f.knee_workers} workers: throughput grew ×{at_knee.speedup:.2f} from "
            f"{base.workers} to {f.knee_workers} workers, then stayed flat: the server runs "
            f"about {f.parallel_requests} requests at once{hint}"
        )
    text += f", while mean latency grew ×{most.latency_growth:.2f}."
    if f.queue_wait_s is not None:
        source = (
            "the engine's queue time"
            if f.queue_source == QueueSource.REPORTED
            else f"growth of time the server's timings do not cover, over {workers_text(base.workers)}"
        )
        text += (
            f" At {most.workers} workers requests waited {f.queue_wait_s:.3f} s for the server "
            f"({f.queue_share:.0%} of {most.condition.e2e.mean:.3f} s mean latency; {source})."
        )
    if base.workers != 1:
        text += f" There is no 1-worker run; {base.workers} workers is the baseline."
    if f.disturbed:
        text += _disturbed_note(f.disturbed)
    elif f.one_pass:
        text += " One pass per worker count: drift between experiments was not measured."
    listing = "; ".join(
        f"{workers_text(p.workers)}: {spread_text(p.condition.req_per_s, 2, ' req/s')} "
        f"(×{p.speedup:.2f}), {spread_text(p.condition.e2e)} mean latency"
        for p in f.points
    )
    return f"{text} ({listing})."


def kv_cache(f: KvCacheFinding) -> str | None:
    if f.bust is None and f.reuse is None:
        return None
    if f.verdict is None:
        return "The kv_cache suite needs the prompt both with and without reuse: no comparison."
    figures = (
        f"TTFT {spread_text(f.reuse.ttft)} with the prompt reused vs {spread_text(f.bust.ttft)} "
        f"with a unique prefix per request (n={f.reuse.n_ok} and {f.bust.n_ok})"
    )
    if f.verdict == KvCacheVerdict.REUSE_FASTER:
        return f"Yes: reusing the prompt's KV cache saves {f.ttft_saving:.0%} of TTFT: {figures}."
    if f.verdict == KvCacheVerdict.NO_EFFECT:
        return f"No TTFT difference beyond the spread of the measurements: {figures}."
    if f.disturbed:
        return f"Inconclusive: {figures}.{_disturbed_note(f.disturbed)}"
    return (
        f"Inconclusive: {figures}; with one pass each, drift between experiments could "
        "explain the difference."
    )


def expectations(f: ExpectationFinding) -> str:
    if f.actual_tps is None:
        return "No successful request: no tokens/s to compare."
    low, high = f.expected_low_tps, f.expected_high_tps
    where = {
        Position.BELOW: f"below the expected {low:g}–{high:g} tok/s ({f.ratio:.2f}× the low end)",
        Position.ABOVE: f"above the expected {low:g}–{high:g} tok/s ({f.ratio:.1f}× the high end)",
        Position.WITHIN: f"within the expected {low:g}–{high:g} tok/s",
    }[f.position]
    output = (
        f" of {f.output_tokens_mean:.0f} output tokens on average"
        if f.output_tokens_mean is not None
        else ""
    )
    source = "basic suite" if f.source == "basic" else "all experiments"
    spread = (
        f"; per condition {f.tps_low:.1f}–{f.tps_high:.1f} tok/s"
        if f.tps_low is not None and f.tps_high != f.tps_low
        else ""
    )
    return (
        f"Measured decode speed is {f.actual_tps:.1f} tok/s (mean over {f.n} requests{output}, "
        f"{source}{spread}), {where}."
    )


def breakdown(f: BreakdownFinding) -> str:
    if f.e2e_mean_s is None:
        return "No successful request: no latency to break down."
    source = "basic suite" if f.source == "basic" else "all experiments"
    if f.ttft_percent is None:
        text = f"Mean latency is {f.e2e_mean_s:.3f} s ({source}, n={f.n}); TTFT was not recorded."
    else:
        text = (
            f"Time to first token (queue, load and prefill) is {f.ttft_percent:.1f}% of the mean "
            f"{f.e2e_mean_s:.3f} s latency and decode (after the first token) "
            f"{f.decode_percent:.1f}% ({source}, n={f.n})."
        )
    if f.phases:
        text += (
            " By the engine's own timings: "
            + ", ".join(f"{p.name} {p.percent:.1f}%" for p in f.phases)
            + " (other = client, HTTP and sampling overhead)."
        )
    if f.phases_exceed_e2e is not None:
        text += (
            f" The engine's phases add up to {f.phases_exceed_e2e:.0f}% of the client's latency, "
            "so the shares are of their sum."
        )
    if f.decode_dominates is True:
        text += " Decode dominates: output length, not prompt length, drives latency."
    elif f.decode_dominates is False:
        text += " Time to first token dominates: prompt length and waiting drive latency."
    return text


def _pct(value, digits: int = 0) -> str:
    return NA if value is None else f"{value:.{digits}f}%"


MISSING = {
    Missing.NO_CPU_SAMPLES: "no CPU samples",
    Missing.NO_MEMORY_SAMPLES: "no memory samples",
    Missing.NO_DISK_SAMPLES: "no disk samples",
    Missing.NO_CLIENT_SAMPLES: "no client CPU samples",
    Missing.ONE_PROCESS: "client and server share one process",
    Missing.NO_QUEUE_FIGURE: "no queue figure (fewer than 2 worker counts, or no engine timings)",
    Missing.NO_NETWORK_RULE: "no rule: perflab does not measure network saturation",
}
MEMORY_REASONS = {
    "low_available_gb": "available memory fell to {mem_available_gb_min:.2f} GB",
    "low_available_fraction": "available memory fell to {mem_available_gb_min:.2f} GB of {mem_total_gb:.1f} GB",
    "swap_growth": "swap grew by {swap_growth_gb:.2f} GB during the run",
    "swap_used": "{swap_used_gb_max:.2f} GB of swap in use",
    "model_too_large": "the model file ({model_size_gb:.2f} GB) is nearly all of RAM ({mem_total_gb:.1f} GB)",
    "model_not_resident": "the server's RSS peaked at {server_rss_gb_max:.2f} GB for a {model_size_gb:.2f} GB model: it is not kept in memory",
}


def check_text(check: Check) -> str:
    name = check.rule.value
    if check.missing is not None:
        return f"{name}: not evaluated, {MISSING[check.missing]}"
    g = check.get
    if check.rule == Bottleneck.CPU:
        server = g("server_cpu_percent_mean")
        text = "the server's processes were not sampled"
        if server is not None:
            text = f"the server averaged {server:.0f}% of one core"
            if g("server_share") is not None:
                text += f", {g('server_share'):.0%} of its {g('usable_cores')} usable core(s)"
        text += f"; system CPU averaged {_pct(g('cpu_percent_mean'))} of all cores"
        if g("own_cpu_percent_mean") != g("cpu_percent_mean"):
            text += f" ({_pct(g('own_cpu_percent_mean'))} without other processes)"
        return f"cpu: {text}"
    if check.rule == Bottleneck.MEMORY:
        if check.reasons:
            values = {f.name: f.value for f in check.figures}
            return "memory pressure: " + "; ".join(
                MEMORY_REASONS[r].format(**values) for r in check.reasons
            )
        available, total = g("mem_available_gb_min"), g("mem_total_gb")
        text = "memory: available memory " + (
            f"never fell below {available:.1f} GB" if available is not None else "was not sampled"
        )
        text += f" of {total:.1f} GB" if total and available is not None else ""
        if g("swap_used_gb_max") is not None:
            text += f", swap used at most {g('swap_used_gb_max'):.2f} GB"
        return text
    if check.rule == Bottleneck.IO:
        kind = "median" if g("median") else "mean"
        return (
            f"io: disk reads ran at {g('disk_read_mb_s'):.1f} MB/s ({kind}) with system CPU at "
            f"{_pct(g('cpu_percent_mean'))}"
        )
    if check.rule == Bottleneck.CLIENT:
        server = g("server_cpu_percent_mean")
        return (
            f"client: the client process used {g('client_cpu_percent_mean'):.0f}% of one core"
            + (f" while the server used {server:.0f}%" if server is not None else "")
        )
    return (
        f"queueing: at {g('workers')} workers requests waited {g('queue_wait_s'):.3f} s for the "
        f"server, {g('queue_share'):.0%} of mean latency"
    )


NOTES = {
    Bottleneck.QUEUEING: "queueing: requests wait for the server (latency grows with concurrent requests while throughput does not)",
    Bottleneck.CLIENT: "the benchmark client itself is the limit, not the server",
    Bottleneck.UNDETERMINED: "undetermined from these measurements",
}
LOG_OPTIONS = {
    Bottleneck.CPU: "CPU",
    Bottleneck.MEMORY: "Memory",
    Bottleneck.IO: "Disk I/O",
    Bottleneck.NETWORK: "Network",
}


def bottleneck_evidence(f: BottleneckFinding) -> str:
    triggered = [check_text(c) for c in f.triggered]
    quiet = [check_text(c) for c in f.evaluated if not c.triggered]
    skipped = [check_text(c) for c in f.checks if c.missing is not None]
    parts = triggered + quiet
    if not triggered:
        parts.append("no rule triggered: no resource is saturated at this load")
    return "; ".join(parts + skipped) + "."


def bottleneck_sentence(f: BottleneckFinding) -> str:
    if f.primary == Bottleneck.UNDETERMINED:
        return f"The data cannot decide a bottleneck. Evidence: {bottleneck_evidence(f)}"
    also = f" (also: {', '.join(b.value for b in f.secondary)})" if f.secondary else ""
    return f"Primary bottleneck: {f.primary.value}{also}. Evidence: {bottleneck_evidence(f)}"


IDEA_WHY = {
    Bottleneck.QUEUEING: "requests queue for the server",
    Bottleneck.UNDETERMINED: "no resource saturated: push the load further",
    Bottleneck.CPU: "the CPU is saturated",
    Bottleneck.MEMORY: "memory is short: a smaller KV cache",
    Bottleneck.IO: "disk reads: keep the model loaded",
    Bottleneck.CLIENT: "the client is busy: sample less often",
    "one_pass": "measure drift between trials so comparisons can be trusted",
    "disturbed": "other work disturbed some experiments: more trials settle them",
}


def idea(i: Idea) -> str:
    why = IDEA_WHY.get(i.because, str(i.because))
    return f"{i.setting}: {i.value} — {why}"


def rerun_command(load: ExperimentLoad, configfiles: str) -> str:
    return (
        f"snakemake --cores 1 --configfile {configfiles} --forcerun {load.output_dir}/metadata.json"
    )


def disturbed_lines(f: InterferenceFinding) -> list[str]:
    return [
        f"{e.experiment_id} disturbed: other processes used {e.cpu_pct_mean:.0f}% of one core on "
        f"average (max {num(e.cpu_pct_max, 0, '%')}; threshold {f.threshold_cpu_pct:.0f}%)"
        for e in f.disturbed
    ]


def interference_summary(f: InterferenceFinding) -> str:
    if not f.measured:
        return "Interference from other processes was not measured in this run."
    if not f.disturbed:
        return (
            f"No experiment was disturbed: other processes stayed under {f.threshold_cpu_pct:.0f}% "
            "of one core on average in every experiment."
        )
    return (
        f"{len(f.disturbed)} of {len(f.experiments)} experiments were disturbed by other work "
        f"(above {f.threshold_cpu_pct:.0f}% of one core): {', '.join(f.disturbed_ids)}."
    )


def storage(run: RunLog) -> str:
    s = run.storage
    if s.free_gb is None:
        return f"free disk space could not be read at {s.path}"
    verdict = "enough" if s.enough else "not enough"
    return f"{s.free_gb:,.1f} GB free where results are written: {verdict} for the ~{s.needed_gb:g} GB Day 2 needs"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return NA
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def key_findings(f: Findings) -> list[str]:
    """One line per finding, for the commit message."""
    lines = [expectations(f.expectations).split(" (", 1)[0]]
    if f.prompt_length.verdict is not None:
        lines.append(
            f"prompt length: {f.prompt_length.verdict.value}"
            + (
                f", prefill ≈ {f.prompt_length.prefill_tps:,.0f} tok/s"
                if f.prompt_length.prefill_tps
                else ""
            )
        )
    if f.temperature.verdict is not None:
        lines.append(f"temperature: {f.temperature.verdict.value}")
    if f.concurrency.verdict is not None:
        lines.append(
            f"concurrency: {f.concurrency.verdict.value}, "
            f"knee at {workers_text(f.concurrency.knee_workers)}"
        )
    if f.kv_cache.verdict is not None:
        lines.append(f"kv cache: {f.kv_cache.verdict.value}")
    lines.append(f"bottleneck: {f.bottleneck.primary.value}")
    if f.interference.disturbed:
        lines.append(f"disturbed experiments: {', '.join(f.interference.disturbed_ids)}")
    return lines
