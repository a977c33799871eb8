"""The prompt cache: TTFT of one prompt with and without reuse (kv_cache suite).

``bust`` gives every request a unique prefix, so the server prefills the whole
prompt; ``reuse`` sends the identical prompt, so a server with a prompt cache
evaluates only what it has not seen. Same rules as every comparison: the
intervals of mean TTFT must not overlap, the difference must matter, and one
pass or an unsettled disturbed experiment gives ``inconclusive``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import polars as pl

from perflab.analyse.findings.frame import (
    Condition,
    conditions,
    differ,
    measured,
    one_pass,
    rests_on_disturbed,
    suite_rows,
)


class KvCacheVerdict(str, Enum):
    REUSE_FASTER = "reuse_faster"
    NO_EFFECT = "no_effect"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class KvCacheFinding:
    verdict: KvCacheVerdict | None  # None: the suite did not run both ways
    bust: Condition | None
    reuse: Condition | None
    ttft_saving: float | None  # 1 − reuse TTFT / bust TTFT
    one_pass: bool
    disturbed: tuple[str, ...]


def summary(frame: pl.DataFrame, disturbed: tuple[str, ...] = ()) -> KvCacheFinding:
    found = [c for c in measured(conditions(suite_rows(frame, "kv_cache"), disturbed))]
    bust = next((c for c in found if c.prompt_cache == "bust" and c.ttft.mean), None)
    reuse = next((c for c in found if c.prompt_cache == "reuse" and c.ttft.mean), None)
    if bust is None or reuse is None:
        return KvCacheFinding(None, bust, reuse, None, one_pass(found), ())
    pair = [bust, reuse]
    saving = 1 - reuse.ttft.mean / bust.ttft.mean
    unsettled = rests_on_disturbed(pair)
    if unsettled:
        verdict = KvCacheVerdict.INCONCLUSIVE
    elif not differ([bust.ttft, reuse.ttft], abs(saving)):
        verdict = KvCacheVerdict.NO_EFFECT
    elif one_pass(pair) or saving < 0:
        verdict = KvCacheVerdict.INCONCLUSIVE
    else:
        verdict = KvCacheVerdict.REUSE_FASTER
    return KvCacheFinding(verdict, bust, reuse, saving, one_pass(pair), unsettled)
