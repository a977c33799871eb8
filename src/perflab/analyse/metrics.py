"""The metric catalogue: one definition per metric of an experiment.

Each ``Metric`` says what the figure is called, its unit, which way is better,
how it is computed from the requests, which record fields or summary columns
it reads, and where it is measured: by the client's clock and counts, or by
the engine's own account. The summary's units, the comparisons of targets
and of runs, their wording and charts, the findings' summary columns and
``docs/metrics.md`` all read it from here. Pure data: no Polars, so the
experiment job can read it without loading a table library.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Direction(str, Enum):
    LARGER = "larger"  # larger is better: a speed, a throughput
    SMALLER = "smaller"  # smaller is better: a latency, a wait
    NEITHER = "neither"  # a size or a count: context beside a figure, never a score


class Side(str, Enum):
    """Where a metric is measured."""

    CLIENT = "client"  # perflab's own clock and counts, at the client
    SERVER = "server"  # the engine's own account of its work (its timings, its token counts)


@dataclass(frozen=True)
class Metric:
    tag: str  # the name comparisons and findings use
    label: str  # how the log, the comparison tables and the charts name it
    unit: str
    direction: Direction
    formula: str  # in words, over the experiment's measured ok requests unless it says
    inputs: tuple[str, ...]  # the record fields or summary columns it is computed from
    measured_at: Side
    column: str | None  # its summary column; None: computed from ``inputs`` when read
    ci_column: str | None = None  # the summary's 95 % CI half-width of it
    digits: int = 3  # decimals it is printed with
    unit_words: str | None = None  # the unit as summary.json's ``units`` spells it out
    count: bool = False  # a whole number (an integer column)

    @property
    def higher_is_better(self) -> bool:
        return self.direction is Direction.LARGER

    @property
    def name(self) -> str:
        """The label without its unit: 'TTFT' of 'TTFT (s)'."""
        return self.label.split(" (")[0]

    @property
    def axis_title(self) -> str:
        """The label as a chart's axis names it: lower case, unless it opens with an acronym."""
        if self.label[:2].isupper():
            return self.label
        return self.label[0].lower() + self.label[1:]


def _seconds(
    tag: str, label: str, formula: str, inputs: tuple[str, ...], measured_at: Side, **more
) -> Metric:
    """A time in seconds, where less is better."""
    return Metric(tag, label, "s", Direction.SMALLER, formula, inputs, measured_at, **more)


