"""Engines: one small interface, several backends."""

from __future__ import annotations

from pathlib import Path

from perflab.engines import base
from perflab.engines.base import (
    Capabilities,
    Chunk,
    Engine,
    EngineError,
    GenerationOptions,
    PreflightError,
)
from perflab.engines.registry import ENGINES, engine_kind

__all__ = [
    "Capabilities",
    "capabilities_for",
    "Chunk",
    "Engine",
    "EngineError",
    "GenerationOptions",
    "PreflightError",
    "make_engine",
    "generation_options",
    "thread_setting",
    "with_threads",
]


def capabilities_for(name: str | None, server: str | None = None) -> Capabilities:
    """The capabilities of the engine called ``name`` (an unknown name has none), with
    what the ``server`` it launched adds (``engine.launch.server``)."""
    kind = ENGINES.get(name or "")
    capabilities = kind.capabilities if kind else base.UNKNOWN
    if server:
        from perflab.engines.launched_engine import server_capabilities

        return server_capabilities(capabilities, server)
    return capabilities


def thread_setting(engine: dict) -> str | None:
    """The key under ``engine`` that sets the engine's compute threads (dotted), or None
    when perflab cannot set them (its capabilities say which)."""
    launch = engine.get("launch") or {}
    return capabilities_for(engine.get("name"), launch.get("server")).thread_setting


def with_threads(engine: dict, threads: int) -> dict:
    """A copy of the ``engine`` block that runs ``threads`` compute threads."""
    setting = thread_setting(engine)
    if setting is None:
        raise ValueError(f"engine {engine.get('name')!r} has no thread setting perflab can set")
    *parents, key = setting.split(".")
    copy = dict(engine)
    node = copy
    for part in parents:
        node[part] = dict(node.get(part) or {})
        node = node[part]
    node[key] = threads
    return copy


def make_engine(
    config: dict,
    model_path: str | Path | None = None,
    *,
    server_binary: str | None = None,
    server_log: str | Path | None = None,
) -> Engine:
    """The engine a validated config asks for. With ``engine.launch`` the engine's
    server is started first (``server_binary``: the llama-server the workflow built;
    ``server_log``: where its output goes) and stopped by ``close()``."""
    if config["engine"].get("launch"):
        from perflab.engines.launched_engine import LaunchedEngine

        return LaunchedEngine(config, model_path, server_binary, server_log)
    return engine_kind(config["engine"]["name"]).make(config, model_path)


def ollama_duration(value: str | float | None) -> str | None:
    """keep_alive as Ollama's API takes it: a bare number is seconds, which a string needs to say."""
    if value is None or isinstance(value, str):
        return value
    text = str(value) if isinstance(value, int) else f"{value:f}".rstrip("0").rstrip(".")
    return f"{text}s"


def ignore_eos(engine: dict) -> bool:
    """``engine.ignore_eos``; unset (null), on for the tiny random model only: its random
    weights emit end-of-sequence at random, where a trained model ends its answer."""
    from perflab.engines.ollama_store import uses_tiny_model

    value = engine.get("ignore_eos")
    return uses_tiny_model(engine) if value is None else value


def generation_options(config: dict, temperature: float) -> GenerationOptions:
    generation = config["generation"]
    keep_alive = generation["keep_alive"]
    return GenerationOptions(
        temperature=temperature,
        max_tokens=generation["max_tokens"],
        seed=generation["seed"],
        timeout_s=generation["timeout_s"],
        keep_alive=ollama_duration(keep_alive),
        ignore_eos=ignore_eos(config["engine"]),
    )
