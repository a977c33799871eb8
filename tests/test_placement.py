"""Where the model lives: the calibration server answers /api/ps like Ollama, the
ollama engine reads it over real HTTP once the model is loaded, an experiment
records it, and the log names a spilled or CPU-only model (and only those)."""

import json
import re
from datetime import datetime, timezone

import polars as pl
import pytest
from conftest import FAST_TIMING, ROOT
from test_report import HOSTILE, config, metadata, read, render, row

from perflab.analyse import findings
from perflab.analyse.findings import placement as placement_finding
from perflab.cli.measure import _placement_text as job_line
from perflab.config.load import load_config_file
from perflab.config.sweep import expand_experiments
from perflab.engines.base import GenerationOptions
from perflab.engines.ollama_engine import OllamaEngine
from perflab.engines.ollama_ps import ModelPlacement
from perflab.measure.experiment import ExperimentPaths, run_experiment
from perflab.measure.spec import experiment_spec
from perflab.present import wording

MODEL = "llama3.1:8b"


def loaded_engine(server, model: str = MODEL, keep_alive: str | None = None) -> OllamaEngine:
    """An engine whose one request has loaded the model on ``server``."""
    engine = OllamaEngine(model=model, host=server.url, timeout_s=10)
    options = GenerationOptions(max_tokens=2, keep_alive=keep_alive)
    chunks = list(engine.stream("hello there", options))
    assert chunks[-1].done
    return engine


def finding_of(placement) -> placement_finding.PlacementFinding:
    return placement_finding.summary([("e1", placement.as_dict())])


def test_ps_fields_are_read_from_the_server_over_http(make_calibration_server):
    server = make_calibration_server(vram_share=0.25, keep_alive_s=300)
    engine = OllamaEngine(model=MODEL, host=server.url, timeout_s=10)
    assert engine.read_placement() is None and engine.placement is None  # not loaded yet
    list(engine.stream("hello there", GenerationOptions(max_tokens=2, keep_alive="90s")))
    read_at = datetime.now(timezone.utc)
    placement = engine.read_placement()
    listed = server.model_entry(MODEL)
    assert engine.placement == placement
    assert (placement.name, placement.model, placement.digest) == (MODEL, MODEL, listed["digest"])
    assert placement.size == listed["size"] and placement.size_vram == round(listed["size"] / 4)
    assert placement.context_length == 4096
    assert (placement.parameter_size, placement.quantization_level) == ("8.0B", "Q4_K_M")
    # the request's keep_alive, not the server's default, sets the expiry
    expires = datetime.fromisoformat(placement.expires_at)
    assert 85 <= (expires - read_at).total_seconds() <= 91
    assert placement.spilled and not placement.cpu_only
    assert placement.gpu_share == pytest.approx(0.25, abs=1e-9)
    engine.close()


def test_a_spilled_model_is_named_with_its_cpu_share(make_calibration_server):
    engine = loaded_engine(make_calibration_server(vram_share=0.4))
    found = finding_of(engine.read_placement())
    assert found.where is placement_finding.Where.SPILLED and found.n_spilled == 1
    line = wording.placement(found)
    assert line.startswith("spilled: 60 % of the model in CPU memory, expect decode at CPU speed")
    assert "num_ctx" in line and "4,096-token context" in line
    engine.close()


def test_a_fully_resident_model_is_not_flagged(make_calibration_server):
    engine = loaded_engine(make_calibration_server())  # vram_share 1: all on the GPU
    placement = engine.read_placement()
    assert placement.size_vram == placement.size and placement.size > 0
    assert not placement.spilled and not placement.cpu_only
    found = finding_of(placement)
    assert found.where is placement_finding.Where.GPU and found.n_spilled == 0
    line = wording.placement(found)
    assert line.startswith("all of llama3.1:8b in GPU memory")
    assert "spilled" not in line and "CPU" not in line
    engine.close()


def test_a_model_with_nothing_in_vram_is_all_on_the_cpu(make_calibration_server):
    engine = loaded_engine(make_calibration_server(vram_share=0))
    placement = engine.read_placement()
    assert placement.size_vram == 0 and placement.cpu_only and not placement.spilled
    found = finding_of(placement)
    assert found.where is placement_finding.Where.CPU
    assert wording.placement(found).startswith("all on the CPU")
    engine.close()


