"""Capacity: how much open-loop load a target serves within its latency targets.

For each offered rate of the rate suite, per trial: the share of requests that met
every bound of ``slo`` (counted from when each was due; a failed or dropped request
meets none), goodput (those requests per second), what was served, and latency
percentiles. A rate *holds* when the client kept its schedule and the share is at or
above ``slo.percentile``. The capacity of a trial is the highest rate such that it
and every lower rate hold; across trials it is a mean with its Student-t CI. The
first rate that does not hold says what limited it. A trial whose first such rate
failed on the client's schedule never reached the server's limit: its capacity is not
measured, so it is left out of the mean and named (``unjudged_trials``).

A sweep to the limit also states its probe (``ProbeCapacity``): what the target served
one request at a time and saturated, and, where the server times each request itself
(llama-server's ``timings``, Ollama's durations), the server's own capacity: its slots
over the time each saturated request kept a slot busy by its own clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from perflab.analyse import verdict
from perflab.analyse.findings.statistics import Spread, spread
from perflab.analyse.verdict import Verdict
from perflab.measure.probe import ProbeResult

ONSET_FACTOR = 1.5  # queueing has started where median latency is 1.5 x the lightest load's
BOUNDS = ("ttft", "tpot", "e2e")


@dataclass(frozen=True)
class SloTargets:
    """Per-request bounds (seconds; None: no bound) and the share that must meet all."""

    percentile: float = 95.0
    ttft_s: float | None = 2.0
    tpot_s: float | None = None
    e2e_s: float | None = None

    @property
    def fraction(self) -> float:
        return self.percentile / 100.0

    @classmethod
    def from_config(cls, config: dict) -> SloTargets:
        slo = config.get("slo") or {}
        return cls(**{k: slo[k] for k in ("percentile", "ttft_s", "tpot_s", "e2e_s") if k in slo})


@dataclass(frozen=True)
class RatePoint:
    """One offered rate over its trials (means of the trial values, with their spread)."""

    offered_rate: float
    trials: int
    achieved_rate: Spread  # requests sent per second
    served_rate: Spread  # ok requests per second of measured wall time
    met_fraction: Spread
    goodput: Spread  # requests per second that met every bound
    e2e_p50_s: Spread
    e2e_p95_s: Spread
    e2e_p99_s: Spread
    ttft_p95_s: Spread
    ttft_p50_by_turn: tuple[float | None, ...]  # chats: median TTFT of turn 1, 2, ...; else ()
    holds: bool  # in every trial: schedule kept and met_fraction at or above the target
    valid: bool  # the client kept the schedule in every trial
    limited_by: str | None  # where it does not hold: ttft, tpot, e2e, errors, dropped, client


@dataclass(frozen=True)
class ProbeCapacity:
    """A sweep's probe of its target, and the server's own capacity where it times itself."""

    synchronous_rate: float  # ok requests/s, one request at a time
    saturated_rate: float  # ok requests/s with saturating_workers requests always open
    saturating_workers: int
    slots: int | None  # requests the server runs at once by its settings; None: unknown
    server_busy_s: float | None  # the probe's saturated_server_s: prefill + decode by its clock
    server_rate: float | None  # slots / server_busy_s: req/s the server's own timings allow

    @classmethod
    def of(cls, probe: ProbeResult, slots: int | None) -> ProbeCapacity:
        busy = probe.saturated_server_s
        return cls(
            synchronous_rate=probe.synchronous_rate,
            saturated_rate=probe.saturated_rate,
            saturating_workers=probe.saturating_workers,
            slots=slots,
            server_busy_s=busy,
            server_rate=slots / busy if slots and busy else None,
        )


def server_slots(config: dict, target: str | None) -> int | None:
    """How many requests the target's server runs at once by its settings: a launched
    server's ``parallel``, the calibration server's ``num_parallel``, the engine's own
    ``slots`` (one for the embedded llama.cpp); None where perflab does not set it (a
    server it did not start)."""
    from perflab.config.targets import target_config
    from perflab.engines.registry import ENGINES

    single = target_config(config, target)
    engine = single.get("engine") or {}
    if engine.get("launch"):
        return engine["launch"].get("parallel", 1)
    kind = ENGINES.get(engine.get("name") or "")
    if kind is None:
        return None
    if kind.scripted:  # the calibration server: as many as its timing model says
        return (single.get("calibration") or {}).get("num_parallel")
    return kind.capabilities.slots


def read_probes(paths, config: dict) -> tuple[tuple[str | None, ProbeCapacity], ...]:
    """(target, its probe) for each ``rate_probe.json`` or ``rate_probe/<target>.json``."""
    found = []
    for path in map(Path, paths):
        target = path.stem if path.parent.name == "rate_probe" else None
        found.append(
            (target, ProbeCapacity.of(ProbeResult.read(path), server_slots(config, target)))
        )
    return tuple(found)


@dataclass(frozen=True)
class CapacityFinding:
    target: str | None
    slo: SloTargets
    points: tuple[RatePoint, ...]
    capacity: Spread  # req/s offered, per trial the highest rate that holds with all below it
    at_least: bool  # every rate measured held: the capacity is above the highest one
    limited_by: str | None  # what the first rate that does not hold missed most
    max_served_rate: float | None  # the most ok requests/s served at any rate
    queueing_onset_rate: float | None  # lowest rate with median latency ONSET_FACTOR x the first
    skipped_rates: tuple[float, ...] = ()  # sweep points not measured: the sweep stopped early
    stopped_because: str | None = None  # why, at the lowest of them
    by_trial: tuple[tuple[int, float], ...] = ()  # (trial, capacity) pairs
    baseline: str | None = None  # with targets: the target this one is compared with
    versus_baseline: Verdict | None = None  # capacity / the baseline's, trial by trial
    probe: ProbeCapacity | None = None  # the sweep's probe; None: fixed rates, no probe
    # trials left out of the capacity: the client could not keep the schedule at the first
    # rate that did not hold, so the server's limit was not reached (trial, that rate)
    unjudged_trials: tuple[tuple[int, float], ...] = ()


def meets(slo: SloTargets) -> dict[str, pl.Expr]:
    """Per sent request, whether it met each bound (an unbounded metric always does)."""
    ok = pl.col("status") == "ok"
    tpot = (pl.col("e2e_s") - pl.col("ttft_s")) / (pl.col("output_tokens") - 1)
    values = {
        "ttft": pl.coalesce("ttft_sched_s", "ttft_s"),
        "tpot": pl.when(pl.col("output_tokens") > 1).then(tpot).otherwise(0.0),
        "e2e": pl.coalesce("e2e_sched_s", "e2e_s"),
    }
    bounds = {"ttft": slo.ttft_s, "tpot": slo.tpot_s, "e2e": slo.e2e_s}
    return {
        name: ok & (pl.lit(True) if bounds[name] is None else values[name] <= bounds[name])
        for name in BOUNDS
    }


def trial_table(requests: pl.LazyFrame, slo: SloTargets) -> pl.DataFrame:
    """One row per open-loop experiment (one trial of one rate)."""
    met = meets(slo)
    sent = pl.col("status") != "dropped"
    ok = pl.col("status") == "ok"
    latency = pl.coalesce("e2e_sched_s", "e2e_s").filter(ok)
    return (
        requests.filter(~pl.col("is_warmup") & pl.col("offered_rate").is_not_null())
        .group_by("experiment_id", "target", "trial", "offered_rate")
        .agg(
            pl.len().alias("n_scheduled"),
            sent.sum().alias("n_sent"),
            ok.sum().alias("n_ok"),
            (sent & ~ok).sum().alias("n_failed"),
            pl.all_horizontal(*met.values()).sum().alias("n_met"),
            *[(ok & ~expr).sum().alias(f"missed_{name}") for name, expr in met.items()],
            pl.col("measured_wall_s").first(),
            pl.col("achieved_rate").first(),
            pl.col("schedule_valid").first(),
            *[
                latency.quantile(q / 100, interpolation="linear").alias(f"e2e_p{q}_s")
                for q in (50, 95, 99)
            ],
            pl.coalesce("ttft_sched_s", "ttft_s")
            .filter(ok)
            .quantile(0.95, interpolation="linear")
            .alias("ttft_p95_s"),
        )
        .with_columns(
            (pl.col("n_met") / pl.col("n_scheduled")).alias("met_fraction"),
            (pl.col("n_met") / pl.col("measured_wall_s")).alias("goodput"),
            (pl.col("n_ok") / pl.col("measured_wall_s")).alias("served_rate"),
        )
        .sort("target", "offered_rate", "trial", nulls_last=True)
        .collect()
    )


def _limit(row: dict) -> str:
    """What kept most of a trial's requests from meeting the targets."""
    if not row["schedule_valid"]:
        return "client"
    causes = {name: row[f"missed_{name}"] for name in BOUNDS}
    causes["errors"] = row["n_failed"]
    causes["dropped"] = row["n_scheduled"] - row["n_sent"]
    return max(causes, key=lambda name: causes[name])


