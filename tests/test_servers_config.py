"""Config and command-line keys for other servers: engine.name openai, its
endpoint and API-key variable, and the calibration server's timing block."""

from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from perflab.calibration.cli import build_parser, timing_from_args
from perflab.config.load import ConfigError, load_config_file, merge_configs, validate_config

DEFAULT = ROOT / "config" / "config.yaml"


def config_with(change: dict) -> dict:
    return merge_configs(yaml.safe_load(DEFAULT.read_text()), change)


def test_openai_engine_keys_are_accepted():
    config = validate_config(
        config_with(
            {
                "engine": {
                    "name": "openai",
                    "model": "qwen2.5-0.5b",
                    "host": "http://127.0.0.1:8080",
                    "endpoint": "completions",
                    "api_key_env": "LLAMA_API_KEY",
                }
            }
        )
    )
    assert config["engine"]["endpoint"] == "completions"


def test_the_openai_example_config_is_valid():
    config = load_config_file(ROOT / "config" / "openai.yaml", base=DEFAULT)
    assert config["engine"]["name"] == "openai" and config["engine"]["api_key_env"] is None


def test_the_llama_server_capacity_config_sweeps_two_launched_slots():
    config = load_config_file(ROOT / "config" / "capacity-llama-server.yaml", base=DEFAULT)
    launch = config["engine"]["launch"]
    assert config["engine"]["name"] == "openai" and launch["server"] == "llama-server"
    assert launch["parallel"] == 2 and not launch.get("binary")  # the workflow's own build
    rate = config["suites"]["rate"]
    assert rate["enabled"] and rate["rates"] == "sweep"
    assert not any(config["suites"][s]["enabled"] for s in config["suites"] if s != "rate")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"engine": {"endpoint": "embeddings"}}, "engine.endpoint: 'embeddings' is not allowed"),
        (
            {"engine": {"api_key_env": "sk-abc123"}},
            "engine.api_key_env: 'sk-abc123' does not match",
        ),
        ({"calibration": {"itl": 0.01}}, "calibration: Additional properties are not allowed"),
        (
            {"calibration": {"prompt_cache": "yes"}},
            "calibration.prompt_cache: 'yes' is not of type",
        ),
        ({"calibration": {"num_parallel": 0}}, "calibration.num_parallel: 0 is less than"),
    ],
)
def test_bad_server_keys_are_named(change, expected):
    with pytest.raises(ConfigError) as info:
        validate_config(config_with(change))
    assert expected in str(info.value)


def test_calibration_block_takes_the_prompt_cache():
    config = validate_config(
        config_with({"engine": {"name": "calibration"}, "calibration": {"prompt_cache": True}})
    )
    assert config["calibration"] == {"prompt_cache": True}


def test_calibrate_has_a_prompt_cache_flag(tmp_path: Path):
    assert timing_from_args(build_parser().parse_args([])).prompt_cache is False
    assert timing_from_args(build_parser().parse_args(["--prompt-cache"])).prompt_cache is True
    config = tmp_path / "cal.yaml"
    config.write_text("calibration:\n  prompt_cache: true\n")
    args = build_parser().parse_args(["--config", str(config)])
    assert timing_from_args(args).prompt_cache is True
