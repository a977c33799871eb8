"""Which experiments other work on the machine disturbed.

``interference_cpu_pct_mean`` is the CPU used by every process other than the
server, the client and the sampler over an experiment's measured window, in
percent of one core. Above the experiment's own threshold
(``interference_threshold_pct``: the cores its engine left free plus a share of
those it used, ``perflab.measure.samples.disturbance_threshold_pct``) the
experiment is disturbed: its figures may describe the other work rather than
the engine. An experiment measured before the threshold was recorded takes
``DISTURBED_CPU_PCT``, the threshold of an engine using both of 2 cores.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from perflab.measure.samples import disturbance_threshold_pct

DISTURBED_CPU_PCT = disturbance_threshold_pct(2, 2)  # a quarter of one core


@dataclass(frozen=True)
class ExperimentLoad:
    experiment_id: str
    condition_id: str
    trial: int
    cpu_pct_mean: float | None
    cpu_pct_max: float | None
    disturbed: bool
    output_dir: str  # where its files are; rerun it with --forcerun on its metadata.json
    threshold_cpu_pct: float = DISTURBED_CPU_PCT  # this experiment's
    above_share: float | None = None  # share of its measured time above the threshold


@dataclass(frozen=True)
class InterferenceFinding:
    threshold_cpu_pct: float  # the lowest experiment threshold (each has its own)
    measured: bool  # whether any experiment carries an interference figure
    experiments: tuple[ExperimentLoad, ...]

    @property
    def disturbed(self) -> tuple[ExperimentLoad, ...]:
        return tuple(e for e in self.experiments if e.disturbed)

    @property
    def disturbed_ids(self) -> tuple[str, ...]:
        return tuple(e.experiment_id for e in self.disturbed)


def is_disturbed(cpu_pct_mean: float | None, threshold: float | None = None) -> bool:
    limit = DISTURBED_CPU_PCT if threshold is None else threshold
    return cpu_pct_mean is not None and cpu_pct_mean > limit


def summary(frame: pl.DataFrame, results_dir: str = "results/RUN") -> InterferenceFinding:
    """``frame``: the summary with defaults (``frame.with_defaults``)."""
    loads = tuple(
        ExperimentLoad(
            experiment_id=row["experiment_id"],
            condition_id=row["condition_id"],
            trial=row["trial"],
            cpu_pct_mean=row["interference_cpu_pct_mean"],
            cpu_pct_max=row["interference_cpu_pct_max"],
            disturbed=is_disturbed(
                row["interference_cpu_pct_mean"], row["interference_threshold_pct"]
            ),
            output_dir=f"{results_dir}/experiments/{row['experiment_id']}",
            threshold_cpu_pct=row["interference_threshold_pct"] or DISTURBED_CPU_PCT,
            above_share=row["interference_above_share"],
        )
        for row in frame.sort("experiment_id").to_dicts()
    )
    return InterferenceFinding(
        threshold_cpu_pct=min((e.threshold_cpu_pct for e in loads), default=DISTURBED_CPU_PCT),
        measured=any(e.cpu_pct_mean is not None for e in loads),
        experiments=loads,
    )
