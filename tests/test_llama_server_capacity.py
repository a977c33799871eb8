"""The rate suite against llama-server (config/capacity-llama-server.yaml) through the
workflow, at small sizes, checked against the server's own clock: llama-server times
every request itself (``timings.prompt_ms`` + ``predicted_ms``), so two slots kept busy
serve at most 2 / that mean. The probe's saturated throughput must agree with it, the
capacity finding must be stated, and past capacity latency must grow as the queue does.

Constant arrivals here (the config draws Poisson ones): a queue fed at λ and drained at
μ then grows by exactly λ / μ − 1 seconds of wait per second, with no draw of the
schedule in the way of the check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import run_snakemake

from perflab.models.smollm2 import MODEL_PATH

pytestmark = pytest.mark.slow
RUN = "capacity-llama-server-check"
PARALLEL = 2
SMALL = {
    "run": RUN,
    "repeats": 1,
    "roofline": False,
    "sampler": {"interval_s": 0.5},
    "suites": {
        "rate": {
            "sweep_points": 3,  # 0.5, 1 and 1.5 x the saturated throughput
            "sweep_high": 1.5,
            "requests": 30,
            "arrival": "constant",
            "max_send_lag_s": 0.25,  # a busy test machine may be late
        }
    },
}


@pytest.fixture(scope="module")
def run(copy_workflow, smollm2_path, llama_tools) -> Path:
    workdir = copy_workflow(cached=(MODEL_PATH,))
    (workdir / "small.yaml").write_text(yaml.safe_dump(SMALL))
    configs = ("--configfile", "config/capacity-llama-server.yaml", "small.yaml")
    prebuilt = {"PERFLAB_LLAMA_SERVER_DIR": str(llama_tools)}
    result = run_snakemake(workdir, "--cores", "1", *configs, env=prebuilt, timeout=600)
    assert result.returncode == 0, result.stderr[-6000:]
    return workdir


def results(workdir: Path) -> Path:
    return workdir / "results" / RUN


def records_by_point(workdir: Path) -> dict[int, list[dict]]:
    """The measured ok records of each sweep point, by its number, first sent first."""
    points = {}
    for path in sorted((results(workdir) / "experiments").glob("*/records.jsonl")):
        meta = json.loads((path.parent / "metadata.json").read_text())["experiment"]
        records = [json.loads(line) for line in path.read_text().splitlines()]
        ok = [r for r in records if r["status"] == "ok" and not r["is_warmup"]]
        points[meta["sweep_point"]] = sorted(ok, key=lambda r: r["t_scheduled"])
    return points


def server_busy_s(records: list[dict]) -> float:
    """Mean prompt_ms + predicted_ms, llama-server's own time for each request."""
    busy = [r["server_raw"]["timings"] for r in records]
    return sum(t["prompt_ms"] + t["predicted_ms"] for t in busy) / len(busy) / 1000


def test_the_probe_saturates_both_slots_by_the_servers_own_clock(run):
    probe = json.loads((results(run) / "rate_probe.json").read_text())
    truth = PARALLEL / probe["saturated_server_s"]
    print(f"probe: {probe}; {PARALLEL} / server time = {truth:.2f} req/s")
    assert probe["n_errors"] == 0
    # below the truth by what the server does between requests (HTTP, tokenizing, handing
    # a slot over) and by the run's ramp and tail: 1.3 % on 2 cores at load 4-12, so 20 %
    # allows a busier machine; never above it, as two slots cannot serve more
    assert 0.80 * truth <= probe["saturated_rate"] <= 1.02 * truth
    # the same truth in the top sweep point's own window (past capacity, both slots busy):
    # a shared machine's load moves the server's time between the probe and the point
    # (1.16 s against 1.76 s seen), so each is judged by its own clock
    (finding,) = json.loads((results(run) / "findings.json").read_text())["capacity"]
    served = finding["points"][-1]["served_rate"]["mean"]
    assert 0.75 * PARALLEL / server_busy_s(records_by_point(run)[3]) <= served
    assert served <= 1.05 * PARALLEL / server_busy_s(records_by_point(run)[3])


def test_the_capacity_finding_is_stated(run):
    probe = json.loads((results(run) / "rate_probe.json").read_text())
    (finding,) = json.loads((results(run) / "findings.json").read_text())["capacity"]
    assert [p["offered_rate"] for p in finding["points"]] == probe["rates"]
    assert not finding["at_least"] and finding["limited_by"] is not None
    # judged by the server's clock in the window of the point that served the most, as
    # the load of a shared machine moves that clock between the probe and each point
    # (CI saw 1.34 req/s served against 2 / the probe's server time = 1.26)
    rates = [p["served_rate"]["mean"] for p in finding["points"]]
    best = max(range(len(rates)), key=rates.__getitem__)
    assert finding["max_served_rate"] == pytest.approx(rates[best])
    truth = PARALLEL / server_busy_s(records_by_point(run)[best + 1])
    assert 0.75 * truth <= finding["max_served_rate"] <= 1.05 * truth
    log = (run / "reports" / RUN / "day1-log.md").read_text()
    section = log[log.index("#### Capacity") : log.index("#### Resource Usage")]
    assert "Capacity under 95% of requests with TTFT ≤ 0.5 s and latency ≤ 1.5 s" in section
    assert f"The most it served at any rate: {finding['max_served_rate']:.2f} req/s" in section
    # beside it, the server's own capacity: its 2 slots over its own time per request
    server = finding["probe"]
    assert server["slots"] == PARALLEL
    assert server["server_rate"] == pytest.approx(PARALLEL / probe["saturated_server_s"])
    assert (
        f"so its 2 slots serve at most 2 / {probe['saturated_server_s']:.3g} s = "
        f"{server['server_rate']:.2f} req/s: the server's own capacity" in section
    )


def test_latency_above_capacity_grows_as_the_queue_does(run):
    """At λ past the served μ each request waits λ / μ − 1 s longer per second of the run;
    a closed loop would show every request at about the service time."""
    probe = json.loads((results(run) / "rate_probe.json").read_text())
    (finding,) = json.loads((results(run) / "findings.json").read_text())["capacity"]
    top = finding["points"][-1]
    rate, served = top["offered_rate"], top["served_rate"]["mean"]
    assert rate > 1.2 * served
    measured = records_by_point(run)[3]
    t = [r["t_scheduled"] - measured[0]["t_scheduled"] for r in measured]
    latency = [r["e2e_sched_s"] for r in measured]
    slope = least_squares_slope(t, latency)
    print(f"{rate} req/s offered, {served:.2f} served: latency slope {slope:.3f} s/s")
    assert slope == pytest.approx(rate / served - 1, abs=0.15)
    assert latency[-1] > 3 * probe["synchronous_p50_s"]


def least_squares_slope(x: list[float], y: list[float]) -> float:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / sum((a - mx) ** 2 for a in x)
