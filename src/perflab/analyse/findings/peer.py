"""perflab's decode and prefill rates beside llama-bench's on the same GGUF and
threads (``peer.llama_bench``): each as a ratio to the peer, with a 95 % CI
from both sides' spreads.

Decode: perflab's per-request decode rate (tokens after the first over the time
after the first) of the basic suite's requests, against ``tg``. Prefill: prompt
tokens the engine evaluated over its own prefill time, against the ``pp`` test
nearest in size. The ratio's CI is the delta method's for a ratio of two
independent means: r · √((h₁/m₁)² + (h₂/m₂)²), with h the CI half-widths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from perflab.analyse.quantiles import t_quantile
from perflab.measure.peer import PeerTest, read_peer


@dataclass(frozen=True)
class PeerRate:
    what: str  # "decode" or "prefill"
    target: str | None
    n: int  # perflab's requests
    tps_mean: float
    tps_ci95: float | None
    peer: PeerTest
    ratio: float
    ratio_low: float | None
    ratio_high: float | None
    tokens_mean: float | None = None  # per request: output tokens (decode), prompt evaluated

    @property
    def within(self) -> float:
        """How far perflab's rate is from the peer's, as a share of it (0.05 = 5 %)."""
        return abs(1 - self.ratio)


@dataclass(frozen=True)
class PeerFinding:
    tool: str
    tests: tuple[PeerTest, ...]
    rates: tuple[PeerRate, ...]


def _mean_ci(values: list[float]) -> tuple[float, float | None]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, t_quantile(0.975, n - 1) * sd / math.sqrt(n)


def _rate(what, target, values, test: PeerTest, tokens=None) -> PeerRate | None:
    values = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    if not values or not test.tps_mean:
        return None
    mean, half = _mean_ci(values)
    ratio = mean / test.tps_mean
    low = high = None
    if half is not None and math.isfinite(test.tps_ci95):
        spread = ratio * math.hypot(half / mean, test.tps_ci95 / test.tps_mean)
        low, high = ratio - spread, ratio + spread
    return PeerRate(what, target, len(values), mean, half, test, ratio, low, high, tokens)


def _basic_requests(requests_path: str | Path, target: str | None) -> pl.DataFrame:
    frame = pl.read_parquet(requests_path)
    keep = (pl.col("status") == "ok") & ~pl.col("is_warmup")
    keep &= pl.col("suites").str.contains("basic")
    if target is not None:
        keep &= pl.col("target") == target
    return frame.filter(keep)


def summary(
    peer_path: str | Path, requests_path: str | Path, targets: list[str | None]
) -> PeerFinding:
    tests = read_peer(Path(peer_path))
    tg = [t for t in tests if t.kind == "tg"]
    pp = [t for t in tests if t.kind == "pp"]
    rates = []
    for target in targets:
        rows = _basic_requests(requests_path, target)
        if tg:
            tokens = rows["output_tokens"].mean()
            rates.append(_rate("decode", target, rows["tps"].to_list(), tg[0], tokens))
        for _, group in rows.group_by("prompt_name", maintain_order=True):
            size = group["prompt_tokens"].median()
            if not pp or size is None or "prefill_s" not in group.columns:
                continue
            nearest = min(pp, key=lambda t: abs(t.n_tokens - size))
            evaluated = group["server_prefill_tokens"].fill_null(group["prompt_tokens"])
            per_request = (evaluated / group["prefill_s"]).to_list()
            rates.append(_rate("prefill", target, per_request, nearest, evaluated.mean()))
    return PeerFinding("llama-bench", tuple(tests), tuple(r for r in rates if r is not None))
