"""Every engine perflab runs, by the name a config gives it: how to build it,
what it can tell us, what a benchmark of it occupies, and where its server's
processes are.

Looked up without importing an engine's module (and its HTTP or llama.cpp
dependencies): each entry imports its engine only when asked to build it or to
read its server's address.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from perflab.engines import base
from perflab.engines.base import Capabilities

if TYPE_CHECKING:
    from perflab.engines.base import Engine

# An engine built from a validated one-target config and, for a model file, its path.
Factory = Callable[[dict, "str | Path | None"], "Engine"]
# What a benchmark occupies, from the engine block and the model file given to the job.
LockKey = Callable[[dict, "str | None"], str]


@dataclass(frozen=True)
class EngineKind:
    """One engine: its config name, its facts and how to build it.

    ``lock_key``: what a benchmark of it occupies (see ``perflab.measure.locks``).
    ``server_url``: the URL of its HTTP server (None: it runs in this process).
    ``host_env``: the environment variable its client reads when ``engine.host``
    is unset. ``loads_model_file``: it loads a GGUF itself, so ``engine.model_path``
    and ``engine.n_ctx`` apply. ``scripted``: it serves the calibration server's
    scripted timings (``calibration``).
    """

    name: str
    capabilities: Capabilities
    make: Factory
    lock_key: LockKey
    server_url: Callable[[dict], str] | None = None
    host_env: str | None = None
    loads_model_file: bool = False
    scripted: bool = False

    def server_pids(self, config: dict) -> Callable[[], list[int]]:
        """Where the server's processes are, from the engine's own facts: ours in
        process, else whatever listens on its URL's port when it is local, with its
        children (found by the engine's ``server_command`` when the listener is
        hidden; a URL without a port means its ``default_port``)."""
        if self.capabilities.in_process:
            return _own_pid
        from perflab.engines.server_process import ServerProcesses

        facts = self.capabilities
        return ServerProcesses(self.server_url(config), facts.default_port, facts.server_command)

    def server_is_remote(self, config: dict) -> bool:
        """Whether the server runs on another machine (its CPU is then not this machine's)."""
        if self.capabilities.in_process:
            return False
        from perflab.engines.server_process import is_local_host

        host = self.server_url(config)
        return not is_local_host(
            urllib.parse.urlparse(host if "://" in host else f"http://{host}").hostname
        )


def _own_pid() -> list[int]:
    return [os.getpid()]


# HTTP engines lock the server's host and port, so two engines (two APIs) on one
# server wait for each other too. The calibration engine's server lives inside
# each job, but its timings are disturbed by any other benchmark on the machine:
# it locks the machine.


def _machine_lock(engine: dict, model_path: str | None = None) -> str:
    return "calibration server on this machine"


def _model_file_lock(engine: dict, model_path: str | None = None) -> str:
    path = model_path or engine["model_path"] or "tiny model"
    return f"llamacpp {Path(path).expanduser().resolve()}"


def _ollama_lock(engine: dict, model_path: str | None = None) -> str:
    from perflab.engines.ollama_engine import base_url, resolve_host

    return f"server {_host_port(base_url(resolve_host(engine.get('host'))))}"


def _server_lock(engine: dict, model_path: str | None = None) -> str:
    return f"server {_host_port(engine.get('host'))}"


def _host_port(host: str | None) -> str:
    split = urllib.parse.urlsplit(host if "://" in (host or "") else f"http://{host}")
    port = split.port or (443 if split.scheme == "https" else 80)
    return f"{split.hostname}:{port}"


def _make_calibration(config: dict, model_path=None) -> Engine:
    from perflab.engines.calibration_engine import CalibrationEngine

    engine = config["engine"]
    return CalibrationEngine(
        model=engine["model"],
        timing=config["calibration"],
        timeout_s=config["generation"]["timeout_s"],
    )


def _make_ollama(config: dict, model_path=None) -> Engine:
    from perflab.engines.ollama_engine import OllamaEngine

    engine = config["engine"]
    return OllamaEngine(
        model=engine["model"],
        host=engine["host"],
        timeout_s=config["generation"]["timeout_s"],
    )


def _make_openai(config: dict, model_path=None) -> Engine:
    from perflab.engines.openai_engine import OpenAIEngine

    engine = config["engine"]
    return OpenAIEngine(
        model=engine["model"],
        host=engine["host"],
        timeout_s=config["generation"]["timeout_s"],
        endpoint=engine.get("endpoint", "chat"),
        api_key_env=engine.get("api_key_env"),
    )


def _make_llamacpp(config: dict, model_path=None) -> Engine:
    from perflab.engines.llamacpp_engine import LlamaCppEngine

    engine = config["engine"]
    path = model_path or engine["model_path"]
    if not path:  # an Ollama model name: its weights in the local Ollama store
        from perflab.engines.ollama_store import resolve

        path = resolve(engine["model"]).path
    return LlamaCppEngine(
        model_path=path,
        n_ctx=engine["n_ctx"],
        n_threads=engine["n_threads"],
    )


def _ollama_url(config: dict) -> str:
    from perflab.engines.ollama_engine import resolve_host

    return resolve_host(config["engine"]["host"])


def _openai_url(config: dict) -> str:
    from perflab.engines.openai_engine import base_url

    return base_url(config["engine"]["host"])


ENGINES = {
    kind.name: kind
    for kind in (
        EngineKind(
            "ollama",
            base.OLLAMA,
            _make_ollama,
            _ollama_lock,
            server_url=_ollama_url,
            host_env="OLLAMA_HOST",
        ),
        EngineKind(
            "calibration", base.CALIBRATION, _make_calibration, _machine_lock, scripted=True
        ),
        EngineKind(
            "llamacpp", base.LLAMACPP, _make_llamacpp, _model_file_lock, loads_model_file=True
        ),
        EngineKind("openai", base.OPENAI, _make_openai, _server_lock, server_url=_openai_url),
    )
}


def engine_kind(name: str) -> EngineKind:
    """The engine a config names (the schema allows only the names in ``ENGINES``)."""
    return ENGINES[name]


def loads_model_file(engine: dict) -> bool:
    """Whether the engine block's engine loads a GGUF itself (an unknown name does not)."""
    kind = ENGINES.get(engine.get("name") or "")
    return kind is not None and kind.loads_model_file
