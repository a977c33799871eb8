"""Per-experiment statistics with Polars (lazy).

Definitions (all times in seconds):
  e2e_s   send → final chunk, client side
  ttft_s  send → first token, client side
  itl_s   gaps between consecutive tokens after the first
  tpot_s  (e2e_s − ttft_s) / (output_tokens − 1), per request
  tps     per-request decode tokens/s = 1 / tpot_s
  output_tps, req_per_s and the summary's other metrics: their formulas, units and
          directions are the catalogue's (``perflab.analyse.metrics``)
  prep_s  the client's own work before the request left (HTTP engines); not
          part of ttft_s or e2e_s, which start when the request left
Open-loop load (the rate suite) adds, per request:
  send_lag_s    scheduled send time → when the request left (the client's lag)
  e2e_sched_s   scheduled send time → final chunk (= send_lag_s + e2e_s)
  ttft_sched_s  scheduled send time → first token (= send_lag_s + ttft_s)
A request the client dropped (the bound on requests in flight was reached) was never
sent: it is counted in n_dropped, not in n_requests or n_errors.
Warm-up requests and failed requests never enter latency statistics; failed
requests are counted in n_errors and error_rate; ok requests cut at
max_tokens (finish_reason "length") in n_truncated.

Within-experiment intervals: consecutive requests share the server's state
(caches, heat, a neighbour's load), so they are not independent. A ``_ci95``
is therefore a batch-means interval: the ok requests in send order are cut
into ``batches(n)`` consecutive batches, and the half-width is Student t at
(batches − 1) degrees of freedom times the sd of the batch means over
√batches. A percentile is given only when the experiment has enough requests
for it (n · (1 − p) ≥ 1: no p99 below 100 requests), with a distribution-free
95 % CI from the order statistics (``_low``/``_high``) where n allows.
"""

from __future__ import annotations

import polars as pl

# RECORD_SCHEMA and scan_experiment are imported from here too (table_files, the tests)
from perflab.analyse.experiment_frame import (  # noqa: F401
    EXPERIMENT_COLUMNS,
    RECORD_SCHEMA,
    scan_experiment,
)
from perflab.analyse.quantiles import binomial_quantile, t_quantile

PERCENTILES = (50, 90, 95, 99)
MIN_BATCH = 3  # requests per batch, at least, once there are 2 batches of them
MAX_BATCHES = 10


def is_measured() -> pl.Expr:
    """Sent after the warm-up: a request the client dropped was never sent."""
    return ~pl.col("is_warmup") & (pl.col("status") != "dropped")


def is_answered() -> pl.Expr:
    """Measured and ended ok, empty or not."""
    return is_measured() & (pl.col("status") == "ok")


def is_empty() -> pl.Expr:
    """Ended ok with no token at all: counted (``n_empty``), never a fast success."""
    return is_answered() & (pl.col("output_tokens").fill_null(0) == 0)


def is_ok() -> pl.Expr:
    """Measured, ended ok, and generated at least one token: what every statistic uses."""
    return is_answered() & (pl.col("output_tokens").fill_null(0) > 0)


def is_censored() -> pl.Expr:
    """Measured and cut at its timeout: its latency is at least the time it ran."""
    return is_measured() & (pl.col("status") == "timeout")


def ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """numerator / denominator, null unless the denominator is above 0: no infinite rate
    (a prompt cache can make a prefill time 0)."""
    return pl.when(denominator > 0).then(numerator / denominator).otherwise(None)


def ok(column: str) -> pl.Expr:
    return pl.col(column).filter(is_ok())


