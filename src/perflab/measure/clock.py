"""The one clock of a run: perf-counter durations, stamped as epoch seconds."""

from __future__ import annotations

import time


class Clock:
    """Monotonic durations, reported as wall-clock epoch seconds."""

    def __init__(self):
        self._epoch = time.time()
        self._start = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter()

    def epoch(self, perf: float) -> float:
        return self._epoch + (perf - self._start)
