"""Every verdict of perflab.analyse.findings on constructed summaries with known answers.

The frames carry the trial columns (condition_id, trial, repeats,
prompt_cache, interference, n_truncated) the way metrics.summarize writes
them; one test checks that an older summary without them still works.
"""

import json

import polars as pl
import pytest

from perflab.analyse import findings
from perflab.analyse.findings import (
    bottleneck,
    concurrency,
    frame,
    prompt_length,
    statistics,
    temperature,
)
from perflab.analyse.findings.bottleneck import Bottleneck
from perflab.analyse.findings.concurrency import ConcurrencyVerdict, QueueSource
from perflab.analyse.findings.prompt_length import PromptLengthReason, PromptLengthVerdict
from perflab.analyse.findings.resources import ExperimentResources
from perflab.analyse.verdict import Outcome, Reason
from perflab.engines import capabilities_for
from perflab.measure.resource_summary import ResourceSummary
from perflab.present import wording

DEFAULTS = {
    "prompt_name": "medium",
    "temperature": 0.7,
    "workers": 1,
    "suites": "basic",
    "n_requests": 20,
    "n_ok": 20,
    "n_errors": 0,
    "n_truncated": 0,
    "e2e_mean_s": 1.0,
    "e2e_ci95_s": 0.01,
    "e2e_p95_s": 1.1,
    "ttft_mean_s": 0.2,
    "ttft_ci95_s": 0.005,
    "tps_mean": 64.0,
    "tps_ci95": 0.5,
    "output_tokens_mean": 64.0,
    "prompt_tokens_mean": 20.0,
    "req_per_s": 1.0,
    "queue_mean_s": None,
    "unaccounted_mean_s": 0.01,
    "prompt_cache": "bust",
    "interference_cpu_pct_mean": 2.0,
    "interference_cpu_pct_max": 10.0,
}


def rows(condition: str, trials: list[dict], **common) -> list[dict]:
    """One summary row per trial of ``condition``."""
    return [
        DEFAULTS
        | common
        | trial
        | {
            "experiment_id": f"{condition}-r{k}",
            "condition_id": condition,
            "trial": k,
            "repeats": len(trials),
        }
        for k, trial in enumerate(trials, start=1)
    ]


def summary(*groups: list[dict]) -> pl.DataFrame:
    data = [row for group in groups for row in group]
    return frame.with_defaults(pl.DataFrame(data, schema_overrides={"workers": pl.Int64}))


def test_spread_uses_trial_means_with_two_or_more_trials():
    one = statistics.spread([1.0], request_ci=0.01)
    assert (one.mean, one.ci95, one.between_trials) == (1.0, 0.01, False)
    three = statistics.spread([1.0, 1.2, 1.4])
    # sd 0.2, t(0.975, 2) = 4.303: half-width 4.303 · 0.2 / √3
    assert three.mean == pytest.approx(1.2)
    assert three.ci95 == pytest.approx(4.302653 * 0.2 / 3**0.5)
    assert (three.low, three.high, three.trials) == (1.0, 1.4, 3)


def test_missing_trial_columns_take_their_defaults():
    old = pl.DataFrame([{"experiment_id": "x", "suites": "basic", "n_ok": 3, "e2e_mean_s": 1.0}])
    filled = frame.with_defaults(old).row(0, named=True)
    assert filled["condition_id"] == "x" and filled["trial"] == 1 and filled["repeats"] == 1
    assert filled["prompt_cache"] == "bust" and filled["interference_cpu_pct_mean"] is None
    result = findings.compute(old, findings.Context(engine="ollama"))
    assert result.repeats == 1 and result.basic.prompts[0].trials == 1


# --- temperature ---------------------------------------------------------------------


def temperature_rows(temp: float, trials: list[dict]) -> list[dict]:
    return rows(f"medium-t{temp}-w1-n20", trials, suites="temperature", temperature=temp)


def test_length_only_temperature_difference():
    # same decode speed, but 1.5 writes twice as much: latency differs because of length only
    data = summary(
        temperature_rows(0.0, [{"e2e_mean_s": 1.0, "output_tokens_mean": 64.0}] * 2),
        temperature_rows(
            1.5, [{"e2e_mean_s": 2.0, "output_tokens_mean": 128.0, "n_truncated": 20}] * 2
        ),
    )
    result = temperature.summary(data)
    assert result.verdict is Outcome.EQUIVALENT and result.length_only
    assert result.latency[0].changed and result.speed[0].equivalent
    assert [c.temperature for c in result.truncated] == [1.5]
    assert "cut at max_tokens" in wording.temperature(result)
    assert "output length, not speed" in wording.temperature(result)


def test_one_pass_settles_nothing():
    # the busy-machine case: one pass, 1.6× slower with the same output length
    data = summary(
        temperature_rows(0.0, [{"e2e_mean_s": 1.6, "tps_mean": 40.0}]),
        temperature_rows(0.7, [{"e2e_mean_s": 1.0, "tps_mean": 64.0}]),
    )
    result = temperature.summary(data)
    assert result.verdict is Outcome.INCONCLUSIVE
    assert result.speed[0].reason is Reason.TOO_FEW_TRIALS
    assert result.speed[0].estimate == pytest.approx(1.6)
    assert "one trial cannot show the spread" in wording.temperature(result)
    whole = findings.compute(data, findings.Context(engine="ollama"))
    line = next(k for k in wording.key_findings(whole) if k.startswith("temperature"))
    assert line == "temperature: inconclusive (too few trials, power not measurable)"
    same = summary(temperature_rows(0.0, [{}]), temperature_rows(0.7, [{}]))
    assert temperature.summary(same).verdict is Outcome.INCONCLUSIVE  # never "no" from one pass


