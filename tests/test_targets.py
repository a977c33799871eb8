"""Several targets in one config: ids, paths, specs, checks, and the workflow's jobs."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import run_snakemake

from perflab.config.load import ConfigError, load_config_file, load_config_files
from perflab.config.sweep import EXPERIMENT_ID_PATTERN, expand_experiments
from perflab.config.targets import baseline, target_config
from perflab.measure.spec import experiment_spec

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "config" / "config.yaml"
ONE_SUITE = {
    "suites": {
        "basic": {"prompts": ["short"], "requests": 3},
        "prompt_length": {"enabled": False},
        "temperature": {"enabled": False},
        "concurrency": {"workers": [1, 2], "requests": 4},
        "resources": {"enabled": False},
        "kv_cache": {"enabled": False},
    }
}


def write(tmp_path: Path, data: dict, name: str = "targets.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def two_targets(**extra) -> dict:
    return {
        "run": "two",
        "repeats": 2,
        "calibration": {"itl_s": 0.004, "load_time_s": 0},
        "targets": [
            {"name": "fast", "engine": {"name": "calibration", "model": "m"}},
            {
                "name": "slow",
                "engine": {"name": "calibration", "model": "m"},
                "calibration": {"itl_s": 0.006},
                "machine": "other",
            },
        ],
        **ONE_SUITE,
        **extra,
    }


def test_every_suite_runs_against_each_target_with_the_target_in_id_and_path(tmp_path):
    config = load_config_file(write(tmp_path, two_targets()), base=DEFAULT)
    experiments = expand_experiments(config)
    points = {"short-t0.7-w1-n3", "medium-t0-w1-n4", "medium-t0-w2-n4"}
    expected = {f"{t}--{p}-r{k}" for t in ("fast", "slow") for p in points for k in (1, 2)}
    assert set(experiments) == expected
    for experiment_id, experiment in experiments.items():
        assert re.fullmatch(EXPERIMENT_ID_PATTERN, experiment_id)
        assert experiment.id == f"{experiment.condition_id}-r{experiment.trial}"
        assert experiment.condition_id == f"{experiment.target}--{experiment.point_id}"
    order = list(experiments)
    # every first trial before any second; each point's two targets back to back, and
    # the one that goes first at a point in trial 1 goes second in trial 2 (ABBA)
    assert all(i < 6 for i, e in enumerate(order) if e.endswith("-r1"))
    pairs = [[experiments[e] for e in order[i : i + 2]] for i in range(0, len(order), 2)]
    assert all({a.target, b.target} == {"fast", "slow"} for a, b in pairs)
    assert all(a.point_id == b.point_id and a.trial == b.trial for a, b in pairs)
    first = {(a.point_id, a.trial): a.target for a, _ in pairs}
    assert all(first[(point, 1)] != first[(point, 2)] for point in points)


def test_a_target_spec_carries_its_own_engine_timings_and_machine(tmp_path):
    config = load_config_file(write(tmp_path, two_targets()), base=DEFAULT)
    experiments = expand_experiments(config)
    slow = experiment_spec(config, experiments["slow--short-t0.7-w1-n3-r1"])
    fast = experiment_spec(config, experiments["fast--short-t0.7-w1-n3-r1"])
    assert slow["calibration"] == {"itl_s": 0.006, "load_time_s": 0}
    assert fast["calibration"] == {"itl_s": 0.004, "load_time_s": 0}
    assert slow["engine"]["name"] == "calibration" and slow["engine"]["n_ctx"] == 4096
    assert (fast["machine"], slow["machine"]) == ("local", "other")
    assert slow["experiment"]["target"] == "slow"
    assert baseline(config) == "fast"
    assert target_config(config, "slow")["calibration"]["itl_s"] == 0.006


def test_a_single_target_config_keeps_its_ids_and_specs():
    """No target key in the spec, no prefix on the id: a config without targets keeps
    the ids it had (its spec holds its place in the design, ``design``)."""
    config = load_config_file(DEFAULT)
    experiments = expand_experiments(config)
    assert "medium-t0.7-w1-n8-r1" in experiments
    spec = experiment_spec(config, experiments["medium-t0.7-w1-n8-r1"])
    assert "target" not in spec["experiment"] and "machine" not in spec
    assert "quantization" not in spec["engine"]
    assert set(spec) == {
        "engine",
        "generation",
        "calibration",
        "warmup_requests",
        "error_budget",
        "sampler",
        "experiment",
        "design",
    }


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"targets": [{"name": "a", "engine": {}}, {"name": "a", "engine": {}}]},
            "targets[1].name: 'a' is also the name of targets[0]; give every target its own name",
        ),
        (
            {"targets": [{"name": "a", "engine": {}}], "baseline": "b"},
            "baseline: 'b' is not a target's name (targets: a)",
        ),
        ({"targets": [{"name": "A-1", "engine": {}}]}, "targets[0].name: 'A-1' does not match"),
        ({"targets": [{"engine": {}}]}, "targets[0]: 'name' is a required property"),
        (
            {"targets": [{"name": "a", "engine": {"name": "ollama", "host": "ftp://x"}}]},
            "targets[0].engine.host: 'ftp://x': scheme 'ftp' is not http or https",
        ),
        (
            {"targets": [{"name": "a", "engine": {"name": "ollama", "quantization": "q8_0"}}]},
            "targets[0].engine.quantization: 'q8_0' applies only to llamacpp with the model the "
            "workflow makes",
        ),
        (
            {"targets": [{"name": "a", "engine": {"quantization": "q3"}}]},
            "targets[0].engine.quantization: 'q3' is not allowed; use one of 'f16', 'q8_0'",
        ),
        (
            {"targets": [{"name": "a", "engine": {}, "calibration": {"itl_s": -1}}]},
            "targets[0].calibration.itl_s: -1 is less than the minimum of 0",
        ),
    ],
)
def test_bad_targets_are_refused_naming_file_key_and_fix(tmp_path, change, expected):
    path = write(tmp_path, change)
    with pytest.raises(ConfigError) as error:
        load_config_files([DEFAULT, path])
    assert expected in str(error.value)
    assert str(path) in str(error.value)


def snakemake_dry_run(workdir: Path, *configfiles: str) -> str:
    """What Snakemake would run in ``workdir``, a copy of the workflow."""
    result = run_snakemake(workdir, "-n", "--configfile", *configfiles, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_workflow_checks_each_target_once_and_names_paths_by_target(tmp_path, copy_workflow):
    output = snakemake_dry_run(copy_workflow(), str(write(tmp_path, two_targets())))
    assert "results/two/preflight/fast.json" in output
    assert "results/two/preflight/slow.json" in output
    assert "results/two/experiments/slow--medium-t0-w2-n4-r2/records.jsonl" in output
    assert re.search(r"run_experiment\s+12\b", output)
    assert re.search(r"comparison\s+1\b", output)


def test_a_single_target_config_has_one_check_and_no_comparison(copy_workflow):
    workdir = copy_workflow()
    output = snakemake_dry_run(workdir, str(workdir / "config" / "config.yaml"))
    assert re.search(r"^preflight\s+1\b", output, re.M)
    assert "preflight_target" not in output and not re.search(r"^comparison\s", output, re.M)
    assert "results/llamacpp-smollm2/experiments/medium-t0.7-w1-n8-r1/records.jsonl" in output
    assert re.search(r"^fetch_smollm2\s+1\b", output, re.M)  # the default model, fetched once


def test_quantized_targets_each_get_their_model_built_once(tmp_path, copy_workflow):
    data = {
        "run": "quant",
        "targets": [
            {"name": name, "engine": {"model": "tiny-llama3", "quantization": name}}
            for name in ("f16", "q8_0", "q4_0")
        ],
        **ONE_SUITE,
    }
    output = snakemake_dry_run(copy_workflow(), str(write(tmp_path, data)))
    assert re.search(r"quantize_tiny_model\s+2\b", output)
    assert re.search(r"build_tiny_model\s+1\b", output)
    assert "-q8_0.gguf" in output and "-q4_0.gguf" in output


def test_smollm2_targets_are_requantized_from_the_one_fetched_file(tmp_path, copy_workflow):
    engine = {"name": "llamacpp", "model": "smollm2-135m"}
    data = {
        "run": "smolquant",
        "targets": [{"name": "q4_1", "engine": engine}]
        + [{"name": q, "engine": engine | {"quantization": q}} for q in ("q8_0", "q4_k")],
        **ONE_SUITE,
    }
    output = snakemake_dry_run(copy_workflow(), str(write(tmp_path, data)))
    assert re.search(r"fetch_smollm2\s+1\b", output)
    assert re.search(r"quantize_smollm2\s+2\b", output)
    assert "build_tiny_model" not in output
    assert "SmolLM2-135M-Instruct-q8_0.gguf" in output and "-q4_k.gguf" in output


@pytest.mark.parametrize("top_level_model", ["tiny-llama3", "smollm2-135m"])
def test_a_model_no_target_measures_is_neither_built_nor_fetched(
    tmp_path, copy_workflow, top_level_model
):
    """With targets, the top-level engine is only where their engine blocks start: its
    model is made only when a target loads or serves it."""
    data = two_targets(engine={"name": "llamacpp", "model": top_level_model})
    output = snakemake_dry_run(copy_workflow(), str(write(tmp_path, data)))
    for rule in ("fetch_vocab", "build_tiny_model", "fetch_smollm2"):
        assert not re.search(rf"^{rule}\s", output, re.M), rule
    assert re.search(r"^preflight_target\s+2\b", output, re.M)


def test_a_target_serving_the_tiny_model_gets_it_built(tmp_path, copy_workflow):
    served = {"name": "openai", "model": "tiny-llama3", "launch": {"server": "llama-server"}}
    data = {"run": "served", "targets": [{"name": "server", "engine": served}], **ONE_SUITE}
    output = snakemake_dry_run(copy_workflow(), str(write(tmp_path, data)))
    assert re.search(r"^build_tiny_model\s+1\b", output, re.M)
    assert not re.search(r"^fetch_smollm2\s", output, re.M)


def test_validate_lists_the_targets_experiments(tmp_path, capsys):
    from perflab.cli import main

    assert main(["validate", str(write(tmp_path, two_targets()))]) == 0
    out = capsys.readouterr().out
    assert "12 experiments" in out and "slow--short-t0.7-w1-n3-r2" in out


def test_an_experiment_waits_for_its_machine_held_by_another_target(tmp_path, monkeypatch):
    """Targets on one machine take turns: the machine's lock is held across processes."""
    import time

    from conftest import FAST_TIMING

    from perflab.measure.experiment import ExperimentPaths, run_experiment

    monkeypatch.setenv("PERFLAB_LOCK_DIR", str(tmp_path / "locks"))
    data = two_targets(warmup_requests=0, calibration=FAST_TIMING | {"output_tokens": 4})
    data["targets"][1]["machine"] = "box"
    config = load_config_file(write(tmp_path, data), base=DEFAULT)
    spec = experiment_spec(config, expand_experiments(config)["slow--short-t0.7-w1-n3-r1"])
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\n"
            "from perflab.measure.locks import target_lock\n"
            "with target_lock('machine box', {'experiment': 'fast-exp', 'out_dir': '/x'}, print):\n"
            "    print('held', flush=True); time.sleep(1.5)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={"PERFLAB_LOCK_DIR": str(tmp_path / "locks"), "PATH": "/usr/bin:/bin"},
    )
    assert holder.stdout.readline().strip() == "held"
    out = tmp_path / "slow"
    said: list[str] = []
    started = time.monotonic()
    paths = ExperimentPaths(
        out / "records.jsonl", out / "samples.jsonl", out / "metadata.json", tmp_path / "failed"
    )
    metadata = run_experiment(spec, paths, say=said.append)
    holder.wait(timeout=30)
    assert time.monotonic() - started > 0.5
    assert said and said[0].startswith("waiting for machine box: held by pid")
    assert metadata["experiment"]["target"] == "slow"
