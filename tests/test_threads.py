"""The threads suite: its experiments, its config checks, and its finding on constructed
summaries and llama-bench output with known answers."""

import json

import polars as pl
import pytest

from perflab.analyse import findings
from perflab.analyse.findings import frame, threads
from perflab.analyse.findings.threads import Agreement
from perflab.analyse.verdict import Outcome, Reason
from perflab.config.load import ConfigError, load_config_files
from perflab.config.sweep import expand_experiments
from perflab.engines import with_threads
from perflab.measure.spec import experiment_spec
from perflab.present.wording import threads as words

CONFIG = "config/config.yaml"


def suite_config(tmp_path, engine: dict | None = None, **suite) -> dict:
    override = {"suites": {"threads": {"enabled": True, "threads": [1, 2]} | suite}}
    if engine:
        override["engine"] = engine
    path = tmp_path / "threads.yaml"
    path.write_text(json.dumps(override))
    return load_config_files([CONFIG, path])


def test_each_thread_count_is_its_own_experiment_with_the_engines_threads_set(tmp_path):
    config = suite_config(tmp_path, threads=[1, 3])
    mine = {i: e for i, e in expand_experiments(config).items() if "threads" in e.suites}
    assert sorted(mine) == [f"medium-t0.7-w1-n20-th{n}-r{k}" for n in (1, 3) for k in (1, 2, 3)]
    spec = experiment_spec(config, mine["medium-t0.7-w1-n20-th3-r2"])
    assert spec["engine"]["n_threads"] == 3 and spec["experiment"]["threads"] == 3
    # every other suite's specs stay as they were: no threads key, the engine's own setting
    basic = next(e for e in expand_experiments(config).values() if "basic" in e.suites)
    assert "threads" not in experiment_spec(config, basic)["experiment"]
    assert experiment_spec(config, basic)["engine"]["n_threads"] is None


def test_a_launched_llama_server_takes_its_threads_from_launch():
    engine = {"name": "openai", "model": "m", "launch": {"server": "llama-server"}}
    assert with_threads(engine, 2)["launch"] == {"server": "llama-server", "threads": 2}
    assert "threads" not in engine["launch"]  # a copy


@pytest.mark.parametrize(
    "engine",
    [{"name": "ollama", "model": "llama3.1:8b"}, {"name": "openai", "model": "m"}],
)
def test_an_engine_without_a_thread_setting_is_refused_with_the_fix(tmp_path, engine):
    with pytest.raises(ConfigError) as error:
        suite_config(tmp_path, engine, llama_bench=False)
    text = str(error.value)
    assert "threads.yaml: suites.threads.threads: [1, 2] needs an engine" in text
    assert f"engine {engine['name']!r} has no such setting" in text
    assert "set suites.threads.enabled to false" in text


def test_one_thread_count_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"suites.threads.threads: \[1\] is too short"):
        suite_config(tmp_path, threads=[1])


DEFAULTS = {
    "prompt_name": "medium",
    "temperature": 0.7,
    "workers": 1,
    "suites": "threads",
    "n_requests": 10,
    "n_ok": 10,
    "n_errors": 0,
    "n_truncated": 0,
    "e2e_mean_s": 1.0,
    "ttft_mean_s": 0.1,
    "tps_ci95": 2.0,
    "output_tokens_mean": 60.0,
    "prompt_tokens_mean": 57.0,
    "req_per_s": 1.0,
    "prompt_cache": "bust",
}


def thread_rows(count: int, decode: list[float], prefill: list[float]) -> list[dict]:
    condition = f"medium-t0.7-w1-n10-th{count}"
    return [
        DEFAULTS
        | {
            "experiment_id": f"{condition}-r{k}",
            "condition_id": condition,
            "trial": k,
            "repeats": len(decode),
            "threads": count,
            "tps_mean": tps,
            "prefill_tps_mean": pre,
        }
        for k, (tps, pre) in enumerate(zip(decode, prefill, strict=True), start=1)
    ]