def _holds(row: dict, slo: SloTargets) -> bool:
    return bool(row["schedule_valid"]) and row["met_fraction"] >= slo.fraction


def turn_table(requests: pl.LazyFrame) -> dict[tuple, tuple[float | None, ...]]:
    """(target, offered rate) -> median TTFT per turn over its trials, for chats only."""
    if "turn" not in requests.collect_schema().names():
        return {}
    table = (
        requests.filter(
            ~pl.col("is_warmup") & (pl.col("status") == "ok") & pl.col("turn").is_not_null()
        )
        .group_by("target", "offered_rate", "turn")
        .agg(pl.col("ttft_s").median().alias("ttft_p50_s"))
        .sort("turn")
        .collect()
    )
    by_point: dict[tuple, list] = {}
    for row in table.to_dicts():
        by_point.setdefault((row["target"], row["offered_rate"]), []).append(row["ttft_p50_s"])
    return {key: tuple(values) for key, values in by_point.items() if len(values) > 1}


def rate_point(rows: list[dict], slo: SloTargets, by_turn=()) -> RatePoint:
    def over(name: str) -> Spread:
        return spread([row[name] for row in rows])

    failing = [row for row in rows if not _holds(row, slo)]
    return RatePoint(
        offered_rate=rows[0]["offered_rate"],
        trials=len(rows),
        achieved_rate=over("achieved_rate"),
        served_rate=over("served_rate"),
        met_fraction=over("met_fraction"),
        goodput=over("goodput"),
        e2e_p50_s=over("e2e_p50_s"),
        e2e_p95_s=over("e2e_p95_s"),
        e2e_p99_s=over("e2e_p99_s"),
        ttft_p95_s=over("ttft_p95_s"),
        ttft_p50_by_turn=tuple(by_turn),
        holds=not failing,
        valid=all(row["schedule_valid"] for row in rows),
        limited_by=_limit(failing[0]) if failing else None,
    )


