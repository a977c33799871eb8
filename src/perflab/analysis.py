"""Answers to the Day-1 log's questions, computed from the per-experiment summary.

Every function takes the summary DataFrame (one row per experiment, see
``perflab.metrics.summarize``) and returns a plain dict of numbers plus
``sentence``: the answer in words, with its numbers, units and n. Experiments
without a single successful request carry no latency and are left out. The
thresholds are the module constants below; docs/metrics.md explains them.
"""

from __future__ import annotations

import numpy as np
import polars as pl

MIN_FIT_POINTS = 3  # fewer prompt lengths than this: the fit is only a rough indication
GOOD_FIT_R2 = 0.8  # below this R² a straight line does not describe the points
SCALING_SPEEDUP = 1.5  # peak req/s ≥ 1.5 × the 1-worker req/s: requests run in parallel
FLAT_SPEEDUP = 1.15  # peak req/s ≤ 1.15 × the 1-worker req/s: throughput is flat
PRACTICAL_DIFFERENCE = 0.05  # latency differences under 5 % are not worth acting on
SAME_OUTPUT_LENGTH = 0.05  # mean output lengths within 5 % of each other count as equal

BREAKDOWN_PARTS = ("queue", "load", "prefill", "decode")


def suite_rows(summary: pl.DataFrame, suite: str) -> pl.DataFrame:
    """The experiments that belong to ``suite`` (``suites`` is comma-joined)."""
    if "suites" not in summary.columns:
        return summary.clear()
    return summary.filter(pl.col("suites").str.split(",").list.contains(suite))


def _with_columns(frame: pl.DataFrame, *columns: str) -> pl.DataFrame:
    """``frame`` with every missing column of ``columns`` added as nulls."""
    missing = [name for name in columns if name not in frame.columns]
    return frame.with_columns(pl.lit(None, dtype=pl.Float64).alias(name) for name in missing)


def _measured(frame: pl.DataFrame, *columns: str) -> pl.DataFrame:
    """Rows whose ``columns`` are all measured (not null, not NaN)."""
    frame = _with_columns(frame, *columns)
    return frame.filter(
        pl.all_horizontal(pl.col(c).is_not_null() & pl.col(c).cast(pl.Float64).is_not_nan())
        for c in columns
    )


def _same(values: pl.Series, tolerance: float = SAME_OUTPUT_LENGTH) -> bool:
    """Whether the non-null ``values`` lie within ``tolerance`` (relative) of each other."""
    values = values.drop_nulls()
    if values.len() < 2:
        return True
    low, high = values.min(), values.max()
    return high - low <= tolerance * max(abs(high), abs(low), 1e-12)


