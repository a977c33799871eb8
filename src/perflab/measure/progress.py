"""A compact live progress line per experiment.

On a terminal, tqdm redraws one line; elsewhere (CI, a log file) plain
lines come out at every tenth of the plan and at most every 30 s.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TextIO

from perflab.core.records import STATUS_DROPPED, STATUS_OK, RequestRecord
from perflab.measure.estimate import format_duration

RATE_WINDOW = 20  # recent requests the current req/s and tok/s are taken over
PLAIN_EVERY_S = 30.0


@dataclass(frozen=True)
class ProgressState:
    """What the line says: measured requests so far against the plan."""

    done: int
    planned: int | None  # None: a duration run
    errors: int
    warmup_done: int
    warmup_planned: int
    req_per_s: float | None
    tok_per_s: float | None
    eta_s: float | None

    def describe(self) -> str:
        if self.warmup_planned and not self.done:
            return f"warm-up {self.warmup_done}/{self.warmup_planned}"
        planned = f"/{self.planned}" if self.planned is not None else ""
        rate = "–" if self.req_per_s is None else f"{self.req_per_s:.2f}"
        tps = "–" if self.tok_per_s is None else f"{self.tok_per_s:.1f}"
        eta = "–" if self.eta_s is None else format_duration(self.eta_s)
        return (
            f"{self.done}{planned} requests, {self.errors} errors, {rate} req/s, "
            f"{tps} tok/s, ETA {eta}"
        )


class ExperimentProgress:
    """An on_record callback that shows progress; ``close()`` ends the line."""

    def __init__(
        self,
        label: str,
        planned: int | None,
        duration_s: float | None,
        warmup_planned: int,
        stream: TextIO | None = None,
    ):
        self.label = label
        self.planned = planned
        self.duration_s = duration_s
        self.warmup_planned = warmup_planned
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()
        self._recent: deque[RequestRecord] = deque(maxlen=RATE_WINDOW)
        self._done = self._errors = self._warmup_done = 0
        self._measure_started: float | None = None
        self._last_plain = 0.0
        self._last_tenth = -1
        self._bar = self._make_bar() if self._is_terminal() else None
        self._closed = False

    def _is_terminal(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def _make_bar(self):
        from tqdm import tqdm

        return tqdm(
            total=None,
            file=self.stream,
            bar_format="{desc}",
            desc=f"{self.label}: starting",
            leave=True,
            dynamic_ncols=True,
            mininterval=0.2,
        )

    def __call__(self, record: RequestRecord) -> None:
        with self._lock:
            if self._closed:
                return
            self._count(record)
            state = self.state()
            if self._bar is not None:
                self._bar.set_description_str(f"{self.label}: {state.describe()}")
            else:
                self._maybe_print(state)

    def _count(self, record: RequestRecord) -> None:
        if record.is_warmup:
            self._warmup_done += 1
            return
        if self._measure_started is None:
            self._measure_started = record.t_submit
        self._done += 1
        self._errors += record.status not in (STATUS_OK, STATUS_DROPPED)
        self._recent.append(record)

    def state(self) -> ProgressState:
        req_per_s = tok_per_s = eta_s = None
        recent = list(self._recent)
        if len(recent) >= 2:
            span = max(r.t_end for r in recent) - min(r.t_submit for r in recent)
            if span > 0:
                req_per_s = len(recent) / span
                tok_per_s = sum(r.output_tokens for r in recent if r.status == STATUS_OK) / span
        if self.planned is not None and req_per_s:
            eta_s = max(self.planned - self._done, 0) / req_per_s
        elif self.duration_s is not None and self._measure_started is not None:
            eta_s = max(self.duration_s - (time.time() - self._measure_started), 0.0)
        return ProgressState(
            done=self._done,
            planned=self.planned,
            errors=self._errors,
            warmup_done=self._warmup_done,
            warmup_planned=self.warmup_planned,
            req_per_s=req_per_s,
            tok_per_s=tok_per_s,
            eta_s=eta_s,
        )

    def _maybe_print(self, state: ProgressState) -> None:
        now = time.monotonic()
        tenth = None if not self.planned else (10 * state.done) // self.planned
        due = now - self._last_plain >= PLAIN_EVERY_S
        if (tenth is not None and tenth > self._last_tenth) or due:
            print(f"{self.label}: {state.describe()}", file=self.stream, flush=True)
            self._last_plain = now
            if tenth is not None:
                self._last_tenth = tenth

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._bar is not None:
                self._bar.close()
                self._bar = None
