"""Targets side by side: each metric of each target against the baseline target.

Every target ran the same sweep points, trial by trial and point by point in
alternation, so the experiment of target T at point p in trial k has a twin
of the baseline measured next to it in time. The trial is the unit of
replication: per trial, the log-ratios T/baseline of its twins are averaged
over the shared points (points of one trial share its machine state, so they
are not independent pairs), and the verdict rule of
``perflab.analyse.verdict`` tests those trial log-ratios across trials.
Per point, the same with that point's twin of each trial.

``faster`` or ``slower``: the verdict is ``changed`` (after Holm's correction
over the comparison's verdicts) in that direction; ``equivalent``: shown
within ± the practical threshold; ``inconclusive`` otherwise, with one pass
(no spread across trials), or when a disturbed experiment is not settled by
its other trials.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import Enum

import polars as pl

from perflab.analyse import verdict as rule
from perflab.analyse.findings.resources import NO_RESOURCES, ExperimentResources
from perflab.analyse.findings.statistics import Spread, spread
from perflab.analyse.metrics import COMPARED, Metric
from perflab.analyse.verdict import Outcome, Verdict
from perflab.config.targets import SEPARATOR


class ComparisonVerdict(str, Enum):
    FASTER = "faster"
    SLOWER = "slower"
    EQUIVALENT = "equivalent"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class TargetMetric:
    """One target's figure for one metric, and how it stands against the baseline.

    ``value``: over trials (each trial: the mean over the shared points).
    ``factor``: how many times faster (verdict faster) or slower (slower) the
    target is, from the ratio and the metric's direction; ≥ 1, or None.
    """

    target: str
    value: Spread
    ratio: Verdict | None  # target / baseline; None for the baseline itself
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
    # the server's own prefill timing; none where it took no time (a cached prompt): never inf
    prefill = frame["prefill_mean_s"]
    rate = pl.when(prefill > 0).then(frame["prompt_tokens_mean"] / prefill)
    return frame.select(rate.fill_nan(None).alias("server_prefill_tps")).to_series()


def table_values(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per experiment with an ok request: its ids, trial and every metric."""
    rows = frame.filter(pl.col("n_ok") > 0)
    return rows.select(
        "target",
        "condition_id",
        "experiment_id",
        "trial",
        "interference_cpu_pct_mean",
        "interference_threshold_pct",
        *[_values(rows, m).alias(m.tag) for m in COMPARED],
    )


def table(frame: pl.DataFrame) -> pl.DataFrame:
    """``table_values`` of the targets' experiments, with each one's sweep point."""
    rows = table_values(frame.filter(pl.col("target").is_not_null()))
    prefix = pl.col("target") + pl.lit(SEPARATOR)
    return rows.with_columns(pl.col("condition_id").str.strip_prefix(prefix).alias("point"))


def label(found: Verdict, higher_is_better: bool) -> ComparisonVerdict:
    """The verdict in the metric's sense: faster, slower, equivalent or inconclusive."""
    if found.outcome is Outcome.EQUIVALENT:
        return ComparisonVerdict.EQUIVALENT
    if found.outcome is Outcome.INCONCLUSIVE:
        return ComparisonVerdict.INCONCLUSIVE
    better = (found.estimate > 1) == higher_is_better
    return ComparisonVerdict.FASTER if better else ComparisonVerdict.SLOWER


def _inverse(value: float | None) -> float | None:
    return None if value is None else 1 / value


def _factor(found: Verdict | None, higher_is_better: bool) -> tuple[float | None, ...]:
    """Times faster or slower (≥ 1 at the point estimate), with its interval in that sense."""
    if found is None or found.estimate is None:
        return (None, None, None)
    if higher_is_better:
        speed, low, high = found.estimate, found.low, found.high
    else:
        speed, low, high = 1 / found.estimate, _inverse(found.high), _inverse(found.low)
    if speed >= 1:
        return (speed, low, high)
    return (1 / speed, _inverse(high), _inverse(low))


def _trial_value(rows: pl.DataFrame, metric: Metric) -> Spread:
    per_trial = rows.group_by("trial").agg(pl.col(metric.tag).mean()).sort("trial")
    return spread(per_trial[metric.tag].to_list())


