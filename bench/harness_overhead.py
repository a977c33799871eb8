"""How much does perflab add to what it measures?

Runs the runner with the ollama engine against the calibration server, whose
timings are known, and prints measured minus scripted TTFT, inter-token gap
and end-to-end latency, plus the client's CPU per request. Run by hand:

    python bench/harness_overhead.py [--requests 50] [--workers 1]

Quote ratios from one run; these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import statistics
import time

from perflab.calibration import CalibrationServer, TimingModel
from perflab.engines.base import GenerationOptions
from perflab.engines.ollama_engine import OllamaEngine
from perflab.measure.runner import LoadPlan, run_load

TIMING = {
    "load_time_s": 0.0,
    "ttft_fixed_s": 0.02,
    "ttft_per_token_s": 0.0,
    "itl_s": 0.005,
    "output_tokens": 32,
    "num_parallel": 4,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    with CalibrationServer(TimingModel.from_dict(TIMING)) as server:
        engine = OllamaEngine("llama3.1:8b", host=server.url)
        cpu_before = time.process_time()
        result = run_load(
            engine,
            "hello world",
            GenerationOptions(timeout_s=30),
            LoadPlan(workers=args.workers, requests=args.requests, warmup_requests=2),
            experiment_id="bench",
        )
        cpu_s = time.process_time() - cpu_before
        engine.close()
    measured = [r for r in result.records if not r.is_warmup and r.status == "ok"]
    scripted_e2e = TIMING["ttft_fixed_s"] + (TIMING["output_tokens"] - 1) * TIMING["itl_s"]
    ttft = statistics.mean(r.ttft_s for r in measured) - TIMING["ttft_fixed_s"]
    gaps = [g for r in measured for g in r.itl_s]
    itl = statistics.mean(gaps) - TIMING["itl_s"]
    e2e = statistics.mean(r.e2e_s for r in measured) - scripted_e2e
    print(f"requests: {len(measured)} ok of {args.requests}, workers: {args.workers}")
    print(
        f"TTFT overhead:    {ttft * 1e3:+.2f} ms (scripted {TIMING['ttft_fixed_s'] * 1e3:.0f} ms)"
    )
    print(
        f"ITL overhead:     {itl * 1e3:+.3f} ms (scripted {TIMING['itl_s'] * 1e3:.0f} ms, n={len(gaps)})"
    )
    print(
        f"E2E overhead:     {e2e * 1e3:+.2f} ms (scripted {scripted_e2e * 1e3:.0f} ms, {e2e / scripted_e2e:+.1%})"
    )
    print(
        f"client CPU:       {cpu_s / (len(result.records)) * 1e3:.2f} ms per request (client and server share this process)"
    )


if __name__ == "__main__":
    main()
