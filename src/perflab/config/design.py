"""The order a run measures its experiments in: a randomized, blocked design.

Every trial is a block: it measures each sweep point once, in an order of its
own drawn from ``order_seed``, and every first trial runs before any second.
Within a trial the points of one size (``Experiment.block``: a suite's points
share their size) run back to back, the sizes in a seeded order of their own
and the points within each in theirs: a machine whose speed drifts over
minutes then lands alike on the points one verdict compares, which a trial's
paired ratios cancel only when those points run close together.
With several targets, the targets of one point run back to back, and their
order turns from trial to trial (A B, then B A: ABBA), so a drift within a
trial favours no target and a fixed order favours no condition.

Each point's place comes from a hash of (seed, trial, point), not from its
index among the others: sorting by that key is a uniformly random
permutation, and adding or removing a point leaves the others' keys, and so
their experiments' specs, as they were (nothing else reruns). The same seed
gives the same order on any machine and Python version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Protocol, TypeVar


class Point(Protocol):
    """What the design reads of an experiment (``perflab.config.sweep.Experiment``)."""

    @property
    def point_id(self) -> str: ...

    @property
    def trial(self) -> int: ...

    @property
    def target(self) -> str | None: ...

    @property
    def block(self) -> str: ...


Experiment = TypeVar("Experiment", bound=Point)


@dataclass(frozen=True)
class Placement:
    """Where one experiment falls in the design (recorded in its metadata).

    Within trial ``trial`` the points run in ascending ``order_key`` (their block's
    key, then their own);
    ``target_turn`` is the target's turn at its point (0: first)."""

    order_seed: int
    trial: int
    order_key: str
    target_turn: int

    def as_dict(self) -> dict:
        return {item.name: getattr(self, item.name) for item in fields(self)}


def _digest(*parts: object) -> int:
    text = "/".join(map(str, parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def order_key(seed: int, trial: int, point_id: str, block: str = "") -> str:
    """The point's rank key within the trial, as 32 hex digits: its block's place, then
    its own place within the block."""
    return (
        f"{_digest('block', seed, trial, block):016x}{_digest('order', seed, trial, point_id):016x}"
    )


def target_sequence(
    seed: int, trial: int, point_id: str, names: Sequence[str | None]
) -> tuple[str | None, ...]:
    """The targets of one point in the order they run in this trial: a seeded start
    per point, then turned over every trial (ABBA across trials)."""
    flipped = (_digest("targets", seed, point_id) + trial - 1) % 2 == 1
    return tuple(reversed(names)) if flipped else tuple(names)


def point_order(
    seed: int, trial: int, point_ids: Iterable[str], blocks: Mapping[str, str] | None = None
) -> list[str]:
    """The points of one trial in the order they run; ``blocks`` maps a point to its
    block (by default one block holds them all)."""
    blocks = blocks or {}
    return sorted(
        point_ids, key=lambda point: (order_key(seed, trial, point, blocks.get(point, "")), point)
    )


def design_order(
    conditions: Iterable[Experiment],
    names: Sequence[str | None],
    repeats: int,
    seed: int,
) -> list[Experiment]:
    """Every trial of every condition on every target, in the order they run:
    trial 1's points in their seeded order (each point's targets together), then
    trial 2's, and so on."""
    by_point = {condition.point_id: condition for condition in conditions}
    blocks = {point: condition.block for point, condition in by_point.items()}
    ordered = []
    for trial in range(1, repeats + 1):
        for point in point_order(seed, trial, by_point, blocks):
            for name in target_sequence(seed, trial, point, names):
                ordered.append(replace(by_point[point], trial=trial, target=name))
    return ordered


def placement(seed: int, experiment: Point, names: Sequence[str | None] = (None,)) -> Placement:
    """The experiment's place in the design of a run with targets ``names``."""
    point, trial = experiment.point_id, experiment.trial
    turn = target_sequence(seed, trial, point, names).index(experiment.target)
    return Placement(seed, trial, order_key(seed, trial, point, experiment.block), turn)
