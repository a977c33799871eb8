"""The one rule that decides whether two conditions differ.

The unit of replication is the trial: every trial measures each condition
once, so a trial is a block. A comparison of condition B against condition A
takes one log-ratio ln(B_k / A_k) per trial k (machine state shared within a
trial cancels) and tests their mean across trials with Student's t at the
exact quantile for its degrees of freedom. Runs measured at different times
share no blocks: there the per-trial log values of each run are compared with
Welch's t-test.

Three outcomes, never "no effect" from overlapping intervals:

* ``changed``: significant at ``ALPHA`` (after Holm's correction over the
  family of verdicts, ``holm``) and the estimated ratio is at least
  ``PRACTICAL`` away from 1 on the log scale;
* ``equivalent``: two one-sided tests (TOST) at ``ALPHA`` put the ratio inside
  ±``PRACTICAL`` (the 90 % CI of the log-ratio within ±ln(1 + PRACTICAL));
* ``inconclusive``: neither. The verdict then says how small an effect this
  design could have detected: ``mde``, the relative change found with
  ``POWER`` probability at the observed spread and number of trials.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from functools import lru_cache

from scipy import optimize, special

from perflab.analyse.quantiles import t_quantile

ALPHA = 0.05
PRACTICAL = 0.05  # ratios within ×(1 ± 5 %) are not worth acting on
POWER = 0.80  # the power at which the minimal detectable effect is stated
MARGIN = math.log(1 + PRACTICAL)  # the practical threshold on the log scale


class Outcome(str, Enum):
    CHANGED = "changed"
    EQUIVALENT = "equivalent"
    INCONCLUSIVE = "inconclusive"


class Reason(str, Enum):
    SIGNIFICANT = "significant"  # changed: significant and beyond the threshold
    WITHIN_MARGIN = "within_margin"  # equivalent: TOST inside ± the threshold
    UNDERPOWERED = "underpowered"  # neither: the spread is too wide for these trials
    SMALL_EFFECT = "small_effect"  # significant, but under the threshold and not equivalent
    FAMILY = "family"  # significant alone, not after Holm's correction
    TOO_FEW_TRIALS = "too_few_trials"  # fewer than 2 trials (per run): no spread measured
    DISTURBED = "disturbed"  # rests on a disturbed trial no other trial settles
    NO_DATA = "no_data"  # a condition with no positive value


class Design(str, Enum):
    PAIRED = "paired"  # within-trial log-ratios, one-sample t across trials
    WELCH = "welch"  # independent runs, Welch's t on per-trial log values


@dataclass(frozen=True)
class Verdict:
    """B against A: the ratio B / A with its 95 % CI, the tests and the outcome.

    ``p_value``: two-sided test of ratio 1; ``p_adjusted``: after Holm over
    ``family`` verdicts (equal to ``p_value`` alone); ``p_equivalence``: the
    larger TOST p-value. ``mde``: the relative change (e.g. 0.08 for ×1.08)
    this design detects with ``POWER`` at ``ALPHA`` (before correction), from
    the observed spread; ``power``: its power against a change of exactly
    ``threshold``. ``n_trials``: pairs (paired) or the smaller run (Welch).
    """

    design: Design
    estimate: float | None
    low: float | None
    high: float | None
    p_value: float | None
    p_adjusted: float | None
    p_equivalence: float | None
    mde: float | None
    power: float | None
    n_trials: int
    df: float | None
    threshold: float
    family: int
    outcome: Outcome
    reason: Reason

    @property
    def changed(self) -> bool:
        return self.outcome is Outcome.CHANGED

    @property
    def equivalent(self) -> bool:
        return self.outcome is Outcome.EQUIVALENT

    @property
    def conclusive(self) -> bool:
        return self.outcome is not Outcome.INCONCLUSIVE


@dataclass(frozen=True)
class _Test:
    """A t statistic's ingredients on the log scale."""

    mean: float
    se: float
    df: float
    n: int


