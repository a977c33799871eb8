"""Runner logic with in-test engines whose timing the test controls."""

from __future__ import annotations

import json
import threading
import time

import pytest

from perflab.core.records import ServerTimings
from perflab.engines.base import Chunk, EngineError, GenerationOptions
from perflab.measure.partial import PartialWriter
from perflab.measure.runner import (
    Clock,
    LoadPlan,
    error_rate,
    measure_request,
    run_load,
)

FIRST_S, GAP_S, TOKENS = 0.03, 0.01, 5
REQUEST_S = FIRST_S + (TOKENS - 1) * GAP_S


class ScriptedEngine:
    """Sleeps FIRST_S before the first token and GAP_S between tokens.

    Call ``i`` (counted across all threads) raises an EngineError when ``i`` is
    in ``fail_on`` and a RuntimeError when it is in ``crash_on``; it notes
    when it yields each chunk and how many streams run at once.
    """

    name = "scripted"

    def __init__(self, fail_on=frozenset(), crash_on=frozenset(), timeout_on=frozenset()):
        self.fail_on, self.crash_on, self.timeout_on = fail_on, crash_on, timeout_on
        self.lock = threading.Lock()
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.yielded: dict[int, list[float]] = {}

    def stream(self, prompt, options):
        with self.lock:
            call, self.calls = self.calls, self.calls + 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        stamps = self.yielded.setdefault(call, [])
        try:
            time.sleep(FIRST_S)
            if call in self.fail_on:
                raise EngineError("http_status", "HTTP 500: boom")
            if call in self.timeout_on:
                raise EngineError("timeout", "request exceeded its 0.03 s timeout")
            for index in range(TOKENS):
                if index:
                    time.sleep(GAP_S)
                if index == 2 and call in self.crash_on:
                    raise RuntimeError("unexpected")
                stamps.append(time.perf_counter())
                yield Chunk(text="x", n_tokens=1)
            yield Chunk(done=True, timings=ServerTimings(prompt_tokens=3, output_tokens=TOKENS))
        finally:
            with self.lock:
                self.in_flight -= 1


class FakeClock(Clock):
    """A clock that only moves when the engine says so."""

    def __init__(self):
        self._epoch, self._start, self.t = 1000.0, 0.0, 0.0

    def now(self) -> float:
        return self.t


class SteppedEngine:
    """Advances a FakeClock by scripted steps: (seconds before the chunk, chunk)."""

    name = "stepped"

    def __init__(self, clock: FakeClock, steps, error: Exception | None = None):
        self.clock, self.steps, self.error = clock, steps, error

    def stream(self, prompt, options):
        for advance, chunk in self.steps:
            self.clock.t += advance
            yield chunk
        if self.error is not None:
            self.clock.t += 0.5
            raise self.error


def measure(engine, clock, **kwargs):
    return measure_request(
        engine,
        "p",
        GenerationOptions(),
        experiment_id="e",
        request_index=kwargs.pop("request_index", 0),
        worker=kwargs.pop("worker", 0),
        is_warmup=kwargs.pop("is_warmup", False),
        clock=clock,
    )


def run(engine, plan, **kwargs):
    return run_load(engine, "p", GenerationOptions(), plan, experiment_id="e", **kwargs)


# -- measure_request --------------------------------------------------------------


def test_measure_request_computes_timings_from_arrival_times():
    clock = FakeClock()
    timings = ServerTimings(
        load_s=0.1, prefill_s=0.2, decode_s=0.3, total_s=0.65, prompt_tokens=7, output_tokens=4
    )
    steps = [
        (0.5, Chunk(text="", n_tokens=0)),  # an empty chunk is not the first token
        (0.25, Chunk(text="a", n_tokens=1)),
        (0.1, Chunk(text="b", n_tokens=1)),
        (0.2, Chunk(text="cd", n_tokens=2)),
        (0.05, Chunk(done=True, timings=timings)),
    ]
    record = measure(SteppedEngine(clock, steps), clock, request_index=3, worker=1)
    assert (record.status, record.error_class, record.error) == ("ok", None, None)
    assert (record.request_index, record.worker, record.is_warmup) == (3, 1, False)
    assert record.ttft_s == pytest.approx(0.75)
    assert record.itl_s == pytest.approx([0.1, 0.1, 0.1])  # "cd": 0.2 s shared by 2 tokens
    assert record.e2e_s == pytest.approx(1.1)
    assert record.t_submit == pytest.approx(1000.0)
    assert record.t_first_token == pytest.approx(1000.75)
    assert record.t_end == pytest.approx(1001.1)
    assert record.output_tokens == 4 and record.prompt_tokens == 7
    assert record.tps == pytest.approx(3 / (1.1 - 0.75))
    assert (record.load_s, record.prefill_s, record.decode_s) == (0.1, 0.2, 0.3)
    assert record.unaccounted_s == pytest.approx(1.1 - 0.6)


