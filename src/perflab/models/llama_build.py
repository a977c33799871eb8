"""llama.cpp's ``llama-server`` and ``llama-bench``, built from the llama.cpp
tree that llama-cpp-python's sdist vendors: the very commit the embedded
engine runs, so the three measure the same kernels.

The build (CMake, about 8 minutes on 2 cores) happens in a build directory
that survives the workflow's ``cache/`` (``$PERFLAB_BUILD_CACHE``, else
``cache/build``), keyed by the sdist's version and hash, so a second build
compiles nothing; the two binaries, linked statically, are then copied into
place. ``$PERFLAB_LLAMA_SERVER_DIR`` names a directory that already holds
both (built from the same sdist): they are linked instead of built.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from perflab.models.pypi import pip_download

SDIST_PACKAGE = "llama-cpp-python"
TOOLS = ("llama-server", "llama-bench")
PREBUILT_ENV = "PERFLAB_LLAMA_SERVER_DIR"
BUILD_CACHE_ENV = "PERFLAB_BUILD_CACHE"
CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",  # self-contained binaries that can be copied out of the build
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
)


class BuildError(RuntimeError):
    """The tools could not be fetched, built or found; the message says what to do."""


def installed_llama_cpp_version() -> str:
    from importlib.metadata import version

    return version(SDIST_PACKAGE)


def sdist_name(version: str | None = None) -> str:
    return f"llama_cpp_python-{version or installed_llama_cpp_version()}.tar.gz"


def fetch_sdist(dest: Path, version: str | None = None) -> Path:
    """Download llama-cpp-python's sdist (the installed version) with pip to ``dest``."""
    dest = Path(dest)
    version = version or installed_llama_cpp_version()
    with tempfile.TemporaryDirectory() as tmp:
        done = pip_download(f"{SDIST_PACKAGE}=={version}", Path(tmp), wheel=False)
        found = list(Path(tmp).glob("*.tar.gz"))
        if done.returncode or not found:
            raise BuildError(
                f"pip could not download {SDIST_PACKAGE}=={version}'s sdist: "
                f"{done.stderr.strip()[-800:]}. Check the network or pip's index settings."
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(found[0], dest.with_suffix(".tmp"))
        os.replace(dest.with_suffix(".tmp"), dest)
    return dest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_dir_for(sdist: Path, root: Path | None = None) -> Path:
    """Where this sdist's build lives: one directory per version and hash."""
    root = root or Path(os.environ.get(BUILD_CACHE_ENV) or "cache/build").expanduser()
    stem = Path(sdist).name.removesuffix(".tar.gz")
    return root / f"{stem}-{_sha256(Path(sdist))[:12]}"


def _extract(sdist: Path, build_dir: Path) -> Path:
    """The sdist's vendored llama.cpp tree, extracted once into the build directory."""
    source = build_dir / "src"
    marker = build_dir / "src.extracted"
    if marker.exists():
        return source / "vendor" / "llama.cpp"
    shutil.rmtree(source, ignore_errors=True)
    source.mkdir(parents=True)
    with tarfile.open(sdist) as tar:
        top = tar.getmembers()[0].name.split("/")[0]
        prefix = f"{top}/vendor/llama.cpp/"
        members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
        for member in members:
            member.name = "vendor/llama.cpp/" + member.name[len(prefix) :]
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(source, members=members, **safe)
    marker.touch()
    return source / "vendor" / "llama.cpp"


def _run(command: list[str], log) -> None:
    print(f"$ {' '.join(command)}", file=log, flush=True)
    done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        raise BuildError(
            f"{command[0]} failed (exit status {done.returncode}); its output is above. "
            "A C/C++ compiler and CMake ≥ 3.14 are needed."
        )


def build_tools(sdist: Path, out_dir: Path, jobs: int = 2, log=None) -> list[Path]:
    """Build llama-server and llama-bench from ``sdist`` and copy them into ``out_dir``."""
    log = log or sys.stdout
    if shutil.which("cmake") is None:
        raise BuildError("cmake is not on PATH; install CMake (and a C/C++ compiler).")
    build_dir = build_dir_for(sdist)
    source = _extract(Path(sdist), build_dir)
    binaries = build_dir / "cmake"
    _run(["cmake", "-S", str(source), "-B", str(binaries), *CMAKE_OPTIONS], log)
    _run(["cmake", "--build", str(binaries), "--target", *TOOLS, f"-j{jobs}"], log)
    return [_install(binaries / "bin" / tool, Path(out_dir) / tool, copy=True) for tool in TOOLS]


def link_prebuilt(prebuilt: Path, out_dir: Path) -> list[Path]:
    """Point ``out_dir``'s tools at those in ``prebuilt`` (after checking each runs)."""
    return [_install(Path(prebuilt) / tool, Path(out_dir) / tool, copy=False) for tool in TOOLS]


def _install(source: Path, dest: Path, copy: bool) -> Path:
    if not os.access(source, os.X_OK):
        raise BuildError(f"{source} is not an executable; build it, or unset {PREBUILT_ENV}.")
    done = subprocess.run([str(source), "--version"], capture_output=True, text=True, timeout=60)
    if done.returncode:
        raise BuildError(f"{source} --version failed: {(done.stdout + done.stderr)[-500:]}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.unlink(missing_ok=True)
    if copy:
        shutil.copy2(source, tmp)
    else:
        tmp.symlink_to(source.resolve())
    os.replace(tmp, dest)
    return dest


def provide_tools(sdist: Path | None, out_dir: Path, jobs: int = 2, log=None) -> list[Path]:
    """The tools in ``out_dir``: linked from ``$PERFLAB_LLAMA_SERVER_DIR`` when it is
    set, else built from ``sdist``."""
    prebuilt = os.environ.get(PREBUILT_ENV)
    if prebuilt:
        print(f"{PREBUILT_ENV}={prebuilt}: linking its tools, building nothing", file=log)
        return link_prebuilt(Path(prebuilt).expanduser(), out_dir)
    if sdist is None:
        raise BuildError(f"no sdist to build from and {PREBUILT_ENV} is not set")
    return build_tools(sdist, out_dir, jobs, log)
