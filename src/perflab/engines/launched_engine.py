"""An HTTP engine (``openai`` or ``ollama``) against a server perflab started
for it (``engine.launch``): the server is started and healthy before the
engine's pre-flight check, and stopped when the engine is closed."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from perflab.engines import base
from perflab.engines.base import Chunk, Engine, GenerationOptions, PreflightError
from perflab.engines.launch import (
    LaunchSettings,
    ManagedServer,
    ServerCommand,
    listen_address,
    llama_server_command,
    ollama_command,
    resolve_binary,
)
from perflab.engines.ollama_ps import ModelPlacement

OLLAMA_PORT = 11434


def server_capabilities(client: base.Capabilities, server: str) -> base.Capabilities:
    """The client engine's capabilities with what the launched server adds."""
    if server == "llama-server":
        return replace(
            client,
            label="llama-server",
            reports_server_timings=True,
            parallel_setting="--parallel",
            thread_setting="launch.threads",
        )
    return replace(client, parallel_setting="OLLAMA_NUM_PARALLEL", thread_setting=None)


def server_command(
    engine: dict, settings: LaunchSettings, model_path: str | None, built: str | None
) -> ServerCommand:
    binary = resolve_binary(settings, built)
    default_port = OLLAMA_PORT if settings.server == "ollama" and engine["host"] else None
    host, port = listen_address(engine["host"], default_port)
    if settings.server == "ollama":
        return ollama_command(binary, settings, host, port)
    path = model_path or engine["model_path"]
    if not path:
        raise PreflightError(
            "engine.launch.server is llama-server but there is no GGUF to serve: set "
            "engine.model_path, or use a model the workflow fetches or builds."
        )
    return llama_server_command(binary, settings, path, engine["model"], host, port)


def client_for(config: dict, url: str) -> Engine:
    engine, timeout_s = config["engine"], config["generation"]["timeout_s"]
    if engine["name"] == "ollama":
        from perflab.engines.ollama_engine import OllamaEngine

        return OllamaEngine(model=engine["model"], host=url, timeout_s=timeout_s)
    from perflab.engines.openai_engine import OpenAIEngine

    return OpenAIEngine(
        model=engine["model"],
        host=url + "/v1",
        timeout_s=timeout_s,
        endpoint=engine.get("endpoint", "chat"),
        api_key_env=engine.get("api_key_env"),
    )


class LaunchedEngine:
    """The client engine of ``config`` against the server it starts."""

    def __init__(
        self,
        config: dict,
        model_path: str | None = None,
        server_binary: str | None = None,
        server_log: str | Path | None = None,
    ):
        self.settings = LaunchSettings.from_config(config["engine"]["launch"])
        engine = config["engine"]
        command = server_command(engine, self.settings, model_path, server_binary)
        self.model_path = None
        if self.settings.server == "llama-server":
            self.model_path = model_path or engine["model_path"]
        log = Path(server_log or f"{command.name}.log")
        self.server = ManagedServer(command, log, self.settings.startup_timeout_s).start()
        try:
            self.client = client_for(config, self.server.url)
        except BaseException:
            self.server.stop()
            raise
        self.name = self.client.name
        self.capabilities = server_capabilities(self.client.capabilities, self.settings.server)

    @property
    def metrics_url(self) -> str | None:
        """Where llama-server's ``/metrics`` and ``/slots`` are, when it serves them."""
        if self.settings.server == "llama-server" and self.settings.metrics:
            return self.server.url
        return None

    @property
    def read_placement(self) -> Callable[[], ModelPlacement | None] | None:
        """The client's ``/api/ps`` reader (an Ollama server); None for a server without one."""
        return getattr(self.client, "read_placement", None)

    def preflight(self) -> dict:
        info = self.client.preflight() | {"server": self.server.info()}
        if self.model_path:  # llama-server: the GGUF it serves, for provenance and size
            info["model_path"] = str(self.model_path)
            info["model_size_gb"] = os.path.getsize(self.model_path) / 1e9
            info["n_threads"] = self.settings.threads  # what bounds the server's compute
        return info

    def stream(self, prompt: str, options: GenerationOptions) -> Iterator[Chunk]:
        return self.client.stream(prompt, options)

    def server_pids(self) -> list[int]:
        return self.server.pids()

    def server_failure(self) -> str | None:
        return self.server.failure()

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            self.server.stop()
