"""One figure over its trials: its spread, how far its values lie apart, and a
least-squares line with each trial a block.

``Spread`` describes one figure: with two or more trials its interval is the
95 % CI of the trial means (Student t at the exact quantile); with one trial it
is the request-level CI of that single pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from perflab.analyse.quantiles import t_quantile

SAME_OUTPUT_LENGTH = 0.05  # mean output lengths within 5 % of each other count as equal


@dataclass(frozen=True)
class Spread:
    """One figure of a condition over its trials.

    ``mean`` is the mean of the trial means; ``ci95`` the half-width of its
    95 % CI: between trials (Student t over the trial means) when
    ``between_trials``, else the request-level CI of the one pass (null with
    one request). ``low`` and ``high`` are the smallest and largest trial mean.
    """

    mean: float | None
    ci95: float | None
    low: float | None
    high: float | None
    trials: int
    between_trials: bool

    @property
    def interval(self) -> tuple[float, float] | None:
        if self.mean is None:
            return None
        half = self.ci95 or 0.0
        return (self.mean - half, self.mean + half)


def finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def spread(trial_means, request_ci: float | None = None) -> Spread:
    """The spread of one figure from its trial means (and the one pass's request CI)."""
    values = finite(trial_means)
    if not values:
        return Spread(None, None, None, None, 0, False)
    mean = sum(values) / len(values)
    if len(values) >= 2:
        ci = (
            t_quantile(0.975, len(values) - 1)
            * float(np.std(values, ddof=1))
            / math.sqrt(len(values))
        )
        return Spread(mean, ci, min(values), max(values), len(values), True)
    ci = request_ci if request_ci is not None and math.isfinite(request_ci) else None
    return Spread(mean, ci, mean, mean, 1, False)


def relative_range(values) -> float | None:
    """(largest − smallest) / largest of the finite ``values``; None with fewer than 2."""
    values = finite(values)
    if len(values) < 2:
        return None
    high = max(abs(v) for v in values)
    return (max(values) - min(values)) / high if high > 0 else 0.0


def same(values, tolerance: float = SAME_OUTPUT_LENGTH) -> bool:
    """Whether the finite ``values`` lie within ``tolerance`` (relative) of each other."""
    difference = relative_range(values)
    return difference is None or difference <= tolerance


@dataclass(frozen=True)
class LinearFit:
    """Least-squares line ``y = slope·x + intercept`` over n observations, each trial a block.

    With trials, each has its own intercept (a block: drift between trials moves
    every point of a trial alike); ``intercept`` is their mean. ``slope_low`` /
    ``slope_high``: its 95 % CI (Student t, ``df`` = n − trials − 1);
    ``p_slope``: two-sided test of slope 0; ``p_curvature``: the F-test of an
    added x² term (``curvature`` its coefficient), with one more degree of
    freedom used. R² is of the line with its blocks.
    """

    slope: float | None
    intercept: float | None
    r2: float | None
    n: int
    slope_low: float | None = None
    slope_high: float | None = None
    p_slope: float | None = None
    df: int | None = None
    curvature: float | None = None
    p_curvature: float | None = None
    curvature_se: float | None = None  # the x² coefficient's standard error, df − 1


def _design(x: np.ndarray, blocks: np.ndarray, square: bool) -> np.ndarray:
    columns = [x, x**2] if square else [x]
    levels = sorted(set(blocks.tolist()))
    columns += [(blocks == level).astype(float) for level in levels]
    return np.column_stack(columns)


def _least_squares(design: np.ndarray, y: np.ndarray):
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coefficients
    return coefficients, float(residual @ residual)


def linear_fit(x, y, blocks=None) -> LinearFit:
    """Pairs with a missing or non-finite value are dropped; < 2 points or no x spread: no line.
    ``blocks``: each observation's trial (all one block when None)."""
    x = np.asarray([np.nan if v is None else v for v in x], dtype=float)
    y = np.asarray([np.nan if v is None else v for v in y], dtype=float)
    groups = np.asarray([0] * len(x) if blocks is None else list(blocks))
    keep = np.isfinite(x) & np.isfinite(y)
    x, y, groups = x[keep], y[keep], groups[keep]
    n = int(len(x))
    if n < 2 or np.ptp(x) == 0:
        return LinearFit(None, None, None, n)
    design = _design(x, groups, square=False)
    coefficients, rss = _least_squares(design, y)
    slope, intercept = float(coefficients[0]), float(np.mean(coefficients[1:]))
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - rss / total if total > 0 else 1.0
    df = n - design.shape[1]
    if df < 1:
        return LinearFit(slope, intercept, r2, n)
    covariance = np.linalg.pinv(design.T @ design) * rss / df
    se = math.sqrt(max(float(covariance[0, 0]), 0.0))
    half = t_quantile(0.975, df) * se
    p_slope = 2 * float(stats.t.sf(abs(slope) / se, df)) if se > 0 else float(slope == 0)
    curvature = p_curvature = curvature_se = None
    if df >= 2 and len(set(x.tolist())) >= 3:
        square_design = _design(x, groups, square=True)
        square, rss_square = _least_squares(square_design, y)
        curvature = float(square[1])
        spread = np.linalg.pinv(square_design.T @ square_design)[1, 1] * rss_square / (df - 1)
        curvature_se = math.sqrt(max(float(spread), 0.0))
        if rss_square > 0:
            f_value = (rss - rss_square) / (rss_square / (df - 1))
            p_curvature = float(stats.f.sf(f_value, 1, df - 1))
        else:
            p_curvature = 0.0 if rss > 0 else 1.0
    return LinearFit(
        slope,
        intercept,
        r2,
        n,
        slope - half,
        slope + half,
        p_slope,
        df,
        curvature,
        p_curvature,
        curvature_se,
    )
