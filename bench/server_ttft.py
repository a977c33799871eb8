"""perflab's TTFT against llama-server, beside a bare ``http.client`` streaming loop.

Starts llama-server as ``engine.launch`` does (the binary from
``$PERFLAB_LLAMA_SERVER_DIR`` or ``--server``, SmolLM2 or ``--model``, one
thread, one slot) and sends the same chat request, alternating in this one
run, from

- perflab: the ``openai`` engine through the runner's ``measure_request``, as an
  experiment times it (from when httpx hands the request to the socket to the
  first streamed token's bytes);
- bare loop: ``http.client`` writing the same JSON and reading lines until the
  first ``data:`` line with content, timed from the request's write.

Each request gets its own prefix (as ``prompt_cache: bust`` does), so both pay
the same prefill. For each it takes TTFT minus the server's own ``prompt_ms``
(the time the server spent before the first token is ready is not the
client's), and prints the medians, perflab's excess over the bare loop with a
bootstrap 95 % CI, and that excess against the floor (``--floor-ms``, 1 ms):
``ratio`` = excess / floor, ≤ 1 meets it. Run by hand:

    python bench/server_ttft.py [--requests 40] [--model PATH.gguf] [--server PATH]

Quote figures from one run; these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from perflab.config.load import load_config_file
from perflab.engines import GenerationOptions, make_engine
from perflab.measure.runner import Clock, PromptNonce, measure_request

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT = "Explain the concept of machine learning in one paragraph."
MAX_TOKENS = 8


def default_server() -> str:
    prebuilt = os.environ.get("PERFLAB_LLAMA_SERVER_DIR")
    if prebuilt:
        return str(Path(prebuilt) / "llama-server")
    found = sorted((ROOT / "cache" / "llama.cpp").glob("*/llama-server"))
    return str(found[-1]) if found else "llama-server"


def bare_request(url: str, body: dict) -> tuple[float, float]:
    """TTFT (s) of one streamed request over http.client, and the server's prompt_ms."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    payload = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    connection.connect()
    started = time.perf_counter()
    connection.request("POST", "/v1/chat/completions", payload, headers)
    response = connection.getresponse()
    first = None
    prompt_ms = None
    for raw in response:
        line = raw.decode().strip()
        if not line.startswith("data:") or line == "data: [DONE]":
            continue
        event = json.loads(line[5:])
        choices = event.get("choices") or []
        if first is None and choices and (choices[0].get("delta") or {}).get("content"):
            first = time.perf_counter()
        if "timings" in event:
            prompt_ms = event["timings"]["prompt_ms"]
    connection.close()
    return first - started, prompt_ms


def bootstrap_ci(a: list[float], b: list[float], runs: int = 2000) -> tuple[float, float]:
    """95 % CI of median(a) − median(b), resampling each side."""
    rng = random.Random(0)
    diffs = sorted(
        statistics.median(rng.choices(a, k=len(a))) - statistics.median(rng.choices(b, k=len(b)))
        for _ in range(runs)
    )
    return diffs[int(0.025 * runs)], diffs[int(0.975 * runs) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40, help="per client")
    parser.add_argument("--model", default=str(MODEL))
    parser.add_argument("--server", default=default_server())
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--floor-ms", type=float, default=1.0)
    args = parser.parse_args()
    engine_config = {
        "name": "openai",
        "model": "bench",
        "model_path": args.model,
        "launch": {"server": "llama-server", "binary": args.server, "threads": args.threads},
    }
    config = load_config_file(
        ROOT / "config" / "config.yaml",
        overrides={"engine": engine_config, "generation": {"max_tokens": MAX_TOKENS}},
    )
    log = Path(tempfile.mkdtemp()) / "server.log"
    engine = make_engine(config, server_log=log)
    url = engine.server.url
    options = GenerationOptions(temperature=0.7, max_tokens=MAX_TOKENS, seed=42)
    nonce, clock = PromptNonce(), Clock()
    ours, bare = [], []
    try:
        for index in range(2 * args.requests + 2):
            prompt = nonce.apply(PROMPT, index)
            if index % 2 == 0:
                record = measure_request(
                    engine,
                    prompt,
                    options,
                    experiment_id="bench",
                    request_index=index,
                    worker=0,
                    is_warmup=False,
                    clock=clock,
                )
                excess = record.ttft_s - record.prefill_s
                if index >= 2:  # the first of each is a warm-up
                    ours.append(excess)
            else:
                body = engine.client._body(prompt, options)
                ttft, prompt_ms = bare_request(url, body)
                if index >= 2:
                    bare.append(ttft - prompt_ms / 1000)
    finally:
        engine.close()
    ours_ms = [x * 1000 for x in ours]
    bare_ms = [x * 1000 for x in bare]
    diff = statistics.median(ours_ms) - statistics.median(bare_ms)
    low, high = bootstrap_ci(ours_ms, bare_ms)
    print(f"llama-server {args.server}, model {Path(args.model).name}, {args.threads} thread(s)")
    print(f"TTFT − server prompt_ms, median over {len(ours_ms)} requests each:")
    print(f"  perflab (openai engine): {statistics.median(ours_ms):.2f} ms")
    print(f"  bare http.client loop:   {statistics.median(bare_ms):.2f} ms")
    print(f"  perflab's excess: {diff:+.2f} ms (95 % CI {low:+.2f} to {high:+.2f})")
    print(f"  ratio to the {args.floor_ms:g} ms floor: {diff / args.floor_ms:.2f} (≤ 1 meets it)")


if __name__ == "__main__":
    main()
