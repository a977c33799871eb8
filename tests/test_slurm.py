"""The calibration sweep through a real Slurm cluster, against the same sweep run locally.

Needs a cluster that answers `sinfo` (`.ci/slurm-cluster up` starts a
single-node one; `.ci/run` does so before the tests) and the `cluster` extra
(`pip install -e '.[dev,cluster]'`). Both runs work in temp copies of the
workflow; the Slurm run goes through `profiles/slurm` unchanged except for
keeping the Slurm job logs and a shorter first status check.
"""

import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import copy_workflow_files

from perflab.config.load import merge_configs, read_yaml, validate_config
from perflab.config.sweep import expand_experiments

ROOT = Path(__file__).resolve().parents[1]
# one trial: Slurm runs what a local run runs, which needs no verdict (3 trials took 4 min)
CONFIGS = ("config/calibration.yaml", "calibration-tiny.yaml", "one-trial.yaml")
RUN = "test-calibration"
DEFAULT_SLURM_CONF = Path("/tmp/perflab-slurm/slurm.conf")  # .ci/slurm-cluster's default
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")
# Inside the group job, Snakemake prints each job it runs, then "Finished jobid: N".
LOCAL_JOB = re.compile(r"^localrule run_experiment:\n((?:    .*\n)+)", re.M)

pytestmark = [pytest.mark.slow, pytest.mark.slurm]


def slurm_env() -> dict[str, str]:
    bindir = str(Path(sys.executable).parent)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(Path.home())}
    conf = os.environ.get("SLURM_CONF") or (
        str(DEFAULT_SLURM_CONF) if DEFAULT_SLURM_CONF.exists() else None
    )
    if conf:
        env["SLURM_CONF"] = conf
    if "PYTHONPATH" in os.environ:  # a checkout's own src, as the tests run
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


@functools.cache
def cluster_problem() -> str | None:
    """Why no Slurm cluster can take jobs here, or None when one can (asked once)."""
    env = slurm_env()
    if shutil.which("sinfo", path=env["PATH"]) is None:
        return "sinfo is not installed"
    try:
        result = subprocess.run(
            ["sinfo", "--noheader", "--format=%t"],
            env=env,
            capture_output=True,
            text=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 20 s"
    states = result.stdout.split()
    if result.returncode != 0:
        return f"sinfo failed: {result.stderr.strip()[-300:]}"
    if not {"idle", "mix", "alloc"} & set(states):
        return f"no node can take jobs (node states: {states or 'none'})"
    return None


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    pytest.importorskip(
        "snakemake_executor_plugin_slurm",
        reason="the cluster extra is not installed: pip install -e '.[dev,cluster]'",
    )
    problem = cluster_problem()
    if problem:
        pytest.skip(f"no Slurm cluster: {problem}; start one with `.ci/slurm-cluster up`")
    return slurm_env()


def copy_workflow(workdir: Path) -> Path:
    copy_workflow_files(workdir)
    shutil.copy(ROOT / "tests" / "data" / "calibration-tiny.yaml", workdir)
    (workdir / "one-trial.yaml").write_text(yaml.safe_dump({"repeats": 1}))
    return workdir


def snakemake(
    workdir: Path, env: dict[str, str], *args: str, timeout_s: int = 900
) -> subprocess.CompletedProcess:
    # A failed group submission can leave Snakemake waiting for ever: bound it.
    command = ["timeout", "-k", "10", str(timeout_s), sys.executable, "-m", "snakemake", *args]
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)


def succeeded(result: subprocess.CompletedProcess) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    return output


def slurm_sweep(
    workdir: Path, env: dict[str, str], configs: tuple[str, ...], timeout_s: int = 900
) -> str:
    result = snakemake(
        workdir,
        env,
        "--workflow-profile",
        "profiles/slurm",
        "--slurm-keep-successful-logs",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--configfile",
        *configs,
        timeout_s=timeout_s,
    )
    if result.returncode != 0:  # leave the node free for the next run
        job_ids = [job_id for job_id, _ in SUBMITTED.findall(result.stdout + result.stderr)]
        if job_ids:
            subprocess.run(["scancel", *job_ids], env=env, timeout=30, check=False)
    return succeeded(result)


