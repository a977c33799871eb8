"""The measuring commands: the engine's pre-flight check, the rate probe, one
experiment, and experiments' summaries rewritten from their records."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from perflab.cli.arguments import json_object
from perflab.engines.ollama_ps import ModelPlacement
from perflab.measure.preflight_info import PreflightInfo

SERVER_BINARY_HELP = "engine.launch: the llama-server to start (one built by the workflow)"


def _say(line: str) -> None:
    """A line for the terminal (stdout) and for the job's log (stderr)."""
    print(line, flush=True)
    print(line, file=sys.stderr, flush=True)


def _engine_of(args):
    """The engine a pre-flight check or a rate probe talks to; a server it launches logs
    beside the command's output."""
    from perflab.engines import make_engine

    out = Path(args.out)
    server_log = out.with_name(out.stem + ".server.log")
    return make_engine(
        args.spec, args.model, server_binary=args.server_binary, server_log=server_log
    )


def _preflight(args) -> None:
    from perflab.core.records import write_json_atomic
    from perflab.measure.provenance import EngineInfo, model_fingerprint
    from perflab.models.names import model_label

    spec = args.spec
    engine = _engine_of(args)
    try:
        reported = EngineInfo.from_json(engine.preflight())
        timed, no_estimate = _estimate(engine, spec, args.estimate)
    finally:
        engine.close()
    info = PreflightInfo(
        engine=reported,
        estimate=timed.estimate if timed is not None else None,
        cold_start=timed.cold_start if timed is not None else None,
        model_fingerprint=model_fingerprint(reported.model_path) if reported.model_path else None,
    )
    write_json_atomic(Path(args.out), info.to_json())
    model = model_label(spec["engine"], reported.model)
    _say(f"{reported.engine} {reported.engine_version} serves {model}")
    if info.estimate is not None:
        _say(f"whole run {info.estimate.describe()}")
    if info.cold_start is not None:
        _say(f"cold start: {describe_cold_start(info.cold_start)}")
    if no_estimate:
        _say(f"no estimate of the run's length: {no_estimate}")


def describe_cold_start(cold) -> str:
    """'model load 1.500 s (the server's account); first token after 1.532 s'."""
    first = "n/a" if cold.ttft_s is None else f"{cold.ttft_s:.3f} s"
    account = "the engine's model open, in-process" if cold.in_process else "the server's account"
    return f"model load {cold.load_s:.3f} s ({account}); first token after {first}"


def _estimate(engine, spec: dict, plan: dict | None):
    """(the timed request, None) or (None, why there is none); experiments report errors."""
    from perflab.measure.estimate import NoEstimate, time_one_request

    if plan is None:
        return None, None
    try:
        return time_one_request(engine, spec, plan), None
    except NoEstimate as exc:
        return None, str(exc)


def _read_preflight(path: str | None) -> PreflightInfo | None:
    """The pre-flight check's output when there is one: it runs first, but nothing waits
    for it, and a single experiment may be asked for before it ever ran."""
    try:
        return PreflightInfo.from_json(json.loads(Path(path).read_text())) if path else None
    except (OSError, ValueError):
        return None


def _rate_probe(args) -> None:
    from perflab.core.records import write_json_atomic
    from perflab.engines import generation_options
    from perflab.measure.probe import run_probe

    spec = args.spec
    engine = _engine_of(args)
    try:
        engine.preflight()
        options = generation_options(spec, spec["generation"]["temperature"])
        result = run_probe(engine, options, spec["probe"], spec["warmup_requests"])
    finally:
        engine.close()
    write_json_atomic(Path(args.out), result.as_dict())
    rates = ", ".join(f"{rate:g}" for rate in result.rates)
    busy = result.saturated_server_s
    by_server = "" if busy is None else f" ({busy:.3g} s each by the server's clock)"
    _say(
        f"rate probe: {result.synchronous_rate:.3g} req/s one at a time, "
        f"{result.saturated_rate:.3g} req/s with {result.saturating_workers} open{by_server}, "
        f"in {result.probe_s:.1f} s; the sweep offers {rates} req/s"
    )


