import json

from perflab.config import (
    EXPERIMENT_ID_PATTERN,
    ConfigError,
    expand_experiments,
    validate_config,
)
from perflab.experiment import experiment_spec


def get_config_source():
    files = getattr(workflow, "configfiles", None) or ["config/config.yaml"]
    return ", ".join(str(path) for path in files)


try:
    validate_config(config, source=get_config_source())
except ConfigError as error:
    raise WorkflowError(str(error)) from None

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


def uses_tiny_model():
    engine = config["engine"]
    return engine["name"] == "llamacpp" and not engine["model_path"]


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


def get_experiment_spec(wildcards):
    spec = experiment_spec(config, EXPERIMENTS[wildcards.experiment])
    return json.dumps(
        spec, sort_keys=True
    )  # key order in a YAML file must not rerun jobs


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
