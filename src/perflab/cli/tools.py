"""perflab's commands for the llama.cpp tools: fetching the sdist, building
llama-server and llama-bench from it, running llama-bench as the peer, and
measuring the machine's own ceilings beside them."""

from __future__ import annotations

import sys
from pathlib import Path


def _fetch_llama_sdist(args) -> None:
    from perflab.models.llama_build import fetch_sdist

    print(fetch_sdist(Path(args.out)))


def _build_llama_tools(args) -> None:
    from perflab.models.llama_build import provide_tools

    sdist = Path(args.sdist) if args.sdist else None
    for tool in provide_tools(sdist, Path(args.out_dir), args.jobs, sys.stdout):
        print(tool, flush=True)


def _peer_bench(args) -> None:
    from perflab.measure.peer import run_llama_bench, suite_sizes, write_peer

    requests = Path(args.requests) if args.requests else None
    prompts, gen = suite_sizes(requests, args.target, args.suite)
    tests, command = run_llama_bench(
        args.bench, args.model, args.threads, prompts, gen, args.repetitions
    )
    write_peer(Path(args.out), tests, command, args.model)
    for test in tests:
        print(
            f"{test.label}, {test.threads} thread(s): {test.tps_mean:.1f} ± {test.tps_sd:.1f} t/s"
            f" (n={test.repetitions})"
        )


def _thread_counts(text: str) -> int | list[int]:
    """``4`` or ``1,2,4`` (a list: llama-bench at each count)."""
    counts = [int(part) for part in text.split(",")]
    if any(count < 1 for count in counts):
        raise ValueError(f"thread counts must be 1 or more: {text}")
    return counts if "," in text else counts[0]


def _measure_machine(args) -> None:
    from perflab.measure.machine import measure_machine, write_machine

    ceilings = measure_machine(args.threads)
    write_machine(ceilings, Path(args.out))
    bandwidth, compute = ceilings.bandwidth_gbs, ceilings.matmul_gflops
    print(
        f"{ceilings.host}, {args.threads} thread(s): read bandwidth {bandwidth.mean:.2f} GB/s, "
        f"float32 matmul {compute.mean:.1f} GFLOP/s (n={bandwidth.repetitions} each)"
    )


def add_tool_commands(commands) -> None:
    """The tools' subcommands, on the main parser's ``commands``."""
    command = commands.add_parser(
        "fetch-llama-sdist", help="download llama-cpp-python's sdist (the installed version)"
    )
    command.add_argument("--out", required=True, help="the .tar.gz to write")
    command.set_defaults(func=_fetch_llama_sdist)

    command = commands.add_parser(
        "build-llama-tools", help="build llama-server and llama-bench from the sdist's llama.cpp"
    )
    command.add_argument("--sdist", default=None, help="llama-cpp-python's sdist")
    command.add_argument("--out-dir", required=True)
    command.add_argument("--jobs", type=int, default=2, help="parallel compile jobs")
    command.set_defaults(func=_build_llama_tools)

    command = commands.add_parser(
        "peer-bench", help="llama-bench on the model and threads, at the suites' sizes"
    )
    command.add_argument("--bench", required=True, help="the llama-bench binary")
    command.add_argument("--model", required=True, help="the GGUF")
    command.add_argument(
        "--threads", type=_thread_counts, required=True, help="a count, or counts: 1,2,4"
    )
    command.add_argument("--requests", default=None, help="the run's requests.parquet")
    command.add_argument("--suite", default="basic", help="the suite whose requests set sizes")
    command.add_argument("--target", default=None, help="the target whose requests set sizes")
    command.add_argument("--repetitions", type=int, default=5)
    command.add_argument("--out", required=True)
    command.set_defaults(func=_peer_bench)

    command = commands.add_parser(
        "measure-machine", help="the machine's read bandwidth and matmul throughput"
    )
    command.add_argument("--threads", type=int, required=True)
    command.add_argument("--out", required=True)
    command.set_defaults(func=_measure_machine)