def _trial_logs(mine: pl.DataFrame, base: pl.DataFrame, key: str) -> list[float]:
    """Per trial, the mean log-ratio target / baseline over its twin experiments."""
    twins = mine.select("point", "trial", key).join(base, on=["point", "trial"], suffix="_base")
    twins = twins.filter(
        pl.col(key).is_not_null() & (pl.col(key) > 0) & (pl.col(f"{key}_base") > 0)
    )
    per_trial = (
        twins.with_columns((pl.col(key) / pl.col(f"{key}_base")).log().alias("log_ratio"))
        .group_by("trial")
        .agg(pl.col("log_ratio").mean())
        .sort("trial")
    )
    return [v for v in per_trial["log_ratio"].to_list() if v is not None and math.isfinite(v)]


def _compare(
    rows: pl.DataFrame, baseline: str, names: list[str], metric: Metric, unsettled: bool
) -> tuple[TargetMetric, ...]:
    base = rows.filter(pl.col("target") == baseline).select("point", "trial", metric.tag)
    found = []
    for name in names:
        mine = rows.filter(pl.col("target") == name)
        value = _trial_value(mine, metric)
        if name == baseline:
            found.append(TargetMetric(name, value, None, None, None, None, None))
            continue
        tested = rule.log_ratios(_trial_logs(mine, base, metric.tag))
        if unsettled:
            tested = rule.disturbed(tested)
        found.append(_judged(TargetMetric(name, value, tested, None, None, None, None), metric))
    return tuple(found)


def _judged(item: TargetMetric, metric: Metric | MetricComparison) -> TargetMetric:
    return replace(
        item,
        verdict=label(item.ratio, metric.higher_is_better),
        **dict(
            zip(
                ("factor", "factor_low", "factor_high"),
                _factor(item.ratio, metric.higher_is_better),
            )
        ),
    )


def _holm(metrics: list[MetricComparison]) -> list[MetricComparison]:
    """Holm over the overall verdicts, and over the per-point verdicts, of every metric."""
    overall = [t for m in metrics for t in m.targets if t.ratio is not None]
    points = [t for m in metrics for p in m.points for t in p.targets if t.ratio is not None]
    adjusted = {
        id(t): v
        for group in (overall, points)
        for t, v in zip(group, rule.holm([t.ratio for t in group]), strict=True)
    }

    def fixed(items: tuple[TargetMetric, ...], metric: MetricComparison):
        return tuple(
            _judged(replace(t, ratio=adjusted[id(t)]), metric) if t.ratio is not None else t
            for t in items
        )

    return [
        replace(
            m,
            targets=fixed(m.targets, m),
            points=tuple(replace(p, targets=fixed(p.targets, m)) for p in m.points),
        )
        for m in metrics
    ]


def _info(
    frame: pl.DataFrame, name: str, resources_by_id: dict[str, ExperimentResources], sizes: dict
) -> TargetInfo:
    rows = frame.filter(pl.col("target") == name)
    ids = rows["experiment_id"].to_list()
    rss = [resources_by_id.get(i, NO_RESOURCES).used.server_rss_gb_max for i in ids]
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
    resources_by_id: dict[str, ExperimentResources] | None = None,
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
    metrics = []
    for metric in COMPARED:
        if rows[metric.tag].drop_nulls().len() == 0:
            continue
        points = tuple(
            PointComparison(
                point,
                _compare(
                    rows.filter(pl.col("point") == point), baseline, names, metric, bool(unsettled)
                ),
            )
            for point in shared
        )
        overall = _compare(rows, baseline, names, metric, bool(unsettled))
        metrics.append(
            MetricComparison(metric.tag, metric.unit, metric.higher_is_better, overall, points)
        )
    return ComparisonFinding(
        baseline=baseline,
        targets=tuple(_info(frame, n, resources_by_id or {}, model_sizes or {}) for n in names),
        points=tuple(shared),
        metrics=tuple(_holm(metrics)),
        trials=fewest,
        one_pass=fewest < 2,
        disturbed=unsettled,
    )


def _unsettled(rows: pl.DataFrame, disturbed: set[str]) -> tuple[str, ...]:
    """Disturbed experiments that their target and point's other trials do not settle."""
    groups = rows.group_by("target", "point", maintain_order=True).agg("experiment_id")
    return rule.unsettled(
        (f"{target}/{point}", [(e, e in disturbed) for e in ids])
        for target, point, ids in groups.iter_rows()
    )
