"""The metric catalogue: one definition per metric, read by the summary, the
comparisons and the docs."""

import subprocess
import sys

from conftest import ROOT

from perflab.analyse.findings.frame import FLOAT_COLUMNS
from perflab.analyse.metrics import CATALOGUE, COMPARED, Direction, float_columns, metric
from perflab.analyse.table_files import SUMMARY_UNITS, summary_schema
from perflab.analyse.tables import RECORD_SCHEMA
from perflab.present.metric_table import HEADER, table


def test_the_catalogue_imports_without_polars():
    code = "import sys, perflab.analyse.metrics; print('polars' in sys.modules)"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "False"


def test_each_tag_is_defined_once_and_found_by_lookup():
    tags = [item.tag for item in CATALOGUE]
    assert len(tags) == len(set(tags))
    assert all(metric(tag).tag == tag for tag in tags)
    assert [item.tag for item in COMPARED] == [
        "tps",
        "server_prefill_tps",
        "ttft",
        "e2e",
        "req_per_s",
    ]


def test_every_column_and_input_exists_in_the_records_or_the_summary():
    summary = summary_schema()
    known = set(summary) | set(RECORD_SCHEMA)
    for item in CATALOGUE:
        assert item.column is None or item.column in summary, item.tag
        assert item.ci_column is None or item.ci_column in summary, item.tag
        assert set(item.inputs) <= known, item.tag


def test_a_computed_metric_reads_only_summary_columns():
    summary = summary_schema()
    computed = [item for item in CATALOGUE if item.column is None]
    assert computed
    for item in computed:
        assert set(item.inputs) <= set(summary), item.tag


def test_compared_metrics_have_a_direction():
    assert all(item.direction is not Direction.NEITHER for item in COMPARED)
    assert metric("tps").higher_is_better and not metric("ttft").higher_is_better


def test_summary_units_spell_out_catalogue_metrics():
    assert SUMMARY_UNITS["times"] == "seconds"
    for tag, words in SUMMARY_UNITS.items():
        if tag != "times":
            assert metric(tag).unit_words == words


def test_findings_read_every_measured_catalogue_column_as_a_float():
    assert set(float_columns()) <= set(FLOAT_COLUMNS)
    assert "n_requests" not in FLOAT_COLUMNS  # a count stays an integer


def test_docs_list_every_catalogue_metric_with_its_unit_and_direction():
    lines = (ROOT / "docs" / "metrics.md").read_text().splitlines()
    start = lines.index(HEADER[0])
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    assert lines[start:end] == table()
    rows = {line.split(" | ")[0].strip("|` "): line.split(" | ") for line in lines[start + 2 : end]}
    for item in CATALOGUE:
        cells = rows[item.tag]
        assert cells[2] == item.unit and cells[4] == item.direction.value, item.tag


def test_axis_titles_lower_the_label_but_keep_an_acronym():
    assert metric("req_per_s").axis_title == "throughput (req/s)"
    assert metric("e2e").axis_title == "end-to-end latency (s)"
    assert metric("ttft").axis_title == "TTFT (s)"
