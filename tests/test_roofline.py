"""The machine's ceilings, the model's costs per token and the fractions of them."""

from __future__ import annotations

import json
import math
import re

import pytest

from perflab.analyse.findings.frame import Condition
from perflab.analyse.findings.roofline import NEAR_CEILING, summary
from perflab.analyse.findings.statistics import Spread
from perflab.measure.machine import (
    MachineCeilings,
    Rate,
    measure_machine,
    read_machine,
    write_machine,
)
from perflab.models.gguf_facts import read_model_facts
from perflab.present.wording import roofline as roofline_lines

LLAMA3_VOCAB = 128256  # tokens in llama.cpp's ggml-vocab-llama-bpe.gguf


def test_a_tiny_gguf_costs_what_its_shapes_say(tiny_model_path):
    # conftest's tiny model: 32-wide, 1 block, FFN 64, 2 heads of 16, 1 KV head;
    # matrices f16, norms f32, an output head of its own (not tied).
    facts = read_model_facts(tiny_model_path)
    vocab, dim, kv_dim, ffn = LLAMA3_VOCAB, 32, 16, 64
    block_matrices = dim * dim * 2 + dim * kv_dim * 2 + dim * ffn * 3  # q, o, k, v, ffn
    norms = 3 * dim  # attn_norm, ffn_norm, output_norm
    assert facts.parameters == 2 * vocab * dim + block_matrices + norms
    assert facts.weight_bytes == 2 * (2 * vocab * dim + block_matrices) + 4 * norms
    # Decoding reads every tensor but the embedding, of which it reads one row.
    assert facts.bytes_per_token == facts.weight_bytes - 2 * vocab * dim + 2 * dim
    assert facts.flops_per_token == 2 * (vocab * dim + block_matrices + norms)
    assert facts.attention_flops_per_context_token == 4 * 1 * 2 * 16
    assert facts.kv_bytes_per_token("f16") == 2 * 1 * 1 * 16 * 2
    assert facts.kv_bytes_at(2048, "f16") == 64 * 2048
    assert facts.context_length == 2048


def test_the_machine_is_measured_and_read_back(tmp_path):
    ceilings = measure_machine(2, total_bytes=32 << 20, matmul_n=128, repetitions=3)
    assert ceilings.bandwidth_gbs.mean > 0 and ceilings.matmul_gflops.mean > 0
    assert ceilings.bandwidth_gbs.repetitions == 3 and ceilings.bandwidth_gbs.ci95 is not None
    path = tmp_path / "machine.json"
    write_machine(ceilings, path)
    assert read_machine(path) == ceilings
    assert json.loads(path.read_text())["threads"] == 2


def _condition(name: str, tps: float, ci: float | None, prompt_tokens: float) -> Condition:
    figure = Spread(tps, ci, tps, tps, 3, True)
    empty = Spread(None, None, None, None, 0, False)
    return Condition(
        condition_id=name, experiment_ids=(name,), prompt_name=name, temperature=0.7,
        workers=1, prompt_cache="bust", trials=3, n_requests=30, n_ok=30, n_errors=0,
        n_truncated=0, error_classes=None, ttft=empty, tps=figure, req_per_s=empty, e2e=empty, e2e_p95_s=None,
        output_tokens_mean=100.0, prompt_tokens_mean=prompt_tokens, queue_mean_s=None,
        unaccounted_mean_s=None, load_mean_s=None, prefill_mean_s=None, decode_mean_s=None,
        prep_mean_s=None, disturbed=(),
    )  # fmt: skip


MACHINE = MachineCeilings(
    host="h", cpu="cpu", logical_cores=2, threads=1,
    bandwidth_gbs=Rate(10.0, 0.5, 5), matmul_gflops=Rate(100.0, 4.0, 5),
    bandwidth_kernel="k", matmul_kernel="m",
)  # fmt: skip


def test_fractions_of_the_ceilings_follow_from_bandwidth_and_flops(tiny_model_path):
    facts = read_model_facts(tiny_model_path)
    basic = [_condition("short", 20.0, 2.0, 50.0)]
    found = summary(MACHINE, facts, basic, (1000.0, 900.0, 1100.0))
    (decode,) = found.decode
    read = facts.bytes_per_token + facts.kv_bytes_at(50 + 100 / 2)
    assert decode.ceiling_tps == pytest.approx(10e9 / read)
    assert decode.ceiling_ci95 == pytest.approx(0.5e9 / read)
    assert decode.fraction == pytest.approx(20.0 * read / 10e9)
    # the rate's CI on the log scale: 20 × exp(∓2 / 20), close to 20 ∓ 2
    assert decode.fraction_low == pytest.approx(20.0 / math.exp(0.1) * read / 10e9)
    assert decode.fraction_high == pytest.approx(20.0 * math.exp(0.1) * read / 10e9)
    prefill = found.prefill
    assert prefill.ceiling_tps == pytest.approx(100e9 / facts.flops_at(25))
    assert prefill.fraction == pytest.approx(1000.0 / prefill.ceiling_tps)
    assert found.bandwidth_bound is (decode.fraction >= NEAR_CEILING)


