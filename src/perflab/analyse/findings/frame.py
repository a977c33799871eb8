"""The summary as conditions: trials grouped, figures with their spread.

A summary row is one experiment, i.e. one trial of one condition. Columns
that an older summary lacks take their defaults (one trial of its own
condition, prompt cache busted). Comparisons between conditions go through
``perflab.analyse.verdict`` on the trial values each condition keeps
(``per_trial``): a trial is a block, so conditions are compared through
within-trial ratios. ``Spread`` describes one figure: with two or more trials
its interval is the 95 % CI of the trial means (Student t at the exact
quantile); with one trial it is the request-level CI of that single pass.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import stats

from perflab.analyse import verdict
from perflab.analyse.metrics import float_columns, metric
from perflab.analyse.verdict import Verdict

SAME_OUTPUT_LENGTH = 0.05  # mean output lengths within 5 % of each other count as equal

# The catalogue's metrics, and the other figures of an experiment the findings read.
FLOAT_COLUMNS = (
    *float_columns(),
    "e2e_p95_s",
    "temperature",
    "interference_cpu_pct_mean",
    "interference_cpu_pct_max",
    "interference_threshold_pct",
    "interference_above_share",
    "measured_wall_s",
    "duration_s",
    "server_requests_processing_max",
    "server_requests_deferred_max",
    "server_kv_used_max",
    "cached_tokens_median",
)
# The catalogue's metrics each condition keeps per trial (``TrialFigures``), by tag.
TRIAL_FIGURES = ("e2e", "ttft", "tps", "req_per_s")
INT_COLUMNS = (
    "n_ok",
    "n_errors",
    "n_requests",
    "n_warmup",
    "n_truncated",
    "n_censored",
    "n_empty",
    "workers",
)
STRING_COLUMNS = ("suites", "prompt_name", "error_classes", "engine", "model", "target")


def with_defaults(summary: pl.DataFrame) -> pl.DataFrame:
    """``summary`` with every column the findings read, missing ones at their default."""
    frame = summary
    if "experiment_id" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias("experiment_id"))
    defaults = {
        "condition_id": pl.col("experiment_id"),
        "trial": pl.lit(1, dtype=pl.Int64),
        "repeats": pl.lit(1, dtype=pl.Int64),
        "prompt_cache": pl.lit("bust", dtype=pl.String),
    }
    frame = frame.with_columns(
        expr.alias(name) for name, expr in defaults.items() if name not in frame.columns
    )
    missing = [
        pl.lit(None, dtype=dtype).alias(name)
        for names, dtype in (
            (FLOAT_COLUMNS, pl.Float64),
            (INT_COLUMNS, pl.Int64),
            (STRING_COLUMNS, pl.String),
        )
        for name in names
        if name not in frame.columns
    ]
    return frame.with_columns(missing).with_columns(
        pl.col(name).cast(pl.Float64).fill_nan(None) for name in FLOAT_COLUMNS
    )


def suite_rows(summary: pl.DataFrame, suite: str) -> pl.DataFrame:
    """The experiments that belong to ``suite`` (``suites`` is comma-joined)."""
    if "suites" not in summary.columns:
        return summary.clear()
    return summary.filter(
        pl.col("suites").fill_null("").str.split(",").list.contains(pl.lit(suite))
    )


@dataclass(frozen=True)
class Spread:
    """One figure of a condition over its trials.

    ``mean`` is the mean of the trial means; ``ci95`` the half-width of its
    95 % CI: between trials (Student t over the trial means) when
    ``between_trials``, else the request-level CI of the one pass (null with
    one request). ``low`` and ``high`` are the smallest and largest trial mean.
    """

    mean: float | None
    ci95: float | None
    low: float | None
    high: float | None
    trials: int
    between_trials: bool

    @property
    def interval(self) -> tuple[float, float] | None:
        if self.mean is None:
            return None
        half = self.ci95 or 0.0
        return (self.mean - half, self.mean + half)


def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def spread(trial_means, request_ci: float | None = None) -> Spread:
    """The spread of one figure from its trial means (and the one pass's request CI)."""
    values = _finite(trial_means)
    if not values:
        return Spread(None, None, None, None, 0, False)
    mean = sum(values) / len(values)
    if len(values) >= 2:
        ci = (
            verdict.t_quantile(0.975, len(values) - 1)
            * float(np.std(values, ddof=1))
            / math.sqrt(len(values))
        )
        return Spread(mean, ci, min(values), max(values), len(values), True)
    ci = request_ci if request_ci is not None and math.isfinite(request_ci) else None
    return Spread(mean, ci, mean, mean, 1, False)


def relative_range(values) -> float | None:
    """(largest − smallest) / largest of the finite ``values``; None with fewer than 2."""
    values = _finite(values)
    if len(values) < 2:
        return None
    high = max(abs(v) for v in values)
    return (max(values) - min(values)) / high if high > 0 else 0.0


def same(values, tolerance: float = SAME_OUTPUT_LENGTH) -> bool:
    """Whether the finite ``values`` lie within ``tolerance`` (relative) of each other."""
    difference = relative_range(values)
    return difference is None or difference <= tolerance


@dataclass(frozen=True)
class LinearFit:
    """Least-squares line ``y = slope·x + intercept`` over n observations, each trial a block.

    With trials, each has its own intercept (a block: drift between trials moves
    every point of a trial alike); ``intercept`` is their mean. ``slope_low`` /
    ``slope_high``: its 95 % CI (Student t, ``df`` = n − trials − 1);
    ``p_slope``: two-sided test of slope 0; ``p_curvature``: the F-test of an
    added x² term (``curvature`` its coefficient), with one more degree of
    freedom used. R² is of the line with its blocks.
    """

    slope: float | None
    intercept: float | None
    r2: float | None
    n: int
    slope_low: float | None = None
    slope_high: float | None = None
    p_slope: float | None = None
    df: int | None = None
    curvature: float | None = None
    p_curvature: float | None = None
    curvature_se: float | None = None  # the x² coefficient's standard error, df − 1


def _design(x: np.ndarray, blocks: np.ndarray, square: bool) -> np.ndarray:
    columns = [x, x**2] if square else [x]
    levels = sorted(set(blocks.tolist()))
    columns += [(blocks == level).astype(float) for level in levels]
    return np.column_stack(columns)


def _least_squares(design: np.ndarray, y: np.ndarray):
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coefficients
    return coefficients, float(residual @ residual)


def linear_fit(x, y, blocks=None) -> LinearFit:
    """Pairs with a missing or non-finite value are dropped; < 2 points or no x spread: no line.
    ``blocks``: each observation's trial (all one block when None)."""
    x = np.asarray([np.nan if v is None else v for v in x], dtype=float)
    y = np.asarray([np.nan if v is None else v for v in y], dtype=float)
    groups = np.asarray([0] * len(x) if blocks is None else list(blocks))
    keep = np.isfinite(x) & np.isfinite(y)
    x, y, groups = x[keep], y[keep], groups[keep]
    n = int(len(x))
    if n < 2 or np.ptp(x) == 0:
        return LinearFit(None, None, None, n)
    design = _design(x, groups, square=False)
    coefficients, rss = _least_squares(design, y)
    slope, intercept = float(coefficients[0]), float(np.mean(coefficients[1:]))
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - rss / total if total > 0 else 1.0
    df = n - design.shape[1]
    if df < 1:
        return LinearFit(slope, intercept, r2, n)
    covariance = np.linalg.pinv(design.T @ design) * rss / df
    se = math.sqrt(max(float(covariance[0, 0]), 0.0))
    half = verdict.t_quantile(0.975, df) * se
    p_slope = 2 * float(stats.t.sf(abs(slope) / se, df)) if se > 0 else float(slope == 0)
    curvature = p_curvature = curvature_se = None
    if df >= 2 and len(set(x.tolist())) >= 3:
        square_design = _design(x, groups, square=True)
        square, rss_square = _least_squares(square_design, y)
        curvature = float(square[1])
        spread = np.linalg.pinv(square_design.T @ square_design)[1, 1] * rss_square / (df - 1)
        curvature_se = math.sqrt(max(float(spread), 0.0))
        if rss_square > 0:
            f_value = (rss - rss_square) / (rss_square / (df - 1))
            p_curvature = float(stats.f.sf(f_value, 1, df - 1))
        else:
            p_curvature = 0.0 if rss > 0 else 1.0
    return LinearFit(
        slope,
        intercept,
        r2,
        n,
        slope - half,
        slope + half,
        p_slope,
        df,
        curvature,
        p_curvature,
        curvature_se,
    )


@dataclass(frozen=True)
class TrialFigures:
    """One trial of a condition: its experiment's means (None without an ok request)."""

    trial: int
    experiment_id: str
    e2e: float | None
    ttft: float | None
    tps: float | None
    req_per_s: float | None


@dataclass(frozen=True)
class Condition:
    """One condition (a sweep point) over its trials.

    ``n_*`` are summed over trials. ``disturbed`` lists the trials (experiment
    ids) whose interference was above the threshold; ``settled`` is true when
    the condition has two or more trials, so its spread can include them.
    """

    condition_id: str
    experiment_ids: tuple[str, ...]
    prompt_name: str | None
    temperature: float | None
    workers: int | None
    prompt_cache: str
    trials: int
    n_requests: int
    n_ok: int
    n_errors: int
    n_truncated: int | None
    error_classes: str | None
    e2e: Spread
    ttft: Spread
    tps: Spread
    req_per_s: Spread
    output_tokens_mean: float | None
    prompt_tokens_mean: float | None
    e2e_p95_s: float | None
    queue_mean_s: float | None
    unaccounted_mean_s: float | None
    load_mean_s: float | None
    prefill_mean_s: float | None
    decode_mean_s: float | None
    prep_mean_s: float | None  # the client's own preparation before sending, not in e2e
    disturbed: tuple[str, ...]
    per_trial: tuple[TrialFigures, ...] = ()
    # the most requests a launched llama-server ran at once / kept waiting, and the most
    # of its KV cache in use, by its own /metrics and /slots (None: not measured)
    server_running_max: float | None = None
    server_deferred_max: float | None = None
    server_kv_used_max: float | None = None
    cached_tokens_median: float | None = None  # prompt tokens the server reused (cache_n)
    n_censored: int = 0  # of n_errors: cut at their timeout, so slower than they ran
    n_empty: int = 0  # answered ok without a token: in no statistic, not in n_ok

    @property
    def error_rate(self) -> float | None:
        return self.n_errors / self.n_requests if self.n_requests else None

    @property
    def all_failed(self) -> bool:
        return self.n_requests > 0 and self.n_ok == 0

    @property
    def settled(self) -> bool:
        return self.trials >= 2


def _mean(values) -> float | None:
    values = _finite(values)
    return sum(values) / len(values) if values else None


def _weighted(rows: list[dict], column: str) -> float | None:
    """Mean of ``column`` over the trials, weighted by their ok requests."""
    pairs = [(r[column], r["n_ok"] or 0) for r in rows if r[column] is not None]
    weight = sum(n for _, n in pairs)
    return sum(v * n for v, n in pairs) / weight if weight else _mean(v for v, _ in pairs)


def _max(rows: list[dict], column: str) -> float | None:
    values = _finite(r.get(column) for r in rows)
    return max(values) if values else None


def _sum(rows: list[dict], column: str) -> int | None:
    values = [r[column] for r in rows if r[column] is not None]
    return int(sum(values)) if values else None


def _condition(rows: list[dict], disturbed: set[str]) -> Condition:
    first = rows[0]
    ok_rows = [r for r in rows if (r["n_ok"] or 0) > 0]

    def figure(tag: str) -> Spread:
        """The catalogue's metric ``tag`` over the trials; one trial's own CI when alone."""
        defined = metric(tag)
        alone = defined.ci_column and len(ok_rows) == 1
        ci = ok_rows[0][defined.ci_column] if alone else None
        return spread([r[defined.column] for r in ok_rows], ci)

    classes = sorted({c for r in rows for c in (r["error_classes"] or "").split(",") if c})
    return Condition(
        condition_id=first["condition_id"],
        experiment_ids=tuple(r["experiment_id"] for r in rows),
        prompt_name=first["prompt_name"],
        temperature=first["temperature"],
        workers=first["workers"],
        prompt_cache=first["prompt_cache"] or "bust",
        trials=len(rows),
        n_requests=_sum(rows, "n_requests") or 0,
        n_ok=_sum(rows, "n_ok") or 0,
        n_errors=_sum(rows, "n_errors") or 0,
        n_censored=_sum(rows, "n_censored") or 0,
        n_empty=_sum(rows, "n_empty") or 0,
        n_truncated=_sum(rows, "n_truncated"),
        error_classes=",".join(classes) or None,
        e2e=figure("e2e"),
        ttft=figure("ttft"),
        tps=figure("tps"),
        req_per_s=figure("req_per_s"),
        output_tokens_mean=_weighted(ok_rows, "output_tokens_mean"),
        prompt_tokens_mean=_weighted(ok_rows, "prompt_tokens_mean"),
        e2e_p95_s=_mean(r["e2e_p95_s"] for r in ok_rows),
        queue_mean_s=_weighted(ok_rows, "queue_mean_s"),
        unaccounted_mean_s=_weighted(ok_rows, "unaccounted_mean_s"),
        load_mean_s=_weighted(ok_rows, "load_mean_s"),
        prefill_mean_s=_weighted(ok_rows, "prefill_mean_s"),
        decode_mean_s=_weighted(ok_rows, "decode_mean_s"),
        prep_mean_s=_weighted(ok_rows, "prep_mean_s"),
        disturbed=tuple(r["experiment_id"] for r in rows if r["experiment_id"] in disturbed),
        per_trial=tuple(_trial_figures(r) for r in rows),
        server_running_max=_max(rows, "server_requests_processing_max"),
        server_deferred_max=_max(rows, "server_requests_deferred_max"),
        server_kv_used_max=_max(rows, "server_kv_used_max"),
        cached_tokens_median=_mean(r["cached_tokens_median"] for r in ok_rows),
    )


def _trial_figures(row: dict) -> TrialFigures:
    ok = (row["n_ok"] or 0) > 0
    return TrialFigures(
        trial=row["trial"],
        experiment_id=row["experiment_id"],
        **{tag: row[metric(tag).column] if ok else None for tag in TRIAL_FIGURES},
    )


def conditions(rows: pl.DataFrame, disturbed: tuple[str, ...] = ()) -> list[Condition]:
    """One ``Condition`` per ``condition_id`` of ``rows`` (a ``with_defaults`` frame)."""
    if rows.is_empty():
        return []
    groups: dict[str, list[dict]] = {}
    for row in rows.sort("condition_id", "trial").to_dicts():
        groups.setdefault(row["condition_id"], []).append(row)
    return [_condition(group, set(disturbed)) for group in groups.values()]


def measured(items: list[Condition]) -> list[Condition]:
    """The conditions with at least one ok request."""
    return [c for c in items if c.n_ok > 0 and c.e2e.mean is not None]


def unsettled(items: list[Condition]) -> tuple[str, ...]:
    """The disturbed trials of ``items`` that their other trials do not settle
    (the one rule, ``verdict.unsettled``)."""
    return verdict.unsettled(
        (c.condition_id, [(e, e in c.disturbed) for e in c.experiment_ids]) for c in items
    )


def compare(
    a: Condition, b: Condition, figure: str, unsettled_ids: Collection[str] = ()
) -> Verdict:
    """``figure`` of ``b`` against ``a``, paired trial by trial (a trial is a block);
    inconclusive when a disturbed trial is left unsettled (``unsettled_ids``, from
    ``unsettled``: it settles nothing)."""
    by_trial = {t.trial: getattr(t, figure) for t in a.per_trial}
    test = verdict.paired(
        (by_trial[t.trial], getattr(t, figure)) for t in b.per_trial if t.trial in by_trial
    )
    return verdict.disturbed(test) if unsettled_ids else test


def one_pass(items: list[Condition]) -> bool:
    return any(c.trials < 2 for c in items)
