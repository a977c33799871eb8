"""The seed's suites against llama-server on SmolLM2, through the workflow: two
targets, ``--parallel 1`` and ``--parallel 4``, each started by perflab per job.
Per request perflab's client-side figures must agree with the server's own
``timings``; the concurrency finding must say ``serial`` for one slot and the
server's own metrics must show several requests running at once with four."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import run_snakemake

from perflab.analyse.findings import concurrency
from perflab.analyse.findings.frame import with_defaults
from perflab.engines import capabilities_for

pytestmark = pytest.mark.slow
RUN = "llama-server-check"


def target(name: str, model: Path, parallel: int) -> dict:
    launch = {
        "server": "llama-server",  # no binary: the workflow's own, from its build rule
        "parallel": parallel,
        "threads": 1,
        "ctx_size": 4096 * parallel,
    }
    engine = {"name": "openai", "model": "smollm2-135m", "model_path": str(model)}
    return {"name": name, "engine": engine | {"launch": launch}}


@pytest.fixture(scope="module")
def run(copy_workflow, smollm2_path, llama_tools, tmp_path_factory) -> Path:
    workdir = copy_workflow(tmp_path_factory.mktemp("llama-server-suites"))
    config = {
        "run": RUN,
        "repeats": 3,
        "targets": [
            target("parallel1", smollm2_path, 1),
            target("parallel4", smollm2_path, 4),
        ],
        "generation": {"max_tokens": 48},
        "warmup_requests": 1,
        "sampler": {"interval_s": 0.2},
        "suites": {
            "basic": {"prompts": ["short"], "requests": 3},
            "prompt_length": {"enabled": False},
            "temperature": {"enabled": False},
            "concurrency": {"workers": [1, 4], "requests": 8},
            "resources": {"enabled": False},
            "kv_cache": {"requests": 3},
        },
    }
    (workdir / "run.yaml").write_text(yaml.safe_dump(config))
    # the build rule links these instead of compiling (docs/servers.md)
    prebuilt = {"PERFLAB_LLAMA_SERVER_DIR": str(llama_tools)}
    result = run_snakemake(
        workdir, "--cores", "2", "--configfile", "run.yaml", env=prebuilt, timeout=1800
    )
    assert result.returncode == 0, result.stderr[-6000:]
    built = list((workdir / "cache" / "llama.cpp").glob("*/llama-server"))
    assert len(built) == 1 and built[0].resolve() == (llama_tools / "llama-server").resolve()
    return workdir / "results" / RUN


def measured_records(results: Path) -> list[dict]:
    records = []
    for path in sorted((results / "experiments").glob("*/records.jsonl")):
        records += [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in records if r["status"] == "ok" and not r["is_warmup"]]


def test_every_request_agrees_with_the_servers_own_timings(run):
    records = measured_records(run)
    assert len(records) >= 2 * 2 * (3 + 8 + 8 + 3 + 3)
    ratios = []
    for record in records:
        timings = record["server_raw"]["timings"]
        # the first token cannot reach the client before the server finished the prompt
        assert record["ttft_s"] >= timings["prompt_ms"] / 1000, record
        assert record["output_tokens"] == timings["predicted_n"] == record["server_output_tokens"]
        assert record["prefill_s"] == pytest.approx(timings["prompt_ms"] / 1000)
        assert record["server_cached_tokens"] == timings["cache_n"]
        if record["output_tokens"] >= 8:
            server_tps = timings["predicted_n"] / (timings["predicted_ms"] / 1000)
            ratios.append(record["tps"] / server_tps)
    ratios.sort()
    median = ratios[len(ratios) // 2]
    assert 0.85 <= median <= 1.15, f"client decode / server decode: median {median:.3f}"
    assert all(0.4 <= r <= 2.5 for r in ratios), ratios


def test_the_chat_template_prefix_is_cached_even_when_the_prompt_is_busted(run):
    busted = [r for r in measured_records(run) if "-reuse" not in r["experiment_id"]]
    cached = sorted(r["server_cached_tokens"] for r in busted)
    assert cached[len(cached) // 2] > 0  # the template's opening comes before the nonce
    assert all(r["server_cached_tokens"] < r["prompt_tokens"] for r in busted)


def concurrency_of(results: Path, name: str) -> concurrency.ConcurrencyFinding:
    summary = with_defaults(pl.read_parquet(results / "summary.parquet"))
    frame = summary.filter(pl.col("target") == name)
    return concurrency.summary(frame, capabilities_for("openai", "llama-server"))


def test_one_slot_is_serial_and_four_slots_run_several_requests_at_once(run):
    one = concurrency_of(run, "parallel1")
    assert one.verdict is concurrency.ConcurrencyVerdict.SERIAL, one
    assert one.server_running_max == 1
    assert (one.server_deferred_max or 0) >= 1  # the other workers waited for the slot
    four = concurrency_of(run, "parallel4")
    assert four.server_running_max >= 2, four
    report = (run.parent.parent / "reports" / RUN / "day1-log.md").read_text()
    assert "By its own /metrics" in report
