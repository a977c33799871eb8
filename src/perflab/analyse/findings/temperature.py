"""Does temperature change speed, or only how much the model writes?

Speed is decode tok/s between tokens (``gap_tps``, 1 / mean inter-token gap)
where every trial has it, else per request (``tps``): a model spends one more
decode step on its end-of-turn token after the last answer token, which makes a
short answer's tps read slower per token, and temperature changes how long the
answers are (``speed_metric`` says which). Every temperature is compared with the
reference (the lowest) trial by trial (``frame.compare``, the verdict rule
of ``perflab.analyse.verdict``): the answer is ``changed`` when any
temperature's speed changed, ``equivalent`` when every one is shown
equivalent, and ``inconclusive`` otherwise. Mean latency is compared the
same way; a latency change with equivalent speed and a different output
length is ``length_only``: the model wrote more, it did not write slower.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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
from perflab.analyse.findings.statistics import same
from perflab.analyse.verdict import Outcome, Verdict


@dataclass(frozen=True)
class TemperatureFinding:
    """``speed`` and ``latency``: each temperature after the reference against it."""

    verdict: Outcome | None  # of speed; None: fewer than 2 temperatures measured
    conditions: tuple[Condition, ...]  # by temperature, the reference first
    speed: tuple[Verdict, ...]
    latency: tuple[Verdict, ...]
    slowest: Condition | None  # by mean latency
    fastest: Condition | None
    latency_difference: float | None  # slowest / fastest mean latency − 1
    length_only: bool  # latency changed, speed equivalent, output length differs
    same_output_length: bool
    truncated: tuple[Condition, ...]  # conditions with answers cut at max_tokens
    one_pass: bool
    disturbed: tuple[str, ...]
    speed_metric: str = "tps"  # the catalogue tag the speed verdicts compare

    @property
    def mde(self) -> float | None:
        """The largest minimal detectable effect of the speed verdicts."""
        found = [v.mde for v in self.speed if v.mde is not None]
        return max(found) if found else None


def combined(verdicts: tuple[Verdict, ...]) -> Outcome:
    """``changed`` if any changed, ``equivalent`` if all are, else ``inconclusive``."""
    if any(v.changed for v in verdicts):
        return Outcome.CHANGED
    if verdicts and all(v.equivalent for v in verdicts):
        return Outcome.EQUIVALENT
    return Outcome.INCONCLUSIVE


def summary(frame: pl.DataFrame, disturbed_ids: tuple[str, ...] = ()) -> TemperatureFinding:
    found = sorted(
        (c for c in measured(conditions(suite_rows(frame, "temperature"), disturbed_ids))),
        key=lambda c: (c.temperature is None, c.temperature),
    )
    truncated = tuple(c for c in found if c.n_truncated)
    if len(found) < 2:
        return TemperatureFinding(
            None, tuple(found), (), (), None, None, None, False, True, truncated,
            one_pass(found), (),
        )  # fmt: skip
    reference, others = found[0], found[1:]
    unsettled_ids = unsettled(found)
    figure = speed_figure(found)
    speed = tuple(compare(reference, c, figure, unsettled_ids) for c in others)
    latency = tuple(compare(reference, c, "e2e") for c in others)
    slow = max(found, key=lambda c: c.e2e.mean)
    fast = min(found, key=lambda c: c.e2e.mean)
    return rejudged(
        TemperatureFinding(
            verdict=None,
            conditions=tuple(found),
            speed=speed,
            latency=latency,
            slowest=slow,
            fastest=fast,
            latency_difference=slow.e2e.mean / fast.e2e.mean - 1,
            length_only=False,
            same_output_length=same([c.output_tokens_mean for c in found]),
            truncated=truncated,
            one_pass=one_pass(found),
            disturbed=unsettled_ids,
            speed_metric=figure,
        ),
        speed,
    )


def speed_figure(found: list[Condition]) -> str:
    """``gap_tps`` where every trial with a decode speed has one, else ``tps``."""
    trials = [t for c in found for t in c.per_trial if t.tps is not None]
    return "gap_tps" if trials and all(t.gap_tps is not None for t in trials) else "tps"


def rejudged(finding: TemperatureFinding, speed: tuple[Verdict, ...]) -> TemperatureFinding:
    """``finding`` with its speed verdicts replaced (after the family correction)."""
    outcome = combined(speed)
    length_only = (
        outcome is Outcome.EQUIVALENT
        and any(v.changed for v in finding.latency)
        and not finding.same_output_length
    )
    return replace(finding, verdict=outcome, speed=speed, length_only=length_only)
