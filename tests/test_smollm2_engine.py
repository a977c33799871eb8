"""SmolLM2 on the embedded engine: its chat template, and answers that end by themselves."""

import pytest


@pytest.fixture(scope="module")
def smollm2(smollm2_path):
    from perflab.engines.llamacpp_engine import LlamaCppEngine

    engine = LlamaCppEngine(smollm2_path, n_ctx=1024, n_threads=1)
    engine.preflight()
    yield engine
    engine.close()


def test_smollm2_is_a_trained_llama_with_a_chat_template(smollm2, smollm2_path):
    info = smollm2.preflight()
    assert info["model_details"]["architecture"] == "llama"
    assert int(info["model_details"]["embedding_length"]) == 576
    assert info["chat_template"] is True
    assert info["model_size_gb"] == pytest.approx(98_362_432 / 1e9)


def test_a_prompt_goes_through_the_chat_template_as_the_users_turn(smollm2):
    from perflab.engines.llamacpp_engine import prompt_tokens

    ids = prompt_tokens(smollm2.llm, smollm2.formatter, "What is AI?")
    text = smollm2.llm.detokenize(ids, special=True).decode()
    assert text.startswith("<|im_start|>system\n")
    assert "<|im_start|>user\nWhat is AI?<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")
    raw = smollm2.llm.tokenize(b"What is AI?", add_bos=True)
    assert len(ids) > len(raw) + 10  # the template's turns and default system prompt


def test_a_real_answer_ends_by_itself_before_max_tokens(smollm2):
    from perflab.core.records import FINISH_STOP
    from perflab.engines.base import GenerationOptions

    options = GenerationOptions(max_tokens=400, temperature=0.0, seed=42, ignore_eos=False)
    chunks = list(smollm2.stream("What is AI?", options))
    timings = chunks[-1].timings
    answer = "".join(c.text for c in chunks if not c.done)
    assert timings.finish_reason == FINISH_STOP
    assert 10 < timings.output_tokens < 400
    assert timings.output_tokens == len([c for c in chunks if not c.done])
    assert "intelligence" in answer.lower()
    assert "<|im_end|>" not in answer


@pytest.mark.parametrize(
    ("engine", "expected"),
    [
        ({}, False),  # the default: SmolLM2, a trained model, ends its answers
        ({"model": "tiny-llama3"}, True),  # random weights: EOS at random, so forbidden
        ({"model": "tiny-llama3", "ignore_eos": False}, False),
        ({"ignore_eos": True}, True),
        ({"model": "llama3.1:8b"}, False),  # an Ollama model's weights
    ],
)
def test_ignore_eos_unset_is_on_for_the_tiny_random_model_only(engine, expected):
    from conftest import ROOT

    from perflab.config.load import load_config_file
    from perflab.engines import generation_options

    config = load_config_file(ROOT / "config" / "config.yaml", overrides={"engine": engine})
    assert generation_options(config, 0.7).ignore_eos is expected
