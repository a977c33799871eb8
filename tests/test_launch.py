"""Servers perflab starts itself: healthy before use, one clear message when one
fails to start or never becomes healthy, and never left behind — stopped, or
stopped by its guard when perflab itself is killed. A real HTTP server
(``python -m http.server``) stands in here; tests/test_llama_server.py runs
llama-server itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from perflab.config.load import ConfigError, load_config_file
from perflab.engines.launch import (
    LaunchSettings,
    ManagedServer,
    ServerCommand,
    ServerStartError,
    free_port,
    llama_server_command,
    ollama_command,
)

ROOT = Path(__file__).resolve().parents[1]


def http_server(port: int) -> ServerCommand:
    argv = (sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1")
    return ServerCommand("http.server", argv, url=f"http://127.0.0.1:{port}", health_path="/")


def python_server(code: str) -> ServerCommand:
    return ServerCommand(
        "fake", (sys.executable, "-c", code), url=f"http://127.0.0.1:{free_port()}"
    )


def gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_a_started_server_answers_and_is_gone_after_stop(tmp_path):
    server = ManagedServer(http_server(free_port()), tmp_path / "server.log", 30).start()
    assert httpx.get(server.url + "/").status_code == 200
    assert server.pids()[0] == server.pid and server.failure() is None
    assert server.ready_after_s is not None and server.ready_after_s < 30
    server.stop()
    assert gone(server.pid)
    assert server.failure() is None  # asked to stop: not a failure
    assert "$ " in (tmp_path / "server.log").read_text()  # the command heads its log


def test_a_server_that_exits_at_start_fails_with_its_status_and_log_tail(tmp_path):
    code = "import sys; print('cannot load the model file', flush=True); sys.exit(3)"
    with pytest.raises(ServerStartError) as caught:
        ManagedServer(python_server(code), tmp_path / "server.log", 30).start()
    message = str(caught.value)
    assert "exited with status 3 before it was ready" in message
    assert "cannot load the model file" in message and str(tmp_path / "server.log") in message


def test_a_server_that_never_becomes_healthy_is_stopped_with_the_fix(tmp_path):
    code = "import time; print('loading', flush=True); time.sleep(120)"
    server = ManagedServer(python_server(code), tmp_path / "server.log", 1.0)
    with pytest.raises(ServerStartError) as caught:
        server.start()
    assert "was not healthy" in str(caught.value) and "startup_timeout_s" in str(caught.value)
    assert "loading" in str(caught.value)
    assert gone(server.pid)


def test_a_server_that_exits_later_is_reported_as_a_failure(tmp_path):
    server = ManagedServer(http_server(free_port()), tmp_path / "server.log", 30).start()
    os.kill(server.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server.failure() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"(pid {server.pid}) exited with status 137 while measuring" in server.failure()
    server.stop()


def test_the_guard_stops_the_server_when_perflab_is_killed(tmp_path):
    """kill -9 of the process that started it: the guard's pipe closes, the server ends."""
    port = free_port()
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from perflab.engines.launch import ManagedServer, ServerCommand\n"
        f"argv = (sys.executable, '-m', 'http.server', '{port}', '--bind', '127.0.0.1')\n"
        f"command = ServerCommand('http.server', argv, url='http://127.0.0.1:{port}',"
        " health_path='/')\n"
        f"server = ManagedServer(command, Path({str(tmp_path / 's.log')!r}), 30).start()\n"
        "print(server.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pid = int(owner.stdout.readline())
    assert psutil.pid_exists(pid)
    owner.kill()
    owner.wait()
    assert gone(pid), "the server outlived the process that started it"


def test_llama_server_command_carries_every_tuned_flag():
    settings = LaunchSettings.from_config(
        {
            "server": "llama-server",
            "parallel": 4,
            "threads": 2,
            "ctx_size": 8192,
            "cont_batching": False,
            "cache_reuse": 256,
            "flash_attn": False,
            "cache_type_k": "q8_0",
            "cache_type_v": "q8_0",
        }
    )
    argv = llama_server_command("llama-server", settings, "m.gguf", "m", "127.0.0.1", 9).argv
    text = " ".join(argv)
    for flag in (
        "--parallel 4",
        "--threads 2",
        "--ctx-size 8192",
        "--no-cont-batching",
        "--cache-reuse 256",
        "--flash-attn off",
        "--cache-type-k q8_0",
        "--cache-type-v q8_0",
        "--metrics --slots",
        "--alias m",
        "--port 9",
    ):
        assert flag in text, flag


def test_ollama_is_tuned_through_its_environment():
    settings = LaunchSettings.from_config(
        {"server": "ollama", "parallel": 4, "flash_attn": "on", "cache_type_k": "q8_0"}
    )
    command = ollama_command("ollama", settings, "127.0.0.1", 11500)
    assert command.argv[1:] == ("serve",) and command.health_path == "/"
    assert command.env["OLLAMA_HOST"] == "127.0.0.1:11500"
    assert command.env["OLLAMA_NUM_PARALLEL"] == "4"
    assert command.env["OLLAMA_FLASH_ATTENTION"] == "1"
    assert command.env["OLLAMA_KV_CACHE_TYPE"] == "q8_0"


def config_with(engine: dict) -> dict:
    return load_config_file(ROOT / "config" / "config.yaml", overrides={"engine": engine})


@pytest.mark.parametrize(
    ("engine", "key", "words"),
    [
        (
            {"name": "llamacpp", "launch": {"server": "llama-server"}},
            "engine.launch.server",
            "engine.name openai",
        ),
        (
            {
                "name": "openai",
                "model": "tiny-llama3",
                "launch": {"server": "ollama", "threads": 2},
            },
            "engine.launch.threads",
            "ollama has no setting for threads",
        ),
        (
            {"name": "openai", "model": "x", "launch": {"server": "llama-server"}},
            "engine.model_path",
            "needs a GGUF to serve",
        ),
        (
            {
                "name": "openai",
                "model": "tiny-llama3",
                "host": "http://10.1.2.3:8080",
                "launch": {"server": "llama-server"},
            },
            "engine.host",
            "not this machine",
        ),
        (
            {
                "name": "openai",
                "model": "tiny-llama3",
                "launch": {"server": "llama-server", "binary": "/no/such/llama-server"},
            },
            "engine.launch.binary",
            "no such executable",
        ),
        (
            {"name": "openai", "model": "m", "launch": {"server": "vllm"}},
            "engine.launch.server",
            "llama-server",
        ),
    ],
)
def test_a_launch_that_cannot_work_is_refused_naming_key_and_fix(engine, key, words):
    with pytest.raises(ConfigError) as caught:
        config_with(engine)
    assert key in str(caught.value) and words in str(caught.value)


def test_a_launch_config_passes_and_keeps_only_the_keys_it_sets():
    config = config_with(
        {"name": "openai", "model": "tiny-llama3", "launch": {"server": "llama-server"}}
    )
    assert config["engine"]["launch"] == {"server": "llama-server"}
    json.dumps(config)  # specs are JSON
