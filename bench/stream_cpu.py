"""Client CPU per 1,000 streamed tokens: perflab's ollama engine vs a bare httpx loop.

Against the calibration server in its own process, at 1, 4, 16 and 64
concurrent streams, two clients take turns (``--rounds`` each, interleaved so
that drift on a shared machine hits both):

  perflab     the runner (``run_load``) driving the ``ollama`` engine: request
              built, sent, every line parsed, a Chunk per token, every token
              stamped, a record per request
  bare-httpx  one thread per stream, ``client.stream`` + ``iter_lines`` +
              ``json.loads``, a token count and nothing else: the floor

For each it prints the client process's CPU time (``time.process_time``, all
threads; the server's CPU is in the other process) per 1,000 tokens, the
sustained streamed tokens/s, and the mean TTFT error against the server's own
log. Target: perflab / bare ≤ 1.1 at every concurrency. Run by hand:

    python bench/stream_cpu.py [--streams 1,4,16,64] [--rounds 3] [--smoke]

Quote figures from one run; shared machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from dataclasses import dataclass

import httpx
from calibration_process import CalibrationProcess

from perflab.engines.base import GenerationOptions
from perflab.engines.ollama_engine import OllamaEngine
from perflab.runner import LoadPlan, run_load

MODEL = "llama3.1:8b"
PROMPT = "Why is the sky blue?"
TARGET_RATIO = 1.1
MS = 1e3


@dataclass(frozen=True)
class Pass:
    cpu_s: float
    wall_s: float
    tokens: int
    ttft_error_s: float  # mean client TTFT minus mean server truth

    @property
    def cpu_ms_per_1k(self) -> float:
        return self.cpu_s / self.tokens * 1e6

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s


def perflab_pass(
    engine: OllamaEngine, streams: int, per_stream: int, tokens: int
) -> tuple[list[float], int]:
    records = run_load(
        engine,
        PROMPT,
        GenerationOptions(max_tokens=tokens, timeout_s=60),
        LoadPlan(workers=streams, requests=streams * per_stream),
        experiment_id="bench",
    ).records
    failed = [r.error for r in records if r.status != "ok"]
    if failed:
        raise RuntimeError(f"{len(failed)} perflab requests failed, e.g. {failed[0]}")
    return [r.ttft_s for r in records], sum(r.output_tokens for r in records)


def bare_pass(
    client: httpx.Client, streams: int, per_stream: int, tokens: int
) -> tuple[list[float], int]:
    body = {"model": MODEL, "prompt": PROMPT, "options": {"num_predict": tokens}}
    ttfts: list[float] = []
    counts: list[int] = []

    def stream() -> None:
        for _ in range(per_stream):
            started = time.perf_counter()
            first = None
            n = 0
            with client.stream("POST", "/api/generate", json=body) as response:
                for line in response.iter_lines():
                    if json.loads(line).get("response"):
                        n += 1
                        if first is None:
                            first = time.perf_counter()
            ttfts.append(first - started)
            counts.append(n)

    threads = [threading.Thread(target=stream) for _ in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return ttfts, sum(counts)


PASSES = {"perflab": perflab_pass, "bare-httpx": bare_pass}


def clients(url: str) -> dict:
    """Made once, outside the timed passes: both keep one pooled connection per stream."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    return {
        "perflab": OllamaEngine(MODEL, host=url, timeout_s=60),
        "bare-httpx": httpx.Client(base_url=url, timeout=60, limits=limits),
    }


def measure(server: CalibrationProcess, client, name: str, streams: int, per_stream: int, tokens):
    seen = len(server.entries())
    cpu, wall = time.process_time(), time.perf_counter()
    ttfts, n_tokens = PASSES[name](client, streams, per_stream, tokens)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    entries = server.wait_for(seen + len(ttfts))[seen:]
    truth = statistics.fmean(e["token_times"][0] for e in entries)
    return Pass(cpu, wall, n_tokens, statistics.fmean(ttfts) - truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="1,4,16,64", help="concurrency levels")
    parser.add_argument("--rounds", type=int, default=3, help="passes per client and level")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per response")
    parser.add_argument("--min-requests", type=int, default=32, help="requests per pass, at least")
    parser.add_argument("--itl", type=float, default=0.001, help="server's gap between tokens, s")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    args = parser.parse_args()
    levels = [int(n) for n in args.streams.split(",")]
    if args.smoke:
        levels, args.rounds, args.tokens, args.min_requests = [1, 4], 1, 50, 4
    timing = {
        "models": [MODEL],
        "load_time_s": 0.0,
        "ttft_fixed_s": 0.005,
        "ttft_per_token_s": 0.0,
        "itl_s": args.itl,
        "output_tokens": args.tokens,
        "num_parallel": max(levels),
        "max_queue": 4 * max(levels),
    }
    print(
        f"calibration server in its own process: {args.tokens} tokens per response, "
        f"{args.itl * MS:g} ms scripted gap, {args.rounds} interleaved rounds per client"
    )
    header = (
        f"{'streams':>7} {'client':>10} {'CPU ms/1k tok':>14} {'tok/s':>8} "
        f"{'TTFT err ms':>11} {'n tok':>7}"
    )
    print(header)
    ratios = {}
    with CalibrationProcess(timing) as server:
        made = clients(server.url)
        for name, client in made.items():  # warm-up: code paths, first connections
            measure(server, client, name, max(levels), 1, args.tokens)
        for streams in levels:
            per_stream = max(1, -(-args.min_requests // streams))
            passes = {name: [] for name in PASSES}
            for _ in range(args.rounds):
                for name, client in made.items():
                    passes[name].append(
                        measure(server, client, name, streams, per_stream, args.tokens)
                    )
            medians = {}
            for client, runs in passes.items():
                medians[client] = statistics.median(p.cpu_ms_per_1k for p in runs)
                tps = statistics.median(p.tokens_per_s for p in runs)
                error = statistics.median(p.ttft_error_s for p in runs) * MS
                print(
                    f"{streams:>7} {client:>10} {medians[client]:>14.1f} {tps:>8.0f} "
                    f"{error:>+11.2f} {runs[0].tokens:>7}"
                )
            ratios[streams] = medians["perflab"] / medians["bare-httpx"]
        for client in made.values():
            client.close()
    print("ratio perflab / bare-httpx CPU per token (median of rounds):")
    for streams, ratio in ratios.items():
        verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
        print(f"  {streams:>3} streams: {ratio:.3f}  (target ≤ {TARGET_RATIO}: {verdict})")


if __name__ == "__main__":
    main()
