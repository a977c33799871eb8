"""llama-server started by perflab (``engine.launch``), the real binary built from
the vendored llama.cpp: it serves the ``openai`` engine, is stopped after
success, a failed start, its own death mid-run and Ctrl-C, and leaves no
process behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import ROOT

from perflab.config.load import load_config_file
from perflab.config.sweep import expand_experiments
from perflab.core.records import read_jsonl
from perflab.engines import GenerationOptions, make_engine
from perflab.engines.launch import ServerStartError
from perflab.measure.experiment import ExperimentPaths, ServerFailed, run_experiment
from perflab.measure.spec import experiment_spec

pytestmark = pytest.mark.slow


def launched_config(model: Path, tools: Path, **launch) -> dict:
    overrides = {
        "engine": {
            "name": "openai",
            "model": "tiny",
            "model_path": str(model),
            "launch": {
                "server": "llama-server",
                "binary": str(tools / "llama-server"),
                "threads": 1,
                "ctx_size": 2048,
            }
            | launch,
        },
        "generation": {"max_tokens": 8},
        "warmup_requests": 1,
        "sampler": {"interval_s": 0.1},
    }
    return load_config_file(ROOT / "config" / "config.yaml", overrides=overrides)


def spec_of(config: dict) -> dict:
    """The spec of one closed-loop experiment of a single worker and 10 or more requests."""
    experiment = next(
        e for e in expand_experiments(config).values() if e.workers == 1 and (e.requests or 0) >= 10
    )
    return experiment_spec(config, experiment)


def own_model(tiny_model_path: Path, tmp_path: Path) -> Path:
    """A copy of the model that only this test's servers load: its path tells them apart
    from any other llama-server on the machine."""
    return Path(shutil.copy(tiny_model_path, tmp_path / "model.gguf"))


def llama_servers(model: Path) -> list[psutil.Process]:
    """Running llama-server processes serving ``model`` (zombies are not running)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info.get("cmdline") or []
        running = proc.info.get("status") != psutil.STATUS_ZOMBIE
        if running and cmdline and cmdline[0].endswith("llama-server") and str(model) in cmdline:
            found.append(proc)
    return found


def wait_until_gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid):
            return True
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_llama_server_serves_the_openai_engine_with_its_timings(
    tmp_path, tiny_model_path, llama_tools
):
    engine = make_engine(
        launched_config(tiny_model_path, llama_tools), server_log=tmp_path / "server.log"
    )
    try:
        info = engine.preflight()
        pid = info["server"]["pid"]
        assert info["model"] == "tiny" and "--parallel" in info["server"]["command"]
        assert engine.server_pids()[0] == pid and engine.capabilities.label == "llama-server"
        chunks = list(engine.stream("Hello there", GenerationOptions(max_tokens=8)))
    finally:
        engine.close()
    final = chunks[-1]
    assert final.done and final.timings.output_tokens == final.timings.raw["timings"]["predicted_n"]
    assert final.timings.prefill_s > 0 and final.timings.decode_s > 0
    assert wait_until_gone(pid)
    assert "server stopped by perflab" in (tmp_path / "server.log").read_text()


def test_a_model_llama_server_cannot_load_fails_with_its_log_and_no_server(tmp_path, llama_tools):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file at all")
    config = launched_config(broken, llama_tools)
    with pytest.raises(ServerStartError) as caught:
        make_engine(config, server_log=tmp_path / "server.log")
    message = str(caught.value)
    assert "llama-server exited with status" in message and "before it was ready" in message
    assert "last lines of its log" in message and str(broken) in message
    assert not llama_servers(broken)


def test_a_server_that_dies_mid_run_ends_the_experiment_with_records_kept(
    tmp_path, tiny_model_path, llama_tools
):
    model = own_model(tiny_model_path, tmp_path)
    config = launched_config(model, llama_tools)
    spec = spec_of(config)
    experiment_id = spec["experiment"]["id"]
    paths = ExperimentPaths.in_dir(tmp_path / experiment_id, tmp_path / "failed")
    measured, killed = [], []

    def kill_after_three(record) -> None:
        if not record.is_warmup:
            measured.append(record)
        if len(measured) == 3 and not killed:
            for server in llama_servers(model):
                killed.append(server.pid)
                server.kill()

    with pytest.raises(ServerFailed) as caught:
        run_experiment(spec, paths, progress=kill_after_three, say=lambda _: None)
    message = str(caught.value)
    assert killed and "exited with status 137 while measuring" in message
    assert "last lines of its log" in message and "records kept in" in message
    kept = list((tmp_path / "failed").glob(f"{experiment_id}-*-server-failed.jsonl"))
    assert len(kept) == 1
    records = read_jsonl(kept[0])
    assert sum(1 for r in records if r["status"] == "ok" and not r["is_warmup"]) == 3
    assert len(records) <= 3 + 1 + 1  # warm-up, three, and at most the one that met the death
    assert not paths.metadata.exists()


