import json
import os
import re
import shlex
import sys
from dataclasses import asdict

from perflab.config import (
    DEFAULT_CONFIG,
    EXPERIMENT_ID_PATTERN,
    ConfigError,
    expand_experiments,
    read_yaml,
    user_config_files,
    validate_config,
)
from perflab.engines.ollama_store import uses_tiny_model as engine_uses_tiny_model
from perflab.estimate import plan_run
from perflab.experiment import experiment_spec


def get_config_layers():
    """The config files in merge order: config/config.yaml, then each --configfile."""
    files = [str(path) for path in getattr(workflow, "configfiles", None) or []]
    ordered = [str(DEFAULT_CONFIG)] + [f for f in files if f != str(DEFAULT_CONFIG)]
    return [(name, read_yaml(name)) for name in ordered]


def get_config_files(wildcards=None):
    """This run's --configfile files as a command line takes them, for the log's rerun commands."""
    files = user_config_files(getattr(workflow, "configfiles", None) or [])
    return " ".join(shlex.quote(name) for name in files)


def check_config():
    """Refuse a bad config before any job, naming file, key, value and fix."""
    try:
        layers = get_config_layers()
        source = " + ".join(name for name, _ in layers)
        validate_config(config, source=source, layers=layers)
    except ConfigError as error:
        print(error, file=sys.stderr)
        raise SystemExit(1) from None


check_config()

RUN = config["run"]
EXPERIMENTS = expand_experiments(config)
RESULTS = f"results/{RUN}"
REPORTS = f"reports/{RUN}"
LOGS = f"logs/{RUN}"


wildcard_constraints:
    experiment=EXPERIMENT_ID_PATTERN,


def get_tiny_model_path():
    tiny = config["tiny_model"]
    name = (
        "tiny-llama3-d{embedding_length}-l{block_count}-ff{feed_forward_length}-s{seed}"
    )
    return f"cache/models/{name.format(**tiny)}.gguf"


def get_model_build_benchmark():
    """The model build's timing, beside the model it built (shared by every run)."""
    return get_tiny_model_path().removesuffix(".gguf") + ".build.tsv"


def get_setup_benchmarks(wildcards=None):
    """The setup jobs' timings for the log, by step. One that an existing output
    lacks (the model was built by an older perflab) is left out: asking for it
    would rebuild the model and so re-measure every experiment."""
    steps = {
        "preflight": (f"{RESULTS}/setup/preflight.tsv", f"{RESULTS}/preflight.json")
    }
    if uses_tiny_model():
        steps["model_build"] = (get_model_build_benchmark(), get_tiny_model_path())
    return {
        name: benchmark
        for name, (benchmark, output) in steps.items()
        if os.path.exists(benchmark) or not os.path.exists(output)
    }


def uses_tiny_model():
    return engine_uses_tiny_model(config["engine"])


# The model is the same for every job: plain values, not input functions, which
# Snakemake would call (and introspect) once per job.
def get_model_inputs():
    return {"model": get_tiny_model_path()} if uses_tiny_model() else {}


def get_model_arg():
    return f"--model {get_tiny_model_path()}" if uses_tiny_model() else ""


def get_settings_json(wildcards=None):
    """Engine and generation settings, without any experiment."""
    settings = {key: config[key] for key in ("engine", "generation", "calibration")}
    return json.dumps(settings, sort_keys=True)


def get_run_plan_json(wildcards=None):
    """What the run will send, for preflight's estimate of its length."""
    plan = plan_run(EXPERIMENTS.values(), config["warmup_requests"])
    return json.dumps(asdict(plan), sort_keys=True)


def get_experiment_spec(wildcards):
    spec = experiment_spec(config, EXPERIMENTS[wildcards.experiment])
    return json.dumps(
        spec, sort_keys=True
    )  # key order in a YAML file must not rerun jobs


def get_experiment_priority(wildcards):
    """Earlier trials first: every first trial runs before any second trial, so slow
    drift of the machine spreads over all conditions instead of landing on some."""
    return config["repeats"] - EXPERIMENTS[wildcards.experiment].trial


def get_preflight_priority():
    """Above every experiment's priority: the check and the estimate come first."""
    return config["repeats"] + 1


def get_experiment_group(wildcards=None):
    """The job group of one engine target: on a cluster its pre-flight check and
    experiments run as one job on one node, beside the server they measure."""
    engine = config["engine"]
    target = f"target-{engine['name']}-{engine['model']}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", target)


def get_experiment_ids():
    return sorted(EXPERIMENTS)


def get_experiment_files(name):
    return expand(
        f"{RESULTS}/experiments/{{experiment}}/{name}", experiment=get_experiment_ids()
    )


def get_suite_files(suite, name):
    """One file of each experiment in ``suite``: a rule that needs a few experiments
    depends on those, not on every experiment of the run."""
    ids = sorted(
        experiment_id
        for experiment_id, experiment in EXPERIMENTS.items()
        if suite in experiment.suites
    )
    return expand(f"{RESULTS}/experiments/{{experiment}}/{name}", experiment=ids)


def get_final_outputs():
    return [
        f"{REPORTS}/day1-log.md",
        f"{REPORTS}/day1-log.html",
    ]