def test_drift_in_one_trial_is_neither_an_effect_nor_its_absence():
    # per-request CIs are tiny, but trial 3 of t0.0 ran during a slow spell
    slow_spell = {"e2e_mean_s": 1.6, "tps_mean": 40.0}
    data = summary(
        temperature_rows(0.0, [{}, {}, slow_spell]),
        temperature_rows(0.7, [{}, {}, {}]),
    )
    result = temperature.summary(data)
    assert result.verdict is Outcome.INCONCLUSIVE
    assert result.speed[0].reason is Reason.UNDERPOWERED and result.mde > 0.3
    assert "at 80% power" in wording.temperature(result)
    hot = next(c for c in result.conditions if c.temperature == 0.0)
    assert hot.e2e.between_trials and hot.e2e.low == 1.0 and hot.e2e.high == 1.6


def test_a_measurable_but_small_difference_is_equivalent():
    data = summary(
        temperature_rows(0.0, [{"tps_mean": v} for v in (62.0, 62.1, 61.9)]),
        temperature_rows(0.7, [{}, {}, {}]),
    )
    result = temperature.summary(data)
    assert result.speed[0].p_value < 0.01 and result.verdict is Outcome.EQUIVALENT
    assert wording.temperature(result).startswith("No: decode speed per token is equivalent")


def test_speed_effect_that_the_trials_support():
    data = summary(
        temperature_rows(0.0, [{"e2e_mean_s": v, "tps_mean": 40.0} for v in (1.58, 1.6, 1.62)]),
        temperature_rows(0.7, [{"e2e_mean_s": v} for v in (0.99, 1.0, 1.01)]),
    )
    result = temperature.summary(data)
    assert result.verdict is Outcome.CHANGED and result.speed[0].estimate == pytest.approx(1.6)
    assert wording.temperature(result).startswith("Yes: decode speed per token changed")


def test_temperature_compares_the_speed_between_tokens_where_every_trial_has_it():
    # SmolLM2's end-of-turn step after the last token: the 24-token answers at 0 read ~4 %
    # slower per request than the 46-token ones at 1.5, while the gaps between tokens agree
    short = [{"tps_mean": v, "gap_tps": g} for v, g in ((54.0, 57.0), (54.1, 57.1), (55.7, 57.2))]
    long = [{"tps_mean": v, "gap_tps": g} for v, g in ((56.6, 57.1), (56.1, 57.0), (56.9, 57.3))]
    data = summary(temperature_rows(0.0, short), temperature_rows(1.5, long))
    result = temperature.summary(data)
    assert result.speed_metric == "gap_tps" and result.verdict is Outcome.EQUIVALENT
    assert result.speed[0].estimate == pytest.approx(1.0, abs=0.005)
    words = wording.temperature(result)
    assert words.startswith("No: decode speed between tokens is equivalent")
    assert "one more decode step on its end-of-turn token" in words
    # the same per-request figures alone: the answers' lengths show as a speed difference
    per_request = [{k: v for k, v in t.items() if k != "gap_tps"} for t in short]
    bare = summary(temperature_rows(0.0, per_request), temperature_rows(1.5, [
        {"tps_mean": t["tps_mean"]} for t in long
    ]))  # fmt: skip
    alone = temperature.summary(bare)
    assert alone.speed_metric == "tps" and alone.speed[0].estimate > 1.02


def test_key_finding_names_each_temperature_with_its_own_outcome():
    # 0.7 is clearly slower than 0; 1.5's trials scatter too widely to tell
    data = summary(
        temperature_rows(0.0, [{"tps_mean": 40.0}] * 3),
        temperature_rows(0.7, [{"tps_mean": v} for v in (63.8, 64.0, 64.2)]),
        temperature_rows(1.5, [{"tps_mean": v} for v in (30.0, 45.0, 70.0)]),
    )
    whole = findings.compute(data, findings.Context(engine="ollama"))
    assert whole.temperature.verdict is Outcome.CHANGED
    line = next(k for k in wording.key_findings(whole) if k.startswith("temperature"))
    changed, unclear = line.removeprefix("temperature: changed (").split("; ")
    assert changed.startswith("0.7 against 0: changed, detects ±")
    assert unclear.startswith("1.5 against 0: inconclusive, underpowered, detects ±")


def test_disturbed_experiment_makes_a_one_pass_finding_inconclusive():
    data = summary(
        temperature_rows(0.0, [{"interference_cpu_pct_mean": 140.0}]),
        temperature_rows(0.7, [{}]),
    )
    result = findings.compute(data, findings.Context(engine="ollama", results_dir="results/x"))
    assert result.interference.disturbed_ids == ("medium-t0.0-w1-n20-r1",)
    assert result.temperature.verdict is Outcome.INCONCLUSIVE
    assert result.temperature.speed[0].reason is Reason.DISTURBED
    words = wording.temperature(result.temperature)
    assert "1 disturbed experiment (other work" in words and "inconclusive" in words
    key = wording.key_findings(result)
    assert "temperature: inconclusive (disturbed, power not measurable)" in key
    load = result.interference.disturbed[0]
    command = wording.rerun_command([load], "config/ollama.yaml")
    assert command == (
        "snakemake --cores 1 --configfile config/ollama.yaml "
        "--forcerun results/x/experiments/medium-t0.0-w1-n20-r1/metadata.json"
    )


def test_disturbed_experiments_are_re_measured_by_one_command():
    data = summary(
        temperature_rows(0.0, [{"interference_cpu_pct_mean": 140.0}]),
        temperature_rows(0.7, [{"interference_cpu_pct_mean": 150.0}]),
        temperature_rows(1.5, [{}]),
    )
    result = findings.compute(data, findings.Context(engine="ollama", results_dir="results/x"))
    assert len(wording.technical_issues(result, "")) == 2  # one row per experiment
    (line,) = wording.solutions(result)
    assert line.startswith("re-measure the 2 disturbed experiments when the machine is quieter")
    command = wording.rerun_disturbed(result, "")
    assert "--configfile" not in command  # the default config needs none
    assert command.endswith(
        "--forcerun results/x/experiments/medium-t0.0-w1-n20-r1/metadata.json "
        "results/x/experiments/medium-t0.7-w1-n20-r1/metadata.json"
    )


