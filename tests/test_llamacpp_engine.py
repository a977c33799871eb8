"""The embedded engine on a real (tiny, random-weight) Llama-3-architecture GGUF."""

import pytest

from perflab.engines.base import GenerationOptions, PreflightError
from perflab.engines.llamacpp_engine import LlamaCppEngine
from perflab.runner import LoadPlan, run_load


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
    assert long.raw["n_p_eval"] == long.prompt_tokens  # no prompt cache: full prefill


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
    # one request at a time: no two generation spans overlap
    spans = sorted((r.t_first_token - r.ttft_s + r.queue_s, r.t_end) for r in result.records)
    assert all(later[0] >= earlier[1] - 1e-3 for earlier, later in zip(spans, spans[1:]))


def test_finish_reason_says_length_at_max_tokens_and_stop_at_eos(engine):
    capped = list(engine.stream("Hi", GenerationOptions(max_tokens=6, ignore_eos=True)))[-1]
    assert capped.timings.finish_reason == "length" and capped.timings.output_tokens == 6
    # without EOS suppressed the random model may stop early: the reason must say which
    for seed in range(4):
        options = GenerationOptions(max_tokens=40, temperature=1.5, seed=seed)
        timings = list(engine.stream("Hi", options))[-1].timings
        expected = "length" if timings.output_tokens == 40 else "stop"
        assert timings.finish_reason == expected
