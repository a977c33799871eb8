"""Open-loop load against the calibration server over real HTTP: requests leave on
their schedule whatever the server does, latency counts from when each was due, and a
run whose client could not keep the schedule says it is invalid."""

from __future__ import annotations

import statistics

import pytest

from perflab.engines.base import GenerationOptions
from perflab.engines.ollama_engine import OllamaEngine
from perflab.measure.arrivals import ArrivalPlan, schedule_rate
from perflab.measure.open_loop import OpenLoopPlan, quantile, run_open_loop
from perflab.measure.runner import LoadPlan, run_load

MODEL = "llama3.1:8b"
STALL_S = 2.0
STALLED = 10  # server-side index of the request that stalls, holding the only slot


def open_loop(url, plan, timeout_s=10.0):
    engine = OllamaEngine(MODEL, host=url, timeout_s=timeout_s)
    try:
        return run_open_loop(
            engine, "hello world", GenerationOptions(timeout_s=timeout_s), plan, experiment_id="ol"
        )
    finally:
        engine.close()


def stalling_server(make_calibration_server):
    """One slot, ~0.06 s a request; request STALLED holds the slot for STALL_S first."""
    return make_calibration_server(
        num_parallel=1, fault_schedule={STALLED: f"stall_after:0:{STALL_S}"}
    )


def test_a_stall_shows_in_every_request_scheduled_during_it(make_calibration_server):
    server = stalling_server(make_calibration_server)
    plan = OpenLoopPlan(
        ArrivalPlan(rate=5.0, requests=30, arrival="constant"),
        max_in_flight=64,
        max_send_lag_s=0.5,  # a busy test machine may be late; the stall is 2 s
    )
    result, check = open_loop(server.url, plan)
    records = result.records
    assert len(records) == 30 and all(r.status == "ok" for r in records)
    stalled = records[STALLED]
    assert stalled.e2e_s >= STALL_S
    stall_end = stalled.t_end
    during = [r for r in records if stalled.t_scheduled < r.t_scheduled < stall_end]
    assert len(during) >= 9  # due every 0.2 s through the 2 s stall
    for record in during:  # FIFO behind the stalled one: each waits out the rest of the stall
        assert record.e2e_sched_s >= stall_end - record.t_scheduled - 0.01
        assert record.send_lag_s < 0.5  # it left about on time; the server made it late
    waited = sum(r.e2e_sched_s for r in during)
    assert waited >= 0.5 * STALL_S * len(during) - 0.3  # about half the stall on average
    assert check.valid, check.problems


def test_a_closed_loop_hides_the_same_stall(make_calibration_server):
    """The contrast: one closed-loop worker waits with the server, so only one request is slow."""
    server = stalling_server(make_calibration_server)
    engine = OllamaEngine(MODEL, host=server.url, timeout_s=10.0)
    try:
        records = run_load(
            engine, "hello world", GenerationOptions(), LoadPlan(requests=30), experiment_id="cl"
        ).records
    finally:
        engine.close()
    assert sum(r.e2e_s > 1.0 for r in records) == 1


def test_a_client_that_cannot_keep_up_is_invalid(make_calibration_server):
    """One place in flight against a ~0.06 s server at 50 req/s: requests wait for the place."""
    server = make_calibration_server(num_parallel=1)
    plan = OpenLoopPlan(ArrivalPlan(rate=50.0, requests=20, arrival="constant"), max_in_flight=1)
    result, check = open_loop(server.url, plan)
    assert all(r.status == "ok" for r in result.records)
    assert not check.valid
    assert check.n_delayed >= 10 and check.n_dropped == 0
    assert check.send_lag_p99_s > plan.max_send_lag_s
    assert check.achieved_rate < 0.95 * check.schedule_rate
    assert any("send lag p99" in p for p in check.problems)
    assert any("achieved" in p for p in check.problems)
    late = result.records[-1]  # timed from when it was due, it carries every wait before it
    assert late.e2e_sched_s == pytest.approx(late.e2e_s + late.send_lag_s)
    assert late.e2e_sched_s > 0.5


def test_dropped_requests_are_counted_never_sent(make_calibration_server):
    server = make_calibration_server(num_parallel=1)
    plan = OpenLoopPlan(
        ArrivalPlan(rate=50.0, requests=20, arrival="constant"), max_in_flight=1, on_full="drop"
    )
    result, check = open_loop(server.url, plan)
    dropped = [r for r in result.records if r.status == "dropped"]
    assert len(result.records) == 20
    assert check.n_dropped == len(dropped) >= 5
    assert len(server.scheduler.log) == 20 - len(dropped)
    assert not check.valid


def test_warmup_is_sent_first_and_apart(make_calibration_server):
    server = make_calibration_server()
    plan = OpenLoopPlan(ArrivalPlan(rate=20.0, requests=5), warmup_requests=2)
    result, check = open_loop(server.url, plan)
    assert [r.is_warmup for r in result.records] == [True, True] + [False] * 5
    assert all(r.t_scheduled is None for r in result.records[:2])
    assert check.n_scheduled == check.n_sent == 5


def test_poisson_schedules_are_seeded():
    one = ArrivalPlan(rate=4.0, requests=50, seed=7).offsets()
    assert one == ArrivalPlan(rate=4.0, requests=50, seed=7).offsets()
    assert one != ArrivalPlan(rate=4.0, requests=50, seed=8).offsets()


