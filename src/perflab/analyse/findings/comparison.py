"""Targets side by side: each metric of each target against the baseline target.

Every target ran the same sweep points, trial by trial and point by point in
alternation, so the experiment of target T at point p in trial k has a twin
of the baseline measured next to it in time. A ratio is therefore taken per
twin pair (T/baseline) and the pairs are pooled on a log scale: the ratio is
their geometric mean, its 95 % CI the Student-t interval of the mean log
ratio. Pairing cancels slow drift of the machine, which lands on both twins.

Verdicts, as every comparison of the findings: ``faster`` or ``slower`` only
when the CI of the ratio excludes 1 and the difference is at least
``PRACTICAL_DIFFERENCE``; otherwise ``no_difference``; ``inconclusive`` with
one pass (trials cannot show drift), with fewer than two pairs, or when a
disturbed experiment is not settled by its other trials.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np
import polars as pl

from perflab.analyse.findings.frame import PRACTICAL_DIFFERENCE, Spread, spread, t_quantile
from perflab.config.targets import SEPARATOR


class ComparisonVerdict(str, Enum):
    FASTER = "faster"
    SLOWER = "slower"
    NO_DIFFERENCE = "no_difference"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Metric:
    key: str
    column: str | None  # summary column; None: computed (prefill_tps)
    unit: str
    higher_is_better: bool


METRICS = (
    Metric("tps", "tps_mean", "tok/s", True),
    Metric("prefill_tps", None, "tok/s", True),
    Metric("ttft", "ttft_mean_s", "s", False),
    Metric("e2e", "e2e_mean_s", "s", False),
    Metric("req_per_s", "req_per_s", "req/s", True),
)


@dataclass(frozen=True)
class Ratio:
    """target / baseline: geometric mean of the twin pairs' ratios, with its 95 % CI."""

    value: float | None
    low: float | None
    high: float | None
    n_pairs: int


@dataclass(frozen=True)
class TargetMetric:
    """One target's figure for one metric, and how it stands against the baseline.

    ``value``: over trials (each trial: the mean over the shared points).
    ``factor``: how many times faster (verdict faster) or slower (slower) the
    target is, from the ratio and the metric's direction; ≥ 1, or None.
    """

    target: str
    value: Spread
    ratio: Ratio | None  # None for the baseline itself
    verdict: ComparisonVerdict | None
    factor: float | None
    factor_low: float | None
    factor_high: float | None


@dataclass(frozen=True)
class PointComparison:
    point_id: str
    targets: tuple[TargetMetric, ...]


@dataclass(frozen=True)
class MetricComparison:
    metric: str
    unit: str
    higher_is_better: bool
    targets: tuple[TargetMetric, ...]
    points: tuple[PointComparison, ...]


@dataclass(frozen=True)
class TargetInfo:
    name: str
    engine: str | None
    model: str | None
    model_size_gb: float | None  # the model file on disk, as the engine reports it
    rss_gb: Spread  # the server's peak RSS per experiment, over its experiments
    n_experiments: int
    output_tokens_mean: float | None


@dataclass(frozen=True)
class ComparisonFinding:
    baseline: str
    targets: tuple[TargetInfo, ...]
    points: tuple[str, ...]  # the sweep points every target measured
    metrics: tuple[MetricComparison, ...]
    trials: int  # the fewest trials of any shared point
    one_pass: bool
    disturbed: tuple[str, ...]  # disturbed experiments their other trials do not settle

    def metric(self, key: str) -> MetricComparison | None:
        return next((m for m in self.metrics if m.metric == key), None)


def _values(frame: pl.DataFrame, metric: Metric) -> pl.Series:
    if metric.column is not None:
        return frame[metric.column]
    prefill = frame["prefill_mean_s"]
    # a prompt served from the cache has a prefill time of 0: no rate, not an infinite one
    rate = pl.when(prefill > 0).then(frame["prompt_tokens_mean"] / prefill)
    return frame.select(rate.fill_nan(None).alias("prefill_tps"))["prefill_tps"]


