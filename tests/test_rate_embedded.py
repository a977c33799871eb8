"""Open-loop load on the embedded llama.cpp engine, which serves one request at a time
inside perflab's own process: requests still leave on schedule, wait for the model's
lock in turn (queue_s), and it serves no more than one request per request time; the
log says so."""

from __future__ import annotations

import polars as pl
import pytest
from conftest import ROOT
from open_loop_support import OTHER_SUITES_OFF as OFF
from open_loop_support import measured

from perflab.analyse.findings import write_findings
from perflab.analyse.table_files import write_aggregates, write_metadata_index
from perflab.config.load import load_config_file
from perflab.config.sweep import expand_experiments
from perflab.measure.experiment import ExperimentPaths
from perflab.measure.metadata import ExperimentMetadata
from perflab.measure.spec import experiment_spec
from perflab.present import report

RATE = 400  # req/s: far above what one request at a time can serve on the tiny model
REQUESTS = 30


@pytest.fixture(scope="module")
def overloaded(tmp_path_factory, tiny_model_path):
    out = tmp_path_factory.mktemp("rate-embedded")
    config = load_config_file(
        ROOT / "config" / "config.yaml",
        overrides={
            "engine": {"model_path": str(tiny_model_path)},
            "generation": {"max_tokens": 8},
            "repeats": 1,
            "warmup_requests": 1,
            "sampler": {"interval_s": 0.2},
            "suites": OFF
            | {
                "rate": {
                    "enabled": True,
                    "rates": [RATE],
                    "requests": REQUESTS,
                    "arrival": "constant",
                    "max_send_lag_s": 1.0,  # the model shares the client's CPU
                }
            },
        },
    )
    (experiment,) = expand_experiments(config).values()
    files = ExperimentPaths.in_dir(out / experiment.id, out / "failed")
    metadata, tables = measured(experiment_spec(config, experiment), files, say=lambda _: None)
    write_aggregates(
        [tables.records],
        [tables.summary],
        out / "requests.parquet",
        out / "summary.parquet",
        out / "summary.csv",
        out / "summary.json",
    )
    write_metadata_index([files.metadata], out / "index.json")
    return config, metadata, out


def test_requests_leave_on_schedule_and_wait_for_the_lock_in_turn(overloaded):
    _, metadata, out = overloaded
    assert metadata["schedule"]["n_sent"] == metadata["schedule"]["n_scheduled"] == REQUESTS
    records = (
        pl.read_parquet(out / "requests.parquet")
        .filter(~pl.col("is_warmup") & (pl.col("status") == "ok"))
        .sort("e2e_sched_s")
    )
    assert records.height == REQUESTS
    queue = records["queue_s"].to_list()
    # all were due within 0.075 s; each waits for the ones before it
    assert queue[-1] > 5 * max(queue[0], 1e-3)
    busy = (records["prefill_s"] + records["decode_s"]).mean()
    # one at a time: the requests' own busy time fills the run, end to end
    wall = records["e2e_sched_s"].max()
    assert wall >= 0.9 * REQUESTS * busy


def test_the_log_says_what_open_loop_load_means_in_process(overloaded):
    config, metadata, out = overloaded
    found = write_findings(
        out / "summary.parquet",
        out / "requests.parquet",
        out / "index.json",
        config,
        out / "findings.json",
    )
    (finding,) = found.capacity
    assert finding.points[0].offered_rate == RATE
    text = report.render_template(
        "day1-log.md.j2",
        **report.build_context(found, [ExperimentMetadata.from_json(metadata)], config, {}, []),
    )
    section = text[text.index("#### Capacity") : text.index("#### Resource Usage")]
    assert "runs inside perflab's own process and serves one request at a time" in section
    assert "it serves at most 1 / the time of one request" in section
