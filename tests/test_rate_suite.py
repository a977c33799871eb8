"""The rate suite from config to files: its keys, its experiment ids and specs, one
open-loop experiment job on the calibration engine, and the default run unchanged."""

from __future__ import annotations

import json

import polars as pl
import pytest
from conftest import FAST_TIMING, ROOT
from open_loop_support import OTHER_SUITES_OFF as ONLY_RATE
from open_loop_support import measured

from perflab.config.load import ConfigError, load_config_file
from perflab.config.sweep import expand_experiments
from perflab.measure.estimate import plan_run
from perflab.measure.experiment import ExperimentPaths
from perflab.measure.spec import experiment_spec

DEFAULT = ROOT / "config" / "config.yaml"


def rate_config(**rate) -> dict:
    overrides = {
        "engine": {"name": "calibration", "model": "llama3.1:8b"},
        "calibration": FAST_TIMING | {"num_parallel": 1},
        "repeats": 1,
        "warmup_requests": 1,
        "sampler": {"interval_s": 0.1},
        "suites": ONLY_RATE | {"rate": {"enabled": True} | rate},
    }
    return load_config_file(DEFAULT, overrides=overrides)


def test_the_default_run_has_no_rate_experiments_and_keeps_its_specs():
    config = load_config_file(DEFAULT)
    experiments = expand_experiments(config)
    assert not any(e.rate is not None for e in experiments.values())
    spec = experiment_spec(config, next(iter(experiments.values())))
    assert "open_loop" not in spec and "rate" not in spec["experiment"]


def test_each_rate_is_one_condition_with_its_arrivals_in_the_id():
    config = rate_config(rates=[2, 4.5], requests=30, max_in_flight=8)
    assert sorted(expand_experiments(config)) == [
        "medium-t0.7-w8-n30-q2-poisson-r1",
        "medium-t0.7-w8-n30-q4.5-poisson-r1",
    ]
    bursty = rate_config(rates=[2], burstiness=0.5)
    assert list(expand_experiments(bursty)) == ["medium-t0.7-w64-n50-q2-gamma0.5-r1"]
    constant = rate_config(rates=[2], arrival="constant")
    assert list(expand_experiments(constant)) == ["medium-t0.7-w64-n50-q2-constant-r1"]


def test_an_open_loop_experiment_is_planned_by_its_schedule():
    config = rate_config(rates=[2], requests=30)
    plan = plan_run(expand_experiments(config).values(), warmup_requests=1)
    assert plan.timed_s == pytest.approx(15.0) and plan.n_requests == 1


@pytest.mark.parametrize(
    ("rate", "wrong"),
    [
        ({"arrival": "constant", "burstiness": 2}, "suites.rate.burstiness"),
        ({"rates": [0]}, "suites.rate.rates"),
        ({"on_full": "queue"}, "suites.rate.on_full"),
        ({"rates": [1e-7]}, "suites.rate"),
        ({"prompt": "nonesuch"}, "suites.rate.prompt"),
    ],
)
def test_bad_rate_keys_are_refused_with_the_key(rate, wrong):
    with pytest.raises(ConfigError, match=wrong.replace(".", r"\.")):
        rate_config(**rate)


def test_one_open_loop_job_writes_its_schedule_and_latencies(tmp_path):
    config = rate_config(rates=[10], requests=20, arrival="constant", max_send_lag_s=0.5)
    (experiment,) = expand_experiments(config).values()
    spec = experiment_spec(config, experiment)
    assert spec["open_loop"] == {
        "seed": 0,
        "on_full": "delay",
        "max_send_lag_s": 0.5,  # a busy test machine may be late
        "min_rate_fraction": 0.95,
    }
    out = tmp_path / experiment.id
    files = ExperimentPaths.in_dir(out, tmp_path / "failed")
    metadata, tables = measured(spec, files, say=lambda _: None)
    assert metadata["schedule"]["n_scheduled"] == metadata["schedule"]["n_sent"] == 20
    assert metadata["schedule"]["valid"], metadata["schedule"]["problems"]
    assert metadata["plan"]["arrivals"]["rate"] == 10
    summary = json.loads(tables.summary_json.read_text())["summary"]
    assert summary["n_requests"] == 20 and summary["n_dropped"] == 0
    assert summary["offered_rate"] == 10 and summary["schedule_valid"] is True
    assert summary["achieved_rate"] == pytest.approx(10, rel=0.05)
    assert summary["e2e_sched_p50_s"] >= summary["e2e_p50_s"]
    assert summary["send_lag_p99_s"] < 0.5
    records = pl.read_parquet(tables.records).filter(~pl.col("is_warmup"))
    lag = records["e2e_sched_s"] - records["e2e_s"]
    assert (lag - records["send_lag_s"]).abs().max() < 1e-9