def _empty(design: Design, n: int, reason: Reason, estimate: float | None = None) -> Verdict:
    return Verdict(
        design, estimate, None, None, None, None, None, None, None, n, None, PRACTICAL, 1,
        Outcome.INCONCLUSIVE, reason,
    )  # fmt: skip


def _logs(values: Iterable[float | None]) -> list[float]:
    return [math.log(v) for v in values if v is not None and math.isfinite(v) and v > 0]


def _mean_var(values: Sequence[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    return mean, sum((v - mean) ** 2 for v in values) / (len(values) - 1)


def _t_sf(t: float, df: float) -> float:
    """P(T > t), also for t = ±inf (a spread of exactly 0)."""
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    return float(special.stdtr(df, -t))


def _ratio(test: _Test, x: float) -> float:
    return x / test.se if test.se > 0 else math.copysign(math.inf, x) if x else 0.0


def power_at(effect: float, se: float, df: float, alpha: float = ALPHA) -> float:
    """Power of the two-sided t-test at ``alpha`` against a true log-effect ``effect``."""
    if se <= 0:
        return 1.0
    critical = t_quantile(1 - alpha / 2, df)
    shift = abs(effect) / se
    found = (
        1 - float(special.nctdtr(df, shift, critical)) + float(special.nctdtr(df, shift, -critical))
    )
    return found if math.isfinite(found) else 1.0  # scipy's nct fails far in the tail


def minimal_effect(se: float, df: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true log-effect the two-sided t-test finds with ``power``."""
    return se * _detectable_shift(round(df, 2), alpha, power) if se > 0 else 0.0


@lru_cache(maxsize=4096)
def _detectable_shift(df: float, alpha: float, power: float) -> float:
    """The noncentrality (effect / se) at which the test at ``df`` reaches ``power``."""
    guess = t_quantile(1 - alpha / 2, df) + t_quantile(power, df)
    return float(
        optimize.brentq(lambda shift: power_at(shift, 1.0, df, alpha) - power, 0.0, 2 * guess + 1)
    )


def _decide(test: _Test, p_value: float, p_equivalence: float) -> tuple[Outcome, Reason]:
    if p_value < ALPHA and abs(test.mean) >= MARGIN:
        return Outcome.CHANGED, Reason.SIGNIFICANT
    if p_equivalence < ALPHA:
        return Outcome.EQUIVALENT, Reason.WITHIN_MARGIN
    if p_value < ALPHA:
        return Outcome.INCONCLUSIVE, Reason.SMALL_EFFECT
    return Outcome.INCONCLUSIVE, Reason.UNDERPOWERED


def _verdict(design: Design, test: _Test) -> Verdict:
    p_value = min(1.0, 2 * _t_sf(abs(_ratio(test, test.mean)), test.df))
    p_equivalence = max(
        _t_sf(_ratio(test, test.mean + MARGIN), test.df),
        1 - _t_sf(_ratio(test, test.mean - MARGIN), test.df),
    )
    half = t_quantile(1 - ALPHA / 2, test.df) * test.se
    outcome, reason = _decide(test, p_value, p_equivalence)
    return Verdict(
        design=design,
        estimate=math.exp(test.mean),
        low=math.exp(test.mean - half),
        high=math.exp(test.mean + half),
        p_value=p_value,
        p_adjusted=p_value,
        p_equivalence=p_equivalence,
        mde=math.expm1(minimal_effect(test.se, test.df)),
        power=power_at(MARGIN, test.se, test.df),
        n_trials=test.n,
        df=test.df,
        threshold=PRACTICAL,
        family=1,
        outcome=outcome,
        reason=reason,
    )


def paired(pairs: Iterable[tuple[float | None, float | None]]) -> Verdict:
    """B against A from one (a, b) pair per trial: one-sample t on ln(b / a)."""
    usable = [
        (a, b)
        for a, b in pairs
        if a is not None and b is not None and a > 0 and b > 0
        and math.isfinite(a) and math.isfinite(b)
    ]  # fmt: skip
    return log_ratios([math.log(b / a) for a, b in usable])


def log_ratios(logs: Sequence[float]) -> Verdict:
    """B against A from one within-trial log-ratio ln(B / A) per trial."""
    if not logs:
        return _empty(Design.PAIRED, 0, Reason.NO_DATA)
    if len(logs) < 2:
        return _empty(Design.PAIRED, 1, Reason.TOO_FEW_TRIALS, math.exp(logs[0]))
    mean, variance = _mean_var(logs)
    test = _Test(mean, math.sqrt(variance / len(logs)), len(logs) - 1, len(logs))
    return _verdict(Design.PAIRED, test)


def welch(a_values: Iterable[float | None], b_values: Iterable[float | None]) -> Verdict:
    """B against A from independent per-trial values of each: Welch's t on their logs."""
    la, lb = _logs(a_values), _logs(b_values)
    if not la or not lb:
        return _empty(Design.WELCH, min(len(la), len(lb)), Reason.NO_DATA)
    estimate = math.exp(sum(lb) / len(lb) - sum(la) / len(la))
    if len(la) < 2 or len(lb) < 2:
        return _empty(Design.WELCH, min(len(la), len(lb)), Reason.TOO_FEW_TRIALS, estimate)
    (ma, va), (mb, vb) = _mean_var(la), _mean_var(lb)
    sa, sb = va / len(la), vb / len(lb)
    se = math.sqrt(sa + sb)
    if se > 0:
        df = (sa + sb) ** 2 / (sa**2 / (len(la) - 1) + sb**2 / (len(lb) - 1))
    else:
        df = float(len(la) + len(lb) - 2)
    return _verdict(Design.WELCH, _Test(mb - ma, se, df, min(len(la), len(lb))))


def disturbed(verdict: Verdict) -> Verdict:
    """``verdict`` made inconclusive: it rests on a disturbed trial none of the others settle."""
    return replace(verdict, outcome=Outcome.INCONCLUSIVE, reason=Reason.DISTURBED)


def holm(verdicts: Sequence[Verdict | None]) -> list[Verdict | None]:
    """The verdicts with Holm-adjusted p-values over the family of those with a test,
    ``changed`` re-decided on the adjusted p-value (``None`` entries pass through)."""
    tested = [i for i, v in enumerate(verdicts) if v is not None and v.p_value is not None]
    size = len(tested)
    order = sorted(tested, key=lambda i: verdicts[i].p_value)
    adjusted: dict[int, float] = {}
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (size - rank) * verdicts[index].p_value))
        adjusted[index] = running
    found = list(verdicts)
    for index in tested:
        found[index] = _readjusted(verdicts[index], adjusted[index], size)
    return found


def _readjusted(verdict: Verdict, p_adjusted: float, size: int) -> Verdict:
    update = {"p_adjusted": p_adjusted, "family": size}
    if verdict.changed and p_adjusted >= ALPHA:
        equivalent = verdict.p_equivalence is not None and verdict.p_equivalence < ALPHA
        update["outcome"] = Outcome.EQUIVALENT if equivalent else Outcome.INCONCLUSIVE
        update["reason"] = Reason.WITHIN_MARGIN if equivalent else Reason.FAMILY
    return replace(verdict, **update)


def unsettled(trials: Iterable[tuple[str, Sequence[tuple[str, bool]]]]) -> tuple[str, ...]:
    """The one rule for disturbed trials: the ids of those their condition does not settle.

    ``trials``: per condition, its (experiment id, disturbed) trials. A condition
    settles its disturbed trials when it has two or more trials and at least one
    is undisturbed: the spread across trials, which every verdict tests
    against, then includes what the disturbance did.
    """
    found = []
    for _, group in trials:
        hit = [experiment for experiment, flag in group if flag]
        if hit and (len(group) < 2 or len(hit) == len(group)):
            found += hit
    return tuple(sorted(found))
