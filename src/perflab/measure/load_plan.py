"""The load an experiment sends: closed-loop workers, or the open-loop schedule of
arrivals (with its request lengths and shared prefix) that its spec describes."""

from __future__ import annotations

from perflab.config.sweep import Experiment
from perflab.measure.arrivals import ArrivalPlan, LengthPlan, sized_prompt
from perflab.measure.open_loop import OpenLoopPlan
from perflab.measure.runner import LoadPlan


def load_plan(spec: dict, experiment: Experiment) -> LoadPlan | OpenLoopPlan:
    """Closed-loop workers, or with a rate the open-loop schedule the spec describes."""
    if not experiment.open_loop:
        return LoadPlan(
            workers=experiment.workers,
            requests=experiment.requests,
            duration_s=experiment.duration_s,
            warmup_requests=spec["warmup_requests"],
        )
    settings = spec["open_loop"]
    arrivals = ArrivalPlan(
        rate=experiment.rate,
        requests=experiment.requests,
        arrival=experiment.arrival,
        burstiness=experiment.burstiness,
        seed=settings["seed"],
        trial=experiment.trial,
    )
    return OpenLoopPlan(
        arrivals,
        max_in_flight=experiment.workers,
        on_full=settings["on_full"],
        warmup_requests=spec["warmup_requests"],
        max_send_lag_s=settings["max_send_lag_s"],
        min_rate_fraction=settings["min_rate_fraction"],
        lengths=length_plan(settings, experiment.trial),
        shared_prefix=shared_prefix(experiment.prompt, settings.get("shared_prefix_tokens")),
        turns=settings.get("turns", 1),
    )


def shared_prefix(prompt: str, tokens: int | None) -> str | None:
    """The text every request starts with (a system prompt or document), about ``tokens``."""
    return sized_prompt(f"Shared context. {prompt}", tokens) if tokens else None


def length_plan(settings: dict, trial: int) -> LengthPlan | None:
    lengths = settings.get("lengths")
    if not lengths:
        return None
    prompt, output = lengths.get("prompt_tokens") or {}, lengths.get("output_tokens") or {}
    return LengthPlan(
        prompt_mean=prompt.get("mean"),
        prompt_sd=prompt.get("sd", 0.0),
        output_mean=output.get("mean"),
        output_sd=output.get("sd", 0.0),
        seed=settings["seed"],
        trial=trial,
    )
