"""Each bottleneck rule on data that should trigger it and data that should not."""

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
    {"workers": 1, "req_per_s": 1.0, "e2e_mean_s": 1.0},
    {"workers": 4, "req_per_s": 3.5, "e2e_mean_s": 1.1},
]
SERIAL = [
    {"workers": 1, "req_per_s": 1.0, "e2e_mean_s": 1.0},
    {"workers": 4, "req_per_s": 1.05, "e2e_mean_s": 3.9, "queue_s_mean": 2.8},
]


def test_calm_machine_is_undetermined():
    verdict = decide(CALM, usable_cores=4, concurrency=SCALING)
    assert verdict.verdict == "undetermined"
    assert any("no rule triggered" in e for e in verdict.evidence)


def test_no_data_is_undetermined_and_says_so():
    verdict = decide({}, usable_cores=4, concurrency=[])
    assert verdict.verdict == "undetermined" and "nothing to decide" in verdict.evidence[0]


def test_cpu_bound():
    verdict = decide(CALM | {"server_cpu_percent_mean": 380.0}, usable_cores=4, concurrency=SCALING)
    assert verdict.verdict == "cpu"
    assert "380% of one core" in verdict.evidence[0]
    assert decide(CALM | {"server_cpu_percent_mean": 200.0}, 4, SCALING).verdict != "cpu"


def test_memory_pressure_from_swap_or_low_memory_or_model_size():
    assert decide(CALM | {"swap_used_gb_max": 2.0}, 4, SCALING).verdict == "memory"
    assert decide(CALM | {"mem_available_gb_min": 0.5}, 4, SCALING).verdict == "memory"
    assert decide(CALM, 4, SCALING, model_size_gb=31.0).verdict == "memory"
    assert decide(CALM, 4, SCALING, model_size_gb=4.9).verdict != "memory"


def test_queueing_when_latency_grows_and_throughput_stays_flat():
    verdict = decide(CALM, 4, SERIAL)
    assert verdict.verdict == "queueing"
    assert "×3.90" in verdict.evidence[0] and "2.800s" in verdict.evidence[0]


def test_client_bound_only_with_a_separate_server():
    busy_client = CALM | {"client_cpu_percent_mean": 95.0}
    assert decide(busy_client, 4, SCALING).verdict == "client"
    assert decide(busy_client, 4, SCALING, embedded=True).verdict != "client"


def test_io_bound():
    assert decide(CALM | {"disk_read_mb_s_mean": 400.0}, 4, SCALING).verdict == "io"


def test_priority_and_secondary():
    verdict = decide(CALM | {"server_cpu_percent_mean": 390.0}, 4, SERIAL)
    assert verdict.verdict == "cpu" and verdict.secondary == ["queueing"]


def test_every_verdict_has_suggestions():
    for name in ("cpu", "memory", "queueing", "client", "io", "undetermined"):
        assert suggest_optimizations(name)
