"""The answers to the log's questions, from their findings."""

from __future__ import annotations

from perflab.analyse.findings.breakdown import BreakdownFinding
from perflab.analyse.findings.expectations import ExpectationFinding, Position
from perflab.analyse.findings.kv_cache import KvCacheFinding
from perflab.analyse.findings.prompt_length import (
    MIN_FIT_POINTS,
    PromptLengthFinding,
    PromptLengthReason,
    PromptLengthVerdict,
)
from perflab.analyse.findings.temperature import TemperatureFinding
from perflab.analyse.verdict import Outcome, Reason
from perflab.present.wording.curvature import GROWING, curvature_words
from perflab.present.wording.numbers import (
    LISTED,
    disturbed_count,
    disturbed_note,
    metric_spread,
    num,
    spread_text,
)
from perflab.present.wording.verdicts import reason_text, statistics


def _fit_words(fit) -> str:
    """'grows by 0.512 ms per prompt token (95 % CI 0.480–0.544, R² 0.99'."""
    per_token_ms = fit.slope * 1000
    verb = "grows" if per_token_ms >= 0 else "falls"
    text = f"{verb} by {abs(per_token_ms):.3f} ms per prompt token ("
    if fit.slope_low is not None:
        text += f"95% CI {fit.slope_low * 1000:.3f}–{fit.slope_high * 1000:.3f}, "
    return text + f"R² {fit.r2:.2f}"


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
        PromptLengthVerdict.GROWS: "Grows",
        PromptLengthVerdict.SUPERLINEAR: "Faster than linear",
        PromptLengthVerdict.FLAT: "Flat",
        PromptLengthVerdict.INCONCLUSIVE: "Inconclusive",
    }[f.verdict]
    trials = max((len(p.per_trial) for p in f.points), default=1)
    text = (
        f"{verdict}: TTFT {_fit_words(fit)}, {len(f.points)} prompt lengths × {trials} "
        f"trial{'s' if trials != 1 else ''}, each trial a block)"
    )
    grows = f.verdict in GROWING
    tokens = [p.prompt_tokens_mean or 0.0 for p in f.points]
    if grows and f.prefill_tps:
        text += (
            f": prefill ≈ {f.prefill_tps:,.0f} tok/s over {min(tokens):,.0f}–{max(tokens):,.0f} "
            f"prompt tokens (95% CI {f.prefill_tps_low:,.0f}–{f.prefill_tps_high:,.0f})"
        )
    elif f.verdict == PromptLengthVerdict.FLAT:
        text += ": no prefill cost seen"
    text += curvature_words(f)
    if e2e.slope is not None:
        text += f"; end-to-end latency {_fit_words(e2e)})"
    short, long = f.points[0], f.points[-1]
    text += (
        f". From {short.prompt_tokens_mean:.0f} to {long.prompt_tokens_mean:.0f} prompt tokens, "
        f"TTFT went from {spread_text(short.ttft)} to {spread_text(long.ttft)} and mean latency "
        f"from {spread_text(short.e2e)} to {spread_text(long.e2e)}."
    )
    if f.reason == PromptLengthReason.TOO_FEW_POINTS:
        text += (
            f" Only {len(f.points)} prompt lengths and {fit.n} observations (at least "
            f"{MIN_FIT_POINTS} lengths are needed, and more observations than the line and its "
            "trial blocks): treat it as a rough indication."
        )
    elif f.reason == PromptLengthReason.UNDERPOWERED:
        text += (
            " The slope's CI includes both no cost and a visible one: TTFT is not shown to "
            "grow, nor to stay flat; more trials or longer prompts would tell."
        )
    elif f.reason == PromptLengthReason.FALLS:
        text += " TTFT falls with prompt length: something other than prefill moves it."
    elif f.reason == PromptLengthReason.DISTURBED:
        text += disturbed_note(f.disturbed)
    elif f.verdict == PromptLengthVerdict.FLAT:
        text += (
            f" Prompt length adds only {f.ttft_rise_s * 1000:.1f} ms over the whole range: "
            "prefill is cheap here, or a prompt cache served the prompts."
        )
    lengths = [p.output_tokens_mean for p in f.points if p.output_tokens_mean is not None]
    if lengths and f.same_output_length:
        text += (
            f" Output length is the same at every prompt length ({sum(lengths) / len(lengths):.0f} "
            "tokens)" + (", so the growth is prefill work." if grows else ".")
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
    why = " so output length, not speed, explains the latency difference" if f.length_only else ""
    return (
        f" Answers were cut at max_tokens ({cut}),{why}."
        if why
        else f" Answers were cut at max_tokens ({cut})."
    )


def _speed_words(f: TemperatureFinding) -> str:
    return (
        "decode speed between tokens" if f.speed_metric == "gap_tps" else "decode speed per token"
    )


def _gap_note(f: TemperatureFinding) -> str:
    if f.speed_metric != "gap_tps":
        return ""
    return (
        " Speed is compared between tokens (1 / mean gap), not per request: after its last "
        "answer token a model spends one more decode step on its end-of-turn token, which makes "
        "a short answer's tok/s above read slower per token, and temperature changes the length."
    )


def temperature(f: TemperatureFinding) -> str:
    if f.verdict is None:
        return "Fewer than 2 temperatures were measured: no comparison."
    listing = "; ".join(
        f"{c.temperature:g}: {spread_text(c.e2e)}, {metric_spread(c.tps, 'tps')}, "
        f"{num(c.output_tokens_mean, 0, ' output tokens')}, n={c.n_ok}"
        for c in f.conditions
    )
    reference = f.conditions[0].temperature
    speeds = "; ".join(
        f"{c.temperature:g} against {reference:g}: {statistics(v)}"
        for c, v in zip(f.conditions[1:], f.speed, strict=True)
    )
    speed = _speed_words(f)
    if f.verdict is Outcome.CHANGED:
        text = f"Yes: {speed} changed with temperature ({speeds})"
    elif f.length_only:
        slow, fast = f.slowest, f.fastest
        text = (
            f"Only through output length: {speed} is equivalent within "
            f"±{f.speed[0].threshold:.0%} ({speeds}), but temperature {slow.temperature:g} takes "
            f"{1 + f.latency_difference:.2f}× as long as {fast.temperature:g} because it writes "
            f"{num(slow.output_tokens_mean, 0)} vs {num(fast.output_tokens_mean, 0)} tokens"
        )
    elif f.verdict is Outcome.EQUIVALENT:
        text = (
            f"No: {speed} is equivalent within ±{f.speed[0].threshold:.0%} at "
            f"every temperature ({speeds})"
        )
    else:
        unclear = next(v for v in f.speed if not v.conclusive)
        text = f"Inconclusive: {reason_text(unclear)} ({speeds})"
    text += f". Per temperature: {listing}." + _gap_note(f)
    if f.disturbed:
        text += disturbed_note(f.disturbed)
    return text + _truncation(f)


def _reused_tokens(f: KvCacheFinding) -> str:
    """What the server said it took from its cache, when it says (llama-server's cache_n)."""
    parts = []
    for name, condition in (("busted", f.bust), ("reused", f.reuse)):
        if condition is None or condition.cached_tokens_median is None:
            continue
        total = condition.prompt_tokens_mean
        of = f" of {total:.0f}" if total else ""
        parts.append(f"{condition.cached_tokens_median:.0f}{of} with the prompt {name}")
    if not parts:
        return ""
    text = f" The server reused a median of {' and '.join(parts)} prompt tokens from its cache"
    if f.bust is not None and (f.bust.cached_tokens_median or 0) > 0:
        text += (
            ": even a unique prefix leaves what comes before it cacheable (with the chat "
            "endpoint, the chat template's opening), so TTFT with it busted still saves "
            "those tokens' prefill"
        )
    return text + "."


def kv_cache(f: KvCacheFinding) -> str | None:
    if f.bust is None and f.reuse is None:
        return None
    if f.verdict is None:
        return "The kv_cache suite needs the prompt both with and without reuse: no comparison."
    return _kv_cache_verdict(f) + _reused_tokens(f)


def _kv_cache_verdict(f: KvCacheFinding) -> str:
    figures = (
        f"TTFT {spread_text(f.reuse.ttft)} with the prompt reused vs {spread_text(f.bust.ttft)} "
        f"with a unique prefix per request (n={f.reuse.n_ok} and {f.bust.n_ok}); reused / "
        f"unique {statistics(f.test)}"
    )
    if f.reuse_faster:
        return f"Yes: reusing the prompt's KV cache saves {f.ttft_saving:.0%} of TTFT: {figures}."
    if f.verdict is Outcome.CHANGED:
        return f"Reuse is slower, by {-f.ttft_saving:.0%} of TTFT: {figures}."
    if f.verdict is Outcome.EQUIVALENT:
        return (
            f"No: TTFT is equivalent within ±{f.test.threshold:.0%} with and without reuse: "
            f"{figures}."
        )
    if f.test.reason is Reason.DISTURBED:
        return f"Inconclusive: {figures}.{disturbed_note(f.disturbed)}"
    return f"Inconclusive: {reason_text(f.test)}: {figures}."


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
    caveat = (
        f" Other work used the CPU during {disturbed_count(f.disturbed)} of these ({LISTED}): "
        "on a quiet machine the speed may be higher."
        if f.disturbed
        else ""
    )
    return (
        f"Measured decode speed is {f.actual_tps:.1f} tok/s (mean over {f.n} requests{output}, "
        f"{source}{spread}), {where}.{caveat}"
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
    if f.prep_mean_s is not None:
        text += (
            f" Before each request left, the client spent {f.prep_mean_s * 1000:.2f} ms "
            "preparing it (not part of TTFT or latency)."
        )
    if f.decode_dominates is True:
        text += " Decode dominates: output length, not prompt length, drives latency."
    elif f.decode_dominates is False:
        text += " Time to first token dominates: prompt length and waiting drive latency."
    return text
