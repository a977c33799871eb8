"""The pre-flight estimate of a run's length: each request at its own prompt's warm
time, and the cold first request's extra once per experiment that starts anew."""

from __future__ import annotations

import pytest
from conftest import ROOT

from perflab.config.load import load_config_file
from perflab.config.sweep import expand_experiments
from perflab.measure.estimate import RunPlan, WarmTimes, estimate_plan, plan_run

SHORT, MEDIUM, LONG = "s" * 10, "m" * 55, "l" * 100


def plan() -> RunPlan:
    by_prompt = {SHORT: 10, MEDIUM: 10, LONG: 10}
    return RunPlan(3, 30, 10.0, LONG, SHORT, by_prompt)


def test_each_request_counts_at_its_prompts_warm_time_and_the_cold_start_per_job():
    warm = WarmTimes(len(SHORT), 1.0, len(LONG), 3.0)
    assert warm.at(SHORT) == 1.0 and warm.at(LONG) == 3.0
    assert warm.at(MEDIUM) == pytest.approx(2.0)  # halfway in length, halfway in time
    per_job = estimate_plan(plan(), warm, cold_extra_s=8.0, cold_per_experiment=True)
    # 10 × 1 s + 10 × 2 s + 10 × 3 s, 3 cold starts of 8 s, 10 s of timed load
    assert per_job.total_s == pytest.approx(60 + 3 * 8 + 10)
    once = estimate_plan(plan(), warm, cold_extra_s=8.0, cold_per_experiment=False)
    assert once.total_s == pytest.approx(60 + 8 + 10)
    # the cold request (3 s + 8 s) at every request would have said 11 × 30 + 10 s
    assert per_job.total_s < 0.3 * (11 * 30 + 10)
    words = per_job.describe()
    assert words.startswith("≈ 2 min for 30 requests + 10 s of timed load in 3 experiments")
    assert "at 1–3 s a warm request by prompt length, plus 8 s of cold start in each " \
        "experiment, served one at a time" in words  # fmt: skip


def test_a_warm_request_faster_than_the_cold_one_never_adds_negative_time():
    warm = WarmTimes(len(SHORT), 1.0, len(LONG), 3.0)
    found = estimate_plan(plan(), warm, cold_extra_s=-0.2, cold_per_experiment=True)
    assert found.cold_extra_s == 0.0 and found.total_s == pytest.approx(70)
    assert "cold start" not in found.describe()


def test_the_default_plan_counts_every_request_by_its_prompt():
    config = load_config_file(ROOT / "config" / "config.yaml")
    experiments = expand_experiments(config).values()
    found = plan_run(experiments, config["warmup_requests"])
    assert sum(found.requests_by_prompt.values()) == found.n_requests
    prompts = config["prompts"]
    assert found.longest_prompt == prompts["very_long"] and found.shortest_prompt == prompts["tiny"]
    # basic's 34 requests per trial and the warm-ups, for each of the 3 trials
    warmups = config["warmup_requests"]
    assert found.requests_by_prompt[prompts["short"]] == 3 * (34 + warmups) + 3 * (4 + warmups)
