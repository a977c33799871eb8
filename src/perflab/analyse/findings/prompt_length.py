"""How TTFT and latency grow with prompt length (prompt_length suite).

The observations are each trial's mean TTFT at each prompt length (the
requests of one experiment share its machine state, so the experiment, not
the request, is the observation), regressed on prompt tokens with each trial
a block (``statistics.linear_fit``): the slope has a Student-t CI, and an F-test
of an added x² term tests curvature. ``prefill_tps`` is 1 / slope, the rate
at which the server takes each extra prompt token, with the CI from the
slope's, only when the slope is significantly positive (never infinite).

``flat`` when even the slope's upper CI adds less than ``FLAT_SHARE`` of
mean TTFT over the range; ``superlinear`` when the slope and an upward
curvature are both significant; with a significant slope and no curvature
detected, ``linear`` only when an equivalence test (TOST) puts the x² term
within a bend of ``BEND_SHARE`` of the rise, else ``grows`` (no curvature
detected is no evidence of a straight line); otherwise ``inconclusive``. Only conditions with
``prompt_cache == "bust"`` enter the fit: a prompt served from the server's
cache would flatten it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import polars as pl
from scipy import stats

from perflab.analyse.findings.frame import Condition, conditions, measured, suite_rows, unsettled
from perflab.analyse.findings.statistics import LinearFit, linear_fit, same
from perflab.analyse.verdict import ALPHA, power_at

MIN_FIT_POINTS = 3  # fewer prompt lengths: a line always fits, no verdict
FLAT_SHARE = 0.10  # TTFT rises less than 10 % of its mean over the whole range: flat
# a bend that matters: at mid-range, the curve 10 % of the line's rise away from the line
BEND_SHARE = 0.10


class PromptLengthVerdict(str, Enum):
    LINEAR = "linear"  # straight within BEND_SHARE, by an equivalence test
    GROWS = "grows"  # grows, no curvature detected, straightness not shown
    SUPERLINEAR = "superlinear"
    FLAT = "flat"
    INCONCLUSIVE = "inconclusive"


class PromptLengthReason(str, Enum):
    TOO_FEW_POINTS = "too_few_points"
    UNDERPOWERED = "underpowered"  # the slope is neither shown positive nor shown flat
    FALLS = "falls"  # TTFT falls with prompt length: not a prefill cost
    DISTURBED = "disturbed"


@dataclass(frozen=True)
class PromptLengthFinding:
    verdict: PromptLengthVerdict | None  # None: fewer than 2 prompt lengths measured
    reason: PromptLengthReason | None  # why inconclusive
    points: tuple[Condition, ...]  # fitted conditions, shortest prompt first
    ttft_fit: LinearFit
    e2e_fit: LinearFit
    prefill_tps: float | None  # 1 / TTFT slope, only when the slope is significantly positive
    prefill_tps_low: float | None  # 1 / the slope's upper CI
    prefill_tps_high: float | None  # 1 / the slope's lower CI
    ttft_rise_s: float | None  # slope × token range: what the fit says prompt length adds
    same_output_length: bool
    excluded_cached: tuple[str, ...]  # reuse conditions left out of the fit
    disturbed: tuple[str, ...]  # unsettled disturbed trials among the points
    straightness: Straightness | None = None  # the curvature tests, when a line grows


@dataclass(frozen=True)
class Straightness:
    """What the TTFT fit's x² term shows about a bend of ``BEND_SHARE`` of the rise."""

    bend_limit: float  # the x² coefficient of that bend: 4 · BEND_SHARE · slope / range
    p_curvature: float  # the F-test of any curvature (two-sided)
    power: float  # that F-test's power against a bend at bend_limit
    p_equivalence: float  # TOST: the x² term within ± bend_limit


