"""The verdict rule against real calibration servers over HTTP.

A scripted speed effect (25 % more time per output token: sure to be found
at this spread, so the test does not flake) with noise (seeded normal gaps)
must read ``changed``; two identical servers must never read
``changed``; a 2-slot server's concurrency sweep must read ``saturates`` at 2
workers, with 2 trials and with 3. Trials alternate the conditions ABBA, as
the workflow does, and each trial is a block.
"""

from __future__ import annotations

import polars as pl
import pytest

from perflab.analyse import verdict
from perflab.analyse.findings import concurrency, frame
from perflab.analyse.findings.concurrency import ConcurrencyVerdict
from perflab.analyse.verdict import Outcome
from perflab.engines import capabilities_for
from perflab.engines.base import GenerationOptions
from perflab.engines.ollama_engine import OllamaEngine
from perflab.measure.runner import LoadPlan, RunResult, run_load

MODEL = "llama3.1:8b"
NOISY = {"itl_s": 0.02, "itl_sd_s": 0.004, "output_tokens": 12, "ttft_fixed_s": 0.01}


def measure(server, requests: int, workers: int = 1, trial: int = 1) -> RunResult:
    engine = OllamaEngine(MODEL, host=server.url, timeout_s=30)
    plan = LoadPlan(workers=workers, requests=requests, warmup_requests=1)
    return run_load(
        engine, "Say something.", GenerationOptions(max_tokens=64), plan,
        experiment_id=f"w{workers}-r{trial}",
    )  # fmt: skip


def mean_tps(result: RunResult) -> float:
    values = [r.tps for r in result.records if not r.is_warmup and r.tps]
    return sum(values) / len(values)


def paired_tps(a_server, b_server, trials: int = 4, requests: int = 5) -> verdict.Verdict:
    pairs = []
    for trial in range(trials):
        order = (a_server, b_server) if trial % 2 == 0 else (b_server, a_server)
        tps = {id(s): mean_tps(measure(s, requests, trial=trial + 1)) for s in order}
        pairs.append((tps[id(a_server)], tps[id(b_server)]))
    return verdict.paired(pairs)


def test_a_scripted_slowdown_with_noise_reads_changed(make_calibration_server):
    a = make_calibration_server(NOISY, seed=1)
    b = make_calibration_server(NOISY, seed=2, itl_s=0.025)
    found = paired_tps(a, b)
    assert found.outcome is Outcome.CHANGED, found
    assert found.estimate == pytest.approx(0.8, abs=0.05)


def test_identical_servers_never_read_changed(make_calibration_server):
    for seed in (3,):
        a = make_calibration_server(NOISY, seed=seed)
        b = make_calibration_server(NOISY, seed=seed + 1)
        found = paired_tps(a, b)
        assert found.outcome is not Outcome.CHANGED, found
        assert abs(found.estimate - 1) < 0.05


def _sweep_rows(server, trials: int) -> pl.DataFrame:
    rows = []
    for trial in range(1, trials + 1):
        for workers in (1, 2, 4) if trial % 2 else (4, 2, 1):
            result = measure(server, 8, workers, trial)
            ok = [r for r in result.records if not r.is_warmup and r.status == "ok"]
            rows.append(
                {
                    "experiment_id": f"w{workers}-r{trial}",
                    "condition_id": f"w{workers}",
                    "trial": trial,
                    "suites": "concurrency",
                    "workers": workers,
                    "n_requests": 8,
                    "n_ok": len(ok),
                    "n_errors": 8 - len(ok),
                    "req_per_s": len(ok) / result.measured_wall_s,
                    "e2e_mean_s": sum(r.e2e_s for r in ok) / len(ok),
                }
            )
    return frame.with_defaults(pl.DataFrame(rows))


@pytest.mark.parametrize("trials", [2, 3])
def test_a_two_slot_server_saturates_at_two_workers(make_calibration_server, trials):
    server = make_calibration_server(
        {"itl_s": 0.02, "output_tokens": 10, "ttft_fixed_s": 0.01}, num_parallel=2
    )
    result = concurrency.summary(_sweep_rows(server, trials), capabilities_for("calibration"))
    assert result.verdict is ConcurrencyVerdict.SATURATES, result.test
    assert result.knee_workers == 2 and result.parallel_requests == 2
    assert result.test.estimate == pytest.approx(2.0, rel=0.2)
