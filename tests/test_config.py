import copy
import re
from pathlib import Path

import pytest
import yaml

from perflab.config.load import ConfigError, load_config_file, merge_configs, validate_config
from perflab.config.sweep import EXPERIMENT_ID_PATTERN, expand_experiments
from perflab.measure.spec import experiment_spec

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "config" / "config.yaml"


def default_config() -> dict:
    return yaml.safe_load(DEFAULT.read_text())


def test_default_config_is_valid_and_has_the_seed_values():
    config = load_config_file(DEFAULT)
    suites = config["suites"]
    assert config["engine"]["name"] == "llamacpp"
    assert config["prompts"]["short"] == "What is AI?"
    assert config["engine"]["model"] == "smollm2-135m"
    assert config["prompts"]["medium"].startswith("Explain the concept of machine learning")
    assert config["prompts"]["long"].startswith("A transformer model has an embedding layer")
    assert config["prompts"]["very_long"].endswith("bound by memory bandwidth, and why?")
    # the seed's 100 requests per basic prompt, as 3 trials of 34
    assert config["repeats"] == 3 and suites["basic"]["requests"] * config["repeats"] >= 100
    assert suites["basic"]["prompts"] == ["short", "medium", "long"]
    assert suites["prompt_length"]["prompts"] == ["tiny", "short", "medium", "long", "very_long"]
    assert suites["temperature"]["temperatures"] == [0.0, 0.7, 1.5]
    assert suites["concurrency"]["workers"] == [1, 2, 4]
    assert suites["resources"]["duration_s"] == 10


def test_defaults_are_filled():
    config = validate_config(
        {"prompts": {"medium": "x", "short": "y", "long": "z", "tiny": "a", "very_long": "b"}}
    )
    assert config["generation"]["max_tokens"] == 256
    assert config["engine"]["model"] == "smollm2-135m" and config["engine"]["ignore_eos"] is None
    assert config["suites"]["concurrency"]["workers"] == [1, 2, 4]
    assert config["tiny_model"]["block_count"] == 4
    assert config["warmup_requests"] == 3


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"bogus": 1}, "'bogus' was unexpected"),
        (
            {"engine": {"name": "vllm"}},
            "engine.name: 'vllm' is not allowed; use one of 'llamacpp', 'ollama'",
        ),
        (
            {"suites": {"concurrency": {"workers": [0]}}},
            "suites.concurrency.workers[0]: 0 is less than the minimum of 1",
        ),
        (
            {"suites": {"temperature": {"temperatures": ["hot"]}}},
            "suites.temperature.temperatures[0]: 'hot' is not of type 'number'",
        ),
        ({"suites": {"temperature": {"temperatures": [3.0]}}}, "is greater than the maximum of 2"),
        (
            {"suites": {"temperature": {"prompt": "missing"}}},
            "suites.temperature.prompt: prompt 'missing' is not defined",
        ),
        (
            {"generation": {"max_tokens": 0}},
            "generation.max_tokens: 0 is less than the minimum of 1",
        ),
        ({"run": "has space"}, "run: 'has space' does not match"),
        ({"expected_tps": [20, 10]}, "expected_tps: lower bound 20 is above upper bound 10"),
    ],
)
def test_bad_values_are_named(change, expected):
    config = default_config()
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            for inner, inner_value in value.items():
                if isinstance(inner_value, dict):
                    config[key][inner] = {**config[key].get(inner, {}), **inner_value}
                else:
                    config[key][inner] = inner_value
        else:
            config[key] = value
    with pytest.raises(ConfigError) as error:
        validate_config(config, source="my.yaml")
    assert expected in str(error.value)
    assert "my.yaml" in str(error.value)


def test_every_error_is_reported_at_once():
    config = default_config()
    config["bogus"] = 1
    config["generation"]["max_tokens"] = -1
    with pytest.raises(ConfigError) as error:
        validate_config(config)
    assert "bogus" in str(error.value) and "max_tokens" in str(error.value)


def test_string_from_command_line_gets_a_hint():
    config = default_config()
    config["suites"]["concurrency"]["workers"] = "[1,2]"
    with pytest.raises(ConfigError, match="arrive as strings"):
        validate_config(config)


def test_experiments_expand_one_per_distinct_point():
    config = load_config_file(DEFAULT)
    config["repeats"] = 1
    experiments = expand_experiments(config)
    # 3 basic + 5 prompt lengths + 3 temperatures + 3 worker counts + 1 resources + 2 kv_cache,
    # minus the medium/0/1-worker/8-request point temperature and concurrency share (the
    # concurrency suite's own temperature is 0) and the long/0.7/1-worker/4-request point
    # that kv_cache's bust half shares with prompt_length
    assert len(experiments) == 3 + 5 + 3 + 3 + 1 + 2 - 2
    shared = experiments["medium-t0-w1-n8-r1"]
    assert shared.suites == ("temperature", "concurrency")
    assert shared.condition_id == "medium-t0-w1-n8" and shared.trial == 1
    assert experiments["medium-t0.7-w1-d10s-r1"].duration_s == 10
    assert experiments["long-t0.7-w1-n4-r1"].suites == ("prompt_length", "kv_cache")
    reuse = experiments["long-t0.7-w1-n4-reuse-r1"]
    assert reuse.suites == ("kv_cache",) and reuse.prompt_cache == "reuse"
    assert all(e.prompt_cache == "bust" for e in experiments.values() if e is not reuse)
    members = {
        suite: [e for e in experiments.values() if suite in e.suites]
        for suite in ("basic", "prompt_length", "temperature", "concurrency")
    }
    assert len(members["basic"]) == 3 and len(members["prompt_length"]) == 5
    assert len(members["temperature"]) == 3 and len(members["concurrency"]) == 3


