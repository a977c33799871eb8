"""How TTFT and latency grow with prompt length (prompt_length suite).

Only conditions with ``prompt_cache == "bust"`` enter the fit: a prompt
served from the server's cache would flatten it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
import polars as pl

from perflab.analyse.findings.frame import (
    Condition,
    LinearFit,
    conditions,
    linear_fit,
    measured,
    same,
    suite_rows,
    unsettled,
)

MIN_FIT_POINTS = 3  # fewer prompt lengths: a line always fits, no verdict
GOOD_FIT_R2 = 0.8  # below this R² a straight line does not describe the points
FLAT_SHARE = 0.10  # TTFT rises less than 10 % of its mean over the whole range: flat
# superlinear: a parabola removes ≥ 50 % of the line's residual and bends upwards
SUPERLINEAR_RESIDUAL_CUT = 0.5
SUPERLINEAR_MAX_R2 = 0.98  # a line this good leaves nothing for a parabola to explain


class PromptLengthVerdict(str, Enum):
    LINEAR = "linear"
    SUPERLINEAR = "superlinear"
    FLAT = "flat"
    INCONCLUSIVE = "inconclusive"


class PromptLengthReason(str, Enum):
    TOO_FEW_POINTS = "too_few_points"
    POOR_FIT = "poor_fit"
    DISTURBED = "disturbed"


@dataclass(frozen=True)
class PromptLengthFinding:
    verdict: PromptLengthVerdict | None  # None: fewer than 2 prompt lengths measured
    reason: PromptLengthReason | None  # why inconclusive
    points: tuple[Condition, ...]  # fitted conditions, shortest prompt first
    ttft_fit: LinearFit
    e2e_fit: LinearFit
    prefill_tps: float | None  # 1 / TTFT slope, only when the slope is positive
    ttft_rise_s: float | None  # slope × token range: what the fit says prompt length adds
    same_output_length: bool
    excluded_cached: tuple[str, ...]  # reuse conditions left out of the fit
    disturbed: tuple[str, ...]  # unsettled disturbed trials among the points


def _superlinear(points: list[Condition], fit: LinearFit) -> bool:
    if len(points) < 4 or fit.r2 is None or fit.r2 >= SUPERLINEAR_MAX_R2:
        return False
    x = np.array([p.prompt_tokens_mean for p in points], dtype=float)
    y = np.array([p.ttft.mean for p in points], dtype=float)
    parabola = np.polyfit(x, y, 2)
    line_residual = float(((y - (fit.slope * x + fit.intercept)) ** 2).sum())
    curve_residual = float(((y - np.polyval(parabola, x)) ** 2).sum())
    cut = 1 - curve_residual / line_residual if line_residual > 0 else 0.0
    return parabola[0] > 0 and cut >= SUPERLINEAR_RESIDUAL_CUT


def _verdict(points, fit, rise, disturbed):
    if disturbed:
        return PromptLengthVerdict.INCONCLUSIVE, PromptLengthReason.DISTURBED
    if fit.n < MIN_FIT_POINTS:
        return PromptLengthVerdict.INCONCLUSIVE, PromptLengthReason.TOO_FEW_POINTS
    mean_ttft = sum(p.ttft.mean for p in points) / len(points)
    if rise <= FLAT_SHARE * mean_ttft:
        return PromptLengthVerdict.FLAT, None
    if _superlinear(points, fit):
        return PromptLengthVerdict.SUPERLINEAR, None
    if fit.r2 >= GOOD_FIT_R2:
        return PromptLengthVerdict.LINEAR, None
    return PromptLengthVerdict.INCONCLUSIVE, PromptLengthReason.POOR_FIT


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
    ttft = linear_fit(tokens, [p.ttft.mean for p in points])
    e2e = linear_fit(tokens, [p.e2e.mean for p in points])
    unsettled_ids = unsettled(points)
    verdict = reason = rise = prefill = None
    if ttft.slope is not None:
        rise = ttft.slope * (max(tokens) - min(tokens))
        prefill = 1.0 / ttft.slope if ttft.slope > 0 else None
        verdict, reason = _verdict(points, ttft, rise, unsettled_ids)
    return PromptLengthFinding(
        verdict=verdict,
        reason=reason,
        points=tuple(points),
        ttft_fit=ttft,
        e2e_fit=e2e,
        prefill_tps=prefill,
        ttft_rise_s=rise,
        same_output_length=same([p.output_tokens_mean for p in points]),
        excluded_cached=cached,
        disturbed=unsettled_ids,
    )
