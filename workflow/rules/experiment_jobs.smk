# The functions of the experiment jobs: Snakemake calls each once per experiment,
# so each is a lookup in what the Snakefile computed once (docs/performance.md).
import inspect


def introspected_once(function):
    """``function`` with its signature read once. Snakemake reads a rule function's
    signature (inspect.signature) two or three times at every call, about a tenth of
    planning a large sweep; its own subpath() hands it the signature the same way.
    Without that hook (another Snakemake), Snakemake inspects as before."""
    try:
        from snakemake.common import overwrite_function_params
    except ImportError:
        return function
    overwrite_function_params(function, inspect.signature(function).parameters)
    return function


@introspected_once
def get_experiment_preflight(wildcards):
    """The pre-flight check of the experiment's target (its model's sha256, reused)."""
    return get_preflight_path(EXPERIMENTS[wildcards.experiment].target)


def get_experiment_preflight_param():
    """The experiment's pre-flight check as a parameter: a plain path without targets,
    since Snakemake inspects and calls a parameter function once per job."""
    return get_experiment_preflight if TARGETS else get_preflight_path(None)


@introspected_once
def get_experiment_spec(wildcards):
    experiment = EXPERIMENTS[wildcards.experiment]
    spec = experiment_spec(config, experiment, get_config_of_target(experiment.target))
    return json.dumps(
        spec, sort_keys=True
    )  # key order in a YAML file must not rerun jobs


@introspected_once
def get_experiment_inputs(wildcards):
    """What an experiment job reads: its target's model and server, a sweep point's
    inputs, and the target's anchor. One function for all of them: Snakemake inspects
    and calls each input function once per job, and with 10,000 experiments each one
    costs about a second of planning."""
    experiment = EXPERIMENTS[wildcards.experiment]
    return {
        **get_model_inputs_of_target(experiment.target),
        **get_sweep_inputs(experiment),
        "anchor": get_target_anchor_of(experiment.target),
    }


@introspected_once
def get_experiment_args(wildcards, input):
    """The model, server and sweep arguments of an experiment, from its inputs (so
    Snakemake records the inputs, not these, for its rerun check)."""
    args = (get_model_arg(wildcards, input), get_sweep_args(wildcards, input))
    return " ".join(arg for arg in args if arg)


def get_sweep_inputs(experiment):
    """A sweep point's inputs: the probe that decides its rate, and the point below it,
    which stops the sweep when its latency diverged. None for any other experiment."""
    if experiment.sweep_point is None:
        return {}
    inputs = {"probe": get_rate_probe_path(experiment.target)}
    if experiment.sweep_point > 1:
        below = replace(experiment, sweep_point=experiment.sweep_point - 1)
        inputs["previous"] = f"{RESULTS}/experiments/{below.id}/summary.json"
    return inputs


def get_sweep_args(wildcards, input):
    names = [name for name in ("probe", "previous") if name in input.keys()]
    return " ".join(f"--{name} {shlex.quote(input[name])}" for name in names)


@introspected_once
def get_experiment_priority(wildcards):
    """Earlier trials first: every first trial runs before any second trial, so slow
    drift of the machine spreads over all conditions instead of landing on some. Each
    experiment's priority is its place in that order, so with targets they alternate
    point by point too."""
    return len(EXPERIMENT_ORDER) - EXPERIMENT_ORDER[wildcards.experiment]
