"""Two calibration targets, one scripted 1.5× slower per token, through the whole workflow."""

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import run_snakemake
from test_log_page import check_markdown

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

CONFIG = {
    "run": "two",
    "repeats": 3,  # two trials give 1 degree of freedom: too few to show equivalence
    "warmup_requests": 1,
    "generation": {"max_tokens": 16},
    "sampler": {"interval_s": 0.2},
    "calibration": {
        "itl_s": 0.01,
        "load_time_s": 0,
        "ttft_fixed_s": 0.02,
        "ttft_per_token_s": 0.0005,
        "output_tokens": 64,
    },
    "targets": [
        {"name": "fast", "engine": {"name": "calibration", "model": "llama3.1:8b"}},
        {
            "name": "slow",
            "engine": {"name": "calibration", "model": "llama3.1:8b"},
            "calibration": {"itl_s": 0.015},  # 1.5× the time per output token
        },
    ],
    "suites": {
        # 8 requests a point: with 4, one CI run's TTFT ratio (×1.01, CI ×0.95–×1.07) missed
        # equivalence by a hair (TOST p = 0.058 over 3 trials)
        "basic": {"prompts": ["short", "long"], "requests": 8},
        "prompt_length": {"enabled": False},
        "temperature": {"enabled": False},
        "concurrency": {"enabled": False},
        "resources": {"enabled": False},
        "kv_cache": {"enabled": False},
    },
}


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return run_snakemake(workdir, *args, timeout=600)


@pytest.fixture(scope="module")
def run(copy_workflow) -> Path:
    workdir = copy_workflow()
    (workdir / "two.yaml").write_text(yaml.safe_dump(CONFIG))
    result = snakemake(workdir, "--cores", "2", "--configfile", "two.yaml")
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


def metric(findings: dict, key: str, target: str = "slow") -> dict:
    found = next(m for m in findings["comparison"]["metrics"] if m["metric"] == key)
    return next(t for t in found["targets"] if t["target"] == target)


def test_the_slower_target_is_slower_by_1_5_and_the_rest_does_not_differ(run):
    findings = json.loads((run / "results/two/findings.json").read_text())
    comparison = findings["comparison"]
    assert comparison["baseline"] == "fast" and comparison["trials"] == 3
    tps = metric(findings, "tps")
    assert tps["factor"] == pytest.approx(1.5, abs=0.08)
    assert tps["factor_low"] - 0.05 <= 1.5 <= tps["factor_high"] + 0.05
    assert tps["ratio"]["n_trials"] == 3  # the trial is the unit of replication
    # the verdicts; a busy machine may mark experiments disturbed: then inconclusive, and why
    expected = {"tps": "slower", "ttft": "equivalent", "server_prefill_tps": "equivalent"}
    for key, verdict in expected.items():
        wanted = "inconclusive" if comparison["disturbed"] else verdict
        assert metric(findings, key)["verdict"] == wanted, key
    for key in ("ttft", "server_prefill_tps"):
        assert metric(findings, key)["ratio"]["estimate"] == pytest.approx(1.0, abs=0.1)


def test_paths_name_the_target_and_the_reports_compare_them(run):
    experiments = sorted(p.name for p in (run / "results/two/experiments").iterdir())
    assert experiments == [
        f"{t}--{p}-t0.7-w1-n8-r{k}"
        for t in ("fast", "slow")
        for p in ("long", "short")
        for k in (1, 2, 3)
    ]
    assert (run / "results/two/preflight/slow.json").is_file()
    comparison = (run / "reports/two/comparison.md").read_text()
    assert "| Decode speed (tok/s per request) | slow |" in comparison
    assert "## Per sweep point" in comparison and "charts/comparison.svg" in comparison
    log = (run / "reports/two/day1-log.md").read_text()
    assert "### Comparison of Targets" in log and "the Day-1 sections describe the baseline" in log
    assert (run / "reports/two/charts/comparison.svg").is_file()


def test_the_log_with_its_comparison_reads_as_its_lines_say(run):
    """The comparison's lists, tables and chart as GitHub's rules render them."""
    check_markdown((run / "reports/two/day1-log.md").read_text())


def test_a_second_run_reruns_nothing(run):
    result = snakemake(run, "-n", "--configfile", "two.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Nothing to be done" in result.stdout + result.stderr
