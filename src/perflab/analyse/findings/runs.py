"""Run against run: two finished runs, condition by condition and metric by metric.

Two runs were measured at different times, so nothing pairs their
experiments: each condition's figure is the mean over its trials
(``statistics.spread``), and B against A is Welch's t-test on the per-trial log
values of each run (``perflab.analyse.verdict.welch``), with Holm's
correction over every condition and metric of the comparison. ``faster`` or
``slower``: ``changed`` in that direction; ``equivalent``: shown within ± the
practical threshold; ``inconclusive`` otherwise, with one pass in either run,
or a disturbed trial that the run's other trials do not settle.

Runs are comparable only when they sent the same prompts with the same
generation settings; ``identity`` says what differs, and what else changed
between them (config hash, engine version, model digest, host).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import polars as pl

from perflab.analyse import verdict as rule
from perflab.analyse.findings.comparison import ComparisonVerdict, label, table_values
from perflab.analyse.findings.interference import is_disturbed
from perflab.analyse.findings.statistics import Spread, spread
from perflab.analyse.metrics import COMPARED, Metric
from perflab.analyse.verdict import Verdict
from perflab.measure.metadata import ExperimentMetadata
from perflab.measure.provenance import HostInfo

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
    difference: float | None  # b − a of the trial means
    test: Verdict  # b / a: Welch on the per-trial logs (estimate, CI, p-values, MDE)
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


def delta(metric: Metric, a_values: list, b_values: list, disturbed: bool = False) -> MetricDelta:
    """B against A from each run's per-trial values of ``metric``."""
    a, b = spread(a_values), spread(b_values)
    test = rule.welch(a_values, b_values)
    if disturbed:
        test = rule.disturbed(test)
    difference = b.mean - a.mean if a.mean is not None and b.mean is not None else None
    return MetricDelta(
        metric.tag,
        metric.unit,
        metric.higher_is_better,
        a,
        b,
        difference,
        test,
        label(test, metric.higher_is_better),
        disturbed,
    )


def _holm(conditions: list[ConditionDelta]) -> list[ConditionDelta]:
    """Holm's correction over every condition and metric of the comparison."""
    items = [m for c in conditions for m in c.metrics]
    adjusted = iter(rule.holm([m.test for m in items]))
    return [
        replace(
            c,
            metrics=tuple(
                replace(m, test=t, verdict=label(t, m.higher_is_better))
                for m, t in zip(c.metrics, adjusted)
            ),
        )
        for c in conditions
    ]


def _values(rows: pl.DataFrame, metric: Metric) -> list:
    return rows.sort("trial")[metric.tag].to_list()


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
            delta(metric, _values(rows_a, metric), _values(rows_b, metric), unsettled)
            for metric in COMPARED
            if rows_a[metric.tag].drop_nulls().len() or rows_b[metric.tag].drop_nulls().len()
        )
        found.append(ConditionDelta(condition, rows_a.height, rows_b.height, metrics))
    return RunComparison(
        run_a,
        run_b,
        identity,
        forced,
        tuple(_holm(found)),
        tuple(sorted(ids_a - ids_b)),
        tuple(sorted(ids_b - ids_a)),
    )


def _unsettled(rows: pl.DataFrame) -> bool:
    """Whether a disturbed trial of the condition is not settled by its other trials."""
    columns = ("experiment_id", "interference_cpu_pct_mean", "interference_threshold_pct")
    flags = [(str(e), is_disturbed(v, limit)) for e, v, limit in rows.select(columns).iter_rows()]
    return bool(rule.unsettled([("condition", flags)]))


def identity(
    metadata_a: list[ExperimentMetadata], metadata_b: list[ExperimentMetadata]
) -> Identity:
    """What differs between two runs' experiments (their metadata.json)."""
    by_a = {m.experiment["condition_id"]: m for m in metadata_a}
    by_b = {m.experiment["condition_id"]: m for m in metadata_b}
    blocking = []
    for condition in sorted(set(by_a) & set(by_b)):
        ma, mb = by_a[condition], by_b[condition]
        if ma.experiment["prompt"] != mb.experiment["prompt"]:
            blocking.append(
                Difference(
                    f"prompt of {condition}",
                    _short(ma.experiment["prompt"]),
                    _short(mb.experiment["prompt"]),
                )
            )
        for key in GENERATION_KEYS:
            va, vb = getattr(ma.options, key, None), getattr(mb.options, key, None)
            if va != vb:
                blocking.append(Difference(f"generation {key} of {condition}", str(va), str(vb)))
    return Identity(tuple(blocking), tuple(_changed(metadata_a, metadata_b)))


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _host_line(host: HostInfo) -> str:
    return f"{host.hostname} ({host.cpu_model}, {host.logical_cores} cores)"


PROVENANCE = (
    ("config hash", lambda m: m.config_hash),
    ("engine version", lambda m: f"{m.engine.engine} {m.engine.engine_version}"),
    ("model digest", lambda m: m.engine.model_id),
    ("model", lambda m: m.engine.model),
    ("host", lambda m: _host_line(m.host)),
    ("OLLAMA_NUM_PARALLEL", lambda m: m.host.ollama_num_parallel),
)


def _changed(
    metadata_a: list[ExperimentMetadata], metadata_b: list[ExperimentMetadata]
) -> list[Difference]:
    found = []
    for what, read in PROVENANCE:
        values_a = sorted({str(read(m)) for m in metadata_a})
        values_b = sorted({str(read(m)) for m in metadata_b})
        if values_a != values_b:
            found.append(Difference(what, ", ".join(values_a), ", ".join(values_b)))
    return found
