"""A calibration server in its own process, for benchmarks of the client side.

In its own process the server takes no CPU from the client's process (so
``time.process_time()`` there is the client's alone) and holds no lock the
client needs, as with a real Ollama. Its request log (``--log-jsonl``) stamps
times with ``time.perf_counter()``, which on Linux reads the system-wide
monotonic clock: the client's stamps and the server's compare directly.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def unused_port(host: str = "127.0.0.1") -> int:
    """A free TCP port on ``host`` for the server process to listen on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class CalibrationProcess:
    """``python -m perflab.calibration`` with ``timing``; ``entries()`` reads its log."""

    def __init__(self, timing: dict):
        self.timing = timing
        self._dir = tempfile.TemporaryDirectory(prefix="perflab-bench-")
        self.log_path = Path(self._dir.name) / "requests.jsonl"
        self.port = unused_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> CalibrationProcess:
        config = Path(self._dir.name) / "timing.json"
        config.write_text(json.dumps(self.timing))
        command = [sys.executable, "-m", "perflab.calibration", "--port", str(self.port)]
        command += ["--config", str(config), "--quiet", "--log-jsonl", str(self.log_path)]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        self._wait_until_up()
        return self

    def _wait_until_up(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"calibration server exited with {self._process.returncode}")
            try:
                httpx.get(f"{self.url}/api/version", timeout=1.0).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"calibration server not up at {self.url} after {timeout_s:g} s")

    def entries(self) -> list[dict]:
        """Every generation request the server has finished, in arrival order."""
        if not self.log_path.exists():
            return []
        text = self.log_path.read_text()
        # the server may be writing its next line: read the complete ones only
        lines = text[: text.rfind("\n") + 1].splitlines()
        return sorted((json.loads(line) for line in lines if line.strip()), key=lambda e: e["id"])

    def wait_for(self, n: int, timeout_s: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        entries = self.entries()
        while len(entries) < n and time.monotonic() < deadline:
            time.sleep(0.02)
            entries = self.entries()
        return entries

    def __exit__(self, *exc) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._dir.cleanup()