def test_measure_request_keeps_what_arrived_before_an_error():
    clock = FakeClock()
    steps = [(0.2, Chunk(text="a", n_tokens=1)), (0.1, Chunk(text="b", n_tokens=1))]
    engine = SteppedEngine(clock, steps, error=EngineError("dropped", "connection dropped"))
    record = measure(engine, clock)
    assert (record.status, record.error_class) == ("error", "dropped")
    assert record.error == "connection dropped"
    assert record.ttft_s == pytest.approx(0.2) and record.itl_s == pytest.approx([0.1])
    assert record.e2e_s == pytest.approx(0.8)
    assert record.output_tokens == 2 and record.tps is None and record.unaccounted_s is None


def test_measure_request_timeout_status():
    clock = FakeClock()
    engine = SteppedEngine(clock, [], error=EngineError("timeout", "too slow"))
    record = measure(engine, clock)
    assert (record.status, record.error_class) == ("timeout", "timeout")
    assert record.ttft_s is None and record.t_first_token is None and record.output_tokens == 0


@pytest.mark.parametrize("when", ["on call", "mid-stream"])
def test_an_unexpected_exception_is_one_error_record(when):
    clock = FakeClock()

    class Broken:
        name = "broken"

        def stream(self, prompt, options):
            if when == "on call":
                raise KeyError("surprise")
            return SteppedEngine(clock, [(0.1, Chunk("a", 1))], error=KeyError("surprise")).stream(
                prompt, options
            )

    record = measure(Broken(), clock)
    assert (record.status, record.error_class) == ("error", "engine")
    assert "KeyError" in record.error and "surprise" in record.error
    assert record.tps is None
    assert record.output_tokens == (0 if when == "on call" else 1)


def test_measured_timings_with_real_sleeps():
    engine = ScriptedEngine()
    record = measure(engine, Clock())
    stamps = engine.yielded[0]
    assert record.status == "ok" and record.output_tokens == TOKENS
    assert record.ttft_s == pytest.approx(FIRST_S, abs=0.02)
    assert record.e2e_s == pytest.approx(REQUEST_S, abs=0.03)
    assert len(record.itl_s) == TOKENS - 1
    # the gaps the runner saw are the gaps at which the engine yielded, to within a ms
    engine_gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert record.itl_s == pytest.approx(engine_gaps, abs=1e-3)
    assert all(gap == pytest.approx(GAP_S, abs=0.01) for gap in record.itl_s)
    assert record.t_submit < record.t_first_token < record.t_end


# -- run_load -----------------------------------------------------------------------


def test_run_load_timings_come_from_arrival_times():
    result = run(ScriptedEngine(), LoadPlan(requests=3))
    for record in result.records:
        assert record.status == "ok" and record.output_tokens == TOKENS
        # a sleep never ends early; on a busy machine it can end late
        assert FIRST_S - 1e-3 <= record.ttft_s < FIRST_S + 0.05
        assert all(GAP_S - 1e-3 <= gap < GAP_S + 0.05 for gap in record.itl_s)
        assert REQUEST_S - 1e-3 <= record.e2e_s < REQUEST_S + 0.1
        assert record.tps == pytest.approx((TOKENS - 1) / (record.e2e_s - record.ttft_s))


def test_warmup_is_recorded_flagged_and_counted_apart():
    engine = ScriptedEngine(fail_on={0}, crash_on={4})  # call 0 is a warm-up, 4 measured
    result = run(engine, LoadPlan(workers=2, requests=4, warmup_requests=2))
    records = result.records
    assert len(records) == 6
    assert [r.is_warmup for r in records] == [True, True, False, False, False, False]
    warmups = [r for r in records if r.is_warmup]
    assert {r.worker for r in warmups} == {0}
    assert warmups[1].t_submit >= warmups[0].t_end  # one at a time
    assert result.measured_started >= max(r.t_end for r in warmups)
    assert result.started <= min(r.t_submit for r in records)
    assert all(r.t_submit >= result.measured_started for r in records if not r.is_warmup)
    # the failed warm-up is on record but not in the error rate; the crash is
    assert warmups[0].status == "error"
    assert error_rate(records) == pytest.approx(1 / 4)
    assert error_rate(warmups) == 0.0


