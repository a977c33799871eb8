"""The summary's quantiles from scipy.special equal scipy.stats' own."""

import itertools

import pytest
from scipy import stats

from perflab.analyse.quantiles import binomial_quantile, t_quantile


@pytest.mark.parametrize("df", [1, 2, 3, 4.5, 9, 29, 100, 1e6])
def test_t_quantile_is_scipy_stats_t_ppf(df):
    for probability in (0.025, 0.5, 0.9, 0.975, 0.995):
        assert t_quantile(probability, df) == pytest.approx(stats.t.ppf(probability, df), rel=1e-12)


def test_binomial_quantile_is_scipy_stats_binom_ppf():
    # the CI ends the summary uses, every sample size up to 1,000, its percentiles. (At an
    # exact tie, where P(X <= k) equals the probability, as for 0.5 at p = 0.5, the two
    # round k's cumulative probability differently and may differ by one.)
    cases = itertools.product((0.025, 0.975), range(1, 1001), (0.5, 0.9, 0.95, 0.99))
    mismatches = [
        (q, n, p, binomial_quantile(q, n, p), int(stats.binom.ppf(q, n, p)))
        for q, n, p in cases
        if binomial_quantile(q, n, p) != int(stats.binom.ppf(q, n, p))
    ]
    assert mismatches == []


def test_binomial_quantile_at_the_ends():
    assert binomial_quantile(0.025, 1, 0.5) == 0  # P(X <= 0) = 0.5 already covers 2.5 %
    assert binomial_quantile(0.975, 1, 0.5) == 1
    assert binomial_quantile(0.975, 20, 0.99) == 20
