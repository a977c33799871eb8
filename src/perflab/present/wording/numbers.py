"""Numbers in words: units, 'n/a' and why, spreads over trials."""

from __future__ import annotations

from perflab.analyse.findings.frame import Condition
from perflab.analyse.findings.statistics import Spread
from perflab.analyse.metrics import metric

NA = "n/a"


def num(value, digits: int = 2, unit: str = "") -> str:
    """A number with its unit, or 'n/a' (no unit) when it was not measured."""
    if value is None or (isinstance(value, float) and value != value):
        return NA
    return f"{value:,.{digits}f}{unit}"


def measured(condition: Condition, value, digits: int = 3, unit: str = "") -> str:
    """Like ``num``, but says why when every request of the condition failed."""
    if condition.all_failed:
        return f"{NA}: all {condition.n_requests} failed"
    return num(value, digits, unit)


def workers_text(count: int) -> str:
    return f"{count} worker" if count == 1 else f"{count} workers"


def spread_text(s: Spread, digits: int = 3, unit: str = " s") -> str:
    """'1.234 s ± 0.010 (3 trials: 1.220–1.250)' or '… (one pass)'."""
    if s.mean is None:
        return NA
    text = f"{s.mean:,.{digits}f}{unit}"
    if s.ci95 is not None:
        text += f" ± {s.ci95:,.{digits}f}"
    if s.between_trials:
        text += f" ({s.trials} trials: {s.low:,.{digits}f}–{s.high:,.{digits}f})"
    elif s.ci95 is None:
        text += " (no CI: one value)"
    return text


def metric_num(value, tag: str) -> str:
    """The catalogue's metric ``tag`` as a number, with its digits and unit: '49.5 tok/s'."""
    defined = metric(tag)
    return num(value, defined.digits, f" {defined.unit}")


def metric_spread(s: Spread, tag: str) -> str:
    """The catalogue's metric ``tag`` over trials, with its digits and unit (``spread_text``)."""
    defined = metric(tag)
    return spread_text(s, defined.digits, f" {defined.unit}")


def ci_note(s: Spread, digits: int = 3) -> str:
    """The CI of a figure printed beside it: '(95% CI ± 0.010)', over trial means when there are some."""
    if s.mean is None:
        return ""
    if s.ci95 is None:
        return "(no CI: one value)"
    if s.between_trials:
        return (
            f"(95% CI ± {s.ci95:,.{digits}f} of {s.trials} trial means, "
            f"{s.low:,.{digits}f}–{s.high:,.{digits}f})"
        )
    return f"(95% CI ± {s.ci95:,.{digits}f})"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return NA
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def pct(value, digits: int = 0) -> str:
    return NA if value is None else f"{value:.{digits}f}%"


def failures(condition: Condition) -> str:
    """What a condition's figures leave out, beside them: '; 2 of 20 failed (10%), 1 of
    them timed out (censored: slower than it ran)', '; 3 empty answers', or ''."""
    parts = []
    if condition.n_errors:
        text = f"{condition.n_errors} of {condition.n_requests} failed ({condition.error_rate:.0%})"
        if condition.n_censored:
            text += (
                f", {condition.n_censored} of them timed out (censored: slower than they ran, "
                "not in the mean or percentiles)"
            )
        parts.append(text)
    if condition.n_empty:
        parts.append(f"{condition.n_empty} answered without a token (in no figure)")
    return "".join(f"; {part}" for part in parts)


LISTED = "each listed, with its figures, under Challenges Faced, Technical Issues"


def disturbed_count(ids: tuple[str, ...] | list, of: int | None = None) -> str:
    """'3 disturbed experiments' (or '3 of 14 experiments … disturbed'): the log lists
    them once, in its Technical Issues, and only counts them elsewhere."""
    n = len(ids)
    plural = "s" if n != 1 else ""
    if of is None:
        return f"{n} disturbed experiment{plural}"
    return f"{n} of {of} experiment{'s' if of != 1 else ''} {'were' if n != 1 else 'was'} disturbed"


def disturbed_note(ids: tuple[str, ...]) -> str:
    """Why an answer resting on disturbed trials is inconclusive, as its closing sentence."""
    return (
        f" It rests on {disturbed_count(ids)} (other work on the machine; {LISTED}), which "
        "its trials cannot settle: inconclusive."
    )