def trial_capacity(rows: list[dict], slo: SloTargets) -> float:
    """The highest rate of one trial that holds with every lower rate (0: none holds)."""
    capacity = 0.0
    for row in sorted(rows, key=lambda r: r["offered_rate"]):
        if not _holds(row, slo):
            break
        capacity = row["offered_rate"]
    return capacity


def client_cut(rows: list[dict], slo: SloTargets) -> float | None:
    """The rate at which one trial failed on the client's own schedule before any rate
    failed on the server's; None when the trial's limit, if any, was the server's."""
    for row in sorted(rows, key=lambda r: r["offered_rate"]):
        if not _holds(row, slo):
            return None if row["schedule_valid"] else row["offered_rate"]
    return None


def queueing_onset(points: list[RatePoint]) -> float | None:
    """The lowest rate whose median latency is ONSET_FACTOR times the lightest load's."""
    if len(points) < 2 or points[0].e2e_p50_s.mean is None:
        return None
    base = points[0].e2e_p50_s.mean
    for point in points[1:]:
        if point.e2e_p50_s.mean is not None and point.e2e_p50_s.mean > ONSET_FACTOR * base:
            return point.offered_rate
    return None


def target_finding(
    rows: list[dict],
    slo: SloTargets,
    skipped: list[tuple[float, str]] = (),
    turns: dict[tuple, tuple] | None = None,
) -> CapacityFinding:
    by_rate: dict[float, list[dict]] = {}
    for row in rows:
        by_rate.setdefault(row["offered_rate"], []).append(row)
    target = rows[0]["target"]
    points = [
        rate_point(group, slo, (turns or {}).get((target, rate), ()))
        for rate, group in sorted(by_rate.items())
    ]
    by_trial: dict[int, list[dict]] = {}
    for row in rows:
        by_trial.setdefault(row["trial"], []).append(row)
    cut = {trial: client_cut(group, slo) for trial, group in by_trial.items()}
    judged = {trial: group for trial, group in sorted(by_trial.items()) if cut[trial] is None}
    per_trial = {trial: trial_capacity(group, slo) for trial, group in judged.items()}
    short = [row for group in judged.values() for row in group if not _holds(row, slo)]
    first_short = min(short, key=lambda row: row["offered_rate"]) if short else None
    served = [p.served_rate.mean for p in points if p.served_rate.mean is not None]
    return CapacityFinding(
        target=rows[0]["target"],
        slo=slo,
        points=tuple(points),
        capacity=spread(list(per_trial.values())),
        at_least=bool(judged) and first_short is None,
        limited_by=_limit(first_short) if first_short else None if judged else "client",
        max_served_rate=max(served) if served else None,
        queueing_onset_rate=queueing_onset(points),
        skipped_rates=tuple(sorted({rate for rate, _ in skipped})),
        stopped_because=min(skipped)[1] if skipped else None,
        by_trial=tuple(per_trial.items()),
        unjudged_trials=tuple((t, rate) for t, rate in sorted(cut.items()) if rate is not None),
    )


