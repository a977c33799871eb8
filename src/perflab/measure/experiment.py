"""One experiment end to end: engine, load, samples, records, metadata."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from perflab import __version__
from perflab.config.sweep import Experiment
from perflab.core.records import (
    STATUS_OK,
    RequestRecord,
    write_json_atomic,
    write_jsonl_atomic,
)
from perflab.engines import GenerationOptions, generation_options, make_engine
from perflab.engines.ollama_ps import ModelPlacement
from perflab.measure.drive import drive_load
from perflab.measure.gpu import Gpus, gpu_record
from perflab.measure.lifeline import Interrupted
from perflab.measure.load_plan import load_plan
from perflab.measure.metadata import ExperimentMetadata, RunTimes
from perflab.measure.open_loop import OpenLoopPlan, ScheduleCheck
from perflab.measure.partial import PartialWriter, keep_failed, keep_leftover
from perflab.measure.placement import PlacementWatch
from perflab.measure.provenance import (
    EngineInfo,
    HostInfo,
    config_hash,
    model_sha256,
    process_age_s,
)
from perflab.measure.runner import LoadPlan, RunResult, error_rate
from perflab.measure.spec import experiment_from_spec
from perflab.measure.sweep_point import SweepInputs, resolve_sweep_point

RUNNER_VERSION = 2  # bump when a change to the runner alters what is measured


class ErrorBudgetExceeded(RuntimeError):
    """Too many requests failed; the records are kept under ``failed/``."""


class ExperimentIOError(RuntimeError):
    """Results could not be written (read-only or full disk); the message names the path."""


class ExperimentInterrupted(RuntimeError):
    """A signal or the end of the workflow stopped the experiment; its records are kept."""


class ServerFailed(RuntimeError):
    """The server perflab started exited while measuring; its records are kept."""


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


def run_experiment(
    spec: dict,
    paths: ExperimentPaths,
    model_path: str | None = None,
    model_fingerprint: dict | None = None,
    *,
    progress: Callable[[RequestRecord], None] | None = None,
    say: Callable[[str], None] = print,
    sweep: SweepInputs | None = None,
    server_binary: str | None = None,
) -> dict:
    """Run the experiment a spec (see experiment_spec) describes and write its files.

    Holds the lock of the experiment's target while it runs. A server it launches
    (``engine.launch``; ``server_binary``, the llama-server the workflow built) logs
    to ``server.log`` beside the records. Raises ErrorBudgetExceeded,
    ExperimentIOError, ExperimentInterrupted or ServerFailed with the records taken
    so far kept under ``failed/``. A sweep point takes its rate from the sweep's
    probe and is skipped when the point below it diverged (``sweep``).
    """
    from perflab.measure.locks import machine_key, target_key, target_lock

    job = {"started_after_s": process_age_s()}  # interpreter start-up and imports
    spec, skipped = resolve_sweep_point(spec, sweep)
    experiment = experiment_from_spec(spec)
    if skipped:
        say(f"{experiment.id}: not measured: {skipped}")
        return write_skipped(spec, experiment, paths, skipped, job).to_json()
    partial_path = paths.records.with_suffix(".partial.jsonl")
    try:
        paths.records.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _io_error(exc, paths.records.parent, None) from None
    leftover = keep_leftover(partial_path, paths.failed_dir, experiment.id)
    if leftover:
        say(f"{experiment.id}: records of an earlier, interrupted attempt kept in {leftover}")
    holder = {"experiment": experiment.id, "out_dir": str(paths.records.parent.resolve())}
    with contextlib.ExitStack() as held:
        if spec.get("machine"):  # targets sharing a machine take turns (machine first, always)
            held.enter_context(target_lock(machine_key(spec), holder, on_wait=say))
        held.enter_context(target_lock(target_key(spec, model_path), holder, on_wait=say))
        job["server_binary"] = server_binary
        metadata = _measure(
            spec, experiment, paths, model_path, partial_path, progress, model_fingerprint, job
        )
    schedule = metadata.schedule
    if schedule and not schedule["valid"]:
        say(f"{experiment.id}: invalid open-loop run: {'; '.join(schedule['problems'])}")
    return metadata.to_json()


def write_skipped(
    spec: dict, experiment: Experiment, paths: ExperimentPaths, reason, job
) -> ExperimentMetadata:
    """A sweep point not measured: no records, and metadata that says why."""
    now = time.time()
    metadata = ExperimentMetadata(
        experiment=experiment.params(),
        engine=EngineInfo(engine=spec["engine"]["name"], model=spec["engine"]["model"]),
        host=HostInfo.of_this_machine(),
        perflab_version=__version__,
        runner_version=RUNNER_VERSION,
        config_hash=config_hash(spec),
        run=RunTimes(
            started=now,
            ended=now,
            measured_started=now,
            measured_wall_s=0.0,
            n_records=0,
            error_rate=0.0,
            error_budget=spec["error_budget"],
            partial=False,
        ),
        job=job,
        skipped=reason,
    )
    try:
        paths.records.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl_atomic(paths.records, [])
        write_jsonl_atomic(paths.samples, [])
        write_json_atomic(paths.metadata, metadata.to_json())
    except OSError as exc:
        raise _io_error(exc, paths.records.parent, None) from None
    return metadata


def _io_error(exc: OSError, path: Path, kept: Path | None, taken: int = 0) -> ExperimentIOError:
    where = exc.filename or path
    reason = exc.strerror or str(exc)
    records = f" {taken} records taken before it are in {kept}." if kept else ""
    return ExperimentIOError(
        f"cannot write {where}: {reason}.{records} Free disk space or make the directory "
        "writable, then rerun."
    )


@dataclass(frozen=True)
class Measurement:
    """What one experiment measured, before it is judged and written."""

    engine_info: EngineInfo
    plan: LoadPlan | OpenLoopPlan
    options: GenerationOptions
    result: RunResult
    samples: list
    job: dict  # where the job's own time went: start-up, engine set-up, requests
    schedule: ScheduleCheck | None = None  # open loop: whether the client kept the schedule
    reads_placement: bool = False  # the engine lists its loaded model (Ollama's /api/ps)
    placement: ModelPlacement | None = None  # where the model lived once loaded
    gpus: Gpus | None = None  # the GPUs the sampler read, or why there were none


def _measure(
    config: dict,
    experiment: Experiment,
    paths: ExperimentPaths,
    model_path: str | None,
    partial_path: Path,
    progress: Callable[[RequestRecord], None] | None,
    model_fingerprint: dict | None,
    job: dict,
) -> ExperimentMetadata:
    setup_started = time.perf_counter()
    engine = make_engine(
        config,
        model_path,
        server_binary=job.pop("server_binary", None),
        server_log=paths.records.parent / "server.log",
    )
    interrupted = False
    try:
        engine_info = EngineInfo.from_json(engine.preflight())
        if engine_info.model_path:
            sha256 = model_sha256(engine_info.model_path, model_fingerprint)
            engine_info = replace(engine_info, model_sha256=sha256)
        job["engine_setup_s"] = time.perf_counter() - setup_started
        plan = load_plan(config, experiment)
        options = generation_options(config, experiment.temperature)
        try:
            writer = PartialWriter(partial_path)
        except OSError as exc:
            raise _io_error(exc, partial_path, None) from None
        measure_started = time.perf_counter()
        watch = PlacementWatch(getattr(engine, "read_placement", None))
        try:
            result, schedule, (samples, gpus), server_failure = drive_load(
                config, experiment, engine, plan, options, writer, progress, watch
            )
            placement = watch.result()
            job["measure_s"] = time.perf_counter() - measure_started  # warm-up and measured
        except (KeyboardInterrupt, Interrupted) as exc:
            interrupted = True
            writer.close()
            kept = keep_failed(partial_path, paths.failed_dir, experiment.id, "-interrupted")
            raise ExperimentInterrupted(
                f"experiment {experiment.id} interrupted ({exc or 'Ctrl-C'}); {writer.written} "
                f"records kept in {kept}. The next run measures it again."
            ) from None
        finally:
            writer.close()
    finally:
        # a worker may still be inside an in-process model; exit frees it
        if not interrupted or not engine.capabilities.in_process:
            engine.close()
    if writer.error is not None:
        kept = keep_failed(partial_path, paths.failed_dir, experiment.id)
        raise _io_error(writer.error, partial_path, kept, writer.written)
    if server_failure:
        kept = keep_failed(partial_path, paths.failed_dir, experiment.id, "-server-failed")
        raise ServerFailed(
            f"experiment {experiment.id}: {server_failure}\n{writer.written} records "
            f"kept in {kept}. Fix the server's problem, then rerun."
        )
    measurement = Measurement(
        engine_info, plan, options, result, samples, job, schedule, watch.active, placement, gpus
    )
    return _finish(config, experiment, paths, partial_path, measurement)


def _output_tokens(records: list[RequestRecord]) -> int:
    """Output tokens of the measured requests that succeeded."""
    return sum(r.output_tokens for r in records if not r.is_warmup and r.status == STATUS_OK)


def _finish(
    config: dict,
    experiment: Experiment,
    paths: ExperimentPaths,
    partial_path: Path,
    measurement: Measurement,
) -> ExperimentMetadata:
    from perflab.measure.samples import summarize_samples, write_samples
    from perflab.measure.server_metrics import summarize_server_metrics

    result, samples = measurement.result, measurement.samples
    window = (result.measured_started, result.measured_ended)
    host = HostInfo.of_this_machine()
    threshold = disturbance_threshold(measurement.engine_info, host)
    rate = error_rate(result.records)
    metadata = ExperimentMetadata(
        experiment=experiment.params(),
        design=config.get("design"),
        engine=measurement.engine_info,
        options=measurement.options,
        plan=asdict(measurement.plan),
        host=host,
        perflab_version=__version__,
        runner_version=RUNNER_VERSION,
        config_hash=config_hash(config),
        run=RunTimes(
            started=result.started,
            ended=result.ended,
            measured_started=result.measured_started,
            measured_wall_s=result.measured_wall_s,
            n_records=len(result.records),
            error_rate=rate,
            error_budget=config["error_budget"],
            partial=rate > 0,
        ),
        resources=summarize_samples(samples, window, threshold),
        server_metrics=summarize_server_metrics(samples, window),
        gpu=gpu_record(measurement.gpus, samples, window, _output_tokens(result.records)),
        job=measurement.job,
        schedule=measurement.schedule.as_dict() if measurement.schedule is not None else None,
        reads_placement=measurement.reads_placement,
        placement=measurement.placement,
    )
    if rate > config["error_budget"]:
        kept = keep_failed(partial_path, paths.failed_dir, experiment.id)
        raise ErrorBudgetExceeded(
            f"experiment {experiment.id}: {rate:.0%} of requests failed, above the error "
            f"budget of {config['error_budget']:.0%}. Records kept in {kept}. Fix the cause "
            "(see the error column) or raise error_budget in the config, then rerun."
        )
    try:
        write_samples(paths.samples, samples)
        write_jsonl_atomic(paths.records, result.records)
        write_json_atomic(paths.metadata, metadata.to_json())
    except OSError as exc:
        kept = keep_failed(partial_path, paths.failed_dir, experiment.id)
        raise _io_error(exc, paths.records.parent, kept, len(result.records)) from None
    partial_path.unlink(missing_ok=True)
    return metadata


def disturbance_threshold(engine_info: EngineInfo, host: HostInfo) -> float:
    """The interference above which this experiment counts as disturbed: the cores the
    engine leaves free (its ``n_threads`` where it reports them, else it may use all)
    plus a share of those it uses (``perflab.measure.samples``)."""
    from perflab.measure.samples import disturbance_threshold_pct

    return disturbance_threshold_pct(host.logical_cores, engine_info.n_threads)
