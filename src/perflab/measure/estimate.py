"""How long a whole run will take, from the time of one request."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from perflab.config.sweep import Experiment
from perflab.core.records import ColdStart


@dataclass(frozen=True)
class RunPlan:
    """What a run will send, before anything is timed."""

    n_experiments: int
    n_requests: int  # warm-up included; duration and open-loop experiments: warm-ups only
    timed_s: float  # duration experiments' measured windows; open loop: requests / rate
    longest_prompt: str


@dataclass(frozen=True)
class RunEstimate:
    """A run's expected wall time, counting requests as if served one at a time.

    Concurrent workers only help when the server runs requests in parallel,
    which is not known before the run, so the estimate assumes it does not;
    timed with the longest prompt, it is an upper bound for request-count
    experiments.
    """

    n_experiments: int
    n_requests: int
    timed_s: float
    per_request_s: float

    @property
    def total_s(self) -> float:
        return self.n_requests * self.per_request_s + self.timed_s

    def describe(self) -> str:
        timed = f" + {format_duration(self.timed_s)} of timed load" if self.timed_s else ""
        return (
            f"≈ {format_duration(self.total_s)} for {self.n_requests} requests{timed} in "
            f"{self.n_experiments} experiments, at {self.per_request_s:.3g} s a request "
            "served one at a time"
        )


def plan_run(experiments: Iterable[Experiment], warmup_requests: int) -> RunPlan:
    n_experiments, n_requests, timed_s, longest = 0, 0, 0.0, ""
    for experiment in experiments:
        n_experiments += 1
        n_requests += warmup_requests
        if experiment.rate is not None:  # open loop: its schedule's length, however fast
            timed_s += experiment.requests / experiment.rate
        elif experiment.requests is not None:  # and a sweep point, rate unknown: one at a time
            n_requests += experiment.requests
        else:
            timed_s += experiment.duration_s
        longest = max(longest, experiment.prompt, key=len)
    return RunPlan(n_experiments, n_requests, timed_s, longest)


def estimate_run(
    experiments: Iterable[Experiment], warmup_requests: int, per_request_s: float
) -> RunEstimate:
    plan = plan_run(experiments, warmup_requests)
    return RunEstimate(plan.n_experiments, plan.n_requests, plan.timed_s, per_request_s)


class NoEstimate(Exception):  # noqa: N818 - reads as what happened
    """No request could be timed; the message says why."""


TIMING_TRIES = 3  # injected faults (calibration fault_rates) may fail one request


@dataclass(frozen=True)
class TimedRequest:
    """The pre-flight check's timed request: the run's estimate from it, and the model
    load it paid when it was the first request the server saw (None: none reported)."""

    estimate: RunEstimate
    cold_start: ColdStart | None


def time_one_request(engine, config: dict, plan: dict) -> TimedRequest:
    """Send the plan's longest prompt and scale its time (less any model load) to the run."""
    from perflab.core.records import STATUS_OK
    from perflab.engines import generation_options
    from perflab.measure.runner import Clock, measure_request

    run_plan = RunPlan(**plan)
    options = generation_options(config, config["generation"]["temperature"])
    clock = Clock()
    for index in range(TIMING_TRIES):
        record = measure_request(
            engine,
            run_plan.longest_prompt,
            options,
            experiment_id="preflight",
            request_index=index,
            worker=0,
            is_warmup=True,
            clock=clock,
        )
        if record.status == STATUS_OK:
            per_request_s = record.e2e_s - (record.load_s or 0.0)
            estimate = RunEstimate(
                run_plan.n_experiments, run_plan.n_requests, run_plan.timed_s, per_request_s
            )
            cold = ColdStart.of(record, "preflight") if record.load_s is not None else None
            return TimedRequest(estimate, cold)
    raise NoEstimate(
        f"{TIMING_TRIES} test requests failed, the last with {record.error_class}: {record.error}"
    )


def format_duration(seconds: float) -> str:
    """``1 h 40 min``, ``12 min``, ``45 s``: rounded as a person would say it."""
    if seconds < 60:
        return f"{max(seconds, 0):.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
