"""``perflab compare RUN_A RUN_B``: read two finished runs, compare, write the reports.

Writes ``compare.md``, ``compare.json`` (the ``RunComparison`` as JSON) and
``compare.svg`` (with .png and an offline .html) to
``reports/compare/<A>--vs--<B>/`` unless told where.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl

from perflab.analyse.findings.frame import with_defaults
from perflab.analyse.findings.runs import RunComparison, compare, identity
from perflab.measure.metadata import ExperimentMetadata

TEMPLATE = "compare.md.j2"


class RunsNotComparable(ValueError):
    """The runs cannot be compared (missing, or different prompts or settings); says why."""


RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def _summary(results: Path, run: str) -> pl.DataFrame:
    if not RUN_NAME.fullmatch(run):
        raise RunsNotComparable(
            f"{run!r} is not a run name (letters, digits, '.', '_', '-', as the config's "
            "run key); give the name of a directory under results/"
        )
    path = results / run / "summary.parquet"
    if not path.is_file():
        raise RunsNotComparable(
            f"{path}: no such file; run {run!r} has not finished (run its workflow first, "
            f"e.g. snakemake --configfile <its config>), or give --results DIR"
        )
    return with_defaults(pl.read_parquet(path))


def _metadata(results: Path, run: str, summary: pl.DataFrame) -> list[ExperimentMetadata]:
    found = []
    for experiment_id in summary["experiment_id"].to_list():
        path = results / run / "experiments" / experiment_id / "metadata.json"
        if path.is_file():
            found.append(ExperimentMetadata.from_json(json.loads(path.read_text())))
    return found


def compare_runs(
    run_a: str, run_b: str, results: Path = Path("results"), force: bool = False
) -> RunComparison:
    """The comparison; RunsNotComparable when nothing matches, or settings differ without force."""
    summary_a, summary_b = _summary(results, run_a), _summary(results, run_b)
    found = identity(_metadata(results, run_a, summary_a), _metadata(results, run_b, summary_b))
    comparison = compare(run_a, summary_a, run_b, summary_b, found, forced=force)
    if not comparison.conditions:
        raise RunsNotComparable(
            f"runs {run_a} and {run_b} share no condition (experiment id without its trial); "
            "compare runs of the same suites"
        )
    if found.blocking and not force:
        from perflab.present.wording.runs import refusal

        raise RunsNotComparable(refusal(comparison))
    return comparison


def default_out(run_a: str, run_b: str) -> Path:
    return Path("reports") / "compare" / f"{run_a}--vs--{run_b}"


def write_reports(comparison: RunComparison, out: Path) -> dict[str, Path]:
    """compare.json, compare.svg (.png, .html) and compare.md in ``out``."""
    from perflab.analyse.findings.serialize import to_jsonable
    from perflab.core.records import write_text_atomic
    from perflab.present.chart_style import save_chart
    from perflab.present.comparison_charts import run_ratio_chart
    from perflab.present.report import render_template
    from perflab.present.wording import runs as words

    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "compare.md", "json": out / "compare.json"}
    write_text_atomic(paths["json"], json.dumps(to_jsonable(comparison), indent=1) + "\n")
    saved = save_chart(run_ratio_chart(comparison), out / "compare")
    paths |= {f"chart_{suffix}": path for suffix, path in saved.items()}
    text = render_template(TEMPLATE, c=comparison, rows=words.rows(comparison), chart="compare.svg")
    write_text_atomic(paths["markdown"], text)
    return paths