@pytest.fixture(scope="module")
def slurm_run(env, tmp_path_factory) -> tuple[Path, str]:
    workdir = copy_workflow(tmp_path_factory.mktemp("slurm"))
    return workdir, slurm_sweep(workdir, env, CONFIGS)


@pytest.fixture(scope="module")
def local_run(env, tmp_path_factory) -> Path:
    workdir = copy_workflow(tmp_path_factory.mktemp("local"))
    succeeded(snakemake(workdir, env, "--cores", "2", "--configfile", *CONFIGS))
    return workdir


def experiment_ids(workdir: Path, configs: tuple[str, ...] = CONFIGS) -> set[str]:
    config = read_yaml(workdir / "config" / "config.yaml")
    for name in configs:
        config = merge_configs(config, read_yaml(workdir / name))
    return set(expand_experiments(validate_config(config)))


def slurm_states(env: dict[str, str], job_ids: list[str]) -> dict[str, str]:
    """States of finished jobs: squeue keeps them for MinJobAge seconds."""
    result = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--format=%i|%T", f"--jobs={','.join(job_ids)}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return dict(line.split("|") for line in result.stdout.split())


def finished_experiments(slurm_log: str) -> list[str]:
    """The experiments that a Slurm job's log shows run to the end."""
    finished = []
    for block in LOCAL_JOB.findall(slurm_log):
        job_id = re.search(r"^    jobid: (\d+)$", block, re.M)[1]
        experiment = re.search(r"^    wildcards: experiment=(\S+)$", block, re.M)[1]
        if f"Finished jobid: {job_id} (Rule: run_experiment)" in slurm_log:
            finished.append(experiment)
    return finished


def test_every_experiment_ran_in_one_slurm_group_job(env, slurm_run):
    workdir, output = slurm_run
    submitted = {job_id: Path(log) for job_id, log in SUBMITTED.findall(output)}
    group_jobs = {
        job_id: log for job_id, log in submitted.items() if "_run_experiment" in log.parent.name
    }
    # one target, one group: its anchor, the pre-flight check and every experiment
    assert len(group_jobs) == 1, submitted
    (group_id, group_log), *_ = group_jobs.items()
    assert group_log.parent.name == "group_target_preflight_run_experiment_target_anchor"
    assert sorted(finished_experiments(group_log.read_text())) == sorted(experiment_ids(workdir))
    assert set(slurm_states(env, list(submitted)).values()) == {"COMPLETED"}
    summary = pl.read_parquet(workdir / "results" / RUN / "summary.parquet")
    assert set(summary["experiment_id"]) == experiment_ids(workdir)
    assert (summary["n_errors"] == 0).all()


def experiment_spans(requests: pl.DataFrame) -> pl.DataFrame:
    """Each experiment's first request sent and last request ended, in order."""
    return (
        requests.group_by("experiment_id")
        .agg(pl.col("t_submit").min().alias("start"), pl.col("t_end").max().alias("end"))
        .sort("start")
    )


def one_at_a_time(spans: pl.DataFrame) -> bool:
    return bool((spans["end"].head(-1) <= spans["start"].tail(-1)).all())


def test_the_group_ran_one_experiment_at_a_time(slurm_run):
    workdir, _ = slurm_run
    spans = experiment_spans(pl.read_parquet(workdir / "results" / RUN / "requests.parquet"))
    assert spans.height == len(experiment_ids(workdir))
    # each experiment ends before the next one starts: llm_server=1 holds inside the group
    assert one_at_a_time(spans)


SWEEP_RUN = "test-slurm-sweep"
SWEEP_TARGETS = ("alpha", "beta", "gamma")
# 3 a target: one job a target holds at any size, and each experiment costs its job
# seconds (20 a target took 3-4 min a job; 200 in all took over 30 min). The planning
# of 10,000 experiments is bench/pipeline_scale.py's (docs/performance.md).
SWEEP_EXPERIMENTS = 9


