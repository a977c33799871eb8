"""The basic suite: each prompt's figures over its trials."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from perflab.analyse.findings.frame import Condition, conditions, suite_rows


@dataclass(frozen=True)
class BasicFinding:
    prompts: tuple[Condition, ...]  # in the config's prompt order

    @property
    def n_ok(self) -> int:
        return sum(c.n_ok for c in self.prompts)


def summary(
    frame: pl.DataFrame, prompt_order: tuple[str, ...] = (), disturbed: tuple[str, ...] = ()
) -> BasicFinding:
    found = conditions(suite_rows(frame, "basic"), disturbed)
    rank = {name: i for i, name in enumerate(prompt_order)}
    found.sort(key=lambda c: (rank.get(c.prompt_name, len(rank)), c.prompt_cache, c.condition_id))
    return BasicFinding(tuple(found))
