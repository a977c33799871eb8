"""Instructions per streamed token: perflab's ollama engine vs a bare httpx loop,
counted by valgrind, so that a shared machine's noise cannot move the figure.

Both clients of ``stream_cpu.py`` stream one recorded calibration-server
response, replayed whole (``replay_server.py``), one request at a time, inside
``valgrind --tool=callgrind``. Each runs twice, with ``--warm`` requests and
with ``--warm`` + ``--requests``; the difference over the extra tokens is the
steady cost per token with start-up, imports and first-request work taken
out. Needs valgrind; takes a few minutes. Run by hand:

    python bench/stream_instructions.py [--requests 10] [--tokens 200]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from calibration_process import CalibrationProcess
from stream_cpu import MODEL, PASSES, TARGET_RATIO, clients, record_response, replay_server

COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def count_instructions(url: str, client: str, requests: int, tokens: int) -> int:
    """Instructions the client process executes for ``requests`` requests, start-up included."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        str(Path(__file__)),
        "--client",
        client,
        "--url",
        url,
        "--requests",
        str(requests),
        "--tokens",
        str(tokens),
    ]
    env = os.environ | {"PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return int(COLLECTED.search(done.stderr).group(1))


def child(args: argparse.Namespace) -> None:
    client = clients(args.url)[args.client]
    try:
        PASSES[args.client](client, 1, args.requests, args.tokens)
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10, help="measured requests per client")
    parser.add_argument("--warm", type=int, default=2, help="requests in the baseline run")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per response")
    parser.add_argument("--client", choices=sorted(PASSES), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        child(args)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed: apt-get install valgrind")
    timing = {"models": [MODEL], "ttft_fixed_s": 0.0, "itl_s": 0.0, "output_tokens": args.tokens}
    with CalibrationProcess(timing) as server:
        recorded = record_response(server.url, args.tokens)
    tokens = args.requests * args.tokens
    per_token = {}
    with replay_server(recorded) as url:
        for client in PASSES:
            base = count_instructions(url, client, args.warm, args.tokens)
            total = count_instructions(url, client, args.warm + args.requests, args.tokens)
            per_token[client] = (total - base) / tokens
            print(
                f"{client:>10}: {per_token[client]:>9,.0f} instructions per token "
                f"({args.requests} requests × {args.tokens} tokens over a {args.warm}-request base)"
            )
    ratio = per_token["perflab"] / per_token["bare-httpx"]
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(f"ratio perflab / bare-httpx: {ratio:.3f}  (target ≤ {TARGET_RATIO}: {verdict})")


if __name__ == "__main__":
    main()