def test_disturbed_trial_settled_by_the_others():
    data = summary(
        temperature_rows(0.0, [{"interference_cpu_pct_mean": 140.0}, {}, {}]),
        temperature_rows(0.7, [{}, {}, {}]),
    )
    result = findings.compute(data, findings.Context(engine="ollama"))
    assert result.temperature.verdict is Outcome.EQUIVALENT
    assert result.temperature.disturbed == ()
    every_trial = summary(
        temperature_rows(0.0, [{"interference_cpu_pct_mean": 140.0}] * 2),
        temperature_rows(0.7, [{}, {}]),
    )
    result = findings.compute(every_trial, findings.Context(engine="ollama"))
    assert result.temperature.verdict is Outcome.INCONCLUSIVE


# --- concurrency and queueing ------------------------------------------------------


def worker_rows(workers: int, req_per_s: float, e2e: float, unaccounted: float, trials=1):
    point = {"req_per_s": req_per_s, "e2e_mean_s": e2e, "unaccounted_mean_s": unaccounted}
    return rows(
        f"medium-t0.7-w{workers}-n20", [point] * trials, suites="concurrency", workers=workers
    )


def two_slot_rows(trials: int = 1) -> list[dict]:
    # 2 slots, 0.5 s per request: 2 req/s from 1 to 2 workers, flat after; the wait
    # for a slot is not in Ollama's timings, so it shows as unaccounted time
    return [
        *worker_rows(1, 2.0, 0.5, 0.01, trials),
        *worker_rows(2, 4.0, 0.5, 0.01, trials),
        *worker_rows(4, 4.0, 0.99, 0.48, trials),
        *worker_rows(8, 4.1, 1.98, 1.47, trials),
    ]


def two_slot_server(trials: int = 1) -> pl.DataFrame:
    return summary(two_slot_rows(trials))


def overloaded_rows(trials: int = 1) -> list[dict]:
    # the two slots, but at 8 workers throughput halves and 88 % of latency is a wait:
    # 13 points beyond the 1 − 2/8 the slots leave to the queue
    return [*two_slot_rows(trials)[:-trials], *worker_rows(8, 2.0, 4.0, 3.5, trials)]


def test_two_slot_saturation_names_the_knee_and_the_queue():
    result = concurrency.summary(two_slot_server(trials=2), capabilities_for("ollama"))
    assert result.verdict == ConcurrencyVerdict.SATURATES and result.test.changed
    assert result.knee_workers == 2 and result.knee_high == 2 and result.parallel_requests == 2
    assert result.queue_source == QueueSource.UNACCOUNTED_GROWTH
    assert result.queue_wait_s == pytest.approx(1.46)
    assert result.queue_share == pytest.approx(1.46 / 1.98)
    words = wording.concurrency(result, "OLLAMA_NUM_PARALLEL")
    assert "throughput doubled from 1 to 2 workers, then stayed flat" in words
    assert "about 2 requests at once" in words
    assert "OLLAMA_NUM_PARALLEL" in words


def test_a_queue_the_slots_explain_is_no_queueing_bottleneck_but_more_slots_are_an_idea():
    # 2 slots and 8 workers leave 1 − 2/8 = 75 % of latency to the queue by construction:
    # the 74 % measured restates the configuration
    result = findings.compute(two_slot_server(trials=2), findings.Context(engine="ollama"))
    assert result.bottleneck.primary != Bottleneck.QUEUEING
    queue = next(c for c in result.bottleneck.checks if c.rule == Bottleneck.QUEUEING)
    assert not queue.triggered and queue.get("workers") == 8 and queue.get("slots") == 2
    assert queue.get("expected_queue_share") == pytest.approx(0.75)
    assert "2 slots and 8 workers leave 1 − 2/8 = 75% to the queue by construction" in (
        wording.bottleneck_evidence(result.bottleneck)
    )
    assert result.run.ideas[0].setting == "OLLAMA_NUM_PARALLEL"
    assert result.run.ideas[0].value == "4"


def test_the_one_slot_embedded_engine_queues_by_construction_not_as_a_bottleneck():
    # llama.cpp embedded serves one request at a time: 4 workers wait 3 of 4 turns
    data = summary(
        rows("w1", [{"req_per_s": 1.0, "e2e_mean_s": 1.0, "queue_mean_s": 0.0}] * 2,
             suites="concurrency", workers=1),
        rows("w4", [{"req_per_s": 1.0, "e2e_mean_s": 3.9, "queue_mean_s": 2.85}] * 2,
             suites="concurrency", workers=4),
    )  # fmt: skip
    result = findings.compute(data, findings.Context(engine="llamacpp"))
    assert result.concurrency.slots == 1
    assert result.concurrency.expected_queue_share == pytest.approx(0.75)
    assert result.bottleneck.primary != Bottleneck.QUEUEING
    assert "its 1 slot would leave 1 − 1/4 = 75% to the queue" in wording.concurrency(
        result.concurrency, None
    )
    # a queue well beyond what one slot explains is a finding: the slot idles while
    # requests wait (here 2 workers, where one slot leaves 50 %, and 80 % waiting)
    beyond = summary(
        rows("w1", [{"req_per_s": 1.0, "e2e_mean_s": 1.0, "queue_mean_s": 0.0}] * 2,
             suites="concurrency", workers=1),
        rows("w2", [{"req_per_s": 0.4, "e2e_mean_s": 5.0, "queue_mean_s": 4.0}] * 2,
             suites="concurrency", workers=2),
    )  # fmt: skip
    result = findings.compute(beyond, findings.Context(engine="llamacpp"))
    assert result.bottleneck.primary == Bottleneck.QUEUEING


