"""How fast does a run's aggregation go at 100 k and 1 M request records?

Writes synthetic experiments as experiment jobs leave them (records.parquet and
a one-row summary.parquet each; every column of today's record schema, with
per-token gaps), then times, each in a fresh process, alternating:

- perflab: ``table_files.write_aggregates`` — requests.parquet, summary.parquet,
  .csv and .json, as the aggregate rule runs it;
- floor: reading the same files and writing one Parquet file with no perflab
  code at all (``pl.scan_parquet(records files).sink_parquet(...)``, the
  per-token column dropped as perflab drops it);
- before: the previous design, recomputing every summary from all records at
  once (``tables.summarize`` over the gathered records, per-token gaps
  included).

It prints wall seconds, CPU seconds and peak RSS (min / median / max) and
the ratios perflab / floor. Run by hand:

    python bench/aggregate_scale.py [--records 100000 1000000] [--per-experiment 1000]

Quote ratios from one run; these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from perflab.analyse.table_files import ExperimentTables
from perflab.analyse.tables import EXPERIMENT_COLUMNS, RECORD_SCHEMA, summarize

TARGET_S = 2.0
TARGET_RSS_MB = 1024

# Each mode runs in its own process so that its peak RSS is its own.
RUNNER = """
import glob, json, resource, sys, time
import polars as pl
from perflab.analyse import table_files, tables
mode, root, out = sys.argv[1:4]
records = sorted(glob.glob(f"{root}/*/records.parquet"))
summaries = sorted(glob.glob(f"{root}/*/summary.parquet"))
started, cpu = time.perf_counter(), time.process_time()
if mode == "perflab":
    table_files.write_aggregates(records, summaries, f"{out}/requests.parquet",
        f"{out}/summary.parquet", f"{out}/summary.csv", f"{out}/summary.json")
elif mode == "floor":
    pl.scan_parquet(records).drop(table_files.PER_TOKEN_COLUMNS).sink_parquet(f"{out}/requests.parquet")
else:
    tables.summarize(pl.scan_parquet(records)).collect().write_parquet(f"{out}/summary.parquet")
wall, cpu = time.perf_counter() - started, time.process_time() - cpu
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"wall": wall, "cpu": cpu, "rss_mb": rss}))
"""


def synthetic_experiment(index: int, n: int, tokens: int, rng: np.random.Generator) -> pl.DataFrame:
    """``n`` records in the record schema: ok, the first three warm-up, ``tokens`` each."""
    columns = {}
    for name, dtype in RECORD_SCHEMA.items():
        if dtype == pl.List(pl.Float64):
            gaps = rng.gamma(4.0, 0.005, size=n * (tokens - 1))
            columns[name] = pl.Series(name, gaps).reshape((n, tokens - 1)).arr.to_list()
        elif dtype == pl.Float64:
            columns[name] = pl.Series(name, rng.gamma(4.0, 0.05, size=n))
        elif dtype == pl.Int64:
            columns[name] = pl.Series(name, np.arange(n, dtype=np.int64))
        elif dtype == pl.Boolean:
            columns[name] = pl.Series(name, np.arange(n) < 3)
        else:
            columns[name] = pl.Series(name, [None] * n, dtype=dtype)
    experiment_id = f"p{index:05d}-t0.7-w1-n{n}"
    frame = pl.DataFrame(columns).with_columns(
        experiment_id=pl.lit(experiment_id),
        status=pl.lit("ok"),
        output_tokens=pl.lit(tokens, dtype=pl.Int64),
    )
    constants = {
        "prompt_name": f"p{index:05d}",
        "temperature": 0.7,
        "workers": 1,
        "requests": n,
        "duration_s": None,
        "suites": "basic",
        "engine": "llamacpp",
        "model": "tiny",
        "measured_wall_s": n * 0.5,
        "partial": False,
    }
    return frame.with_columns(
        pl.lit(constants.get(name), dtype=dtype).alias(name)
        for name, dtype in EXPERIMENT_COLUMNS.items()
    )


def write_run(root: Path, records: int, per_experiment: int, tokens: int) -> None:
    rng = np.random.default_rng(1)
    for index in range(max(1, records // per_experiment)):
        frame = synthetic_experiment(index, per_experiment, tokens, rng)
        tables = ExperimentTables.in_dir(root / frame["experiment_id"][0])
        tables.records.parent.mkdir(parents=True)
        frame.write_parquet(tables.records)
        summarize(frame.lazy()).collect().write_parquet(tables.summary)


def run_mode(mode: str, root: Path, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, mode, str(root), str(out)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def spread(values: list[float], fmt: str = ".2f") -> str:
    return f"{min(values):{fmt}} / {statistics.median(values):{fmt}} / {max(values):{fmt}}"


def bench(records: int, per_experiment: int, tokens: int, repeats: int, modes: list[str]) -> None:
    root = Path(tempfile.mkdtemp(prefix="perflab-aggregate-"))
    try:
        write_run(root / "run", records, per_experiment, tokens)
        size_mb = sum(p.stat().st_size for p in (root / "run").rglob("*.parquet")) / 1e6
        runs = {mode: [] for mode in modes}
        for _ in range(repeats):
            for mode in modes:  # alternate: drift hits every mode alike
                runs[mode].append(run_mode(mode, root / "run", root / "out"))
        n_experiments = max(1, records // per_experiment)
        print(
            f"{n_experiments * per_experiment:,} records in {n_experiments:,} experiments, "
            f"{tokens} tokens each ({size_mb:.0f} MB of Parquet); {repeats} runs per mode"
        )
        for mode in modes:
            figures = {key: [run[key] for run in runs[mode]] for key in ("wall", "cpu", "rss_mb")}
            print(
                f"  {mode:8} wall {spread(figures['wall'])} s   cpu {spread(figures['cpu'])} s   "
                f"peak RSS {spread(figures['rss_mb'], '.0f')} MB"
            )
        median = {
            mode: {key: statistics.median(run[key] for run in runs[mode]) for key in runs[mode][0]}
            for mode in modes
        }
        perflab = median["perflab"]
        print(
            f"  perflab / floor: {perflab['wall'] / median['floor']['wall']:.2f}x wall, "
            f"{perflab['cpu'] / median['floor']['cpu']:.2f}x cpu; "
            f"target < {TARGET_S:.0f} s and < {TARGET_RSS_MB} MB: "
            f"{'met' if perflab['wall'] < TARGET_S and perflab['rss_mb'] < TARGET_RSS_MB else 'missed'}"
        )
        if "before" in median:
            print(f"  before / perflab: {median['before']['wall'] / perflab['wall']:.1f}x wall")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--per-experiment", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=64, help="output tokens per request")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--skip-before", action="store_true", help="skip the slow recompute-everything mode"
    )
    args = parser.parse_args()
    modes = ["perflab", "floor"] + ([] if args.skip_before else ["before"])
    for records in args.records:
        bench(records, args.per_experiment, args.tokens, args.repeats, modes)


if __name__ == "__main__":
    main()
