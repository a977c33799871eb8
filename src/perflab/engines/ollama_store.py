"""Find the GGUF file behind an Ollama model name in the local Ollama store.

Ollama keeps a model as a manifest,
``<store>/manifests/<registry>/<namespace>/<model>/<tag>`` (JSON listing
layers by digest), and its layers as blobs, ``<store>/blobs/sha256-<hex>``.
The weights are the layer of media type ``application/vnd.ollama.image.model``:
a plain GGUF file that llama.cpp loads as it is, so the same weights can be
measured with and without Ollama.

The store is ``$OLLAMA_MODELS`` when set; otherwise ``~/.ollama/models``
(a user's ``ollama serve``) and then ``/usr/share/ollama/.ollama/models``
(the Linux service install).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from perflab.engines.base import PreflightError

DEFAULT_REGISTRY = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
MODEL_MEDIA_TYPE = "application/vnd.ollama.image.model"
SERVICE_STORE = Path("/usr/share/ollama/.ollama/models")
TINY_MODEL_NAME = "tiny-llama3"


@dataclass(frozen=True)
class OllamaModel:
    """Where an Ollama model's weights are: the GGUF blob and its digest."""

    name: str
    store: Path
    manifest: Path
    path: Path
    digest: str


def uses_tiny_model(engine: dict) -> bool:
    """A llamacpp engine with neither a GGUF path nor an Ollama name runs the tiny model."""
    return (
        engine["name"] == "llamacpp"
        and not engine["model_path"]
        and engine["model"] == TINY_MODEL_NAME
    )


def stores() -> list[Path]:
    """The stores searched, in order."""
    if os.environ.get("OLLAMA_MODELS"):
        return [Path(os.environ["OLLAMA_MODELS"]).expanduser()]
    return [Path.home() / ".ollama" / "models", SERVICE_STORE]


def manifest_parts(name: str) -> tuple[str, str, str, str]:
    """(registry, namespace, model, tag) of an Ollama name, with Ollama's defaults:
    ``llama3.1:8b`` is ``registry.ollama.ai/library/llama3.1:8b``; no tag means ``latest``."""
    text = name.strip()
    path, _, tag = text.rpartition(":") if ":" in text.rsplit("/", 1)[-1] else (text, "", "")
    parts = [part for part in path.split("/") if part]
    if not parts or len(parts) > 3 or any(part in (".", "..") for part in parts):
        raise PreflightError(
            f"engine.model {name!r} is not an Ollama model name; use one like "
            "'llama3.1:8b' or 'namespace/model:tag', or set engine.model_path to a GGUF file."
        )
    if len(parts) == 1:
        parts = [DEFAULT_REGISTRY, DEFAULT_NAMESPACE, parts[0]]
    elif len(parts) == 2:
        parts = [DEFAULT_REGISTRY, *parts]
    return parts[0], parts[1], parts[2], tag or "latest"


def _weights(manifest: Path, store: Path, name: str) -> OllamaModel:
    try:
        layers = json.loads(manifest.read_text())["layers"]
        digest = next(layer["digest"] for layer in layers if layer["mediaType"] == MODEL_MEDIA_TYPE)
    except (OSError, ValueError, KeyError, TypeError, StopIteration):
        raise PreflightError(
            f"The Ollama manifest {manifest} lists no model weights "
            f"({MODEL_MEDIA_TYPE} layer). Run `ollama pull {name}` again."
        ) from None
    for blob in (store / "blobs" / digest.replace(":", "-"), store / "blobs" / digest):
        if blob.is_file():
            return OllamaModel(name, store, manifest, blob, digest)
    raise PreflightError(
        f"The Ollama manifest {manifest} names the blob {digest}, which is not under "
        f"{store / 'blobs'}. Run `ollama pull {name}` again."
    )


def resolve(name: str) -> OllamaModel:
    """The GGUF blob of Ollama model ``name``; a PreflightError names the stores and the fix."""
    parts = manifest_parts(name)
    searched = stores()
    for store in searched:
        manifest = store.joinpath("manifests", *parts)
        if manifest.is_file():
            return _weights(manifest, store, name)
    where = ", ".join(str(store) for store in searched)
    env = os.environ.get("OLLAMA_MODELS")
    how = f"OLLAMA_MODELS={env}" if env else "OLLAMA_MODELS is not set"
    raise PreflightError(
        f"Model {name!r} is not in the Ollama store (looked for manifests/{'/'.join(parts)} "
        f"under {where}; {how}). Run `ollama pull {name}`, set OLLAMA_MODELS to the store "
        "Ollama uses, or set engine.model_path to a GGUF file."
    )
