"""Each bottleneck rule on data that should trigger it and data that should not."""

import pytest

from perflab import verdict as v
from perflab.verdict import decide, suggest_optimizations

CALM = {
    "server_cpu_percent_mean": 30.0,
    "cpu_percent_mean": 20.0,
    "mem_available_gb_min": 20.0,
    "mem_total_gb": 32.0,
    "swap_used_gb_max": 0.0,
    "client_cpu_percent_mean": 5.0,
    "disk_read_mb_s_mean": 0.1,
}
SCALING = [
    {"workers": 1, "req_per_s": 1.0, "e2e_mean_s": 1.0, "ttft_mean_s": 0.1, "queue_s_mean": None},
    {"workers": 4, "req_per_s": 3.5, "e2e_mean_s": 1.1, "ttft_mean_s": 0.12, "queue_s_mean": None},
]
SERIAL = [
    {"workers": 1, "req_per_s": 1.0, "e2e_mean_s": 1.0, "ttft_mean_s": 0.1},
    {"workers": 2, "req_per_s": 1.02, "e2e_mean_s": 1.9, "ttft_mean_s": 1.0},
    {"workers": 4, "req_per_s": 1.05, "e2e_mean_s": 3.9, "ttft_mean_s": 2.9, "queue_s_mean": 2.8},
]


def check(verdict, name):
    return next(c for c in verdict.checks if c.name == name)


def test_calm_machine_is_undetermined():
    verdict = decide(CALM, usable_cores=4, concurrency=SCALING)
    assert verdict.verdict == "undetermined"
    assert any("no rule triggered" in e for e in verdict.evidence)
    assert {c.name for c in verdict.checks} == set(v.PRIORITY)
    assert not any(c.triggered for c in verdict.checks)


def test_no_data_is_undetermined_and_says_what_is_missing():
    verdict = decide({}, usable_cores=4, concurrency=[])
    assert verdict.verdict == "undetermined" and "nothing to decide" in verdict.evidence[0]
    assert any("no CPU samples" in e for e in verdict.evidence)
    assert any("concurrency sweep" in e for e in verdict.evidence)
    assert all(c.missing for c in verdict.checks)


def test_partly_missing_data_is_named():
    verdict = decide(CALM, usable_cores=4, concurrency=SCALING[:1])
    assert verdict.verdict == "undetermined"
    assert check(verdict, "queueing").missing
    assert any("not evaluated" in e and "queueing" in e for e in verdict.evidence)


def test_cpu_bound_from_the_server_process():
    verdict = decide(CALM | {"server_cpu_percent_mean": 380.0}, usable_cores=4, concurrency=SCALING)
    assert verdict.verdict == "cpu"
    assert "380% of one core" in verdict.evidence[0] and "95%" in verdict.evidence[0]
    assert check(verdict, "cpu").numbers["server_share"] == pytest.approx(0.95)
    assert decide(CALM | {"server_cpu_percent_mean": 200.0}, 4, SCALING).verdict != "cpu"


def test_cpu_bound_uses_the_threads_the_server_can_use():
    # 2 threads of llama.cpp on a 16-core machine, both busy
    assert decide(CALM | {"server_cpu_percent_mean": 190.0}, 2, SCALING).verdict == "cpu"
    assert decide(CALM | {"server_cpu_percent_mean": 190.0}, 16, SCALING).verdict != "cpu"


def test_cpu_bound_from_the_whole_system():
    assert decide(CALM | {"cpu_percent_mean": 90.0}, 4, SCALING).verdict == "cpu"
    assert decide(CALM | {"cpu_percent_mean": 80.0}, 4, SCALING).verdict != "cpu"


def test_memory_pressure_from_swap_or_low_memory_or_model_size():
    assert decide(CALM | {"swap_used_gb_max": 2.0}, 4, SCALING).verdict == "memory"
    assert decide(CALM | {"mem_available_gb_min": 0.5}, 4, SCALING).verdict == "memory"
    assert decide(CALM | {"mem_available_gb_min": 2.5}, 4, SCALING).verdict == "memory"  # < 10 %
    assert decide(CALM, 4, SCALING, model_size_gb=31.0).verdict == "memory"
    assert decide(CALM, 4, SCALING, model_size_gb=4.9).verdict != "memory"


def test_old_swap_that_does_not_grow_is_not_pressure():
    calm_swap = CALM | {"swap_used_gb_max": 2.0, "swap_growth_gb": 0.0}
    assert decide(calm_swap, 4, SCALING).verdict != "memory"
    growing = CALM | {"swap_used_gb_max": 2.0, "swap_growth_gb": 0.5}
    verdict = decide(growing, 4, SCALING)
    assert verdict.verdict == "memory" and "swap grew by 0.50 GB" in verdict.evidence[0]