def summary(*groups) -> pl.DataFrame:
    data = [row for group in groups for row in group]
    return frame.with_defaults(pl.DataFrame(data))


def bench_file(tmp_path, tg: dict[int, list[float]], pp: dict[int, list[float]]) -> str:
    """llama-bench's own ``-o json`` rows, as perflab's peer file holds them."""
    from perflab.measure.peer import parse_llama_bench, write_peer

    raw = [
        {"n_prompt": 0, "n_gen": 60, "n_threads": n, "avg_ts": sum(s) / len(s), "samples_ts": s}
        for n, s in tg.items()
    ] + [
        {"n_prompt": 57, "n_gen": 0, "n_threads": n, "avg_ts": sum(s) / len(s), "samples_ts": s}
        for n, s in pp.items()
    ]
    path = tmp_path / "llama-bench.json"
    write_peer(path, parse_llama_bench(json.dumps(raw)), ["llama-bench"], "m.gguf")
    return str(path)


# two threads clearly faster than one and than three (an oversubscribed 2-core machine)
CLEAR = (
    thread_rows(1, [50.0, 52.0, 51.0], [400.0, 410.0, 405.0]),
    thread_rows(2, [80.0, 83.0, 81.0], [700.0, 720.0, 710.0]),
    thread_rows(3, [60.0, 61.0, 62.0], [500.0, 505.0, 510.0]),
)
BENCH_TG = {1: [55.0, 56.0, 55.5], 2: [90.0, 91.0, 90.5], 3: [70.0, 69.0, 70.5]}
BENCH_PP = {1: [500.0, 505.0, 502.0], 2: [900.0, 905.0, 902.0], 3: [700.0, 705.0, 702.0]}


def test_the_best_count_is_faster_than_the_next_and_llama_bench_agrees(tmp_path):
    found = threads.summary(summary(*CLEAR), bench_file(tmp_path, BENCH_TG, BENCH_PP))
    assert [p.threads for p in found.points] == [1, 2, 3]
    assert (found.best, found.runner_up, found.prefill_best) == (2, 3, 2)
    assert found.verdict is Outcome.CHANGED and found.test.estimate > 1.2
    # decode and prefill with n and their CI over the three trial means
    two = found.point(2)
    assert two.decode.trials == 3 and two.decode.between_trials
    assert two.decode.mean == pytest.approx(81.333, abs=1e-3)
    assert two.prefill.mean == pytest.approx(710.0) and two.prefill.ci95 > 0
    assert two.condition.n_ok == 30 and two.condition.output_tokens_mean == 60.0
    assert two.peer_tg.tps_mean == pytest.approx(90.5) and two.peer_pp.n_tokens == 57
    assert (found.peer_best, found.agreement) == (2, Agreement.SAME)


def test_noise_between_trials_makes_the_best_count_inconclusive(tmp_path):
    noisy = (
        thread_rows(1, [50.0, 90.0, 60.0], [400.0, 600.0, 450.0]),
        thread_rows(2, [85.0, 52.0, 70.0], [650.0, 420.0, 500.0]),
    )
    found = threads.summary(summary(*noisy))
    assert found.best == 2 and found.runner_up == 1  # 69.0 against 66.7: a hair
    assert found.verdict is Outcome.INCONCLUSIVE
    assert found.test.reason is Reason.UNDERPOWERED and found.test.mde > 0.2
    assert found.agreement is None  # no llama-bench
    assert "inconclusive" in words.best_line(found)


def test_a_different_best_count_within_noise_on_one_side_agrees_within_noise(tmp_path):
    # perflab: 3 threads faster than 2 by a hair it cannot tell apart; llama-bench: 2
    close = (
        thread_rows(2, [80.0, 70.0, 85.0], [700.0, 700.0, 700.0]),
        thread_rows(3, [78.0, 84.0, 80.0], [700.0, 700.0, 700.0]),
    )
    found = threads.summary(summary(*close), bench_file(tmp_path, BENCH_TG, BENCH_PP))
    assert (found.best, found.peer_best) == (3, 2)
    assert not found.ours_at_peer_best.changed and found.peer_at_ours.changed
    assert found.agreement is Agreement.WITHIN_NOISE


