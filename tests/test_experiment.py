"""One experiment job end to end, on the calibration engine: files, partial
results within the error budget, kept records past it."""

import json
import subprocess
import sys

import polars as pl
import psutil
import pytest
from conftest import FAST_TIMING, ROOT

from perflab.analyse.table_files import ExperimentTables, tabulate_experiment
from perflab.cli import main
from perflab.config.design import order_key
from perflab.config.load import load_config_file
from perflab.config.sweep import expand_experiments
from perflab.core.records import read_jsonl
from perflab.measure.experiment import (
    RUNNER_VERSION,
    ErrorBudgetExceeded,
    ExperimentPaths,
    run_experiment,
)
from perflab.measure.samples import disturbance_threshold_pct
from perflab.measure.spec import experiment_spec


def experiment_for(fault_rates: dict, budget: float, **timing):
    """The run's config and its one experiment under test."""
    overrides = {
        "engine": {"name": "calibration", "model": "llama3.1:8b"},
        "repeats": 1,  # one trial: these tests are about one experiment
        "calibration": FAST_TIMING | {"fault_rates": fault_rates, "seed": 1} | timing,
        "warmup_requests": 1,
        "error_budget": budget,
        "sampler": {"interval_s": 0.1},
        "suites": {"concurrency": {"workers": [2], "requests": 20}},
    }
    config = load_config_file(ROOT / "config" / "config.yaml", overrides=overrides)
    return config, expand_experiments(config)["medium-t0-w2-n20-r1"]


def spec_for(fault_rates: dict, budget: float, **timing) -> dict:
    return experiment_spec(*experiment_for(fault_rates, budget, **timing))


def paths(tmp_path) -> ExperimentPaths:
    out = tmp_path / "medium-t0-w2-n20-r1"
    return ExperimentPaths(
        out / "records.jsonl", out / "samples.jsonl", out / "metadata.json", tmp_path / "failed"
    )


def test_clean_run_writes_records_samples_and_metadata(tmp_path):
    files = paths(tmp_path)
    config, experiment = experiment_for({}, 0.05)
    metadata = run_experiment(experiment_spec(config, experiment), files)
    records = read_jsonl(files.records)
    assert len(records) == 21 and sum(r["is_warmup"] for r in records) == 1
    assert read_jsonl(files.samples)
    saved = json.loads(files.metadata.read_text())
    assert saved["run"]["partial"] is False and saved["run"]["error_rate"] == 0
    assert saved["engine"]["engine"] == "calibration" and saved["engine"]["engine_version"]
    assert saved["engine"]["model_digest"]
    assert saved["host"]["logical_cores"] >= 1 and saved["config_hash"]
    assert saved["experiment"]["id"] == "medium-t0-w2-n20-r1"
    assert saved["experiment"]["condition_id"] == "medium-t0-w2-n20"
    assert saved["experiment"]["trial"] == 1 and saved["experiment"]["prompt_cache"] == "bust"
    assert saved["runner_version"] == RUNNER_VERSION
    assert metadata["resources"]["n_samples"] > 0
    # its place in the run's design, and its own disturbance threshold: the calibration
    # server names no thread count, so it may use every core
    assert saved["design"] == {
        "order_seed": 1,
        "trial": 1,
        "order_key": order_key(1, 1, "medium-t0-w2-n20", experiment.block),
        "target_turn": 0,
    }
    resources = saved["resources"]
    cores = saved["host"]["logical_cores"]
    assert resources["interference_threshold_pct"] == disturbance_threshold_pct(cores, None)
    assert 0 <= resources["interference_above_share"] <= 1
    assert not files.records.with_suffix(".partial.jsonl").exists()
    assert set(saved["job"]) == {"started_after_s", "engine_setup_s", "measure_s"}
    tabulate_experiment(files.records, files.metadata)
    tables = ExperimentTables.in_dir(files.records.parent)
    table = pl.read_parquet(tables.records)
    assert table.height == 21 and table["itl_s"].list.len().max() > 0
    summary = pl.read_parquet(tables.summary)
    assert summary["experiment_id"].to_list() == ["medium-t0-w2-n20-r1"]
    assert summary["n_requests"][0] == 20 and summary["n_ok"][0] == 20
    assert json.loads(tables.summary_json.read_text())["summary"]["n_ok"] == 20


def test_summarize_rewrites_the_tables_from_the_json_lines(tmp_path, capsys):
    files = paths(tmp_path)
    run_experiment(spec_for({}, 0.05), files)
    tabulate_experiment(files.records, files.metadata)
    tables = ExperimentTables.in_dir(files.records.parent)
    before = pl.read_parquet(tables.summary)
    for path in (tables.records, tables.summary, tables.summary_json):
        path.unlink()
    assert main(["summarize", str(files.records.parent)]) == 0
    assert "medium-t0-w2-n20-r1: 20 measured requests summarized" in capsys.readouterr().out
    assert pl.read_parquet(tables.summary).equals(before)
    assert pl.read_parquet(tables.records).height == 21


