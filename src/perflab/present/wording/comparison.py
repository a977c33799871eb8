"""The comparison of targets in words: each metric, each target, its verdict."""

from __future__ import annotations

from dataclasses import dataclass, replace

from perflab.analyse.findings.comparison import (
    ComparisonFinding,
    ComparisonVerdict,
    MetricComparison,
    TargetMetric,
)
from perflab.analyse.metrics import metric
from perflab.present.wording.numbers import NA, metric_spread, num
from perflab.present.wording.verdicts import outcome_text, reason_text, statistics


@dataclass(frozen=True)
class ComparisonRow:
    """One target's metric in words; ``verdict`` (None for the baseline) is the badge and
    ``detail`` what stands beside it: the factor with its CI, the margin, or why not."""

    metric: str
    target: str
    value: str
    ratio: str
    verdict: ComparisonVerdict | None
    detail: str


def _times(value: float | None) -> str:
    return NA if value is None else f"×{value:.2f}"


def ratio_text(item: TargetMetric) -> str:
    """'×0.67 (95 % CI ×0.66–×0.68; p < 0.001, Holm over 8; 3 trials; …)' — target / baseline."""
    found = item.ratio
    if found is None:
        return "baseline"
    if found.estimate is None:
        return NA
    return statistics(found)


SEPARATORS = {ComparisonVerdict.INCONCLUSIVE: ": ", ComparisonVerdict.EQUIVALENT: " "}


def verdict_text(item: TargetMetric, finding: ComparisonFinding) -> str:
    """'slower, ×1.50 (CI ×1.47–×1.53)', 'equivalent within ±5 %', 'inconclusive: …'."""
    if item.verdict is None:
        return "baseline"
    separator = SEPARATORS.get(item.verdict, ", ")
    return f"{item.verdict.value}{separator}{detail_text(item, finding)}"


def detail_text(item: TargetMetric, finding: ComparisonFinding) -> str:
    """The verdict without its word: '×1.50 (95 % CI ×1.47–×1.53)', 'within ±5 %', why not."""
    if item.verdict is None:
        return "baseline"
    if item.verdict is ComparisonVerdict.INCONCLUSIVE:
        return inconclusive_reason(finding, item)
    if item.verdict is ComparisonVerdict.EQUIVALENT:
        return outcome_text(item.ratio).removeprefix("equivalent ")
    interval = ""
    if item.factor_low is not None:
        interval = f" (95 % CI {_times(item.factor_low)}–{_times(item.factor_high)})"
    return f"{_times(item.factor)}{interval}"


def inconclusive_reason(finding: ComparisonFinding, item: TargetMetric) -> str:
    if finding.one_pass:
        return (
            "one pass per point, so the spread between trials was not measured; "
            "set repeats: 2 or more"
        )
    if finding.disturbed:
        count = len(finding.disturbed)
        return (
            f"rests on {count} disturbed experiment{'s' if count > 1 else ''} that no "
            "undisturbed trial settles (listed above); measure them again"
        )
    return reason_text(item.ratio)


def rows(finding: ComparisonFinding) -> list[ComparisonRow]:
    found = []
    for compared in finding.metrics:
        found += _metric_rows(compared, compared.targets, finding)
    return found


def _metric_rows(compared: MetricComparison, items, finding) -> list[ComparisonRow]:
    return [
        ComparisonRow(
            metric=metric(compared.metric).label,
            target=item.target,
            value=metric_spread(item.value, compared.metric),
            ratio=ratio_text(item),
            verdict=item.verdict,
            detail=badge_detail(item, finding),
        )
        for item in items
    ]


def badge_detail(item: TargetMetric, finding: ComparisonFinding) -> str:
    """The detail as it stands alone after its badge: a sentence, so capitalized."""
    text = detail_text(item, finding)
    return text if item.verdict is None else text[:1].upper() + text[1:]


def point_rows(finding: ComparisonFinding, compared: MetricComparison) -> list[ComparisonRow]:
    """Per sweep point: the same columns, the point's id in place of the metric."""
    return [
        replace(row, metric=point.point_id)
        for point in compared.points
        for row in _metric_rows(compared, point.targets, finding)
    ]


def sizes(finding: ComparisonFinding) -> list[dict]:
    """Model file size and the server's peak RSS per target, with the baseline's ratio."""
    base = next((t for t in finding.targets if t.name == finding.baseline), None)
    found = []
    for target in finding.targets:
        ratio = None
        if base and base.model_size_gb and target.model_size_gb:
            ratio = target.model_size_gb / base.model_size_gb
        found.append(
            {
                "target": target.name,
                "engine": target.engine or NA,
                "model": target.model or NA,
                "size": num(target.model_size_gb, 3, " GB"),
                "size_ratio": "baseline" if target is base else _times(ratio),
                "rss": _range_text(target.rss_gb, target.n_experiments),
                "output_tokens": num(target.output_tokens_mean, 1),
            }
        )
    return found


def _range_text(value, experiments: int) -> str:
    """'0.307 GB (0.306–0.308 over 4 experiments)': a peak per experiment, not trials."""
    if value.mean is None:
        return NA
    text = f"{value.mean:,.3f} GB"
    if value.trials >= 2:
        text += f" ({value.low:,.3f}–{value.high:,.3f} over {value.trials} experiments)"
    return text


def headline(finding: ComparisonFinding) -> list[str]:
    """One line per non-baseline target: its decode-speed verdict and TTFT verdict."""
    lines = []
    for key in ("tps", "ttft"):
        compared = finding.metric(key)
        if compared is None:
            continue
        for item in compared.targets:
            if item.verdict is None:
                continue
            lines.append(
                f"{metric(key).name}, {item.target} against {finding.baseline}: "
                f"{verdict_text(item, finding)}; ratio {ratio_text(item)}"
            )
    return lines
