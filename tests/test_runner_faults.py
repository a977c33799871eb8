"""The fault matrix over real HTTP: every request ends as exactly one record."""

from collections import Counter

import pytest

from perflab.calibration import refused_url
from perflab.engines.base import GenerationOptions
from perflab.engines.ollama_engine import OllamaEngine
from perflab.runner import LoadPlan, error_rate, run_load

MODEL = "llama3.1:8b"
PLANNED = 8


def run(url, options=None, workers=2):
    engine = OllamaEngine(MODEL, host=url, timeout_s=5)
    try:
        return run_load(
            engine,
            "hello world",
            options or GenerationOptions(timeout_s=5),
            LoadPlan(workers=workers, requests=PLANNED),
            experiment_id="f",
        ).records
    finally:
        engine.close()


def assert_complete(records):
    assert len(records) == PLANNED
    assert sorted(r.request_index for r in records) == list(range(PLANNED))


@pytest.mark.parametrize(
    ("fault", "status", "error_class"),
    [
        ("http_500", "error", "http_status"),
        ("http_503", "error", "http_status"),
        ("drop_after:2", "error", "dropped"),
        ("malformed_after:2", "error", "protocol"),
        ("error_after:2", "error", "server"),
    ],
)
def test_each_fault_is_one_classified_record(calibration_server, fault, status, error_class):
    calibration_server.inject_fault(fault, count=3)
    records = run(calibration_server.url)
    assert_complete(records)
    failed = [r for r in records if r.status != "ok"]
    assert len(failed) == 3
    assert {(r.status, r.error_class) for r in failed} == {(status, error_class)}
    assert all(r.output_tokens == 8 for r in records if r.status == "ok")
    assert error_rate(records) == pytest.approx(3 / PLANNED)


def test_stall_past_the_timeout_is_a_timeout_record(calibration_server):
    calibration_server.inject_fault("stall_after:1:3", count=1)
    records = run(calibration_server.url, GenerationOptions(timeout_s=0.5))
    assert_complete(records)
    timeouts = [r for r in records if r.status == "timeout"]
    assert len(timeouts) == 1 and timeouts[0].error_class == "timeout"
    assert timeouts[0].e2e_s < 2.0 and timeouts[0].output_tokens == 1


def test_nothing_listening_every_request_is_a_connect_error():
    records = run(refused_url())
    assert_complete(records)
    assert Counter(r.error_class for r in records) == {"connect": PLANNED}


def test_server_killed_mid_experiment(calibration_server):
    calibration_server.timing.fault_schedule = {3: "kill_after:2"}
    records = run(calibration_server.url, workers=1)
    assert_complete(records)
    classes = [r.error_class for r in sorted(records, key=lambda r: r.request_index)]
    assert classes[:3] == [None, None, None]
    assert classes[3] == "dropped"
    assert set(classes[4:]) == {"connect"}


def test_fault_rates_match_the_servers_own_log(make_calibration_server):
    server = make_calibration_server(fault_rates={"http_500": 0.2, "drop_after:1": 0.2}, seed=3)
    records = run(server.url)
    assert_complete(records)
    injected = Counter(entry.fault for entry in server.wait_for_log(PLANNED) if entry.fault)
    measured = Counter(r.error_class for r in records if r.error_class)
    assert measured.get("http_status", 0) == sum(
        n for f, n in injected.items() if f.startswith("http_500")
    )
    assert measured.get("dropped", 0) == sum(
        n for f, n in injected.items() if f.startswith("drop_after")
    )
