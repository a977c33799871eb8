"""A rate-sweep point: its rate from the sweep's probe, and whether to measure it at all."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from perflab.measure.spec import experiment_from_spec


@dataclass(frozen=True)
class SweepInputs:
    """A sweep point's job inputs: the probe's rates, and the point below it (none for 1)."""

    probe: Path
    previous_summary: Path | None = None


def resolve_sweep_point(spec: dict, sweep: SweepInputs | None) -> tuple[dict, str | None]:
    """A sweep point's spec with its rate from the probe, and why to skip it (or None)."""
    from perflab.measure.probe import ProbeResult, skip_reason

    experiment = experiment_from_spec(spec)
    if experiment.sweep_point is None:
        return spec, None
    if sweep is None:
        raise ValueError(f"{experiment.id} is a sweep point: it needs the sweep's probe")
    probe = ProbeResult.read(sweep.probe)
    resolved = replace(experiment, rate=probe.rates[experiment.sweep_point - 1])
    previous = None
    if sweep.previous_summary is not None:
        data = json.loads(Path(sweep.previous_summary).read_text())
        previous = data.get("summary") or {"skipped": data.get("skipped", "no summary")}
    reason = skip_reason(previous, probe, spec["open_loop"]["diverge_factor"])
    return spec | {"experiment": resolved.params()}, reason
