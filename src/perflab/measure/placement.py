"""Where the model lives during an experiment: ``/api/ps`` read once the first
request has loaded the model, on a thread of its own so that no worker waits
for it and no request's timing includes it."""

from __future__ import annotations

import threading
from collections.abc import Callable

from perflab.core.records import STATUS_OK, RequestRecord
from perflab.engines.ollama_ps import ModelPlacement

WAIT_S = 10.0  # how long the end of the experiment waits for a read still under way

Reader = Callable[[], ModelPlacement | None]


class PlacementWatch:
    """Reads the engine's placement after the first successful request (which loaded
    the model); an engine without a reader (not Ollama's API) is never read."""

    def __init__(self, read: Reader | None):
        self._read = read
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._found: ModelPlacement | None = None

    @property
    def active(self) -> bool:
        return self._read is not None

    def saw(self, record: RequestRecord) -> None:
        """Called with every record; the first successful one starts the read."""
        if not self.active or record.status != STATUS_OK or self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="perflab-placement", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        try:
            self._found = self._read()
        except Exception:  # noqa: BLE001 - a failed read leaves the placement unknown
            self._found = None

    def result(self, wait_s: float = WAIT_S) -> ModelPlacement | None:
        """The placement read, once the read (if one started) has ended or ``wait_s`` passed."""
        if self._thread is not None:
            self._thread.join(wait_s)
        return self._found
