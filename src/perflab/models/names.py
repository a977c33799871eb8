"""The name a model goes by in the log: the one its user gave or knows it by.

A GGUF's own ``general.name`` is whatever its converter wrote (SmolLM2's reads
"Smollm2 135M 8k Lc100K Mix1 Ep2"), so it follows the known name in brackets
instead of standing for the model.
"""

from __future__ import annotations

from pathlib import Path

from perflab.engines.launch import as_served
from perflab.engines.registry import loads_model_file
from perflab.models.smollm2 import QUANTIZATION, uses_smollm2

SMOLLM2_NAME = "SmolLM2-135M-Instruct"


def known_name(engine: dict) -> str:
    """The model as the config names it: SmolLM2 with its quantization, a GGUF path by
    its file name, else ``engine.model`` (an Ollama or server model name, tiny-llama3)."""
    if uses_smollm2(engine):
        quantization = engine.get("quantization") or QUANTIZATION
        return f"{SMOLLM2_NAME} ({quantization.upper()})"
    if engine.get("model_path"):
        return Path(engine["model_path"]).name
    return engine["model"]


def model_label(engine: dict, reported: str | None) -> str:
    """``known_name``, then the name the engine reported (``reported``: a GGUF's
    ``general.name`` in llama.cpp, the server's model id otherwise) in brackets when
    it says something the known name does not."""
    known = known_name(as_served(engine))
    if not reported or reported.casefold() in known.casefold():
        return known
    source = "GGUF general.name" if loads_model_file(engine) else "the server's name"
    return f"{known} [{source}: {reported}]"
