"""The verdict rule: exact t, Welch, Holm, TOST, and its error rates by simulation.

The simulation draws thousands of synthetic runs (seeded; no server): per
trial k a block effect shared by both conditions and each condition's own
noise, so the within-trial paired ratio B_k / A_k has a 3 % coefficient of
variation. It measures the rule's false-positive rate on equal conditions
and its power for a 10 % effect, beside the overlap rule it replaced
(non-overlapping 95 % CIs of each condition's trial means and a difference
of at least 5 %). ``docs/metrics.md`` quotes the printed figures.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from perflab.analyse import verdict
from perflab.analyse.verdict import Outcome, Reason

RUNS = 4000
PAIRED_CV = 0.03  # sd of ln(B_k / A_k)
EFFECT = 1.10


def _draw(rng, trials: int, effect: float, block_sd: float) -> np.ndarray:
    """(runs, trials, 2) condition means: A and B of each trial share its block effect."""
    noise = rng.normal(0.0, PAIRED_CV / math.sqrt(2), size=(RUNS, trials, 2))
    blocks = rng.normal(0.0, block_sd, size=(RUNS, trials, 1))
    logs = noise + blocks + np.array([0.0, math.log(effect)])
    return np.exp(logs)


def _overlap_rule(data: np.ndarray) -> np.ndarray:
    """The replaced rule, per run: the 95 % CIs of the two conditions' trial means
    do not overlap and their means differ by at least 5 %."""
    k = data.shape[1]
    means = data.mean(axis=1)
    half = stats.t.ppf(0.975, k - 1) * data.std(axis=1, ddof=1) / math.sqrt(k)
    (ma, mb), (ha, hb) = means.T, half.T
    apart = (ma + ha < mb - hb) | (mb + hb < ma - ha)
    return apart & (np.abs(mb - ma) / np.maximum(ma, mb) >= 0.05)


def _rates(trials: int, effect: float, block_sd: float = 0.0, seed: int = 18):
    data = _draw(np.random.default_rng(seed), trials, effect, block_sd)
    found = [verdict.paired(zip(run[:, 0], run[:, 1], strict=True)) for run in data]
    changed = sum(v.outcome is Outcome.CHANGED for v in found) / RUNS
    equivalent = sum(v.outcome is Outcome.EQUIVALENT for v in found) / RUNS
    old = float(_overlap_rule(data).mean())
    return changed, equivalent, old


@pytest.mark.parametrize("trials", [2, 3, 4, 6])
def test_equal_conditions_are_called_changed_at_most_5_percent_of_the_time(trials):
    changed, equivalent, old = _rates(trials, 1.0)
    print(
        f"FPR {trials} trials: rule {changed:.2%}, overlap rule {old:.2%}, equivalent {equivalent:.1%}"
    )
    assert changed <= 0.05


@pytest.mark.parametrize(("trials", "floor"), [(3, 0.75), (4, 0.95)])
def test_a_10_percent_effect_at_3_percent_cv_is_found(trials, floor):
    changed, _, old = _rates(trials, EFFECT)
    print(f"power {trials} trials: rule {changed:.1%}, overlap rule {old:.1%}")
    assert changed >= floor
    assert old < changed  # the overlap rule it replaced had less power on the same data


def test_pairing_cancels_drift_that_the_overlap_rule_cannot():
    changed, _, old = _rates(3, EFFECT, block_sd=0.05)
    print(f"power 3 trials with 5 % block drift: rule {changed:.1%}, overlap rule {old:.1%}")
    assert changed >= 0.75 and old < 0.25


def test_equal_quiet_conditions_are_shown_equivalent_with_enough_trials():
    _, equivalent, _ = _rates(6, 1.0)
    print(f"equivalent at 6 trials: {equivalent:.1%}")
    assert equivalent >= 0.9


def test_the_t_quantile_is_exact_for_any_degrees_of_freedom():
    # 21 pairs of log-ratio mean 0.1, sd 0.05: the CI uses t(0.975, 20) = 2.086, not 1.96
    logs = [0.1 + 0.05 * z for z in stats.norm.ppf(np.linspace(0.02, 0.98, 21))]
    logs = [x - (sum(logs) / 21 - 0.1) for x in logs]
    found = verdict.paired((1.0, math.exp(x)) for x in logs)
    se = np.std(logs, ddof=1) / math.sqrt(21)
    assert found.df == 20
    assert math.log(found.high) - 0.1 == pytest.approx(2.085963 * se, rel=1e-5)
    assert found.outcome is Outcome.CHANGED and found.estimate == pytest.approx(math.exp(0.1))


def test_one_trial_is_never_conclusive_and_says_why():
    found = verdict.paired([(1.0, 2.0)])
    assert found.outcome is Outcome.INCONCLUSIVE and found.reason is Reason.TOO_FEW_TRIALS
    assert found.estimate == 2.0 and found.mde is None
    assert verdict.paired([(None, 1.0), (0.0, 1.0)]).reason is Reason.NO_DATA


def test_a_significant_effect_under_the_threshold_is_not_changed():
    found = verdict.paired([(1.0, 1.02), (1.0, 1.021), (1.0, 1.019), (1.0, 1.02)])
    assert found.p_value < 0.001 and found.outcome is Outcome.EQUIVALENT


def test_a_wide_spread_is_inconclusive_with_its_minimal_detectable_effect():
    found = verdict.paired([(1.0, 1.3), (1.0, 0.8), (1.0, 1.1)])
    assert found.outcome is Outcome.INCONCLUSIVE and found.reason is Reason.UNDERPOWERED
    se = np.std(np.log([1.3, 0.8, 1.1]), ddof=1) / math.sqrt(3)
    assert verdict.power_at(math.log1p(found.mde), se, 2) == pytest.approx(0.8, abs=1e-6)
    assert found.power < 0.1


def test_a_spread_of_zero_is_decided_not_divided_by():
    found = verdict.paired([(1.0, 1.8), (1.1, 1.98)])
    assert found.outcome is Outcome.CHANGED and found.p_value < 1e-12
    same = verdict.paired([(1.0, 1.0), (2.0, 2.0)])
    assert same.outcome is Outcome.EQUIVALENT


def test_welch_compares_independent_runs_with_satterthwaite_df():
    a, b = [10.0, 10.4, 9.8], [12.0, 11.0, 12.6, 11.8]
    found = verdict.welch(a, b)
    reference = stats.ttest_ind(np.log(b), np.log(a), equal_var=False)
    assert found.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert found.df == pytest.approx(reference.df, rel=1e-9)
    assert found.outcome is Outcome.CHANGED and found.n_trials == 3
    assert verdict.welch([10.0], b).reason is Reason.TOO_FEW_TRIALS


def test_holm_adjusts_over_the_family_and_redecides_changed():
    strong = verdict.paired([(1.0, 1.5), (1.0, 1.52), (1.0, 1.49)])
    weak = verdict.paired([(1.0, 1.12), (1.0, 1.06), (1.0, 1.09)])
    unclear = verdict.paired([(1.0, 1.12), (1.0, 1.02), (1.0, 1.08)])
    assert weak.changed and 0.025 < weak.p_value < 0.05 and unclear.p_value > 0.05
    family = [weak, None, strong, verdict.paired([(1.0, 2.0)]), unclear]
    adjusted = verdict.holm(family)
    assert adjusted[1] is None and adjusted[3].p_adjusted is None
    assert adjusted[2].p_adjusted == pytest.approx(3 * strong.p_value) and adjusted[2].changed
    assert adjusted[0].p_adjusted == pytest.approx(2 * weak.p_value) and adjusted[0].family == 3
    assert adjusted[0].outcome is Outcome.INCONCLUSIVE and adjusted[0].reason is Reason.FAMILY
    assert adjusted[4].p_adjusted == pytest.approx(max(2 * weak.p_value, unclear.p_value))


def test_one_rule_says_which_disturbed_trials_are_unsettled():
    groups = [
        ("settled", [("a1", True), ("a2", False)]),
        ("one pass", [("b1", True)]),
        ("all disturbed", [("c1", True), ("c2", True)]),
        ("quiet", [("d1", False)]),
    ]
    assert verdict.unsettled(groups) == ("b1", "c1", "c2")


def test_the_curvature_test_fires_at_about_alpha_on_an_exactly_linear_truth():
    from perflab.analyse.findings.statistics import linear_fit

    rng = np.random.default_rng(7)
    tokens = np.geomspace(8, 3000, 5)  # log-even prompt lengths
    x = np.tile(tokens, 3)
    blocks = np.repeat([1, 2, 3], len(tokens))
    fired = 0
    for _ in range(1000):
        y = 0.02 + x / 2000 + rng.normal(0, 0.01, len(x)) + rng.normal(0, 0.01, 3)[blocks - 1]
        fit = linear_fit(x, y, blocks)
        fired += fit.p_curvature < 0.05 and fit.curvature > 0
    print(f"superlinear on a linear truth: {fired / 1000:.1%}")
    assert fired / 1000 <= 0.05