def test_an_invalid_open_loop_run_says_so_and_keeps_its_records(tmp_path):
    config = rate_config(rates=[100], requests=20, arrival="constant", max_in_flight=1)
    (experiment,) = expand_experiments(config).values()
    said = []
    files = ExperimentPaths.in_dir(tmp_path / experiment.id, tmp_path / "failed")
    metadata, tables = measured(experiment_spec(config, experiment), files, say=said.append)
    assert metadata["schedule"]["valid"] is False
    assert any("invalid open-loop run" in line and "send lag p99" in line for line in said)
    summary = json.loads(tables.summary_json.read_text())["summary"]
    assert summary["schedule_valid"] is False and summary["n_ok"] == 20


def test_lengths_enter_the_spec_only_when_set():
    plain = rate_config(rates=[2])
    (experiment,) = expand_experiments(plain).values()
    assert not {"lengths", "shared_prefix_tokens"} & set(
        experiment_spec(plain, experiment)["open_loop"]
    )
    shared = rate_config(rates=[2], shared_prefix_tokens=100)
    (experiment,) = expand_experiments(shared).values()
    assert experiment_spec(shared, experiment)["open_loop"]["shared_prefix_tokens"] == 100
    chats = rate_config(rates=[2], turns=3)
    (experiment,) = expand_experiments(chats).values()
    spec = experiment_spec(chats, experiment)
    assert spec["open_loop"]["turns"] == 3
    from perflab.measure.load_plan import load_plan

    assert load_plan(spec, experiment).turns == 3
    drawn = rate_config(rates=[2], output_tokens={"mean": 32, "sd": 8})
    (experiment,) = expand_experiments(drawn).values()
    spec = experiment_spec(drawn, experiment)
    assert spec["open_loop"]["lengths"] == {"output_tokens": {"mean": 32, "sd": 8}}
    from perflab.measure.load_plan import load_plan

    lengths = load_plan(spec, experiment).lengths
    assert lengths.output_mean == 32 and lengths.prompt_mean is None


def test_a_length_without_its_mean_is_refused():
    with pytest.raises(ConfigError, match=r"suites\.rate\.prompt_tokens"):
        rate_config(rates=[2], prompt_tokens={"sd": 3})


def test_a_chat_point_reports_ttft_by_turn(tmp_path):
    from perflab.analyse.findings import capacity
    from perflab.analyse.table_files import write_aggregates
    from perflab.present.wording.capacity import rate_line

    config = rate_config(rates=[4], requests=4, turns=3, max_send_lag_s=0.5)
    (experiment,) = expand_experiments(config).values()
    files = ExperimentPaths.in_dir(tmp_path / experiment.id, tmp_path / "failed")
    _, tables = measured(experiment_spec(config, experiment), files, say=lambda _: None)
    write_aggregates(
        [tables.records],
        [tables.summary],
        tmp_path / "requests.parquet",
        tmp_path / "summary.parquet",
        tmp_path / "summary.csv",
        tmp_path / "summary.json",
    )
    (finding,) = capacity.summary(tmp_path / "requests.parquet", capacity.SloTargets())
    (point,) = finding.points
    assert len(point.ttft_p50_by_turn) == 3 and all(point.ttft_p50_by_turn)
    assert "TTFT P50 by turn (s): " in rate_line(point)
