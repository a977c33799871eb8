"""The llama-bench cross-check in words: each of perflab's rates beside the peer's."""

from __future__ import annotations

from perflab.analyse.findings.peer import PeerFinding, PeerRate

WHAT = {"decode": "decode", "prefill": "prefill"}


def _ratio(rate: PeerRate) -> str:
    if rate.ratio_low is None:
        return f"×{rate.ratio:.2f}"
    return f"×{rate.ratio:.2f} (95 % CI {rate.ratio_low:.2f}–{rate.ratio_high:.2f})"


def _line(rate: PeerRate) -> str:
    who = f"{rate.target}: " if rate.target else ""
    ours = f"{rate.tps_mean:.1f}"
    if rate.tps_ci95 is not None:
        ours += f" ± {rate.tps_ci95:.1f}"
    peer = rate.peer
    theirs = f"{peer.tps_mean:.1f} ± {peer.tps_ci95:.1f}" if peer.repetitions > 1 else ""
    theirs = theirs or f"{peer.tps_mean:.1f}"
    kind = "output" if rate.what == "decode" else "prompt"
    length = "" if rate.tokens_mean is None else f" of {rate.tokens_mean:,.0f} {kind} tokens"
    return (
        f"{who}perflab's {WHAT[rate.what]} {ours} tok/s (95 % CI, n={rate.n} requests{length}) "
        "against "
        f"llama-bench {peer.label} {theirs} t/s (95 % CI, {peer.repetitions} repetitions, "
        f"{peer.threads} thread{'s' if peer.threads != 1 else ''}): {_ratio(rate)}"
    )


def peer(f: PeerFinding) -> list[str]:
    """One line per rate, then what llama-bench measures differently."""
    if not f.rates:
        return ["llama-bench ran, but no successful basic-suite request had a rate to compare."]
    lines = [_line(rate) for rate in f.rates]
    lines.append(
        "llama-bench times pp as one batch of N prompt tokens into an empty cache and tg as "
        "single-token decodes that sample nothing; a served request also tokenizes, applies "
        "the chat template, samples every token over the whole vocabulary and (on a server) "
        "streams it over HTTP, and may take part of its prompt from the cache: its prefill "
        "rate counts only the tokens it evaluated."
    )
    return lines
