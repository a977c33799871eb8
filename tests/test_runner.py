"""Runner logic with an engine whose timing the test controls."""

import time

import pytest

from perflab.engines.base import Chunk, EngineError, GenerationOptions
from perflab.records import ServerTimings
from perflab.runner import LoadPlan, error_rate, run_load

FIRST_S, GAP_S, TOKENS = 0.03, 0.01, 5


class ScriptedEngine:
    """Sleeps FIRST_S before the first token, GAP_S between tokens."""

    name = "scripted"

    def __init__(self, fail_on: set[int] = frozenset(), crash_on: set[int] = frozenset()):
        self.calls = 0
        self.fail_on, self.crash_on = fail_on, crash_on

    def stream(self, prompt, options):
        call, self.calls = self.calls, self.calls + 1
        time.sleep(FIRST_S)
        if call in self.fail_on:
            raise EngineError("http_status", "HTTP 500: boom")
        if call in self.crash_on:
            raise RuntimeError("unexpected")
        for index in range(TOKENS):
            if index:
                time.sleep(GAP_S)
            yield Chunk(text="x", n_tokens=1)
        yield Chunk(done=True, timings=ServerTimings(prompt_tokens=3, output_tokens=TOKENS))


def test_timings_come_from_arrival_times():
    result = run_load(
        ScriptedEngine(), "p", GenerationOptions(), LoadPlan(requests=3), experiment_id="e"
    )
    for record in result.records:
        assert record.status == "ok" and record.output_tokens == TOKENS
        assert record.ttft_s == pytest.approx(FIRST_S, abs=0.02)
        assert len(record.itl_s) == TOKENS - 1
        assert all(gap == pytest.approx(GAP_S, abs=0.01) for gap in record.itl_s)
        assert record.e2e_s == pytest.approx(FIRST_S + (TOKENS - 1) * GAP_S, abs=0.03)
        assert record.tps == pytest.approx((TOKENS - 1) / (record.e2e_s - record.ttft_s))
        assert record.t_submit < record.t_first_token < record.t_end


def test_warmup_is_recorded_and_flagged():
    plan = LoadPlan(requests=4, warmup_requests=2)
    result = run_load(ScriptedEngine(), "p", GenerationOptions(), plan, experiment_id="e")
    assert [r.is_warmup for r in result.records] == [True, True, False, False, False, False]
    assert result.measured_started >= max(r.t_end for r in result.records if r.is_warmup)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_closed_loop_sends_exactly_n_requests(workers):
    result = run_load(
        ScriptedEngine(),
        "p",
        GenerationOptions(),
        LoadPlan(workers=workers, requests=7),
        experiment_id="e",
    )
    assert len(result.records) == 7
    assert sorted(r.request_index for r in result.records) == list(range(7))
    assert {r.worker for r in result.records} == set(range(workers))
    for worker in range(workers):
        own = sorted((r.t_submit, r.t_end) for r in result.records if r.worker == worker)
        assert all(b[0] >= a[1] for a, b in zip(own, own[1:]))  # next one only after the last


def test_duration_mode_stops_issuing_after_the_deadline():
    plan = LoadPlan(workers=2, duration_s=0.5)
    result = run_load(ScriptedEngine(), "p", GenerationOptions(), plan, experiment_id="e")
    assert 4 <= len(result.records) <= 20
    assert all(r.t_submit <= result.measured_started + 0.5 + 0.01 for r in result.records)


def test_failures_become_records_never_lost():
    engine = ScriptedEngine(fail_on={1}, crash_on={3})
    result = run_load(engine, "p", GenerationOptions(), LoadPlan(requests=5), experiment_id="e")
    assert len(result.records) == 5
    by_index = {r.request_index: r for r in result.records}
    assert by_index[1].status == "error" and by_index[1].error_class == "http_status"
    assert by_index[3].status == "error" and by_index[3].error_class == "engine"
    assert "unexpected" in by_index[3].error and by_index[3].tps is None
    assert error_rate(result.records) == pytest.approx(2 / 5)


def test_each_record_is_handed_over_as_it_ends():
    seen = []
    run_load(
        ScriptedEngine(),
        "p",
        GenerationOptions(),
        LoadPlan(requests=3, warmup_requests=1),
        experiment_id="e",
        on_record=seen.append,
    )
    assert len(seen) == 4


@pytest.mark.parametrize(
    "kwargs", [{}, {"requests": 1, "duration_s": 1.0}, {"requests": 1, "workers": 0}]
)
def test_load_plan_rejects_bad_combinations(kwargs):
    with pytest.raises(ValueError):
        LoadPlan(**kwargs)
