"""The machine's own ceilings: sustained memory read bandwidth and matrix-multiply
throughput, measured once per host and thread count (docs/metrics.md, "Ceilings").

Bandwidth: each of ``threads`` threads sums its own slice of a float32 buffer many
times larger than the last-level cache (numpy's reduction releases the GIL, so the
threads read in parallel). Decoding streams every weight from memory once per
token in the same way, a sequential read with almost no arithmetic per byte, which
is what makes this STREAM-style read (not copy or triad) the representative one.
Compute: float32 matrix multiplies (numpy's BLAS) at a size that runs from cache,
2·n³ FLOPs each; llama.cpp's CPU kernels compute quantized weights in float32 or
integer SIMD, so this is the order of the machine's peak, not its exact one.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

BANDWIDTH_BYTES = 1 << 29  # 512 MiB: above any desktop or server last-level cache
MATMUL_N = 1024


@dataclass(frozen=True)
class Rate:
    mean: float
    ci95: float | None  # Student-t half-width over the repetitions
    repetitions: int


@dataclass(frozen=True)
class MachineCeilings:
    host: str
    cpu: str
    logical_cores: int
    threads: int
    bandwidth_gbs: Rate  # GB/s (10⁹ bytes) read
    matmul_gflops: Rate  # GFLOP/s, float32
    bandwidth_kernel: str
    matmul_kernel: str


def _rate(values: list[float]) -> Rate:
    from scipy.stats import t

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return Rate(mean, None, n)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return Rate(mean, float(t.ppf(0.975, n - 1)) * sd / math.sqrt(n), n)


def read_bandwidth(threads: int, total_bytes: int, repetitions: int) -> Rate:
    buffer = np.ones(total_bytes // 4, dtype=np.float32)
    slices = np.array_split(buffer, threads)
    rates = []
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(np.sum, slices))  # fault the pages in before timing
        for _ in range(repetitions):
            start = time.perf_counter()
            list(pool.map(np.sum, slices))
            rates.append(buffer.nbytes / (time.perf_counter() - start) / 1e9)
    return _rate(rates)


def matmul_throughput(n: int, repetitions: int) -> Rate:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm the BLAS threads
    rates = []
    for _ in range(repetitions):
        start = time.perf_counter()
        a @ b
        rates.append(2 * n**3 / (time.perf_counter() - start) / 1e9)
    return _rate(rates)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure_machine(
    threads: int,
    total_bytes: int = BANDWIDTH_BYTES,
    matmul_n: int = MATMUL_N,
    repetitions: int = 5,
) -> MachineCeilings:
    return MachineCeilings(
        host=socket.gethostname(),
        cpu=_cpu_name(),
        logical_cores=os.cpu_count() or 1,
        threads=threads,
        bandwidth_gbs=read_bandwidth(threads, total_bytes, repetitions),
        matmul_gflops=matmul_throughput(matmul_n, repetitions),
        bandwidth_kernel=f"sum of a {total_bytes / 2**20:.0f} MiB float32 buffer, "
        f"one slice per thread",
        matmul_kernel=f"float32 {matmul_n}×{matmul_n} matmul (numpy BLAS)",
    )


def write_machine(ceilings: MachineCeilings, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(ceilings), indent=2) + "\n")


def read_machine(path: str | Path) -> MachineCeilings:
    data = json.loads(Path(path).read_text())
    rates = {k: Rate(**data[k]) for k in ("bandwidth_gbs", "matmul_gflops")}
    return MachineCeilings(**{**data, **rates})