def test_serial_server_and_a_scaling_one():
    serial = summary(worker_rows(1, 2.0, 0.5, 0.01, 2), worker_rows(4, 2.05, 1.95, 1.46, 2))
    result = concurrency.summary(serial, capabilities_for("calibration"))
    assert result.verdict == ConcurrencyVerdict.SERIAL and result.knee_workers == 1
    assert "serializes requests" in wording.concurrency(result, None)
    scaling = summary(worker_rows(1, 1.0, 1.0, 0.01, 2), worker_rows(4, 3.8, 1.05, 0.02, 2))
    result = concurrency.summary(scaling, capabilities_for("ollama"))
    assert result.verdict == ConcurrencyVerdict.SCALES and result.knee_workers == 4


def test_disturbed_concurrency_is_not_answered_yes_or_no():
    quiet = worker_rows(1, 2.0, 0.5, 0.01)
    busy = rows(
        "medium-t0.7-w4-n20",
        [{"req_per_s": 2.05, "e2e_mean_s": 1.95, "interference_cpu_pct_mean": 190.0}],
        suites="concurrency",
        workers=4,
    )
    result = findings.compute(summary(quiet, busy), findings.Context(engine="calibration"))
    assert result.concurrency.disturbed == ("medium-t0.7-w4-n20-r1",)
    words = wording.concurrency(result.concurrency, None)
    assert words.startswith("Inconclusive: rests on a disturbed trial") and "No:" not in words
    assert result.concurrency.verdict == ConcurrencyVerdict.INCONCLUSIVE
    line = next(k for k in wording.key_findings(result) if k.startswith("concurrency"))
    assert line.endswith("(inconclusive: disturbed experiments)")
    # the bottleneck rests on the same experiments and says so
    assert result.bottleneck.disturbed == ("medium-t0.7-w4-n20-r1",)
    assert "Caveat: measured while other work used the CPU" in wording.bottleneck_sentence(
        result.bottleneck
    )
    assert "bottleneck: undetermined (rests on disturbed experiments)" in wording.key_findings(
        result
    )


def test_a_queueing_bottleneck_from_a_disturbed_concurrency_run_says_so():
    data = overloaded_rows(trials=2)
    data[-1] = data[-1] | {"interference_cpu_pct_mean": 150.0}  # the 8-worker runs
    data[-2] = data[-2] | {"interference_cpu_pct_mean": 150.0}
    result = findings.compute(summary(data), findings.Context(engine="ollama"))
    assert result.bottleneck.primary == Bottleneck.QUEUEING
    assert result.bottleneck.disturbed == (data[-2]["experiment_id"], data[-1]["experiment_id"])
    quiet = findings.compute(summary(overloaded_rows(2)), findings.Context(engine="ollama"))
    assert quiet.bottleneck.primary == Bottleneck.QUEUEING
    assert quiet.bottleneck.disturbed == ()
    assert "Caveat" not in wording.bottleneck_sentence(quiet.bottleneck)


def test_reported_queue_time_is_used_when_the_engine_has_one():
    data = summary(
        worker_rows(1, 2.0, 0.5, 0.0),
        rows("w4", [{"req_per_s": 2.0, "e2e_mean_s": 2.0, "queue_mean_s": 1.5}],
             suites="concurrency", workers=4),
    )  # fmt: skip
    result = concurrency.summary(data, capabilities_for("llamacpp"))
    assert result.queue_source == QueueSource.REPORTED and result.queue_share == 0.75


def test_falling_throughput_is_said():
    data = summary(worker_rows(1, 2.03, 0.5, 0.0, 2), worker_rows(2, 1.04, 1.9, 0.0, 2))
    result = concurrency.summary(data, capabilities_for("ollama"))
    assert result.verdict == ConcurrencyVerdict.SERIAL and result.fell_at == 2
    words = wording.concurrency(result, None)
    assert "Throughput fell to ×0.51 at 2 workers" in words


def test_growth_within_the_trial_spread_is_inconclusive():
    noisy = summary(
        rows("w1", [{"req_per_s": v} for v in (1.0, 2.0, 1.5)], suites="concurrency", workers=1),
        rows("w2", [{"req_per_s": v} for v in (1.9, 1.7, 2.1)], suites="concurrency", workers=2),
    )
    result = concurrency.summary(noisy, capabilities_for("ollama"))
    assert result.verdict == ConcurrencyVerdict.INCONCLUSIVE and result.knee_high == 2
    assert wording.concurrency(result, None).startswith("Inconclusive: neither a change")


def test_the_issue_example_of_two_trials_is_growth_not_serial():
    # 1.00/1.10 req/s at 1 worker, 1.80/1.98 at 2: the same ×1.8 in both trials
    data = summary(
        rows("w1", [{"req_per_s": v} for v in (1.0, 1.1)], suites="concurrency", workers=1),
        rows("w2", [{"req_per_s": v} for v in (1.8, 1.98)], suites="concurrency", workers=2),
    )
    result = concurrency.summary(data, capabilities_for("ollama"))
    assert result.verdict == ConcurrencyVerdict.SCALES and result.knee_workers == 2
    assert result.test.estimate == pytest.approx(1.8)


# --- prompt length and the prompt cache --------------------------------------------


def length_rows(tokens: float, ttft: float, cache: str = "bust", trials: int = 1):
    suffix = "-reuse" if cache == "reuse" else ""
    point = {"prompt_tokens_mean": tokens, "ttft_mean_s": ttft, "e2e_mean_s": 1.0 + ttft}
    return rows(
        f"p{int(tokens)}-t0.7-w1-n20{suffix}",
        [point] * trials,
        suites="prompt_length",
        prompt_name=f"p{int(tokens)}",
        prompt_cache=cache,
    )