def batches(n: int) -> int:
    """Batches for ``n`` requests: as many as 10 of at least 3, else one per request."""
    return min(MAX_BATCHES, n // MIN_BATCH) if n >= 2 * MIN_BATCH else n


def distribution(column: str) -> list[pl.Expr]:
    stem = column.removesuffix("_s")
    n = ok(column).count()
    exprs = [ok(column).mean().alias(f"{stem}_mean_s")]
    exprs += [
        pl.when(n * (1 - p / 100) >= 1)
        .then(ok(column).quantile(p / 100, interpolation="linear"))
        .alias(f"{stem}_p{p}_s")
        for p in PERCENTILES
    ]
    return exprs


def _t_975(df: pl.Expr) -> pl.Expr:
    return df.map_elements(
        lambda d: t_quantile(0.975, d) if d >= 1 else None, return_dtype=pl.Float64
    )


def batch_means_ci(requests: pl.LazyFrame, column: str, name: str) -> pl.LazyFrame:
    """Per experiment, the batch-means 95 % CI half-width of ``column`` as ``name``."""
    rows = requests.filter(is_ok() & pl.col(column).is_not_null()).select(
        "experiment_id", "request_index", column
    )
    ranked = rows.with_columns(
        pl.len().over("experiment_id").alias("_n"),
        (pl.col("request_index").rank("ordinal").over("experiment_id") - 1).alias("_i"),
    ).with_columns(
        pl.col("_n").map_elements(batches, return_dtype=pl.Int64).alias("_b"),
    )
    means = ranked.group_by("experiment_id", (pl.col("_i") * pl.col("_b") // pl.col("_n"))).agg(
        pl.col(column).mean().alias("_mean")
    )
    return means.group_by("experiment_id").agg(
        (_t_975(pl.len() - 1).first() * pl.col("_mean").std() / pl.len().sqrt()).alias(name)
    )


def percentile_ci(requests: pl.LazyFrame, column: str, p: int) -> pl.LazyFrame:
    """Per experiment, the distribution-free 95 % CI of the ``p``-th percentile of ``column``:
    the order statistics at the binomial 2.5 % and 97.5 % ranks (null where they fall outside)."""
    stem = column.removesuffix("_s")
    rows = requests.filter(is_ok() & pl.col(column).is_not_null())
    per = rows.group_by("experiment_id").agg(pl.col(column).sort().alias("_sorted"))

    def bounds(values: list[float]) -> dict:
        n, q = len(values), p / 100
        low = binomial_quantile(0.025, n, q)  # rank (1-based) of the lower bound
        high = binomial_quantile(0.975, n, q) + 1
        inside = n > 0 and low >= 1 and high <= n
        return {
            "low": values[low - 1] if inside else None,
            "high": values[high - 1] if inside else None,
        }

    kind = pl.Struct({"low": pl.Float64, "high": pl.Float64})
    return per.select(
        "experiment_id",
        pl.col("_sorted").map_elements(bounds, return_dtype=kind).alias("_ci"),
    ).select(
        "experiment_id",
        pl.col("_ci").struct.field("low").alias(f"{stem}_p{p}_low_s"),
        pl.col("_ci").struct.field("high").alias(f"{stem}_p{p}_high_s"),
    )


def send_lag_stats() -> list[pl.Expr]:
    lag = pl.col("send_lag_s").filter(is_measured())
    return [
        lag.quantile(q / 100, interpolation="linear").alias(f"send_lag_p{q}_s") for q in (50, 99)
    ] + [lag.max().alias("send_lag_max_s")]


def censored_bounds(column: str) -> list[pl.Expr]:
    """Mean and p99 over the ok requests and the timed-out ones at the time they ran:
    lower bounds of the true figures (a timeout would have taken longer), never a
    figure that dropped the slowest requests. Equal to the plain figures without
    timeouts."""
    stem = column.removesuffix("_s")
    values = pl.col(column).filter(is_ok() | is_censored())
    return [
        values.mean().alias(f"{stem}_mean_censored_s"),
        pl.when(values.count() >= 100)  # no p99 below 100 requests
        .then(values.quantile(0.99, interpolation="linear"))
        .alias(f"{stem}_p99_censored_s"),
    ]


def tpot() -> pl.Expr:
    return (pl.col("e2e_s") - pl.col("ttft_s")) / (pl.col("output_tokens") - 1)


def prefill_tps() -> pl.Expr:
    """Prompt tokens the engine evaluated (all of them when it does not say) over its own
    prefill time; null without a prefill time."""
    evaluated = pl.col("server_prefill_tokens").fill_null(pl.col("prompt_tokens"))
    return ratio(evaluated.cast(pl.Float64), pl.col("prefill_s"))


def counts() -> list[pl.Expr]:
    return [
        is_measured().sum().alias("n_requests"),
        is_ok().sum().alias("n_ok"),
        (is_measured() & (pl.col("status") != "ok")).sum().alias("n_errors"),
        is_empty().sum().alias("n_empty"),
        is_censored().sum().alias("n_censored"),
        pl.col("is_warmup").sum().alias("n_warmup"),
        (pl.col("status") == "dropped").sum().alias("n_dropped"),
        (is_measured() & (pl.col("held_s") > 0)).sum().alias("n_delayed"),
        (is_ok() & (pl.col("finish_reason") == "length")).sum().alias("n_truncated"),
    ]


def token_stats() -> list[pl.Expr]:
    itl = pl.col("itl_s").filter(is_ok()).explode()
    return [
        itl.mean().alias("itl_mean_s"),
        pl.when(itl.mean() > 0).then(1 / itl.mean()).alias("gap_tps"),  # no gaps: none
        itl.quantile(0.95, interpolation="linear").alias("itl_p95_s"),
        tpot().filter(is_ok() & (pl.col("output_tokens") > 1)).mean().alias("tpot_mean_s"),
        ok("tps").mean().alias("tps_mean"),
        ok("output_tokens").mean().alias("output_tokens_mean"),
        ok("reasoning_tokens").mean().alias("reasoning_tokens_mean"),
        ok("output_tokens").sum().alias("output_tokens_total"),
        ok("prompt_tokens").mean().alias("prompt_tokens_mean"),
        prefill_tps().filter(is_ok()).mean().alias("prefill_tps_mean"),
        # llama-server: of the prompt, the tokens it reused from its cache (cache_n)
        ok("server_cached_tokens").median().alias("cached_tokens_median"),
    ]


def server_stats() -> list[pl.Expr]:
    return [
        ok(name).mean().alias(f"{name.removesuffix('_s')}_mean_s")
        for name in (
            "queue_s",
            "load_s",
            "prefill_s",
            "decode_s",
            "server_total_s",
            "unaccounted_s",
            "prep_s",
        )
    ] + [
        # the cold request: model load paid by the first (warm-up) request, never in warm stats
        pl.col("load_s").filter(pl.col("is_warmup")).max().alias("cold_load_s"),
        cold_ttft(),
    ]


def cold_ttft() -> pl.Expr:
    """The client's view of the cold request: the TTFT of the warm-up that paid the
    largest model load."""
    loaded = pl.col("is_warmup") & pl.col("load_s").is_not_null()
    by_load = pl.col("load_s").filter(loaded)
    return pl.col("ttft_s").filter(loaded).sort_by(by_load).last().alias("cold_ttft_s")


def experiment_keys() -> list[str]:
    return ["experiment_id", *EXPERIMENT_COLUMNS]


def summarize(requests: pl.LazyFrame) -> pl.LazyFrame:
    """One row per experiment."""
    return (
        requests.group_by(experiment_keys())
        .agg(
            *counts(),
            *distribution("e2e_s"),
            *distribution("ttft_s"),
            *distribution("e2e_sched_s"),
            *distribution("ttft_sched_s"),
            *send_lag_stats(),
            *censored_bounds("e2e_s"),
            ok("answer_ttft_s").mean().alias("answer_ttft_mean_s"),
            *token_stats(),
            *server_stats(),
            pl.col("error_class")
            .filter(is_measured())
            .drop_nulls()
            .unique()
            .sort()
            .str.join(",")
            .alias("error_classes"),
        )
        .with_columns(
            ratio(pl.col("n_errors"), pl.col("n_requests")).alias("error_rate"),
            ratio(pl.col("n_ok"), pl.col("measured_wall_s")).alias("req_per_s"),
            ratio(pl.col("output_tokens_total"), pl.col("measured_wall_s")).alias("output_tps"),
            ratio(pl.col("ttft_mean_s"), pl.col("e2e_mean_s")).alias("ttft_share"),
            trials_of_condition(),
        )
        .join(batch_means_ci(requests, "e2e_s", "e2e_ci95_s"), on="experiment_id", how="left")
        .join(batch_means_ci(requests, "ttft_s", "ttft_ci95_s"), on="experiment_id", how="left")
        .join(batch_means_ci(requests, "tps", "tps_ci95"), on="experiment_id", how="left")
        .join(percentile_ci(requests, "e2e_s", 50), on="experiment_id", how="left")
        .join(percentile_ci(requests, "e2e_s", 95), on="experiment_id", how="left")
        .sort("experiment_id")
    )


def trials_of_condition() -> pl.Expr:
    """``repeats``: the trials of each condition among the rows at hand. Not stored per
    experiment (adding trials later must not rerun, or contradict, the ones already
    measured), so the run's gathering computes it again over every experiment."""
    return pl.col("trial").n_unique().over("condition_id").cast(pl.Int64).alias("repeats")
