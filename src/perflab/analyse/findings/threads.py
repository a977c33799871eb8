"""How many compute threads decode fastest (threads suite), beside llama-bench -t.

Each thread count is one condition: decode tok/s per request (tokens after the
first over the time after the first) and prefill tok/s (prompt tokens the engine
evaluated over its own prefill time), each with its spread over the trials
(``statistics.spread``: the trial is the unit when there are trials). The best count
is the one with the highest mean decode rate; the verdict is its rate against the
next fastest count, trial by trial (``frame.compare``, the rule of
``perflab.analyse.verdict``): ``changed`` says the best is faster beyond the
practical threshold, ``equivalent`` that the two are within it, ``inconclusive``
that these trials cannot tell (with the change they could have detected).

llama-bench's ``tg`` at the same counts names its own best count. The two agree
when the counts are the same, and agree within noise when they differ but either
side cannot tell the two counts apart: perflab's paired verdict of its best
against llama-bench's best count, or llama-bench's Welch test of its best
against perflab's best over its repetitions, is not ``changed``. Otherwise they
disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import polars as pl

from perflab.analyse.findings.frame import (
    Condition,
    compare,
    conditions,
    measured,
    one_pass,
    suite_rows,
    unsettled,
)
from perflab.analyse.findings.statistics import Spread, spread
from perflab.analyse.verdict import Outcome, Verdict, welch
from perflab.measure.peer import PeerTest, read_peer


class Agreement(str, Enum):
    SAME = "same"  # the same best count
    WITHIN_NOISE = "within_noise"  # different counts that one side cannot tell apart
    DISAGREE = "disagree"  # each side shows its own best count faster than the other's


@dataclass(frozen=True)
class ThreadPoint:
    """One thread count: perflab's condition, its prefill rate and llama-bench's tests."""

    threads: int
    condition: Condition  # decode rate (tps), output length, requests, trials
    prefill: Spread  # prefill tok/s over the trials
    peer_tg: PeerTest | None = None
    peer_pp: PeerTest | None = None

    @property
    def decode(self) -> Spread:
        return self.condition.tps


@dataclass(frozen=True)
class ThreadsFinding:
    points: tuple[ThreadPoint, ...]  # by thread count
    best: int | None  # the count with the highest mean decode rate
    runner_up: int | None  # the next fastest count
    test: Verdict | None  # decode at best / decode at runner_up
    verdict: Outcome | None
    prefill_best: int | None  # the count with the highest mean prefill rate
    peer_best: int | None  # llama-bench's count with the highest tg rate
    agreement: Agreement | None  # None: llama-bench did not run
    ours_at_peer_best: Verdict | None  # perflab: decode at best / at llama-bench's best
    peer_at_ours: Verdict | None  # llama-bench: tg at its best / at perflab's best
    one_pass: bool
    disturbed: tuple[str, ...]

    def point(self, threads: int | None) -> ThreadPoint | None:
        return next((p for p in self.points if p.threads == threads), None)


def _threads_of(rows: pl.DataFrame) -> dict[str, int]:
    """Each condition's thread count."""
    pairs = rows.select("condition_id", "threads").unique().drop_nulls().to_dicts()
    return {pair["condition_id"]: int(pair["threads"]) for pair in pairs}


def _prefill(rows: pl.DataFrame, condition: Condition) -> Spread:
    if "prefill_tps_mean" not in rows.columns:
        return spread([])
    mine = rows.filter(pl.col("condition_id") == condition.condition_id)
    ok = mine.filter(pl.col("n_ok").fill_null(0) > 0)
    return spread(ok["prefill_tps_mean"].to_list())


def _peer_tests(peer_path: str | Path | None) -> tuple[dict[int, PeerTest], dict[int, PeerTest]]:
    """llama-bench's tg and pp tests by thread count (the first of each kind per count)."""
    tg: dict[int, PeerTest] = {}
    pp: dict[int, PeerTest] = {}
    if peer_path and Path(peer_path).exists():
        for test in read_peer(Path(peer_path)):
            (tg if test.kind == "tg" else pp).setdefault(test.threads, test)
    return tg, pp