def test_cached_prompts_do_not_flatten_the_fit():
    # true prefill 2,500 tok/s; the reuse experiments are served from the cache
    tokens = (30, 120, 420, 900)
    data = summary(
        *[length_rows(t, 0.02 + t / 2500) for t in tokens],
        *[length_rows(t, 0.035, cache="reuse") for t in tokens],
    )
    result = prompt_length.summary(data)
    assert result.verdict == PromptLengthVerdict.LINEAR
    assert result.prefill_tps == pytest.approx(2500)
    assert len(result.excluded_cached) == 4 and len(result.points) == 4
    words = wording.prompt_length(result)
    assert "prefill ≈ 2,500 tok/s over 30–900 prompt tokens (95% CI 2,500–2,500)" in words
    assert "Left out of the fit" in words


def test_prompt_length_regresses_trial_means_with_each_trial_a_block():
    # true prefill 2,000 tok/s; trial 2 ran 30 ms slower throughout (drift the blocks absorb)
    tokens = (20, 60, 180, 360)
    noise = {20: 0.002, 60: -0.001, 180: 0.001, 360: -0.002}
    data = summary(
        *[
            rows(
                f"p{t}-t0.7-w1-n4",
                [
                    {"ttft_mean_s": 0.02 + t / 2000 + sign * noise[t] + d}
                    for d, sign in ((0.0, 1), (0.03, -1), (0.0, 0))
                ],
                suites="prompt_length", prompt_name=f"p{t}", prompt_tokens_mean=float(t),
            )
            for t in tokens
        ]
    )  # fmt: skip
    result = prompt_length.summary(data)
    fit = result.ttft_fit
    assert fit.n == 12 and fit.df == 12 - 3 - 1  # 4 lengths × 3 trials, 3 blocks and a slope
    assert fit.slope_low < 1 / 2000 < fit.slope_high
    assert result.verdict == PromptLengthVerdict.LINEAR and fit.p_curvature > 0.05
    assert result.prefill_tps_low < 2000 < result.prefill_tps_high


def trial_length_rows(tokens, ttft_of, trials: int = 3):
    return [
        rows(
            f"p{t}-t0.7-w1-n4",
            [{"ttft_mean_s": ttft_of(t, trial)} for trial in range(trials)],
            suites="prompt_length", prompt_name=f"p{t}", prompt_tokens_mean=float(t),
        )
        for t in tokens
    ]  # fmt: skip


def test_no_curvature_detected_is_worded_so_and_never_as_linear():
    # a straight truth with noise the size of the rise: the F-test cannot reject, nor can an
    # equivalence test show the line straight
    noise = [0.004, -0.003, -0.002, 0.003, -0.004, 0.002, 0.001, -0.001, 0.0, 0.003, -0.003, 0.0]
    tokens = (20, 60, 180, 360)
    result = prompt_length.summary(
        summary(*trial_length_rows(tokens, lambda t, k: 0.02 + t / 20000 + noise[k * 4 + tokens.index(t)]))
    )  # fmt: skip
    assert result.verdict == PromptLengthVerdict.GROWS
    straight = result.straightness
    assert straight.p_curvature > 0.05 and straight.p_equivalence > 0.05 and straight.power < 0.8
    words = wording.prompt_length(result)
    assert words.startswith("Grows: TTFT grows by")
    assert f"no curvature detected (F-test p = {straight.p_curvature:.3f}, power " in words
    assert "linear" not in words.lower().replace("faster than linear", "")


def test_a_line_shown_straight_by_its_equivalence_test_is_linear():
    jitter = (0.0001, -0.0001, 0.0)
    result = prompt_length.summary(
        summary(*trial_length_rows((20, 60, 180, 360), lambda t, k: 0.02 + t / 2000 + jitter[k]))
    )
    assert result.verdict == PromptLengthVerdict.LINEAR
    assert result.straightness.p_equivalence < 0.05
    assert "straight within a bend of 10% of the rise (equivalence test p = " in (
        wording.prompt_length(result)
    )


def test_a_noisy_fit_is_inconclusive_and_gives_no_prefill_rate():
    noisy = summary(*[length_rows(t, v) for t, v in ((2, 0.01), (5, 0.032), (25, 0.02),
                                                       (86, 0.015), (359, 0.031))])  # fmt: skip
    result = prompt_length.summary(noisy)
    assert result.verdict == PromptLengthVerdict.INCONCLUSIVE
    assert result.reason == PromptLengthReason.UNDERPOWERED and result.prefill_tps is None
    words = wording.prompt_length(result)
    assert "not shown to grow" in words and "prefill ≈" not in words and "prefill work" not in words


def test_flat_prompt_length_and_too_few_points():
    flat = summary(*[length_rows(t, 0.035) for t in (30, 120, 420)])
    assert prompt_length.summary(flat).verdict == PromptLengthVerdict.FLAT
    two = summary(*[length_rows(t, 0.02 + t / 2500) for t in (30, 420)])
    result = prompt_length.summary(two)
    assert result.verdict == PromptLengthVerdict.INCONCLUSIVE
    assert result.reason == PromptLengthReason.TOO_FEW_POINTS


def test_superlinear_prompt_length():
    data = summary(*[length_rows(t, 0.02 + (t / 1000) ** 2) for t in (100, 500, 1000, 2000, 4000)])
    assert prompt_length.summary(data).verdict == PromptLengthVerdict.SUPERLINEAR


