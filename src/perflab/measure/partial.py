"""The partial record file: each record appended as it ends, so a crash loses
nothing; kept under ``failed/`` (never deleted) when the experiment does not finish."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from pathlib import Path

from perflab.core.records import RequestRecord


class PartialWriter:
    """An on_record callback appending JSON lines; remembers the first write error.

    After an error (a full or read-only disk) it writes nothing more, so the
    lines already on disk stay whole; the caller stops the run and reports it.
    """

    def __init__(self, path: Path):
        self.path = path
        self.error: OSError | None = None
        self.written = 0
        self._lock = threading.Lock()
        self._handle = open(path, "ab", buffering=0)  # noqa: SIM115 - closed by close()

    def __call__(self, record: RequestRecord) -> None:
        with self._lock:
            if self._handle is None or self.error is not None:
                return
            line = (record.to_json() + "\n").encode()
            start = self._handle.tell()
            try:
                view = memoryview(line)
                while view:
                    view = view[self._handle.write(view) :]
                self.written += 1
            except OSError as exc:
                self.error = exc
                self._cut(start)

    def _cut(self, size: int) -> None:
        """Drop a half-written line, so every line on disk is a whole record."""
        with contextlib.suppress(OSError):
            os.truncate(self.path, size)

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None


def keep_failed(partial_path: Path, failed_dir: Path, experiment_id: str, tag: str = "") -> Path:
    """Move the partial file under ``failed_dir``; where that fails, it stays where it is."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = failed_dir / f"{experiment_id}-{stamp}{tag}.jsonl"
    try:
        failed_dir.mkdir(parents=True, exist_ok=True)
        shutil.move(partial_path, target)
    except OSError:
        return partial_path
    return target


def keep_leftover(partial_path: Path, failed_dir: Path, experiment_id: str) -> Path | None:
    """A partial file from a run that crashed: moved to ``failed/``, not deleted."""
    if not partial_path.exists():
        return None
    return keep_failed(partial_path, failed_dir, experiment_id, tag="-interrupted")