def _num(value: float | None, spec: str, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def linear_fit(x, y) -> dict:
    """Least-squares line ``y = slope·x + intercept`` with R² and n.

    Pairs with a missing or non-finite value are dropped. With fewer than two
    points, or all x equal, slope, intercept and r2 are None.
    """
    x = np.asarray([np.nan if v is None else v for v in x], dtype=float)
    y = np.asarray([np.nan if v is None else v for v in y], dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = int(len(x))
    if n < 2 or np.ptp(x) == 0:
        return {"slope": None, "intercept": None, "r2": None, "n": n}
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((residual**2).sum()) / total if total > 0 else 1.0
    return {"slope": float(slope), "intercept": float(intercept), "r2": r2, "n": n}


def _fit_words(fit: dict) -> str:
    """'grows by 0.420 ms per prompt token (R² 0.98' — the caller closes the bracket."""
    per_token_ms = fit["slope"] * 1000
    verb = "grows" if per_token_ms >= 0 else "falls"
    return f"{verb} by {abs(per_token_ms):.3f} ms per prompt token (R² {fit['r2']:.2f}"


def prompt_length_scaling(summary: pl.DataFrame) -> dict:
    """Lines of mean TTFT and mean latency against mean prompt tokens (prompt_length suite).

    Keys: points, ttft_fit, e2e_fit (each ``linear_fit``), ttft_ms_per_token,
    e2e_ms_per_token, prefill_tps (1 / TTFT slope, None unless the slope is
    positive), same_output_length, reliable, sentence.
    """
    rows = _measured(
        suite_rows(summary, "prompt_length"), "prompt_tokens_mean", "ttft_mean_s", "e2e_mean_s"
    )
    rows = _with_columns(rows, "prompt_name", "output_tokens_mean", "n_ok").sort(
        "prompt_tokens_mean"
    )
    points = rows.select(
        "prompt_name", "prompt_tokens_mean", "ttft_mean_s", "e2e_mean_s", "output_tokens_mean"
    ).to_dicts()
    empty = {"points": points, "ttft_fit": None, "e2e_fit": None, "prefill_tps": None}
    if rows.height < 2 or rows["prompt_tokens_mean"].n_unique() < 2:
        return empty | {
            "reliable": False,
            "sentence": (
                f"Fewer than 2 prompt lengths with successful requests ({rows.height}): "
                "no scaling to report."
            ),
        }
    tokens = rows["prompt_tokens_mean"].to_list()
    ttft = linear_fit(tokens, rows["ttft_mean_s"].to_list())
    e2e = linear_fit(tokens, rows["e2e_mean_s"].to_list())
    prefill_tps = 1.0 / ttft["slope"] if ttft["slope"] > 0 else None
    same_output = _same(rows["output_tokens_mean"])
    reliable = ttft["n"] >= MIN_FIT_POINTS and ttft["r2"] >= GOOD_FIT_R2

    sentence = f"TTFT {_fit_words(ttft)}, {ttft['n']} prompt lengths)"
    sentence += f": prefill ≈ {prefill_tps:,.0f} tok/s" if prefill_tps else ": no prefill cost seen"
    sentence += f"; end-to-end latency {_fit_words(e2e)})."
    shortest, longest = points[0], points[-1]
    sentence += (
        f" From {shortest['prompt_tokens_mean']:.0f} to {longest['prompt_tokens_mean']:.0f} "
        f"prompt tokens, TTFT went from {shortest['ttft_mean_s']:.3f} s to "
        f"{longest['ttft_mean_s']:.3f} s and mean latency from {shortest['e2e_mean_s']:.3f} s "
        f"to {longest['e2e_mean_s']:.3f} s."
    )
    if ttft["n"] < MIN_FIT_POINTS:
        sentence += (
            f" Only {ttft['n']} points (fewer than {MIN_FIT_POINTS}): a line through 2 points "
            "always fits, so treat it as a rough indication."
        )
    elif ttft["r2"] < GOOD_FIT_R2:
        sentence += (
            f" The TTFT fit is poor (R² {ttft['r2']:.2f} < {GOOD_FIT_R2}): TTFT is not linear in "
            "prompt length at these sizes, or noise dominates."
        )
    if ttft["n"] >= MIN_FIT_POINTS and e2e["r2"] < GOOD_FIT_R2 <= ttft["r2"]:
        sentence += (
            f" The latency fit is poor (R² {e2e['r2']:.2f}): variation in decode time hides "
            "the prompt's share of end-to-end latency."
        )
    lengths = rows["output_tokens_mean"].drop_nulls()
    if lengths.is_empty():
        pass
    elif same_output:
        sentence += (
            f" Output length is the same at every prompt length ({lengths.mean():.0f} tokens), "
            "so the growth is prefill work."
        )
    else:
        sentence += (
            f" Output length varies from {lengths.min():.0f} to {lengths.max():.0f} tokens, "
            "which also moves end-to-end latency."
        )
    return {
        "points": points,
        "ttft_fit": ttft,
        "e2e_fit": e2e,
        "ttft_ms_per_token": ttft["slope"] * 1000,
        "e2e_ms_per_token": e2e["slope"] * 1000 if e2e["slope"] is not None else None,
        "prefill_tps": prefill_tps,
        "same_output_length": same_output,
        "reliable": reliable,
        "sentence": sentence,
    }


def temperature_effect(summary: pl.DataFrame) -> dict:
    """Mean latency ± 95 % CI, decode tok/s and output length per temperature.

    The CIs overlap as a whole when every pair overlaps, which for intervals is
    ``max(low) ≤ min(high)``. Keys: rows, overlapping, difference (slowest /
    fastest − 1), slowest, fastest (temperatures), same_output_length, verdict
    ("noise", "negligible" or "slower"), sentence.
    """
    rows = (
        _with_columns(
            _measured(suite_rows(summary, "temperature"), "temperature", "e2e_mean_s"),
            "e2e_ci95_s",
            "tps_mean",
            "output_tokens_mean",
            "n_ok",
        )
        .with_columns(pl.col("e2e_ci95_s").fill_null(0.0).fill_nan(0.0))
        .with_columns(
            (pl.col("e2e_mean_s") - pl.col("e2e_ci95_s")).alias("e2e_low_s"),
            (pl.col("e2e_mean_s") + pl.col("e2e_ci95_s")).alias("e2e_high_s"),
            (pl.col("e2e_mean_s") / pl.col("output_tokens_mean")).alias("e2e_per_token_s"),
        )
        .sort("temperature")
    )
    if rows.height < 2:
        return {
            "rows": rows.to_dicts(),
            "overlapping": None,
            "difference": None,
            "verdict": None,
            "sentence": "Fewer than 2 temperatures were measured: no comparison.",
        }
    overlapping = bool(rows["e2e_low_s"].max() <= rows["e2e_high_s"].min())
    slow = rows.row(int(rows["e2e_mean_s"].arg_max()), named=True)
    fast = rows.row(int(rows["e2e_mean_s"].arg_min()), named=True)
    difference = slow["e2e_mean_s"] / fast["e2e_mean_s"] - 1
    same_output = _same(rows["output_tokens_mean"])
    listing = "; ".join(
        f"{r['temperature']:g}: {r['e2e_mean_s']:.3f} ± {r['e2e_ci95_s']:.3f} s, "
        f"{_num(r['tps_mean'], '.1f', ' tok/s')}, "
        f"{_num(r['output_tokens_mean'], '.0f', ' output tokens')}, n={r['n_ok']}"
        for r in rows.iter_rows(named=True)
    )
    if overlapping:
        verdict = "noise"
        sentence = f"No effect beyond noise: the 95% CIs of mean latency overlap ({listing})."
    elif difference < PRACTICAL_DIFFERENCE:
        verdict = "negligible"
        sentence = (
            f"No practical effect: the largest difference is {difference:.1%}, measurable "
            f"beyond the 95% CIs but under {PRACTICAL_DIFFERENCE:.0%} ({listing})."
        )
    else:
        verdict = "slower"
        sentence = (
            f"Yes: temperature {slow['temperature']:g} is {1 + difference:.2f}× slower than "
            f"{fast['temperature']:g} ({slow['e2e_mean_s']:.3f} s vs {fast['e2e_mean_s']:.3f} s), "
            f"beyond the 95% CIs ({listing})."
        )
    lengths = rows["output_tokens_mean"].drop_nulls()
    if lengths.is_empty():
        sentence += " Output length was not recorded."
    elif same_output:
        sentence += (
            f" Output length was the same at every temperature ({lengths.mean():.0f} tokens), "
            "so this compares like with like."
        )
    else:
        sentence += (
            f" Output length differs between temperatures ({lengths.min():.0f}–"
            f"{lengths.max():.0f} tokens), which changes latency by itself"
        )
        if slow["e2e_per_token_s"] is not None and fast["e2e_per_token_s"] is not None:
            sentence += (
                f"; per output token, latency is {slow['e2e_per_token_s'] * 1000:.1f} ms at "
                f"{slow['temperature']:g} vs {fast['e2e_per_token_s'] * 1000:.1f} ms at "
                f"{fast['temperature']:g}"
            )
        sentence += "."
    return {
        "rows": rows.to_dicts(),
        "overlapping": overlapping,
        "difference": difference,
        "slowest": slow["temperature"],
        "fastest": fast["temperature"],
        "same_output_length": same_output,
        "verdict": verdict,
        "sentence": sentence,
    }


def _workers(count: int) -> str:
    return f"{count} worker" if count == 1 else f"{count} workers"


def concurrency_scaling(summary: pl.DataFrame) -> dict:
    """Throughput and latency per worker count, relative to 1 worker.

    The baseline is the 1-worker experiment (the smallest worker count when
    there is none). Keys: rows (workers, req_per_s, e2e_mean_s, ttft_mean_s,
    queue_mean_s, speedup, latency_growth, efficiency), baseline_workers,
    speedup (peak req/s over the baseline), peak_workers, latency_growth (at the
    most workers), verdict ("scales", "partial" or "serializes"), sentence.
    """
    rows = _measured(suite_rows(summary, "concurrency"), "workers", "req_per_s", "e2e_mean_s")
    rows = _with_columns(rows, "ttft_mean_s", "queue_mean_s", "n_ok").filter(
        pl.col("req_per_s") > 0
    )
    if rows["workers"].n_unique() < 2:
        return {
            "rows": [],
            "speedup": None,
            "latency_growth": None,
            "verdict": None,
            "sentence": "The concurrency suite needs at least two worker counts with successful "
            "requests: no comparison.",
        }
    # one row per worker count: the one with the most successful requests
    rows = rows.sort("workers", "n_ok", descending=[False, True], nulls_last=True).unique(
        "workers", keep="first", maintain_order=True
    )
    base = rows.row(0, named=True)
    rows = rows.with_columns(
        (pl.col("req_per_s") / base["req_per_s"]).alias("speedup"),
        (pl.col("e2e_mean_s") / base["e2e_mean_s"]).alias("latency_growth"),
    ).with_columns(
        (pl.col("speedup") * base["workers"] / pl.col("workers")).alias("efficiency"),
    )
    table = rows.select(
        "workers",
        "req_per_s",
        "e2e_mean_s",
        "ttft_mean_s",
        "queue_mean_s",
        "speedup",
        "latency_growth",
        "efficiency",
    )
    peak = table.row(int(table["req_per_s"].arg_max()), named=True)
    most = table.row(-1, named=True)
    speedup = peak["speedup"]
    span = f"from {base['workers']} to {most['workers']} workers"
    if speedup >= SCALING_SPEEDUP:
        verdict = "scales"
        text = (
            f"Yes: throughput scales ×{speedup:.2f} (peak at {peak['workers']} workers) {span} "
            f"while mean latency grows ×{most['latency_growth']:.2f}: the server runs "
            "requests in parallel."
        )
    elif speedup <= FLAT_SPEEDUP:
        verdict = "serializes"
        text = (
            f"No: the server serializes requests: throughput stays flat (×{speedup:.2f}) {span} "
            f"while mean latency grows ×{most['latency_growth']:.2f}, so the extra "
            "requests queue."
        )
    else:
        verdict = "partial"
        text = (
            f"Partly: throughput grows only ×{speedup:.2f} (peak at {peak['workers']} workers) "
            f"{span} while mean latency grows ×{most['latency_growth']:.2f}."
        )
    if base["workers"] != 1:
        text += f" There is no 1-worker run; {base['workers']} workers is the baseline."
    if most["queue_mean_s"] is not None:
        text += (
            f" Mean queue wait goes from {_num(base['queue_mean_s'], '.3f', ' s')} at "
            f"{base['workers']} to {most['queue_mean_s']:.3f} s at {most['workers']} workers."
        )
    elif base["ttft_mean_s"] is not None and most["ttft_mean_s"] is not None:
        text += (
            f" TTFT goes from {base['ttft_mean_s']:.3f} s to {most['ttft_mean_s']:.3f} s, "
            "which is where waiting for the server shows."
        )
    listing = "; ".join(
        f"{_workers(r['workers'])}: {r['req_per_s']:.2f} req/s (×{r['speedup']:.2f}), "
        f"{r['e2e_mean_s']:.3f} s mean latency"
        for r in table.iter_rows(named=True)
    )
    return {
        "rows": table.to_dicts(),
        "baseline_workers": base["workers"],
        "speedup": speedup,
        "peak_workers": peak["workers"],
        "latency_growth": most["latency_growth"],
        "verdict": verdict,
        "sentence": f"{text} ({listing}).",
    }


def _basic_or_all(summary: pl.DataFrame, *columns: str) -> tuple[pl.DataFrame, str]:
    """Measured basic-suite rows, or every measured row when the basic suite has none."""
    rows = _measured(suite_rows(summary, "basic"), *columns).filter(pl.col("n_ok") > 0)
    if not rows.is_empty():
        return rows, "basic suite"
    return _measured(summary, *columns).filter(pl.col("n_ok") > 0), "all experiments"


def _weighted_mean(column: str) -> pl.Expr:
    """Mean of ``column`` over rows, weighted by n_ok, ignoring rows where it is null."""
    weight = pl.col("n_ok").cast(pl.Float64).filter(pl.col(column).is_not_null()).sum()
    mean = (pl.col(column) * pl.col("n_ok")).sum() / weight
    return pl.when(weight > 0).then(mean).otherwise(None).alias(column)


def expected_vs_actual_tps(summary: pl.DataFrame, expected: tuple[float, float] = (10, 20)) -> dict:
    """Mean per-request decode tok/s over the basic suite (weighted by n_ok) vs a range.

    Keys: actual_tps, output_tokens_mean, n, expected, position ("below",
    "within", "above"), ratio (actual over the nearest end of the range; 1
    within it), source, sentence.
    """
    low, high = expected
    rows, source = _basic_or_all(_with_columns(summary, "output_tokens_mean"), "tps_mean", "n_ok")
    if rows.is_empty():
        return {
            "actual_tps": None,
            "output_tokens_mean": None,
            "n": 0,
            "expected": (low, high),
            "position": None,
            "ratio": None,
            "source": source,
            "sentence": "No successful request: no tokens/s to compare.",
        }
    means = rows.select(
        _weighted_mean("tps_mean"),
        _weighted_mean("output_tokens_mean"),
        pl.col("n_ok").sum().alias("n"),
        pl.col("tps_mean").min().alias("tps_min"),
        pl.col("tps_mean").max().alias("tps_max"),
    ).row(0, named=True)
    actual, output, n = means["tps_mean"], means["output_tokens_mean"], int(means["n"])
    if actual < low:
        position, ratio = "below", actual / low
        where = f"below the expected {low:g}–{high:g} tok/s ({ratio:.2f}× the low end)"
    elif actual > high:
        position, ratio = "above", actual / high
        where = f"above the expected {low:g}–{high:g} tok/s ({ratio:.1f}× the high end)"
    else:
        position, ratio = "within", 1.0
        where = f"within the expected {low:g}–{high:g} tok/s"
    output_words = f" of {output:.0f} output tokens on average" if output is not None else ""
    spread = ""
    if rows.height > 1:
        spread = f"; per experiment {means['tps_min']:.1f}–{means['tps_max']:.1f} tok/s"
    sentence = (
        f"Measured decode speed is {actual:.1f} tok/s (mean over {n} requests{output_words}, "
        f"{source}{spread}), {where}."
    )
    return {
        "actual_tps": actual,
        "output_tokens_mean": output,
        "n": n,
        "expected": (low, high),
        "position": position,
        "ratio": ratio,
        "source": source,
        "sentence": sentence,
    }


def latency_breakdown(summary: pl.DataFrame) -> dict:
    """Where the mean latency goes, over the basic suite (weighted by n_ok).

    TTFT share = mean TTFT / mean latency; decode share = 100 − TTFT share. Where
    the engine reports its own timings, also queue / load / prefill / decode /
    other, other = e2e − (queue + load + prefill + decode) clipped at 0; when
    the phases add up to more than e2e, shares are of their sum so they still
    add to 100. Keys: ttft_percent, decode_percent, e2e_mean_s, ttft_mean_s, n,
    seconds (phase → s), shares (phase → %), source, sentence.
    """
    part_columns = [f"{part}_mean_s" for part in BREAKDOWN_PARTS]
    frame = _with_columns(summary, "ttft_mean_s", *part_columns)
    rows, source = _basic_or_all(frame, "e2e_mean_s", "n_ok")
    if rows.is_empty():
        return {
            "ttft_percent": None,
            "decode_percent": None,
            "shares": {},
            "seconds": {},
            "sentence": "No successful request: no latency to break down.",
        }
    means = rows.select(
        _weighted_mean("e2e_mean_s"),
        _weighted_mean("ttft_mean_s"),
        *[_weighted_mean(column) for column in part_columns],
        pl.col("n_ok").sum().alias("n"),
    ).row(0, named=True)
    e2e, ttft, n = means["e2e_mean_s"], means["ttft_mean_s"], int(means["n"])
    ttft_percent = 100 * ttft / e2e if ttft is not None and e2e > 0 else None
    decode_percent = 100 - ttft_percent if ttft_percent is not None else None
    seconds = {
        part: means[f"{part}_mean_s"]
        for part in BREAKDOWN_PARTS
        if means[f"{part}_mean_s"] is not None
    }
    shares: dict[str, float] = {}
    overshoot = None
    if seconds:
        known = sum(seconds.values())
        seconds["other"] = max(0.0, e2e - known)
        total = max(e2e, known)
        shares = {part: 100 * value / total for part, value in seconds.items()}
        if known > e2e:
            overshoot = 100 * known / e2e
    if ttft_percent is None:
        sentence = f"Mean latency is {e2e:.3f} s ({source}, n={n}); TTFT was not recorded."
    else:
        sentence = (
            f"Time to first token (queue, load and prefill) is {ttft_percent:.1f}% of the mean "
            f"{e2e:.3f} s latency and decode (after the first token) {decode_percent:.1f}% "
            f"({source}, n={n})."
        )
    if shares:
        sentence += (
            " By the engine's own timings: "
            + ", ".join(f"{part} {share:.1f}%" for part, share in shares.items())
            + " (other = client, HTTP and sampling overhead)."
        )
        if overshoot is not None:
            sentence += (
                f" The engine's phases add up to {overshoot:.0f}% of the client's latency, "
                "so the shares are of their sum."
            )
    if ttft_percent is not None:
        if ttft_percent < 50:
            sentence += " Decode dominates: output length, not prompt length, drives latency."
        else:
            sentence += " Time to first token dominates: prompt length and waiting drive latency."
    return {
        "ttft_percent": ttft_percent,
        "decode_percent": decode_percent,
        "e2e_mean_s": e2e,
        "ttft_mean_s": ttft,
        "n": n,
        "seconds": seconds,
        "shares": shares,
        "source": source,
        "sentence": sentence,
    }
