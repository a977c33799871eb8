"""An Ollama model name runs in llama.cpp: its weights found in a store laid out
as Ollama lays it out (manifests -> blobs), built here around the tiny model."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from perflab.engines import make_engine
from perflab.engines.base import GenerationOptions, PreflightError
from perflab.engines.ollama_store import (
    MODEL_MEDIA_TYPE,
    manifest_parts,
    resolve,
    stores,
    uses_tiny_model,
)


def build_store(root: Path, gguf: Path, *manifest_path: str) -> str:
    """Put ``gguf`` in an Ollama store at ``root`` under ``manifest_path``; its digest."""
    digest = "sha256:" + hashlib.sha256(gguf.read_bytes()).hexdigest()
    blobs = root / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(gguf, blobs / digest.replace(":", "-"))
    config = blobs / "sha256-config"
    config.write_text("{}")
    manifest = root.joinpath("manifests", *manifest_path)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    layer = {"mediaType": MODEL_MEDIA_TYPE, "digest": digest, "size": gguf.stat().st_size}
    template = {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:0"}
    manifest.write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"digest": "sha256:config"},
                "layers": [template, layer],
            }
        )
    )
    return digest


def llamacpp_config(model: str) -> dict:
    return {
        "engine": {
            "name": "llamacpp",
            "model": model,
            "model_path": None,
            "n_ctx": 512,
            "n_threads": 1,
            "prompt_cache": False,
        }
    }


def test_names_map_to_manifest_paths():
    assert manifest_parts("llama3.1:8b") == ("registry.ollama.ai", "library", "llama3.1", "8b")
    assert manifest_parts("tinyllama") == ("registry.ollama.ai", "library", "tinyllama", "latest")
    assert manifest_parts("me/mine:q4") == ("registry.ollama.ai", "me", "mine", "q4")
    assert manifest_parts("hf.co/org/repo:Q8_0") == ("hf.co", "org", "repo", "Q8_0")
    assert manifest_parts("host:5000/ns/m") == ("host:5000", "ns", "m", "latest")
    for bad in ("", "a/b/c/d", "../x:1"):
        with pytest.raises(PreflightError, match="engine.model_path"):
            manifest_parts(bad)


def test_only_the_default_name_means_the_tiny_model():
    assert uses_tiny_model(llamacpp_config("tiny-llama3")["engine"])
    assert not uses_tiny_model(llamacpp_config("llama3.1:8b")["engine"])
    assert not uses_tiny_model({**llamacpp_config("tiny-llama3")["engine"], "model_path": "x"})


def test_an_ollama_name_runs_in_llamacpp_from_the_store(tiny_model_path, tmp_path, monkeypatch):
    store = tmp_path / "ollama-models"
    path = ("registry.ollama.ai", "library", "llama3.1", "8b")
    digest = build_store(store, tiny_model_path, *path)
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    found = resolve("llama3.1:8b")
    assert found.digest == digest and found.path == store / "blobs" / digest.replace(":", "-")
    assert found.manifest == store.joinpath("manifests", *path)

    engine = make_engine(llamacpp_config("llama3.1:8b"))
    try:
        info = engine.preflight()
        assert info["model_path"] == str(found.path)
        assert info["model"] == "perflab-tiny-llama3-d32-l1"  # the GGUF's own name
        chunks = list(engine.stream("hello", GenerationOptions(max_tokens=4, ignore_eos=True)))
    finally:
        engine.close()
    assert chunks[-1].done and chunks[-1].timings.output_tokens == 4


def test_default_stores_are_searched_without_ollama_models(tiny_model_path, tmp_path, monkeypatch):
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert stores()[0] == tmp_path / ".ollama" / "models"
    build_store(tmp_path / ".ollama" / "models", tiny_model_path, "hf.co", "org", "repo", "Q8_0")
    assert resolve("hf.co/org/repo:Q8_0").path.is_file()


def test_a_missing_model_names_the_store_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path))
    with pytest.raises(PreflightError) as info:
        make_engine(llamacpp_config("llama3.1:8b"))
    message = str(info.value)
    assert (
        str(tmp_path) in message and "manifests/registry.ollama.ai/library/llama3.1/8b" in message
    )
    assert "ollama pull llama3.1:8b" in message and "engine.model_path" in message


def test_a_manifest_without_its_blob_says_so(tiny_model_path, tmp_path, monkeypatch):
    digest = build_store(tmp_path, tiny_model_path, "registry.ollama.ai", "library", "m", "latest")
    (tmp_path / "blobs" / digest.replace(":", "-")).unlink()
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path))
    with pytest.raises(PreflightError, match="not under .*blobs.*ollama pull m"):
        resolve("m")
    (tmp_path / "manifests" / "registry.ollama.ai" / "library" / "m" / "latest").write_text("{}")
    with pytest.raises(PreflightError, match="lists no model weights"):
        resolve("m")
