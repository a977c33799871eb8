"""The cold start: the model load that the first request paid, whichever job sent it,
with the server's account (load_duration) and the client's (that request's TTFT)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import run_snakemake

from perflab.analyse.findings import runlog
from perflab.analyse.findings.frame import with_defaults
from perflab.analyse.table_files import tabulate_experiment
from perflab.calibration import CalibrationServer, TimingModel
from perflab.config.load import load_config_file
from perflab.config.sweep import expand_experiments
from perflab.core.records import ColdStart
from perflab.measure.estimate import plan_run
from perflab.measure.experiment import ExperimentPaths, run_experiment
from perflab.measure.spec import experiment_spec
from perflab.present import wording

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "short-t0.7-w1-n3-r1"


def summary(rows: list[dict]) -> pl.DataFrame:
    return with_defaults(pl.DataFrame(rows))


def test_the_preflight_load_wins_over_the_warm_ups_that_found_the_model_loaded():
    frame = summary(
        [
            {"experiment_id": "a-r1", "cold_load_s": 0.003, "cold_ttft_s": 0.05},
            {"experiment_id": "b-r1", "cold_load_s": 0.002, "cold_ttft_s": 0.04},
        ]
    )
    preflight = ColdStart("preflight", 1.5, 1.56, 1.9)
    assert runlog.cold_start(frame, preflight) == preflight


def test_without_a_preflight_load_the_warm_up_that_paid_it_is_named():
    frame = summary(
        [
            {"experiment_id": "a-r1", "cold_load_s": 1.5, "cold_ttft_s": 1.58},
            {"experiment_id": "b-r1", "cold_load_s": None, "cold_ttft_s": None},
        ]
    )
    assert runlog.cold_start(frame, None) == ColdStart("a-r1", 1.5, 1.58, None)
    reported_none = ColdStart("preflight", None, 0.2, 0.5)
    assert runlog.cold_start(frame, reported_none).source == "a-r1"


def test_no_load_at_all_is_no_cold_start():
    frame = summary([{"experiment_id": "a-r1", "cold_load_s": 0.0, "cold_ttft_s": 0.01}])
    assert runlog.cold_start(frame, ColdStart("preflight", 0.0, 0.01, 0.02)) is None
    assert runlog.cold_start(summary([{"experiment_id": "a-r1"}]), None) is None


def test_an_experiment_whose_warm_up_pays_the_load_reports_both_views(tmp_path):
    """The calibration engine starts its own server per job: the warm-up pays 1.5 s."""
    overrides = {
        "engine": {"name": "calibration", "model": "llama3.1:8b"},
        "calibration": {"load_time_s": 1.5, "ttft_fixed_s": 0.01, "itl_s": 0.001},
        "generation": {"max_tokens": 4},
        "warmup_requests": 1,
        "suites": {"basic": {"prompts": ["short"], "requests": 3}},
    }
    config = load_config_file(ROOT / "config" / "config.yaml", overrides=overrides)
    spec = experiment_spec(config, expand_experiments(config)[EXPERIMENT])
    out = tmp_path / EXPERIMENT
    files = ExperimentPaths.in_dir(out, tmp_path / "failed")
    run_experiment(spec, files, say=lambda line: None)
    row = tabulate_experiment(files.records, files.metadata)
    assert row["cold_load_s"] == pytest.approx(1.5, abs=0.05)
    assert row["cold_load_s"] < row["cold_ttft_s"] < row["cold_load_s"] + 0.5
    cold = runlog.cold_start(with_defaults(pl.read_parquet(out / "summary.parquet")), None)
    assert cold.source == EXPERIMENT and cold.load_s == row["cold_load_s"]


def run_log(cold: ColdStart) -> runlog.RunLog:
    fields = dict.fromkeys(runlog.RunLog.__dataclass_fields__)
    fields |= {"n_experiments": 1, "n_requests": 1, "n_errors": 0, "repeats": 1}
    fields |= {"errors": (), "failed": (), "ideas": (), "setup": ()}
    fields |= {"basic_span": (None, None), "advanced_span": (None, None)}
    fields |= {"cold_load_s": cold.load_s, "cold_ttft_s": cold.ttft_s}
    fields |= {"cold_in_process": cold.in_process}
    return runlog.RunLog(**fields | {"cold_source": cold.source})


def test_the_log_says_who_paid_the_load_and_what_the_client_waited():
    text = wording.cold_start(run_log(ColdStart("preflight", 1.5003, 1.562, 1.9)), "5m")
    assert "the model load took 1.500 s" in text
    assert "the pre-flight check's timed request" in text and "1.562 s" in text
    warm = wording.cold_start(run_log(ColdStart("short-t0.7-w1-n3-r1", 1.5, None, None)), "5m")
    assert "the warm-up request of short-t0.7-w1-n3-r1" in warm


def test_the_embedded_engine_s_cold_start_is_its_model_open(tmp_path, tiny_model_path):
    """llama.cpp opens the GGUF in-process before the timed request can start: that open,
    not the request's own load of 0, is the cold start the pre-flight check reports."""
    overrides = {"engine": {"model": "tiny-llama3", "model_path": str(tiny_model_path)}}
    config = load_config_file(ROOT / "config" / "config.yaml", overrides=overrides)
    plan = plan_run(expand_experiments(config).values(), config["warmup_requests"])
    settings = {key: config[key] for key in ("engine", "generation")}
    out = tmp_path / "preflight.json"
    command = [sys.executable, "-m", "perflab", "preflight", "--spec", json.dumps(settings)]
    command += ["--estimate", json.dumps(plan.__dict__), "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads(out.read_text())
    cold = info["cold_start"]
    assert cold["load_s"] == info["load_s"] > 0 and cold["in_process"]
    assert cold["load_s"] < cold["ttft_s"] < cold["e2e_s"]
    line = f"cold start: model load {cold['load_s']:.3f} s (the engine's model open, in-process)"
    assert line in result.stdout
    # each job opens the model again: the estimate counts the whole open in every experiment,
    # however the cold and warm requests' own times fell
    assert info["estimate"]["cold_extra_s"] >= cold["load_s"]


def test_the_log_words_the_embedded_engine_s_open_as_its_cold_start():
    opened = ColdStart("preflight", 0.213, 0.26, 0.9, in_process=True)
    cold = runlog.cold_start(summary([{"experiment_id": "a-r1", "cold_load_s": 0.0}]), opened)
    assert cold == opened
    text = wording.cold_start(run_log(cold), "5m")
    assert "the model load took 0.213 s (the embedded engine opening the GGUF" in text
    assert "its first token came 0.260 s after the open began" in text
    assert "server" not in text


@pytest.mark.slow
def test_against_a_server_that_loads_for_1_5_s_the_log_reads_1_5_s(tmp_path):
    """An independent Ollama-API server: the pre-flight check's timed request is its
    first and pays the load; every experiment's warm-up finds the model loaded."""
    timing = TimingModel(load_time_s=1.5, ttft_fixed_s=0.01, itl_s=0.001, output_tokens=8)
    for name in ("Snakefile", "workflow", "config", "profiles", "environment.yml"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / name)
    with CalibrationServer(timing) as server:
        run = {
            "run": "cold",
            "engine": {"name": "ollama", "model": "llama3.1:8b", "host": server.url},
            "generation": {"max_tokens": 4},
            "warmup_requests": 1,
            "sampler": {"interval_s": 0.2},
            "suites": {
                "basic": {"prompts": ["short"], "requests": 2},
                **{
                    suite: {"enabled": False}
                    for suite in (
                        "prompt_length",
                        "temperature",
                        "concurrency",
                        "resources",
                        "kv_cache",
                    )
                },
            },
        }
        (tmp_path / "cold.yaml").write_text(yaml.safe_dump(run))
        result = run_snakemake(tmp_path, "--cores", "1", "--configfile", "cold.yaml")
        assert result.returncode == 0, result.stderr[-5000:]
        loads = [entry.load_s for entry in server.log if entry.endpoint == "generate"]
    assert loads[0] == pytest.approx(1.5, abs=0.05) and max(loads[1:]) < 0.1
    findings = json.loads((tmp_path / "results" / "cold" / "findings.json").read_text())
    assert findings["run"]["cold_load_s"] == pytest.approx(1.5, abs=0.05)
    assert findings["run"]["cold_source"] == "preflight"
    log = (tmp_path / "reports" / "cold" / "day1-log.md").read_text()
    assert "the model load took 1.50" in log and "pre-flight check's timed request" in log
