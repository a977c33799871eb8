"""Run against run: two finished runs, condition by condition and metric by metric.

Two runs were measured at different times, so nothing pairs their
experiments: each condition's figure is the mean over its trials with the CI
of the trial means (``frame.spread``), and the difference B − A has the
half-width ``√(ci_A² + ci_B²)``. The verdict follows the other findings:
``faster`` or ``slower`` only when that interval excludes 0 and the
difference is at least ``PRACTICAL_DIFFERENCE`` of A; ``no_difference``
otherwise; ``inconclusive`` when either run has one pass of the condition.

Runs are comparable only when they sent the same prompts with the same
generation settings; ``identity`` says what differs, and what else changed
between them (config hash, engine version, model digest, host).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

from perflab.analyse.findings.comparison import METRICS, ComparisonVerdict, Metric, table_values
from perflab.analyse.findings.frame import PRACTICAL_DIFFERENCE, Spread, spread
from perflab.analyse.findings.interference import is_disturbed

# Generation settings that change what is generated, and so what is measured.
GENERATION_KEYS = ("temperature", "max_tokens", "seed", "ignore_eos", "keep_alive")


@dataclass(frozen=True)
class Difference:
    """One setting that differs between the runs: where, and A's and B's values."""

    what: str
    a: str
    b: str


@dataclass(frozen=True)
class Identity:
    """What must match (prompts, generation) and what is reported when it differs."""

    blocking: tuple[Difference, ...]  # prompts or generation settings: refused without force
    changed: tuple[Difference, ...]  # config hash, engine version, model digest, host


@dataclass(frozen=True)
class MetricDelta:
    metric: str
    unit: str
    higher_is_better: bool
    a: Spread
    b: Spread
    difference: float | None  # b − a
    ci95: float | None  # half-width of the difference's 95 % CI
    ratio: float | None  # b / a
    verdict: ComparisonVerdict
    disturbed: bool = False  # a run's figure rests on disturbed trials none of its others settle


@dataclass(frozen=True)
class ConditionDelta:
    condition_id: str
    trials_a: int
    trials_b: int
    metrics: tuple[MetricDelta, ...]


@dataclass(frozen=True)
class RunComparison:
    run_a: str
    run_b: str
    identity: Identity
    forced: bool
    conditions: tuple[ConditionDelta, ...]
    only_a: tuple[str, ...]  # conditions one run measured and the other did not
    only_b: tuple[str, ...]


def delta(metric: Metric, a: Spread, b: Spread, disturbed: bool = False) -> MetricDelta:
    if a.mean is None or b.mean is None:
        verdict = ComparisonVerdict.INCONCLUSIVE
        return MetricDelta(
            metric.key, metric.unit, metric.higher_is_better, a, b, None, None, None, verdict
        )
    difference = b.mean - a.mean
    ci = None
    if a.ci95 is not None and b.ci95 is not None:
        ci = math.sqrt(a.ci95**2 + b.ci95**2)
    ratio = b.mean / a.mean if a.mean else None
    return MetricDelta(
        metric.key,
        metric.unit,
        metric.higher_is_better,
        a,
        b,
        difference,
        ci,
        ratio,
        ComparisonVerdict.INCONCLUSIVE if disturbed else _verdict(metric, a, b, difference, ci),
        disturbed,
    )


def _verdict(metric: Metric, a: Spread, b: Spread, difference: float, ci) -> ComparisonVerdict:
    if not (a.between_trials and b.between_trials) or ci is None:
        return ComparisonVerdict.INCONCLUSIVE
    small = a.mean == 0 or abs(difference) / abs(a.mean) < PRACTICAL_DIFFERENCE
    if abs(difference) <= ci or small:
        return ComparisonVerdict.NO_DIFFERENCE
    better = (difference > 0) == metric.higher_is_better
    return ComparisonVerdict.FASTER if better else ComparisonVerdict.SLOWER


def _spreads(rows: pl.DataFrame, metric: Metric) -> Spread:
    values = rows.sort("trial")[metric.key].to_list()
    return spread(values)


def compare(
    run_a: str,
    summary_a: pl.DataFrame,
    run_b: str,
    summary_b: pl.DataFrame,
    identity: Identity,
    forced: bool = False,
) -> RunComparison:
    """``summary_*``: each run's summary with defaults (``frame.with_defaults``)."""
    a, b = table_values(summary_a), table_values(summary_b)
    ids_a, ids_b = set(a["condition_id"]), set(b["condition_id"])
    found = []
    for condition in sorted(ids_a & ids_b):
        rows_a = a.filter(pl.col("condition_id") == condition)
        rows_b = b.filter(pl.col("condition_id") == condition)
        unsettled = _unsettled(rows_a) or _unsettled(rows_b)
        metrics = tuple(
            delta(metric, _spreads(rows_a, metric), _spreads(rows_b, metric), unsettled)
            for metric in METRICS
            if rows_a[metric.key].drop_nulls().len() or rows_b[metric.key].drop_nulls().len()
        )
        found.append(ConditionDelta(condition, rows_a.height, rows_b.height, metrics))
    return RunComparison(
        run_a,
        run_b,
        identity,
        forced,
        tuple(found),
        tuple(sorted(ids_a - ids_b)),
        tuple(sorted(ids_b - ids_a)),
    )


