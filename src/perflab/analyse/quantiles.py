"""The two quantiles every experiment job's summary needs, from ``scipy.special``.

``scipy.stats`` gives the same numbers but takes ~0.5 s more to import, which every
experiment job paid before its files were written (docs/performance.md, section 2);
``tests/test_quantiles.py`` checks these against ``scipy.stats``."""

from __future__ import annotations

import math

from scipy import special


def t_quantile(probability: float, df: float) -> float:
    """Student t's exact quantile, for any degrees of freedom."""
    return float(special.stdtrit(df, probability))


def binomial_quantile(probability: float, n: int, p: float) -> int:
    """The smallest k with P(X <= k) >= ``probability`` for X ~ Binomial(n, p), as
    ``scipy.stats.binom.ppf``. ``bdtrik`` inverts the continuous extension of the
    distribution function; the steps settle the integer it rounds to."""
    k = max(0, min(n, math.ceil(special.bdtrik(probability, n, p))))
    while k > 0 and special.bdtr(k - 1, n, p) >= probability:
        k -= 1
    while k < n and special.bdtr(k, n, p) < probability:
        k += 1
    return k
