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