CATALOGUE = (
    Metric(
        "tps",
        "Decode speed (tok/s per request)",
        "tok/s",
        Direction.LARGER,
        "mean of each request's (output_tokens − 1) / (e2e_s − ttft_s), i.e. 1 / TPOT",
        ("tps",),
        Side.CLIENT,
        "tps_mean",
        ci_column="tps_ci95",
        digits=1,
        unit_words="decode tokens/s per request (output_tokens_mean beside it)",
    ),
    Metric(
        "gap_tps",
        "Decode speed between tokens (tok/s)",
        "tok/s",
        Direction.LARGER,
        "the ok requests' gaps between consecutive tokens after the first (itl_s), counted "
        "over their summed time: 1 / mean ITL. Unlike tps it leaves out the time after the "
        "last token (a model's decode step for its end-of-turn token), so it does not depend "
        "on how long the answer is",
        ("itl_s",),
        Side.CLIENT,
        "gap_tps",
        digits=1,
        unit_words="tokens/s between consecutive tokens (1 / mean inter-token gap)",
    ),
    Metric(
        "server_prefill_tps",
        "Server prefill speed (prompt tok/s of its prefill time)",
        "tok/s",
        Direction.LARGER,
        "prompt_tokens_mean / prefill_mean_s of the experiment; none where prefill took no "
        "time (a cached prompt)",
        ("prompt_tokens_mean", "prefill_mean_s"),
        Side.SERVER,
        None,
        digits=1,
    ),
    _seconds(
        "ttft",
        "TTFT (s)",
        "mean of t_first_token − t_submit",
        ("ttft_s",),
        Side.CLIENT,
        column="ttft_mean_s",
        ci_column="ttft_ci95_s",
    ),
    _seconds(
        "e2e",
        "End-to-end latency (s)",
        "mean of t_end − t_submit",
        ("e2e_s",),
        Side.CLIENT,
        column="e2e_mean_s",
        ci_column="e2e_ci95_s",
    ),
    Metric(
        "req_per_s",
        "Throughput (req/s)",
        "req/s",
        Direction.LARGER,
        "ok requests / measured wall time (warm-up excluded)",
        ("n_ok", "measured_wall_s"),
        Side.CLIENT,
        "req_per_s",
        digits=2,
        unit_words="ok requests/s over the measured wall time",
    ),
    Metric(
        "output_tps",
        "Output throughput (tok/s)",
        "tok/s",
        Direction.LARGER,
        "all ok output tokens / measured wall time",
        ("output_tokens_total", "measured_wall_s"),
        Side.CLIENT,
        "output_tps",
        digits=1,
        unit_words="output tokens/s over the measured wall time",
    ),
    Metric(
        "n_requests",
        "Measured requests",
        "requests",
        Direction.NEITHER,
        "requests sent after the warm-up",
        ("is_warmup", "status"),
        Side.CLIENT,
        "n_requests",
        digits=0,
        unit_words="measured requests (warm-up excluded)",
        count=True,
    ),
    Metric(
        "output_tokens",
        "Output tokens (per request)",
        "tokens",
        Direction.NEITHER,
        "mean of output_tokens, reasoning included",
        ("output_tokens",),
        Side.SERVER,
        "output_tokens_mean",
        digits=0,
    ),
    Metric(
        "prompt_tokens",
        "Prompt tokens (per request)",
        "tokens",
        Direction.NEITHER,
        "mean of prompt_tokens as the engine counted them, the nonce included",
        ("prompt_tokens",),
        Side.SERVER,
        "prompt_tokens_mean",
        digits=0,
    ),
    _seconds(
        "queue",
        "Queue wait (s)",
        "mean of queue_s, the wait for the engine before work started",
        ("queue_s",),
        Side.SERVER,
        column="queue_mean_s",
    ),
    _seconds(
        "load",
        "Model load (s)",
        "mean of load_s, the engine's own load time",
        ("load_s",),
        Side.SERVER,
        column="load_mean_s",
    ),
    _seconds(
        "prefill",
        "Prefill (s)",
        "mean of prefill_s, the engine's own prompt evaluation time",
        ("prefill_s",),
        Side.SERVER,
        column="prefill_mean_s",
    ),
    _seconds(
        "decode",
        "Decode (s)",
        "mean of decode_s, the engine's own generation time",
        ("decode_s",),
        Side.SERVER,
        column="decode_mean_s",
    ),
    _seconds(
        "unaccounted",
        "Unaccounted (s)",
        "mean of e2e_s − (queue_s + load_s + prefill_s + decode_s): client, HTTP and "
        "sampling overhead",
        ("unaccounted_s",),
        Side.CLIENT,
        column="unaccounted_mean_s",
    ),
    _seconds(
        "prep",
        "Client preparation (s)",
        "mean of prep_s, the client's work before the request left; outside every latency",
        ("prep_s",),
        Side.CLIENT,
        column="prep_mean_s",
    ),
    _seconds(
        "cold_load",
        "Cold load (s)",
        "the largest load_s among warm-up requests: the model load paid once",
        ("load_s", "is_warmup"),
        Side.SERVER,
        column="cold_load_s",
    ),
    _seconds(
        "cold_ttft",
        "Cold TTFT (s)",
        "ttft_s of the warm-up request that paid the cold load",
        ("ttft_s", "load_s", "is_warmup"),
        Side.CLIENT,
        column="cold_ttft_s",
    ),
)
BY_TAG = {metric.tag: metric for metric in CATALOGUE}
# The metrics two targets, or two runs, are compared on, in the order they are shown.
COMPARED = tuple(BY_TAG[tag] for tag in ("tps", "server_prefill_tps", "ttft", "e2e", "req_per_s"))


def metric(tag: str) -> Metric:
    """The catalogue's metric ``tag``; KeyError when there is none."""
    return BY_TAG[tag]


def summary_units() -> dict[str, str]:
    """summary.json's ``units``: every time is in seconds, and the rates and counts spelled out."""
    spelled = {m.tag: m.unit_words for m in CATALOGUE if m.unit_words is not None}
    return {"times": "seconds"} | spelled


def float_columns() -> tuple[str, ...]:
    """The summary columns of the catalogue's measured (not counted) metrics, and their CIs."""
    found = []
    for item in CATALOGUE:
        if item.column is not None and not item.count:
            found += [item.column] + ([item.ci_column] if item.ci_column else [])
    return tuple(found)
