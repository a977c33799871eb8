"""An experiment process under stress: a held target, Ctrl-C, the death of its
workflow, a full disk, a partial file left by a crash; and its progress line."""

from __future__ import annotations

import io
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import FAST_TIMING, ROOT

from perflab.config.load import load_config_file
from perflab.config.sweep import expand_experiments
from perflab.core.records import RequestRecord, read_jsonl
from perflab.measure.experiment import ExperimentPaths, run_experiment
from perflab.measure.locks import describe_holder, lock_path, target_lock
from perflab.measure.preflight_info import PreflightInfo
from perflab.measure.progress import ExperimentProgress
from perflab.measure.spec import experiment_spec

EXPERIMENT = "medium-t0.7-w1-n8-r1"


def make_spec(**timing) -> dict:
    overrides = {
        "engine": {"name": "calibration", "model": "llama3.1:8b"},
        "repeats": 1,  # one trial: these tests are about one experiment
        "calibration": FAST_TIMING | {"num_parallel": 1} | timing,
        "warmup_requests": 1,
        "sampler": {"interval_s": 0.1},
    }
    config = load_config_file(ROOT / "config" / "config.yaml", overrides=overrides)
    return experiment_spec(config, expand_experiments(config)[EXPERIMENT])


@pytest.fixture
def lock_dir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "locks"
    monkeypatch.setenv("PERFLAB_LOCK_DIR", str(path))
    return path


def cli_args(spec: dict, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "perflab",
        "run-experiment",
        "--spec",
        json.dumps(spec),
        "--out-dir",
        str(out / EXPERIMENT),
        "--failed-dir",
        str(out / "failed"),
    ]


