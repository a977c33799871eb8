"""Whole workflows under stress: kill -9 mid-experiment then the README's
commands, and two workflows sharing one target."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

SLOW = """\
run: {run}
repeats: 1
generation:
  max_tokens: 8
warmup_requests: 1
sampler:
  interval_s: 0.1
calibration:
  load_time_s: 0.05
  ttft_fixed_s: 0.01
  ttft_per_token_s: 0.0002
  itl_s: 0.04
suites:
  basic:
    prompts: [short, medium]
    requests: 12
  prompt_length:
    enabled: false
  temperature:
    enabled: false
  concurrency:
    enabled: false
  resources:
    enabled: false
  kv_cache:
    enabled: false
"""


@pytest.fixture
def workdir(tmp_path, copy_workflow) -> Path:
    copy_workflow(tmp_path)
    for run in ("first", "second"):
        (tmp_path / f"{run}.yaml").write_text(SLOW.format(run=run))
    return tmp_path


def env(workdir: Path) -> dict:
    bindir = str(Path(sys.executable).parent)
    return {
        "PATH": f"{bindir}:/usr/bin:/bin",
        "HOME": str(Path.home()),
        "PERFLAB_LOCK_DIR": str(workdir / "locks"),
    } | ({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {})


def command(run: str) -> list[str]:
    """The README's plain command, up to the pre-flight check and the summary (charts and
    log add nothing here)."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        f"results/{run}/preflight.json",
        f"results/{run}/summary.parquet",
        "--cores",
        "1",
        "--configfile",
        "config/calibration.yaml",
        f"{run}.yaml",
    ]


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(args), cwd=workdir, env=env(workdir), capture_output=True, text=True, timeout=600
    )


def wait_for(predicate, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def partial_lines(workdir: Path) -> int:
    files = (workdir / "results" / "first" / "experiments").glob("*/records.partial.jsonl")
    return sum(len(path.read_text().splitlines()) for path in files)


def test_kill_9_mid_experiment_then_unlock_and_the_plain_command_resumes(workdir):
    workflow = subprocess.Popen(
        command("first"),
        cwd=workdir,
        env=env(workdir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: partial_lines(workdir) >= 3)
    experiments = [
        child
        for child in psutil.Process(workflow.pid).children(recursive=True)
        if "run-experiment" in " ".join(child.cmdline())
    ]
    assert experiments
    workflow.kill()
    workflow.wait()
    # the orphaned experiment notices and stops: it cannot overlap the resumed run
    _, alive = psutil.wait_procs(experiments, timeout=30)
    assert not alive
    kept = list((workdir / "results" / "first" / "failed").glob("*-interrupted.jsonl"))
    assert len(kept) == 1 and len(kept[0].read_text().splitlines()) >= 3

    locked = snakemake(workdir, *command("first"))
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr
    unlock = snakemake(workdir, *command("first"), "--unlock")
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    resumed = snakemake(workdir, *command("first"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    experiments_dir = workdir / "results" / "first" / "experiments"
    for name in ("short-t0.7-w1-n12-r1", "medium-t0.7-w1-n12-r1"):
        lines = (experiments_dir / name / "records.jsonl").read_text().splitlines()
        assert len(lines) == 12 + 1
        assert not (experiments_dir / name / "records.partial.jsonl").exists()
    assert kept[0].exists()  # the interrupted attempt's records are still there


def measured_windows(workdir: Path, run: str) -> list[tuple[float, float]]:
    windows = []
    for path in (workdir / "results" / run / "experiments").glob("*/metadata.json"):
        run_info = json.loads(path.read_text())["run"]
        windows.append((run_info["started"], run_info["ended"]))
    return windows


def test_two_workflows_never_measure_one_target_at_once(workdir):
    """Two runs of different names in one directory: Snakemake's llm_server=1 holds
    only inside one Snakemake; the file lock holds across both."""
    workflows = [
        subprocess.Popen(
            command(run),
            cwd=workdir,
            env=env(workdir),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for run in ("first", "second")
    ]
    outputs = [workflow.communicate(timeout=600)[0] for workflow in workflows]
    for workflow, output in zip(workflows, outputs):
        assert workflow.returncode == 0, output[-3000:]
    windows = sorted(measured_windows(workdir, "first") + measured_windows(workdir, "second"))
    assert len(windows) == 4
    for (_, ended), (started, _) in zip(windows, windows[1:]):
        assert ended <= started, windows
    for output in outputs:  # before the first experiment: the estimate; then each one's progress
        assert "whole run ≈" in output and "for 26 requests in 2 experiments" in output
        assert output.index("whole run ≈") < output.index("requests, 0 errors")
        assert "12/12 requests, 0 errors" in output
    waited = "".join(outputs)
    assert "waiting for calibration server on this machine: held by pid" in waited
    assert "experiment" in waited.split("held by pid", 1)[1].splitlines()[0]
    assert os.listdir(workdir / "locks")
