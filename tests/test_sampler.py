"""The sampler against processes with a known CPU load."""

import json
import subprocess
import sys
import time

import pytest

from perflab.sampler import ResourceSampler, process_tree, summarize_samples, write_samples

BUSY = "import time\nend = time.time() + {s}\nwhile time.time() < end: pass\n"


def start(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code])


def sample(pids, seconds=1.2, interval=0.1):
    with ResourceSampler(interval_s=interval, server_pids=pids) as sampler:
        time.sleep(seconds)
    return sampler.samples


def test_a_busy_process_shows_about_one_core():
    proc = start(BUSY.format(s=3))
    try:
        time.sleep(0.2)
        samples = sample([proc.pid])
    finally:
        proc.kill()
    summary = summarize_samples(samples)
    assert summary["server_cpu_percent_mean"] > 50
    assert summary["server_rss_gb_max"] > 0


def test_an_idle_process_shows_little_cpu():
    proc = start("import time; time.sleep(3)")
    try:
        samples = sample([proc.pid])
    finally:
        proc.kill()
    assert summarize_samples(samples)["server_cpu_percent_mean"] < 20


def test_interval_is_honoured_and_samples_carry_every_field():
    samples = sample([], seconds=1.0, interval=0.1)
    assert 7 <= len(samples) <= 11
    gaps = [b["t"] - a["t"] for a, b in zip(samples, samples[1:])]
    assert sum(gaps) / len(gaps) == pytest.approx(0.1, abs=0.03)
    for key in (
        "cpu_percent",
        "cpu_per_core",
        "mem_used_gb",
        "mem_available_gb",
        "swap_used_gb",
        "disk_read_mb_s",
        "net_sent_mb_s",
        "client_cpu_percent",
        "client_rss_gb",
        "sampler_cpu_s",
    ):
        assert key in samples[-1]
    assert samples[-1]["server_cpu_percent"] is None  # no server pids: unknown, not zero


def test_a_vanishing_process_does_not_stop_sampling():
    proc = start(BUSY.format(s=0.3))
    samples = sample(lambda: process_tree(proc.pid) or [proc.pid], seconds=1.0)
    proc.wait()
    assert len(samples) >= 7


def test_write_and_summarize_round_trip(tmp_path):
    samples = sample([], seconds=0.5)
    path = tmp_path / "samples.jsonl"
    write_samples(path, samples)
    assert [json.loads(line) for line in path.read_text().splitlines()] == samples
    summary = summarize_samples(samples)
    assert summary["n_samples"] == len(samples)
    assert 0 <= summary["sampler_overhead_percent"] < 50
    assert summarize_samples([]) == {"n_samples": 0}