def test_ctrl_c_of_the_workflow_stops_the_server_and_keeps_the_records(
    tmp_path, tiny_model_path, llama_tools
):
    """SIGINT to Snakemake's process group, as Ctrl-C in a terminal sends it: the
    experiment keeps its records and its server is gone (the server runs in a session
    of its own, so perflab, not the terminal, stops it)."""
    for name in ("Snakefile", "workflow", "config", "profiles", "environment.yml"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / name)
    model = own_model(tiny_model_path, tmp_path)
    engine = launched_config(model, llama_tools)["engine"]
    run = {
        "run": "ctrl-c",
        "engine": engine,
        "generation": {"max_tokens": 8},
        "warmup_requests": 0,
        "suites": {
            "basic": {"enabled": False},
            "prompt_length": {"enabled": False},
            "temperature": {"enabled": False},
            "concurrency": {"enabled": False},
            "kv_cache": {"enabled": False},
            "resources": {"duration_s": 600},
        },
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run))
    bindir = str(Path(sys.executable).parent)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(Path.home())}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    workflow = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", "run.yaml"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    partial = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and workflow.poll() is None:
        found = list(
            (tmp_path / "results" / "ctrl-c" / "experiments").glob("*/records.partial.jsonl")
        )
        if found and len(found[0].read_text().splitlines()) >= 3:
            partial = found[0]
            break
        time.sleep(0.2)
    assert partial is not None, workflow.communicate()[0][-3000:]
    servers = llama_servers(model)
    assert servers, "no llama-server while measuring"
    os.killpg(workflow.pid, signal.SIGINT)  # Ctrl-C: SIGINT to the foreground group
    try:
        output, _ = workflow.communicate(timeout=120)
    finally:
        if workflow.poll() is None:
            os.killpg(workflow.pid, signal.SIGKILL)
    assert workflow.returncode != 0
    for server in servers:
        assert wait_until_gone(server.pid), f"llama-server {server.pid} outlived the workflow"
    kept = list((tmp_path / "results" / "ctrl-c" / "failed").glob("*-interrupted.jsonl"))
    assert kept and len(kept[0].read_text().splitlines()) >= 3, output[-3000:]


def test_the_server_says_itself_how_many_requests_it_runs_at_once(
    tmp_path, tiny_model_path, llama_tools
):
    """Four workers against four slots: its /metrics, read on the sampler's clock, has
    them running together, and each sample says how full its KV cache is."""
    config = launched_config(tiny_model_path, llama_tools, parallel=4, ctx_size=8192)
    config["generation"]["max_tokens"] = 48
    config["suites"]["concurrency"]["workers"] = [4]
    # enough to span several of the sampler's 0.1 s intervals on a fast, quiet machine
    # too: 12 requests took three
    config["suites"]["concurrency"]["requests"] = 48
    experiments = expand_experiments(config)
    experiment = next(e for e in experiments.values() if e.workers == 4)
    spec = experiment_spec(config, experiment)
    paths = ExperimentPaths.in_dir(tmp_path / experiment.id, tmp_path / "failed")
    metadata = run_experiment(spec, paths, say=lambda _: None)
    samples = [json.loads(line) for line in paths.samples.read_text().splitlines()]
    scraped = [s for s in samples if "llama_requests_processing" in s]
    assert len(scraped) >= len(samples) - 1 >= 3
    assert max(s["llama_requests_processing"] for s in scraped) >= 2
    assert all(0 <= s["llama_kv_used"] <= 1 for s in scraped if "llama_kv_used" in s)
    server = metadata["server_metrics"]
    assert server["server_requests_processing_max"] >= 2
    assert server["server_decode_tps"] > 0
    assert metadata["engine"]["server"]["server"] == "llama-server"


def test_llama_bench_runs_as_the_peer_with_a_ci_per_test(tiny_model_path, llama_tools):
    from perflab.measure.peer import run_llama_bench

    tests, command = run_llama_bench(
        str(llama_tools / "llama-bench"), str(tiny_model_path), 1, [16, 64], 16, 3
    )
    assert {t.label for t in tests} == {"pp16", "pp64", "tg16"}
    assert all(t.repetitions == 3 and t.threads == 1 and t.tps_mean > 0 for t in tests)
    assert all(t.tps_ci95 >= 0 for t in tests) and "-o" in command
