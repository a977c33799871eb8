"""Engine capabilities: a property of each engine class, looked up by name cheaply."""

import subprocess
import sys

import pytest

from perflab.engines import Capabilities, capabilities_for


@pytest.mark.parametrize(
    ("name", "module", "cls"),
    [
        ("ollama", "perflab.engines.ollama_engine", "OllamaEngine"),
        ("calibration", "perflab.engines.calibration_engine", "CalibrationEngine"),
        ("llamacpp", "perflab.engines.llamacpp_engine", "LlamaCppEngine"),
        ("openai", "perflab.engines.openai_engine", "OpenAIEngine"),
    ],
)
def test_lookup_by_name_is_the_engine_classes_own(name, module, cls):
    engine = getattr(__import__(module, fromlist=[cls]), cls)
    assert engine.name == name
    assert capabilities_for(name) is engine.capabilities


def test_what_the_capabilities_say():
    assert (
        capabilities_for("llamacpp").in_process and capabilities_for("llamacpp").reports_queue_time
    )
    assert not capabilities_for("ollama").reports_queue_time
    assert capabilities_for("ollama").parallel_setting == "OLLAMA_NUM_PARALLEL"
    assert capabilities_for("something else") == Capabilities("unknown engine", False, False, False)


def test_lookup_loads_no_engine_module():
    code = (
        "import sys; from perflab.engines import capabilities_for; capabilities_for('ollama'); "
        "print(sorted(m for m in ('httpx', 'ollama', 'llama_cpp') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


def test_every_engine_the_schema_allows_is_registered():
    import yaml

    from perflab.config.load import SCHEMA_PATH
    from perflab.engines.registry import ENGINES

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    names = schema["definitions"]["engine"]["properties"]["name"]["enum"]
    assert sorted(names) == sorted(ENGINES)
    assert all(kind.name == name for name, kind in ENGINES.items())


def test_each_engine_locks_what_it_occupies(monkeypatch, tmp_path):
    from perflab.measure.locks import target_key

    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    model = tmp_path / "m.gguf"

    def key(name, host=None, model_path=None):
        engine = {"name": name, "host": host, "model_path": model_path}
        return target_key({"engine": engine})

    assert key("calibration") == "calibration server on this machine"
    assert key("llamacpp", model_path=str(model)) == f"llamacpp {model.resolve()}"
    assert key("ollama") == "server 127.0.0.1:11434"
    assert key("ollama", host="gpu-box") == "server gpu-box:11434"
    assert key("openai", host="https://api.example.com/v1") == "server api.example.com:443"
    monkeypatch.setenv("OLLAMA_HOST", "10.0.0.5:9000")
    assert key("ollama") == "server 10.0.0.5:9000"


def test_only_a_server_engine_looks_for_server_processes(monkeypatch):
    import os

    from perflab.engines.registry import engine_kind

    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    for name in ("calibration", "llamacpp"):
        assert engine_kind(name).server_pids({"engine": {"host": None}})() == [os.getpid()]
        assert not engine_kind(name).server_is_remote({"engine": {"host": None}})
    remote = {"engine": {"host": "http://192.0.2.10:11434"}}
    assert engine_kind("ollama").server_is_remote(remote)
    assert engine_kind("ollama").server_pids(remote)() == []
    assert not engine_kind("openai").server_is_remote({"engine": {"host": "127.0.0.1:8080"}})
