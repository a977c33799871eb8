"""The KV cache in numbers, for "KV-Cache Deep Dive": the formula beside the measured RSS."""

from __future__ import annotations

from perflab.analyse.findings.kv_memory import KvMemoryFinding, KvMemoryVerdict

KIB = 1024
ABOVE_FORMULA = 1.5  # a slope above 1.5 × the formula: RSS counts more than the cache
BELOW_FORMULA = 0.5


def _bytes(value: float) -> str:
    return f"{value:,.0f} B"


def formula_text(f: KvMemoryFinding) -> str | None:
    if f.formula_bytes_per_token is None:
        return None
    return (
        f"the formula (2 × layers × KV heads × head dim × {f.cache_type} bytes) gives "
        f"{f.formula_bytes_per_token / KIB:,.1f} KiB ({_bytes(f.formula_bytes_per_token)}) "
        "per token"
    )


def measured_text(f: KvMemoryFinding) -> str:
    fit = f.fit
    spread = ""
    if fit.slope_low is not None and fit.slope_high is not None:
        spread = f" (95 % CI {fit.slope_low:,.0f} to {fit.slope_high:,.0f})"
    return (
        f"the server's peak RSS changes by {_bytes(fit.slope)} per prompt token{spread}, a "
        f"least-squares slope over n={fit.n} experiments of the prompt_length suite "
        f"({f.prompt_tokens_min:,.0f}–{f.prompt_tokens_max:,.0f} prompt tokens, peak RSS "
        f"{f.rss_gb_min:.3f}–{f.rss_gb_max:.3f} GB)"
    )


def _judgement(f: KvMemoryFinding) -> str:
    if f.verdict is KvMemoryVerdict.UP_FRONT:
        return (
            "RSS cannot show the cache: the engine allocated it up front for its whole "
            f"context (llama.cpp and Ollama reserve n_ctx × "
            f"{f.formula_bytes_per_token / KIB:,.1f} KiB when the model loads), so a longer "
            "prompt fills memory that was already counted"
        )
    if f.verdict is KvMemoryVerdict.GROWS:
        return _grows(f.share_of_formula)
    return "too noisy to tell growth from none; more trials or a wider prompt range would"


def _grows(share: float | None) -> str:
    if share is None:
        return "memory grows with the prompt; without the model's GGUF there is no formula to set it beside"
    if share > ABOVE_FORMULA:
        return (
            f"memory grows with the prompt at {share:.0%} of the formula's rate: peak RSS counts "
            "more than the cache (the engine's other buffers that grow with the tokens it "
            "holds), so the slope bounds the cache's growth from above"
        )
    if share < BELOW_FORMULA:
        return (
            f"memory grows with the prompt at only {share:.0%} of the formula's rate: part of "
            "the cache was reserved up front, or the pages it fills were already counted"
        )
    return f"memory grows with the prompt at {share:.0%} of the formula's rate: the cache fills as it is used"


def kv_memory(f: KvMemoryFinding | None) -> str | None:
    if f is None:
        return None
    parts = [p for p in (formula_text(f), measured_text(f)) if p]
    text = "; ".join(parts)
    judgement = _judgement(f)
    return f"{text[0].upper()}{text[1:]}. {judgement[0].upper()}{judgement[1:]}."