def _fastest(values: dict[int, float | None]) -> list[int]:
    """Thread counts by rate, fastest first (counts without a rate left out)."""
    known = {count: rate for count, rate in values.items() if rate is not None}
    return sorted(known, key=lambda count: (-known[count], count))


def summary(
    frame: pl.DataFrame,
    peer_path: str | Path | None = None,
    disturbed_ids: tuple[str, ...] = (),
) -> ThreadsFinding | None:
    """None when the threads suite did not run."""
    rows = suite_rows(frame, "threads")
    if rows.is_empty() or "threads" not in rows.columns:
        return None
    by_id = _threads_of(rows)
    found = [c for c in measured(conditions(rows, disturbed_ids)) if c.condition_id in by_id]
    tg, pp = _peer_tests(peer_path)
    points = []
    for condition in found:
        count = by_id[condition.condition_id]
        prefill = _prefill(rows, condition)
        points.append(ThreadPoint(count, condition, prefill, tg.get(count), pp.get(count)))
    points.sort(key=lambda point: point.threads)
    return judged(points, tg, unsettled(found), one_pass(found))


def judged(
    points: list[ThreadPoint],
    tg: dict[int, PeerTest],
    unsettled_ids: tuple[str, ...] = (),
    single_pass: bool = False,
) -> ThreadsFinding:
    """The best count, its verdict and llama-bench's agreement, from the points."""
    by_count = {p.threads: p for p in points}
    order = _fastest({p.threads: p.decode.mean for p in points})
    best = order[0] if order else None
    runner_up = order[1] if len(order) > 1 else None
    test = None
    if runner_up is not None:
        resting_on = set(unsettled_ids) & _trials_of(by_count, best, runner_up)
        test = compare(by_count[runner_up].condition, by_count[best].condition, "tps", resting_on)
    prefill_order = _fastest({p.threads: p.prefill.mean for p in points})
    peer_order = _fastest({count: peer.tps_mean for count, peer in tg.items()})
    peer_best = peer_order[0] if peer_order else None
    agreement, ours, theirs = _agreement(by_count, tg, best, peer_best, set(unsettled_ids))
    return ThreadsFinding(
        points=tuple(points),
        best=best,
        runner_up=runner_up,
        test=test,
        verdict=test.outcome if test else None,
        prefill_best=prefill_order[0] if prefill_order else None,
        peer_best=peer_best,
        agreement=agreement,
        ours_at_peer_best=ours,
        peer_at_ours=theirs,
        one_pass=single_pass,
        disturbed=tuple(sorted(unsettled_ids)),
    )


def _trials_of(by_count: dict[int, ThreadPoint], *counts: int) -> set[str]:
    """The experiment ids of the counts' conditions."""
    return {e for count in counts for e in by_count[count].condition.experiment_ids}


def _agreement(
    by_count: dict[int, ThreadPoint],
    tg: dict[int, PeerTest],
    best: int | None,
    peer_best: int | None,
    unsettled_ids: set[str],
) -> tuple[Agreement | None, Verdict | None, Verdict | None]:
    if best is None or peer_best is None:
        return None, None, None
    if best == peer_best:
        return Agreement.SAME, None, None
    ours = theirs = None
    if peer_best in by_count:
        resting_on = unsettled_ids & _trials_of(by_count, best, peer_best)
        ours = compare(by_count[peer_best].condition, by_count[best].condition, "tps", resting_on)
    if best in tg:
        theirs = welch(tg[best].samples, tg[peer_best].samples)
    either_unsure = any(v is None or not v.changed for v in (ours, theirs))
    return (Agreement.WITHIN_NOISE if either_unsure else Agreement.DISAGREE), ours, theirs
