import json
import os
import shlex
import sys
from dataclasses import asdict, replace
from functools import cache

from perflab.config.load import (
    DEFAULT_CONFIG,
    ConfigError,
    config_problems,
    format_problems,
    read_yaml,
    user_config_files,
)
from perflab.config.sweep import EXPERIMENT_ID_PATTERN, expand_experiments
from perflab.engines.launch import as_served
from perflab.engines.ollama_store import uses_tiny_model as engine_uses_tiny_model
from perflab.models.llama_build import PREBUILT_ENV, sdist_name
from perflab.models.smollm2 import MODEL_PATH as SMOLLM2_PATH
from perflab.models.smollm2 import QUANTIZATION as SMOLLM2_QUANTIZATION
from perflab.models.smollm2 import uses_smollm2 as engine_uses_smollm2
from perflab.measure.estimate import plan_run
from perflab.measure.spec import experiment_spec
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
    """Refuse a bad config before any job, naming file, key, value and fix. The files
    are read again only to name the one that set a bad key: Snakemake has merged them.
    """
    try:
        problems = config_problems(config)
        if problems:
            layers = get_config_layers()
            source = " + ".join(name for name, _ in layers)
            raise ConfigError(format_problems(problems, source, layers))
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
LLAMA_SDIST = sdist_name()
LLAMA_TOOLS = f"cache/llama.cpp/{LLAMA_SDIST.removesuffix('.tar.gz')}"


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
    input: it connects them, so that the Slurm profile's job group holds one target
    (one Slurm job on one node), where the pre-flight check itself cannot be an
    input (see benchmark.smk)."""
    return get_target_anchor_of(get_target(wildcards) if wildcards else None)


def get_target_anchor_of(target):
    return (
        f"{RESULTS}/targets/{target}.anchor" if target else f"{RESULTS}/target.anchor"
    )


def get_target_config(wildcards=None):
    return get_config_of_target(get_target(wildcards) if wildcards else None)


@cache
def get_config_of_target(target):
    """The one-target config of ``target``, made once (read it, never change it)."""
    return target_config(config, target)


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
    if any_target_serves(engine_uses_tiny_model):
        steps["model_build"] = (get_model_build_benchmark(), get_tiny_model_path())
    if any_target_serves(engine_uses_smollm2):
        steps["model_fetch"] = (get_smollm2_fetch_benchmark(), get_smollm2_path())
    return {
        name: benchmark
        for name, (benchmark, output) in steps.items()
        if os.path.exists(benchmark) or not os.path.exists(output)
    }


def get_measured_engines():
    """The engine of each target, or the one engine of a config without targets: with
    targets, the top-level engine is only the default their engine blocks start from."""
    return [target_config(config, target)["engine"] for target in TARGETS] or [
        config["engine"]
    ]


def any_target_serves(uses_model):
    """Whether a measured engine loads or serves the model ``uses_model`` recognises."""
    return any(uses_model(as_served(engine)) for engine in get_measured_engines())


def launches_built_server(engine):
    """Whether the engine launches the llama-server that the workflow builds."""
    launch = engine.get("launch") or {}
    return launch.get("server") == "llama-server" and not launch.get("binary")


def get_model_inputs(wildcards=None):
    """The model a job's engine loads or serves (the tiny model at its quantization,
    or the fetched SmolLM2; none for a model the engine finds itself), and the
    llama-server it launches."""
    return get_model_inputs_of(get_target_config(wildcards)["engine"])


@cache
def get_model_inputs_of_target(target):
    return get_model_inputs_of(get_config_of_target(target)["engine"])


def get_model_inputs_of(engine):
    inputs = {}
    served = as_served(engine)
    if engine_uses_tiny_model(served):
        inputs["model"] = get_tiny_model_path(engine.get("quantization"))
    elif engine_uses_smollm2(served):
        inputs["model"] = get_smollm2_path(engine.get("quantization"))
    if launches_built_server(engine):
        inputs["server"] = f"{LLAMA_TOOLS}/llama-server"
    return inputs


def get_model_arg(wildcards, input):
    args = f"--model {input.model}" if "model" in input.keys() else ""
    if "server" in input.keys():
        args += f" --server-binary {input.server}"
    return args.strip()


def get_peer_engine():
    from perflab.config.targets import baseline

    return target_config(config, baseline(config))["engine"]


def get_peer_model_input(wildcards=None):
    """The baseline target's GGUF: the workflow's model, or engine.model_path."""
    engine = get_peer_engine()
    made = get_model_inputs_of(engine)
    if "model" in made:
        return {"model": made["model"]}
    return {"model": engine["model_path"]}


def get_peer_threads():
    """The baseline engine's threads, as llama-cpp-python or llama-server would pick them
    when unset (half the logical cores; llama-server's physical cores)."""
    engine = get_peer_engine()
    launch = engine.get("launch") or {}
    threads = launch.get("threads") if launch else engine.get("n_threads")
    if threads:
        return threads
    if launch:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    return max(1, (os.cpu_count() or 2) // 2)


def get_peer_target_arg():
    from perflab.config.targets import baseline

    chosen = baseline(config)
    return f"--target {chosen}" if chosen else ""


def get_peer_files(wildcards=None):
    return (
        {"peer": f"{RESULTS}/peer/llama-bench.json"}
        if config["peer"]["llama_bench"]
        else {}
    )


def get_threads_counts():
    """The threads suite's counts as llama-bench's -t takes them (1,2,4)."""
    return ",".join(str(count) for count in config["suites"]["threads"]["threads"])


def get_threads_peer_files(wildcards=None):
    """llama-bench over the threads suite's counts, when the suite runs with it."""
    suite = config["suites"]["threads"]
    if suite["enabled"] and suite["llama_bench"]:
        return {"threads_peer": f"{RESULTS}/threads/llama-bench.json"}
    return {}


def get_machine_path():
    """Per host and thread count: the ceilings are the machine's, not the run's."""
    import socket

    return f"cache/machine/{socket.gethostname()}-t{get_peer_threads()}.json"


def get_roofline_files(wildcards=None):
    """The machine's ceilings and the baseline's GGUF, when roofline is on and the
    baseline serves a GGUF perflab knows (an Ollama model it does not)."""
    if not config["roofline"]:
        return {}
    engine = get_peer_engine()
    model = get_model_inputs_of(engine).get("model") or engine.get("model_path")
    if not model:
        return {}
    return {"machine": get_machine_path(), "roofline_model": model}


def get_llama_build_inputs(wildcards=None):
    """The sdist to build from; none when prebuilt tools are linked instead."""
    if os.environ.get(PREBUILT_ENV):
        return {}
    return {"sdist": f"cache/sdist/{LLAMA_SDIST}"}


def get_llama_sdist_arg(wildcards, input):
    return f"--sdist {input.sdist}" if "sdist" in input.keys() else ""


def get_preflight_path(target):
    return (
        f"{RESULTS}/preflight/{target}.json" if target else f"{RESULTS}/preflight.json"
    )


def get_preflight_files():
    """The pre-flight check of the one engine, or of each target."""
    return [get_preflight_path(target) for target in TARGETS or (None,)]


def get_config_keys(*keys):
    """The config keys a rule reads, for its params (a key the config lacks is left out)."""
    return {key: config[key] for key in keys if key in config}


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


def get_rate_probe_path(target):
    return (
        f"{RESULTS}/rate_probe/{target}.json"
        if target
        else f"{RESULTS}/rate_probe.json"
    )


def get_rate_probe_files():
    """The probe of every target that sweeps to the limit, for the capacity finding."""
    targets = {e.target for e in EXPERIMENTS.values() if e.sweep_point is not None}
    return [get_rate_probe_path(target) for target in sorted(targets, key=str)]


def get_probe_spec(wildcards=None):
    """What the rate sweep's probe of a target needs (the target's settings, the probe keys)."""
    # its load runner: only a rate sweep needs it
    from perflab.measure.probe import probe_spec

    target = get_target(wildcards) if wildcards else None
    return json.dumps(probe_spec(config, target), sort_keys=True)


def get_preflight_priority():
    """Above every experiment's priority: models and checks come first, so a target
    whose model is still to be quantized does not fall behind the others' trials."""
    return len(EXPERIMENTS) + 1


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
