"""Which experiments other work on the machine disturbed.

``interference_cpu_pct_mean`` is the CPU used by every process other than the
server, the client and the sampler over an experiment's measured window, in
percent of one core. Above ``DISTURBED_CPU_PCT`` the experiment is disturbed:
its figures may describe the other work rather than the engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

DISTURBED_CPU_PCT = 25.0  # other processes averaged a quarter of one core or more


@dataclass(frozen=True)
class ExperimentLoad:
    experiment_id: str
    condition_id: str
    trial: int
    cpu_pct_mean: float | None
    cpu_pct_max: float | None
    disturbed: bool
    output_dir: str  # where its files are; rerun it with --forcerun on its metadata.json


@dataclass(frozen=True)
class InterferenceFinding:
    threshold_cpu_pct: float
    measured: bool  # whether any experiment carries an interference figure
    experiments: tuple[ExperimentLoad, ...]

    @property
    def disturbed(self) -> tuple[ExperimentLoad, ...]:
        return tuple(e for e in self.experiments if e.disturbed)

    @property
    def disturbed_ids(self) -> tuple[str, ...]:
        return tuple(e.experiment_id for e in self.disturbed)


def is_disturbed(cpu_pct_mean: float | None) -> bool:
    return cpu_pct_mean is not None and cpu_pct_mean > DISTURBED_CPU_PCT


def summary(frame: pl.DataFrame, results_dir: str = "results/RUN") -> InterferenceFinding:
    """``frame``: the summary with defaults (``frame.with_defaults``)."""
    loads = tuple(
        ExperimentLoad(
            experiment_id=row["experiment_id"],
            condition_id=row["condition_id"],
            trial=row["trial"],
            cpu_pct_mean=row["interference_cpu_pct_mean"],
            cpu_pct_max=row["interference_cpu_pct_max"],
            disturbed=is_disturbed(row["interference_cpu_pct_mean"]),
            output_dir=f"{results_dir}/experiments/{row['experiment_id']}",
        )
        for row in frame.sort("experiment_id").to_dicts()
    )
    return InterferenceFinding(
        threshold_cpu_pct=DISTURBED_CPU_PCT,
        measured=any(e.cpu_pct_mean is not None for e in loads),
        experiments=loads,
    )
