"""A sweep to the limit: the probe (synchronous, then saturated throughput) decides the
rates, each point is its own experiment job that reads its rate when it runs, and a
point after one whose latency diverged is not measured, with the reason kept."""

from __future__ import annotations

import json

import pytest
from conftest import FAST_TIMING, ROOT
from open_loop_support import OTHER_SUITES_OFF as OFF
from open_loop_support import measured

from perflab.analyse.findings import capacity
from perflab.analyse.table_files import write_aggregates
from perflab.config.load import load_config_file
from perflab.config.sweep import expand_experiments
from perflab.engines.base import GenerationOptions
from perflab.engines.ollama_engine import OllamaEngine
from perflab.measure.experiment import ExperimentPaths, SweepInputs
from perflab.measure.probe import ProbeResult, run_probe, skip_reason, sweep_rates
from perflab.measure.spec import experiment_spec


def sweep_config(**rate) -> dict:
    overrides = {
        "engine": {"name": "calibration", "model": "llama3.1:8b"},
        "calibration": FAST_TIMING | {"num_parallel": 1},
        "repeats": 1,
        "warmup_requests": 1,
        "sampler": {"interval_s": 0.2},
        "suites": OFF | {"rate": {"enabled": True, "rates": "sweep"} | rate},
    }
    return load_config_file(ROOT / "config" / "config.yaml", overrides=overrides)


def test_sweep_rates_run_evenly_up_to_the_high_multiple():
    assert sweep_rates(10.0, 4, 1.2) == (3.0, 6.0, 9.0, 12.0)
    assert sweep_rates(7.0, 3, 1.0) == (2.333, 4.667, 7.0)


def test_sweep_points_are_experiments_known_before_the_probe():
    config = sweep_config(sweep_points=3, requests=20)
    ids = sorted(expand_experiments(config))
    assert ids == [f"medium-t0.7-w64-n20-s{k}of3-poisson-r1" for k in (1, 2, 3)]
    experiment = expand_experiments(config)[ids[0]]
    spec = experiment_spec(config, experiment)
    assert spec["experiment"]["sweep_point"] == 1 and "rate" in spec["experiment"]
    assert spec["experiment"]["rate"] is None and spec["open_loop"]["diverge_factor"] == 10


def test_the_probe_measures_one_at_a_time_and_saturated(make_calibration_server):
    """2 slots of ~0.06 s: 20 open requests keep both busy, one at a time keeps one."""
    server = make_calibration_server(num_parallel=2)
    engine = OllamaEngine("llama3.1:8b", host=server.url, timeout_s=10)
    probe = {
        "prompt_text": "hello world",
        "prompt_cache": "bust",
        "probe_requests": 20,
        "max_in_flight": 64,
        "sweep_points": 4,
        "sweep_high": 1.2,
    }
    try:
        result = run_probe(engine, GenerationOptions(), probe, warmup_requests=1)
    finally:
        engine.close()
    assert result.saturating_workers == 20 and result.n_errors == 0
    busy = [e.prefill_s + e.decode_s for e in server.scheduler.log[-20:]]  # the server's own
    truth = 2 / (sum(busy) / len(busy))
    assert result.saturated_server_s == pytest.approx(sum(busy) / len(busy), rel=0.02)
    # below by the client's turn-around per request, more so on a busy machine
    assert 0.75 * truth <= result.saturated_rate <= 1.02 * truth
    assert result.saturated_rate > 1.5 * result.synchronous_rate
    assert result.synchronous_p50_s == pytest.approx(1 / result.synchronous_rate, rel=0.2)
    assert result.rates == sweep_rates(result.saturated_rate, 4, 1.2)
    assert result.probe_s > 0 and len(server.scheduler.log) == 41  # 1 warm-up + 2 x 20


def test_skip_reasons():
    probe = ProbeResult(10.0, 0.1, 20.0, 20, (5.0, 10.0), 40, 0, 3.0)
    assert skip_reason(None, probe, 10) is None
    assert skip_reason({"e2e_sched_p50_s": 0.5, "schedule_valid": True}, probe, 10) is None
    assert "diverged" in skip_reason({"e2e_sched_p50_s": 1.5, "schedule_valid": True}, probe, 10)
    assert "schedule" in skip_reason({"schedule_valid": False}, probe, 10)
    assert "not measured" in skip_reason({"skipped": "x"}, probe, 10)


def test_a_point_after_divergence_is_not_measured_and_says_why(tmp_path):
    config = sweep_config(
        sweep_points=3, requests=20, diverge_factor=2, arrival="constant", max_send_lag_s=0.5
    )
    probe_path = tmp_path / "rate_probe.json"
    # one slot of ~0.06 s serves ~16 req/s: 8 holds, 40 queues, 80 is never reached
    probe = ProbeResult(16.0, 0.06, 16.0, 20, (8.0, 40.0, 80.0), 40, 0, 2.0)
    probe_path.write_text(json.dumps(probe.as_dict()))
    experiments = sorted(expand_experiments(config).values(), key=lambda e: e.sweep_point)
    tables, previous, said = [], None, []
    for experiment in experiments:
        files = ExperimentPaths.in_dir(tmp_path / experiment.id, tmp_path / "failed")
        metadata, table = measured(
            experiment_spec(config, experiment),
            files,
            say=said.append,
            sweep=SweepInputs(probe_path, previous),
        )
        assert metadata["experiment"]["rate"] == probe.rates[experiment.sweep_point - 1]
        assert metadata["experiment"]["id"] == experiment.id  # the id names the point, not the rate
        tables.append(table)
        previous = table.summary_json
    third = json.loads(tables[2].summary_json.read_text())
    assert third["summary"] is None and "diverged" in third["skipped"]
    assert any("not measured" in line for line in said)
    write_aggregates(
        [t.records for t in tables],
        [t.summary for t in tables],
        tmp_path / "requests.parquet",
        tmp_path / "summary.parquet",
        tmp_path / "summary.csv",
        tmp_path / "summary.json",
    )
    skipped = ((None, 80.0, third["skipped"]),)
    (finding,) = capacity.summary(tmp_path / "requests.parquet", capacity.SloTargets(), skipped)
    assert [p.offered_rate for p in finding.points] == [8.0, 40.0]
    assert finding.skipped_rates == (80.0,) and "diverged" in finding.stopped_because