@pytest.mark.parametrize(("workers", "requests"), [(1, 5), (2, 8), (3, 7), (4, 9)])
def test_closed_loop_sends_exactly_n_requests(workers, requests):
    engine = ScriptedEngine()
    result = run(engine, LoadPlan(workers=workers, requests=requests))
    records = result.records
    assert len(records) == requests == engine.calls
    assert [r.request_index for r in records] == list(range(requests))
    assert {r.worker for r in records} == set(range(workers))
    assert engine.max_in_flight == workers
    for worker in range(workers):
        own = sorted((r.t_submit, r.t_end) for r in records if r.worker == worker)
        assert all(later[0] >= earlier[1] for earlier, later in zip(own, own[1:]))
    assert result.measured_wall_s == pytest.approx(
        max(r.t_end for r in records) - result.measured_started, abs=0.05
    )


def test_more_workers_than_requests():
    engine = ScriptedEngine()
    result = run(engine, LoadPlan(workers=4, requests=2))
    assert [r.request_index for r in result.records] == [0, 1] and engine.calls == 2


def test_duration_mode_stops_issuing_after_the_deadline():
    duration = 0.4
    result = run(ScriptedEngine(), LoadPlan(workers=2, duration_s=duration))
    deadline = result.measured_started + duration
    records = result.records
    # ~0.07 s a request: each worker fits about 6 into 0.4 s
    assert 4 <= len(records) <= 16
    assert sorted(r.request_index for r in records) == list(range(len(records)))
    assert all(r.t_submit < deadline for r in records)
    for worker in (0, 1):
        own = [r for r in records if r.worker == worker]
        # closed loop up to the deadline: each worker's last request ran past it
        assert max(r.t_end for r in own) >= deadline
    assert result.measured_ended <= deadline + REQUEST_S + 0.05


def test_failures_become_records_never_lost():
    engine = ScriptedEngine(fail_on={1}, crash_on={3}, timeout_on={4})
    result = run(engine, LoadPlan(requests=6))
    assert len(result.records) == 6
    by_index = {r.request_index: r for r in result.records}
    assert (by_index[1].status, by_index[1].error_class) == ("error", "http_status")
    assert (by_index[3].status, by_index[3].error_class) == ("error", "engine")
    assert "unexpected" in by_index[3].error and by_index[3].tps is None
    assert by_index[3].output_tokens == 2  # what arrived before the crash
    assert (by_index[4].status, by_index[4].error_class) == ("timeout", "timeout")
    assert all(by_index[i].status == "ok" for i in (0, 2, 5))
    assert error_rate(result.records) == pytest.approx(3 / 6)


def test_error_rate_of_nothing_is_zero():
    assert error_rate([]) == 0.0


def test_each_record_is_written_as_it_ends(tmp_path):
    path = tmp_path / "partial.jsonl"
    append = PartialWriter(path)
    lines_when_called = []

    def on_record(record):
        append(record)
        lines_when_called.append(len(path.read_text().splitlines()))

    try:
        result = run(
            ScriptedEngine(crash_on={2}),
            LoadPlan(workers=2, requests=3, warmup_requests=1),
            on_record=on_record,
        )
    finally:
        append.close()
    # unbuffered: each record is on disk when its callback returns
    assert lines_when_called == [1, 2, 3, 4]
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted(row["request_index"] for row in rows) == [0, 1, 2, 3]
    assert [row["is_warmup"] for row in rows].count(True) == 1
    assert sorted(rows, key=lambda row: row["request_index"]) == [
        json.loads(r.to_json()) for r in result.records
    ]
    # a second writer appends to what is there
    again = PartialWriter(path)
    again(result.records[0])
    again.close()
    assert len(path.read_text().splitlines()) == 5


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"requests": 1, "duration_s": 1.0},
        {"requests": 1, "workers": 0},
        {"duration_s": 1.0, "workers": -1},
    ],
)
def test_load_plan_rejects_bad_combinations(kwargs):
    with pytest.raises(ValueError):
        LoadPlan(**kwargs)


def test_load_plan_accepts_either_mode():
    assert LoadPlan(requests=3).duration_s is None
    assert LoadPlan(duration_s=2.0, workers=4, warmup_requests=1).requests is None