def test_an_unloaded_model_is_not_listed(make_calibration_server):
    engine = loaded_engine(make_calibration_server(), keep_alive="0")
    assert engine.read_placement() is None
    engine.close()


def test_the_least_resident_experiment_decides_and_every_reading_counts():
    size = 1000
    readings = [
        ("a", {"name": MODEL, "model": MODEL, "size": size, "size_vram": size}),
        ("b", {"name": MODEL, "model": MODEL, "size": size, "size_vram": 700}),
        ("c", None),  # read, but the model had been unloaded
    ]
    found = placement_finding.summary(readings)
    assert (found.experiment_id, found.n_read, found.n_spilled, found.n_unlisted) == ("b", 2, 1, 1)
    assert found.cpu_share == pytest.approx(0.3)
    assert "spilled in 1 of 2" in wording.placement(found)
    assert placement_finding.summary([]) is None and placement_finding.summary(readings[2:]) is None


def test_an_experiment_records_where_the_model_lived_and_its_job_says_so(tmp_path):
    overrides = {
        "engine": {"name": "calibration", "model": MODEL},
        "repeats": 1,
        "calibration": FAST_TIMING | {"vram_share": 0.5},
        "warmup_requests": 1,
        "sampler": {"interval_s": 0.1},
        "suites": {"concurrency": {"workers": [2], "requests": 4}},
    }
    cfg = load_config_file(ROOT / "config" / "config.yaml", overrides=overrides)
    experiment = expand_experiments(cfg)["medium-t0-w2-n4-r1"]
    out = tmp_path / experiment.id
    files = ExperimentPaths(
        out / "records.jsonl", out / "samples.jsonl", out / "metadata.json", tmp_path / "failed"
    )
    run_experiment(experiment_spec(cfg, experiment), files)
    saved = json.loads(files.metadata.read_text())["placement"]
    assert saved["name"] == MODEL and saved["size_vram"] * 2 == saved["size"]
    assert saved["context_length"] == 4096 and saved["expires_at"]
    # the line the experiment job's log gives it
    assert job_line(ModelPlacement.from_dict(saved)) == (
        "4.80 GB loaded, 50 % in GPU memory: spilled: 50 % of the model in CPU memory, "
        "expect decode at CPU speed"
    )
    assert job_line(ModelPlacement.from_dict(saved | {"size_vram": saved["size"]})).endswith(
        "100 % in GPU memory: all on the GPU"
    )
    assert job_line(ModelPlacement.from_dict(saved | {"size_vram": 0})).endswith(": all on the CPU")
    assert "did not list" in job_line(None)


def test_a_hostile_model_name_from_the_server_is_no_markup_in_the_log(make_calibration_server):
    server = make_calibration_server(models=[HOSTILE], vram_share=0.5)
    engine = loaded_engine(server, model=HOSTILE)
    placement = engine.read_placement()
    engine.close()
    assert placement.name == HOSTILE  # read as the server sent it
    meta = metadata(model=HOSTILE)
    meta[0]["placement"] = placement.as_dict()
    text, html = render(pl.DataFrame([row()]), meta, config(model=HOSTILE))
    line = next(line for line in text.splitlines() if "Where the model lives" in line)
    assert "spilled: 50 % of the model in CPU memory" in line
    assert "<" not in line and "\\[click\\]" in line and "a\\|b" in line
    assert "<script" not in html.lower() and "<img" not in html.lower()
    assert "javascript:" not in "".join(re.findall(r'href="([^"]*)"', html))


def test_a_log_without_a_reading_says_nothing_of_it():
    text, _ = render(pl.DataFrame([row()]), metadata(), config())
    assert "Where the model lives" not in text


def test_the_finding_survives_findings_json(tmp_path):
    meta = metadata()
    meta[0]["placement"] = {"name": MODEL, "model": MODEL, "size": 1000, "size_vram": 300}
    context = findings.context_from_metadata(read(meta), config(), "results/test")
    found = findings.compute(pl.DataFrame([row()]), context, disk_path=".")
    findings.write(found, tmp_path / "findings.json")
    again = findings.load(tmp_path / "findings.json").placement
    assert again == found.placement and again.where is placement_finding.Where.SPILLED
