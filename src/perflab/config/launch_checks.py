"""Checks of ``engine.launch``: a server perflab is to start must be one it can
start here, speaking the engine's API, with a model to serve."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from perflab.config.problems import Problem
from perflab.engines.launch import SERVERS, launched_server, unused_keys
from perflab.engines.ollama_store import TINY_MODEL_NAME
from perflab.engines.registry import loads_model_file
from perflab.engines.server_process import is_local_host
from perflab.models.smollm2 import MODEL_NAME as SMOLLM2_NAME

# Models the workflow makes itself (fetched or built into cache/), by engine.model.
WORKFLOW_MODELS = (TINY_MODEL_NAME, SMOLLM2_NAME)


def launch_problems(config: dict) -> Iterator[Problem]:
    engine = config["engine"]
    launch = engine.get("launch")
    if not launch:
        return
    server = launch["server"]
    clients = SERVERS[server].clients
    if engine["name"] not in clients:
        yield Problem(
            ("engine", "launch", "server"),
            f"{server} does not speak the API of engine.name {engine['name']!r}; use "
            f"engine.name {' or '.join(clients)} with it",
        )
        return
    for key in unused_keys(launch):
        yield Problem(
            ("engine", "launch", key),
            f"{server} has no setting for {key}; remove it (config/README.md lists what "
            "each server takes)",
        )
    yield from _host_problems(engine)
    yield from _binary_problems(launch)
    if SERVERS[server].serves_model_file:
        yield from _model_problems(engine)


def _host_problems(engine: dict) -> Iterator[Problem]:
    host = engine["host"]
    if host is None:
        return
    parts = urlsplit(host if "://" in host else f"http://{host}")
    if not is_local_host(parts.hostname):
        yield Problem(
            ("engine", "host"),
            f"{host!r} is not this machine, and perflab starts engine.launch's server here; "
            "set engine.host to a local address (or null for a free port on 127.0.0.1), or "
            "remove engine.launch to measure a server that is already running there",
        )


def _binary_problems(launch: dict) -> Iterator[Problem]:
    default = SERVERS[launch["server"]].default_binary
    binary = launch.get("binary") or default
    if binary is None or shutil.which(binary):
        return
    where = f"(seen from {Path.cwd()})" if os.sep in binary else "on PATH"
    yield Problem(
        ("engine", "launch", "binary"),
        f"{binary!r}: no such executable {where}; install {launch['server']} or give its "
        "path" + ("" if default else ", or null to use the one perflab builds"),
    )


def _model_problems(engine: dict) -> Iterator[Problem]:
    path = engine["model_path"]
    if path:
        if not Path(path).expanduser().is_file():
            yield Problem(
                ("engine", "model_path"),
                f"{path!r} is not a file (seen from {Path.cwd()}); give the GGUF that "
                "llama-server is to serve",
            )
        return
    if engine["model"] not in WORKFLOW_MODELS:
        yield Problem(
            ("engine", "model_path"),
            f"llama-server needs a GGUF to serve and engine.model {engine['model']!r} is not "
            f"one the workflow makes ({', '.join(WORKFLOW_MODELS)}); set engine.model_path "
            "to a GGUF file",
        )


def serves_gguf(engine: dict) -> bool:
    """Whether llama-bench has the engine's GGUF: a launched llama-server's, a file
    (engine.model_path) or a model the workflow makes, in the embedded engine."""
    server = launched_server(engine)
    if server is not None and server.serves_model_file:
        return True
    return loads_model_file(engine) and bool(
        engine["model_path"] or engine["model"] in WORKFLOW_MODELS
    )


def peer_problems(config: dict) -> Iterator[Problem]:
    """llama-bench needs the GGUF the baseline target runs."""
    from perflab.config.targets import baseline, target_config

    if not config["peer"]["llama_bench"]:
        return
    engine = target_config(config, baseline(config))["engine"]
    if serves_gguf(engine):
        return
    yield Problem(
        ("peer", "llama_bench"),
        f"llama-bench needs the baseline target's GGUF, and engine {engine['name']!r} with "
        f"model {engine['model']!r} has none perflab knows; set engine.model_path, use a model "
        "the workflow makes, or set peer.llama_bench to false",
    )


def threads_problems(config: dict) -> Iterator[Problem]:
    """The threads suite sets each engine's compute threads, which its capabilities must
    allow, and runs llama-bench on the baseline target's GGUF."""
    from perflab.config.targets import baseline, target_config, target_names
    from perflab.engines import thread_setting

    suite = config["suites"]["threads"]
    if not suite["enabled"]:
        return
    for target in target_names(config) or (None,):
        engine = target_config(config, target)["engine"]
        if thread_setting(engine) is None:
            which = f" (target {target!r})" if target else ""
            yield Problem(
                ("suites", "threads", "threads"),
                f"{suite['threads']!r} needs an engine whose compute threads perflab can set, "
                f"and engine {engine['name']!r}{which} has no such setting; use engine.name: "
                "llamacpp (its n_threads) or a launched llama-server (engine.launch.server: "
                "llama-server), or set suites.threads.enabled to false",
            )
    engine = target_config(config, baseline(config))["engine"]
    if suite["llama_bench"] and not serves_gguf(engine):
        yield Problem(
            ("suites", "threads", "llama_bench"),
            f"true needs the baseline target's GGUF for llama-bench, and engine "
            f"{engine['name']!r} with model {engine['model']!r} has none perflab knows; set "
            "engine.model_path, use a model the workflow makes, or set "
            "suites.threads.llama_bench to false",
        )
