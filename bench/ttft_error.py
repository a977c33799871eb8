"""TTFT error at 1 worker: what a client measures minus what the server did.

The calibration server, in its own process, stamps each request's arrival
(when its body has been read) and the moment each token's line is written;
its truth for TTFT is arrival → first token written. Three clients take turns
on the same server, one request at a time:

  perflab       the ``ollama`` engine through the runner: the clock starts when
                httpx's transport takes the request (``prep_s`` before it)
  ollama-client the official client, the clock started before the call
  bare-httpx    a bare httpx streaming loop, the clock started before the call

For perflab the error is split into request send (transport took it → server
arrival) and delivery (first token written → its bytes received). Target:
perflab's median error within 1 ms, called met or not only when the median's
95 % interval is on one side of it. Run by hand:

    python bench/ttft_error.py [--requests 100]

Quote figures from one run; shared machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import httpx
import ollama
from calibration_process import CalibrationProcess

from perflab.engines.base import GenerationOptions
from perflab.engines.ollama_engine import OllamaEngine
from perflab.measure.runner import Clock, measure_request

MODEL = "llama3.1:8b"
PROMPT = "Why is the sky blue?"
MAX_TOKENS = 8
TARGET_MS = 1.0
TIMING = {
    "models": [MODEL],
    "load_time_s": 0.0,
    "ttft_fixed_s": 0.02,
    "ttft_per_token_s": 0.0,
    "itl_s": 0.002,
    "output_tokens": MAX_TOKENS,
    "num_parallel": 1,
}
MS = 1e3


def perflab_ttft(engine: OllamaEngine, clock: Clock) -> tuple[float, float, float]:
    """(TTFT, when the request left, when the first token was stamped), perf_counter seconds."""
    record = measure_request(
        engine,
        PROMPT,
        GenerationOptions(max_tokens=MAX_TOKENS, timeout_s=30),
        experiment_id="bench",
        request_index=0,
        worker=0,
        is_warmup=False,
        clock=clock,
    )
    if record.status != "ok":
        raise RuntimeError(f"perflab request failed: {record.error}")
    sent = record.t_submit - clock.epoch(0.0)  # the epoch stamp back on the perf_counter clock
    return record.ttft_s, sent, sent + record.ttft_s


def ollama_client_ttft(client: ollama.Client) -> float:
    started = time.perf_counter()
    first = None
    for part in client.generate(
        model=MODEL, prompt=PROMPT, stream=True, options={"num_predict": MAX_TOKENS}
    ):
        if first is None and part.response:
            first = time.perf_counter()
    return first - started


def bare_httpx_ttft(client: httpx.Client) -> float:
    body = {"model": MODEL, "prompt": PROMPT, "options": {"num_predict": MAX_TOKENS}}
    started = time.perf_counter()
    first = None
    with client.stream("POST", "/api/generate", json=body) as response:
        for line in response.iter_lines():
            if first is None and json.loads(line).get("response"):
                first = time.perf_counter()
    return first - started


def describe(name: str, errors_s: list[float]) -> str:
    errors = [e * MS for e in errors_s]
    mean = statistics.fmean(errors)
    ci = 1.96 * statistics.stdev(errors) / math.sqrt(len(errors))
    ordered = sorted(errors)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    return (
        f"{name:14s} median {statistics.median(errors):+6.2f} ms   mean {mean:+6.2f} ± {ci:.2f} ms"
        f"   p90 {p90:+6.2f} ms   n={len(errors)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100, help="per client (default 100)")
    args = parser.parse_args()
    with CalibrationProcess(TIMING) as server:
        engine = OllamaEngine(MODEL, host=server.url, timeout_s=30)
        official = ollama.Client(host=server.url, timeout=30)
        bare = httpx.Client(base_url=server.url, timeout=30)
        clock = Clock()
        runs = {"perflab": [], "ollama-client": [], "bare-httpx": []}
        stamps = []
        warmup = 2  # rounds: connections opened, code paths loaded
        try:
            for _ in range(warmup):
                perflab_ttft(engine, clock), ollama_client_ttft(official), bare_httpx_ttft(bare)
            for _ in range(args.requests):
                ttft, sent, first = perflab_ttft(engine, clock)
                runs["perflab"].append(ttft)
                stamps.append((sent, first))
                runs["ollama-client"].append(ollama_client_ttft(official))
                runs["bare-httpx"].append(bare_httpx_ttft(bare))
        finally:
            engine.close()
            official.close()
            bare.close()
        entries = server.wait_for(3 * (warmup + args.requests))[3 * warmup :]
    truth = {name: [e["token_times"][0] for e in entries[i::3]] for i, name in enumerate(runs)}
    print("TTFT error = client TTFT − server truth (arrival → first token written), 1 worker")
    print(f"server: calibration, own process, ttft {TIMING['ttft_fixed_s'] * MS:.0f} ms scripted")
    for name, measured in runs.items():
        print(describe(name, [m - t for m, t in zip(measured, truth[name], strict=True)]))
    perflab_entries = entries[0::3]
    send = [e["t_arrival"] - sent for e, (sent, _) in zip(perflab_entries, stamps, strict=True)]
    delivery = [
        first - (e["t_arrival"] + e["token_times"][0])
        for e, (_, first) in zip(perflab_entries, stamps, strict=True)
    ]
    print(describe("  send", send))
    print(describe("  delivery", delivery))
    errors = [(m - t) * MS for m, t in zip(runs["perflab"], truth["perflab"], strict=True)]
    low, high = median_ci(errors)
    if max(abs(low), abs(high)) <= TARGET_MS:
        verdict = "met"
    elif min(abs(low), abs(high)) > TARGET_MS and low * high > 0:
        verdict = "NOT met"
    else:
        verdict = "inconclusive: the interval spans the target"
    print(
        f"target: perflab median within {TARGET_MS:g} ms of the truth; its 95 % CI "
        f"{low:+.2f} … {high:+.2f} ms: {verdict}"
    )


def median_ci(values: list[float]) -> tuple[float, float]:
    """Distribution-free 95 % interval of the median: order statistics n/2 ± 1.96·√n/2."""
    ordered = sorted(values)
    n = len(ordered)
    half = 1.96 * math.sqrt(n) / 2
    low = max(0, math.floor(n / 2 - half))
    high = min(n - 1, math.ceil(n / 2 + half) - 1)
    return ordered[low], ordered[high]


if __name__ == "__main__":
    main()