def test_summarize_names_a_directory_that_is_not_an_experiment(tmp_path, capsys):
    assert main(["summarize", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "records.jsonl is missing" in err and str(tmp_path) in err


def test_breakdown_matches_the_scripted_timings(tmp_path):
    files = paths(tmp_path)
    run_experiment(spec_for({}, 0.05, num_parallel=1), files)
    records = [r for r in read_jsonl(files.records) if not r["is_warmup"]]
    for record in records:
        scripted_prefill = (
            FAST_TIMING["ttft_fixed_s"] + FAST_TIMING["ttft_per_token_s"] * record["prompt_tokens"]
        )
        # a sleep never ends early; on a busy machine each can end late (one per token:
        # 7 gaps took 87 ms against 35 ms scripted at load 8)
        assert scripted_prefill - 1e-3 <= record["prefill_s"] < scripted_prefill + 0.05
        scripted_decode = (record["output_tokens"] - 1) * FAST_TIMING["itl_s"]
        late = 0.05 + 0.01 * record["output_tokens"]
        assert scripted_decode - 1e-3 <= record["decode_s"] < scripted_decode + late
        # two workers on one parallel slot: the queue wait lands in unaccounted, not decode
        assert record["unaccounted_s"] >= -0.005
    waits = sorted(r["unaccounted_s"] for r in records)
    assert waits[-1] > scripted_prefill  # some requests waited for the other worker


def test_failures_within_the_budget_are_kept_and_marked_partial(tmp_path):
    files = paths(tmp_path)
    metadata = run_experiment(spec_for({"http_500": 0.15}, 0.5), files)
    records = read_jsonl(files.records)
    assert len(records) == 21
    failed = [r for r in records if r["status"] != "ok" and not r["is_warmup"]]
    assert failed and metadata["run"]["partial"] is True
    assert metadata["run"]["error_rate"] == pytest.approx(len(failed) / 20)


def test_past_the_budget_the_job_fails_and_keeps_its_records(tmp_path):
    files = paths(tmp_path)
    with pytest.raises(ErrorBudgetExceeded, match="above the error budget of 5%") as error:
        run_experiment(spec_for({"http_500": 0.5}, 0.05), files)
    assert not files.records.exists() and not files.metadata.exists()
    kept = list(files.failed_dir.glob("medium-t0-w2-n20-r1-*.jsonl"))
    assert len(kept) == 1 and str(kept[0]) in str(error.value)
    assert len(read_jsonl(kept[0])) == 21


def test_a_cpu_burner_during_an_experiment_shows_as_interference(tmp_path):
    """The same experiment quiet and beside a process spinning on a core: the burner is
    neither server nor client, so the experiment's interference figure carries it."""
    spec = spec_for({}, 0.05)
    quiet = run_experiment(spec, paths(tmp_path / "quiet"))["resources"]
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        burner_cpu = psutil.Process(burner.pid)
        before = sum(burner_cpu.cpu_times()[:2])
        disturbed = run_experiment(spec, paths(tmp_path / "burn"))
        burned_s = sum(burner_cpu.cpu_times()[:2]) - before
    finally:
        burner.kill()
        burner.wait()
    resources, run = disturbed["resources"], disturbed["run"]
    burner_pct = 100 * burned_s / (run["ended"] - run["started"])
    assert burner_pct > 5  # it ran, on whatever share of a core a busy machine gave it
    for figures in (quiet, resources):
        assert 0 <= figures["interference_cpu_pct_mean"] <= figures["interference_cpu_pct_max"]
        assert figures["n_interference_samples"] > 0
    # it rose by at least half the burner's CPU, unless others already held nearly every
    # core this experiment left free (then nothing can rise)
    free = 100 * psutil.cpu_count() - resources["server_cpu_percent_mean"]
    expected = min(quiet["interference_cpu_pct_mean"] + 0.5 * burner_pct, 0.8 * free)
    assert resources["interference_cpu_pct_mean"] >= expected


def test_a_whole_experiment_job_imports_none_of_what_only_the_findings_need(tmp_path):
    # scipy.stats (~0.5 s) and the wording package (~0.7 s, every finding) once cost
    # every experiment job more than its own work (docs/performance.md, section 2)
    spec = json.dumps(spec_for({}, 0.05), sort_keys=True)
    out = tmp_path / "medium-t0-w2-n20-r1"
    command = [sys.executable, "-X", "importtime", "-m", "perflab", "run-experiment"]
    command += ["--spec", spec, "--out-dir", str(out), "--failed-dir", str(tmp_path / "failed")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "summary.parquet").is_file()
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "polars" in imported  # it read the import times of the whole job
    heavy = {"scipy.stats", "perflab.present.wording", "altair", "jinja2", "jsonschema", "yaml"}
    assert imported & heavy == set()


def test_an_experiment_job_imports_no_config_validation_and_no_polars_before_measuring():
    # experiment jobs run by the thousand: what only other commands need stays unimported,
    # through the command line's own entry point up to the experiment's arguments
    code = (
        "import sys, perflab.cli, perflab.measure.experiment, perflab.measure.runner, perflab.measure.sampler\n"
        "try:\n    perflab.cli.main(['run-experiment', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('jsonschema', 'yaml', 'polars', 'altair', 'jinja2', 'scipy')"
        " if m in sys.modules), file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "run-experiment" in result.stdout  # the help: main() ran its imports
    assert result.stderr.strip() == "[]"