def versus(base: CapacityFinding, other: CapacityFinding) -> CapacityFinding:
    """``other`` with its capacity against the baseline's, paired trial by trial (the
    project's verdict rule: a capacity of 0 has no ratio and gives no data)."""
    base_by_trial = dict(base.by_trial)
    pairs = [(base_by_trial.get(trial), value) for trial, value in other.by_trial]
    return replace(other, baseline=base.target, versus_baseline=verdict.paired(pairs))


def summary(
    requests_path: str | Path | None,
    slo: SloTargets,
    skipped: tuple[tuple[str | None, float, str], ...] = (),
    baseline: str | None = None,
    probes: tuple[tuple[str | None, ProbeCapacity], ...] = (),
) -> tuple[CapacityFinding, ...]:
    """One finding per target that ran the rate suite; none without it. ``skipped``:
    (target, rate, why) of each sweep point that was not measured; ``probes``: (target,
    its probe) of each sweep to the limit. With a ``baseline`` target, every other
    target's capacity is compared with its."""
    if requests_path is None or not Path(requests_path).exists():
        return ()
    requests = pl.scan_parquet(requests_path)
    if "offered_rate" not in requests.collect_schema().names():
        return ()
    table = trial_table(requests, slo)
    turns = turn_table(requests)
    by_target: dict[str | None, list[dict]] = {}
    for row in table.to_dicts():
        by_target.setdefault(row["target"], []).append(row)
    probed = dict(probes)
    found = [
        replace(
            target_finding(
                rows, slo, [(rate, why) for target, rate, why in skipped if target == name], turns
            ),
            probe=probed.get(name),
        )
        for name, rows in by_target.items()
    ]
    base = next((f for f in found if baseline is not None and f.target == baseline), None)
    if base is None:
        return tuple(found)
    return tuple(f if f is base else versus(base, f) for f in found)
