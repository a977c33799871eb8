"""GPU telemetry: power and energy per output token from NVML samples, and the one
clean "no GPU" record every experiment writes on a machine without one."""

import json
import time

import pytest
from test_experiment import paths, spec_for

from perflab.analyse.findings.resources import ExperimentResources, ResourcesFinding
from perflab.measure.experiment import run_experiment
from perflab.measure.gpu import GpuRecord, Gpus, energy, gpu_record, open_gpus
from perflab.measure.resource_summary import ResourceSummary
from perflab.measure.sampler import ResourceSampler
from perflab.present.wording import gpu

POWER = [  # (t, W): two samples before the window, one without power, one after
    (0.0, 999.0),
    (1.0, 999.0),
    (2.0, 100.0),
    (4.0, 200.0),
    (5.0, None),
    (6.0, 300.0),
    (12.0, 999.0),
]


def samples():
    return [{"t": t, "gpu_power_w": w} for t, w in POWER]


def test_energy_per_output_token_is_mean_power_times_the_window_over_the_tokens():
    found = energy(samples(), (2.0, 10.0), output_tokens=400)
    assert found.n_power_samples == 3  # 100, 200, 300 W inside [2, 10] s
    assert found.power_w_mean == pytest.approx(200.0)
    assert found.window_s == pytest.approx(8.0)
    assert found.energy_j == pytest.approx(1600.0)  # 200 W × 8 s
    assert found.j_per_output_token == pytest.approx(4.0)  # 1600 J / 400 tokens
    assert found.output_tokens == 400


def test_no_power_sample_or_no_token_gives_no_energy_per_token():
    assert energy(samples(), (7.0, 11.0), 100).j_per_output_token is None  # none inside
    assert energy(samples(), (2.0, 10.0), 0).j_per_output_token is None
    assert energy(samples(), (2.0, 10.0), 0).energy_j == pytest.approx(1600.0)


def test_a_record_with_gpus_counts_the_devices():
    record = gpu_record(Gpus(handles=("a", "b")), samples(), (2.0, 10.0), 400)
    assert record.present is True and record.devices == 2
    assert record.energy.j_per_output_token == pytest.approx(4.0)
    assert GpuRecord.from_json(record.to_json()) == record
    assert list(record.to_json()) == [
        "present",
        "devices",
        "power_w_mean",
        "n_power_samples",
        "window_s",
        "energy_j",
        "output_tokens",
        "j_per_output_token",
    ]


def test_a_record_without_gpus_says_why_and_reads_back():
    record = gpu_record(Gpus(reason="no NVML"), samples(), (2.0, 10.0), 400)
    assert record.to_json() == {"present": False, "reason": "no NVML"}
    assert GpuRecord.from_json(record.to_json()) == record


def _no_gpu() -> Gpus:
    found = open_gpus()
    if found.present:
        pytest.skip("this machine has an NVIDIA GPU that NVML reads")
    return found


def test_without_a_gpu_the_sampler_says_why_and_writes_no_gpu_fields():
    _no_gpu()
    with ResourceSampler(interval_s=0.05) as sampler:
        time.sleep(0.3)
    assert sampler.samples
    assert sampler.gpus is not None and not sampler.gpus.present
    assert sampler.gpus.reason and ("NVML" in sampler.gpus.reason)
    assert not [k for s in sampler.samples for k in s if k.startswith("gpu_")]


def test_without_a_gpu_an_experiment_records_one_clean_reason(tmp_path):
    reason = _no_gpu().reason
    files = paths(tmp_path)
    run_experiment(spec_for({}, 0.05), files)
    saved = json.loads(files.metadata.read_text())
    assert saved["gpu"] == {"present": False, "reason": reason}


def _finding(**gpu_fields) -> ResourcesFinding:
    base = {f: None for f in ResourcesFinding.__dataclass_fields__}
    return ResourcesFinding(**(base | {"experiment_id": "e", "n_samples": 3} | gpu_fields))


def test_the_resource_usage_line_says_no_gpu_in_one_line_or_gives_the_energy():
    assert gpu(_finding()) is None  # an experiment from before GPU records
    line = gpu(_finding(gpu_present=False, gpu_reason="no NVIDIA driver answered NVML"))
    assert line == "no GPU figures: no NVIDIA driver answered NVML"
    line = gpu(
        _finding(
            gpu_present=True,
            gpu_devices=1,
            gpu_util_percent_mean=87.0,
            gpu_mem_used_gb_max=9.5,
            gpu_power_w_mean=200.0,
            gpu_n_power_samples=3,
            gpu_window_s=8.0,
            gpu_energy_j=1600.0,
            gpu_output_tokens=400,
            gpu_j_per_output_token=4.0,
        )
    )
    assert "200 W mean power (n=3 samples)" in line and "4 J per output token" in line
    assert "1,600 J over the 8.0 s measured, 400 output tokens" in line
    assert "no energy" in gpu(_finding(gpu_present=True, gpu_devices=2))


def test_the_log_says_no_gpu_in_its_resource_usage(tmp_path):
    import polars as pl
    from test_report import config, metadata, read, row

    from perflab.analyse import findings
    from perflab.present import report

    meta, cfg = read(metadata()), config()
    one = row(suites="basic,resources", duration_s=2.0)
    no_gpu = GpuRecord(present=False, reason="no NVIDIA driver answered NVML")
    context = findings.context_from_metadata(meta, cfg, str(tmp_path))
    found = findings.compute(
        pl.DataFrame([one]),
        context,
        resources_by_id={
            one["experiment_id"]: ExperimentResources(ResourceSummary(n_samples=3), no_gpu)
        },
        disk_path=str(tmp_path),
    )
    assert found.resources.gpu_present is False
    text = report.render_template(
        "day1-log.md.j2", **report.build_context(found, meta, cfg, {}, [])
    )
    usage = text.split("#### Resource Usage", 1)[1].split("**Observation**", 1)[0]
    assert "- **GPU**: no GPU figures: no NVIDIA driver answered NVML\n" in usage