def straightness(fit: LinearFit, tokens: list[float]) -> Straightness | None:
    """The curvature tests of ``fit`` over ``tokens``; None without an x² fit or a rise."""
    span = max(tokens, default=0.0) - min(tokens, default=0.0)
    if None in (fit.curvature_se, fit.p_curvature, fit.slope) or span <= 0 or fit.slope <= 0:
        return None
    limit, se, df = 4 * BEND_SHARE * fit.slope / span, fit.curvature_se, fit.df - 1
    if se > 0:
        below, above = (fit.curvature + limit) / se, (limit - fit.curvature) / se
        p_equivalence = max(float(stats.t.sf(below, df)), float(stats.t.sf(above, df)))
    else:
        p_equivalence = 0.0 if abs(fit.curvature) < limit else 1.0
    return Straightness(limit, fit.p_curvature, power_at(limit, se, df), p_equivalence)


def _verdict(points, fit, disturbed, straight: Straightness | None):
    if disturbed:
        return PromptLengthVerdict.INCONCLUSIVE, PromptLengthReason.DISTURBED
    if len(points) < MIN_FIT_POINTS or fit.slope_high is None:
        return PromptLengthVerdict.INCONCLUSIVE, PromptLengthReason.TOO_FEW_POINTS
    tokens = [p.prompt_tokens_mean for p in points]
    mean_ttft = sum(p.ttft.mean for p in points) / len(points)
    if max(fit.slope_high, 0.0) * (max(tokens) - min(tokens)) < FLAT_SHARE * mean_ttft:
        return PromptLengthVerdict.FLAT, None
    if fit.p_slope < ALPHA and fit.slope < 0:
        return PromptLengthVerdict.INCONCLUSIVE, PromptLengthReason.FALLS
    if fit.p_slope >= ALPHA:
        return PromptLengthVerdict.INCONCLUSIVE, PromptLengthReason.UNDERPOWERED
    bends = fit.p_curvature is not None and fit.p_curvature < ALPHA and fit.curvature > 0
    if bends:
        return PromptLengthVerdict.SUPERLINEAR, None
    if straight is not None and straight.p_equivalence < ALPHA:
        return PromptLengthVerdict.LINEAR, None
    return PromptLengthVerdict.GROWS, None


def _observations(points: list[Condition], figure: str):
    """One (prompt tokens, trial mean, trial) per trial of each point."""
    return [
        (p.prompt_tokens_mean, getattr(t, figure), t.trial)
        for p in points
        for t in p.per_trial
        if getattr(t, figure) is not None
    ]


def _fit(points: list[Condition], figure: str) -> LinearFit:
    rows = _observations(points, figure)
    return linear_fit([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])


def summary(frame: pl.DataFrame, disturbed: tuple[str, ...] = ()) -> PromptLengthFinding:
    found = conditions(suite_rows(frame, "prompt_length"), disturbed)
    cached = tuple(c.condition_id for c in found if c.prompt_cache != "bust")
    points = sorted(
        (
            c
            for c in measured(found)
            if c.prompt_cache == "bust"
            and c.ttft.mean is not None
            and c.prompt_tokens_mean is not None
        ),
        key=lambda c: c.prompt_tokens_mean,
    )
    tokens = [p.prompt_tokens_mean for p in points]
    ttft, e2e = _fit(points, "ttft"), _fit(points, "e2e")
    unsettled_ids = unsettled(points)
    verdict = reason = rise = None
    prefill = (None, None, None)
    straight = straightness(ttft, tokens)
    if ttft.slope is not None:
        rise = ttft.slope * (max(tokens) - min(tokens))
        verdict, reason = _verdict(points, ttft, unsettled_ids, straight)
        if ttft.slope_low is not None and ttft.slope_low > 0 and ttft.p_slope < ALPHA:
            prefill = (1 / ttft.slope, 1 / ttft.slope_high, 1 / ttft.slope_low)
    return PromptLengthFinding(
        verdict=verdict,
        reason=reason,
        points=tuple(points),
        ttft_fit=ttft,
        e2e_fit=e2e,
        prefill_tps=prefill[0],
        prefill_tps_low=prefill[1],
        prefill_tps_high=prefill[2],
        ttft_rise_s=rise,
        same_output_length=same([p.output_tokens_mean for p in points]),
        excluded_cached=cached,
        disturbed=unsettled_ids,
        straightness=straight,
    )
