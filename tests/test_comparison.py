"""The comparison of targets from constructed summaries: ratios, CIs, verdicts, words."""

import polars as pl
import pytest

from perflab.analyse import verdict
from perflab.analyse.findings import comparison
from perflab.analyse.findings.comparison import ComparisonVerdict, label
from perflab.analyse.findings.frame import with_defaults
from perflab.present.wording import comparison as words

POINTS = ("short-t0.7-w1-n4", "long-t0.7-w1-n4", "medium-t0.7-w2-n4")


def rows(target: str, trials: int, tps: float, ttft: float, jitter=(1.0, 1.02, 0.98), noise=()):
    noise = noise or (1.0,)
    found = []
    for trial in range(1, trials + 1):
        for index, point in enumerate(POINTS):
            drift = jitter[(trial + index) % len(jitter)]
            found.append(
                {
                    "experiment_id": f"{target}--{point}-r{trial}",
                    "condition_id": f"{target}--{point}",
                    "target": target,
                    "trial": trial,
                    "n_ok": 4,
                    "n_requests": 4,
                    # drift of the machine hits both twins of a pair alike
                    "tps_mean": tps / drift * noise[len(found) % len(noise)],
                    "ttft_mean_s": ttft * drift,
                    "e2e_mean_s": (ttft + 16 / tps) * drift,
                    "req_per_s": 1 / ((ttft + 16 / tps) * drift),
                    "prompt_tokens_mean": 40.0,
                    "prefill_mean_s": 0.02 * drift,
                    "output_tokens_mean": 16.0,
                    "engine": "calibration",
                    "model": "m",
                }
            )
    return found


def finding(trials=3, disturbed=(), slow_tps=100 / 1.5):
    frame = with_defaults(
        pl.DataFrame(
            rows("fast", trials, 100.0, 0.05)
            + rows("slow", trials, slow_tps, 0.05, noise=(1.0, 1.01, 0.99, 1.02, 0.98))
        )
    )
    return comparison.summary(frame, "fast", ["fast", "slow"], disturbed)


def slow(found, key):
    return next(t for t in found.metric(key).targets if t.target == "slow")


def test_a_target_one_and_a_half_times_slower_is_called_slower_by_1_5():
    found = finding()
    tps = slow(found, "tps")
    assert tps.verdict is ComparisonVerdict.SLOWER
    assert tps.ratio.estimate == pytest.approx(1 / 1.5, rel=0.01)
    assert tps.factor == pytest.approx(1.5, rel=0.01)
    assert tps.factor_low <= 1.5 <= tps.factor_high
    assert tps.ratio.n_trials == 3  # the trial is the unit, not its points
    assert tps.ratio.family == 5  # Holm over every tested metric of the target
    assert slow(found, "ttft").verdict is ComparisonVerdict.EQUIVALENT
    assert slow(found, "server_prefill_tps").verdict is ComparisonVerdict.EQUIVALENT
    assert slow(found, "e2e").verdict is ComparisonVerdict.SLOWER
    assert found.points == tuple(sorted(POINTS)) and found.trials == 3 and not found.one_pass
    text = words.verdict_text(tps, found)
    assert text.startswith("slower, ×1.5") and "(95 % CI ×1.4" in text


def test_a_faster_target_is_called_faster():
    tps = slow(finding(slow_tps=130.0), "tps")
    assert tps.verdict is ComparisonVerdict.FASTER and tps.factor == pytest.approx(1.3, rel=0.01)


def test_one_pass_is_inconclusive_whatever_the_ratio():
    found = finding(trials=1)
    assert found.one_pass
    tps = slow(found, "tps")
    assert tps.verdict is ComparisonVerdict.INCONCLUSIVE
    assert "one pass" in words.verdict_text(tps, found)


def test_a_disturbed_pair_that_no_trial_settles_is_inconclusive():
    hit = ("slow--short-t0.7-w1-n4-r1", "slow--short-t0.7-w1-n4-r2")
    found = finding(trials=2, disturbed=hit)
    assert found.disturbed == tuple(sorted(hit))
    assert slow(found, "tps").verdict is ComparisonVerdict.INCONCLUSIVE
    settled = finding(disturbed=hit[:1])  # the third trial settles the others
    assert settled.disturbed == () and slow(settled, "tps").verdict is ComparisonVerdict.SLOWER


def test_noise_bigger_than_the_difference_is_inconclusive_not_no_difference():
    pairs = [(1.0, 1.10), (1.0, 0.92), (1.0, 1.08), (1.0, 0.95)]
    found = verdict.paired(pairs)
    assert found.low < 1 < found.high
    assert label(found, True) is ComparisonVerdict.INCONCLUSIVE
    assert "neither a change nor equivalence" in words.reason_text(found)


def test_points_that_not_every_target_measured_are_left_out():
    extra = rows("fast", 2, 100.0, 0.05)[:1]
    extra[0] |= {
        "experiment_id": "fast--tiny-t0.7-w1-n4-r1",
        "condition_id": "fast--tiny-t0.7-w1-n4",
    }
    frame = with_defaults(
        pl.DataFrame(rows("fast", 2, 100.0, 0.05) + rows("slow", 2, 50.0, 0.05) + extra)
    )
    found = comparison.summary(frame, "fast", ["fast", "slow"])
    assert "tiny-t0.7-w1-n4" not in found.points and len(found.points) == 3


def test_the_words_carry_each_value_ratio_and_verdict():
    found = finding()
    table = words.rows(found)
    assert {r.target for r in table} == {"fast", "slow"}
    decode = [r for r in table if r.metric.startswith("Decode") and r.target == "slow"][0]
    assert "tok/s ±" in decode.value and "3 trials" in decode.value
    assert decode.ratio.startswith("×0.67 (95 % CI") and "; 3 trials;" in decode.ratio
    assert words.point_rows(found, found.metric("tps"))[0].metric in POINTS
    assert any("slower, ×1.5" in line for line in words.headline(found))


def test_the_context_takes_each_targets_size_and_describes_the_baseline():
    from perflab.analyse.findings import context_from_metadata
    from perflab.measure.metadata import ExperimentMetadata

    def meta(target, engine, **size):
        return ExperimentMetadata.from_json(
            {
                "experiment": {"target": target, "suites": ["basic"]},
                "engine": {"engine": engine, "model": target} | size,
                "host": {"logical_cores": 2},
                "run": {"started": 1.0, "ended": 2.0},
            }
        )

    config = {
        "engine": {"name": "llamacpp"},
        "targets": [
            {"name": "q8", "engine": {"name": "ollama"}},
            {"name": "q4", "engine": {"name": "ollama"}},
        ],
        "baseline": "q4",
    }
    context = context_from_metadata(
        [meta("q8", "ollama", listed_size_gb=8.5), meta("q4", "ollama", listed_size_gb=4.9)],
        config,
        "results/x",
    )
    assert context.baseline == "q4" and context.targets == ("q8", "q4")
    assert context.model_sizes == {"q8": 8.5, "q4": 4.9}
    assert context.engine == "ollama" and context.model_size_gb is None
