"""metadata.json as ExperimentMetadata: the experiment writes its to_json(), and
from_json reads a file back to the same bytes, measured or skipped."""

import json

from test_experiment import paths, spec_for

from perflab.core.records import write_json_atomic
from perflab.measure.experiment import run_experiment, write_skipped
from perflab.measure.metadata import ExperimentMetadata, RunTimes
from perflab.measure.preflight_info import PreflightInfo
from perflab.measure.spec import experiment_from_spec


def rewritten(path, tmp_path) -> str:
    copy = tmp_path / "again.json"
    write_json_atomic(copy, ExperimentMetadata.from_json(json.loads(path.read_text())).to_json())
    return copy.read_text()


def test_a_measured_experiments_file_reads_back_to_the_same_bytes(tmp_path):
    files = paths(tmp_path)
    returned = run_experiment(spec_for({}, 0.05), files)
    assert rewritten(files.metadata, tmp_path) == files.metadata.read_text()
    read = ExperimentMetadata.from_json(returned)
    assert read.experiment_id == "medium-t0-w2-n20-r1" and read.skipped is None
    assert read.run.n_records == 21 and read.used.n_samples > 0
    assert read.engine.engine == "calibration" and read.gpu is not None
    assert read.reads_placement and read.placement is not None  # the calibration /api/ps


def test_a_skipped_experiment_says_why_and_reads_back_to_the_same_bytes(tmp_path):
    spec, files = spec_for({}, 0.05), paths(tmp_path)
    skipped = write_skipped(spec, experiment_from_spec(spec), files, "the point below diverged", {})
    saved = json.loads(files.metadata.read_text())
    assert saved["skipped"] == "the point below diverged" and saved["resources"] == {}
    assert "gpu" not in saved and "options" not in saved
    assert skipped.run.n_records == 0
    assert rewritten(files.metadata, tmp_path) == files.metadata.read_text()


def test_a_file_from_an_older_perflab_reads_with_its_missing_entries_unset():
    old = {"experiment": {"id": "e"}, "engine": {"engine": "ollama"}, "run": {"started": 1.0}}
    read = ExperimentMetadata.from_json(old)
    assert read.gpu is None and read.resources is None and read.used.n_samples == 0
    assert read.run == RunTimes(started=1.0) and not read.reads_placement


def test_the_preflight_check_reads_back_entry_for_entry_with_its_engine_apart():
    written = {
        "engine": "ollama",
        "model": "m",
        "engine_version": None,  # the engine said null: it stays null
        "estimate": {"n_experiments": 2, "n_requests": 10, "timed_s": 0.0, "per_request_s": 1.5},
        "cold_start": {
            "source": "preflight",
            "load_s": 0.3,
            "ttft_s": 0.4,
            "e2e_s": 0.9,
            "in_process": False,
        },
        "model_fingerprint": {"path": "/m.gguf", "size": 1, "mtime_ns": 2, "sha256": "ab"},
    }
    read = PreflightInfo.from_json(written)
    assert read.engine.engine == "ollama" and "estimate" not in read.engine.reported
    assert read.estimate.total_s == 15.0 and read.cold_start.load_s == 0.3
    again = read.to_json()
    assert again == written | {"estimate": written["estimate"] | again["estimate"]}
    assert again["estimate"]["total_s"] == 15.0
    assert PreflightInfo.from_json({"engine": "x"}).estimate is None
