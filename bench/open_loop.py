"""What does the open-loop client cost, and how fast a schedule can it keep?

Against a calibration server in its own process (so the client's CPU is its own),
with a short service time and many slots so the server is never the limit:

- cost: the client's CPU seconds per request of ``run_open_loop`` (one thread per
  request) at N and 4 N requests, against the floor of the closed-loop runner
  (``run_load``, pooled worker threads) sending the same requests; the growth
  exponent of CPU time with N (1 is linear: no per-request cost grows with the run);
- ceiling: send lag p50 / p99 and achieved / scheduled rate at rising offered rates,
  and the highest rate whose run is valid (p99 lag within ``max_send_lag_s``, rate
  within 95 %): above it the client, not the server, sets the limit.

Run by hand:

    python bench/open_loop.py [--requests 200] [--rate 50] [--ceiling 50 100 200 400]

Quote ratios from one run; these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import math
import time

from calibration_process import CalibrationProcess

from perflab.engines.base import GenerationOptions
from perflab.engines.ollama_engine import OllamaEngine
from perflab.measure.arrivals import ArrivalPlan
from perflab.measure.open_loop import OpenLoopPlan, run_open_loop
from perflab.measure.runner import LoadPlan, run_load

TIMING = {
    "load_time_s": 0.0,
    "ttft_fixed_s": 0.01,
    "ttft_per_token_s": 0.0,
    "itl_s": 0.002,
    "output_tokens": 8,
    "num_parallel": 64,
}
OPTIONS = GenerationOptions(timeout_s=30)


def open_loop(url: str, rate: float, requests: int):
    engine = OllamaEngine("llama3.1:8b", host=url, timeout_s=30)
    plan = OpenLoopPlan(ArrivalPlan(rate=rate, requests=requests, arrival="constant"))
    cpu = time.process_time()
    try:
        result, check = run_open_loop(engine, "hello world", OPTIONS, plan, experiment_id="b")
    finally:
        engine.close()
    return time.process_time() - cpu, result, check


def closed_loop(url: str, workers: int, requests: int) -> float:
    engine = OllamaEngine("llama3.1:8b", host=url, timeout_s=30)
    cpu = time.process_time()
    try:
        run_load(engine, "hello world", OPTIONS, LoadPlan(workers, requests), experiment_id="f")
    finally:
        engine.close()
    return time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--ceiling", type=float, nargs="+", default=[50, 100, 200, 400])
    args = parser.parse_args()
    sizes = (args.requests, 4 * args.requests)
    with CalibrationProcess(TIMING) as server:
        open_loop(server.url, args.rate, 10)  # connections and imports warm
        print(f"cost at {args.rate:g} req/s (CPU ms per request):")
        costs = []
        for n in sizes:
            cpu, _, check = open_loop(server.url, args.rate, n)
            floor = closed_loop(server.url, 4, n)
            costs.append(cpu)
            print(
                f"  n={n}: open loop {1000 * cpu / n:.2f}, closed loop (floor) "
                f"{1000 * floor / n:.2f}, ratio {cpu / floor:.2f}; send lag p99 "
                f"{1000 * check.send_lag_p99_s:.1f} ms, valid {check.valid}"
            )
        exponent = math.log(costs[1] / costs[0]) / math.log(sizes[1] / sizes[0])
        print(f"  CPU growth exponent with requests: {exponent:.2f} (1 = linear)")
        print(f"ceiling at n={args.requests}:")
        kept = None
        for rate in args.ceiling:
            _, _, check = open_loop(server.url, rate, args.requests)
            print(
                f"  {rate:g} req/s: send lag p50 {1000 * check.send_lag_p50_s:.1f} ms, p99 "
                f"{1000 * check.send_lag_p99_s:.1f} ms, achieved/scheduled "
                f"{check.achieved_rate / check.schedule_rate:.3f}, valid {check.valid}"
            )
            if check.valid:
                kept = rate
        print(f"  highest rate kept: {kept if kept is not None else 'none'} req/s")


if __name__ == "__main__":
    main()