def test_each_side_sure_of_its_own_count_disagrees(tmp_path):
    found = threads.summary(
        summary(*CLEAR), bench_file(tmp_path, {2: [60.0, 61.0, 60.5], 3: [90.0, 91.0, 90.5]}, {})
    )
    assert (found.best, found.peer_best) == (2, 3)
    assert found.ours_at_peer_best.changed and found.peer_at_ours.changed
    assert found.agreement is Agreement.DISAGREE
    assert "both sides tell the two apart" in words.peer_line(found)


def test_one_trial_is_inconclusive_for_want_of_trials():
    single = (thread_rows(1, [50.0], [400.0]), thread_rows(2, [80.0], [700.0]))
    found = threads.summary(summary(*single))
    assert found.best == 2 and found.one_pass
    assert found.test.reason is Reason.TOO_FEW_TRIALS
    # one trial: the request-level CI of that pass
    assert found.point(2).decode.ci95 == 2.0 and not found.point(2).decode.between_trials


def test_no_threads_suite_no_finding():
    assert (
        threads.summary(
            summary(thread_rows(1, [50.0], [1.0])).with_columns(pl.lit("basic").alias("suites"))
        )
        is None
    )


def test_the_finding_round_trips_through_findings_json(tmp_path):
    found = threads.summary(summary(*CLEAR), bench_file(tmp_path, BENCH_TG, BENCH_PP))
    from perflab.analyse.findings import serialize

    back = serialize.from_jsonable(threads.ThreadsFinding, json.loads(serialize.dumps(found)))
    assert back == found
    assert isinstance(findings.Findings.__dataclass_fields__["threads"].default, type(None))


def test_the_log_rows_put_output_length_beside_the_rates(tmp_path):
    found = threads.summary(summary(*CLEAR), bench_file(tmp_path, BENCH_TG, BENCH_PP))
    row = words.rows(found)[1]
    assert (row.threads, row.output_tokens, row.n) == (2, "60.0", "30 requests, 3 trials")
    assert row.decode.startswith("81.3 ± ") and row.peer_tg.startswith("90.5 ± ")
    assert row.peer_tg.endswith("(tg60: 60 tokens, n=3)") and row.prefill.startswith("710.0 ± ")
    assert row.peer_pp.endswith("(pp57: 57 tokens, n=3)")


def test_a_count_shown_fastest_becomes_the_logs_idea_for_the_thread_setting(tmp_path):
    from perflab.present.wording import idea

    found = findings.compute(summary(*CLEAR), findings.Context(engine="llamacpp"))
    assert found.threads.best == 2 and found.threads.verdict is Outcome.CHANGED
    ideas = [idea(i) for i in found.run.ideas]
    assert "engine.n_threads: 2 — the threads suite measured it decoding faster" in ideas[0]
    # an inconclusive count suggests nothing about threads
    single = (thread_rows(1, [50.0], [400.0]), thread_rows(2, [80.0], [700.0]))
    quiet = findings.compute(summary(*single), findings.Context(engine="llamacpp"))
    assert not any(i.because == "threads" for i in quiet.run.ideas)


def test_a_disturbed_trial_makes_both_of_perflabs_verdicts_inconclusive(tmp_path):
    bench = bench_file(tmp_path, {1: [90.0, 91.0, 90.5], 2: [60.0, 61.0, 60.5]}, {})
    hit = ("medium-t0.7-w1-n10-th2-r1", "medium-t0.7-w1-n10-th2-r2", "medium-t0.7-w1-n10-th2-r3")
    found = threads.summary(summary(*CLEAR), bench, disturbed_ids=hit)
    assert found.disturbed == hit and found.best == 2 and found.peer_best == 1
    assert found.test.reason is Reason.DISTURBED and found.verdict is Outcome.INCONCLUSIVE
    assert found.ours_at_peer_best.reason is Reason.DISTURBED
    assert found.agreement is Agreement.WITHIN_NOISE  # perflab cannot tell them apart
