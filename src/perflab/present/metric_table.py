"""The metric catalogue as the Markdown table ``docs/metrics.md`` holds.

``python -m perflab.present.metric_table`` prints it; a test checks the docs
hold exactly these rows, so the docs cannot drift from the catalogue.
"""

from __future__ import annotations

from perflab.analyse.metrics import CATALOGUE, Metric

HEADER = (
    "| tag | label | unit | digits | better | formula | inputs | measured at | summary column |",
    "|---|---|---|---|---|---|---|---|---|",
)


def _code(names: tuple[str, ...]) -> str:
    return ", ".join(f"`{name}`" for name in names)


def row(metric: Metric) -> str:
    column = f"`{metric.column}`" if metric.column else "computed when read"
    if metric.ci_column:
        column += f" (CI `{metric.ci_column}`)"
    cells = (
        f"`{metric.tag}`",
        metric.label,
        metric.unit,
        str(metric.digits),
        metric.direction.value,
        metric.formula,
        _code(metric.inputs),
        metric.measured_at.value,
        column,
    )
    return "| " + " | ".join(cells) + " |"


def table() -> list[str]:
    return [*HEADER, *(row(metric) for metric in CATALOGUE)]


if __name__ == "__main__":
    print("\n".join(table()))
