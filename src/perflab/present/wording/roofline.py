"""The machine's ceilings and the model's costs in words, for "Comparison to Expectations"."""

from __future__ import annotations

from perflab.analyse.findings.roofline import NEAR_CEILING, Efficiency, RooflineFinding
from perflab.measure.machine import Rate


def _rate(rate: Rate, unit: str) -> str:
    spread = f" ± {rate.ci95:.2f}" if rate.ci95 is not None else ""
    return f"{rate.mean:.2f}{spread} {unit} (95 % CI, n={rate.repetitions})"


def _share(e: Efficiency, scale: str = "") -> str:
    share = f"{e.fraction:.1%}"
    if e.fraction_low is not None and e.fraction_high is not None:
        share += f" (95 % CI {e.fraction_low:.1%}–{e.fraction_high:.1%}{scale})"
    return share


def _ceiling(e: Efficiency) -> str:
    spread = f" ± {e.ceiling_ci95:,.0f}" if e.ceiling_ci95 is not None else ""
    return f"{e.ceiling_tps:,.0f}{spread} tok/s"


def machine_line(f: RooflineFinding) -> str:
    m = f.machine
    threads = f"{m.threads} thread{'s' if m.threads != 1 else ''}"
    return (
        f"{m.cpu}, {threads} of {m.logical_cores} logical cores: read bandwidth "
        f"{_rate(m.bandwidth_gbs, 'GB/s')} ({m.bandwidth_kernel}); compute "
        f"{_rate(m.matmul_gflops, 'GFLOP/s')} ({m.matmul_kernel})"
    )


def model_line(f: RooflineFinding) -> str:
    m = f.model
    return (
        f"{m.parameters / 1e6:,.1f} M parameters, {m.weight_bytes / 1e6:,.1f} MB of weights; "
        f"{m.bytes_per_token / 1e6:,.1f} MB read per decoded token, "
        f"{m.flops_per_token / 1e9:.2f} GFLOP per token plus "
        f"{m.attention_flops_per_context_token / 1e3:,.0f} kFLOP per token of context; "
        f"KV cache {m.kv_bytes_per_token(f.kv_cache_type) / 1024:,.1f} KiB per token "
        f"({f.kv_cache_type}: 2 × {m.layers} layers × {m.kv_heads} KV heads × {m.head_dim}), "
        f"{m.kv_bytes_at(m.context_length, f.kv_cache_type) / 2**20:,.0f} MiB at its "
        f"{m.context_length:,}-token context"
    )


def _length(e: Efficiency, kind: str) -> str:
    """' over 32 output tokens per request', beside a rate; '' when unknown."""
    return "" if e.tokens_mean is None else f" over {e.tokens_mean:,.0f} {kind} tokens per request"


def _at(e: Efficiency) -> str:
    """' at 143 prompt tokens': the prompt the prefill ceiling is reckoned at."""
    return "" if e.tokens_mean is None else f" at {e.tokens_mean:,.0f} prompt tokens"


def decode_line(e: Efficiency) -> str:
    return (
        f"decode, {e.label}: {e.rate_tps:.1f} tok/s{_length(e, 'output')} of a {_ceiling(e)} "
        "ceiling "
        f"(bandwidth ÷ bytes per token with {e.context_tokens:,.0f} tokens of context) = "
        f"{_share(e, ', from the log of the rate')}"
    )


def prefill_line(e: Efficiency) -> str:
    return (
        f"prefill: {e.rate_tps:,.0f} tok/s (the prompt-length fit's) of a {_ceiling(e)} ceiling"
        f"{_at(e)} (compute ÷ FLOPs per prompt token) = {_share(e)}"
    )


REMEASURE = (
    "a measured rate cannot beat a true ceiling, so the ceiling's own measurement was "
    "disturbed (other work on the machine while it ran) and no fraction of it is given; "
    "delete the host's file under cache/machine/ and rerun on a quiet machine to measure it again"
)


def unreliable_line(rates: tuple[Efficiency, ...], what: str, capacity: str) -> str:
    """The rates that beat their ceiling, with both figures, and why it is refused."""
    kind = "output" if what == "decode" else "prompt"
    above = [e for e in rates if e.fraction > 1]
    figures = "; ".join(
        f"{e.label} {e.rate_tps:,.1f} tok/s{_length(e, 'output') if kind == 'output' else ''} "
        f"against a {_ceiling(e)} ceiling{_at(e) if kind == 'prompt' else ''}"
        for e in above
    )
    return f"the {what} ceiling is unreliable: measured {figures}, from {capacity}. {REMEASURE}."


def _unreliable_lines(f: RooflineFinding) -> list[tuple[str, str]]:
    lines = []
    if f.bandwidth_unreliable:
        capacity = f"a read bandwidth of {_rate(f.machine.bandwidth_gbs, 'GB/s')}"
        lines.append(("Against the ceiling", unreliable_line(f.decode, "decode", capacity)))
    if f.compute_unreliable:
        capacity = f"a compute rate of {_rate(f.machine.matmul_gflops, 'GFLOP/s')}"
        lines.append(("Against the ceiling", unreliable_line((f.prefill,), "prefill", capacity)))
    return lines


def verdict_line(f: RooflineFinding) -> str:
    if not f.decode:
        return "no successful decode to set against the ceiling."
    if f.bandwidth_unreliable:
        return (
            "not judged: decode ran faster than the measured bandwidth allows, so that "
            "measurement, not decode, is wrong (above)."
        )
    best = max(f.decode, key=lambda e: e.fraction)
    if f.bandwidth_bound:
        return (
            f"decode runs at {best.fraction:.0%} of what the memory bandwidth allows: it is "
            "bandwidth-bound, so more threads cannot speed it up; fewer bytes per token can "
            "(a smaller quantization, a smaller model)."
        )
    return (
        f"decode reaches at most {best.fraction:.0%} of the bandwidth ceiling (below "
        f"{NEAR_CEILING:.0%}): memory bandwidth is not what limits it. The gap is in the work "
        f"around each token — threads ({f.machine.threads} of {f.machine.logical_cores} cores), "
        "the per-token overhead of sampling over the whole vocabulary and of the client, and "
        "scheduling — so the threads suite and the llama-bench cross-check say more."
    )


def roofline(f: RooflineFinding) -> list[tuple[str, str]]:
    """(label, sentence) pairs; the template makes the label bold."""
    lines = [("Machine", machine_line(f)), ("Model", model_line(f))]
    if not f.bandwidth_unreliable:
        lines += [("Against the ceiling", decode_line(e)) for e in f.decode]
    if f.prefill is not None and not f.compute_unreliable:
        lines.append(("Against the ceiling", prefill_line(f.prefill)))
    lines += _unreliable_lines(f)
    lines.append(("Roofline", verdict_line(f)))
    return lines
