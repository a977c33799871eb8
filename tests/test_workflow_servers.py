"""The whole workflow on other servers, in a temp dir: the ``openai`` engine against
a calibration server's OpenAI API, and ``llamacpp`` with an Ollama model name
resolved in an Ollama store built around the tiny model."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import copy_workflow_files, run_snakemake
from test_ollama_store import build_store

from perflab.calibration import CalibrationServer, TimingModel

ROOT = Path(__file__).resolve().parents[1]
MODEL = "llama3.1:8b"

pytestmark = pytest.mark.slow

SMALL = {
    "repeats": 1,  # the engines' plumbing through the workflow, not a verdict: one trial
    "generation": {"max_tokens": 6},
    "warmup_requests": 1,
    "sampler": {"interval_s": 0.1},
    "suites": {
        "basic": {"prompts": ["short", "long"], "requests": 3},
        "prompt_length": {"prompts": ["tiny", "medium", "very_long"], "requests": 3},
        "temperature": {"temperatures": [0.0, 1.0], "requests": 3},
        "concurrency": {"workers": [1, 2], "requests": 4},
        "resources": {"duration_s": 1},
    },
}


def snakemake(workdir: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_snakemake(workdir, *args, env=env)


def make_workdir(tmp_path: Path, config: dict) -> Path:
    copy_workflow_files(tmp_path)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({**SMALL, **config}))
    return tmp_path


def test_openai_engine_runs_the_workflow_against_the_openai_api(tmp_path):
    timing = TimingModel(load_time_s=0, ttft_fixed_s=0.01, itl_s=0.002, output_tokens=16)
    with CalibrationServer(timing) as server:
        config = {
            "run": "test-openai",
            "engine": {"name": "openai", "model": MODEL, "host": server.url},
        }
        workdir = make_workdir(tmp_path, config)
        result = snakemake(workdir, "--cores", "2", "--configfile", "run.yaml")
        assert result.returncode == 0, result.stderr[-5000:]
        log = server.log
    results = workdir / "results" / "test-openai"
    preflight = json.loads((results / "preflight.json").read_text())
    assert preflight["engine"] == "openai" and preflight["host"] == server.url + "/v1"
    requests = pl.read_parquet(results / "requests.parquet")
    assert (requests["status"] == "ok").all()
    # every request reached the server's OpenAI API, counted from its usage: the pre-flight
    # check's three timed requests first (the longest prompt cold and warm, the shortest
    # warm: the run's estimate), then every measured one
    generation = [e for e in log if e.endpoint == "v1/chat/completions"]
    assert len(generation) == len(log) == requests.height + 3
    measured = sorted(log, key=lambda e: e.t_arrival)[3:]
    assert (requests["output_tokens"] == 6).all() and (requests["server_output_tokens"] == 6).all()
    assert sorted(requests["prompt_tokens"].to_list()) == sorted(e.prompt_tokens for e in measured)
    report = (workdir / "reports" / "test-openai" / "day1-log.md").read_text()
    assert "Does the OpenAI-compatible server benefit from concurrent requests?" in report


def test_an_ollama_model_name_runs_in_llamacpp_from_the_store(tmp_path, tiny_model_path):
    store = tmp_path / "ollama-models"
    build_store(store, tiny_model_path, "registry.ollama.ai", "library", "llama3.1", "8b")
    config = {
        "run": "test-ollama-weights",
        "engine": {"name": "llamacpp", "model": MODEL, "n_ctx": 1024},
    }
    workdir = make_workdir(tmp_path / "work", config)
    result = snakemake(
        workdir, "--cores", "2", "--configfile", "run.yaml", env={"OLLAMA_MODELS": str(store)}
    )
    assert result.returncode == 0, result.stderr[-5000:]
    assert not (workdir / "cache" / "models").exists()  # no tiny model was built
    results = workdir / "results" / "test-ollama-weights"
    preflight = json.loads((results / "preflight.json").read_text())
    assert preflight["engine"] == "llamacpp"
    assert Path(preflight["model_path"]).parent == store / "blobs"
    assert (pl.read_parquet(results / "requests.parquet")["status"] == "ok").all()

    missing = snakemake(
        workdir,
        "--cores",
        "1",
        "--configfile",
        "run.yaml",
        "--config",
        "run=other",
        env={"OLLAMA_MODELS": str(tmp_path / "empty")},
    )
    assert missing.returncode != 0
    assert (
        "not in the Ollama store" in missing.stderr and "ollama pull llama3.1:8b" in missing.stderr
    )
    assert not (workdir / "results" / "other" / "experiments").exists()