def table_values(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per experiment with an ok request: its ids, trial and every metric."""
    rows = frame.filter(pl.col("n_ok") > 0)
    return rows.select(
        "target",
        "condition_id",
        "experiment_id",
        "trial",
        "interference_cpu_pct_mean",
        *[_values(rows, m).alias(m.key) for m in METRICS],
    )


def table(frame: pl.DataFrame) -> pl.DataFrame:
    """``table_values`` of the targets' experiments, with each one's sweep point."""
    rows = table_values(frame.filter(pl.col("target").is_not_null()))
    prefix = pl.col("target") + pl.lit(SEPARATOR)
    return rows.with_columns(pl.col("condition_id").str.strip_prefix(prefix).alias("point"))


def ratio(pairs: list[tuple[float, float]]) -> Ratio:
    """Geometric mean of target/baseline over the pairs, with a Student-t 95 % CI."""
    logs = [math.log(t / b) for t, b in pairs if t and b and t > 0 and b > 0]
    if not logs:
        return Ratio(None, None, None, 0)
    mean = sum(logs) / len(logs)
    if len(logs) < 2:
        return Ratio(math.exp(mean), None, None, 1)
    half = t_quantile(len(logs)) * float(np.std(logs, ddof=1)) / math.sqrt(len(logs))
    return Ratio(math.exp(mean), math.exp(mean - half), math.exp(mean + half), len(logs))


def verdict(found: Ratio, higher_is_better: bool, conclusive: bool) -> ComparisonVerdict:
    if not conclusive or found.n_pairs < 2 or found.low is None:
        return ComparisonVerdict.INCONCLUSIVE
    beyond = found.low > 1 or found.high < 1
    if not beyond or abs(found.value - 1) < PRACTICAL_DIFFERENCE:
        return ComparisonVerdict.NO_DIFFERENCE
    better = (found.value > 1) == higher_is_better
    return ComparisonVerdict.FASTER if better else ComparisonVerdict.SLOWER


def _inverse(value: float | None) -> float | None:
    return None if value is None else 1 / value


def _factor(found: Ratio | None, higher_is_better: bool) -> tuple[float | None, ...]:
    """Times faster or slower (≥ 1 at the point estimate), with its interval in that sense."""
    if found is None or found.value is None:
        return (None, None, None)
    if higher_is_better:
        speed, low, high = found.value, found.low, found.high
    else:
        speed, low, high = 1 / found.value, _inverse(found.high), _inverse(found.low)
    if speed >= 1:
        return (speed, low, high)
    return (1 / speed, _inverse(high), _inverse(low))


def _trial_value(rows: pl.DataFrame, metric: Metric) -> Spread:
    per_trial = rows.group_by("trial").agg(pl.col(metric.key).mean()).sort("trial")
    return spread(per_trial[metric.key].to_list())


def _compare(
    rows: pl.DataFrame, baseline: str, names: list[str], metric: Metric, conclusive: bool
) -> tuple[TargetMetric, ...]:
    base = rows.filter(pl.col("target") == baseline).select("point", "trial", metric.key)
    found = []
    for name in names:
        mine = rows.filter(pl.col("target") == name)
        value = _trial_value(mine, metric)
        if name == baseline:
            found.append(TargetMetric(name, value, None, None, None, None, None))
            continue
        twins = mine.select("point", "trial", metric.key).join(
            base, on=["point", "trial"], suffix="_base"
        )
        pairs = [(t, b) for t, b in twins.select(metric.key, f"{metric.key}_base").rows()]
        pairs = [(t, b) for t, b in pairs if t is not None and b is not None]
        found_ratio = ratio(pairs)
        judged = verdict(found_ratio, metric.higher_is_better, conclusive)
        factor = _factor(found_ratio, metric.higher_is_better)
        found.append(TargetMetric(name, value, found_ratio, judged, *factor))
    return tuple(found)


def _info(frame: pl.DataFrame, name: str, resources_by_id: dict, sizes: dict) -> TargetInfo:
    rows = frame.filter(pl.col("target") == name)
    ids = rows["experiment_id"].to_list()
    rss = [(resources_by_id.get(i) or {}).get("server_rss_gb_max") for i in ids]
    first = rows.row(0, named=True) if rows.height else {}
    tokens = rows["output_tokens_mean"].drop_nulls()
    return TargetInfo(
        name=name,
        engine=first.get("engine"),
        model=first.get("model"),
        model_size_gb=sizes.get(name),
        rss_gb=spread(rss),
        n_experiments=rows.height,
        output_tokens_mean=float(tokens.mean()) if len(tokens) else None,
    )


def summary(
    frame: pl.DataFrame,
    baseline: str,
    names: list[str],
    disturbed: tuple[str, ...] = (),
    resources_by_id: dict[str, dict] | None = None,
    model_sizes: dict[str, float] | None = None,
) -> ComparisonFinding:
    """``frame``: every target's experiments (``with_defaults``); ``names`` in config order."""
    rows = table(frame)
    counts = rows.group_by("point").agg(pl.col("target").n_unique().alias("n"))
    shared = sorted(counts.filter(pl.col("n") == len(names))["point"].to_list())
    rows = rows.filter(pl.col("point").is_in(shared))
    trials = rows.group_by("target", "point").agg(pl.col("trial").n_unique().alias("k"))
    fewest = int(trials["k"].min() or 0) if trials.height else 0
    unsettled = _unsettled(rows, set(disturbed))
    conclusive = fewest >= 2 and not unsettled
    metrics = []
    for metric in METRICS:
        if rows[metric.key].drop_nulls().len() == 0:
            continue
        points = tuple(
            PointComparison(
                point,
                _compare(
                    rows.filter(pl.col("point") == point), baseline, names, metric, conclusive
                ),
            )
            for point in shared
        )
        overall = _compare(rows, baseline, names, metric, conclusive)
        metrics.append(
            MetricComparison(metric.key, metric.unit, metric.higher_is_better, overall, points)
        )
    return ComparisonFinding(
        baseline=baseline,
        targets=tuple(_info(frame, n, resources_by_id or {}, model_sizes or {}) for n in names),
        points=tuple(shared),
        metrics=tuple(metrics),
        trials=fewest,
        one_pass=fewest < 2,
        disturbed=unsettled,
    )


def _unsettled(rows: pl.DataFrame, disturbed: set[str]) -> tuple[str, ...]:
    """Disturbed experiments whose target and point have no undisturbed trial beside them."""
    found = []
    for (_, _), group in rows.group_by("target", "point"):
        ids = group["experiment_id"].to_list()
        hit = [i for i in ids if i in disturbed]
        if hit and (len(ids) < 2 or len(hit) == len(ids)):
            found += hit
    return tuple(sorted(found))