def write_sweep_config(workdir: Path) -> str:
    """SWEEP_EXPERIMENTS one-request experiments: the temperature suite on four calibration targets."""
    per_target = SWEEP_EXPERIMENTS // len(SWEEP_TARGETS)
    sweep = {
        "run": SWEEP_RUN,
        "repeats": 1,
        "warmup_requests": 0,
        "targets": [
            {"name": name, "engine": {"name": "calibration", "model": "llama3.1:8b"}}
            for name in SWEEP_TARGETS
        ],
        "suites": {
            **{
                suite: {"enabled": False}
                for suite in ("basic", "prompt_length", "concurrency", "resources", "kv_cache")
            },
            "temperature": {
                "temperatures": [round(1.5 * i / per_target, 4) for i in range(per_target)],
                "requests": 1,
            },
        },
    }
    (workdir / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    return "sweep.yaml"


@pytest.fixture(scope="module")
def sweep_run(env, tmp_path_factory) -> tuple[Path, tuple[str, ...], str]:
    workdir = copy_workflow(tmp_path_factory.mktemp("slurm-sweep"))
    configs = (*CONFIGS, write_sweep_config(workdir))
    return workdir, configs, slurm_sweep(workdir, env, configs, timeout_s=1800)


def test_a_sweep_submits_one_slurm_job_per_target(env, sweep_run):
    workdir, configs, output = sweep_run
    expected = experiment_ids(workdir, configs)
    assert len(expected) == SWEEP_EXPERIMENTS
    submitted = {job_id: Path(log) for job_id, log in SUBMITTED.findall(output)}
    # nothing else goes to the queue: the rest are local rules
    assert len(submitted) == len(SWEEP_TARGETS), submitted
    assert {log.parent.name for log in submitted.values()} == {
        "group_target_preflight_target_run_experiment_target_anchor_target"
    }
    by_job = {job_id: finished_experiments(log.read_text()) for job_id, log in submitted.items()}
    # each job ran every experiment of one target, and each target's in one job
    targets = [{experiment.split("--")[0] for experiment in ids} for ids in by_job.values()]
    assert sorted(tuple(names) for names in targets) == [(name,) for name in sorted(SWEEP_TARGETS)]
    assert sorted(e for ids in by_job.values() for e in ids) == sorted(expected)
    assert set(slurm_states(env, list(submitted)).values()) == {"COMPLETED"}
    requests = pl.read_parquet(workdir / "results" / SWEEP_RUN / "requests.parquet")
    for target in SWEEP_TARGETS:
        of_target = requests.filter(pl.col("experiment_id").str.starts_with(f"{target}--"))
        spans = experiment_spans(of_target)
        assert spans.height == SWEEP_EXPERIMENTS // len(SWEEP_TARGETS)
        assert one_at_a_time(spans), target


def headings(log: str) -> list[str]:
    return re.findall(r"^#+ .*$", log, re.M)


def labels(log: str) -> list[str]:
    """The bold labels of the log's list items: which figures it reports, not their values."""
    found = re.findall(r"^\s*(?:-|\d+\.) \*\*([^*]+)\*\*", log, re.M)
    # A verdict's word (linear / inconclusive) is a value that noise can move.
    return [label.split(":")[0] if label.startswith("Verdict:") else label for label in found]


def test_the_log_has_the_same_experiments_and_sections_as_a_local_run(slurm_run, local_run):
    slurm_dir, _ = slurm_run
    logs = [
        (workdir / "reports" / RUN / "day1-log.md").read_text()
        for workdir in (slurm_dir, local_run)
    ]
    assert headings(logs[0]) == headings(logs[1])
    assert len(headings(logs[0])) > 10
    assert labels(logs[0]) == labels(logs[1])
    assert "Mean Latency" in labels(logs[0])
    summaries = [
        pl.read_parquet(workdir / "results" / RUN / "summary.parquet").sort("experiment_id")
        for workdir in (slurm_dir, local_run)
    ]
    assert summaries[0].columns == summaries[1].columns
    assert summaries[0]["experiment_id"].to_list() == summaries[1]["experiment_id"].to_list()
    # timings differ, but both measured the same script: 8 tokens per request
    for summary in summaries:
        assert (summary["output_tokens_mean"] == 8).all()
