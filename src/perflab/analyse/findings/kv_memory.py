"""The KV cache in bytes: the formula's bytes per token beside the engine's measured RSS growth.

The observations are the prompt_length suite's experiments: each one's mean
prompt tokens and its server's peak RSS (``resources.server_rss_gb_max`` in
its ``metadata.json``), regressed with each trial a block
(``statistics.linear_fit``): the slope, in bytes per prompt token, has a Student-t
95 % CI, and n is the number of experiments.

``grows`` when the slope is significantly positive; ``up_front`` when the
formula is known and even the slope's upper CI is below ``UP_FRONT_SHARE`` of
the formula's bytes per token: the engine reserved its cache for the whole
context before the first request (llama.cpp and Ollama do, at n_ctx), so a
longer prompt fills memory already counted and RSS cannot show the cache;
otherwise ``inconclusive``. None when fewer than ``MIN_POINTS`` experiments
have a prompt length and an RSS (a remote server has no RSS here).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import polars as pl

from perflab.analyse.findings.frame import suite_rows
from perflab.analyse.findings.resources import NO_RESOURCES, ExperimentResources
from perflab.analyse.findings.statistics import LinearFit, linear_fit
from perflab.analyse.verdict import ALPHA

GB = 1e9  # the sampler's RSS unit
MIN_POINTS = 3
UP_FRONT_SHARE = 0.5  # growth below half the formula's bytes per token: not the cache


class KvMemoryVerdict(str, Enum):
    GROWS = "grows"
    UP_FRONT = "up_front"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class KvMemoryFinding:
    verdict: KvMemoryVerdict
    fit: LinearFit  # peak RSS bytes on prompt tokens; fit.n = experiments
    prompt_tokens_min: float
    prompt_tokens_max: float
    rss_gb_min: float
    rss_gb_max: float
    formula_bytes_per_token: float | None  # gguf_facts.kv_bytes_per_token; None without a GGUF
    cache_type: str | None

    @property
    def share_of_formula(self) -> float | None:
        if not self.formula_bytes_per_token or self.fit.slope is None:
            return None
        return self.fit.slope / self.formula_bytes_per_token


def _points(frame: pl.DataFrame, resources_by_id: dict[str, ExperimentResources]) -> list[tuple]:
    points = []
    for row in suite_rows(frame, "prompt_length").to_dicts():
        rss = resources_by_id.get(row["experiment_id"], NO_RESOURCES).used.server_rss_gb_max
        if rss is not None and row.get("prompt_tokens_mean") is not None:
            points.append((row["prompt_tokens_mean"], rss, row.get("trial") or 1))
    return points


def _verdict(fit: LinearFit, formula: float | None) -> KvMemoryVerdict:
    if fit.slope_high is None:
        return KvMemoryVerdict.INCONCLUSIVE
    if fit.p_slope is not None and fit.p_slope < ALPHA and fit.slope > 0:
        return KvMemoryVerdict.GROWS
    if formula and fit.slope_high < UP_FRONT_SHARE * formula:
        return KvMemoryVerdict.UP_FRONT
    return KvMemoryVerdict.INCONCLUSIVE


def summary(
    frame: pl.DataFrame,
    resources_by_id: dict[str, ExperimentResources],
    formula_bytes_per_token: float | None = None,
    cache_type: str | None = None,
) -> KvMemoryFinding | None:
    points = _points(frame, resources_by_id)
    if len(points) < MIN_POINTS:
        return None
    tokens = [p[0] for p in points]
    rss = [p[1] for p in points]
    fit = linear_fit(tokens, [r * GB for r in rss], [p[2] for p in points])
    if fit.slope is None:  # every experiment had the same prompt length
        return None
    return KvMemoryFinding(
        verdict=_verdict(fit, formula_bytes_per_token),
        fit=fit,
        prompt_tokens_min=min(tokens),
        prompt_tokens_max=max(tokens),
        rss_gb_min=min(rss),
        rss_gb_max=max(rss),
        formula_bytes_per_token=formula_bytes_per_token,
        cache_type=cache_type if formula_bytes_per_token is not None else None,
    )
