"""llama-bench, the reference users trust for llama.cpp's speed, on the same GGUF
and threads as perflab's own measurement: its prompt processing (``pp``) and
text generation (``tg``) rates, each from several repetitions, as perflab's
peer (docs/metrics.md, "llama-bench").

llama-bench times ``pp N`` as one batch of N prompt tokens with an empty cache
and ``tg N`` as N single-token decodes after an empty prompt; it applies no
chat template and samples nothing (it decodes a fixed token). Those are the
differences its figures have from a served request.
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from scipy import stats

from perflab.core.records import write_json_atomic
from perflab.engines.cpu_kernels import llama_bench_flags


class PeerError(RuntimeError):
    """llama-bench failed; the message has its output."""


@dataclass(frozen=True)
class PeerTest:
    """One llama-bench test: ``kind`` pp or tg, over ``n_tokens``, ``repetitions`` times."""

    kind: str
    n_tokens: int
    threads: int
    repetitions: int
    tps_mean: float
    tps_sd: float
    tps_ci95: float  # half-width, Student t over the repetitions
    samples: tuple[float, ...] = ()  # each repetition's rate (t/s)

    @property
    def label(self) -> str:
        return f"{self.kind}{self.n_tokens}"


def ci95(samples: list[float]) -> tuple[float, float, float]:
    """Mean, standard deviation and 95 % CI half-width of per-repetition rates."""
    n = len(samples)
    mean = sum(samples) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in samples) / (n - 1)) if n > 1 else 0.0
    t = float(stats.t.ppf(0.975, n - 1)) if n > 1 else math.nan
    return mean, sd, (t * sd / math.sqrt(n) if n > 1 else math.nan)


def parse_llama_bench(text: str) -> list[PeerTest]:
    """llama-bench's ``-o json`` output as tests."""
    tests = []
    for item in json.loads(text):
        samples = [float(x) for x in item.get("samples_ts") or [item["avg_ts"]]]
        mean, sd, half = ci95(samples)
        prompt, gen = int(item.get("n_prompt") or 0), int(item.get("n_gen") or 0)
        tests.append(
            PeerTest(
                kind="pp" if gen == 0 else "tg",
                n_tokens=prompt if gen == 0 else gen,
                threads=int(item.get("n_threads") or 0),
                repetitions=len(samples),
                tps_mean=mean,
                tps_sd=sd,
                tps_ci95=half,
                samples=tuple(samples),
            )
        )
    return tests


def run_llama_bench(
    binary: str,
    model: str,
    threads: int | list[int],
    prompt_tokens: list[int],
    n_gen: int,
    repetitions: int,
    timeout_s: float = 1800,
) -> tuple[list[PeerTest], list[str]]:
    """Run llama-bench once for every prompt size and the generation length, at each
    thread count of ``threads`` (one count, or a list: llama-bench's ``-t 1,2,4``)."""
    counts = threads if isinstance(threads, list) else [threads]
    command = [binary, "-m", str(model), "-t", ",".join(str(n) for n in counts)]
    command += ["-r", str(repetitions)]
    sizes = sorted(set(prompt_tokens)) or [0]  # 0: no prompt test, tg alone
    command += ["-p", ",".join(str(n) for n in sizes)]
    command += ["-n", str(n_gen), "-o", "json", *llama_bench_flags()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode:
        raise PeerError(
            f"{' '.join(command)} failed (exit status {done.returncode}): "
            f"{done.stderr.strip()[-1500:]}"
        )
    return parse_llama_bench(done.stdout), command


DEFAULT_PROMPT_TOKENS = (32, 128, 512)
DEFAULT_GEN_TOKENS = 64


def suite_sizes(
    requests_path: Path | None, target: str | None, suite: str = "basic"
) -> tuple[list[int], int]:
    """Prompt sizes matching what ``suite`` sent (each prompt's median prompt tokens)
    and its median output length; llama-bench's usual sizes without them."""
    if requests_path is None or not Path(requests_path).exists():
        return list(DEFAULT_PROMPT_TOKENS), DEFAULT_GEN_TOKENS
    import polars as pl

    keep = (pl.col("status") == "ok") & ~pl.col("is_warmup")
    keep &= pl.col("suites").str.split(",").list.contains(pl.lit(suite))
    if target is not None:
        keep &= pl.col("target") == target
    rows = pl.read_parquet(requests_path).filter(keep)
    if rows.is_empty():
        return list(DEFAULT_PROMPT_TOKENS), DEFAULT_GEN_TOKENS
    sizes = rows.group_by("prompt_name").agg(pl.col("prompt_tokens").median())
    prompts = sorted({int(round(n)) for n in sizes["prompt_tokens"].drop_nulls() if n >= 1})
    gen = rows["output_tokens"].median()
    return prompts or list(DEFAULT_PROMPT_TOKENS), max(2, int(round(gen or DEFAULT_GEN_TOKENS)))


def write_peer(path: Path, tests: list[PeerTest], command: list[str], model: str) -> None:
    write_json_atomic(
        Path(path),
        {
            "tool": "llama-bench",
            "command": command,
            "model": model,
            "tests": [asdict(t) for t in tests],
        },
    )


def read_peer(path: Path) -> list[PeerTest]:
    data = json.loads(Path(path).read_text())
    return [
        PeerTest(**item | {"samples": tuple(item.get("samples") or ())}) for item in data["tests"]
    ]
