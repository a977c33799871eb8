"""The embedded engine on a real (tiny, random-weight) Llama-3-architecture GGUF."""

import pytest

from perflab.engines.base import GenerationOptions, PreflightError
from perflab.engines.llamacpp_engine import LlamaCppEngine
from perflab.measure.runner import LoadPlan, run_load


@pytest.fixture(scope="module")
def engine(tiny_model_path):
    engine = LlamaCppEngine(tiny_model_path, n_ctx=1024)
    engine.preflight()
    yield engine
    engine.close()


def test_preflight_describes_the_model(engine, tiny_model_path):
    info = engine.preflight()
    assert info["engine"] == "llamacpp"
    assert info["model"] == "perflab-tiny-llama3-d32-l1"
    assert info["model_details"]["architecture"] == "llama"
    assert info["model_size_gb"] == pytest.approx(tiny_model_path.stat().st_size / 1e9)
    assert info["load_s"] > 0


def test_missing_model_fails_preflight_with_the_fix(tmp_path):
    with pytest.raises(PreflightError, match="engine.model_path"):
        LlamaCppEngine(tmp_path / "missing.gguf").preflight()


def test_streams_exactly_max_tokens_with_eos_suppressed(engine):
    options = GenerationOptions(max_tokens=12, ignore_eos=True, temperature=0.7)
    chunks = list(engine.stream("What is AI?", options))
    tokens = [c for c in chunks if not c.done]
    assert len(tokens) == 12 and all(c.n_tokens == 1 for c in tokens)
    timings = chunks[-1].timings
    assert timings.output_tokens == 12
    # the real Llama-3 tokenizer: BOS + "What", " is", " AI", "?"
    assert timings.prompt_tokens == 5
    assert timings.prefill_s > 0 and timings.decode_s > 0


def test_longer_prompts_prefill_more_tokens(engine):
    options = GenerationOptions(max_tokens=2, ignore_eos=True)
    short = list(engine.stream("Hi", options))[-1].timings
    long = list(engine.stream("Describe the transformer architecture. " * 20, options))[-1].timings
    assert long.prompt_tokens > 10 * short.prompt_tokens
    # nothing shared with the previous prompt but the BOS token: (almost) full prefill
    assert long.raw["n_p_eval"] >= long.prompt_tokens - 1


PROMPT = "Describe the transformer architecture in detail. " * 8


def measured(engine, prompt_cache: str):
    options = GenerationOptions(max_tokens=4, ignore_eos=True)
    plan = LoadPlan(requests=4, warmup_requests=1)
    result = run_load(engine, PROMPT, options, plan, experiment_id="kv", prompt_cache=prompt_cache)
    records = [r for r in result.records if not r.is_warmup]
    assert len(records) == 4 and all(r.status == "ok" for r in records)
    return records


def test_bust_prefills_every_prompt_in_full(engine):
    records = measured(engine, "bust")
    prompt_tokens = {r.prompt_tokens for r in records}
    # the nonce costs a few tokens, the same for every request
    assert len(prompt_tokens) == 1 and prompt_tokens.pop() > len(PROMPT.split())
    # only the BOS token is shared with the previous request; the rest is evaluated
    assert all(r.server_raw["n_p_eval"] >= r.prompt_tokens - 1 for r in records)


def test_reuse_serves_the_repeated_prompt_from_the_kv_cache(engine):
    busted = measured(engine, "bust")
    reused = measured(engine, "reuse")
    # the same prompt again: llama.cpp re-evaluates only the last prompt token
    assert all(r.server_raw["n_p_eval"] <= 1 for r in reused)
    assert all(r.prompt_tokens == busted[0].prompt_tokens - 3 for r in reused)
    busted_prefill = sorted(r.prefill_s for r in busted)[len(busted) // 2]
    reused_prefill = sorted(r.prefill_s for r in reused)[len(reused) // 2]
    assert reused_prefill < busted_prefill


def test_same_seed_same_text(engine):
    options = GenerationOptions(max_tokens=10, ignore_eos=True, temperature=1.0, seed=7)
    first = "".join(c.text for c in engine.stream("Hello", options))
    second = "".join(c.text for c in engine.stream("Hello", options))
    assert first == second


def test_concurrent_workers_queue_on_the_model_lock(engine):
    options = GenerationOptions(max_tokens=16, ignore_eos=True)
    result = run_load(
        engine, "What is AI?", options, LoadPlan(workers=3, requests=6), experiment_id="q"
    )
    assert len(result.records) == 6 and all(r.status == "ok" for r in result.records)
    assert max(r.queue_s for r in result.records) > 0
    # one request at a time: no two generation spans overlap (the lock is released just
    # before the client stamps t_end, so a busy machine can let the next one in first)
    spans = sorted((r.t_first_token - r.ttft_s + r.queue_s, r.t_end) for r in result.records)
    assert all(later[0] >= earlier[1] - 0.01 for earlier, later in zip(spans, spans[1:]))


def test_finish_reason_says_length_at_max_tokens_and_stop_at_eos(engine):
    capped = list(engine.stream("Hi", GenerationOptions(max_tokens=6, ignore_eos=True)))[-1]
    assert capped.timings.finish_reason == "length" and capped.timings.output_tokens == 6
    # without EOS suppressed the random model may stop early: the reason must say which
    for seed in range(4):
        options = GenerationOptions(max_tokens=40, temperature=1.5, seed=seed)
        timings = list(engine.stream("Hi", options))[-1].timings
        expected = "length" if timings.output_tokens == 40 else "stop"
        assert timings.finish_reason == expected


def test_open_loop_requests_wait_on_the_model_lock_from_their_scheduled_time(engine):
    """The embedded engine serves one request at a time: open-loop requests leave on
    schedule, queue on the lock (queue_s), and their latency counts from when they were due."""
    from perflab.measure.arrivals import ArrivalPlan
    from perflab.measure.open_loop import OpenLoopPlan, run_open_loop

    options = GenerationOptions(max_tokens=16, ignore_eos=True)
    plan = OpenLoopPlan(ArrivalPlan(rate=50.0, requests=6, arrival="constant"), max_send_lag_s=0.5)
    result, check = run_open_loop(engine, "What is AI?", options, plan, experiment_id="o")
    records = result.records
    assert len(records) == 6 and all(r.status == "ok" for r in records)
    assert check.n_sent == 6 and max(r.queue_s for r in records) > 0
    for record in records:
        assert record.e2e_sched_s == pytest.approx(record.e2e_s + record.send_lag_s)
    assert records[-1].e2e_sched_s > records[0].e2e_sched_s  # the queue grew