def test_changing_one_temperature_changes_one_experiment():
    config = load_config_file(DEFAULT)
    before = set(expand_experiments(config))
    changed = copy.deepcopy(config)
    changed["suites"]["temperature"]["temperatures"] = [0.0, 0.7, 1.2]
    after = set(expand_experiments(changed))
    assert before - after == {f"medium-t1.5-w1-n8-r{k}" for k in range(1, config["repeats"] + 1)}
    assert after - before == {f"medium-t1.2-w1-n8-r{k}" for k in range(1, config["repeats"] + 1)}


def test_the_concurrency_suite_s_own_temperature_else_generation_s():
    config = load_config_file(DEFAULT)
    assert config["suites"]["concurrency"]["temperature"] == 0
    workers = [e for e in expand_experiments(config).values() if "concurrency" in e.suites]
    assert {e.temperature for e in workers} == {0.0} and len(workers) == 3 * config["repeats"]
    del config["suites"]["concurrency"]["temperature"]
    config["generation"]["temperature"] = 0.3
    workers = [e for e in expand_experiments(config).values() if "concurrency" in e.suites]
    assert {e.temperature for e in workers} == {0.3}


def test_a_bad_concurrency_temperature_is_named():
    config = default_config()
    config["suites"]["concurrency"]["temperature"] = 2.5
    with pytest.raises(ConfigError) as error:
        validate_config(config, source="my.yaml")
    message = str(error.value)
    assert "my.yaml" in message and "suites.concurrency.temperature" in message
    assert "2.5 is greater than the maximum of 2" in message


def test_disabled_suite_contributes_nothing():
    config = load_config_file(DEFAULT)
    config["suites"]["resources"]["enabled"] = False
    assert not any(e.duration_s for e in expand_experiments(config).values())


def test_repeats_run_every_condition_as_numbered_trials_first_trials_first():
    config = load_config_file(DEFAULT)
    config["repeats"] = 3
    experiments = expand_experiments(config)
    conditions = {e.condition_id for e in experiments.values()}
    assert len(experiments) == 3 * len(conditions)
    for experiment_id, experiment in experiments.items():
        assert experiment_id == f"{experiment.condition_id}-r{experiment.trial}"
        assert re.fullmatch(EXPERIMENT_ID_PATTERN, experiment_id)
    trials = [e.trial for e in experiments.values()]
    assert trials == sorted(trials)  # every first trial before any second trial


def test_more_repeats_keep_every_existing_experiment_and_its_spec():
    """Going from 1 to 3 trials adds trials 2 and 3; trial 1 is the same job as before."""
    config = load_config_file(DEFAULT)
    config["repeats"] = 1
    one = expand_experiments(config)
    three = expand_experiments(copy.deepcopy(config) | {"repeats": 3})
    assert set(one) < set(three)
    for experiment_id, experiment in one.items():
        assert experiment_spec(config, experiment) == experiment_spec(
            config | {"repeats": 3}, three[experiment_id]
        )


def test_prompt_cache_reuse_marks_every_condition_id():
    config = load_config_file(DEFAULT)
    config["prompt_cache"] = "reuse"
    experiments = expand_experiments(config)
    assert all(
        e.condition_id.endswith("-reuse") for e in experiments.values() if e.suites != ("kv_cache",)
    )
    assert "long-t0.7-w1-n4-r1" in experiments  # kv_cache still runs the bust half


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"repeats": 0}, "repeats: 0 is less than the minimum of 1"),
        ({"prompt_cache": "off"}, "prompt_cache: 'off' is not allowed; use one of 'bust', 'reuse'"),
        ({"suites": {"kv_cache": {"prompt": "nope"}}}, "suites.kv_cache.prompt: prompt 'nope'"),
    ],
)
def test_design_keys_are_checked(change, expected):
    config = merge_configs(default_config(), change)
    with pytest.raises(ConfigError) as error:
        validate_config(config, source="my.yaml")
    assert expected in str(error.value)


@pytest.mark.parametrize("old", [True, False])
def test_the_old_engine_prompt_cache_key_names_its_replacement(old):
    config = default_config()
    config["engine"]["prompt_cache"] = old
    with pytest.raises(ConfigError) as error:
        validate_config(config, source="old.yaml")
    message = str(error.value)
    assert "engine.prompt_cache" in message and "old.yaml" in message
    assert "prompt_cache: reuse" in message and "prompt_cache: bust" in message
    assert "was unexpected" not in message  # one clear message, not two


def test_rerun_config_files_leave_out_the_default_and_keep_the_users_order(tmp_path):
    from perflab.config.load import user_config_files

    (tmp_path / "config").mkdir()
    given = [str(tmp_path / "config/calibration.yaml"), "extra.yaml", "config/config.yaml"]
    assert user_config_files(given, tmp_path) == ["config/calibration.yaml", "extra.yaml"]
    assert user_config_files(["/elsewhere/sweep.yaml"], tmp_path) == ["/elsewhere/sweep.yaml"]
    assert user_config_files([], tmp_path) == []