def test_decode_near_its_ceiling_is_called_bandwidth_bound(tiny_model_path):
    facts = read_model_facts(tiny_model_path)
    ceiling = 10e9 / (facts.bytes_per_token + facts.kv_bytes_at(10 + 50))
    fast = summary(MACHINE, facts, [_condition("short", 0.9 * ceiling, None, 10.0)], (None,) * 3)
    slow = summary(MACHINE, facts, [_condition("short", 0.2 * ceiling, None, 10.0)], (None,) * 3)
    assert fast.bandwidth_bound and not slow.bandwidth_bound
    assert fast.prefill is None and fast.decode[0].fraction_low is None
    fast_words = dict(roofline_lines(fast))["Roofline"]
    slow_words = dict(roofline_lines(slow))["Roofline"]
    assert "bandwidth-bound" in fast_words and "90%" in fast_words
    assert "not what limits it" in slow_words and "20%" in slow_words


def test_a_noisy_decode_rate_s_share_of_its_ceiling_stays_within_0_and_100_percent(tiny_model_path):
    # three trials on a loaded machine: 32 % of the ceiling ± 85 %, which mean ± half
    # would print as "-52.8%–116.5%"
    facts = read_model_facts(tiny_model_path)
    ceiling = 10e9 / (facts.bytes_per_token + facts.kv_bytes_at(10 + 50))
    found = summary(
        MACHINE, facts, [_condition("short", 0.32 * ceiling, 0.85 * ceiling, 10.0)], (None,) * 3
    )
    (decode,) = found.decode
    assert 0 < decode.fraction_low < decode.fraction < decode.fraction_high
    assert decode.fraction_low == pytest.approx(0.32 / math.exp(0.85 / 0.32))
    # the log-scale upper end, 0.32 · e^(0.85/0.32) ≈ 454 %, is no share a ceiling allows
    assert decode.fraction_high == 1.0
    line = next(text for name, text in roofline_lines(found) if name == "Against the ceiling")
    low, high = re.search(r"95 % CI ([^–]+)%–([^,]+)%, from the log of the rate\)", line).groups()
    assert float(low) == pytest.approx(100 * decode.fraction_low, abs=0.05) and float(low) > 0
    assert float(high) == 100.0


def test_a_rate_above_its_ceiling_makes_the_ceiling_unreliable_not_an_efficiency(tiny_model_path):
    facts = read_model_facts(tiny_model_path)
    ceiling = 10e9 / (facts.bytes_per_token + facts.kv_bytes_at(10 + 50))
    basic = [_condition("short", 2.5 * ceiling, 0.1 * ceiling, 10.0)]
    prefill_ceiling = 100e9 / facts.flops_at(5)
    found = summary(MACHINE, facts, basic, (3 * prefill_ceiling, None, None))
    assert found.bandwidth_unreliable and found.compute_unreliable
    assert not found.bandwidth_bound  # nothing is judged against a wrong ceiling
    words = roofline_lines(found)
    text = " ".join(line for _, line in words)
    assert "%" not in text.replace("(95 % CI", "")  # no efficiency, above 100 % or not
    decode, prefill = (line for name, line in words if name == "Against the ceiling")
    assert decode.startswith("the decode ceiling is unreliable: measured short ")
    assert (
        f"{2.5 * ceiling:,.1f} tok/s over 100 output tokens per request against a {ceiling:,.0f}"
        in decode
    )
    assert "read bandwidth of 10.00 ± 0.50 GB/s" in decode and "disturbed" in decode
    assert prefill.startswith("the prefill ceiling is unreliable") and "GFLOP/s" in prefill
    assert dict(words)["Roofline"].startswith("not judged")


def test_a_rate_below_its_ceiling_keeps_the_ceiling(tiny_model_path):
    facts = read_model_facts(tiny_model_path)
    ceiling = 10e9 / (facts.bytes_per_token + facts.kv_bytes_at(10 + 50))
    found = summary(MACHINE, facts, [_condition("short", ceiling, None, 10.0)], (None,) * 3)
    assert not found.bandwidth_unreliable and found.bandwidth_bound
    assert "unreliable" not in " ".join(line for _, line in roofline_lines(found))