def test_kv_cache_finding_compares_the_same_prompt_both_ways():
    def kv(cache, ttfts):
        suffix = "-reuse" if cache == "reuse" else ""
        return rows(
            f"long-t0.7-w1-n20{suffix}",
            [{"ttft_mean_s": t, "ttft_ci95_s": 0.001} for t in ttfts],
            suites="kv_cache",
            prompt_cache=cache,
        )

    result = findings.compute(
        summary(kv("bust", [0.4, 0.41]), kv("reuse", [0.05, 0.051])),
        findings.Context(engine="ollama"),
    )
    assert result.kv_cache.verdict is Outcome.CHANGED and result.kv_cache.reuse_faster
    saving = 1 - ((0.05 / 0.4) * (0.051 / 0.41)) ** 0.5  # the geometric mean of the trials
    assert result.kv_cache.ttft_saving == pytest.approx(saving)
    assert "Yes: reusing the prompt's KV cache saves 88% of TTFT" in wording.kv_cache(
        result.kv_cache
    )
    one_pass = findings.compute(
        summary(kv("bust", [0.4]), kv("reuse", [0.05])), findings.Context(engine="ollama")
    )
    assert one_pass.kv_cache.verdict is Outcome.INCONCLUSIVE


# --- bottleneck rules ----------------------------------------------------------------


def resources(**values) -> findings.resources.ResourcesFinding:
    fields = findings.resources.ResourcesFinding.__dataclass_fields__
    return findings.resources.ResourcesFinding(**({name: None for name in fields} | values))


NO_SWEEP = concurrency.summary(pl.DataFrame(), capabilities_for("ollama"))


@pytest.mark.parametrize(
    ("values", "cores", "expected"),
    [
        ({"server_cpu_percent_mean": 390.0, "cpu_percent_mean": 60.0}, 4, Bottleneck.CPU),
        ({"cpu_percent_mean": 90.0}, 4, Bottleneck.CPU),
        ({"mem_available_gb_min": 0.5, "mem_total_gb": 16.0}, 4, Bottleneck.MEMORY),
        ({"swap_growth_gb": 0.5, "swap_used_gb_max": 2.0}, 4, Bottleneck.MEMORY),
        ({"disk_read_mb_s_median": 200.0, "cpu_percent_mean": 20.0}, 4, Bottleneck.IO),
        (
            {"client_cpu_percent_mean": 95.0, "server_cpu_percent_mean": 20.0},
            4,
            Bottleneck.CLIENT,
        ),
        ({"cpu_percent_mean": 30.0, "mem_available_gb_min": 8.0}, 4, Bottleneck.UNDETERMINED),
    ],
)
def test_bottleneck_rules(values, cores, expected):
    result = bottleneck.summary(resources(**values), NO_SWEEP, capabilities_for("ollama"), cores)
    assert result.primary == expected
    assert len(result.checks) == 6  # every rule reports its outcome


def test_client_rule_is_skipped_when_client_and_server_share_a_process():
    busy_client = resources(client_cpu_percent_mean=95.0, server_cpu_percent_mean=20.0)
    result = bottleneck.summary(busy_client, NO_SWEEP, capabilities_for("llamacpp"), 4)
    client = next(c for c in result.checks if c.rule == Bottleneck.CLIENT)
    assert client.missing == bottleneck.Missing.ONE_PROCESS and not client.triggered


def test_priority_memory_before_cpu_before_queueing():
    data = summary(overloaded_rows(trials=2))
    sweep = concurrency.summary(data, capabilities_for("ollama"))
    heavy = resources(cpu_percent_mean=95.0, mem_available_gb_min=0.2, mem_total_gb=16.0)
    result = bottleneck.summary(heavy, sweep, capabilities_for("ollama"), 4)
    assert result.primary == Bottleneck.MEMORY
    assert result.secondary == (Bottleneck.CPU, Bottleneck.QUEUEING)


# --- all failed, round trip --------------------------------------------------------------


def test_all_failed_condition_says_so():
    failed = {
        "n_ok": 0,
        "n_errors": 100,
        "n_requests": 100,
        "e2e_mean_s": None,
        "ttft_mean_s": None,
        "tps_mean": None,
        "error_classes": "connect",
    }
    result = findings.compute(
        summary(rows("short-t0.7-w1-n100", [failed], prompt_name="short")),
        findings.Context(engine="ollama", prompt_order=("short",)),
    )
    prompt = result.basic.prompts[0]
    assert prompt.all_failed
    assert wording.measured(prompt, prompt.e2e.mean, 3, "s") == "n/a: all 100 failed"
    assert wording.num(None, 3, "s") == "n/a"
    assert result.run.failed[0].n_errors == 100


def test_findings_round_trip_through_json(tmp_path):
    data = summary(
        two_slot_rows(trials=2),
        temperature_rows(0.0, [{}, {}]),
        temperature_rows(1.5, [{"n_truncated": 3}] * 2),
        *[length_rows(t, 0.02 + t / 2500) for t in (30, 120, 420, 900)],
    )
    result = findings.compute(data, findings.Context(engine="calibration"))
    path = tmp_path / "findings.json"
    findings.write(result, path)
    assert findings.load(path) == result
    raw = json.loads(path.read_text())
    assert raw["concurrency"]["verdict"] == "saturates"
    assert raw["concurrency"]["knee_workers"] == 2
    assert raw["temperature"]["verdict"] == "equivalent"
    assert raw["temperature"]["speed"][0]["family"] == 2  # Holm: temperature, concurrency
    assert raw["prompt_length"]["verdict"] == "linear"
    assert raw["prompt_length"]["straightness"]["p_equivalence"] < 1e-6  # an exact line
    # the 2 slots' queue at 8 workers is what 1 − 2/8 leaves it: no bottleneck of its own
    assert raw["bottleneck"]["primary"] == "undetermined"


def test_cpu_used_by_other_processes_is_not_the_engines_bottleneck():
    busy_machine = resources(
        cpu_percent_mean=95.0, server_cpu_percent_mean=30.0, interference_cpu_pct_mean=150.0
    )
    args = (busy_machine, NO_SWEEP, capabilities_for("ollama"), 2)
    result = bottleneck.summary(*args, logical_cores=2)
    cpu = next(c for c in result.checks if c.rule == Bottleneck.CPU)
    assert cpu.get("own_cpu_percent_mean") == pytest.approx(20.0) and not cpu.triggered
    assert "without other processes" in wording.check_text(cpu)
    assert bottleneck.summary(*args).primary == Bottleneck.CPU  # cores unknown: raw figure


