"""The prompt cache: TTFT of one prompt with and without reuse (kv_cache suite).

``bust`` gives every request a unique prefix, so the server prefills the whole
prompt; ``reuse`` sends the identical prompt, so a server with a prompt cache
evaluates only what it has not seen. The verdict is reuse TTFT against bust
TTFT, trial by trial (``frame.compare``): ``changed`` with a ratio below 1
means reuse is faster.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import polars as pl

from perflab.analyse.findings.frame import (
    Condition,
    compare,
    conditions,
    measured,
    one_pass,
    suite_rows,
    unsettled,
)
from perflab.analyse.verdict import Outcome, Verdict


@dataclass(frozen=True)
class KvCacheFinding:
    verdict: Outcome | None  # None: the suite did not run both ways
    test: Verdict | None  # reuse TTFT / bust TTFT
    bust: Condition | None
    reuse: Condition | None
    ttft_saving: float | None  # 1 − reuse TTFT / bust TTFT (the paired estimate)
    one_pass: bool
    disturbed: tuple[str, ...]

    @property
    def reuse_faster(self) -> bool:
        return self.verdict is Outcome.CHANGED and (self.ttft_saving or 0) > 0


def summary(frame: pl.DataFrame, disturbed_ids: tuple[str, ...] = ()) -> KvCacheFinding:
    found = [c for c in measured(conditions(suite_rows(frame, "kv_cache"), disturbed_ids))]
    bust = next((c for c in found if c.prompt_cache == "bust" and c.ttft.mean), None)
    reuse = next((c for c in found if c.prompt_cache == "reuse" and c.ttft.mean), None)
    if bust is None or reuse is None:
        return KvCacheFinding(None, None, bust, reuse, None, one_pass(found), ())
    pair = [bust, reuse]
    unsettled_ids = unsettled(pair)
    test = compare(bust, reuse, "ttft", unsettled_ids)
    finding = KvCacheFinding(None, test, bust, reuse, None, one_pass(pair), unsettled_ids)
    return rejudged(finding, test)


def rejudged(finding: KvCacheFinding, test: Verdict) -> KvCacheFinding:
    saving = 1 - test.estimate if test.estimate is not None else None
    return replace(finding, verdict=test.outcome, test=test, ttft_saving=saving)
