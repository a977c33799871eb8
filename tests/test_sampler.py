"""The sampler against processes with a known CPU load."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest

from perflab.engines import server_process
from perflab.engines.registry import engine_kind
from perflab.engines.server_process import (
    find_listening_pids,
    find_ollama_pids,
    is_local_host,
    process_tree,
)
from perflab.measure.sampler import ResourceSampler
from perflab.measure.samples import (
    disturbance_threshold_pct,
    summarize_interference,
    summarize_samples,
    write_samples,
)

BUSY = "import time\nend = time.time() + {s}\nwhile time.time() < end: pass\n"
SAMPLE_KEYS = (
    "t",
    "cpu_percent",
    "cpu_per_core",
    "mem_used_gb",
    "mem_available_gb",
    "mem_percent",
    "swap_used_gb",
    "disk_read_mb_s",
    "disk_write_mb_s",
    "net_sent_mb_s",
    "net_recv_mb_s",
    "server_cpu_percent",
    "server_rss_gb",
    "server_pids",
    "client_cpu_percent",
    "client_rss_gb",
    "interference_cpu_pct",
    "interval_s",
    "sampler_cpu_s",
)


def start(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code])


def sample(pids, seconds=1.2, interval=0.1, **kwargs):
    with ResourceSampler(interval_s=interval, server_pids=pids, **kwargs) as sampler:
        time.sleep(seconds)
    return sampler.samples


def test_a_busy_process_shows_about_one_core():
    """A busy loop's CPU as sampled matches what the kernel charged it over the same
    seconds (on an idle machine one core; on a shared one, whatever share it got)."""
    proc = start(BUSY.format(s=3))
    try:
        time.sleep(0.2)
        charged = psutil.Process(proc.pid)
        before, started = sum(charged.cpu_times()[:2]), time.monotonic()
        samples = sample([proc.pid])
        truth = 100 * (sum(charged.cpu_times()[:2]) - before) / (time.monotonic() - started)
    finally:
        proc.kill()
        proc.wait()
    summary = summarize_samples(samples)
    assert truth > 5
    assert summary.server_cpu_percent_mean == pytest.approx(truth, rel=0.3, abs=5)
    assert summary.server_rss_gb_max > 0
    assert summary.server_pids == (proc.pid,)
    assert summary.cpu_percent_max > 0
    assert not summary.client_in_server


def test_an_idle_process_shows_little_cpu():
    proc = start("import time; time.sleep(3)")
    try:
        samples = sample([proc.pid])
    finally:
        proc.kill()
        proc.wait()
    assert summarize_samples(samples).server_cpu_percent_mean < 20


def test_interval_is_honoured_and_samples_carry_every_field():
    samples = sample([], seconds=1.0, interval=0.1)
    assert 7 <= len(samples) <= 11
    gaps = [b["t"] - a["t"] for a, b in zip(samples, samples[1:])]
    assert sum(gaps) / len(gaps) == pytest.approx(0.1, abs=0.03)
    last = samples[-1]
    for key in SAMPLE_KEYS:
        assert key in last
    assert 0 <= last["cpu_percent"] <= 100
    assert len(last["cpu_per_core"]) == os.cpu_count()
    assert last["server_cpu_percent"] is None  # no server pids: unknown, not zero
    assert last["client_rss_gb"] > 0
    assert last.get("gpu_util_percent") is None or last["gpu_util_percent"] >= 0


def test_deadlines_are_absolute_so_lateness_does_not_accumulate():
    interval = 0.05
    samples = sample([], seconds=1.6, interval=interval)
    t0 = samples[0]["t"]
    late = [s["t"] - (t0 + k * interval) for k, s in enumerate(samples)]
    # each sample is on the grid start + k * interval: the error stays bounded instead of
    # growing with k (a sleep(interval) loop would drift by the sampling cost every time)
    assert max(abs(x) for x in late[len(late) // 2 :]) < 2 * interval
    assert len(samples) >= 0.7 * 1.6 / interval


def test_a_vanishing_process_does_not_stop_sampling():
    proc = start(BUSY.format(s=0.3))
    sampler = ResourceSampler(
        interval_s=0.1, server_pids=lambda: process_tree(proc.pid) or [proc.pid], pids_refresh_s=0
    )
    with sampler:
        time.sleep(1.0)
    proc.wait()
    samples = sampler.samples
    assert len(samples) >= 7
    assert samples[-1]["server_cpu_percent"] is None  # gone: unknown, not an error
    assert sampler.errors == []


def test_a_pid_that_never_existed_is_ignored():
    proc = start("pass")
    proc.wait()  # its pid is now free
    samples = sample([proc.pid], seconds=0.4)
    assert samples and all(s["server_cpu_percent"] is None for s in samples)


def test_a_failing_pid_source_keeps_the_last_known_set():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("lookup failed")
        return [os.getpid()]

    with ResourceSampler(interval_s=0.1, server_pids=flaky, pids_refresh_s=0) as sampler:
        time.sleep(0.5)
    assert sampler.samples and all(s["server_pids"] == [os.getpid()] for s in sampler.samples)
    assert sampler.errors and "lookup failed" in sampler.errors[0]


def test_embedded_engine_client_and_server_are_one_process():
    samples = sample(lambda: [os.getpid()], seconds=0.5)
    assert all(s["client_in_server"] for s in samples)
    assert summarize_samples(samples).client_in_server


def test_write_and_summarize_round_trip(tmp_path):
    samples = sample([], seconds=0.5)
    path = tmp_path / "sub" / "samples.jsonl"
    write_samples(path, samples)
    assert [json.loads(line) for line in path.read_text().splitlines()] == samples
    assert not list(path.parent.glob("*.tmp"))
    summary = summarize_samples(samples)
    assert summary.n_samples == len(samples)
    assert summary.interval_s == pytest.approx(0.1, abs=0.03)
    assert 0 <= summary.sampler_overhead_percent < 50
    assert summary.mem_available_gb_min <= summary.mem_total_gb
    assert summarize_samples([]).as_columns() == {
        "n_samples": 0,
        "interference_cpu_pct_mean": None,
        "interference_cpu_pct_max": None,
        "n_interference_samples": 0,
    }


def test_summary_of_known_samples():
    samples = [
        {"t": 0.0, "cpu_percent": 10, "server_cpu_percent": 100, "server_rss_gb": 1.0,
         "mem_used_gb": 4, "mem_available_gb": 8, "swap_used_gb": 0.5, "client_cpu_percent": 5,
         "disk_read_mb_s": 0, "sampler_cpu_s": 0.10, "server_pids": [7]},
        {"t": 1.0, "cpu_percent": 30, "server_cpu_percent": 300, "server_rss_gb": 2.0,
         "mem_used_gb": 6, "mem_available_gb": 6, "swap_used_gb": 0.7, "client_cpu_percent": 15,
         "disk_read_mb_s": 100, "sampler_cpu_s": 0.11, "server_pids": [7, 8]},
        {"t": 2.0, "cpu_percent": 20, "server_cpu_percent": None, "server_rss_gb": None,
         "mem_used_gb": 5, "mem_available_gb": 7, "swap_used_gb": 0.6, "client_cpu_percent": 10,
         "disk_read_mb_s": 2, "sampler_cpu_s": 0.12, "server_pids": []},
    ]  # fmt: skip
    s = summarize_samples(samples)
    assert s.duration_s == 2.0 and s.interval_s == 1.0 and s.n_samples == 3
    assert s.cpu_percent_mean == 20 and s.cpu_percent_max == 30
    assert s.server_cpu_percent_mean == 200 and s.server_cpu_percent_max == 300
    assert s.n_server_samples == 2 and s.server_pids == (7, 8)
    assert s.server_rss_gb_max == 2.0 and s.mem_used_gb_mean == 5
    assert s.mem_available_gb_min == 6 and s.swap_used_gb_max == 0.7
    assert s.swap_growth_gb == pytest.approx(0.2)
    assert s.client_cpu_percent_mean == 10
    assert s.disk_read_mb_s_median == 2 and s.disk_read_mb_s_max == 100
    assert s.sampler_overhead_percent == pytest.approx(1.0)  # 0.02 CPU s over 2 s
    assert s.gpu_util_percent_mean is None


def test_find_listening_pids_and_local_ollama_discovery():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert os.getpid() in find_listening_pids(port)
        assert os.getpid() in find_ollama_pids(f"http://127.0.0.1:{port}")
        assert os.getpid() in find_ollama_pids(f"localhost:{port}")
    assert find_listening_pids(port) == []


def test_listener_fallback_when_the_system_table_is_denied(monkeypatch):
    def denied(kind="inet"):
        raise server_process.psutil.AccessDenied()

    monkeypatch.setattr(server_process.psutil, "net_connections", denied)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert os.getpid() in find_listening_pids(listener.getsockname()[1])


def test_remote_hosts_have_no_local_pids():
    assert find_ollama_pids("http://192.0.2.10:11434") == []
    assert find_ollama_pids("https://ollama.example.com") == []
    assert is_local_host("127.0.0.1") and is_local_host("[::1]") and is_local_host("0.0.0.0")
    assert is_local_host(socket.gethostname())
    assert not is_local_host("192.0.2.10")


def test_process_tree_includes_children_and_tolerates_missing_pids():
    proc = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time\n"
         "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3)'])\n"
         "time.sleep(3)"]
    )  # fmt: skip
    try:
        deadline = time.time() + 3
        tree = process_tree(proc.pid)
        while len(tree) < 2 and time.time() < deadline:
            time.sleep(0.05)
            tree = process_tree(proc.pid)
        assert tree[0] == proc.pid and len(tree) >= 2
    finally:
        for pid in reversed(process_tree(proc.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        proc.wait()
    assert process_tree(proc.pid) == []


def test_interference_is_the_cpu_of_every_process_but_server_and_client():
    """One busy process, watched by two samplers over the same seconds: where it is the
    server it is not interference; where it is not, interference carries its CPU."""
    proc = start(BUSY.format(s=4))
    try:
        time.sleep(0.2)
        as_server = ResourceSampler(interval_s=0.1, server_pids=[proc.pid]).start()
        as_other = ResourceSampler(interval_s=0.1, server_pids=[os.getpid()]).start()
        time.sleep(1.5)
        as_server.stop(), as_other.stop()
    finally:
        proc.kill()
        proc.wait()
    server_view, other_view = (
        summarize_samples(as_server.samples),
        summarize_samples(as_other.samples),
    )
    busy = server_view.server_cpu_percent_mean
    assert busy > 5  # it ran (on a busy shared machine, far from a full core)
    difference = other_view.interference_cpu_pct_mean - server_view.interference_cpu_pct_mean
    assert difference == pytest.approx(busy, rel=0.4)
    cores = len(as_other.samples[-1]["cpu_per_core"])
    for sample_ in as_server.samples + as_other.samples:
        # not clipped: counter noise may put one sample a little below 0
        assert -50 <= sample_["interference_cpu_pct"] <= 100 * cores


def test_interference_is_unknown_while_a_local_server_is_not_found():
    unknown = sample([], seconds=0.5)
    assert all(s["interference_cpu_pct"] is None for s in unknown)
    assert summarize_samples(unknown).interference_cpu_pct_mean is None
    remote = sample([], seconds=0.5, server_remote=True)  # its CPU is not this machine's
    assert all(s["interference_cpu_pct"] is not None for s in remote)


def test_interference_is_summarized_over_the_measured_window_only():
    samples = [
        {"t": 10.5, "interval_s": 0.5, "interference_cpu_pct": 90.0},  # warm-up
        {"t": 11.0, "interval_s": 0.5, "interference_cpu_pct": 10.0},
        {"t": 11.5, "interval_s": 0.5, "interference_cpu_pct": 30.0},
        {"t": 12.0, "interval_s": 0.5, "interference_cpu_pct": None},
        {"t": 12.5, "interval_s": 0.5, "interference_cpu_pct": 70.0},  # after the end
    ]
    summary = summarize_samples(samples, window=(10.6, 12.1))
    assert summary.interference_cpu_pct_mean == pytest.approx(20.0)
    assert summary.interference_cpu_pct_max == 30.0
    assert summary.n_interference_samples == 2
    # a window shorter than one sample: the sample that overlaps it
    assert summarize_samples(samples, window=(11.1, 11.2)).interference_cpu_pct_max == 30.0
    assert summarize_samples(samples).interference_cpu_pct_max == 90.0


def busy_share(pid: int, seconds: float) -> float:
    """Percent of one core that ``pid`` was charged over the next ``seconds``."""
    proc = psutil.Process(pid)
    before, started = sum(proc.cpu_times()[:2]), time.monotonic()
    time.sleep(seconds)
    return 100 * (sum(proc.cpu_times()[:2]) - before) / (time.monotonic() - started)


def test_a_process_found_late_is_primed_one_interval_ahead_not_read_as_a_spike():
    """A busy server found only after the sampler started: the sample in which it first
    appears says its CPU is not known yet (no 0 % and no 10⁴ % reading); from the next
    one on each sample carries its share of a core."""
    proc = start(BUSY.format(s=4))
    found = threading.Event()
    try:
        with ResourceSampler(
            interval_s=0.1, server_pids=lambda: [proc.pid] if found.is_set() else []
        ) as sampler:
            time.sleep(0.35)
            found.set()
            truth = busy_share(proc.pid, 1.2)
    finally:
        proc.kill()
        proc.wait()
    seen = [s for s in sampler.samples if s["server_pids"]]
    first, later = seen[0], seen[1:]
    assert first["server_pids_new"] == [proc.pid]
    assert first["server_cpu_percent"] is None and first["interference_cpu_pct"] is None
    assert all(not s["server_pids_new"] for s in later) and len(later) >= 5
    cores = psutil.cpu_count()
    values = [s["server_cpu_percent"] for s in later]
    assert all(0 <= v <= 100 * cores + 10 for v in values), values
    assert sum(values) / len(values) == pytest.approx(truth, rel=0.35, abs=8)


def test_a_process_born_during_an_interval_counts_from_its_birth():
    """Ollama starts a runner with the first request: a child born between two samples
    is counted in the sample it appears in, all of its CPU time being inside it."""
    code = (
        "import subprocess, sys, time\n"
        "time.sleep(0.4)\n"
        "c = subprocess.Popen([sys.executable, '-c', " + repr(BUSY.format(s=2)) + "])\n"
        "c.wait()\n"
    )
    parent = start(code)
    try:
        with ResourceSampler(
            interval_s=0.1, server_pids=lambda: process_tree(parent.pid)
        ) as sampler:
            time.sleep(1.6)
    finally:
        for pid in reversed(process_tree(parent.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        parent.wait()
    with_child = [s for s in sampler.samples if len(s["server_pids"]) >= 2]
    assert with_child, "the child was never seen"
    assert with_child[0]["server_pids_new"] == []  # born after the interval began
    assert with_child[0]["server_cpu_percent"] is not None
    assert max(s["server_cpu_percent"] for s in with_child) > 5


def test_the_mean_is_clipped_not_each_sample():
    samples = [
        {"t": 1.0, "interval_s": 1.0, "interference_cpu_pct": -4.0},
        {"t": 2.0, "interval_s": 1.0, "interference_cpu_pct": 2.0},
        {"t": 3.0, "interval_s": 1.0, "interference_cpu_pct": -1.0},
    ]
    summary = summarize_interference(samples, None)
    # clipping each sample first would give 2/3 % out of pure noise
    assert summary.interference_cpu_pct_mean == 0.0
    assert summary.interference_cpu_pct_max == 2.0
    assert summarize_interference(samples[1:2], None).interference_cpu_pct_mean == 2.0


def test_the_threshold_scales_with_free_cores_and_the_engines_cores():
    assert disturbance_threshold_pct(2, 2) == 25.0  # both cores used: a quarter of one
    assert disturbance_threshold_pct(2, None) == 25.0  # unknown: it may use them all
    assert disturbance_threshold_pct(8, 8) == 100.0
    assert disturbance_threshold_pct(8, 1) == 712.5  # seven cores free
    assert disturbance_threshold_pct(4, 16) == 50.0  # more threads than cores


def test_time_above_the_threshold_is_the_sampled_time_beyond_it():
    samples = [
        {"t": 1.0, "interval_s": 0.5, "interference_cpu_pct": 10.0},
        {"t": 1.5, "interval_s": 0.5, "interference_cpu_pct": 40.0},
        {"t": 2.5, "interval_s": 1.0, "interference_cpu_pct": 30.0},
        {"t": 3.0, "interval_s": 0.5, "interference_cpu_pct": None},
    ]
    summary = summarize_interference(samples, None, threshold_pct=25.0)
    assert summary.interference_above_s == 1.5
    assert summary.interference_above_share == pytest.approx(0.75)  # of the 2 s measured
    assert summary.interference_threshold_pct == 25.0


def test_time_above_the_threshold_of_a_busy_neighbour():
    """A busy process beside a sampler whose server is this process: every sample is
    above a threshold below zero, none above one beyond the machine."""
    proc = start(BUSY.format(s=3))
    try:
        time.sleep(0.2)
        with ResourceSampler(interval_s=0.1, server_pids=[os.getpid()]) as sampler:
            truth = busy_share(proc.pid, 1.2)
    finally:
        proc.kill()
        proc.wait()
    assert truth > 2
    measured = sum(s["interval_s"] for s in sampler.samples)
    every = summarize_samples(sampler.samples, threshold_pct=-100.0)
    assert every.interference_above_share == 1.0
    assert every.interference_above_s == pytest.approx(measured)
    none = summarize_samples(sampler.samples, threshold_pct=100 * psutil.cpu_count() + 50)
    assert none.interference_above_share == 0 and none.interference_above_s == 0
    assert every.interference_cpu_pct_mean > 0


def serve_openai(port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "perflab.calibration", "--port", str(port), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_listening(port: int, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def test_each_engine_finds_its_own_server_process():
    """An OpenAI-compatible server in its own process is the openai engine's server
    (by its port, not by looking for Ollama); the in-process engines are this process."""
    from conftest import unused_port

    port = unused_port()
    server = serve_openai(port)
    try:
        wait_listening(port)
        for host in (f"http://127.0.0.1:{port}/v1", f"127.0.0.1:{port}"):
            config = {"engine": {"name": "openai", "host": host}}
            assert server.pid in engine_kind("openai").server_pids(config)(), host
        ollama = {"engine": {"name": "ollama", "host": f"http://127.0.0.1:{port}"}}
        assert server.pid in engine_kind("ollama").server_pids(ollama)()
    finally:
        server.kill()
        server.wait()
    for name in ("llamacpp", "calibration"):
        in_process = engine_kind(name).server_pids({"engine": {"name": name, "host": None}})
        assert in_process() == [os.getpid()]
    # no port in the URL: the scheme's (80), never Ollama's 11434
    assert server_process.find_server_pids("http://127.0.0.1/v1") == find_listening_pids(80)
