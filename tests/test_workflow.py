"""The whole workflow on the embedded engine with a tiny config, in a temp dir."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import run_snakemake

from perflab.config.load import load_config_file, merge_configs, validate_config
from perflab.config.sweep import expand_experiments

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny.yaml"
VOCAB = Path("cache/vocab/ggml-vocab-llama-bpe.gguf")

pytestmark = pytest.mark.slow


def started_experiments(output: str) -> list[str]:
    """The run_experiment jobs in the order Snakemake started them."""
    return re.findall(r"rule run_experiment:.*?wildcards: experiment=(\S+)", output, re.S)


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    # the default config's 3 trials triple a full run: a limit for a shared machine
    return run_snakemake(workdir, *args, timeout=2700)


def job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:", 1)[1]
    return {
        m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"
    }


@pytest.fixture(scope="module")
def workdir(copy_workflow, vocab_path) -> Path:
    workdir = copy_workflow(cached=(VOCAB,))  # fetched by the vocab_path fixture
    shutil.copy(TINY, workdir / "tiny.yaml")
    return workdir


def tiny_config(workdir: Path) -> dict:
    return load_config_file(workdir / "tiny.yaml", base=workdir / "config" / "config.yaml")


def test_dry_run_lists_one_job_per_experiment(workdir):
    result = snakemake(workdir, "-n", "--configfile", "tiny.yaml")
    assert result.returncode == 0, result.stderr
    experiments = expand_experiments(tiny_config(workdir))
    # basic's 3 prompts at 20 requests, 11 sweep points, and kv_cache's reuse half
    # (its bust half is prompt_length's long)
    assert job_counts(result.stdout)["run_experiment"] == len(experiments) == 15


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
    # the tiny random model: ignore_eos on when unset, every answer max_tokens long
    assert (
        "so every answer ran to max\\_tokens (8)" in log
        or "every answer ran to max_tokens (8)" in log
    )
    benchmark = log.split("## Benchmark Results Summary", 1)[1].split("## Key Learnings", 1)[0]
    assert "[ ]" not in benchmark
    assert "n/a" not in benchmark
    for label in ("Tiny prompts", "Very long prompts", "Temp 1.5", "4 workers", "Avg CPU"):
        assert label in benchmark
    analysis = log.split("## Performance Analysis", 1)[1].split("## GitHub Documentation", 1)[0]
    primary = analysis.split("**Evidence**")[0]
    assert "[x]" in primary or "undetermined" in primary or "queueing" in primary
    assert "[ ]" not in analysis.split("### Comparison to Expectations", 1)[1]
    assert "n/a" not in analysis
    html = (full_run / "reports" / "test-tiny" / "day1-log.html").read_text()
    assert '<figure class="chart"><svg' in html and "Mean Latency" in html
    setup = log.split("- [x] Setup & Installation", 1)[1].split("- [x] Basic", 1)[0]
    assert "[TIME]" not in setup and "model build" in setup and "pre-flight check" in setup
    found = json.loads((results / "findings.json").read_text())
    assert {step["name"] for step in found["run"]["setup"]} == {"model_build", "preflight"}
    assert all(step["seconds"] > 0 for step in found["run"]["setup"])


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
    experiment = full_run / "results" / "test-tiny" / "experiments" / "medium-t1.5-w1-n3-r1"
    summary = pl.read_parquet(experiment / "summary.parquet")
    assert summary["n_requests"].to_list() == [3]
    assert "itl_s" in pl.read_parquet(experiment / "records.parquet").columns


def test_unchanged_rerun_has_nothing_to_do(full_run):
    result = snakemake(full_run, "-n", "--configfile", "tiny.yaml")
    assert result.returncode == 0, result.stderr
    assert "Nothing to be done" in result.stdout + result.stderr


def test_a_model_built_without_its_timing_is_not_rebuilt(full_run):
    # a model built before setup jobs were timed: the log goes without the
    # build's time rather than rebuilding the model and re-measuring everything
    timing = next((full_run / "cache" / "models").glob("*.build.tsv"))
    kept = timing.read_bytes()
    timing.unlink()
    try:
        dry = snakemake(full_run, "-n", "--configfile", "tiny.yaml")
        assert dry.returncode == 0, dry.stderr
        counts = job_counts(dry.stdout) if "Job stats:" in dry.stdout else {}
        assert "build_tiny_model" not in counts and "run_experiment" not in counts
    finally:
        timing.write_bytes(kept)


def test_changing_one_temperature_reruns_only_that_experiment(full_run):
    config_path = full_run / "tiny.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["suites"]["temperature"]["temperatures"] = [0.0, 0.7, 1.2]
    config_path.write_text(yaml.safe_dump(config))
    dry = snakemake(full_run, "-n", "--configfile", "tiny.yaml")
    assert dry.returncode == 0, dry.stderr
    counts = job_counts(dry.stdout)
    assert counts.pop("run_experiment") == 1
    assert "medium-t1.2-w1-n3-r1" in dry.stdout
    assert set(counts) == {"aggregate", "findings", "charts", "report", "all"}
    result = snakemake(full_run, "--cores", "2", "--configfile", "tiny.yaml")
    assert result.returncode == 0, result.stderr[-5000:]
    log = (full_run / "reports" / "test-tiny" / "day1-log.md").read_text()
    assert "**Temp 1.2**" in log and "**Temp 1.5**" not in log


SERIAL_SERVER = {"calibration": {"itl_s": 0.01}, "suites": {"concurrency": {"requests": 8}}}


def test_full_suite_against_the_calibration_server(workdir):
    shutil.copy(
        ROOT / "tests" / "data" / "calibration-tiny.yaml", workdir / "calibration-tiny.yaml"
    )
    # slower tokens (10 ms, not 2) and 8 requests a worker count: at 30 ms a request the
    # client's own gap between requests, which a second worker hides, was 2-3 % of the
    # throughput, and the trials' spread then left "serial" underpowered (±6.5-8.8 %)
    (workdir / "concurrency.yaml").write_text(yaml.safe_dump(SERIAL_SERVER))
    configs = ("config/calibration.yaml", "calibration-tiny.yaml", "concurrency.yaml")
    result = snakemake(workdir, "--cores", "2", "--configfile", *configs)
    assert result.returncode == 0, result.stderr[-5000:]
    summary = pl.read_parquet(workdir / "results" / "test-calibration" / "summary.parquet")
    assert (summary["engine"] == "calibration").all() and (summary["n_errors"] == 0).all()
    # the scripted inter-token gap, measured through the real client over HTTP
    assert summary["itl_mean_s"].mean() == pytest.approx(0.01, abs=0.002)
    log = (workdir / "reports" / "test-calibration" / "day1-log.md").read_text()
    assert "engine **calibration" in log and "llama3.1:8b" in log
    findings = json.loads((workdir / "results" / "test-calibration" / "findings.json").read_text())
    concurrency = findings["concurrency"]
    # num_parallel 1: 4 workers only queue. Serial, unless other work on a shared machine
    # disturbed experiments of every trial (then inconclusive, and the log says why)
    if concurrency["disturbed"]:
        assert concurrency["verdict"] == "inconclusive"
        assert "disturbed experiments (other work on the machine" in log
    else:
        assert concurrency["verdict"] == "serial" and "serializes requests" in log
    assert concurrency["knee_workers"] == 1
    bottleneck = findings["bottleneck"]
    # one slot leaves 4 workers 1 − 1/4 of latency to the queue by construction: that
    # restates the configuration, it is no bottleneck
    assert "queueing" not in [bottleneck["primary"], *bottleneck["secondary"]]
    prompt_length = findings["prompt_length"]
    # it grows (straight, or no curvature detected), unless other work on a shared machine
    # disturbed the experiments it rests on
    if prompt_length["verdict"] not in ("linear", "grows"):
        assert prompt_length["verdict"] == "inconclusive" and prompt_length["reason"] == "disturbed"
        assert prompt_length["disturbed"]
    # the calibration server's scripted prefill: 0.2 ms per prompt token = 5,000 tok/s
    assert findings["prompt_length"]["prefill_tps"] == pytest.approx(5000, rel=0.25)


TWO_SLOTS = """\
run: test-two-slots
generation:
  max_tokens: 8
