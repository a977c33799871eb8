"""The whole workflow on the embedded engine with a tiny config, in a temp dir."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from perflab.config import expand_experiments, load_config_file

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny.yaml"
VOCAB = Path("cache/vocab/ggml-vocab-llama-bpe.gguf")

pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    bindir = str(Path(sys.executable).parent)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(Path.home())}
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:", 1)[1]
    return {
        m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, vocab_path) -> Path:
    workdir = tmp_path_factory.mktemp("workflow")
    for name in ("Snakefile", "workflow", "config", "profiles", "environment.yml"):
        source = ROOT / name
        copy = shutil.copytree if source.is_dir() else shutil.copy
        copy(source, workdir / name)
    shutil.copy(TINY, workdir / "tiny.yaml")
    if (ROOT / VOCAB).exists():  # fetched by the vocab_path fixture or an earlier run
        (workdir / VOCAB).parent.mkdir(parents=True)
        shutil.copy(ROOT / VOCAB, workdir / VOCAB)
    return workdir


def tiny_config(workdir: Path) -> dict:
    return load_config_file(workdir / "tiny.yaml", base=workdir / "config" / "config.yaml")


def test_dry_run_lists_one_job_per_experiment(workdir):
    result = snakemake(workdir, "-n", "--configfile", "tiny.yaml")
    assert result.returncode == 0, result.stderr
    experiments = expand_experiments(tiny_config(workdir))
    assert job_counts(result.stdout)["run_experiment"] == len(experiments) == 11


def test_bad_config_fails_before_any_job(workdir):
    (workdir / "bad.yaml").write_text("suites:\n  concurrency:\n    workers: [0, 2]\n")
    result = snakemake(workdir, "-n", "--configfile", "bad.yaml")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "suites.concurrency.workers[0]: 0 is less than the minimum of 1" in output
    assert "bad.yaml" in output
    assert not (workdir / "results").exists()


@pytest.fixture(scope="module")
def full_run(workdir):
    result = snakemake(workdir, "--cores", "2", "--configfile", "tiny.yaml")
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


def test_full_run_writes_records_summary_and_log(full_run):
    config = tiny_config(full_run)
    experiments = expand_experiments(config)
    results = full_run / "results" / "test-tiny"
    for experiment in experiments.values():
        lines = (results / "experiments" / experiment.id / "records.jsonl").read_text().splitlines()
        if experiment.requests is not None:
            assert len(lines) == experiment.requests + config["warmup_requests"]
    summary = pl.read_parquet(results / "summary.parquet")
    assert summary.height == len(experiments)
    assert (summary["n_errors"] == 0).all()
    assert (summary["output_tokens_mean"] == config["generation"]["max_tokens"]).all()
    log = (full_run / "reports" / "test-tiny" / "day1-log.md").read_text()
    benchmark = log.split("## Benchmark Results Summary", 1)[1].split("## Key Learnings", 1)[0]
    assert "[ ]" not in benchmark
    assert "n/a" not in benchmark
    for label in ("Tiny prompts", "Very long prompts", "Temp 1.5", "4 workers", "Avg CPU"):
        assert label in benchmark
    analysis = log.split("## Performance Analysis", 1)[1].split("## GitHub Documentation", 1)[0]
    assert "[x]" in analysis.split("**Evidence**")[0] or "undetermined" in analysis
    assert "[ ]" not in analysis.split("### Comparison to Expectations", 1)[1]
    assert "n/a" not in analysis
    html = (full_run / "reports" / "test-tiny" / "day1-log.html").read_text()
    assert "<svg" in html and "Mean Latency" in html


def test_snakemake_report_builds(full_run):
    result = snakemake(full_run, "--report", "report.zip", "--configfile", "tiny.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (full_run / "report.zip").stat().st_size > 10_000


def test_experiment_files_come_from_experiment_jobs_only(full_run):
    # a rule that gathers every experiment and also writes per-experiment files makes
    # Snakemake's rerun check quadratic in the number of experiments (docs/performance.md)
    result = snakemake(full_run, "--summary", "--configfile", "tiny.yaml")
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines() if "\t" in line][1:]
    writers = {rule for path, _, rule, *_ in rows if "/experiments/" in path}
    assert writers == {"run_experiment"}
    run_level = {Path(path).name for path, _, rule, *_ in rows if rule == "aggregate"}
    assert run_level == {
        "requests.parquet",
        "summary.parquet",
        "summary.csv",
        "summary.json",
        "metadata.json",
    }
    experiment = full_run / "results" / "test-tiny" / "experiments" / "medium-t1.5-w1-n3"
    summary = pl.read_parquet(experiment / "summary.parquet")
    assert summary["n_requests"].to_list() == [3]
    assert "itl_s" in pl.read_parquet(experiment / "records.parquet").columns


def test_unchanged_rerun_has_nothing_to_do(full_run):
    result = snakemake(full_run, "-n", "--configfile", "tiny.yaml")
    assert result.returncode == 0, result.stderr
    assert "Nothing to be done" in result.stdout + result.stderr


def test_changing_one_temperature_reruns_only_that_experiment(full_run):
    config_path = full_run / "tiny.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["suites"]["temperature"]["temperatures"] = [0.0, 0.7, 1.2]
    config_path.write_text(yaml.safe_dump(config))
    dry = snakemake(full_run, "-n", "--configfile", "tiny.yaml")
    assert dry.returncode == 0, dry.stderr
    counts = job_counts(dry.stdout)
    assert counts.pop("run_experiment") == 1
    assert "medium-t1.2-w1-n3" in dry.stdout
    assert set(counts) == {"aggregate", "charts", "report", "all"}
    result = snakemake(full_run, "--cores", "2", "--configfile", "tiny.yaml")
    assert result.returncode == 0, result.stderr[-5000:]
    log = (full_run / "reports" / "test-tiny" / "day1-log.md").read_text()
    assert "**Temp 1.2**" in log and "**Temp 1.5**" not in log


def test_full_suite_against_the_calibration_server(workdir):
    shutil.copy(
        ROOT / "tests" / "data" / "calibration-tiny.yaml", workdir / "calibration-tiny.yaml"
    )
    configs = ("config/calibration.yaml", "calibration-tiny.yaml")
    result = snakemake(workdir, "--cores", "2", "--configfile", *configs)
    assert result.returncode == 0, result.stderr[-5000:]
    summary = pl.read_parquet(workdir / "results" / "test-calibration" / "summary.parquet")
    assert (summary["engine"] == "calibration").all() and (summary["n_errors"] == 0).all()
    # the scripted inter-token gap, measured through the real client over HTTP
    assert summary["itl_mean_s"].mean() == pytest.approx(0.002, abs=0.002)
    log = (workdir / "reports" / "test-calibration" / "day1-log.md").read_text()
    assert "engine **calibration" in log and "llama3.1:8b" in log
    assert "serializes requests" in log  # num_parallel 1: 4 workers only queue