def _run_experiment(args) -> None:
    from perflab.measure.experiment import ExperimentPaths, SweepInputs, run_experiment
    from perflab.measure.lifeline import install_signal_handlers, watch_parent
    from perflab.measure.metadata import ExperimentMetadata
    from perflab.measure.progress import ExperimentProgress
    from perflab.measure.spec import experiment_from_spec

    install_signal_handlers()
    watch_parent()
    spec = args.spec
    experiment = experiment_from_spec(spec)
    paths = ExperimentPaths.in_dir(Path(args.out_dir), Path(args.failed_dir))
    preflight = _read_preflight(args.preflight)
    shown = [
        ExperimentProgress(
            experiment.id, experiment.requests, experiment.duration_s, spec["warmup_requests"], s
        )
        for s in (sys.stdout, sys.stderr)  # live on the terminal, plain lines in the log
    ]

    def progress(record) -> None:
        for line in shown:
            line(record)

    try:
        metadata = run_experiment(
            spec,
            paths,
            args.model,
            preflight.model_fingerprint if preflight else None,
            progress=progress,
            say=_say,
            sweep=SweepInputs(Path(args.probe), args.previous and Path(args.previous))
            if args.probe
            else None,
            server_binary=args.server_binary,
        )
    finally:
        for line in shown:
            line.close()
    from perflab.analyse.table_files import tabulate_experiment  # Polars: only once measured

    tabulate_experiment(paths.records, paths.metadata)
    measured = ExperimentMetadata.from_json(metadata)
    if measured.skipped:
        return
    run, job = measured.run, measured.job
    _say(
        f"{measured.experiment_id}: {run.n_records} records "
        f"({run.error_rate:.1%} errors) in {run.measured_wall_s:.1f} s measured; "
        f"job: start-up {job['started_after_s'] or float('nan'):.2f} s, "
        f"engine set-up {job['engine_setup_s']:.2f} s, requests {job['measure_s']:.2f} s"
    )
    if measured.reads_placement:
        _say(f"{measured.experiment_id}: {_placement_text(measured.placement)}")


def _placement_text(placement: ModelPlacement | None) -> str:
    """Where the model lived, as the job's log says it (Ollama's /api/ps)."""
    from perflab.present.spill import share_text, spilled_text

    if placement is None:
        return "/api/ps did not list the model once loaded (keep_alive unloaded it?)"
    text = f"{placement.size / 1e9:.2f} GB loaded, {share_text(placement.gpu_share)} in GPU memory"
    if placement.spilled:
        return f"{text}: {spilled_text(placement.cpu_share)}"
    return f"{text}: all on the CPU" if placement.cpu_only else f"{text}: all on the GPU"


def _summarize(args) -> None:
    from perflab.analyse.table_files import tabulate_experiment
    from perflab.measure.experiment import ExperimentPaths

    for directory in args.experiment_dirs:
        paths = ExperimentPaths.in_dir(Path(directory), Path(directory).parent / "failed")
        for required in (paths.records, paths.metadata):
            if not required.is_file():
                raise FileNotFoundError(
                    f"{required} is missing: {directory} is not a finished experiment directory "
                    "(it needs records.jsonl and metadata.json)"
                )
        row = tabulate_experiment(paths.records, paths.metadata)
        if not row:
            print(f"{directory}: not measured (a sweep point skipped), nothing to summarize")
            continue
        print(f"{row['experiment_id']}: {row['n_requests']} measured requests summarized")


def add_measure_commands(commands) -> None:
    command = commands.add_parser("preflight", help="check the engine can serve the model")
    command.add_argument(
        "--spec", type=json_object, required=True, help="experiment settings as JSON"
    )
    command.add_argument("--model", default=None, help="GGUF path (llamacpp)")
    command.add_argument("--server-binary", default=None, help=SERVER_BINARY_HELP)
    command.add_argument("--out", required=True)
    command.add_argument(
        "--estimate",
        type=json_object,
        metavar="JSON",
        help="the run's plan (perflab.measure.estimate.RunPlan as JSON): time one request, "
        "print the whole run's estimate",
    )
    command.set_defaults(func=_preflight)

    command = commands.add_parser(
        "rate-probe", help="probe synchronous and saturated throughput for a rate sweep"
    )
    command.add_argument("--spec", type=json_object, required=True, help="probe spec as JSON")
    command.add_argument("--model", default=None, help="GGUF path (llamacpp)")
    command.add_argument("--server-binary", default=None, help=SERVER_BINARY_HELP)
    command.add_argument("--out", required=True)
    command.set_defaults(func=_rate_probe)

    command = commands.add_parser("run-experiment", help="run one experiment")
    command.add_argument("--spec", type=json_object, required=True, help="experiment spec as JSON")
    command.add_argument("--model", default=None, help="GGUF path (llamacpp)")
    command.add_argument("--server-binary", default=None, help=SERVER_BINARY_HELP)
    command.add_argument("--out-dir", required=True)
    command.add_argument("--failed-dir", required=True)
    command.add_argument(
        "--preflight", default=None, help="preflight.json: reuse its model sha256 if unchanged"
    )
    command.add_argument("--probe", default=None, help="a sweep point: the sweep's probe JSON")
    command.add_argument(
        "--previous", default=None, help="a sweep point: the summary.json of the point below"
    )
    command.set_defaults(func=_run_experiment)

    command = commands.add_parser(
        "summarize",
        help="rewrite experiments' records.parquet and summaries from their JSON lines",
    )
    command.add_argument("experiment_dirs", nargs="+", metavar="DIR")
    command.set_defaults(func=_summarize)