def wait_for_lines(path: Path, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never reached {n} lines")


def paths(out: Path) -> ExperimentPaths:
    run = out / EXPERIMENT
    return ExperimentPaths(
        run / "records.jsonl", run / "samples.jsonl", run / "metadata.json", out / "failed"
    )


def test_a_held_target_makes_the_second_experiment_wait_and_say_who_holds_it(tmp_path, lock_dir):
    """The lock is an OS lock: another process holds it, this one waits for it."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from perflab.measure.locks import target_lock\n"
            "with target_lock('calibration server on this machine', "
            "{'experiment': 'other-exp', 'out_dir': '/elsewhere'}, print):\n"
            "    print('held', flush=True); time.sleep(1.5)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    said: list[str] = []
    started = time.monotonic()
    metadata = run_experiment(make_spec(), paths(tmp_path), say=said.append)
    holder.wait(timeout=30)
    assert time.monotonic() - started > 0.5  # it waited for the holder
    assert said and "waiting for calibration server on this machine" in said[0]
    assert f"held by pid {holder.pid}" in said[0] and "other-exp" in said[0]
    assert metadata["run"]["started"] > time.time() - 60
    # released on exit: nobody is named any more
    assert describe_holder(lock_path("calibration server on this machine")) == "another process"


def test_the_lock_is_released_when_its_holder_is_killed(lock_dir):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nfrom perflab.measure.locks import target_lock\n"
            "with target_lock('ollama http://127.0.0.1:1', {}, print):\n"
            "    print('held', flush=True); time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    with target_lock("ollama http://127.0.0.1:1", {}, print, poll_s=0.05) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_ctrl_c_ends_with_one_line_and_keeps_the_records(tmp_path, lock_dir):
    spec = make_spec(itl_s=0.03)
    process = subprocess.Popen(
        cli_args(spec, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    partial = tmp_path / EXPERIMENT / "records.partial.jsonl"
    wait_for_lines(partial, 3)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("perflab:")]
    assert len(lines) == 1 and "interrupted (SIGINT)" in lines[0]
    kept = list((tmp_path / "failed").glob(f"{EXPERIMENT}-*-interrupted.jsonl"))
    assert len(kept) == 1 and str(kept[0]) in lines[0]
    assert len(read_jsonl(kept[0])) >= 3  # nothing measured is lost
    assert not partial.exists() and not (tmp_path / EXPERIMENT / "records.jsonl").exists()


def test_an_experiment_exits_when_its_parent_is_killed(tmp_path, lock_dir):
    """kill -9 of the parent (as of Snakemake) must not leave the experiment measuring."""
    spec = make_spec(itl_s=0.03)
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "child = subprocess.Popen(sys.argv[1:])\n"
            "print(child.pid, flush=True)\n"
            "time.sleep(600)\n",
            *cli_args(spec, tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    child = psutil.Process(int(launcher.stdout.readline()))
    wait_for_lines(tmp_path / EXPERIMENT / "records.partial.jsonl", 2)
    launcher.kill()
    launcher.wait()
    child.wait(timeout=20)  # not our child: no exit status; it ended, or this raises
    kept = list((tmp_path / "failed").glob(f"{EXPERIMENT}-*-interrupted.jsonl"))
    assert len(kept) == 1 and len(read_jsonl(kept[0])) >= 2


def test_a_partial_file_left_by_a_crash_is_kept_not_deleted(tmp_path, lock_dir):
    files = paths(tmp_path)
    files.records.parent.mkdir(parents=True)
    leftover = files.records.with_suffix(".partial.jsonl")
    leftover.write_text('{"request_index": 0}\n{"request_index": 1}\n')
    said: list[str] = []
    run_experiment(make_spec(), files, say=said.append)
    kept = list(files.failed_dir.glob(f"{EXPERIMENT}-*-interrupted.jsonl"))
    assert len(kept) == 1 and kept[0].read_text().count("\n") == 2
    assert str(kept[0]) in said[0]
    # the experiment's own requests and its one warm-up, none of the leftover's
    assert len(read_jsonl(files.records)) == 8 + 1


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))


def test_a_full_disk_ends_with_one_message_naming_the_path(tmp_path, lock_dir):
    """RLIMIT_FSIZE makes writes past 6 kB fail (EFBIG), as a full disk would (ENOSPC)."""
    result = subprocess.run(
        cli_args(make_spec(), tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit_file_size,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    message = [line for line in result.stderr.splitlines() if line.startswith("perflab:")]
    assert len(message) == 1
    partial = tmp_path / EXPERIMENT / "records.partial.jsonl"
    assert f"cannot write {partial}: File too large." in message[0]
    kept = list((tmp_path / "failed").glob(f"{EXPERIMENT}-*.jsonl"))
    assert len(kept) == 1 and str(kept[0]) in message[0]
    taken = read_jsonl(kept[0])  # every line on disk is whole
    assert 0 < len(taken) < 21 and f"{len(taken)} records taken before it" in message[0]


def test_an_unwritable_results_path_is_named(tmp_path, lock_dir):
    blocker = tmp_path / "results"
    blocker.write_text("a file where a directory should be")
    result = subprocess.run(
        cli_args(make_spec(), blocker), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"perflab: cannot write {blocker}" in result.stderr


def record(index: int, *, warmup: bool = False, ok: bool = True, t: float = 0.0) -> RequestRecord:
    return RequestRecord(
        experiment_id="x",
        request_index=index,
        worker=0,
        is_warmup=warmup,
        status="ok" if ok else "error",
        error_class=None if ok else "http_status",
        error=None,
        t_submit=t,
        t_first_token=t + 0.1,
        t_end=t + 0.5,
        ttft_s=0.1,
        e2e_s=0.5,
        itl_s=[],
        prompt_tokens=10,
        output_tokens=10 if ok else 0,
        tps=None,
    )


def test_progress_prints_plain_lines_when_not_a_terminal():
    stream = io.StringIO()
    progress = ExperimentProgress(
        "exp", planned=10, duration_s=None, warmup_planned=1, stream=stream
    )
    progress(record(0, warmup=True))
    for i in range(10):
        progress(record(i + 1, ok=i != 3, t=i * 0.5))
    progress.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert lines[0] == "exp: warm-up 1/1"
    assert lines[-1] == "exp: 10/10 requests, 1 errors, 2.00 req/s, 18.0 tok/s, ETA 0 s"
    assert 5 <= len(lines) <= 12  # about every tenth, not every request


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_one_line_on_a_terminal():
    stream = Terminal()
    progress = ExperimentProgress(
        "exp", planned=4, duration_s=None, warmup_planned=0, stream=stream
    )
    for i in range(4):
        progress(record(i, t=i * 0.5))
    progress.close()
    text = stream.getvalue()
    assert "\r" in text and text.count("\n") <= 1
    assert "exp: 4/4 requests, 0 errors, 2.00 req/s, 20.0 tok/s, ETA 0 s" in text


def test_preflight_times_one_request_and_estimates_the_run(tmp_path):
    config = load_config_file(
        ROOT / "config" / "calibration.yaml",
        base=ROOT / "config" / "config.yaml",
        overrides={"calibration": {"itl_s": 0.01, "ttft_fixed_s": 0.05, "load_time_s": 0.3}},
    )
    from perflab.calibration import count_tokens
    from perflab.measure.estimate import plan_run

    plan = plan_run(expand_experiments(config).values(), config["warmup_requests"])
    settings = {key: config[key] for key in ("engine", "generation", "calibration")}
    out = tmp_path / "preflight.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "perflab",
            "preflight",
            "--spec",
            json.dumps(settings),
            "--estimate",
            json.dumps(plan.__dict__),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(out.read_text())
    assert PreflightInfo.from_json(info).to_json() == info  # read back entry for entry
    estimate = info["estimate"]
    # the timed request was the server's first: it paid the 0.3 s load, and says so
    cold = info["cold_start"]
    assert cold["source"] == "preflight" and cold["load_s"] == pytest.approx(0.3, abs=0.05)
    assert cold["load_s"] < cold["ttft_s"] < cold["e2e_s"]
    assert "cold start: model load 0.3" in result.stdout
    # scripted for the longest prompt: 0.05 s + 0.5 ms a prompt token, then 31 gaps of 10 ms
    # (max_tokens 32); the 0.3 s model load is not part of a request
    scripted = 0.05 + 0.0005 * count_tokens(plan.longest_prompt) + 31 * 0.01
    assert scripted - 0.01 < estimate["per_request_s"] < scripted + 0.25
    assert estimate["n_requests"] == plan.n_requests == 507  # 3 trials of the calibration run
    # the load is the cold request's only extra: warm requests are as the script says, and
    # each prompt counts at its own (shorter) time, below the longest prompt's at every one
    assert estimate["cold_extra_s"] < 0.1
    assert estimate["shortest_s"] < estimate["per_request_s"]
    flat = plan.n_requests * estimate["per_request_s"] + plan.timed_s
    assert estimate["requests_s"] / plan.n_requests > 0.05 + 31 * 0.01
    assert estimate["total_s"] < flat
    assert (
        "whole run ≈" in result.stdout and "for 507 requests + 15 s of timed load" in result.stdout
    )


def test_ctrl_c_on_the_embedded_engine_ends_cleanly(tmp_path, lock_dir, tiny_model_path):
    """A worker may be inside llama.cpp when the interrupt lands: no crash, one line."""
    overrides = {
        "engine": {"model_path": str(tiny_model_path)},
        "generation": {"max_tokens": 256},
        "warmup_requests": 0,
        "suites": {"concurrency": {"workers": [2], "requests": 500}},
    }
    config = load_config_file(ROOT / "config" / "config.yaml", overrides=overrides)
    spec = experiment_spec(config, expand_experiments(config)["medium-t0-w2-n500-r1"])
    args = cli_args(spec, tmp_path)
    args[args.index("--out-dir") + 1] = str(tmp_path / EXPERIMENT)
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_lines(tmp_path / EXPERIMENT / "records.partial.jsonl", 2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err[-2000:]
    assert [line for line in err.splitlines() if line.startswith("perflab:")]
    assert "Traceback" not in err and "Segmentation" not in err


def test_preflight_without_a_timed_request_says_why_and_goes_on(tmp_path):
    config = load_config_file(
        ROOT / "config" / "calibration.yaml",
        base=ROOT / "config" / "config.yaml",
        overrides={"calibration": {"fault_rates": {"http_500": 1.0}}},
    )
    from perflab.measure.estimate import plan_run

    plan = plan_run(expand_experiments(config).values(), config["warmup_requests"])
    settings = {key: config[key] for key in ("engine", "generation", "calibration")}
    out = tmp_path / "preflight.json"
    result = subprocess.run(
        [sys.executable, "-m", "perflab", "preflight", "--spec", json.dumps(settings)]
        + ["--estimate", json.dumps(plan.__dict__), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "no estimate of the run's length: 3 test requests failed" in result.stdout
    assert "http_status" in result.stdout and "estimate" not in json.loads(out.read_text())


def test_an_experiment_waiting_for_the_lock_exits_with_its_parent(tmp_path, lock_dir):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nfrom perflab.measure.locks import target_lock\n"
            "with target_lock('calibration server on this machine', {}, print):\n"
            "    print('held', flush=True); time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        launcher = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import subprocess, sys, time\n"
                "child = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, text=True)\n"
                "print(child.pid, flush=True)\n"
                "print(child.stdout.readline(), end='', flush=True)\n"
                "time.sleep(600)\n",
                *cli_args(make_spec(), tmp_path),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        child = psutil.Process(int(launcher.stdout.readline()))
        assert "waiting for calibration server on this machine" in launcher.stdout.readline()
        launcher.kill()
        launcher.wait()
        child.wait(timeout=20)
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / EXPERIMENT / "records.partial.jsonl").exists()
