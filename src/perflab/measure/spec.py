"""What a measuring job (an experiment or a probe) is given of the config: the
target's settings, in its spec; nothing else of the config reruns it."""

from __future__ import annotations

from perflab.config.sweep import Experiment
from perflab.engines import with_threads

SETTINGS_KEYS = (
    "engine",
    "generation",
    "calibration",
    "warmup_requests",
    "error_budget",
    "sampler",
)

# The rate suite's settings an open-loop experiment runs by (its rate, arrival and
# bound on requests in flight are in the experiment itself).
OPEN_LOOP_KEYS = ("seed", "on_full", "max_send_lag_s", "min_rate_fraction")


def experiment_spec(config: dict, experiment: Experiment, single: dict | None = None) -> dict:
    """What one experiment job needs, and nothing else: changing any of it reruns the job.

    A target's experiment takes that target's engine and calibration (``single``, the
    target's one-target config, when the caller made it once for all its experiments),
    and names the machine it shares with other targets (held as a lock while it runs).
    """
    from perflab.config.design import placement
    from perflab.config.targets import machine_of, target_config, target_names

    if single is None:
        single = target_config(config, experiment.target)
    spec = {key: single[key] for key in SETTINGS_KEYS} | {"experiment": experiment.params()}
    if experiment.threads is not None:  # the threads suite: this point's compute threads
        spec["engine"] = with_threads(spec["engine"], experiment.threads)
    if experiment.open_loop:
        rate = config["suites"]["rate"]
        spec["open_loop"] = {key: rate[key] for key in OPEN_LOOP_KEYS}
        if experiment.sweep_point is not None:
            spec["open_loop"]["diverge_factor"] = rate["diverge_factor"]
        lengths = {key: rate[key] for key in ("prompt_tokens", "output_tokens") if rate[key]}
        if lengths:  # only then: a spec without them stays as it was
            spec["open_loop"]["lengths"] = lengths
        if rate["turns"] > 1:
            spec["open_loop"]["turns"] = rate["turns"]
        if rate["shared_prefix_tokens"]:
            spec["open_loop"]["shared_prefix_tokens"] = rate["shared_prefix_tokens"]
    names = target_names(config) or (None,)
    spec["design"] = placement(config["order_seed"], experiment, names).as_dict()
    if experiment.target is not None:
        spec["machine"] = machine_of(config, experiment.target)
    return spec


def experiment_from_spec(spec: dict) -> Experiment:
    fields = dict(spec["experiment"])
    fields.pop("id", None)
    fields.pop("condition_id", None)
    fields["suites"] = tuple(fields["suites"])
    return Experiment(**fields)
