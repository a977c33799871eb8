"""Malformed configs are refused before any work, each with the file, the key,
the value and the fix, and never with a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT, run_snakemake

from perflab.cli import main
from perflab.config.load import ConfigError, load_config_files
from perflab.config.sweep import expand_experiments
from perflab.measure.estimate import estimate_run, format_duration

DEFAULT = ROOT / "config" / "config.yaml"

# (name, YAML text of an override over config/config.yaml, key the message names, value it shows)
MALFORMED = [
    ("nan-budget", "error_budget: .nan\n", "error_budget", "nan"),
    ("nan-temperature", "generation:\n  temperature: .nan\n", "generation.temperature", "nan"),
    ("inf-timeout", "generation:\n  timeout_s: .inf\n", "generation.timeout_s", "inf"),
    ("nan-timeout", "generation:\n  timeout_s: .nan\n", "generation.timeout_s", "nan"),
    (
        "inf-duration",
        "suites:\n  resources:\n    duration_s: .inf\n",
        "suites.resources.duration_s",
        "inf",
    ),
    ("inf-interval", "sampler:\n  interval_s: .inf\n", "sampler.interval_s", "inf"),
    ("nan-expected", "expected_tps: [.nan, 20]\n", "expected_tps[0]", "nan"),
    (
        "nan-calibration",
        "engine:\n  name: calibration\ncalibration:\n  itl_s: .nan\n",
        "calibration.itl_s",
        "nan",
    ),
    ("max-tokens-over-ctx", "generation:\n  max_tokens: 5000\n", "generation.max_tokens", "5000"),
    (
        "small-ctx",
        "engine:\n  n_ctx: 256\ngeneration:\n  max_tokens: 200\n",
        "generation.max_tokens",
        "200",
    ),
    ("keep-alive-word", "generation:\n  keep_alive: forever\n", "generation.keep_alive", "forever"),
    ("keep-alive-no-unit", "generation:\n  keep_alive: '300'\n", "generation.keep_alive", "300"),
    (
        "host-garbage",
        "engine:\n  name: ollama\n  host: 'not a url::99999'\n",
        "engine.host",
        "not a url::99999",
    ),
    ("host-port-0", "engine:\n  host: 'http://127.0.0.1:0'\n", "engine.host", ":0"),
    ("host-port-big", "engine:\n  host: '127.0.0.1:70000'\n", "engine.host", "70000"),
    ("host-scheme", "engine:\n  host: 'ftp://example.com:21'\n", "engine.host", "ftp"),
    ("host-empty", "engine:\n  host: 'http://'\n", "engine.host", "http://"),
    (
        "model-path-missing",
        "engine:\n  model_path: /nonexistent/model.gguf\n",
        "engine.model_path",
        "/nonexistent/model.gguf",
    ),
    ("model-path-dir", "engine:\n  model_path: /tmp\n", "engine.model_path", "/tmp"),
    ("blank-prompt", "prompts:\n  short: '   '\n", "prompts.short", "no text"),
    ("empty-prompt", "prompts:\n  short: ''\n", "prompts.short", "''"),
    ("blank-model", "engine:\n  model: '  '\n", "engine.model", "blank"),
    ("blank-host", "engine:\n  host: ''\n", "engine.host", "blank"),
    (
        "temperature-exponent",
        "suites:\n  temperature:\n    temperatures: [0.00001, 1.0]\n",
        "suites.temperature",
        "1e-05",
    ),
    (
        "temperature-collapse",
        "suites:\n  temperature:\n    temperatures: [0.7, 0.70000000001]\n",
        "suites.temperature",
        "0.70000000001",
    ),
    (
        "duration-exponent",
        "suites:\n  resources:\n    duration_s: 0.0000001\n",
        "suites.resources",
        "1e-07",
    ),
    ("run-dotdot", "run: '..'\n", "run", "'..'"),
    ("run-dot", "run: '.'\n", "run", "'.'"),
    ("run-slash", "run: 'a/b'\n", "run", "'a/b'"),
    ("run-dash", "run: '-x'\n", "run", "'-x'"),
    ("run-hidden", "run: '.hidden'\n", "run", "'.hidden'"),
    ("workers-zero", "suites:\n  concurrency:\n    workers: [0]\n", "workers[0]", "0"),
    ("warmup-negative", "warmup_requests: -1\n", "warmup_requests", "-1"),
    ("engine-scalar", "engine: 5\n", "engine", "5"),
    ("engine-name", "engine:\n  name: vllm\n", "engine.name", "vllm"),
    ("unknown-key", "bogus: 1\n", "bogus", "bogus"),
    (
        "undefined-prompt",
        "suites:\n  basic:\n    prompts: [nope]\n",
        "suites.basic.prompts",
        "nope",
    ),
    ("bad-prompt-name", "prompts:\n  Bad-Name: x\n", "prompts", "Bad-Name"),
    ("tiny-heads", "tiny_model:\n  head_count: 3\n", "tiny_model.embedding_length", "256"),
    ("budget-range", "error_budget: 1.5\n", "error_budget", "1.5"),
    ("yaml-syntax", "run: x\n  generation: [\n", "line 2", "YAML"),
    ("top-level-list", "- a\n- b\n", "top level", "list"),
    ("top-level-scalar", "42\n", "top level", "int"),
]


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_malformed_config_is_refused_naming_file_key_and_value(tmp_path, capsys, text, key, value):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    assert main(["validate", str(DEFAULT), str(bad)]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert "bad.yaml" in captured.err, captured.err
    assert key in captured.err and value in captured.err, captured.err
    assert not captured.out


def test_a_bad_ollama_host_in_the_environment_is_named(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:99999")
    good = tmp_path / "ollama.yaml"
    good.write_text("engine:\n  name: ollama\n")
    assert main(["validate", str(DEFAULT), str(good)]) == 2
    err = capsys.readouterr().err
    assert "environment: OLLAMA_HOST: 'http://127.0.0.1:99999'" in err and "port" in err


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1", True),
        ("localhost:11434", True),
        ("http://[::1]:11434", True),
        ("https://ollama.example.com", True),
        ("http://127.0.0.1:65535", True),
        ("http://127.0.0.1:65536", False),
        ("http://host:port", False),
        ("gopher://x", False),
    ],
)
def test_hosts_parse_as_the_ollama_client_reads_them(tmp_path, host, ok):
    from perflab.config.load import ConfigError

    override = tmp_path / "host.yaml"
    override.write_text(f"engine:\n  name: ollama\n  host: '{host}'\n")
    if ok:
        load_config_files([DEFAULT, override])
    else:
        with pytest.raises(ConfigError, match="engine.host"):
            load_config_files([DEFAULT, override])


def test_a_missing_file_and_a_directory_are_named(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: no such file" in capsys.readouterr().err
    assert main(["validate", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_the_file_that_set_the_key_is_named(tmp_path):
    from perflab.config.load import ConfigError

    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text("generation:\n  max_tokens: 0\n")
    second.write_text("warmup_requests: -2\n")
    with pytest.raises(ConfigError) as error:
        load_config_files([DEFAULT, first, second])
    assert "first.yaml: generation.max_tokens: 0" in str(error.value)
    assert "second.yaml: warmup_requests: -2" in str(error.value)


def test_several_files_merge_in_configfile_order(tmp_path, capsys):
    override = tmp_path / "over.yaml"
    override.write_text("run: stacked\nsuites:\n  basic:\n    requests: 7\n")
    calibration = ROOT / "config" / "calibration.yaml"
    assert main(["validate", str(calibration), str(override)]) == 0
    out = capsys.readouterr().out
    assert "valid, 45 experiments" in out and "short-t0.7-w1-n7-r1  (basic)" in out
    config = load_config_files([DEFAULT, calibration, override])
    assert config["engine"]["name"] == "calibration" and config["run"] == "stacked"


def test_values_that_round_trip_are_accepted(tmp_path):
    override = tmp_path / "ok.yaml"
    override.write_text(
        "suites:\n  temperature:\n    temperatures: [0.0001, 0.7, 0.75, 2.0]\n"
        "  resources:\n    duration_s: 2.5\n"
    )
    experiments = expand_experiments(load_config_files([DEFAULT, override]))
    assert {"medium-t0.0001-w1-n8-r1", "medium-t0.75-w1-n8-r1", "medium-t0.7-w1-d2.5s-r1"} <= set(
        experiments
    )


def test_a_long_prompt_that_fits_by_token_count_is_accepted(tmp_path, vocab_path):
    """The byte bound says no; the tokenizer (the vocab GGUF) says it fits."""
    vocab = vocab_path
    override = tmp_path / "ctx.yaml"
    override.write_text(
        f"engine:\n  n_ctx: 900\n  model_path: {vocab}\ngeneration:\n  max_tokens: 200\n"
    )
    config = load_config_files([DEFAULT, override])  # very_long: ~2.5 kB but ~450 tokens
    assert config["engine"]["n_ctx"] == 900


def test_validate_prints_the_run_estimate(capsys):
    assert main(["validate", str(DEFAULT), "--per-request-s", "10"]) == 0
    out = capsys.readouterr().out
    config = load_config_files([DEFAULT])
    estimate = estimate_run(expand_experiments(config).values(), config["warmup_requests"], 10.0)
    # per trial 3×34 basic + 5×4 prompt lengths + 3×8 temperatures (0.7 shared with 1 worker)
    # + 2×8 worker counts + 4 kv_cache reuse requests, 3 warm-ups for each of 15; 3 trials
    assert estimate.n_requests == 3 * (102 + 20 + 24 + 16 + 4 + 15 * 3)
    assert estimate.timed_s == 3 * 10
    assert f"run time {estimate.describe()}" in out
    assert "≈ 1 h 46 min for 633 requests + 30 s of timed load" in out


def test_durations_read_as_a_person_says_them():
    assert [format_duration(s) for s in (12, 600, 3600, 6000, 7260)] == [
        "12 s",
        "10 min",
        "1 h",
        "1 h 40 min",
        "2 h 1 min",
    ]


def test_user_typed_errors_never_print_a_traceback(tmp_path):
    cases = [
        ["validate", str(tmp_path / "missing.yaml")],
        ["validate", str(DEFAULT), "--per-request-s", "nan"],
        ["calibrate", "--port", "99999"],
        ["calibrate", "--port", "http"],
    ]
    for args in cases:
        result = subprocess.run(
            [sys.executable, "-m", "perflab", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=os.environ | {"PYTHONWARNINGS": "ignore"},
        )
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr and result.stderr.strip(), args


# one case of each kind of check: each Snakemake start costs seconds
WORKFLOW_KINDS = {
    "nan-budget",
    "inf-duration",
    "max-tokens-over-ctx",
    "keep-alive-word",
    "host-garbage",
    "model-path-missing",
    "blank-prompt",
    "temperature-exponent",
    "temperature-collapse",
    "run-dotdot",
    "workers-zero",
    "undefined-prompt",
}
WORKFLOW_CASES = [case for case in MALFORMED if case[0] in WORKFLOW_KINDS]


@pytest.fixture(scope="module")
def workflow_copy(copy_workflow):
    return copy_workflow()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("text", "key", "value"),
    [case[1:] for case in WORKFLOW_CASES],
    ids=[case[0] for case in WORKFLOW_CASES],
)
def test_the_workflow_refuses_it_before_any_job(workflow_copy, text, key, value):
    bad = workflow_copy / "bad.yaml"
    bad.write_text(text)
    result = run_snakemake(workflow_copy, "--cores", "1", "--configfile", "bad.yaml", timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output and "bad.yaml" in output
    assert key in output and value in output, output[-2000:]
    assert not (workflow_copy / "results").exists() and not (workflow_copy / "logs").exists()


@pytest.mark.parametrize(("value", "seconds"), [(300, 300.0), (0.5, 0.5), (0, 0.0), ("5m", 300.0)])
def test_a_numeric_keep_alive_reaches_ollama_with_its_unit(value, seconds):
    """Ollama reads a string without a unit as an error: numbers are sent as seconds."""
    from perflab.calibration import parse_duration
    from perflab.engines import ollama_duration

    assert parse_duration(ollama_duration(value), strict=True) == seconds
    assert parse_duration(ollama_duration(-1), strict=True) == float("inf")


def test_an_ollama_model_name_is_counted_with_its_own_tokenizer(tmp_path, monkeypatch, vocab_path):
    """The embedded engine loading an Ollama model: its blob in the store is the tokenizer."""
    from test_ollama_store import build_store

    vocab = vocab_path
    store = tmp_path / "store"
    build_store(store, vocab, "registry.ollama.ai", "library", "llama3.1", "8b")
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    override = tmp_path / "ctx.yaml"
    override.write_text(
        "engine:\n  name: llamacpp\n  model: llama3.1:8b\n  n_ctx: 900\n"
        "generation:\n  max_tokens: 200\n"
    )
    config = load_config_files([DEFAULT, override])  # very_long: ~2.5 kB but ~450 tokens
    assert config["engine"]["n_ctx"] == 900
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "empty"))  # not pulled: refused with the fix
    with pytest.raises(
        ConfigError, match=r"engine.model: Model 'llama3.1:8b' is not in the Ollama"
    ):
        load_config_files([DEFAULT, override])