def _unsettled(rows: pl.DataFrame) -> bool:
    """Disturbed trials with no undisturbed trial of the condition beside them."""
    flags = [is_disturbed(v) for v in rows["interference_cpu_pct_mean"].to_list()]
    return any(flags) and (len(flags) < 2 or all(flags))


def identity(metadata_a: list[dict], metadata_b: list[dict]) -> Identity:
    """What differs between two runs' experiments (their metadata.json)."""
    by_a = {m["experiment"]["condition_id"]: m for m in metadata_a}
    by_b = {m["experiment"]["condition_id"]: m for m in metadata_b}
    blocking = []
    for condition in sorted(set(by_a) & set(by_b)):
        ma, mb = by_a[condition], by_b[condition]
        if ma["experiment"]["prompt"] != mb["experiment"]["prompt"]:
            blocking.append(
                Difference(
                    f"prompt of {condition}",
                    _short(ma["experiment"]["prompt"]),
                    _short(mb["experiment"]["prompt"]),
                )
            )
        for key in GENERATION_KEYS:
            va, vb = ma["options"].get(key), mb["options"].get(key)
            if va != vb:
                blocking.append(Difference(f"generation {key} of {condition}", str(va), str(vb)))
    return Identity(tuple(blocking), tuple(_changed(metadata_a, metadata_b)))


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


PROVENANCE = (
    ("config hash", lambda m: m.get("config_hash")),
    (
        "engine version",
        lambda m: f"{m['engine'].get('engine')} {m['engine'].get('engine_version')}",
    ),
    (
        "model digest",
        lambda m: m["engine"].get("model_digest") or m["engine"].get("model_sha256"),
    ),
    ("model", lambda m: m["engine"].get("model")),
    (
        "host",
        lambda m: (
            f"{m['host'].get('hostname')} ({m['host'].get('cpu_model')}, "
            f"{m['host'].get('logical_cores')} cores)"
        ),
    ),
    ("OLLAMA_NUM_PARALLEL", lambda m: m["host"].get("ollama_num_parallel")),
)


def _changed(metadata_a: list[dict], metadata_b: list[dict]) -> list[Difference]:
    found = []
    for what, read in PROVENANCE:
        values_a = sorted({str(read(m)) for m in metadata_a})
        values_b = sorted({str(read(m)) for m in metadata_b})
        if values_a != values_b:
            found.append(Difference(what, ", ".join(values_a), ", ".join(values_b)))
    return found
