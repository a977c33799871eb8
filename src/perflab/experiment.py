"""One experiment end to end: engine, load, samples, records, metadata."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from perflab import __version__
from perflab.config import Experiment
from perflab.engines import generation_options, make_engine
from perflab.records import write_json_atomic, write_jsonl_atomic
from perflab.runner import LoadPlan, error_rate, run_load, write_partial_line

if TYPE_CHECKING:
    from perflab.metrics import ExperimentTables

RUNNER_VERSION = 1  # bump when a change to the runner alters what is measured


class ErrorBudgetExceeded(RuntimeError):
    """Too many requests failed; the records are kept under ``failed/``."""


@dataclass(frozen=True)
class ExperimentPaths:
    records: Path
    samples: Path
    metadata: Path
    failed_dir: Path

    @classmethod
    def in_dir(cls, out_dir: Path, failed_dir: Path) -> ExperimentPaths:
        out_dir = Path(out_dir)
        return cls(
            out_dir / "records.jsonl",
            out_dir / "samples.jsonl",
            out_dir / "metadata.json",
            Path(failed_dir),
        )

    @property
    def tables(self) -> ExperimentTables:
        """records.parquet, summary.parquet and summary.json beside the records."""
        from perflab.metrics import ExperimentTables

        return ExperimentTables.in_dir(self.records.parent)


SETTINGS_KEYS = (
    "engine",
    "generation",
    "calibration",
    "warmup_requests",
    "error_budget",
    "sampler",
)


def experiment_spec(config: dict, experiment: Experiment) -> dict:
    """What one experiment job needs, and nothing else: changing any of it reruns the job."""
    return {key: config[key] for key in SETTINGS_KEYS} | {"experiment": experiment.params()}


def experiment_from_spec(spec: dict) -> Experiment:
    fields = dict(spec["experiment"])
    fields.pop("id", None)
    fields["suites"] = tuple(fields["suites"])
    return Experiment(**fields)


def server_pid_finder(config: dict):
    """Where the server's processes are: ours for llama.cpp, Ollama's when local."""
    from perflab.sampler import find_ollama_pids

    if config["engine"]["name"] in ("llamacpp", "calibration"):
        return lambda: [os.getpid()]
    from perflab.engines.ollama_engine import resolve_host

    host = resolve_host(config["engine"]["host"])
    return lambda: find_ollama_pids(host)


def run_experiment(
    spec: dict,
    paths: ExperimentPaths,
    model_path: str | None = None,
    model_fingerprint: dict | None = None,
) -> dict:
    """Run the experiment a spec (see experiment_spec) describes and write its files:
    the raw records, samples and metadata, then its Parquet records and summary."""
    from perflab.provenance import config_hash, host_info, model_sha256, process_age_s
    from perflab.sampler import ResourceSampler, summarize_samples, write_samples

    job = {"started_after_s": process_age_s()}  # interpreter start-up and imports
    setup_started = time.perf_counter()
    config = spec
    experiment = experiment_from_spec(spec)
    engine = make_engine(config, model_path)
    engine_info = engine.preflight()
    if engine_info.get("model_path"):
        engine_info["model_sha256"] = model_sha256(engine_info["model_path"], model_fingerprint)
    job["engine_setup_s"] = time.perf_counter() - setup_started
    plan = LoadPlan(
        workers=experiment.workers,
        requests=experiment.requests,
        duration_s=experiment.duration_s,
        warmup_requests=config["warmup_requests"],
    )
    options = generation_options(config, experiment.temperature)
    paths.records.parent.mkdir(parents=True, exist_ok=True)
    partial_path = paths.records.with_suffix(".partial.jsonl")
    partial_path.unlink(missing_ok=True)
    append = write_partial_line(partial_path)
    sampler = ResourceSampler(
        interval_s=config["sampler"]["interval_s"], server_pids=server_pid_finder(config)
    )
    measure_started = time.perf_counter()
    try:
        with sampler:
            result = run_load(
                engine,
                experiment.prompt,
                options,
                plan,
                experiment_id=experiment.id,
                on_record=append,
            )
    finally:
        append.close()
        engine.close()
    job["measure_s"] = time.perf_counter() - measure_started  # warm-up and measured requests
    samples = sampler.samples
    rate = error_rate(result.records)
    metadata = {
        "experiment": experiment.params(),
        "engine": engine_info,
        "options": asdict(options),
        "plan": asdict(plan),
        "host": host_info(),
        "perflab_version": __version__,
        "runner_version": RUNNER_VERSION,
        "config_hash": config_hash(config),
        "run": {
            "started": result.started,
            "ended": result.ended,
            "measured_started": result.measured_started,
            "measured_wall_s": result.measured_wall_s,
            "n_records": len(result.records),
            "error_rate": rate,
            "error_budget": config["error_budget"],
            "partial": rate > 0,
        },
        "resources": summarize_samples(samples),
        "job": job,
    }
    if rate > config["error_budget"]:
        kept = keep_failed(partial_path, paths.failed_dir, experiment.id)
        raise ErrorBudgetExceeded(
            f"experiment {experiment.id}: {rate:.0%} of requests failed, above the error "
            f"budget of {config['error_budget']:.0%}. Records kept in {kept}. Fix the cause "
            "(see the error column) or raise error_budget in the config, then rerun."
        )
    write_samples(paths.samples, samples)
    write_jsonl_atomic(paths.records, result.records)
    write_json_atomic(paths.metadata, metadata)
    partial_path.unlink(missing_ok=True)
    tabulate_experiment(paths)
    return metadata


def tabulate_experiment(paths: ExperimentPaths) -> dict:
    """The experiment's Parquet records and summary, from its JSON lines and metadata."""
    from perflab.metrics import write_experiment_tables

    return write_experiment_tables(paths.records, paths.metadata, paths.tables)


def keep_failed(partial_path: Path, failed_dir: Path, experiment_id: str) -> Path:
    failed_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = failed_dir / f"{experiment_id}-{stamp}.jsonl"
    shutil.move(partial_path, target)
    return target
