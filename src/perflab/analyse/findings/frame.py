"""The summary as conditions: trials grouped, figures with their spread.

A summary row is one experiment, i.e. one trial of one condition. Columns
that an older summary lacks take their defaults (one trial of its own
condition, prompt cache busted). Comparisons between conditions go through
``perflab.analyse.verdict`` on the trial values each condition keeps
(``per_trial``): a trial is a block, so conditions are compared through
within-trial ratios. Each figure's spread over the trials is a
``perflab.analyse.findings.statistics.Spread``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import polars as pl

from perflab.analyse import verdict
from perflab.analyse.findings.statistics import Spread, finite, spread
from perflab.analyse.metrics import float_columns, metric
from perflab.analyse.verdict import Verdict

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
TRIAL_FIGURES = ("e2e", "ttft", "tps", "req_per_s", "gap_tps")
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
class TrialFigures:
    """One trial of a condition: its experiment's means (None without an ok request)."""

    trial: int
    experiment_id: str
    e2e: float | None
    ttft: float | None
    tps: float | None
    req_per_s: float | None
    gap_tps: float | None = None  # an older summary has none


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
    values = finite(values)
    return sum(values) / len(values) if values else None


def _weighted(rows: list[dict], column: str) -> float | None:
    """Mean of ``column`` over the trials, weighted by their ok requests."""
    pairs = [(r[column], r["n_ok"] or 0) for r in rows if r[column] is not None]
    weight = sum(n for _, n in pairs)
    return sum(v * n for v, n in pairs) / weight if weight else _mean(v for v, _ in pairs)


def _max(rows: list[dict], column: str) -> float | None:
    values = finite(r.get(column) for r in rows)
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