@pytest.mark.parametrize("burstiness", [0.25, 1.0, 4.0])
def test_gamma_gaps_have_the_mean_and_spread_of_their_shape(burstiness):
    offsets = ArrivalPlan(rate=10.0, requests=20000, burstiness=burstiness, seed=1).offsets()
    gaps = [b - a for a, b in zip([0.0, *offsets], offsets)]
    mean = statistics.fmean(gaps)
    cv = statistics.stdev(gaps) / mean
    assert mean == pytest.approx(0.1, rel=0.05)
    assert cv == pytest.approx(burstiness**-0.5, rel=0.05)  # a gamma's CV is 1/sqrt(shape)
    assert schedule_rate(offsets) == pytest.approx(10.0, rel=0.05)


def test_constant_arrivals_are_evenly_spaced():
    assert ArrivalPlan(rate=4.0, requests=3, arrival="constant").offsets() == [0.25, 0.5, 0.75]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": 0, "requests": 5},
        {"rate": 1, "requests": 0},
        {"rate": 1, "requests": 5, "arrival": "bursty"},
        {"rate": 1, "requests": 5, "burstiness": 0},
        {"rate": 1, "requests": 5, "arrival": "constant", "burstiness": 2},
    ],
)
def test_bad_arrival_plans_are_refused(kwargs):
    with pytest.raises(ValueError):
        ArrivalPlan(**kwargs)


def test_quantile_interpolates_like_polars():
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert quantile([], 0.99) is None


def test_lengths_are_drawn_per_request_and_seeded(make_calibration_server):
    """Output lengths are exact (the server stops at max_tokens); prompt lengths are the
    server's own count of a prompt cut to round(L / 1.3) words, plus the nonce's word."""
    from perflab.measure.arrivals import LengthPlan

    server = make_calibration_server(output_tokens=200, itl_s=0.0005)
    lengths = LengthPlan(prompt_mean=40, prompt_sd=15, output_mean=20, output_sd=6, seed=3)
    drawn = lengths.draws(40)
    assert drawn == LengthPlan(40, 15, 20, 6, seed=3).draws(40)  # seeded
    assert drawn != LengthPlan(40, 15, 20, 6, seed=3, trial=2).draws(40)  # a trial of its own
    plan = OpenLoopPlan(
        ArrivalPlan(rate=40.0, requests=40, arrival="constant"),
        lengths=lengths,
        max_send_lag_s=0.5,
    )
    result, _ = open_loop(server.url, plan)
    records = result.records
    assert [r.output_tokens for r in records] == [out for _, out in drawn]
    for record, (prompt_tokens, _) in zip(records, drawn):
        assert abs(record.prompt_tokens - prompt_tokens) <= 2
    outputs = [out for _, out in drawn]
    assert statistics.fmean(outputs) == pytest.approx(20, abs=3)
    assert statistics.stdev(outputs) == pytest.approx(6, abs=2.5)


@pytest.mark.parametrize("shared", [None, 150])
def test_a_shared_prefix_is_kept_by_the_prompt_cache(make_calibration_server, shared):
    """One slot with a prompt cache: with a shared prefix (the nonce after it) every request
    after the first reuses it; with a busted prompt none does."""
    from perflab.measure.load_plan import shared_prefix

    server = make_calibration_server(num_parallel=1, prompt_cache=True)
    plan = OpenLoopPlan(
        ArrivalPlan(rate=10.0, requests=8, arrival="constant"),
        shared_prefix=shared_prefix("hello world", shared),
        max_send_lag_s=0.5,
    )
    result, _ = open_loop(server.url, plan)
    assert all(r.status == "ok" for r in result.records)
    cached = [entry.cached_tokens for entry in server.scheduler.log[1:]]
    if shared is None:
        assert max(cached) <= 1
    else:
        assert min(cached) >= shared - 5  # the shared words, as the server counts them
        prompt_tokens = [r.prompt_tokens for r in result.records]
        assert min(prompt_tokens) >= shared


def test_chats_grow_their_history_turn_by_turn(make_calibration_server):
    """Each arrival a 3-turn chat; a later turn's prompt holds the whole conversation, so
    the slot's prompt cache serves all of it but the new message."""
    server = make_calibration_server(num_parallel=1, prompt_cache=True)
    plan = OpenLoopPlan(
        # a second apart, so each chat's 3 turns are over before the next chat takes the one
        # slot, even on a busy machine (at 4/s, 5 of the 6 later turns were cached at load 8)
        ArrivalPlan(rate=1.0, requests=3, arrival="constant"),
        turns=3,
        max_send_lag_s=0.5,
    )
    result, check = open_loop(server.url, plan)
    records = result.records
    assert [r.turn for r in records] == [0, 1, 2] * 3 and all(r.status == "ok" for r in records)
    assert check.n_scheduled == check.n_sent == 3  # arrivals are conversations
    for chat in (records[0:3], records[3:6], records[6:9]):
        tokens = [r.prompt_tokens for r in chat]
        assert tokens[0] < tokens[1] < tokens[2]
        for earlier, later in zip(chat, chat[1:]):  # due when the last answer ended
            assert later.t_scheduled == pytest.approx(earlier.t_end, abs=0.05)
    # the 6 later turns find their conversation in the slot; a first turn shares a word at most
    assert sum(entry.cached_tokens > 5 for entry in server.scheduler.log) == 6