def test_old_swap_that_does_not_grow_is_not_pressure_and_a_starved_model_is():
    calm = {"mem_available_gb_min": 12.0, "mem_total_gb": 16.0}
    ollama = capabilities_for("ollama")
    old_swap = resources(**calm, swap_used_gb_max=2.0, swap_growth_gb=0.0)
    assert bottleneck.summary(old_swap, NO_SWEEP, ollama, 4).primary != Bottleneck.MEMORY
    growing = bottleneck.summary(
        resources(**calm, swap_used_gb_max=2.0, swap_growth_gb=0.5), NO_SWEEP, ollama, 4
    )
    assert growing.primary == Bottleneck.MEMORY
    assert "swap grew by 0.50 GB" in wording.check_text(growing.checks[0])
    starved = resources(mem_total_gb=16.0, mem_available_gb_min=3.5, server_rss_gb_max=1.0)
    assert bottleneck.summary(starved, NO_SWEEP, ollama, 4, 8.0).primary == Bottleneck.MEMORY
    roomy = resources(**calm, server_rss_gb_max=1.0)  # e.g. offloaded to a GPU
    assert bottleneck.summary(roomy, NO_SWEEP, ollama, 4, 8.0).primary != Bottleneck.MEMORY


def test_expectations_are_weighted_by_requests_and_placed_against_the_range():
    data = summary(
        rows("a", [{"tps_mean": 10.0, "n_ok": 30}]), rows("b", [{"tps_mean": 30.0, "n_ok": 10}])
    )
    found = findings.compute(data, findings.Context(engine="ollama", expected_tps=(10, 20)))
    assert found.expectations.actual_tps == pytest.approx(15.0) and found.expectations.n == 40
    assert found.expectations.position == findings.expectations.Position.WITHIN
    fast = findings.compute(
        summary(rows("a", [{"tps_mean": 60.0}])), findings.Context(engine="ollama")
    )
    assert "3.0× the high end" in wording.expectations(fast.expectations)


def test_breakdown_shares_add_to_100_and_other_is_clipped():
    timed = {
        "prep_mean_s": 0.0009,
        "e2e_mean_s": 2.0,
        "ttft_mean_s": 0.5,
        "queue_mean_s": 0.1,
        "load_mean_s": 0.0,
        "prefill_mean_s": 0.4,
        "decode_mean_s": 1.4,
    }
    found = findings.compute(summary(rows("a", [timed])), findings.Context(engine="llamacpp"))
    result = found.breakdown
    assert result.ttft_percent == pytest.approx(25.0) and result.decode_dominates
    shares = {p.name: p.percent for p in result.phases}
    assert sum(shares.values()) == pytest.approx(100.0) and shares["decode"] == pytest.approx(70)
    assert "client spent 0.90 ms preparing it" in wording.breakdown(result)
    over = {"e2e_mean_s": 1.0, "prefill_mean_s": 0.5, "decode_mean_s": 0.75}
    found = findings.compute(summary(rows("a", [over])), findings.Context(engine="ollama"))
    assert found.breakdown.phases_exceed_e2e == pytest.approx(125.0)
    assert sum(p.percent for p in found.breakdown.phases) == pytest.approx(100.0)


def test_every_finding_copes_with_no_data():
    for data in (pl.DataFrame(), summary(rows("a", [{"n_ok": 0, "e2e_mean_s": None}]))):
        found = findings.compute(data, findings.Context(engine="ollama"))
        assert found.temperature.verdict is None and found.concurrency.verdict is None
        assert found.prompt_length.verdict is None and found.kv_cache.verdict is None
        assert found.bottleneck.primary == Bottleneck.UNDETERMINED
        for words in (
            wording.temperature(found.temperature),
            wording.concurrency(found.concurrency, None),
            wording.prompt_length(found.prompt_length),
            wording.expectations(found.expectations),
            wording.breakdown(found.breakdown),
            wording.bottleneck_sentence(found.bottleneck),
        ):
            assert words and "None" not in words


def test_cpu_ideas_follow_the_engines_settings():
    hot = {"suites": "resources", "experiment_id": "res-r1"}
    data = summary([DEFAULTS | hot | {"condition_id": "res", "trial": 1, "repeats": 1}])
    samples = {"res-r1": ExperimentResources(ResourceSummary(cpu_percent_mean=97.0, n_samples=10))}
    embedded = findings.Context(engine="llamacpp", physical_cores=4, threads_configurable=True)
    found = findings.compute(data, embedded, resources_by_id=samples)
    assert found.bottleneck.primary == Bottleneck.CPU
    assert ("engine.n_threads", "4") in [(i.setting, i.value) for i in found.run.ideas]
    remote = findings.compute(
        data, findings.Context(engine="ollama", physical_cores=4), resources_by_id=samples
    )
    assert remote.run.ideas[0].setting == "engine.model"


def test_a_speed_up_beyond_the_workers_is_not_the_servers():
    # the busy-machine default run: 0.28, 2.22 and 1.20 req/s at 1, 2 and 4 workers of an
    # embedded engine that runs one request at a time; the 1-worker pass ran slowed
    data = summary(
        worker_rows(1, 0.28, 3.57, 0.0, 2), worker_rows(2, 2.22, 0.86, 0.0, 2),
        worker_rows(4, 1.20, 3.12, 0.0, 2),
    )  # fmt: skip
    result = concurrency.summary(data, capabilities_for("llamacpp"))
    assert result.knee_workers == 2 and result.parallel_requests == 2  # not 8 at 2 workers
    assert result.fell_at == 4  # below the best before it, though above the baseline
    assert result.beyond_workers_at == 2 and not result.trusted
    words = wording.concurrency(result, None)
    assert words.startswith("Inconclusive: throughput grew ×7.93 from 1 to 2 workers, then fell")
    assert "more than 2× the workers can give" in words
    assert "requests at once" not in words  # no conclusion drawn from an untrusted pattern
    whole = findings.compute(data, findings.Context(engine="llamacpp"))
    line = next(k for k in wording.key_findings(whole) if k.startswith("concurrency"))
    assert line.endswith("(inconclusive: speed-up beyond the workers)")


