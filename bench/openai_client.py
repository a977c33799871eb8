"""Which client for the ``openai`` engine? Import cost and CPU per streamed token.

Compares perflab's ``openai`` engine (httpx with a small server-sent-events
reader) with the official ``openai`` package (only when it is installed; it is
not a perflab dependency) streaming ``/v1/chat/completions`` from a
calibration server in another process, so this process's CPU time is the
client's alone. Run by hand:

    python bench/openai_client.py [--requests 20] [--tokens 500]

Prints ratios measured in one run; these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from perflab.engines.base import GenerationOptions
from perflab.engines.openai_engine import OpenAIEngine

MODEL = "llama3.1:8b"


def import_s(module: str, runs: int = 5) -> float:
    """Median wall time of ``import module`` in a fresh interpreter, minus a bare start."""

    def best(code: str) -> float:
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            times.append(time.perf_counter() - t0)
        return sorted(times)[len(times) // 2]

    return best(f"import {module}") - best("pass")


def start_server(tokens: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "perflab.calibration",
            "--port",
            "0",
            "--quiet",
            "--load-time",
            "0",
            "--ttft-fixed",
            "0",
            "--ttft-per-token",
            "0",
            "--itl",
            "0",
            "--output-tokens",
            str(tokens),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    return proc, line.rsplit(" ", 1)[-1].strip() + "/v1"


def cpu_per_1000_tokens(stream_once, requests: int, tokens: int) -> float:
    stream_once()  # connection and first-use costs out of the way
    cpu0 = time.process_time()
    for _ in range(requests):
        stream_once()
    return (time.process_time() - cpu0) / (requests * tokens) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=500)
    args = parser.parse_args()
    proc, url = start_server(args.tokens)
    try:
        engine = OpenAIEngine(MODEL, host=url)
        options = GenerationOptions(max_tokens=args.tokens)
        ours = cpu_per_1000_tokens(
            lambda: list(engine.stream("hello", options)), args.requests, args.tokens
        )
        engine.close()
        print(f"import httpx:           {import_s('httpx') * 1e3:7.1f} ms")
        print(f"perflab openai engine:  {ours * 1e3:7.2f} ms CPU per 1,000 streamed tokens")
        try:
            import openai
        except ImportError:
            print("the openai package is not installed: nothing to compare with")
            return
        client = openai.OpenAI(base_url=url, api_key="none")

        def official() -> None:
            stream = client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "hello"}],
                max_tokens=args.tokens,
                stream=True,
                stream_options={"include_usage": True},
            )
            for _ in stream:
                pass

        theirs = cpu_per_1000_tokens(official, args.requests, args.tokens)
        print(f"import openai:          {import_s('openai') * 1e3:7.1f} ms")
        print(f"official openai client: {theirs * 1e3:7.2f} ms CPU per 1,000 streamed tokens")
        print(f"ratio official / perflab: {theirs / ours:.2f}x CPU per token")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