def test_model_not_resident_with_too_little_free_memory():
    starved = CALM | {"server_rss_gb_max": 1.0, "mem_available_gb_min": 3.5}
    assert decide(starved, 4, SCALING, model_size_gb=8.0).verdict == "memory"
    roomy = CALM | {"server_rss_gb_max": 1.0}  # e.g. offloaded to a GPU, plenty of RAM free
    assert decide(roomy, 4, SCALING, model_size_gb=8.0).verdict != "memory"


def test_queueing_when_latency_grows_and_throughput_stays_flat():
    verdict = decide(CALM, 4, SERIAL)
    assert verdict.verdict == "queueing"
    assert "×3.90" in verdict.evidence[0] and "2.800s" in verdict.evidence[0]
    assert "serializes" in verdict.evidence[0] and "serializes" in verdict.note
    assert verdict.log_option is None
    numbers = check(verdict, "queueing").numbers
    assert numbers["throughput_growth"] == pytest.approx(1.05)
    assert numbers["ttft_growth"] == pytest.approx(29.0)


def test_no_queueing_when_throughput_scales_or_latency_is_flat():
    assert decide(CALM, 4, SCALING).verdict != "queueing"
    flat = [SERIAL[0], SERIAL[1] | {"e2e_mean_s": 1.2}]
    assert decide(CALM, 4, flat).verdict != "queueing"


def test_queueing_tolerates_missing_values():
    points = [*SERIAL, {"workers": 8, "req_per_s": None, "e2e_mean_s": None}]
    assert decide(CALM, 4, points).verdict == "queueing"


def test_client_bound_only_with_a_separate_idle_server():
    busy_client = CALM | {"client_cpu_percent_mean": 95.0}
    assert decide(busy_client, 4, SCALING).verdict == "client"
    assert decide(busy_client, 4, SCALING, embedded=True).verdict != "client"
    assert decide(busy_client | {"client_in_server": True}, 4, SCALING).verdict != "client"
    assert decide(busy_client | {"server_cpu_percent_mean": 300.0}, 4, SCALING).verdict != "client"
    assert decide(CALM, 4, SCALING, client_cpu_percent=90.0).verdict == "client"
    assert decide(CALM, 4, SCALING).verdict != "client"


def test_io_bound():
    assert decide(CALM | {"disk_read_mb_s_mean": 400.0}, 4, SCALING).verdict == "io"
    assert decide(CALM | {"disk_read_mb_s_mean": 10.0}, 4, SCALING).verdict != "io"
    busy_cpu = CALM | {"disk_read_mb_s_mean": 400.0, "cpu_percent_mean": 70.0}
    assert decide(busy_cpu, 4, SCALING).verdict != "io"


def test_io_uses_the_median_so_a_one_off_model_load_does_not_count():
    burst = CALM | {"disk_read_mb_s_mean": 200.0, "disk_read_mb_s_median": 0.5}
    assert decide(burst, 4, SCALING).verdict != "io"


def test_priority_and_secondary():
    verdict = decide(CALM | {"server_cpu_percent_mean": 390.0}, 4, SERIAL)
    assert verdict.verdict == "cpu" and verdict.secondary == ["queueing"]
    assert verdict.log_option == "CPU"
    everything = CALM | {
        "server_cpu_percent_mean": 390.0,
        "swap_used_gb_max": 3.0,
        "disk_read_mb_s_mean": 400.0,
        "cpu_percent_mean": 40.0,
    }
    verdict = decide(everything, 4, SERIAL)
    assert verdict.verdict == "memory" and verdict.secondary == ["cpu", "io", "queueing"]
    assert verdict.evidence[0].startswith("memory pressure")


def test_to_dict_shape():
    d = decide(CALM, 4, SERIAL).to_dict()
    assert set(d) >= {"verdict", "evidence", "checks", "secondary", "log_option", "note"}
    assert {"name", "triggered", "numbers", "evidence", "missing"} <= set(d["checks"][0])


def test_every_verdict_has_suggestions():
    for name in v.VERDICTS:
        assert suggest_optimizations(name)
    assert any("OLLAMA_NUM_PARALLEL" in s for s in suggest_optimizations("queueing"))
    verdict = decide(CALM | {"server_cpu_percent_mean": 390.0}, 4, SERIAL)
    suggestions = suggest_optimizations(verdict)
    assert suggestions[: len(v.OPTIMIZATIONS["cpu"])] == v.OPTIMIZATIONS["cpu"]
    assert v.OPTIMIZATIONS["queueing"][0] in suggestions
    assert suggest_optimizations(verdict.to_dict()) == suggestions
