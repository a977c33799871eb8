"""Run against run in words: what differs, and each condition's metrics with verdicts."""

from __future__ import annotations

from dataclasses import dataclass

from perflab.analyse.findings.comparison import ComparisonVerdict
from perflab.analyse.findings.runs import MetricDelta, RunComparison
from perflab.analyse.metrics import metric
from perflab.present.wording.numbers import NA, metric_spread
from perflab.present.wording.verdicts import outcome_text, reason_text, statistics


@dataclass(frozen=True)
class DeltaRow:
    condition: str
    metric: str
    a: str
    b: str
    difference: str
    verdict: str


def difference_text(item: MetricDelta) -> str:
    """'+0.012 s; B / A ×1.25 (95 % CI …; p = …)': B − A of the trial means, and the test."""
    if item.difference is None:
        return NA
    digits = metric(item.metric).digits
    return f"{item.difference:+,.{digits}f} {item.unit}; B / A {statistics(item.test)}"


def verdict_text(item: MetricDelta, comparison: RunComparison) -> str:
    if item.verdict is ComparisonVerdict.INCONCLUSIVE:
        if item.difference is None:
            return "inconclusive: not measured in both runs"
        return f"inconclusive: {reason_text(item.test)}"
    if item.verdict is ComparisonVerdict.EQUIVALENT:
        return outcome_text(item.test)
    return f"{comparison.run_b} is {item.verdict.value}"


def rows(comparison: RunComparison) -> list[DeltaRow]:
    found = []
    for condition in comparison.conditions:
        for item in condition.metrics:
            found.append(
                DeltaRow(
                    condition=condition.condition_id,
                    metric=metric(item.metric).label,
                    a=metric_spread(item.a, item.metric),
                    b=metric_spread(item.b, item.metric),
                    difference=difference_text(item),
                    verdict=verdict_text(item, comparison),
                )
            )
    return found


def refusal(comparison: RunComparison) -> str:
    """Why two runs are not compared, and how to compare them anyway."""
    lines = [
        f"runs {comparison.run_a} and {comparison.run_b} did not send the same requests, so "
        "their differences would not be the engine's:"
    ]
    lines += [
        f"  - {d.what}: {d.a!r} in {comparison.run_a}, {d.b!r} in {comparison.run_b}"
        for d in comparison.identity.blocking
    ]
    lines += _changed_lines(comparison)
    lines.append("Rerun one with the other's prompts and generation settings, or pass --force.")
    return "\n".join(lines)


def _changed_lines(comparison: RunComparison) -> list[str]:
    changed = comparison.identity.changed
    if not changed:
        return ["Also the same: config hash, engine version, model digest, host."]
    return ["Also changed:"] + [f"  - {d.what}: {d.a} → {d.b}" for d in changed]
