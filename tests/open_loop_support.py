"""What the open-loop tests share: the suites a rate-only config turns off, and one
experiment job measured and tabulated as the workflow runs it."""

from __future__ import annotations

from perflab.analyse.table_files import ExperimentTables, tabulate_experiment
from perflab.measure.experiment import run_experiment

OTHER_SUITES_OFF = {
    suite: {"enabled": False}
    for suite in ("basic", "prompt_length", "temperature", "concurrency", "resources", "kv_cache")
}


def measured(spec, files, **kwargs):
    """One experiment job as the workflow runs it: measured, then tabulated."""
    metadata = run_experiment(spec, files, **kwargs)
    tabulate_experiment(files.records, files.metadata)
    return metadata, ExperimentTables.in_dir(files.records.parent)