def test_a_two_slot_server_is_trusted_and_stays_flat():
    result = concurrency.summary(two_slot_server(trials=2), capabilities_for("ollama"))
    assert result.trusted and result.fell_at is None and result.beyond_workers_at is None
    assert "then stayed flat" in wording.concurrency(result, None)


def test_expected_speed_from_disturbed_experiments_carries_a_caveat():
    data = summary(rows("short-t0.7-w1-n20", [{"interference_cpu_pct_mean": 160.0}]))
    result = findings.compute(data, findings.Context(engine="ollama"))
    assert result.expectations.disturbed == ("short-t0.7-w1-n20-r1",)
    assert "Other work used the CPU during 1 disturbed experiment of these" in wording.expectations(
        result.expectations
    )
    quiet = findings.compute(summary(rows("short-t0.7-w1-n20", [{}])), findings.Context(engine="x"))
    assert "Other work" not in wording.expectations(quiet.expectations)


def test_requests_that_run_together_each_slower_are_not_called_serialized():
    # llama-server with 4 slots on one saturated thread: ×1.14 throughput at 4 workers,
    # latency ×3.5, and the wait for a slot is 2 % of it: batching, not a queue
    data = summary(worker_rows(1, 1.0, 1.0, 0.0, 2), worker_rows(4, 1.14, 3.5, 0.07, 2))
    result = concurrency.summary(data, capabilities_for("ollama"))
    assert result.verdict == ConcurrencyVerdict.SCALES  # it grew, by 14 %
    assert result.mode is concurrency.ConcurrencyMode.SHARES
    assert result.service_growth == pytest.approx((3.5 - 0.07) / 1.0)
    words = wording.concurrency(result, None)
    assert "serializes" not in words and "each is slower" in words
    assert result.expected_queue_share == pytest.approx(0.75)
    found = findings.compute(data, findings.Context(engine="ollama"))
    assert found.bottleneck.primary != Bottleneck.QUEUEING
    queued = summary(worker_rows(1, 1.0, 1.0, 0.0, 2), worker_rows(4, 1.02, 3.9, 2.9, 2))
    result = concurrency.summary(queued, capabilities_for("ollama"))
    assert result.mode is concurrency.ConcurrencyMode.QUEUES
    assert "serializes requests" in wording.concurrency(result, None)


def test_one_saturated_engine_thread_is_cpu_saturation_on_a_bigger_machine():
    # llama-server --parallel 4 on one thread of a 16-core machine: 97 % of one core
    data = summary(worker_rows(1, 1.0, 1.0, 0.0, 2), worker_rows(4, 1.14, 3.5, 0.07, 2))
    sharing = concurrency.summary(data, capabilities_for("ollama"))
    one_thread = resources(server_cpu_percent_mean=97.0, cpu_percent_mean=8.0, n_samples=10)
    result = bottleneck.summary(one_thread, sharing, capabilities_for("ollama"), 16, None, 16)
    assert result.primary == Bottleneck.CPU
    cpu = next(c for c in result.checks if c.rule == Bottleneck.CPU)
    assert cpu.get("saturated_threads") == 1 and cpu.get("server_share") < 0.1
    # the same CPU with requests that queue is no thread limit: one request at a time
    assert bottleneck.saturated_threads(150.0) is None and bottleneck.saturated_threads(190) == 2
    alone = bottleneck.summary(one_thread, NO_SWEEP, capabilities_for("ollama"), 16, None, 16)
    assert alone.primary != Bottleneck.CPU


def server_rows(workers: int, values: tuple[float, ...], running: float, waiting: float):
    return rows(
        f"w{workers}",
        [{"req_per_s": v} for v in values],
        suites="concurrency",
        workers=workers,
        server_requests_processing_max=running,
        server_requests_deferred_max=waiting,
    )


def test_a_server_that_says_it_ran_one_at_a_time_is_serial_despite_noisy_throughput():
    # the same noisy throughput the trials cannot settle, but llama-server's own /metrics
    # said one request ran at a time and three waited
    noisy = summary(server_rows(1, (1.0, 2.0, 1.5), 1, 0), server_rows(4, (1.9, 1.7, 1.2), 1, 3))
    result = concurrency.summary(noisy, capabilities_for("openai", "llama-server"))
    assert result.test.outcome is not Outcome.CHANGED or result.test.estimate < 1
    assert (
        result.verdict == ConcurrencyVerdict.SERIAL
        and result.mode is concurrency.ConcurrencyMode.QUEUES
    )
    assert (result.server_running_max, result.server_deferred_max) == (1, 3)
    words = wording.concurrency(result, "--parallel")
    assert "the server ran one request at a time (its own metrics) (--parallel)" in words
    assert "ran at most 1 request at once and kept at most 3 waiting" in words


def test_several_requests_running_together_without_more_throughput_are_said_as_such():
    flat = summary(server_rows(1, (2.0, 2.02, 1.98), 1, 0), server_rows(4, (2.01, 2.0, 2.0), 4, 0))
    result = concurrency.summary(flat, capabilities_for("openai", "llama-server"))
    assert result.verdict == ConcurrencyVerdict.SERIAL and result.server_running_max == 4
    words = wording.concurrency(result, "--parallel")
    assert "ran up to 4 requests at once (its own metrics)" in words