warmup_requests: 1
calibration:
  load_time_s: 0.0
  ttft_fixed_s: 0.02
  ttft_per_token_s: 0.0
  itl_s: 0.02
  num_parallel: 2
suites:
  basic:
    enabled: false
  prompt_length:
    enabled: false
  temperature:
    enabled: false
  resources:
    enabled: false
  concurrency:
    workers: [1, 2, 4]
    requests: 12
"""


def test_two_slot_calibration_server_saturates_at_the_knee(workdir):
    # 2 slots, ~0.18 s per request: throughput doubles from 1 to 2 workers, then stays flat
    (workdir / "two-slots.yaml").write_text(TWO_SLOTS)
    configs = ("config/calibration.yaml", "two-slots.yaml")
    result = snakemake(workdir, "--cores", "2", "--configfile", *configs)
    assert result.returncode == 0, result.stderr[-5000:]
    results = workdir / "results" / "test-two-slots"
    findings = json.loads((results / "findings.json").read_text())
    assert findings["concurrency"]["verdict"] == "saturates"
    assert findings["concurrency"]["knee_workers"] == 2
    assert findings["concurrency"]["parallel_requests"] == 2
    assert findings["concurrency"]["queue_source"] == "unaccounted_growth"
    # 2 slots leave 4 workers half of latency to the queue by construction: no bottleneck,
    # but more slots are the idea to try
    assert findings["bottleneck"]["primary"] != "queueing"
    slots = findings["concurrency"]["parallel_requests"]
    assert findings["concurrency"]["expected_queue_share"] == pytest.approx(1 - slots / 4)
    assert findings["run"]["ideas"][0]["setting"] == "calibration.num_parallel"
    log = (workdir / "reports" / "test-two-slots" / "day1-log.md").read_text()
    assert "workers, then stayed flat" in log
    assert "the server runs about 2 requests at once" in log


TRIALS = {
    "run": "test-trials",
    "suites": {
        "basic": {"prompts": ["short"]},
        "prompt_length": {"enabled": False},
        "temperature": {"temperatures": [0.0, 0.7]},
        "concurrency": {"workers": [1, 2]},
        "resources": {"enabled": False},
        "kv_cache": {"prompt": "short"},
    },
}


def test_trials_interleave_and_adding_trials_reruns_nothing_measured(workdir):
    """Trial 1 of each condition, then more trials: the first run is never repeated, and
    with --cores 1 every second trial starts before any third trial."""
    shutil.copy(
        ROOT / "tests" / "data" / "calibration-tiny.yaml", workdir / "calibration-tiny.yaml"
    )
    configs = ("config/calibration.yaml", "calibration-tiny.yaml", "trials.yaml")

    def with_repeats(repeats: int) -> dict:
        """Write trials.yaml; the config as Snakemake merges it, validated."""
        (workdir / "trials.yaml").write_text(yaml.safe_dump(TRIALS | {"repeats": repeats}))
        config: dict = {}
        for name in ("config/config.yaml", *configs):
            config = merge_configs(config, yaml.safe_load((workdir / name).read_text()))
        return validate_config(config)

    conditions = set(expand_experiments(with_repeats(1)))
    assert all(experiment_id.endswith("-r1") for experiment_id in conditions)
    first = snakemake(workdir, "--cores", "1", "--configfile", *configs)
    assert first.returncode == 0, first.stderr[-5000:]
    results = workdir / "results" / "test-trials" / "experiments"
    measured = {i: (results / i / "metadata.json").stat().st_mtime_ns for i in conditions}

    experiments = expand_experiments(with_repeats(3))
    dry = snakemake(workdir, "-n", "--configfile", *configs)
    assert dry.returncode == 0, dry.stderr
    planned = set(started_experiments(dry.stdout))
    assert planned == set(experiments) - conditions  # trials 2 and 3 only
    assert job_counts(dry.stdout)["run_experiment"] == 2 * len(conditions)

    second = snakemake(workdir, "--cores", "1", "--configfile", *configs)
    assert second.returncode == 0, second.stderr[-5000:]
    order = [experiments[i].trial for i in started_experiments(second.stderr)]
    assert order == [2] * len(conditions) + [3] * len(conditions)
    assert {i: (results / i / "metadata.json").stat().st_mtime_ns for i in conditions} == measured

    summary = pl.read_parquet(workdir / "results" / "test-trials" / "summary.parquet")
    assert sorted(summary["experiment_id"]) == sorted(experiments)
    assert (summary["repeats"] == 3).all()
    assert all(
        row["experiment_id"] == f"{row['condition_id']}-r{row['trial']}"
        for row in summary.iter_rows(named=True)
    )
    assert summary.group_by("condition_id").len()["len"].to_list() == [3] * len(conditions)
    reuse = summary.filter(pl.col("prompt_cache") == "reuse")
    assert reuse.height == 3 and reuse["condition_id"][0] == "short-t0.7-w1-n4-reuse"
    assert summary["interference_cpu_pct_mean"].is_not_null().all()
