"""A verdict in words: its ratio, interval, tests and what the design could detect."""

from __future__ import annotations

from perflab.analyse.verdict import ALPHA, POWER, Design, Outcome, Reason, Verdict


def times(value: float) -> str:
    return f"×{value:.2f}" if value < 10 else f"×{value:.1f}"


def _p(value: float) -> str:
    return "p < 0.001" if value < 0.001 else f"p = {value:.3f}"


def _trials(v: Verdict) -> str:
    unit = "trials per run" if v.design is Design.WELCH else "trials"
    return f"{v.n_trials} {unit}" if v.n_trials != 1 else "1 trial"


def statistics(v: Verdict) -> str:
    """'×1.12 (95 % CI ×1.05–×1.19; p = 0.010, Holm over 4; 3 trials; detects ±6 % at 80 % power)'."""
    if v.estimate is None:
        return "no data"
    if v.low is None:
        return f"{times(v.estimate)} ({_trials(v)}: no spread across trials)"
    family = f", Holm over {v.family}" if v.family > 1 else ""
    p_value = v.p_adjusted if v.p_adjusted is not None else v.p_value
    return (
        f"{times(v.estimate)} (95 % CI {times(v.low)}–{times(v.high)}; {_p(p_value)}{family}; "
        f"{_trials(v)}; {power_text(v)})"
    )


def power_text(v: Verdict) -> str:
    """What the design could detect: its minimal detectable effect at POWER."""
    if v.mde is None:
        return "power not measurable"
    size = f"{v.mde:.1%}" if v.mde < 0.1 else f"{v.mde:.0%}"
    return f"detects ±{size} at {POWER:.0%} power"


def outcome_text(v: Verdict) -> str:
    """'changed', 'equivalent within ±5 %', or 'inconclusive: <why>'."""
    if v.outcome is Outcome.CHANGED:
        return "changed"
    if v.outcome is Outcome.EQUIVALENT:
        return f"equivalent within ±{v.threshold:.0%}"
    return f"inconclusive: {reason_text(v)}"


def reason_text(v: Verdict) -> str:
    return {
        Reason.TOO_FEW_TRIALS: "one trial cannot show the spread between trials; "
        "set repeats: 2 or more",
        Reason.DISTURBED: "rests on a disturbed trial that no other trial settles",
        Reason.NO_DATA: "not measured",
        Reason.FAMILY: f"significant alone, not after Holm's correction over {v.family} verdicts",
        Reason.SMALL_EFFECT: f"a real difference, but under ±{v.threshold:.0%} and not shown "
        "within it",
    }.get(
        v.reason,
        f"neither a change nor equivalence within ±{v.threshold:.0%} at α = {ALPHA:g} "
        f"({power_text(v)})",
    )
