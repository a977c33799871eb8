"""How long a whole run will take, from the times of a few requests.

The pre-flight check sends the plan's longest prompt twice and its shortest once.
The first request is cold (it may load the model, fault its weights in, warm the
caches and allocate llama.cpp's buffers) and is never the rate of the run: each
request is counted at the warm time of its own prompt, interpolated by prompt
length between the shortest and the longest warm time, and the cold request's
extra over the warm one is paid once by every experiment whose engine starts
anew in its job (an in-process engine), else once for the run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from perflab.config.sweep import Experiment
from perflab.core.records import ColdStart


@dataclass(frozen=True)
class RunPlan:
    """What a run will send, before anything is timed."""

    n_experiments: int
    n_requests: int  # warm-up included; duration and open-loop experiments: warm-ups only
    timed_s: float  # duration experiments' measured windows; open loop: requests / rate
    longest_prompt: str
    shortest_prompt: str = ""
    requests_by_prompt: dict[str, int] = field(default_factory=dict)  # of n_requests


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
    per_request_s: float  # a warm request with the longest prompt
    requests_s: float | None = None  # every request at its prompt's warm time; None: flat
    shortest_s: float | None = None  # a warm request with the shortest prompt
    cold_extra_s: float = 0.0  # what a cold first request takes beyond a warm one
    cold_starts: int = 0  # first requests that pay it: one per job of an in-process engine

    @property
    def total_s(self) -> float:
        requests = (
            self.n_requests * self.per_request_s if self.requests_s is None else self.requests_s
        )
        return requests + self.cold_extra_s * self.cold_starts + self.timed_s

    def describe(self) -> str:
        timed = f" + {format_duration(self.timed_s)} of timed load" if self.timed_s else ""
        at = f"{self.per_request_s:.3g} s a request"
        if self.shortest_s is not None and f"{self.shortest_s:.3g}" != f"{self.per_request_s:.3g}":
            at = f"{self.shortest_s:.3g}–{self.per_request_s:.3g} s a warm request by prompt length"
        cold = ""
        if self.cold_starts and self.cold_extra_s >= 0.05:
            where = "each experiment" if self.cold_starts > 1 else "the run"
            cold = f", plus {self.cold_extra_s:.3g} s of cold start in {where}"
        return (
            f"≈ {format_duration(self.total_s)} for {self.n_requests} requests{timed} in "
            f"{self.n_experiments} experiments, at {at}{cold}, served one at a time"
        )


def plan_run(experiments: Iterable[Experiment], warmup_requests: int) -> RunPlan:
    n_experiments, timed_s = 0, 0.0
    by_prompt: dict[str, int] = {}
    for experiment in experiments:
        n_experiments += 1
        count = warmup_requests
        if experiment.rate is not None:  # open loop: its schedule's length, however fast
            timed_s += experiment.requests / experiment.rate
        elif experiment.requests is not None:  # and a sweep point, rate unknown: one at a time
            count += experiment.requests
        else:
            timed_s += experiment.duration_s
        by_prompt[experiment.prompt] = by_prompt.get(experiment.prompt, 0) + count
    prompts = sorted(by_prompt, key=len)
    longest, shortest = (prompts[-1], prompts[0]) if prompts else ("", "")
    return RunPlan(n_experiments, sum(by_prompt.values()), timed_s, longest, shortest, by_prompt)


@dataclass(frozen=True)
class WarmTimes:
    """Warm request times (s) at the shortest and the longest prompt (in characters)."""

    short_chars: int
    short_s: float
    long_chars: int
    long_s: float

    def at(self, prompt: str) -> float:
        """A request's time at ``prompt``: linear in its length between the two."""
        if self.long_chars <= self.short_chars:
            return self.long_s
        share = (len(prompt) - self.short_chars) / (self.long_chars - self.short_chars)
        return self.short_s + min(max(share, 0.0), 1.0) * (self.long_s - self.short_s)


def estimate_plan(
    plan: RunPlan, warm: WarmTimes, cold_extra_s: float, cold_per_experiment: bool
) -> RunEstimate:
    """The run at each request's warm time, plus the cold start once per experiment
    (``cold_per_experiment``: an engine every job starts again) or once."""
    requests_s = sum(n * warm.at(prompt) for prompt, n in plan.requests_by_prompt.items())
    return RunEstimate(
        plan.n_experiments,
        plan.n_requests,
        plan.timed_s,
        per_request_s=warm.long_s,
        requests_s=requests_s if plan.requests_by_prompt else None,
        shortest_s=warm.short_s,
        cold_extra_s=max(cold_extra_s, 0.0),
        cold_starts=plan.n_experiments if cold_per_experiment else 1,
    )


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
    """Time the plan's longest prompt cold then warm, and its shortest warm, each with a
    prefix of its own (no prompt cache), and scale them to the run."""
    from perflab.measure.runner import Clock, PromptNonce

    run_plan = RunPlan(**plan)
    shortest = run_plan.shortest_prompt or run_plan.longest_prompt
    timed = _Timer(engine, config, Clock(), PromptNonce())
    cold = timed(run_plan.longest_prompt)
    warm_long = timed(run_plan.longest_prompt)
    warm_short = timed(shortest) if shortest != run_plan.longest_prompt else warm_long
    warm = WarmTimes(len(shortest), warm_short.e2e_s, len(run_plan.longest_prompt), warm_long.e2e_s)
    opened_s = model_open_s(engine)
    # every job of an in-process engine opens the model again before its first request; a
    # cold request that came out faster than the warm one is noise, not a saving on the open
    slower_cold_s = max(cold.e2e_s - (cold.load_s or 0.0) - warm_long.e2e_s, 0.0)
    cold_extra = slower_cold_s + (opened_s or 0.0)
    # an in-process engine, or a server launched per job, starts cold in every experiment
    anew = engine.capabilities.in_process or bool(config["engine"].get("launch"))
    estimate = estimate_plan(run_plan, warm, cold_extra, anew)
    return TimedRequest(estimate, preflight_cold_start(cold, opened_s))


def model_open_s(engine) -> float | None:
    """How long an in-process engine took to open its model (the embedded llama.cpp's
    ``Llama(...)``); None for a server, which reports its own load per request."""
    return getattr(engine, "load_s", None) if engine.capabilities.in_process else None


def preflight_cold_start(cold, opened_s: float | None) -> ColdStart | None:
    """The load the timed request paid: the engine's model open before it (in-process),
    else the server's own account of it (None when the server reports none)."""
    if opened_s:
        return ColdStart.after_open(opened_s, cold, "preflight")
    return ColdStart.of(cold, "preflight") if cold.load_s is not None else None


class _Timer:
    """Sends one prompt until it succeeds (TIMING_TRIES at most); the ok record."""

    def __init__(self, engine, config: dict, clock, nonce):
        from perflab.engines import generation_options

        self.engine, self.clock, self.nonce = engine, clock, nonce
        self.options = generation_options(config, config["generation"]["temperature"])
        self.index = 0

    def __call__(self, prompt: str):
        from perflab.core.records import STATUS_OK
        from perflab.measure.runner import measure_request

        for _ in range(TIMING_TRIES):
            record = measure_request(
                self.engine,
                self.nonce.apply(prompt, self.index),
                self.options,
                experiment_id="preflight",
                request_index=self.index,
                worker=0,
                is_warmup=True,
                clock=self.clock,
            )
            self.index += 1
            if record.status == STATUS_OK:
                return record
        raise NoEstimate(
            f"{TIMING_TRIES} test requests failed, the last with {record.error_class}: "
            f"{record.error}"
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
