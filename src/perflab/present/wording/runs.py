"""Run against run in words: what differs, and each condition's metrics with verdicts."""

from __future__ import annotations

from dataclasses import dataclass

from perflab.analyse.findings.comparison import ComparisonVerdict
from perflab.analyse.findings.runs import MetricDelta, RunComparison
from perflab.present.wording.comparison import DIGITS, METRIC_LABELS
from perflab.present.wording.numbers import NA, spread_text


@dataclass(frozen=True)
class DeltaRow:
    condition: str
    metric: str
    a: str
    b: str
    difference: str
    verdict: str


def difference_text(item: MetricDelta) -> str:
    """'+0.012 s ± 0.004 (×1.25)': B − A with its 95 % CI half-width and B / A."""
    if item.difference is None:
        return NA
    digits = DIGITS.get(item.unit, 3)
    text = f"{item.difference:+,.{digits}f} {item.unit}"
    if item.ci95 is not None:
        text += f" ± {item.ci95:,.{digits}f}"
    if item.ratio is not None:
        text += f" (×{item.ratio:.2f})"
    return text


def verdict_text(item: MetricDelta, comparison: RunComparison) -> str:
    if item.verdict is ComparisonVerdict.INCONCLUSIVE:
        if item.difference is None:
            return "inconclusive: not measured in both runs"
        if item.disturbed:
            return "inconclusive: rests on disturbed experiments that no other trial settles"
        return "inconclusive: one pass in a run, so drift was not measured; set repeats: 2 or more"
    if item.verdict is ComparisonVerdict.NO_DIFFERENCE:
        return "no significant difference"
    return f"{comparison.run_b} is {item.verdict.value}"


def rows(comparison: RunComparison) -> list[DeltaRow]:
    found = []
    for condition in comparison.conditions:
        for item in condition.metrics:
            digits = DIGITS.get(item.unit, 3)
            found.append(
                DeltaRow(
                    condition=condition.condition_id,
                    metric=METRIC_LABELS.get(item.metric, item.metric),
                    a=spread_text(item.a, digits, f" {item.unit}"),
                    b=spread_text(item.b, digits, f" {item.unit}"),
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
