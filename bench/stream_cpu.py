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
log. Rounds alternate which client goes first; each round's two passes give
one ratio, and the target (perflab / bare ≤ 1.1 at every concurrency) is called
met or not only when the 95 % CI of the mean ratio is on one side of it.
With ``--replay`` it then measures both clients against one recorded response
served whole (``replay_server.py``): the per-token code path alone, with the
server's pacing and the machine's scheduling taken out. Run by hand:

    python bench/stream_cpu.py [--streams 1,4,16,64] [--rounds 8] [--replay] [--smoke]

Quote figures from one run; shared machines are noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import httpx
from calibration_process import CalibrationProcess, unused_port

from perflab.engines.base import GenerationOptions
from perflab.engines.ollama_engine import OllamaEngine
from perflab.measure.runner import LoadPlan, run_load

MODEL = "llama3.1:8b"
PROMPT = "Why is the sky blue?"
TARGET_RATIO = 1.1
# Student's t, 97.5 % quantile by degrees of freedom: a 95 % CI from a few rounds
T_975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}
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


def measure(server, client, name: str, streams: int, per_stream: int, tokens: int) -> Pass:
    """One timed pass; against a replay (``server`` None) there is no truth for TTFT."""
    seen = len(server.entries()) if server else 0
    cpu, wall = time.process_time(), time.perf_counter()
    ttfts, n_tokens = PASSES[name](client, streams, per_stream, tokens)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    error = math.nan
    if server:
        entries = server.wait_for(seen + len(ttfts))[seen:]
        error = statistics.fmean(ttfts) - statistics.fmean(e["token_times"][0] for e in entries)
    return Pass(cpu, wall, n_tokens, error)


def compare(url: str, server, levels: list[int], args) -> None:
    """Interleaved passes of both clients per level: a row per client and level, then ratios."""
    print(
        f"{'streams':>7} {'client':>10} {'CPU ms/1k tok':>14} {'tok/s':>8} "
        f"{'TTFT err ms':>11} {'n tok':>7}"
    )
    made = clients(url)
    ratios = {}
    try:
        for name, client in made.items():  # warm-up: code paths, first connections
            measure(server, client, name, max(levels), 1, args.tokens)
        for streams in levels:
            per_stream = max(1, -(-args.min_requests // streams))
            passes = {name: [] for name in PASSES}
            for round_index in range(args.rounds):
                order = list(made.items())
                if round_index % 2:  # ABBA: neither client always goes first
                    order.reverse()
                for name, client in order:
                    passes[name].append(
                        measure(server, client, name, streams, per_stream, args.tokens)
                    )
            for name, runs in passes.items():
                cpu = statistics.median(p.cpu_ms_per_1k for p in runs)
                tps = statistics.median(p.tokens_per_s for p in runs)
                error = statistics.median(p.ttft_error_s for p in runs) * MS
                print(
                    f"{streams:>7} {name:>10} {cpu:>14.1f} {tps:>8.0f} "
                    f"{error:>+11.2f} {runs[0].tokens:>7}"
                )
            ratios[streams] = [
                mine.cpu_ms_per_1k / floor.cpu_ms_per_1k
                for mine, floor in zip(passes["perflab"], passes["bare-httpx"], strict=True)
            ]
    finally:
        for client in made.values():
            client.close()
    print("CPU per token, perflab / bare-httpx, each round's passes paired:")
    for streams, paired in ratios.items():
        print(f"  {streams:>3} streams: {ratio_verdict(paired)}")


def ratio_verdict(paired: list[float]) -> str:
    """Mean ± 95 % CI (Student's t) of the paired ratios, and whether it settles the target."""
    mean = statistics.fmean(paired)
    n = len(paired)
    ci = T_975.get(n - 1, 2.0) * statistics.stdev(paired) / n**0.5 if n > 1 else math.inf
    if mean + ci <= TARGET_RATIO:
        verdict = "met"
    elif mean - ci > TARGET_RATIO:
        verdict = "NOT met"
    else:
        verdict = "inconclusive: the noise spans the target"
    return (
        f"{mean:.3f} ± {ci:.3f} (min {min(paired):.3f}, max {max(paired):.3f}, "
        f"n={n})  target ≤ {TARGET_RATIO}: {verdict}"
    )


def record_response(url: str, tokens: int) -> bytes:
    """The calibration server's whole answer to one streamed request, as bytes on the wire."""
    body = json.dumps({"model": MODEL, "prompt": PROMPT, "options": {"num_predict": tokens}})
    request = (
        "POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()
    split = urllib.parse.urlsplit(url)
    with socket.create_connection((split.hostname, split.port), timeout=30) as conn:
        conn.sendall(request)
        response = b""
        while not response.endswith(b"\r\n0\r\n\r\n"):
            data = conn.recv(65536)
            if not data:
                raise RuntimeError("the calibration server closed the connection early")
            response += data
    return response


@contextlib.contextmanager
def replay_server(response: bytes):
    """``replay_server.py`` in its own process, serving ``response``; yields its URL."""
    with tempfile.TemporaryDirectory(prefix="perflab-replay-") as folder:
        path = Path(folder) / "response.bin"
        path.write_bytes(response)
        port = unused_port()
        script = Path(__file__).with_name("replay_server.py")
        process = subprocess.Popen([sys.executable, str(script), str(port), str(path)])
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="1,4,16,64", help="concurrency levels")
    parser.add_argument("--rounds", type=int, default=8, help="passes per client and level")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per response")
    parser.add_argument("--min-requests", type=int, default=32, help="requests per pass, at least")
    parser.add_argument("--itl", type=float, default=0.001, help="server's gap between tokens, s")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument(
        "--replay", action="store_true", help="then replay one recorded response, 1 stream"
    )
    args = parser.parse_args()
    levels = [int(n) for n in args.streams.split(",")]
    if args.smoke:
        levels, args.rounds, args.tokens, args.min_requests = [1, 4], 2, 50, 4
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
    with CalibrationProcess(timing) as server:
        compare(server.url, server, levels, args)
        recorded = record_response(server.url, args.tokens)
    if args.replay:
        print(
            "\nreplay: one recorded response, whole, to every request, one stream: "
            "the per-token code path with the server's pacing and the scheduling taken out"
        )
        args.min_requests *= 4
        with replay_server(recorded) as url:
            compare(url, None, [1], args)


if __name__ == "__main__":
    main()
