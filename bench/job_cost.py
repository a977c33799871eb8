"""What does one experiment job cost before and after its requests?

Runs ``python -m perflab run-experiment`` as the workflow runs it, with one
request and no warm-up, on the calibration engine (scripted timings of zero)
and on the embedded llama.cpp engine (the tiny model), alternating with the
floor, an interpreter that does nothing (``python -c pass``). Each job
records its own phases in metadata.json ("job": start-up until the
experiment starts, engine set-up, requests); what is left of the wall time
is writing the files and exiting. The engine's share — importing its client
or llama-cpp-python and loading the model — is reported apart from
perflab's own: the job's wall time minus the engine set-up and the requests.

With ``--profile`` it also lists the slowest imports of one job
(``python -X importtime``). Run by hand:

    python bench/job_cost.py [--repeats 5] [--profile]

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
import time
from pathlib import Path

from perflab.config.load import load_config_file
from perflab.config.sweep import expand_experiments
from perflab.measure.spec import experiment_spec

ROOT = Path(__file__).resolve().parents[1]
VOCAB = ROOT / "cache" / "vocab" / "ggml-vocab-llama-bpe.gguf"
TARGET_S = 0.3
TINY = {
    "embedding_length": 32,
    "block_count": 1,
    "feed_forward_length": 64,
    "head_count": 2,
    "head_count_kv": 1,
    "context_length": 2048,
}
ZERO_TIMING = {
    "load_time_s": 0.0,
    "ttft_fixed_s": 0.0,
    "ttft_per_token_s": 0.0,
    "itl_s": 0.0,
    "output_tokens": 8,
}


def one_request_spec(engine: str) -> str:
    off = {"enabled": False}
    overrides = {
        "repeats": 1,
        "warmup_requests": 0,
        "generation": {"max_tokens": 8},
        "suites": {
            "basic": {"prompts": ["short"], "requests": 1},
            "prompt_length": off,
            "temperature": off,
            "concurrency": off,
            "resources": off,
            "kv_cache": off,
        },
    }
    if engine == "calibration":
        overrides |= {
            "engine": {"name": "calibration", "model": "llama3.1:8b"},
            "calibration": ZERO_TIMING,
        }
    config = load_config_file(ROOT / "config" / "config.yaml", overrides=overrides)
    (experiment,) = expand_experiments(config).values()
    return json.dumps(experiment_spec(config, experiment), sort_keys=True)


def tiny_model(directory: Path) -> Path:
    from perflab.models.tiny import TinyModelSpec, build_tiny_model, fetch_vocab

    if not VOCAB.exists():
        fetch_vocab(VOCAB)
    return build_tiny_model(VOCAB, directory / "tiny.gguf", TinyModelSpec(**TINY))


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed:\n{result.stderr[-3000:]}")
    return wall


def job_command(engine: str, spec: str, out: Path, model: Path | None) -> list[str]:
    command = [sys.executable, "-m", "perflab", "run-experiment", "--spec", spec]
    command += ["--out-dir", str(out), "--failed-dir", str(out.parent / "failed")]
    return command + (["--model", str(model)] if model else [])


def spread(values: list[float]) -> str:
    return f"{min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f}"


def slowest_imports(command: list[str], top: int) -> list[tuple[float, str]]:
    """Top-level imports of one run by cumulative time (``-X importtime``)."""
    result = subprocess.run(
        [command[0], "-X", "importtime", *command[1:]], capture_output=True, text=True
    )
    found = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if not name.startswith("  ") and cumulative.strip().isdigit():  # top level only
            found.append((int(cumulative) / 1e6, name.strip()))
    return sorted(found, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="list the slowest imports")
    parser.add_argument("--engines", nargs="+", default=["calibration", "llamacpp"])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="perflab-job-"))
    try:
        model = tiny_model(root) if "llamacpp" in args.engines else None
        commands = {
            engine: job_command(
                engine,
                one_request_spec(engine),
                root / engine,
                model if engine == "llamacpp" else None,
            )
            for engine in args.engines
        }
        floor: list[float] = []
        jobs: dict[str, list[dict]] = {engine: [] for engine in commands}
        for _ in range(args.repeats):  # alternate: drift hits every command alike
            floor.append(timed([sys.executable, "-c", "pass"]))
            for engine, command in commands.items():
                wall = timed(command)
                metadata = json.loads((root / engine / "metadata.json").read_text())
                jobs[engine].append(
                    metadata["job"]
                    | {"wall": wall, "model_load_s": metadata["engine"].get("load_s")}
                )
        print(
            f"one experiment job, 1 request, no warm-up; {args.repeats} runs each (min / median / max, s)"
        )
        print(f"  floor: python -c pass              {spread(floor)}")
        for engine, runs in jobs.items():
            walls = [run["wall"] for run in runs]
            engine_s = [run["engine_setup_s"] for run in runs]
            own = [run["wall"] - run["engine_setup_s"] - run["measure_s"] for run in runs]
            startup = [run["started_after_s"] for run in runs if run["started_after_s"] is not None]
            print(f"  {engine}: whole job                {spread(walls)}")
            print(
                f"    engine set-up (import, preflight{', model load' if engine == 'llamacpp' else ''}) {spread(engine_s)}"
            )
            loads = [run["model_load_s"] for run in runs if run["model_load_s"] is not None]
            if loads:
                print(f"      of which llama.cpp model load  {spread(loads)}")
            print(
                f"    the request                      {spread([run['measure_s'] for run in runs])}"
            )
            if startup:
                print(f"    start-up until the experiment    {spread(startup)}")
            median_own = statistics.median(own)
            print(
                f"    perflab's own (job - engine - request) {spread(own)}: "
                f"{median_own / statistics.median(floor):.1f}x the bare interpreter; "
                f"target < {TARGET_S} s {'met' if median_own < TARGET_S else 'missed'}"
            )
        if args.profile:
            for engine, command in commands.items():
                print(f"  slowest top-level imports of one {engine} job (s):")
                for seconds, name in slowest_imports(command, 8):
                    print(f"    {seconds:.3f}  {name}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
