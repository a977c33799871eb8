"""Answers to the Day-1 log's questions, computed from the summary.

Each function returns a dict of numbers plus ``sentence``: the answer in words,
with its numbers, units and n. Thresholds are module constants (docs/metrics.md).
"""

from __future__ import annotations

import numpy as np
import polars as pl

MIN_FIT_POINTS = 3
GOOD_FIT_R2 = 0.8
SCALING_SPEEDUP = 1.5  # req/s at 2 workers ≥ 1.5 × 1 worker: the server runs requests in parallel
FLAT_SPEEDUP = 1.15
PRACTICAL_DIFFERENCE = 0.05  # latency differences under 5 % are not worth acting on  # ≤ 1.15 ×: throughput is flat, the server serializes


def suite_rows(summary: pl.DataFrame, suite: str) -> pl.DataFrame:
    return summary.filter(pl.col("suites").str.split(",").list.contains(suite))


def linear_fit(x, y) -> dict:
    """Least-squares line y = slope·x + intercept, with R² and n."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0:
        return {"slope": None, "intercept": None, "r2": None, "n": len(x)}
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    total = ((y - y.mean()) ** 2).sum()
    r2 = 1.0 - (residual**2).sum() / total if total > 0 else 1.0
    return {"slope": float(slope), "intercept": float(intercept), "r2": float(r2), "n": len(x)}


def prompt_length_scaling(summary: pl.DataFrame) -> dict:
    rows = suite_rows(summary, "prompt_length").drop_nulls("prompt_tokens_mean")
    rows = rows.sort("prompt_tokens_mean")
    if rows.height < 2:
        return {"sentence": "Fewer than 2 prompt lengths were measured: no scaling to report."}
    tokens = rows["prompt_tokens_mean"]
    ttft = linear_fit(tokens, rows["ttft_mean_s"])
    e2e = linear_fit(tokens, rows["e2e_mean_s"])
    prefill_tps = 1.0 / ttft["slope"] if ttft["slope"] and ttft["slope"] > 0 else None
    shortest, longest = rows.row(0, named=True), rows.row(-1, named=True)
    growth = longest["e2e_mean_s"] / shortest["e2e_mean_s"]
    sentence = (
        f"From {shortest['prompt_tokens_mean']:.0f} to {longest['prompt_tokens_mean']:.0f} prompt "
        f"tokens, mean latency went from {shortest['e2e_mean_s']:.3f}s to "
        f"{longest['e2e_mean_s']:.3f}s (×{growth:.2f}) and TTFT from "
        f"{shortest['ttft_mean_s']:.3f}s to {longest['ttft_mean_s']:.3f}s. A linear fit over "
        f"{ttft['n']} prompt lengths gives TTFT +{ttft['slope'] * 1000:.3f} ms per prompt token "
        f"(R² {ttft['r2']:.2f})"
    )
    if prefill_tps:
        sentence += f", i.e. prefill ≈ {prefill_tps:,.0f} tokens/s"
    sentence += f"; latency +{e2e['slope'] * 1000:.3f} ms per prompt token (R² {e2e['r2']:.2f})."
    if ttft["n"] < MIN_FIT_POINTS:
        sentence += f" Only {ttft['n']} points: treat the fit as a rough indication."
    elif ttft["r2"] < GOOD_FIT_R2:
        sentence += " The fit is poor: latency is not linear in prompt length at these sizes."
    sentence += " Output length is fixed across prompts, so the growth is prefill work."
    return {"ttft_fit": ttft, "e2e_fit": e2e, "prefill_tps": prefill_tps, "sentence": sentence}


def _overlap(a_mean, a_ci, b_mean, b_ci) -> bool:
    return abs(a_mean - b_mean) <= (a_ci or 0.0) + (b_ci or 0.0)


def temperature_effect(summary: pl.DataFrame) -> dict:
    rows = suite_rows(summary, "temperature").sort("temperature").to_dicts()
    if len(rows) < 2:
        return {"sentence": "Fewer than 2 temperatures were measured: no comparison."}
    overlapping = all(
        _overlap(a["e2e_mean_s"], a["e2e_ci95_s"], b["e2e_mean_s"], b["e2e_ci95_s"])
        for a in rows
        for b in rows
    )
    listing = ", ".join(
        f"{r['temperature']:g}: {r['e2e_mean_s']:.3f}s ± {r['e2e_ci95_s'] or 0:.3f} "
        f"({r['tps_mean']:.1f} tok/s, {r['output_tokens_mean']:.0f} output tokens, n={r['n_ok']})"
        for r in rows
    )
    lengths = {round(r["output_tokens_mean"] or 0) for r in rows}
    slow = max(rows, key=lambda r: r["e2e_mean_s"])
    fast = min(rows, key=lambda r: r["e2e_mean_s"])
    difference = slow["e2e_mean_s"] / fast["e2e_mean_s"] - 1
    if overlapping:
        sentence = f"No effect beyond noise: the 95% CIs of mean latency overlap ({listing})."
    elif difference < PRACTICAL_DIFFERENCE:
        sentence = (
            f"No practical effect: the largest difference is {difference:.1%}, measurable "
            f"beyond the 95% CIs but under {PRACTICAL_DIFFERENCE:.0%} ({listing})."
        )
    else:
        sentence = (
            f"Yes: temperature {slow['temperature']:g} is {slow['e2e_mean_s'] / fast['e2e_mean_s']:.2f}× "
            f"slower than {fast['temperature']:g}, beyond the 95% CIs ({listing})."
        )
    if len(lengths) == 1:
        sentence += (
            " Output length was the same at every temperature, so this compares like with like."
        )
    else:
        sentence += " Output length differs between temperatures: compare tok/s, not only latency."
    return {
        "rows": rows,
        "overlapping": overlapping,
        "difference": difference,
        "sentence": sentence,
    }


def concurrency_scaling(summary: pl.DataFrame) -> dict:
    rows = suite_rows(summary, "concurrency").sort("workers").to_dicts()
    if len(rows) < 2 or rows[0]["workers"] != 1:
        return {"sentence": "The concurrency suite needs 1 worker and at least one more count."}
    one, most = rows[0], rows[-1]
    speedup = most["req_per_s"] / one["req_per_s"]
    latency_growth = most["e2e_mean_s"] / one["e2e_mean_s"]
    listing = ", ".join(
        f"{r['workers']}: {r['req_per_s']:.2f} req/s at {r['e2e_mean_s']:.3f}s" for r in rows
    )
    if speedup >= SCALING_SPEEDUP:
        verdict = (
            f"Yes: throughput grows ×{speedup:.2f} from 1 to {most['workers']} workers "
            f"while latency grows ×{latency_growth:.2f}: the server runs requests in parallel."
        )
    elif speedup <= FLAT_SPEEDUP:
        verdict = (
            f"No: throughput stays flat (×{speedup:.2f}) from 1 to {most['workers']} workers "
            f"while mean latency grows ×{latency_growth:.2f}: the server serializes requests "
            "and the extra workers only queue."
        )
    else:
        verdict = (
            f"Partly: throughput grows ×{speedup:.2f} from 1 to {most['workers']} workers "
            f"while latency grows ×{latency_growth:.2f}."
        )
    if most.get("queue_mean_s") is not None:
        verdict += f" Mean queue wait at {most['workers']} workers: {most['queue_mean_s']:.3f}s."
    elif most.get("ttft_mean_s") is not None:
        verdict += (
            f" TTFT grows from {one['ttft_mean_s']:.3f}s to {most['ttft_mean_s']:.3f}s, "
            "where waiting for the server shows."
        )
    return {
        "rows": rows,
        "speedup": speedup,
        "latency_growth": latency_growth,
        "sentence": f"{verdict} ({listing}).",
    }


def expected_vs_actual_tps(summary: pl.DataFrame, expected: tuple[float, float] = (10, 20)) -> dict:
    rows = suite_rows(summary, "basic").drop_nulls("tps_mean")
    if rows.is_empty():
        rows = summary.drop_nulls("tps_mean")
    if rows.is_empty():
        return {"actual_tps": None, "sentence": "No successful request: no tokens/s to compare."}
    weights = rows["n_ok"].cast(pl.Float64)
    actual = float((rows["tps_mean"] * weights).sum() / weights.sum())
    output = float((rows["output_tokens_mean"] * weights).sum() / weights.sum())
    low, high = expected
    if actual < low:
        where = f"below the expected {low:g}–{high:g} tok/s ({actual / low:.2f}× the low end)"
    elif actual > high:
        where = f"above the expected {low:g}–{high:g} tok/s ({actual / high:.1f}× the high end)"
    else:
        where = f"within the expected {low:g}–{high:g} tok/s"
    sentence = (
        f"Measured decode speed is {actual:.1f} tok/s (mean over {int(weights.sum())} basic "
        f"requests of {output:.0f} output tokens each), {where}."
    )
    return {"actual_tps": actual, "output_tokens_mean": output, "sentence": sentence}


def latency_breakdown(summary: pl.DataFrame) -> dict:
    rows = suite_rows(summary, "basic")
    if rows.is_empty():
        rows = summary
    weights = rows["n_ok"].cast(pl.Float64)
    total = weights.sum()
    if not total:
        return {"ttft_percent": None, "decode_percent": None, "sentence": "No successful request."}

    def weighted(column: str) -> float | None:
        values = rows[column]
        if values.null_count() == rows.height:
            return None
        return float((values.fill_null(0) * weights).sum() / total)

    e2e, ttft = weighted("e2e_mean_s"), weighted("ttft_mean_s")
    ttft_percent = 100 * ttft / e2e
    parts = {name: weighted(f"{name}_mean_s") for name in ("queue", "load", "prefill", "decode")}
    known = {k: v for k, v in parts.items() if v is not None}
    shares = {k: 100 * v / e2e for k, v in known.items()}
    if known:
        shares["other"] = max(0.0, 100 - sum(shares.values()))
    sentence = (
        f"Time to first token (prefill, plus any queue and load) is {ttft_percent:.1f}% of the "
        f"mean {e2e:.3f}s latency and decode {100 - ttft_percent:.1f}% (basic suite, "
        f"n={int(total)})."
    )
    if known:
        sentence += (
            " By the engine's own timings: "
            + ", ".join(f"{name} {share:.1f}%" for name, share in shares.items())
            + " (other = client, HTTP and sampling overhead)."
        )
    if ttft_percent < 50:
        sentence += " Decode dominates: output length, not prompt length, drives latency here."
    else:
        sentence += " Prefill dominates: prompt length drives latency here."
    return {
        "ttft_percent": ttft_percent,
        "decode_percent": 100 - ttft_percent,
        "shares": shares,
        "e2e_mean_s": e2e,
        "sentence": sentence,
    }
