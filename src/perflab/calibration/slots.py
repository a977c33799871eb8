"""A served model's load state, keep-alive, parallel slots and FIFO queue."""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass


@dataclass
class Slot:
    """One of a model's parallel slots and the tokens in its KV cache (as words)."""

    index: int
    busy: bool = False
    cached: tuple[str, ...] = ()


def _common_prefix(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class ModelSlots:
    """Load state, keep-alive, slots and the FIFO queue of one served model.

    Every field is guarded by ``cond``.
    """

    def __init__(self, name: str, keep_alive_s: float):
        self.name = name
        self.cond = threading.Condition()
        self.loaded = False
        self.loading = False
        self.active = 0  # requests holding a load reference
        self.expires_at: float | None = None  # perf_counter; None while in use or forever
        self.keep_alive_s = keep_alive_s
        self.running = 0
        self.pending = 0
        self.queue: deque[object] = deque()
        self.slots: list[Slot] = []

    def unload(self) -> None:
        """The one unload transition: weights and every slot's cache go."""
        self.loaded = False
        self.expires_at = None
        for slot in self.slots:
            slot.cached = ()

    def unload_if_idle(self) -> None:
        if self.active == 0:
            self.unload()

    def expire_if_due(self, now: float) -> None:
        expired = self.expires_at is not None and now >= self.expires_at
        if self.loaded and expired:
            self.unload_if_idle()

    def release(self, keep_alive: float, now: float) -> None:
        """Drop one load reference; the last one starts the keep-alive clock."""
        self.active -= 1
        self.keep_alive_s = keep_alive
        if self.active or not self.loaded:
            return
        if keep_alive == 0:
            self.unload()
        else:
            self.expires_at = None if math.isinf(keep_alive) else now + keep_alive

    def take_slot(self, words: tuple[str, ...], num_parallel: int, reuse: bool) -> tuple[Slot, int]:
        """A free slot and how many leading words of ``words`` its cache holds.

        With ``reuse`` the slot with the longest shared prefix wins; on a tie the
        one caching least, so a useful cache is not overwritten needlessly.
        """
        while len(self.slots) < num_parallel:
            self.slots.append(Slot(len(self.slots)))
        free = [slot for slot in self.slots if not slot.busy]
        if reuse:
            best = max(
                free,
                key=lambda s: (_common_prefix(s.cached, words), -len(s.cached), -s.index),
            )
            prefix = _common_prefix(best.cached, words)
        else:
            best, prefix = free[0], 0
        best.busy = True
        return best, prefix
