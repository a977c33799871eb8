"""The threads suite through the workflow: SmolLM2 in the embedded llama.cpp at 1 and
2 threads, two trials of a few short requests, and llama-bench -t 1,2 on the same
GGUF. Each experiment must have run with its own thread count (the engine says so),
and the finding, llama-bench's figures and the log's section must all be there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, SMOLLM2, run_snakemake

from perflab.analyse.findings import load
from perflab.analyse.findings.threads import Agreement
from perflab.analyse.verdict import Outcome

pytestmark = pytest.mark.slow
RUN = "threads-check"


@pytest.fixture(scope="module")
def run(copy_workflow, smollm2_path, llama_tools) -> Path:
    workdir = copy_workflow(cached=(SMOLLM2.relative_to(ROOT),))
    config = {
        "run": RUN,
        "repeats": 2,
        "roofline": False,
        "warmup_requests": 1,
        "generation": {"max_tokens": 16},
        "peer": {"repetitions": 2},
        "suites": {
            "basic": {"prompts": ["short"], "requests": 2},
            "prompt_length": {"enabled": False},
            "temperature": {"enabled": False},
            "concurrency": {"enabled": False},
            "resources": {"enabled": False},
            "kv_cache": {"enabled": False},
            "threads": {"enabled": True, "threads": [1, 2], "prompt": "short", "requests": 3},
        },
    }
    (workdir / "run.yaml").write_text(yaml.safe_dump(config))
    prebuilt = {"PERFLAB_LLAMA_SERVER_DIR": str(llama_tools)}  # linked, not compiled
    result = run_snakemake(
        workdir, "--cores", "2", "--configfile", "run.yaml", env=prebuilt, timeout=900
    )
    assert result.returncode == 0, result.stderr[-6000:]
    return workdir


def test_each_experiment_ran_at_its_own_thread_count(run):
    experiments = run / "results" / RUN / "experiments"
    for count in (1, 2):
        for trial in (1, 2):
            meta = json.loads(
                (experiments / f"short-t0.7-w1-n3-th{count}-r{trial}" / "metadata.json").read_text()
            )
            assert meta["experiment"]["threads"] == count
            assert meta["engine"]["n_threads"] == count  # what llama.cpp itself ran with


def test_the_finding_has_rates_per_count_a_verdict_and_llama_benchs_best(run):
    found = load(run / "results" / RUN / "findings.json").threads
    assert [p.threads for p in found.points] == [1, 2]
    for point in found.points:
        assert point.condition.trials == 2 and point.condition.n_ok == 6
        assert point.decode.mean > 0 and point.decode.between_trials
        assert point.prefill.mean > 0 and point.condition.output_tokens_mean > 0
        assert point.peer_tg.threads == point.threads and point.peer_tg.repetitions == 2
        assert point.peer_tg.tps_mean > 0 and point.peer_pp.tps_mean > 0
    assert found.best in (1, 2) and found.runner_up == 3 - found.best
    assert found.test.n_trials == 2 and found.verdict in set(Outcome)
    assert found.peer_best in (1, 2) and found.agreement in set(Agreement)
    bench = json.loads((run / "results" / RUN / "threads" / "llama-bench.json").read_text())
    assert "-t" in bench["command"] and bench["command"][bench["command"].index("-t") + 1] == "1,2"


def test_the_log_has_the_threads_table(run):
    log = (run / "reports" / RUN / "day1-log.md").read_text()
    section = log.split("### Threads", 1)[1].split("\n---", 1)[0]
    assert "| Threads | Decode tok/s (95% CI) | Output tokens (mean) |" in section
    rows = [line for line in section.splitlines() if line.startswith(("| 1 |", "| 2 |"))]
    assert len(rows) == 2 and all("tokens, n=2)" in row for row in rows)  # llama-bench's
    assert "Fastest decode at" in section and "llama-bench's fastest tg is at" in section
