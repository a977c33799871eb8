"""The rate sweep through Snakemake: one probe job, one job per sweep point chained in
order, the Capacity section in the log, and nothing to do on an unchanged rerun."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from conftest import ROOT, run_snakemake

pytestmark = pytest.mark.slow

SMALL = """\
run: test-capacity
repeats: 1
suites:
  rate:
    sweep_points: 3
    requests: 30
    max_send_lag_s: 0.25  # a busy test machine may be late
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("capacity-workflow")
    for name in ("Snakefile", "workflow", "config", "profiles", "environment.yml"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, workdir / name)
    (workdir / "small.yaml").write_text(SMALL)
    return workdir


def test_the_default_run_has_no_probe(workdir):
    result = run_snakemake(workdir, "-n")
    assert result.returncode == 0, result.stderr
    assert "rate_probe" not in result.stdout


def test_a_sweep_runs_its_probe_then_each_point_and_writes_capacity(workdir):
    configs = ("--configfile", "config/capacity.yaml", "small.yaml")
    result = run_snakemake(workdir, "--cores", "1", *configs)
    assert result.returncode == 0, result.stderr[-5000:]
    started = re.findall(r"wildcards: experiment=(\S+)", result.stdout + result.stderr)
    assert started == [f"medium-t0.7-w64-n30-s{k}of3-poisson-r1" for k in (1, 2, 3)]
    results = workdir / "results" / "test-capacity"
    probe = json.loads((results / "rate_probe.json").read_text())
    assert probe["saturated_rate"] > 1.4 * probe["synchronous_rate"]  # two slots
    assert (results / "setup" / "rate_probe.tsv").exists()  # the sweep's planning cost
    findings = json.loads((results / "findings.json").read_text())
    (capacity,) = findings["capacity"]
    measured = [p["offered_rate"] for p in capacity["points"]]
    assert measured == probe["rates"][: len(measured)]
    assert sorted(measured + capacity["skipped_rates"]) == probe["rates"]
    log = (workdir / "reports" / "test-capacity" / "day1-log.md").read_text()
    section = log[log.index("#### Capacity") : log.index("#### Resource Usage")]
    assert f"**{probe['rates'][0]:.2f} req/s offered**" in section
    assert "Capacity under 95% of requests with TTFT ≤ 0.25 s and latency ≤ 0.5 s" in section
    # the server's own capacity from its timings: 2 slots / (0.02 s + 21 x 0.005 s) = 16
    server = capacity["probe"]
    assert server["slots"] == 2 and server["server_rate"] == pytest.approx(16, rel=0.05)
    assert f"= {server['server_rate']:.2f} req/s: the server's own capacity" in section
    again = run_snakemake(workdir, "-n", "--cores", "1", *configs)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
