import json
import os
import re
import shlex
import sys
from dataclasses import asdict

from perflab.config.load import (
    DEFAULT_CONFIG,
    ConfigError,
    read_yaml,
    user_config_files,
    validate_config,
)
from perflab.config.sweep import EXPERIMENT_ID_PATTERN, expand_experiments
from perflab.engines.ollama_store import uses_tiny_model as engine_uses_tiny_model
from perflab.models.smollm2 import MODEL_PATH as SMOLLM2_PATH
from perflab.models.smollm2 import QUANTIZATION as SMOLLM2_QUANTIZATION
from perflab.models.smollm2 import uses_smollm2 as engine_uses_smollm2
from perflab.measure.estimate import plan_run
from perflab.measure.experiment import experiment_spec
from perflab.config.targets import target_config, target_names


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
EXPERIMENT_ORDER = {
    experiment_id: index for index, experiment_id in enumerate(EXPERIMENTS)
}
TARGETS = target_names(config)
RESULTS = f"results/{RUN}"
REPORTS = f"reports/{RUN}"
LOGS = f"logs/{RUN}"


wildcard_constraints:
    experiment=EXPERIMENT_ID_PATTERN,
    target="[a-z0-9][a-z0-9_]*",
    quantization="f16|q8_0|q4_0|q4_1|q4_k",
    run_a="[A-Za-z0-9_][A-Za-z0-9._-]*",
    run_b="[A-Za-z0-9_][A-Za-z0-9._-]*",


def get_tiny_model_path(quantization=None):
    """The tiny model as built (f16), or quantized from it with llama.cpp's quantizer."""
    tiny = config["tiny_model"]
    name = (
        "tiny-llama3-d{embedding_length}-l{block_count}-ff{feed_forward_length}-s{seed}"
    )
    suffix = f"-{quantization}" if quantization and quantization != "f16" else ""
    return f"cache/models/{name.format(**tiny)}{suffix}.gguf"


def get_smollm2_path(quantization=None):
    """SmolLM2-135M-Instruct as fetched from its pinned wheel on PyPI (Q4_1), or
    requantized from that file with llama.cpp's quantizer."""
    if not quantization or quantization == SMOLLM2_QUANTIZATION:
        return str(SMOLLM2_PATH)
    return f"{SMOLLM2_PATH.parent}/SmolLM2-135M-Instruct-{quantization}.gguf"


def get_smollm2_fetch_benchmark():
    """The download's timing, beside the model it fetched (shared by every run)."""
    return get_smollm2_path().removesuffix(".gguf") + ".fetch.tsv"


def get_target(wildcards):
    """The target of a job: its experiment's, the {target} of a pre-flight check, or None."""
    if "experiment" in wildcards.keys():
        return EXPERIMENTS[wildcards.experiment].target
    return wildcards.get("target")


def get_target_anchor(wildcards=None):
    """A file made once per target that its pre-flight check and experiments take as
    input: it ties them into one connected job group (one Slurm job on one node),
    where the pre-flight check itself cannot be an input (see benchmark.smk)."""
    target = get_target(wildcards) if wildcards else None
    return (
        f"{RESULTS}/targets/{target}.anchor" if target else f"{RESULTS}/target.anchor"
    )


def get_target_config(wildcards=None):
    return target_config(config, get_target(wildcards) if wildcards else None)


def get_model_build_benchmark():
    """The model build's timing, beside the model it built (shared by every run)."""
    return get_tiny_model_path().removesuffix(".gguf") + ".build.tsv"


def get_setup_benchmarks(wildcards=None):
    """The setup jobs' timings for the log, by step. One that an existing output
    lacks (the model was built by an older perflab) is left out: asking for it
    would rebuild the model and so re-measure every experiment."""
    steps = {}
    if not TARGETS:  # with targets, each has its own check (and timing file)
        steps["preflight"] = (
            f"{RESULTS}/setup/preflight.tsv",
            get_preflight_path(None),
        )
    if uses_tiny_model():
        steps["model_build"] = (get_model_build_benchmark(), get_tiny_model_path())
    if engine_uses_smollm2(config["engine"]):
        steps["model_fetch"] = (get_smollm2_fetch_benchmark(), get_smollm2_path())
    return {
        name: benchmark
        for name, (benchmark, output) in steps.items()
        if os.path.exists(benchmark) or not os.path.exists(output)
    }


def uses_tiny_model():
    return engine_uses_tiny_model(config["engine"])


def get_model_inputs(wildcards=None):
    """The model file the workflow makes for the target: the tiny model (at its
    quantization) or the fetched SmolLM2; none for a model the engine finds itself."""
    engine = get_target_config(wildcards)["engine"]
    if engine_uses_tiny_model(engine):
        return {"model": get_tiny_model_path(engine.get("quantization"))}
    if engine_uses_smollm2(engine):
        return {"model": get_smollm2_path(engine.get("quantization"))}
    return {}


def get_model_arg(wildcards, input):
    return f"--model {input.model}" if "model" in input.keys() else ""


def get_preflight_path(target):
    return (
        f"{RESULTS}/preflight/{target}.json" if target else f"{RESULTS}/preflight.json"
    )


def get_preflight_files():
    """The pre-flight check of the one engine, or of each target."""
    return [get_preflight_path(target) for target in TARGETS or (None,)]


def get_experiment_preflight(wildcards):
    """The pre-flight check of the experiment's target (its model's sha256, reused)."""
    return get_preflight_path(EXPERIMENTS[wildcards.experiment].target)


def get_settings_json(wildcards=None):
    """Engine and generation settings of the target, without any experiment."""
    single = get_target_config(wildcards)
    settings = {key: single[key] for key in ("engine", "generation", "calibration")}
    return json.dumps(settings, sort_keys=True)


def get_run_plan_json(wildcards=None):
    """What the target will be sent, for preflight's estimate of its length."""
    target = get_target(wildcards) if wildcards else None
    experiments = [e for e in EXPERIMENTS.values() if e.target == target]
    plan = plan_run(experiments, config["warmup_requests"])
    return json.dumps(asdict(plan), sort_keys=True)


def get_experiment_spec(wildcards):
    spec = experiment_spec(config, EXPERIMENTS[wildcards.experiment])
    return json.dumps(
        spec, sort_keys=True
    )  # key order in a YAML file must not rerun jobs


def get_experiment_priority(wildcards):
    """Earlier trials first: every first trial runs before any second trial, so slow
    drift of the machine spreads over all conditions instead of landing on some. Each
    experiment's priority is its place in that order, so with targets they alternate
    point by point too."""
    return len(EXPERIMENT_ORDER) - EXPERIMENT_ORDER[wildcards.experiment]


def get_preflight_priority():
    """Above every experiment's priority: models and checks come first, so a target
    whose model is still to be quantized does not fall behind the others' trials."""
    return len(EXPERIMENTS) + 1


def get_experiment_group(wildcards=None):
    """The job group of one engine target: on a cluster its pre-flight check and
    experiments run as one job on one node, beside the server they measure."""
    engine = get_target_config(wildcards)["engine"]
    name = get_target(wildcards) if wildcards else None
    target = f"target-{name + '-' if name else ''}{engine['name']}-{engine['model']}"
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
    outputs = [
        f"{REPORTS}/day1-log.md",
        f"{REPORTS}/day1-log.html",
    ]
    if len(TARGETS) >= 2:
        outputs.append(f"{REPORTS}/comparison.md")
    return outputs
