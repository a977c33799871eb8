"""Host provenance, file and config hashes."""

import hashlib
import shutil
import subprocess

import pytest

import perflab
from perflab.measure.provenance import (
    EngineInfo,
    HostInfo,
    config_hash,
    file_sha256,
    git_commit,
    host_info,
    model_fingerprint,
    model_sha256,
    package_version,
)


def test_host_info_has_every_key():
    info = host_info()
    for key in (
        "hostname",
        "os",
        "kernel",
        "platform",
        "python",
        "cpu_model",
        "logical_cores",
        "physical_cores",
        "ram_gb",
        "perflab_version",
        "git_commit",
        "packages",
    ):
        assert key in info
    assert info["logical_cores"] >= 1 and info["ram_gb"] > 0 and info["cpu_model"]
    assert info["perflab_version"] == perflab.__version__
    assert set(info["packages"]) >= {"llama-cpp-python", "ollama", "polars", "snakemake"}
    assert info["packages"]["polars"]  # installed with perflab


def test_missing_package_has_no_version():
    assert package_version("surely-not-an-installed-distribution") is None


def test_file_sha256_matches_hashlib(tmp_path):
    path = tmp_path / "model.gguf"
    data = bytes(range(256)) * 5000  # over one small chunk
    path.write_bytes(data)
    assert file_sha256(path, chunk=4096) == hashlib.sha256(data).hexdigest()
    assert file_sha256(str(path)) == hashlib.sha256(data).hexdigest()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert file_sha256(empty) == hashlib.sha256(b"").hexdigest()


def test_config_hash_is_stable_under_key_order():
    a = {"engine": {"name": "ollama", "host": "http://localhost:11434"}, "seed": 1, "x": [1, 2]}
    b = {"x": [1, 2], "seed": 1, "engine": {"host": "http://localhost:11434", "name": "ollama"}}
    assert config_hash(a) == config_hash(b)
    assert len(config_hash(a)) == 12 and int(config_hash(a), 16) >= 0
    assert config_hash(a) != config_hash(a | {"seed": 2})
    assert config_hash(a) != config_hash(a | {"x": [2, 1]})  # list order matters


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_git_commit_clean_dirty_and_outside_a_repository(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    env = ["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]

    def git(*args):
        subprocess.run(["git", *env, *args], cwd=repo, check=True, capture_output=True)

    git("init", "-q")
    (repo / "a.txt").write_text("a")
    git("add", "a.txt")
    git("commit", "-q", "-m", "first")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert git_commit(repo) == head
    (repo / "a.txt").write_text("changed")
    assert git_commit(repo) == f"{head}-dirty"
    outside = tmp_path / "plain"
    outside.mkdir()
    assert git_commit(outside) is None


def test_git_commit_is_none_without_git(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable anywhere
    assert git_commit(tmp_path) is None


def test_model_sha256_is_reused_only_while_the_file_is_unchanged(tmp_path):
    model = tmp_path / "model.gguf"
    model.write_bytes(b"weights" * 1000)
    known = model_fingerprint(model)
    assert known["sha256"] == hashlib.sha256(b"weights" * 1000).hexdigest()
    assert model_sha256(model, known | {"sha256": "from-preflight"}) == "from-preflight"
    model.write_bytes(b"other weights")  # new size and mtime: hash it again
    assert model_sha256(model, known | {"sha256": "from-preflight"}) == file_sha256(model)
    assert model_sha256(model, None) == file_sha256(model)


def test_host_info_reads_back_as_it_was_written():
    written = host_info()
    host = HostInfo.from_json(written)
    assert host.to_json() == written
    assert host.logical_cores == written["logical_cores"] >= 1
    assert HostInfo.from_json({}).logical_cores is None  # a file without it


def test_engine_info_writes_back_every_name_it_read():
    reported = {
        "engine": "openai",
        "engine_version": None,  # given as null: written back as null
        "model": "m",
        "host": "http://h/v1",
        "model_details": {"owned_by": "x"},
        "endpoint": "chat",  # the engine's own
        "server": {"server": "llama-server", "pid": 7},
    }
    info = EngineInfo.from_json(reported)
    assert info.to_json() == reported
    assert info.engine_version is None and info.reported["endpoint"] == "chat"
    assert info.server_name == "llama-server" and info.model_id is None
    assert not info.reports_threads
    embedded = EngineInfo.from_json({"engine": "llamacpp", "n_threads": None, "model_sha256": "s"})
    assert embedded.reports_threads and embedded.model_id == "s"
    assert embedded.to_json() == {"engine": "llamacpp", "n_threads": None, "model_sha256": "s"}
